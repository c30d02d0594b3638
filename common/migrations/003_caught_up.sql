-- Up to when a consumed stream is known applied: the publisher's time of
-- the latest heartbeat whose head the consumer had reached (NULL until one
-- has been seen). A hold that the stream's events end (a reservation, a
-- redemption) ends by the clock only once the stream is applied past its
-- end, so a consumer running behind never gives back what an event it has
-- not applied yet (an OrderPaid) made permanent.
ALTER TABLE consumer_cursor ADD COLUMN caught_up_at timestamptz;
