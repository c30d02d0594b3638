-- The runtime's own tables, created in every service's schema before the
-- service's migrations.

-- Events written in the same transaction as the state change they describe.
-- `position` is stamped later by the relay, gap-free in commit order.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    xid            xid8 NOT NULL DEFAULT pg_current_xact_id(),
    position       bigint UNIQUE,
    message_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    type           text NOT NULL,
    payload        bytea NOT NULL,
    correlation_id text,
    causation_id   text,
    traceparent    text,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_unstamped ON outbox (xid, id) WHERE position IS NULL;

-- Per consumed stream, the last sequence applied (updated in the same
-- transaction as the effect).
CREATE TABLE consumer_cursor (
    stream     text PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
