-- A redemption may be held for a time only (RedeemRequest.hold_seconds):
-- the orders service asks for that, so that what a placement that never
-- finished counted goes back by itself. The maintenance tick releases
-- those past expires_at; the order's payment makes them permanent.
ALTER TABLE redemption ADD COLUMN expires_at timestamptz;
CREATE INDEX redemption_hold ON redemption (expires_at)
    WHERE state = 'redeemed' AND expires_at IS NOT NULL;
