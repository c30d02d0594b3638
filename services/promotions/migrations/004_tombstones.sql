-- An abandoned placement that redeemed nothing is recorded as a released
-- redemption with an empty request, so that a Redeem for it arriving later
-- is refused on the key. Once no late call can arrive (a day on), the
-- maintenance tick deletes them; this index finds them.
CREATE INDEX redemption_tombstone ON redemption (released_at)
    WHERE state = 'released' AND request = ''::bytea;
