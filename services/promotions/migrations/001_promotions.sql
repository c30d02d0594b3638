-- Promotions: rules, coupons, member tiers, redemptions per order, and the
-- catalog's prices and costs as its events announce them. Money is bigint
-- minor units with a currency.

-- Kept from catalog's ProductCreated/ProductUpdated (the margin guard needs
-- the cost; quotes need list price and category).
CREATE TABLE product_sku (
    sku         text PRIMARY KEY,
    product_id  bigint NOT NULL,
    title       text NOT NULL DEFAULT '',
    category    text NOT NULL DEFAULT '',
    list_price  bigint NOT NULL,
    cost_price  bigint NOT NULL,
    currency    char(3) NOT NULL,
    active      boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rule (
    code          text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9._-]{1,64}$'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind          text NOT NULL CHECK (kind IN ('percent_off', 'amount_off', 'bundle_price', 'buy_x_get_y')),
    scope         text NOT NULL CHECK (scope IN ('skus', 'categories', 'order')),
    skus          text[] NOT NULL DEFAULT '{}',
    categories    text[] NOT NULL DEFAULT '{}',
    -- what a cart must hold for the rule to be considered: 'sku:<code>',
    -- 'cat:<category>'; empty for order scope
    targets       text[] NOT NULL DEFAULT '{}',
    percent_off   integer NOT NULL DEFAULT 0 CHECK (percent_off BETWEEN 0 AND 100),
    amount_off    bigint NOT NULL DEFAULT 0 CHECK (amount_off >= 0),
    bundle        jsonb NOT NULL DEFAULT '[]',
    bundle_price  bigint NOT NULL DEFAULT 0 CHECK (bundle_price >= 0),
    buy_quantity  integer NOT NULL DEFAULT 0 CHECK (buy_quantity >= 0),
    get_quantity  integer NOT NULL DEFAULT 0 CHECK (get_quantity >= 0),
    min_spend     bigint NOT NULL DEFAULT 0 CHECK (min_spend >= 0),
    currency      char(3),
    starts_at     timestamptz,
    ends_at       timestamptz,
    priority      integer NOT NULL DEFAULT 0,
    exclusive     boolean NOT NULL DEFAULT false,
    allow_loss    boolean NOT NULL DEFAULT false,
    budget        bigint CHECK (budget > 0),
    usage_cap     integer NOT NULL DEFAULT 0 CHECK (usage_cap >= 0),
    status        text NOT NULL CHECK (status IN ('active', 'paused')),
    used          integer NOT NULL DEFAULT 0,
    spent         bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at),
    -- the database's own last line: never past a cap or a budget
    CONSTRAINT rule_limits CHECK (used >= 0 AND (usage_cap = 0 OR used <= usage_cap)
                                  AND spent >= 0 AND (budget IS NULL OR spent <= budget))
);
CREATE INDEX rule_targets ON rule USING gin (targets) WHERE status = 'active';
CREATE INDEX rule_order_scope ON rule (code) WHERE status = 'active' AND scope = 'order';

CREATE TABLE coupon (
    code               text PRIMARY KEY CHECK (code ~ '^[A-Z0-9-]{3,40}$'),
    kind               text NOT NULL CHECK (kind IN ('percent_off', 'amount_off')),
    percent_off        integer NOT NULL DEFAULT 0 CHECK (percent_off BETWEEN 0 AND 100),
    amount_off         bigint NOT NULL DEFAULT 0 CHECK (amount_off >= 0),
    min_spend          bigint NOT NULL DEFAULT 0 CHECK (min_spend >= 0),
    currency           char(3),
    starts_at          timestamptz,
    ends_at            timestamptz,
    total_limit        integer NOT NULL DEFAULT 0 CHECK (total_limit >= 0),
    per_customer_limit integer NOT NULL DEFAULT 0 CHECK (per_customer_limit >= 0),
    customer_id        text NOT NULL DEFAULT '',
    campaign           text NOT NULL DEFAULT '',
    used               integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at),
    CONSTRAINT coupon_limit CHECK (used >= 0 AND (total_limit = 0 OR used <= total_limit))
);
CREATE INDEX coupon_campaign ON coupon (campaign) WHERE campaign <> '';

CREATE TABLE tier (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,32}$'),
    percent_off integer NOT NULL CHECK (percent_off BETWEEN 1 AND 100),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per order: the quote it got (returned again to a retry) and the
-- request it came from (a retry with another cart is refused).
CREATE TABLE redemption (
    order_id    text PRIMARY KEY CHECK (length(order_id) BETWEEN 1 AND 128),
    customer_id text NOT NULL DEFAULT '',
    state       text NOT NULL CHECK (state IN ('redeemed', 'released')),
    request     bytea NOT NULL,
    quote       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz
);

-- What a redeemed order counts against: each coupon and each capped or
-- budgeted rule it used, with the discount given.
CREATE TABLE redemption_use (
    order_id    text NOT NULL REFERENCES redemption (order_id),
    source      text NOT NULL CHECK (source IN ('rule', 'coupon')),
    code        text NOT NULL,
    customer_id text NOT NULL DEFAULT '',
    saved       bigint NOT NULL CHECK (saved >= 0),
    PRIMARY KEY (order_id, source, code)
);
CREATE INDEX redemption_use_customer ON redemption_use (code, customer_id) WHERE source = 'coupon';
