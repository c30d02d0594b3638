-- Every applied event, with no unique constraint, so that a duplicate
-- application would show up as a second row instead of being prevented.
CREATE TABLE applied (
    sequence   bigint NOT NULL,
    type       text NOT NULL,
    message_id uuid NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
