/* test_metrics: counts per method and status, histogram buckets at their
 * edges, stream gauges, and a render every line of which parses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"

/* Every line is a comment or `name{labels} value` / `name value`. */
static int s_parses(const char *text)
{
    char *copy = strdup(text), *save = NULL;
    int ok = 1;

    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        char *end = NULL;
        if (!sp || sp == line) {
            ok = 0;
            break;
        }
        strtod(sp + 1, &end);
        if (*end != '\0' || end == sp + 1)
            ok = 0;
        char *brace = strchr(line, '{');
        if (brace && (brace > sp || *(sp - 1) != '}'))
            ok = 0;
        for (char *p = line; p < (brace ? brace : sp); p++)
            if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9')))
                ok = 0;
        if (!ok) {
            fprintf(stderr, "unparsable line: %s\n", line);
            break;
        }
    }
    free(copy);
    return ok;
}

int main(void)
{
    const char *methods[] = {"shop.x.v1.X/A", "shop.x.v1.X/B"};
    const char *streams[] = {"catalog"};
    metrics_t *m = metrics_new("x", methods, 2, streams, 1);

    CHECK(m != NULL);
    metrics_request(m, 0, STATUS_OK, 500);        /* exactly 0.5 ms: le=0.0005 */
    metrics_request(m, 0, STATUS_OK, 501);        /* just above: le=0.001 */
    metrics_request(m, 0, STATUS_NOT_FOUND, 7000000); /* 7 s: only +Inf */
    metrics_request(m, 1, STATUS_INVALID_ARGUMENT, 100);
    metrics_request(m, 99, STATUS_UNIMPLEMENTED, 100);
    metrics_published(m, 5, 42, 3);
    metrics_connections(m, 3);
    metrics_applied(m, 0, 7, 40, 42);
    metrics_consumer_error(m, 0);
    metrics_applied(m, 5, 1, 1, 1);               /* out of range: ignored */

    char *t = metrics_render(m);
    CHECK(t != NULL);
    if (t) {
        CHECK(strstr(t, "shop_requests_total{method=\"shop.x.v1.X/A\",code=\"OK\"} 2\n"));
        CHECK(strstr(t, "shop_requests_total{method=\"shop.x.v1.X/A\",code=\"NOT_FOUND\"} 1\n"));
        CHECK(strstr(t, "shop_requests_total{method=\"shop.x.v1.X/B\",code=\"INVALID_ARGUMENT\"} 1\n"));
        CHECK(strstr(t, "shop_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 1\n"));
        CHECK(strstr(t, "shop_request_seconds_bucket{method=\"shop.x.v1.X/A\",le=\"0.0005\"} 1\n"));
        CHECK(strstr(t, "shop_request_seconds_bucket{method=\"shop.x.v1.X/A\",le=\"0.001\"} 2\n"));
        CHECK(strstr(t, "shop_request_seconds_bucket{method=\"shop.x.v1.X/A\",le=\"5\"} 2\n"));
        CHECK(strstr(t, "shop_request_seconds_bucket{method=\"shop.x.v1.X/A\",le=\"+Inf\"} 3\n"));
        CHECK(strstr(t, "shop_request_seconds_count{method=\"shop.x.v1.X/A\"} 3\n"));
        CHECK(strstr(t, "shop_events_published_total 5\n"));
        CHECK(strstr(t, "\nshop_rpc_connections 3\n"));
        CHECK(strstr(t, "shop_outbox_head_sequence 42\n"));
        CHECK(strstr(t, "shop_events_applied_total{stream=\"catalog\"} 7\n"));
        CHECK(strstr(t, "shop_consumer_cursor{stream=\"catalog\"} 40\n"));
        CHECK(strstr(t, "shop_consumer_lag_events{stream=\"catalog\"} 2\n"));
        CHECK(strstr(t, "shop_consumer_errors_total{stream=\"catalog\"} 1\n"));
        CHECK(s_parses(t));
        free(t);
    }
    metrics_destroy(&m);
    CHECK(m == NULL);
    metrics_destroy(&m);
    return check_done();
}
