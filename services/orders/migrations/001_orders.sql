-- Orders: one row per order. What does not change after placement (lines,
-- prices, promotions, address) is kept as the packed shop.orders.v1.Order in
-- `body`; what the state machine changes is in columns, so a transition is
-- one UPDATE. Money is bigint minor units with a currency.

CREATE TABLE orders (
    id            text PRIMARY KEY,
    customer_id   text NOT NULL,
    -- 'pending': being placed (the saga has not finished); 'failed': a
    -- placement that did not finish and was given back (OrderAbandoned).
    state         text NOT NULL CHECK (state IN ('pending', 'placed', 'paid', 'fulfilling', 'shipped',
                                                 'delivered', 'completed', 'cancelled', 'refunded',
                                                 'failed')),
    channel       text NOT NULL,
    external_id   text,
    -- The placement's idempotency key (freed when the placement fails, so a
    -- retry with it can place the order).
    idem_key      text,
    -- sha256 of the placement request: a retry with the key must repeat it.
    request_hash  bytea,
    body          bytea,
    currency      char(3),
    total         bigint NOT NULL DEFAULT 0 CHECK (total >= 0),
    payment_ref   text NOT NULL DEFAULT '',
    carrier       text NOT NULL DEFAULT '',
    tracking      text NOT NULL DEFAULT '',
    reason        text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    placed_at     timestamptz,
    paid_at       timestamptz,
    cancelled_at  timestamptz,
    CHECK (state IN ('pending', 'failed') OR body IS NOT NULL)
);
CREATE UNIQUE INDEX orders_idem ON orders (customer_id, idem_key) WHERE idem_key IS NOT NULL;
CREATE UNIQUE INDEX orders_external ON orders (channel, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_state ON orders (state, created_at) WHERE state IN ('pending', 'placed');
CREATE INDEX orders_paid ON orders (paid_at) WHERE paid_at IS NOT NULL;

CREATE SEQUENCE order_number;

CREATE TABLE review (
    order_id     text NOT NULL REFERENCES orders (id),
    sku          text NOT NULL,
    customer_id  text NOT NULL,
    rating       integer NOT NULL CHECK (rating BETWEEN 1 AND 5),
    text         text NOT NULL DEFAULT '' CHECK (length(text) <= 4000),
    sentiment    text NOT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku)
);
