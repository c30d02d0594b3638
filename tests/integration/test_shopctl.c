/* test_shopctl: the operator's tool against the real catalog — replies as
 * JSON with exit 0, error statuses with exit 2 and the reply body, no
 * answer with exit 3, bad input with exit 1, methods and describe from the
 * descriptors, and events read back in order with decoded payloads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"
#include "slog.h"
#include "util.h"

static char s_out[65536];

/* Runs shopctl with `args` (shell words), stdout and stderr into s_out;
 * returns its exit status. */
static int s_run(const char *args)
{
    char cmd[2048];
    size_t n = 0;

    /* a shopctl that never ends fails its step instead of hanging the test */
    snprintf(cmd, sizeof cmd, "timeout -s KILL 60 '%s/shopctl' 2>&1 %s", getenv("SHOP_BIN_DIR"), args);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    n = fread(s_out, 1, sizeof s_out - 1, f);
    s_out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int s_count(const char *needle)
{
    int n = 0;

    for (const char *p = strstr(s_out, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* What holds numbering back (see the waits below): the cluster's sessions
 * with a transaction id, printed when a wait gives up. */
static void s_show_xid_holders(void)
{
    char cmd[1024];

    snprintf(cmd, sizeof cmd,
             "psql '%s' -X -At -c \"SELECT concat_ws(' ', 'xid holder:', pid, datname, usename, "
             "application_name, state, 'xid', backend_xid, 'since', xact_start, left(query, 120)) "
             "FROM pg_stat_activity WHERE backend_xid IS NOT NULL\" >&2",
             harness_pg_admin());
    fflush(NULL);
    if (system(cmd) != 0)
        fprintf(stderr, "(could not list the xid holders)\n");
}

/* Runs `events catalog --from 0 --count 100` until it shows `want` events
 * or 60 s pass (numbering waits for every transaction open in the cluster
 * when the events committed, another test's included); its exit status. */
static int s_wait_events(int want)
{
    int rc = -1;
    int64_t until = util_mono_us() + 60 * 1000000LL;

    while (util_mono_us() < until) {
        if ((rc = s_run("events catalog --from 0 --count 100")) == 0 && s_count("\"sequence\"") == want)
            return 0;
        usleep(50 * 1000);
    }
    fprintf(stderr, "test_shopctl: %d events not read back within 60 s (last exit %d)\n", want, rc);
    s_show_xid_holders();
    return rc;
}

int main(void)
{
    const char *svcs[] = {"catalog", NULL};
    char *conninfo = harness_create_db("t_shopctl", svcs);
    harness_service_t svc;

    slog_init("test_shopctl", SLOG_ERROR);
    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    CHECK_INT(harness_start_service(&svc, "shop-catalog", conninfo, NULL), 0);
    /* shopctl finds the service through the same variables a consumer uses */
    setenv("SHOP_CATALOG_RPC", svc.rpc, 1);
    setenv("SHOP_CATALOG_PUB", svc.pub, 1);

    CHECK_INT(s_run("call catalog CreateProduct '{\"product\":{\"title\":\"Pu-erh cake\","
                    "\"status\":\"PRODUCT_STATUS_ACTIVE\",\"skus\":[{\"code\":\"PE-357\","
                    "\"listPrice\":{\"minorUnits\":16800,\"currency\":\"CNY\"},"
                    "\"costPrice\":{\"minorUnits\":\"9100\",\"currency\":\"CNY\"}}]}}'"), 0);
    CHECK(strstr(s_out, "\"title\": \"Pu-erh cake\"") != NULL);
    CHECK(strstr(s_out, "\"minorUnits\": \"16800\"") != NULL);
    /* JSON from stdin */
    CHECK_INT(s_run("call catalog AdjustStock - < /dev/null"), 2);   /* {}: the service says sku is missing */
    CHECK_INT(s_run("call catalog AdjustStock - <<EOF\n{\"sku\":\"PE-357\",\"delta\":7,"
                    "\"reason\":\"receipt\"}\nEOF\n"), 0);
    CHECK(strstr(s_out, "\"onHand\": 7") != NULL);
    /* an idempotency key makes a repeated receipt harmless */
    CHECK_INT(s_run("--key rcv-1 call catalog AdjustStock '{\"sku\":\"PE-357\",\"delta\":3,"
                    "\"reason\":\"receipt\"}'"), 0);
    CHECK_INT(s_run("--key rcv-1 call catalog AdjustStock '{\"sku\":\"PE-357\",\"delta\":3,"
                    "\"reason\":\"receipt\"}'"), 0);
    CHECK(strstr(s_out, "\"onHand\": 10") != NULL);

    /* an error status: exit 2, the status on stderr, the body still shown */
    CHECK_INT(s_run("call catalog ReserveStock '{\"orderId\":\"o-1\",\"lines\":[{\"sku\":"
                    "\"PE-357\",\"quantity\":11}]}'"), 2);
    CHECK(strstr(s_out, "error: FAILED_PRECONDITION: ") != NULL);
    CHECK(strstr(s_out, "\"requested\": 11") != NULL);
    CHECK_INT(s_run("call catalog GetProduct '{\"sku\":\"NOPE\"}'"), 2);
    CHECK(strstr(s_out, "error: NOT_FOUND: no SKU NOPE") != NULL);

    /* bad input never leaves shopctl: exit 1, saying what is wrong */
    CHECK_INT(s_run("call catalog GetStock '{\"skus\":\"PE-357\"}'"), 1);
    CHECK(strstr(s_out, "skus: expected an array") != NULL);
    CHECK_INT(s_run("call catalog GetStock '{not json'"), 1);
    CHECK_INT(s_run("call catalog Teleport '{}'"), 1);
    CHECK(strstr(s_out, "has no method Teleport") != NULL);
    CHECK_INT(s_run("call warehouse GetStock '{}'"), 1);
    CHECK_INT(s_run("frobnicate"), 1);

    /* no answer: exit 3 */
    CHECK_INT(s_run("--timeout 300 --endpoint tcp://127.0.0.1:1 call catalog GetStock "
                    "'{\"skus\":[\"PE-357\"]}'"), 3);
    CHECK(strstr(s_out, "no answer") != NULL);

    /* descriptors */
    CHECK_INT(s_run("methods catalog"), 0);
    CHECK(strstr(s_out, "ReserveStock") && strstr(s_out, "ParetoReport"));
    CHECK_INT(s_run("describe catalog ReserveStock"), 0);
    CHECK(strstr(s_out, "ttlSeconds") != NULL);
    CHECK_INT(s_run("describe shop.catalog.v1.Product"), 0);
    CHECK(strstr(s_out, "PRODUCT_STATUS_ARCHIVED") != NULL);

    /* events: ProductCreated, StockChanged x2, ReservationRejected, in order
     * (numbered a moment after they commit; later still while a transaction
     * stays open elsewhere in the cluster, as another test's may) */
    CHECK_INT(s_wait_events(4), 0);
    CHECK_INT(s_count("\"sequence\""), 4);
    CHECK(strstr(s_out, "\"sequence\":\"1\",") != NULL && strstr(s_out, "\"sequence\":\"4\",") != NULL);
    CHECK(strstr(s_out, "\"type\":\"shop.catalog.v1.ReservationRejected\"") != NULL);
    CHECK(strstr(s_out, "\"payload\":{\"orderId\":\"o-1\"") != NULL);
    CHECK_INT(s_run("events catalog --from 2 --count 1"), 0);
    CHECK_INT(s_count("\"sequence\""), 1);
    CHECK(strstr(s_out, "\"sequence\":\"3\"") != NULL);
    CHECK_INT(s_run("call catalog AdjustStock '{\"sku\":\"PE-357\",\"delta\":-1,"
                    "\"reason\":\"damage\"}'"), 0);
    /* the relay numbers committed events a moment later; "from now" means
     * from the head, so wait until the head includes this one */
    CHECK_INT(s_wait_events(5), 0);
    CHECK_INT(s_count("\"sequence\""), 5);
    /* following: new events appear; the follower is stopped once the new
     * one is out (it may wait for another test's open transaction to be
     * numbered), or after 30 s */
    char follow[1024];
    snprintf(follow, sizeof follow,
             "-c 'out=$(mktemp); (sleep 0.5; \"%s/shopctl\" call catalog AdjustStock "
             "\"{\\\"sku\\\":\\\"PE-357\\\",\\\"delta\\\":2,\\\"reason\\\":\\\"count\\\"}\" "
             ">/dev/null) & timeout -s INT 30 \"%s/shopctl\" events catalog >\"$out\" & p=$!; "
             "for i in $(seq 300); do grep -q count \"$out\" && break; sleep 0.1; done; "
             "sleep 0.3; kill -INT $p; wait; cat \"$out\"; rm -f \"$out\"'",
             getenv("SHOP_BIN_DIR"), getenv("SHOP_BIN_DIR"));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "bash %s 2>&1", follow);
    FILE *f = popen(cmd, "r");
    size_t n = f ? fread(s_out, 1, sizeof s_out - 1, f) : 0;
    s_out[n] = '\0';
    if (f)
        pclose(f);
    CHECK_INT(s_count("\"sequence\""), 1);   /* only the new one: from now */
    CHECK(strstr(s_out, "\"reason\":\"count\"") != NULL);

    if (svc.proc)
        CHECK_INT(harness_stop(&svc.proc, 10000), 0);
    free(conninfo);
    return check_done();
}
