/* replica: the catalog's products as promotions needs them (list price,
 * cost for the margin guard, category, whether it is for sale), kept from
 * ProductCreated and ProductUpdated. Applied by the runtime's subscriber,
 * exactly once and in order; other catalog events are skipped. */
#include <string.h>

#include "promotions.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "slog.h"

static int s_product(db_t *db, const Shop__Catalog__V1__Product *p)
{
    if (!p)
        return 0;
    for (size_t i = 0; i < p->n_skus; i++) {
        const Shop__Catalog__V1__Sku *s = p->skus[i];
        if (!s->list_price || !s->cost_price)
            continue;
        store_sku_t row = {
            .sku = s->code,
            .title = p->title,
            .category = p->category,
            .currency = s->list_price->currency,
            .product_id = p->id,
            .list_price = s->list_price->minor_units,
            .cost_price = s->cost_price->minor_units,
            .active = p->status == SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE,
        };
        if (store_sku_upsert(db, &row) != 0)
            return -1;
    }
    return 0;
}

int promo_apply_catalog(db_t *db, const Shop__Common__V1__Envelope *event, void *settings)
{
    const ProtobufCBinaryData *b = &event->payload;
    int rc = 1;   /* the rest of the stream needs nothing here */

    (void)settings;
    if (strcmp(event->type, "shop.catalog.v1.ProductCreated") == 0) {
        Shop__Catalog__V1__ProductCreated *e =
            shop__catalog__v1__product_created__unpack(NULL, b->len, b->data);
        if (!e) {
            slog_error("promotions: event %s %llu is malformed; skipped", event->type,
                       (unsigned long long)event->sequence);
            return 1;
        }
        rc = s_product(db, e->product);
        shop__catalog__v1__product_created__free_unpacked(e, NULL);
    } else if (strcmp(event->type, "shop.catalog.v1.ProductUpdated") == 0) {
        Shop__Catalog__V1__ProductUpdated *e =
            shop__catalog__v1__product_updated__unpack(NULL, b->len, b->data);
        if (!e) {
            slog_error("promotions: event %s %llu is malformed; skipped", event->type,
                       (unsigned long long)event->sequence);
            return 1;
        }
        rc = s_product(db, e->product);
        shop__catalog__v1__product_updated__free_unpacked(e, NULL);
    }
    return rc;
}
