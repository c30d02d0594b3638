/* test_harness: the integration-test harness itself against the throwaway cluster. */
#include "check.h"
#include "harness.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Child mode: a tiny HTTP server on $HARNESS_CHILD_PORT that answers /readyz
 * with 200 and the value of $HARNESS_CHILD_GREETING; exits 0 on SIGTERM. */
static void s_on_term(int sig)
{
    (void)sig;
    _exit(0);
}

static int s_child(const char *port_s)
{
    signal(SIGTERM, s_on_term);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)atoi(port_s));
    /* Not ready at once, so wait_ready has to poll. */
    usleep(200 * 1000);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 8) != 0)
        return 2;
    fprintf(stderr, "child listening on %s\n", port_s);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            continue;
        char req[1024] = {0};
        ssize_t n = recv(c, req, sizeof req - 1, 0);
        char resp[512];
        const char *greeting = getenv("HARNESS_CHILD_GREETING");
        if (n > 0 && strncmp(req, "GET /readyz ", 12) == 0)
            snprintf(resp, sizeof resp, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n%s",
                     greeting ? greeting : "");
        else
            snprintf(resp, sizeof resp, "HTTP/1.0 404 Not Found\r\n\r\nno");
        if (send(c, resp, strlen(resp), MSG_NOSIGNAL) < 0)
            fprintf(stderr, "send failed\n");
        close(c);
    }
}

static char *s_scalar(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    char *out = NULL;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            out = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return out;
}

static bool s_ok(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    bool ok = false;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    PQfinish(c);
    return ok;
}

static void s_test_db(void)
{
    const char *svcs[] = {"hcat", "hord", NULL};
    char *ci = harness_create_db("harness_db", svcs);
    CHECK(ci != NULL);
    if (!ci)
        return;
    CHECK(strstr(ci, "user=hcat") != NULL);
    CHECK(strstr(ci, "dbname=harness_db") != NULL);

    char *who = s_scalar(ci, "SELECT current_user");
    CHECK_STR(who ? who : "", "hcat");
    free(who);

    char *admin = harness_conninfo("harness_db", "postgres");
    char *owner = s_scalar(admin, "SELECT nspowner::regrole::text FROM pg_namespace "
                                  "WHERE nspname = 'hord'");
    CHECK_STR(owner ? owner : "", "hord");
    free(owner);
    char *super = s_scalar(admin, "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'hcat'");
    CHECK_STR(super ? super : "", "false");
    free(super);

    /* Each role works in its own schema and nowhere else. */
    CHECK(s_ok(ci, "CREATE TABLE hcat.t (i int)"));
    CHECK(!s_ok(ci, "CREATE TABLE public.t (i int)"));
    char *ord = harness_conninfo("harness_db", "hord");
    CHECK(s_ok(ord, "CREATE TABLE hord.t (i int)"));
    CHECK(!s_ok(ord, "SELECT * FROM hcat.t"));
    CHECK(!s_ok(ci, "INSERT INTO hord.t VALUES (1)"));

    /* Created again: dropped and recreated empty; roles reused. */
    char *ci2 = harness_create_db("harness_db", svcs);
    CHECK(ci2 != NULL);
    CHECK(!s_ok(admin, "SELECT * FROM hcat.t"));
    CHECK(s_ok(admin, "SELECT 1 FROM pg_namespace WHERE nspname = 'hcat'"));

    /* Bad input changes nothing. */
    const char *none[] = {NULL};
    CHECK(harness_create_db("harness_db", none) == NULL);

    free(ci2);
    free(ord);
    free(admin);
    free(ci);
}

static void s_test_ports(void)
{
    int a = harness_free_port();
    int b = harness_free_port();
    CHECK(a > 1024 && a < 65536);
    CHECK(b > 1024 && b < 65536);
    /* Nothing listens there, so an HTTP GET fails cleanly. */
    CHECK_INT(harness_http_get(a, "/readyz", NULL), -1);
    CHECK_INT(harness_wait_ready(a, 100), -1);
}

static void s_test_spawn(const char *self_dir)
{
    int port = harness_free_port();
    char port_env[64];
    snprintf(port_env, sizeof port_env, "HARNESS_CHILD_PORT=%d", port);
    const char *env[] = {port_env, "HARNESS_CHILD_GREETING=hello-from-child", NULL};
    setenv("SHOP_BIN_DIR", self_dir, 1);

    harness_proc_t *p = harness_spawn("test_harness", env);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK(harness_pid(p) > 0);
    CHECK_INT(harness_wait_ready(port, 5000), 0);
    char *body = NULL;
    CHECK_INT(harness_http_get(port, "/readyz", &body), 200);
    CHECK_STR(body ? body : "", "hello-from-child");
    free(body);
    CHECK_INT(harness_http_get(port, "/nope", NULL), 404);
    CHECK_INT(harness_stop(&p, 2000), 0);
    CHECK(p == NULL);

    /* Killed: reaped, status not asked for. */
    p = harness_spawn("test_harness", env);
    CHECK(p != NULL);
    pid_t pid = harness_pid(p);
    harness_kill(&p);
    CHECK(p == NULL);
    CHECK(kill(pid, 0) != 0);

    /* A binary that does not exist is a clean NULL. */
    CHECK(harness_spawn("no-such-binary", env) == NULL);
}

static void s_test_restart(void)
{
    PGconn *before = PQconnectdb(harness_pg_admin());
    CHECK(PQstatus(before) == CONNECTION_OK);
    CHECK_INT(harness_pg_restart(), 0);
    /* The old session is gone; a new one works. */
    PGresult *r = PQexec(before, "SELECT 1");
    CHECK(PQresultStatus(r) != PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(before);
    CHECK(s_ok(harness_pg_admin(), "SELECT 1"));
}

int main(void)
{
    const char *child_port = getenv("HARNESS_CHILD_PORT");
    if (child_port)
        return s_child(child_port);

    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    if (n <= 0)
        return check_done();
    self[n] = '\0';
    *strrchr(self, '/') = '\0';

    s_test_db();
    s_test_ports();
    s_test_spawn(self);
    s_test_restart();
    return check_done();
}
