-- The timers look for orders pending or placed whose last change is older
-- than a limit: index what they filter and sort on.
DROP INDEX orders_state;
CREATE INDEX orders_stale ON orders (state, updated_at) WHERE state IN ('pending', 'placed');
