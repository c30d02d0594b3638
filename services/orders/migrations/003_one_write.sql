-- A placement is written once, when it has finished: placed (with
-- OrderPlaced) or failed (with OrderAbandoned). No 'pending' row comes
-- first any more; one left by an earlier version is still given up by the
-- maintenance tick. A retry finds its placement again through the order
-- id, which is derived from the idempotency key (or the channel's order
-- id), the request and the number of earlier failed attempts with that
-- key: the catalog's reservation and promotions' redemption are keyed by
-- it. Ids are no longer numbered.
--
-- freed_key: the key of a failed placement (its idem_key or external_id,
-- which are cleared so the key can place an order again), counted to give
-- the next attempt its own id.
ALTER TABLE orders ADD COLUMN freed_key text;
CREATE INDEX orders_freed ON orders (freed_key) WHERE freed_key IS NOT NULL;
DROP SEQUENCE order_number;
