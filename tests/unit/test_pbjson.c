/* test_pbjson: the proto3 JSON mapping both ways — round trips of nested,
 * repeated, enum, 64-bit and bytes fields, both name styles, every kind of
 * bad input named with its path, zero values with and without
 * PBJSON_DEFAULTS, and the registry of types. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pbjson.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "shop/common/v1/common.pb-c.h"

static ProtobufCMessage *s_parse(const ProtobufCMessageDescriptor *d, const char *text, char *err,
                                 size_t errlen)
{
    json_t *j = json_loads(text, 0, NULL);
    ProtobufCMessage *m = j ? pbjson_to_message(d, j, err, errlen) : NULL;

    json_decref(j);
    return m;
}

/* Parses text as d, prints it back and compares with `expect` (as JSON). */
static void s_round_trip(const ProtobufCMessageDescriptor *d, const char *text, const char *expect,
                         int flags)
{
    char err[256] = "";
    ProtobufCMessage *m = s_parse(d, text, err, sizeof err);
    json_t *out = m ? pbjson_from_message(m, flags) : NULL, *want = json_loads(expect, 0, NULL);

    CHECK_STR(err, "");
    CHECK(out && want && json_equal(out, want));
    if (out && want && !json_equal(out, want)) {
        char *got = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "  got:  %s\n  want: %s\n", got, expect);
        free(got);
    }
    json_decref(out);
    json_decref(want);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

/* Parsing fails with exactly `expect` as the error. */
static void s_refused(const ProtobufCMessageDescriptor *d, const char *text, const char *expect)
{
    char err[256] = "";
    ProtobufCMessage *m = s_parse(d, text, err, sizeof err);

    CHECK(m == NULL);
    CHECK_STR(err, expect);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

int main(void)
{
    const ProtobufCMessageDescriptor *product = &shop__catalog__v1__product__descriptor;
    const ProtobufCMessageDescriptor *reserve = &shop__catalog__v1__reserve_stock_request__descriptor;
    const ProtobufCMessageDescriptor *envelope = &shop__common__v1__envelope__descriptor;
    char err[256];

    /* nested, repeated, enum, int64 (as string either way), proto names */
    s_round_trip(product,
                 "{\"id\":\"42\",\"title\":\"Tea\",\"status\":\"PRODUCT_STATUS_ACTIVE\","
                 "\"attributes\":[{\"name\":\"a\",\"value\":\"1\"},{\"name\":\"b\",\"value\":\"\"}],"
                 "\"skus\":[{\"code\":\"T-1\",\"list_price\":{\"minor_units\":1990,\"currency\":"
                 "\"CNY\"},\"lowStockThreshold\":3},{\"code\":\"T-2\"}],\"created_at_ms\":null}",
                 "{\"id\":\"42\",\"title\":\"Tea\",\"status\":\"PRODUCT_STATUS_ACTIVE\","
                 "\"attributes\":[{\"name\":\"a\",\"value\":\"1\"},{\"name\":\"b\"}],"
                 "\"skus\":[{\"code\":\"T-1\",\"listPrice\":{\"minorUnits\":\"1990\",\"currency\":"
                 "\"CNY\"},\"lowStockThreshold\":3},{\"code\":\"T-2\"}]}",
                 0);
    /* enum by number; zero values printed only with PBJSON_DEFAULTS */
    s_round_trip(product, "{\"status\":3}", "{\"status\":\"PRODUCT_STATUS_ARCHIVED\"}", 0);
    s_round_trip(&shop__catalog__v1__stock_level__descriptor, "{\"sku\":\"X\",\"onHand\":2}",
                 "{\"sku\":\"X\",\"onHand\":2,\"reserved\":0,\"available\":0,"
                 "\"lowStockThreshold\":0}",
                 PBJSON_DEFAULTS);
    /* 64-bit extremes, bytes in and out as base64 (URL-safe accepted) */
    s_round_trip(envelope, "{\"sequence\":\"18446744073709551615\",\"occurredAtMs\":"
                           "\"-9223372036854775808\",\"payload\":\"AP8Bgg\"}",
                 "{\"sequence\":\"18446744073709551615\",\"occurredAtMs\":"
                 "\"-9223372036854775808\",\"payload\":\"AP8Bgg==\"}", 0);
    s_round_trip(envelope, "{\"payload\":\"-_8=\"}", "{\"payload\":\"+/8=\"}", 0);
    s_round_trip(&shop__catalog__v1__search_hit__descriptor, "{\"rank\":\"NaN\"}",
                 "{\"rank\":\"NaN\"}", 0);
    s_round_trip(&shop__catalog__v1__search_hit__descriptor, "{\"rank\":0.5}", "{\"rank\":0.5}", 0);

    /* what arrives in the C structure */
    ProtobufCMessage *m = s_parse(reserve, "{\"orderId\":\"o-1\",\"ttlSeconds\":4294967295,"
                                           "\"lines\":[{\"sku\":\"A\",\"quantity\":-2147483648}]}",
                                  err, sizeof err);
    CHECK(m != NULL);
    if (m) {
        Shop__Catalog__V1__ReserveStockRequest *r = (void *)m;
        CHECK_STR(r->order_id, "o-1");
        CHECK(r->ttl_seconds == 4294967295u);
        CHECK_INT(r->n_lines, 1);
        CHECK_INT(r->lines[0]->quantity, -2147483647 - 1);
        /* it packs and unpacks like any message */
        size_t len = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(len);
        protobuf_c_message_pack(m, buf);
        Shop__Catalog__V1__ReserveStockRequest *back =
            shop__catalog__v1__reserve_stock_request__unpack(NULL, len, buf);
        CHECK(back && strcmp(back->lines[0]->sku, "A") == 0);
        if (back)
            shop__catalog__v1__reserve_stock_request__free_unpacked(back, NULL);
        free(buf);
        protobuf_c_message_free_unpacked(m, NULL);
    }

    /* bad input: refused, with the path of the bad value */
    s_refused(product, "{\"titel\":\"x\"}", "shop.catalog.v1.Product has no field titel");
    s_refused(product, "{\"title\":5}", "title: expected a string");
    s_refused(product, "{\"status\":\"ACTIVE\"}",
              "status: ACTIVE is not a value of shop.catalog.v1.ProductStatus");
    s_refused(product, "{\"skus\":{\"code\":\"x\"}}", "skus: expected an array");
    s_refused(product, "{\"skus\":[{\"code\":\"a\"},{\"listPrice\":{\"minorUnits\":\"12x\"}}]}",
              "skus[1].listPrice.minorUnits: expected an integer");
    s_refused(product, "{\"skus\":[{\"lowStockThreshold\":3000000000}]}",
              "skus[0].lowStockThreshold: out of range");
    s_refused(product, "{\"id\":\"9223372036854775808\"}", "id: out of range");
    s_refused(product, "{\"id\":1.5}", "id: expected an integer");
    s_refused(product, "{\"skus\":[7]}", "skus[0]: expected an object");
    s_refused(reserve, "{\"ttlSeconds\":-1}", "ttlSeconds: out of range");
    s_refused(reserve, "{\"ttlSeconds\":\"-1\"}", "ttlSeconds: expected an integer");
    s_refused(envelope, "{\"payload\":\"not base64!\"}", "payload: expected base64");
    s_refused(envelope, "{\"sequence\":true}", "sequence: expected an integer");
    s_refused(reserve, "{\"orderId\":\"a\",\"order_id\":\"b\"}", "orderId: given twice");
    s_refused(product, "{\"list\":[]}", "shop.catalog.v1.Product has no field list");
    json_t *arr = json_array();
    CHECK(pbjson_to_message(product, arr, err, sizeof err) == NULL);
    json_decref(arr);

    /* the registry knows every generated type */
    CHECK(pbjson_message_type("shop.catalog.v1.Product") == product);
    CHECK(pbjson_message_type("shop.common.v1.Envelope") == envelope);
    CHECK(pbjson_message_type("shop.catalog.v1.Nope") == NULL);
    CHECK(pbjson_service_type("shop.catalog.v1.CatalogService") ==
          &shop__catalog__v1__catalog_service__descriptor);
    CHECK(pbjson_service_type("shop.common.v1.EventService") != NULL);
    return check_done();
}
