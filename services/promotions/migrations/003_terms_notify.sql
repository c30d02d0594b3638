-- The version moves with everything a quote prices from, not only the
-- rules: the member tiers and the catalog's SKUs as well. Each move is
-- announced on channel promotions_terms (payload: the new version), which
-- every instance listens on to refresh its in-memory terms, so a quote needs
-- no statement to know that they are current. Notifications are sent at
-- commit, in commit order, and only these rare changes send one (usage
-- counters never do).
CREATE OR REPLACE FUNCTION rule_touch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE rule_version SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
    PERFORM pg_notify('promotions_terms', v::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER tier_terms_changed
    AFTER INSERT OR DELETE OR UPDATE ON tier FOR EACH STATEMENT EXECUTE FUNCTION rule_touch();

CREATE TRIGGER sku_terms_changed
    AFTER INSERT OR DELETE OR UPDATE ON product_sku FOR EACH STATEMENT EXECUTE FUNCTION rule_touch();
