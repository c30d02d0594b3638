/* rules: create, update, pause/resume and list price rules. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "promotions.h"
#include "util.h"

typedef Shop__Promotions__V1__Rule rule_t;

bool promo_valid_sku(const char *code)
{
    return util_valid_code(code, 64);
}

/* --- names of enums in the database --------------------------------------------- */

static const char *const s_kinds[] = {NULL, "percent_off", "amount_off", "bundle_price",
                                      "buy_x_get_y"};
static const char *const s_scopes[] = {NULL, "skus", "categories", "order"};

static int s_index(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    return 0;
}

/* --- rows to messages and to the engine ---------------------------------------------- */

static char *s_dup(const eng_mem_t *m, const char *s)
{
    return eng_strndup(m, s, strlen(s));
}

static void *s_call_alloc(void *ctx, size_t size)
{
    return call_alloc(ctx, size);
}

eng_mem_t promo_call_mem(call_t *call)
{
    return (eng_mem_t){s_call_alloc, call};
}

/* A JSON array of strings as an array in m's memory. */
static char **s_strings(const eng_mem_t *m, const char *json, size_t *n)
{
    json_t *arr = json_loads(json, 0, NULL);
    char **out = m->alloc(m->ctx, (json_array_size(arr) + 1) * sizeof *out);

    *n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (s)
            out[(*n)++] = s_dup(m, s);
    }
    json_decref(arr);
    return out;
}

Shop__Promotions__V1__Rule *promo_rule_msg(call_t *call, const store_rule_t *r)
{
    rule_t *m = call_alloc(call, sizeof *m);
    const char *cur = r->currency[0] ? r->currency : "";
    eng_mem_t mem = promo_call_mem(call);

    shop__promotions__v1__rule__init(m);
    m->code = call_strdup(call, r->code);
    m->name = call_strdup(call, r->name);
    m->kind = (Shop__Promotions__V1__RuleKind)s_index(s_kinds, 5, r->kind);
    m->scope = (Shop__Promotions__V1__RuleScope)s_index(s_scopes, 4, r->scope);
    m->skus = s_strings(&mem, r->skus_json, &m->n_skus);
    m->categories = s_strings(&mem, r->categories_json, &m->n_categories);
    m->percent_off = (uint32_t)r->percent_off;
    if (r->amount_off)
        m->amount_off = call_money(call, r->amount_off, cur);
    json_t *b = json_loads(r->bundle_json, 0, NULL);
    m->bundle = call_alloc(call, (json_array_size(b) + 1) * sizeof *m->bundle);
    for (size_t i = 0; i < json_array_size(b); i++) {
        Shop__Promotions__V1__BundleItem *it = call_alloc(call, sizeof *it);
        json_t *o = json_array_get(b, i);
        shop__promotions__v1__bundle_item__init(it);
        it->sku = call_strdup(call, json_string_value(json_object_get(o, "sku")) ?: "");
        it->quantity = (int32_t)json_integer_value(json_object_get(o, "quantity"));
        m->bundle[m->n_bundle++] = it;
    }
    json_decref(b);
    if (r->bundle_price || m->n_bundle)
        m->bundle_price = call_money(call, r->bundle_price, cur);
    m->buy_quantity = (uint32_t)r->buy;
    m->get_quantity = (uint32_t)r->get;
    if (r->min_spend)
        m->min_spend = call_money(call, r->min_spend, cur);
    m->starts_at_ms = r->starts_ms;
    m->ends_at_ms = r->ends_ms;
    m->priority = r->priority;
    m->exclusive = r->exclusive;
    m->allow_loss = r->allow_loss;
    if (r->budget)
        m->budget = call_money(call, r->budget, cur);
    m->usage_cap = (uint32_t)r->usage_cap;
    m->status = strcmp(r->status, "paused") == 0 ? SHOP__PROMOTIONS__V1__RULE_STATUS__RULE_STATUS_PAUSED
                                                  : SHOP__PROMOTIONS__V1__RULE_STATUS__RULE_STATUS_ACTIVE;
    m->used = (uint32_t)r->used;
    if (cur[0])
        m->spent = call_money(call, r->spent, cur);
    m->updated_at_ms = r->updated_ms;
    return m;
}

void promo_rule_eng(const eng_mem_t *m, const store_rule_t *r, eng_rule_t *e)
{
    static const eng_kind_t kinds[] = {ENG_PERCENT, ENG_PERCENT, ENG_AMOUNT, ENG_BUNDLE, ENG_BXGY};
    static const eng_scope_t scopes[] = {ENG_ORDER, ENG_SKUS, ENG_CATEGORIES, ENG_ORDER};
    char **skus, **cats;

    memset(e, 0, sizeof *e);
    e->code = s_dup(m, r->code);
    e->name = s_dup(m, r->name);
    e->currency = s_dup(m, r->currency);
    e->kind = kinds[s_index(s_kinds, 5, r->kind)];
    e->scope = scopes[s_index(s_scopes, 4, r->scope)];
    skus = s_strings(m, r->skus_json, &e->n_skus);
    cats = s_strings(m, r->categories_json, &e->n_categories);
    e->skus = (const char *const *)skus;
    e->categories = (const char *const *)cats;
    e->percent = r->percent_off;
    e->amount = r->amount_off;
    json_t *b = json_loads(r->bundle_json, 0, NULL);
    eng_item_t *items = m->alloc(m->ctx, (json_array_size(b) + 1) * sizeof *items);
    for (size_t i = 0; i < json_array_size(b); i++) {
        json_t *o = json_array_get(b, i);
        items[i].sku = s_dup(m, json_string_value(json_object_get(o, "sku")) ?: "");
        items[i].qty = (int32_t)json_integer_value(json_object_get(o, "quantity"));
    }
    e->bundle = items;
    e->n_bundle = json_array_size(b);
    json_decref(b);
    e->bundle_price = r->bundle_price;
    e->buy = r->buy;
    e->get = r->get;
    e->min_spend = r->min_spend;
    e->starts_ms = r->starts_ms;
    e->ends_ms = r->ends_ms;
    e->priority = r->priority;
    e->exclusive = r->exclusive;
    e->allow_loss = r->allow_loss;
    e->budget = r->budget;
    e->spent = r->spent;
    e->usage_cap = r->usage_cap;
    e->used = r->used;
    e->reason = eng_rule_reason(m, e);
}

/* --- validation ------------------------------------------------------------------------ */

/* Checks a money field and that it shares the rule's currency (*cur). */
static status_t s_money_field(call_t *call, const char *field, const Shop__Common__V1__Money *m,
                              bool positive, const char **cur)
{
    char err[200];

    if (!m)
        return STATUS_OK;
    if (money_check(field, m->minor_units, m->currency, err, sizeof err) != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s", err);
    if (positive && m->minor_units == 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s: must be more than 0", field);
    if (*cur && strcmp(*cur, m->currency) != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s: in %s, but the rule's other amounts are in %s",
                         field, m->currency, *cur);
    *cur = m->currency;
    return STATUS_OK;
}

#define TRY(x)                     \
    do {                           \
        status_t rc_ = (x);        \
        if (rc_ != STATUS_OK)      \
            return rc_;            \
    } while (0)

/* Validates a rule and turns it into a row: JSON for its arrays (built in
 * the four arrays given), and the targets a cart must hold. */
static status_t s_fill(call_t *call, const rule_t *m, store_rule_t *r, char **targets_json,
                       json_t *skus, json_t *cats, json_t *bundle, json_t *targets)
{
    const char *cur = NULL;
    size_t cl = m ? strlen(m->code) : 0, nl = m ? strlen(m->name) : 0;

    memset(r, 0, sizeof *r);
    *targets_json = NULL;
    if (!m)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule: required");
    if (!promo_valid_sku(m->code) || cl > 64)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.code: 1 to 64 of A-Z a-z 0-9 . _ -");
    if (nl < 1 || nl > 200)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.name: 1 to 200 characters");
    if (m->kind < 1 || m->kind > 4)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.kind: required");
    bool bundle_kind = m->kind == SHOP__PROMOTIONS__V1__RULE_KIND__RULE_KIND_BUNDLE_PRICE;
    if (!bundle_kind && (m->scope < 1 || m->scope > 3))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.scope: required");
    r->code = m->code;
    r->name = m->name;
    r->kind = s_kinds[m->kind];
    r->scope = bundle_kind ? "skus" : s_scopes[m->scope];

    /* what the rule applies to */
    if (!bundle_kind && m->scope == SHOP__PROMOTIONS__V1__RULE_SCOPE__RULE_SCOPE_SKUS &&
        (m->n_skus < 1 || m->n_skus > 200))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.skus: 1 to 200 SKUs for RULE_SCOPE_SKUS");
    if (!bundle_kind && m->scope == SHOP__PROMOTIONS__V1__RULE_SCOPE__RULE_SCOPE_CATEGORIES &&
        (m->n_categories < 1 || m->n_categories > 50))
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "rule.categories: 1 to 50 categories for RULE_SCOPE_CATEGORIES");
    if ((bundle_kind || m->scope != SHOP__PROMOTIONS__V1__RULE_SCOPE__RULE_SCOPE_SKUS) && m->n_skus)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.skus: only for RULE_SCOPE_SKUS");
    if ((bundle_kind || m->scope != SHOP__PROMOTIONS__V1__RULE_SCOPE__RULE_SCOPE_CATEGORIES) &&
        m->n_categories)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "rule.categories: only for RULE_SCOPE_CATEGORIES");
    for (size_t i = 0; i < m->n_skus; i++) {
        char key[80];
        if (!promo_valid_sku(m->skus[i]))
            return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.skus[%zu]: not a SKU code", i);
        json_array_append_new(skus, json_string(m->skus[i]));
        snprintf(key, sizeof key, "sku:%s", m->skus[i]);
        json_array_append_new(targets, json_string(key));
    }
    for (size_t i = 0; i < m->n_categories; i++) {
        size_t l = strlen(m->categories[i]);
        char key[120];
        if (l < 1 || l > 100)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "rule.categories[%zu]: 1 to 100 characters", i);
        json_array_append_new(cats, json_string(m->categories[i]));
        snprintf(key, sizeof key, "cat:%s", m->categories[i]);
        json_array_append_new(targets, json_string(key));
    }

    /* the terms of each kind, and only those */
    bool pct = m->kind == SHOP__PROMOTIONS__V1__RULE_KIND__RULE_KIND_PERCENT_OFF;
    bool amt = m->kind == SHOP__PROMOTIONS__V1__RULE_KIND__RULE_KIND_AMOUNT_OFF;
    bool bxgy = m->kind == SHOP__PROMOTIONS__V1__RULE_KIND__RULE_KIND_BUY_X_GET_Y;
    if (pct != (m->percent_off != 0) || m->percent_off > 100)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         pct ? "rule.percent_off: 1 to 100" : "rule.percent_off: only for RULE_KIND_PERCENT_OFF");
    if (amt != (m->amount_off != NULL))
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         amt ? "rule.amount_off: required" : "rule.amount_off: only for RULE_KIND_AMOUNT_OFF");
    if (bundle_kind != (m->n_bundle > 0) || bundle_kind != (m->bundle_price != NULL))
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         bundle_kind ? "rule.bundle and rule.bundle_price: both required"
                                     : "rule.bundle: only for RULE_KIND_BUNDLE_PRICE");
    if (bxgy != (m->buy_quantity != 0) || bxgy != (m->get_quantity != 0) ||
        m->buy_quantity + (uint64_t)m->get_quantity > 1000)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         bxgy ? "rule.buy_quantity and rule.get_quantity: at least 1 each, 1000 together"
                              : "rule.buy_quantity: only for RULE_KIND_BUY_X_GET_Y");
    if (bundle_kind && (m->n_bundle < 2 || m->n_bundle > 20))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.bundle: 2 to 20 items");
    for (size_t i = 0; i < m->n_bundle; i++) {
        const Shop__Promotions__V1__BundleItem *it = m->bundle[i];
        char key[80];
        if (!promo_valid_sku(it->sku) || it->quantity < 1 || it->quantity > 1000)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "rule.bundle[%zu]: a SKU code and a quantity of 1 to 1000", i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(m->bundle[k]->sku, it->sku) == 0)
                return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.bundle[%zu]: %s appears twice",
                                 i, it->sku);
        json_array_append_new(bundle, json_pack("{s:s,s:i}", "sku", it->sku, "quantity", it->quantity));
        snprintf(key, sizeof key, "sku:%s", it->sku);
        json_array_append_new(targets, json_string(key));
    }
    TRY(s_money_field(call, "rule.amount_off", m->amount_off, true, &cur));
    TRY(s_money_field(call, "rule.bundle_price", m->bundle_price, false, &cur));
    TRY(s_money_field(call, "rule.min_spend", m->min_spend, false, &cur));
    TRY(s_money_field(call, "rule.budget", m->budget, true, &cur));
    if (m->starts_at_ms < 0 || m->ends_at_ms < 0 ||
        (m->starts_at_ms && m->ends_at_ms && m->ends_at_ms <= m->starts_at_ms))
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "rule.ends_at_ms: must come after rule.starts_at_ms");
    if (m->priority < -1000 || m->priority > 1000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.priority: -1000 to 1000");
    if (m->usage_cap > 100000000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.usage_cap: at most 100000000");
    if (m->status > 2)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rule.status: unknown value %d", (int)m->status);

    r->status = m->status == SHOP__PROMOTIONS__V1__RULE_STATUS__RULE_STATUS_PAUSED ? "paused" : "active";
    r->currency = cur ? cur : "";
    r->percent_off = (int32_t)m->percent_off;
    r->amount_off = m->amount_off ? m->amount_off->minor_units : 0;
    r->bundle_price = m->bundle_price ? m->bundle_price->minor_units : 0;
    r->buy = (int32_t)m->buy_quantity;
    r->get = (int32_t)m->get_quantity;
    r->min_spend = m->min_spend ? m->min_spend->minor_units : 0;
    r->budget = m->budget ? m->budget->minor_units : 0;
    r->starts_ms = m->starts_at_ms;
    r->ends_ms = m->ends_at_ms;
    r->priority = m->priority;
    r->usage_cap = (int32_t)m->usage_cap;
    r->exclusive = m->exclusive;
    r->allow_loss = m->allow_loss;
    char *a = json_dumps(skus, JSON_COMPACT), *b = json_dumps(cats, JSON_COMPACT),
         *c = json_dumps(bundle, JSON_COMPACT), *t = json_dumps(targets, JSON_COMPACT);
    r->skus_json = call_strdup(call, a);
    r->categories_json = call_strdup(call, b);
    r->bundle_json = call_strdup(call, c);
    *targets_json = call_strdup(call, t);
    free(a);
    free(b);
    free(c);
    free(t);
    return STATUS_OK;
}

static status_t s_to_row(call_t *call, const rule_t *m, store_rule_t *r, char **targets_json)
{
    json_t *skus = json_array(), *cats = json_array(), *bundle = json_array(),
           *targets = json_array();
    status_t rc = s_fill(call, m, r, targets_json, skus, cats, bundle, targets);

    json_decref(skus);
    json_decref(cats);
    json_decref(bundle);
    json_decref(targets);
    return rc;
}

/* --- handlers ------------------------------------------------------------------------------ */

static void s_on_rule(void *arg, const store_rule_t *r)
{
    void **a = arg;
    *(rule_t **)a[1] = promo_rule_msg(a[0], r);
}

/* Reads the rule back as a message and emits PromotionChanged. */
static status_t s_changed(call_t *call, const char *code, rule_t **out)
{
    void *a[2] = {call, out};

    *out = NULL;
    if (store_rule_get(call_db(call), code, s_on_rule, a) != 0 || !*out)
        return call_db_fail(call, "read rule");
    Shop__Promotions__V1__PromotionChanged ev = SHOP__PROMOTIONS__V1__PROMOTION_CHANGED__INIT;
    ev.rule = *out;
    if (call_emit(call, &ev.base) != 0)
        return call_db_fail(call, "emit PromotionChanged");
    if (cache_written(call) != 0)
        return call_db_fail(call, "commit rule");
    return STATUS_OK;
}

static status_t s_write(call_t *call, const rule_t *m, bool update, rule_t **out)
{
    store_rule_t r;
    char *targets, other[80];

    TRY(s_to_row(call, m, &r, &targets));
    if (r.exclusive && strcmp(r.status, "active") == 0) {
        int rc = store_rule_tie(call_db(call), &r, targets, other, sizeof other);
        if (rc < 0)
            return call_db_fail(call, "check exclusive rules");
        if (rc == 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "rule.exclusive: ambiguous with exclusive rule %s (same priority, "
                             "overlapping scope and time); give one a different priority", other);
    }
    int rc = store_rule_write(call_db(call), &r, targets, update);
    if (rc < 0)
        return call_db_fail(call, update ? "update rule" : "insert rule");
    if (rc == 1)
        return update ? call_fail(call, STATUS_NOT_FOUND, "no rule %s", r.code)
                      : call_fail(call, STATUS_ALREADY_EXISTS, "rule %s already exists", r.code);
    return s_changed(call, r.code, out);
}

PROMO_HANDLER(promo_create_rule)
{
    const Shop__Promotions__V1__CreateRuleRequest *req = (const void *)request;
    Shop__Promotions__V1__CreateRuleResponse *resp = (void *)response;

    return s_write(call, req->rule, false, &resp->rule);
}

PROMO_HANDLER(promo_update_rule)
{
    const Shop__Promotions__V1__UpdateRuleRequest *req = (const void *)request;
    Shop__Promotions__V1__UpdateRuleResponse *resp = (void *)response;

    return s_write(call, req->rule, true, &resp->rule);
}

PROMO_HANDLER(promo_set_rule_status)
{
    const Shop__Promotions__V1__SetRuleStatusRequest *req = (const void *)request;
    Shop__Promotions__V1__SetRuleStatusResponse *resp = (void *)response;
    bool resume = req->status == SHOP__PROMOTIONS__V1__RULE_STATUS__RULE_STATUS_ACTIVE;

    if (!resume && req->status != SHOP__PROMOTIONS__V1__RULE_STATUS__RULE_STATUS_PAUSED)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "status: RULE_STATUS_ACTIVE or RULE_STATUS_PAUSED");
    if (resume) {
        /* resuming an exclusive rule must not make it tie with another */
        rule_t *cur = NULL;
        void *a[2] = {call, &cur};
        int rc = store_rule_get(call_db(call), req->code, s_on_rule, a);
        if (rc < 0)
            return call_db_fail(call, "read rule");
        if (rc == 1)
            return call_fail(call, STATUS_NOT_FOUND, "no rule %s", req->code);
        cur->status = SHOP__PROMOTIONS__V1__RULE_STATUS__RULE_STATUS_ACTIVE;
        return s_write(call, cur, true, &resp->rule);
    }
    int rc = store_rule_status(call_db(call), req->code, "paused");
    if (rc < 0)
        return call_db_fail(call, "pause rule");
    if (rc == 1)
        return call_fail(call, STATUS_NOT_FOUND, "no rule %s", req->code);
    return s_changed(call, req->code, &resp->rule);
}

typedef struct {
    call_t *call;
    Shop__Promotions__V1__ListRulesResponse *resp;
    size_t cap;
} list_t;

static void s_on_list(void *arg, const store_rule_t *r)
{
    list_t *l = arg;

    if (l->resp->n_rules == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        rule_t **rules = call_alloc(l->call, cap * sizeof *rules);
        if (l->resp->n_rules)
            memcpy(rules, l->resp->rules, l->resp->n_rules * sizeof *rules);
        l->resp->rules = rules;
        l->cap = cap;
    }
    l->resp->rules[l->resp->n_rules++] = promo_rule_msg(l->call, r);
}

PROMO_HANDLER(promo_list_rules)
{
    const Shop__Promotions__V1__ListRulesRequest *req = (const void *)request;
    list_t l = {call, (void *)response, 0};

    if (req->active_at_ms < 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "active_at_ms: 0 (all) or a time");
    if (store_rule_list(call_db(call), req->active_at_ms, s_on_list, &l) != 0)
        return call_db_fail(call, "list rules");
    return STATUS_OK;
}
