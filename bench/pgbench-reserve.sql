-- pgbench-reserve.sql: ReserveStock's transaction (2 lines, quantity 1) done directly in SQL, the baseline for bench-reserve.
-- Run by bench/run as the catalog role (search_path "$user" = catalog) with
--   pgbench -n -M prepared -D nskus=<N> -D prefix=<P> -f bench/pgbench-reserve.sql
-- SKU codes are <P>000001..<P>N as loaded by bench-reserve --load. Rows are
-- locked in code order, as the service does, so concurrent runs cannot
-- deadlock. It mirrors the statements of services/catalog/store.c's
-- reservation (reservation row, one guarded UPDATE per line that also writes
-- the line, one outbox row for StockReserved); if store.c changes shape, change
-- this file with it so the comparison stays honest.
\set a random(1, :nskus)
\set d random(1, :nskus - 1)
\set b ((:a - 1 + :d) % :nskus) + 1
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set oid random(1, 9000000000000000000)
BEGIN;
INSERT INTO reservation (order_id, state, expires_at)
  VALUES ('pgbench-' || :oid::text, 'held', now() + interval '15 minutes');
WITH u AS (
  UPDATE sku SET reserved = reserved + 1
   WHERE code = :prefix::text || lpad(:lo::text, 6, '0') AND on_hand - reserved >= 1
  RETURNING code, list_price, currency)
INSERT INTO reservation_line (order_id, sku, quantity, unit_price, currency)
  SELECT 'pgbench-' || :oid::text, code, 1, list_price, currency FROM u;
WITH u AS (
  UPDATE sku SET reserved = reserved + 1
   WHERE code = :prefix::text || lpad(:hi::text, 6, '0') AND on_hand - reserved >= 1
  RETURNING code, list_price, currency)
INSERT INTO reservation_line (order_id, sku, quantity, unit_price, currency)
  SELECT 'pgbench-' || :oid::text, code, 1, list_price, currency FROM u;
-- As common/outbox.c's outbox_add; a StockReserved payload for two lines is
-- about 80 bytes. (The service also runs the outbox relay on the same
-- database; pgbench has none, which is part of the service's cost.)
INSERT INTO outbox (type, payload, correlation_id, causation_id, traceparent)
  VALUES ('shop.catalog.v1.StockReserved', decode(repeat('0a', 80), 'hex'),
          'pgbench-' || :oid::text, NULL, NULL);
COMMIT;
