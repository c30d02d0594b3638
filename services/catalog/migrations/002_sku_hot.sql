-- Every reservation updates `reserved` on its SKU rows. An index over
-- on_hand - reserved made each of those updates write a new entry in every
-- index of sku (no heap-only update), and left the table and its indexes
-- bloated under load. The low-stock list now finds the tracked SKUs by an
-- index that reservations never touch and computes what is left per row;
-- free room in each page keeps the updated row version on its own page.
DROP INDEX sku_low_stock;
CREATE INDEX sku_low_stock ON sku (code) WHERE low_stock_threshold > 0;
ALTER TABLE sku SET (fillfactor = 80);

-- A reservation's lines are written only by the statement that writes the
-- reservation, with the SKU rows it has just locked (and SKUs are never
-- deleted): the foreign keys checked each line twice more, one query each,
-- on every order.
ALTER TABLE reservation_line DROP CONSTRAINT reservation_line_order_id_fkey;
ALTER TABLE reservation_line DROP CONSTRAINT reservation_line_sku_fkey;
