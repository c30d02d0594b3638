-- A version of the rules' terms, moved by every change of a rule other than
-- its usage counters, so each instance's in-memory rule cache knows when to
-- reload (usage and spending are always read fresh).
CREATE TABLE rule_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO rule_version VALUES (1, 0);

CREATE FUNCTION rule_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rule_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER rule_terms_changed
    AFTER INSERT OR DELETE OR UPDATE OF code, name, kind, scope, skus, categories, targets,
        percent_off, amount_off, bundle, bundle_price, buy_quantity, get_quantity, min_spend,
        currency, starts_at, ends_at, priority, exclusive, allow_loss, budget, usage_cap, status
    ON rule FOR EACH STATEMENT EXECUTE FUNCTION rule_touch();
