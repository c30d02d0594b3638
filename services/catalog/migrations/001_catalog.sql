-- The catalog: products, their SKUs with stock, reservations for orders and
-- the audit of every stock adjustment. Money is bigint minor units + currency.

CREATE TABLE product (
    id            bigserial PRIMARY KEY,
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description   text NOT NULL DEFAULT '',
    category      text NOT NULL DEFAULT '',
    brand         text NOT NULL DEFAULT '',
    attributes    jsonb NOT NULL DEFAULT '[]',
    status        text NOT NULL CHECK (status IN ('draft', 'active', 'archived')),
    rating_count  bigint NOT NULL DEFAULT 0,
    rating_sum    bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- ranked search: title weighs most, then brand and category, then text
    search        tsvector GENERATED ALWAYS AS (
                      setweight(to_tsvector('simple', title), 'A') ||
                      setweight(to_tsvector('simple', brand || ' ' || category), 'B') ||
                      setweight(to_tsvector('simple', description), 'C')) STORED
);
CREATE INDEX product_search ON product USING gin (search);
CREATE INDEX product_category ON product (category, id);
CREATE INDEX product_brand ON product (brand, id);
CREATE INDEX product_status ON product (status, id);

CREATE TABLE sku (
    code                text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    product_id          bigint NOT NULL REFERENCES product (id),
    list_price          bigint NOT NULL CHECK (list_price >= 0),
    cost_price          bigint NOT NULL CHECK (cost_price >= 0),
    currency            char(3) NOT NULL,
    attributes          jsonb NOT NULL DEFAULT '[]',
    on_hand             integer NOT NULL DEFAULT 0,
    reserved            integer NOT NULL DEFAULT 0,
    low_stock_threshold integer NOT NULL DEFAULT 0 CHECK (low_stock_threshold >= 0),
    -- the database's own last line against overselling
    CONSTRAINT sku_stock CHECK (reserved >= 0 AND on_hand >= reserved)
);
CREATE INDEX sku_product ON sku (product_id);
CREATE INDEX sku_price ON sku (list_price);
CREATE INDEX sku_low_stock ON sku ((on_hand - reserved)) WHERE low_stock_threshold > 0;

CREATE TABLE reservation (
    order_id     text PRIMARY KEY CHECK (length(order_id) BETWEEN 1 AND 128),
    state        text NOT NULL CHECK (state IN ('held', 'confirmed', 'released', 'expired')),
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    released_at  timestamptz
);
-- the maintenance timer's expiry scan
CREATE INDEX reservation_held_expiry ON reservation (expires_at) WHERE state = 'held';
-- reports over confirmed units in a time window
CREATE INDEX reservation_confirmed ON reservation (confirmed_at) WHERE state = 'confirmed';

CREATE TABLE reservation_line (
    order_id   text NOT NULL REFERENCES reservation (order_id),
    sku        text NOT NULL REFERENCES sku (code),
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000000),
    unit_price bigint NOT NULL,
    currency   char(3) NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX reservation_line_sku ON reservation_line (sku);

-- Every change of on_hand, with why; retries with the same idempotency key
-- find the first result here.
CREATE TABLE stock_adjustment (
    id              bigserial PRIMARY KEY,
    sku             text NOT NULL REFERENCES sku (code),
    delta           integer NOT NULL CHECK (delta <> 0),
    reason          text NOT NULL CHECK (reason IN ('receipt', 'correction', 'damage', 'return', 'count')),
    note            text NOT NULL DEFAULT '',
    on_hand_after   integer NOT NULL,
    idempotency_key text UNIQUE,
    request_id      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_adjustment_sku ON stock_adjustment (sku, id);
