-- An abandoned placement that reserved nothing is recorded as a released
-- reservation with no lines (expires_at = released_at), so that a
-- reservation for it arriving later is refused on the key. Once no late
-- call can arrive (a day on), the maintenance tick deletes them; this
-- index finds them.
CREATE INDEX reservation_tombstone ON reservation (released_at)
    WHERE state = 'released' AND expires_at = released_at;
