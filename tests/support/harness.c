/* harness: throwaway databases, free ports and real service processes for integration tests. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct harness_proc {
    pid_t pid;
    char *binary;
};

#define S_DEFAULT_PG_BIN "/usr/lib/postgresql/15/bin"
#define S_HTTP_MAX       (4 * 1024 * 1024)

static char s_admin[512];

static long long s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static const char *s_env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static const char *s_pgdir(void)
{
    const char *dir = getenv("SHOP_TEST_PGDIR");
    if (!dir || !*dir) {
        fprintf(stderr, "harness: SHOP_TEST_PGDIR is not set; run the test through ctest "
                        "(the pg fixture starts the cluster)\n");
        exit(1);
    }
    return dir;
}

/* The value of `key` (e.g. "port") in the admin conninfo, copied into out. */
static int s_admin_field(const char *key, char *out, size_t outlen)
{
    const char *ci = harness_pg_admin();
    size_t klen = strlen(key);
    const char *p = ci;
    while ((p = strstr(p, key)) != NULL) {
        if ((p == ci || p[-1] == ' ') && p[klen] == '=') {
            p += klen + 1;
            size_t n = strcspn(p, " \n");
            if (n + 1 > outlen)
                return -1;
            memcpy(out, p, n);
            out[n] = '\0';
            return 0;
        }
        p += klen;
    }
    return -1;
}

const char *harness_pg_admin(void)
{
    if (s_admin[0])
        return s_admin;
    char path[1024];
    snprintf(path, sizeof path, "%s/conninfo", s_pgdir());
    FILE *f = fopen(path, "r");
    if (!f || !fgets(s_admin, sizeof s_admin, f)) {
        fprintf(stderr,
                "harness: cannot read %s (%s); is the pg fixture (tests/pg/start) "
                "running?\n",
                path, f ? "empty" : strerror(errno));
        exit(1);
    }
    fclose(f);
    s_admin[strcspn(s_admin, "\r\n")] = '\0';
    return s_admin;
}

char *harness_conninfo(const char *db, const char *role)
{
    char host[256], port[32];
    if (s_admin_field("host", host, sizeof host) != 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (s_admin_field("port", port, sizeof port) != 0)
        snprintf(port, sizeof port, "5432");
    char *out = NULL;
    if (asprintf(&out, "host=%s port=%s user=%s dbname=%s", host, port, role, db) < 0)
        return NULL;
    return out;
}

/* Runs argv (no shell) and waits; returns its exit status, or -1. */
static int s_run(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* psql from the PostgreSQL binaries the cluster runs on, else from PATH. */
static void s_psql_path(char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/psql", s_env_or("SHOP_PG_BIN", S_DEFAULT_PG_BIN));
    if (access(out, X_OK) != 0)
        snprintf(out, outlen, "psql");
}

static int s_exec_admin(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    return rc;
}

/* Runs deploy/db/service.sql for `service` in `db`, as deploy does. */
static int s_provision(const char *db, const char *service)
{
    char psql[1024], script[1024], svc[256];
    char *ci = NULL;
    int rc = -1;

    s_psql_path(psql, sizeof psql);
    snprintf(script, sizeof script, "%s/deploy/db/service.sql", s_env_or("SHOP_SOURCE_DIR", "."));
    snprintf(svc, sizeof svc, "service=%s", service);
    ci = harness_conninfo(db, "postgres");
    if (!ci)
        goto fail;
    char *argv[] = {psql,   "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", svc, "-f",
                    script, "-d", ci,   NULL};
    /* Concurrent tests may create the same role at the same moment; the
     * loser fails on the unique index, and a retry finds the role there. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (s_run(argv) == 0) {
            rc = 0;
            break;
        }
        s_sleep_ms(100 + 100 * attempt);
    }
    if (rc != 0)
        fprintf(stderr, "harness: %s failed for service %s in %s\n", script, service, db);
fail:
    free(ci);
    return rc;
}

char *harness_create_db(const char *db, const char *const *services)
{
    PGconn *conn = NULL;
    char *ident = NULL, *sql = NULL, *out = NULL;

    if (!db || !services || !services[0])
        goto fail;
    conn = PQconnectdb(harness_pg_admin());
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "harness: connect %s: %s", harness_pg_admin(), PQerrorMessage(conn));
        goto fail;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    ident = PQescapeIdentifier(conn, db, strlen(db));
    if (!ident)
        goto fail;
    if (asprintf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident) < 0) {
        sql = NULL;
        goto fail;
    }
    if (s_exec_admin(conn, sql) != 0)
        goto fail;
    free(sql);
    if (asprintf(&sql, "CREATE DATABASE %s", ident) < 0) {
        sql = NULL;
        goto fail;
    }
    if (s_exec_admin(conn, sql) != 0)
        goto fail;
    for (size_t i = 0; services[i]; i++) {
        if (s_provision(db, services[i]) != 0)
            goto fail;
    }
    out = harness_conninfo(db, services[0]);
fail:
    free(sql);
    if (ident)
        PQfreemem(ident);
    PQfinish(conn);
    return out;
}

/* A port below Linux's ephemeral range (32768 and up by default), free
 * now and not handed out before by this process (a test takes its
 * services' ports before it starts them): one the kernel picks could be handed out again at once as the local
 * port of some connection (a test running beside this one, a service's own
 * connections), and the service that was to bind it would fail. */
int harness_free_port(void)
{
    static unsigned seed;
    static int given[512];   /* handed out by this process: free now, maybe not bound yet */
    static size_t n_given;

    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    for (int attempt = 0; attempt < 200; attempt++) {
        struct sockaddr_in sa;
        int port = 20000 + (int)(rand_r(&seed) % 12000);
        bool again = false;
        for (size_t i = 0; i < n_given && i < sizeof given / sizeof given[0] && !again; i++)
            again = given[i] == port;
        if (again)
            continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)port);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        close(fd);
        if (rc == 0) {
            given[n_given++ % (sizeof given / sizeof given[0])] = port;
            return port;
        }
    }
    return -1;
}

/* environ with each "NAME=VALUE" of `extra` added or replacing NAME. The
 * array is malloc'd; its strings are borrowed. */
static char **s_merge_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **out = calloc(n + m + 1, sizeof *out);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strcspn(environ[i], "=");
        bool replaced = false;
        for (size_t j = 0; j < m; j++) {
            if (strncmp(environ[i], extra[j], nl) == 0 && extra[j][nl] == '=')
                replaced = true;
        }
        if (!replaced)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        out[k++] = (char *)extra[j];
    out[k] = NULL;
    return out;
}

harness_proc_t *harness_spawn(const char *binary, const char *const *env)
{
    harness_proc_t *p = NULL;
    char **envp = NULL;
    char path[1024], logdir[1024];
    int pipefd[2] = {-1, -1};
    pid_t parent = getpid();

    snprintf(path, sizeof path, "%s/%s", s_env_or("SHOP_BIN_DIR", "."), binary);
    snprintf(logdir, sizeof logdir, "%s", s_env_or("SHOP_TEST_LOGDIR", "/tmp"));
    if (mkdir(logdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "harness: mkdir %s: %s\n", logdir, strerror(errno));
        goto fail;
    }
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "harness: %s: %s (is it built?)\n", path, strerror(errno));
        goto fail;
    }
    p = calloc(1, sizeof *p);
    if (!p || !(p->binary = strdup(binary)))
        goto fail;
    envp = s_merge_env(env);
    if (!envp)
        goto fail;
    /* A close-on-exec pipe tells the parent whether exec worked. */
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        goto fail;
    fflush(NULL);
    p->pid = fork();
    if (p->pid < 0)
        goto fail;
    if (p->pid == 0) {
        int err;
        char log[1200];
        /* A test that crashes must not leave its services running. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        snprintf(log, sizeof log, "%s/%s-%d.log", logdir, binary, (int)getpid());
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) {
            err = errno;
            goto child_fail;
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            close(devnull);
        }
        char *argv[] = {path, NULL};
        execve(path, argv, envp);
        err = errno;
child_fail:
        if (write(pipefd[1], &err, sizeof err) < 0) {
        }
        _exit(127);
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    int child_err = 0;
    ssize_t got;
    while ((got = read(pipefd[0], &child_err, sizeof child_err)) < 0 && errno == EINTR) {
    }
    close(pipefd[0]);
    pipefd[0] = -1;
    if (got > 0) {
        fprintf(stderr, "harness: exec %s: %s\n", path, strerror(child_err));
        waitpid(p->pid, NULL, 0);
        goto fail;
    }
    free(envp);
    return p;
fail:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    free(envp);
    if (p)
        free(p->binary);
    free(p);
    return NULL;
}

pid_t harness_pid(const harness_proc_t *p)
{
    return p ? p->pid : -1;
}

int harness_http_get(int port, const char *path, char **body)
{
    struct sockaddr_in sa;
    struct timeval tv = {2, 0};
    char *buf = NULL, *req = NULL;
    size_t len = 0, cap = 0;
    int status = -1;
    int fd = -1;

    if (body)
        *body = NULL;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto fail;
    int reqlen = asprintf(&req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", path, port);
    if (reqlen < 0) {
        req = NULL;
        goto fail;
    }
    for (int off = 0; off < reqlen;) {
        ssize_t n = send(fd, req + off, (size_t)(reqlen - off), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        off += (int)n;
    }
    for (;;) {
        if (cap - len < 4096) {
            if (cap >= S_HTTP_MAX)
                goto fail;
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap + 1);
            if (!nb)
                goto fail;
            buf = nb;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (!buf)
        goto fail;
    buf[len] = '\0';
    int code;
    if (sscanf(buf, "HTTP/%*d.%*d %d", &code) != 1)
        goto fail;
    const char *sep = strstr(buf, "\r\n\r\n");
    if (body) {
        *body = strdup(sep ? sep + 4 : "");
        if (!*body)
            goto fail;
    }
    status = code;
fail:
    free(req);
    free(buf);
    if (fd >= 0)
        close(fd);
    return status;
}

long long harness_metric(int port, const char *name)
{
    char *text = NULL, line[200], *at;
    long long v = -1;

    snprintf(line, sizeof line, "\n%s ", name);
    if (harness_http_get(port, "/metrics", &text) == 200 && text && (at = strstr(text, line)))
        v = strtoll(at + strlen(line), NULL, 10);
    free(text);
    return v;
}

int harness_wait_ready(int admin_port, int timeout_ms)
{
    long long deadline = s_now_ms() + timeout_ms;
    do {
        if (harness_http_get(admin_port, "/readyz", NULL) == 200)
            return 0;
        s_sleep_ms(25);
    } while (s_now_ms() < deadline);
    return -1;
}

static int s_status_of(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

static void s_proc_free(harness_proc_t **pp)
{
    free((*pp)->binary);
    free(*pp);
    *pp = NULL;
}

int harness_stop(harness_proc_t **pp, int timeout_ms)
{
    if (!pp || !*pp)
        return -1;
    harness_proc_t *p = *pp;
    int st = 0, rc = -1;
    long long deadline = s_now_ms() + timeout_ms;

    if (kill(p->pid, SIGTERM) != 0)
        goto reap;
    for (;;) {
        pid_t w = waitpid(p->pid, &st, WNOHANG);
        if (w == p->pid) {
            rc = s_status_of(st);
            goto done;
        }
        if (w < 0 && errno != EINTR)
            goto done;
        if (s_now_ms() >= deadline)
            break;
        s_sleep_ms(10);
    }
    fprintf(stderr, "harness: %s (pid %d) ignored SIGTERM for %d ms; killing it\n", p->binary,
            (int)p->pid, timeout_ms);
    kill(p->pid, SIGKILL);
reap:
    while (waitpid(p->pid, &st, 0) < 0) {
        if (errno != EINTR)
            goto done;
    }
    rc = s_status_of(st);
done:
    s_proc_free(pp);
    return rc;
}

void harness_kill(harness_proc_t **pp)
{
    if (!pp || !*pp)
        return;
    harness_proc_t *p = *pp;
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    s_proc_free(pp);
}

int harness_pg_restart(void)
{
    char pg_ctl[1024], data[1024], log[1024];
    snprintf(pg_ctl, sizeof pg_ctl, "%s/pg_ctl", s_env_or("SHOP_PG_BIN", S_DEFAULT_PG_BIN));
    snprintf(data, sizeof data, "%s/data", s_pgdir());
    snprintf(log, sizeof log, "%s/server.log", s_pgdir());

    int rc;
    if (geteuid() == 0) {
        /* The cluster belongs to the unprivileged `shop` user (tests/pg/start). */
        char *argv[] = {"setpriv",
                        "--reuid=shop",
                        "--regid=shop",
                        "--init-groups",
                        "--",
                        pg_ctl,
                        "-D",
                        data,
                        "-l",
                        log,
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "60",
                        "restart",
                        NULL};
        rc = s_run(argv);
    } else {
        char *argv[] = {pg_ctl, "-D", data, "-l", log,       "-m",
                        "fast", "-w", "-t", "60", "restart", NULL};
        rc = s_run(argv);
    }
    if (rc != 0) {
        fprintf(stderr, "harness: pg_ctl restart failed (%d); see %s\n", rc, log);
        return -1;
    }
    long long deadline = s_now_ms() + 30000;
    while (PQping(harness_pg_admin()) != PQPING_OK) {
        if (s_now_ms() >= deadline)
            return -1;
        s_sleep_ms(50);
    }
    return 0;
}

void harness_ports(harness_service_t *s)
{
    memset(s, 0, sizeof *s);
    s->admin_port = harness_free_port();
    snprintf(s->rpc, sizeof s->rpc, "tcp://127.0.0.1:%d", harness_free_port());
    snprintf(s->pub, sizeof s->pub, "tcp://127.0.0.1:%d", harness_free_port());
}

int harness_start_service(harness_service_t *s, const char *binary, const char *conninfo,
                          const char *const *extra_env)
{
    harness_ports(s);
    return harness_launch(s, binary, conninfo, extra_env);
}

/* Where a peer no test started "is": the discard port, closed on loopback. */
#define S_ABSENT "tcp://127.0.0.1:9"

int harness_launch(harness_service_t *s, const char *binary, const char *conninfo,
                   const char *const *extra_env)
{
    char db[1024], rpc[96], pub[96], admin[48];
    const char *env[32] = {db, rpc, pub, admin, "SHOP_ADMIN_ADDR=127.0.0.1"};
    size_t n = 5;

    snprintf(db, sizeof db, "SHOP_DATABASE_URL=%s", conninfo);
    snprintf(rpc, sizeof rpc, "SHOP_RPC_BIND=%s", s->rpc);
    snprintf(pub, sizeof pub, "SHOP_PUB_BIND=%s", s->pub);
    snprintf(admin, sizeof admin, "SHOP_ADMIN_PORT=%d", s->admin_port);
    for (size_t i = 0; extra_env && extra_env[i] && n + 1 < sizeof env / sizeof env[0]; i++)
        env[n++] = extra_env[i];
    /* Peers the test did not start: a closed port, so a service that
     * consumes or calls them starts (and finds nobody there). */
    static const char *const absent[] = {
        "SHOP_CATALOG_RPC=" S_ABSENT,    "SHOP_CATALOG_PUB=" S_ABSENT,
        "SHOP_PROMOTIONS_RPC=" S_ABSENT, "SHOP_PROMOTIONS_PUB=" S_ABSENT,
        "SHOP_ORDERS_RPC=" S_ABSENT,     "SHOP_ORDERS_PUB=" S_ABSENT,
    };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0] && n + 1 < sizeof env / sizeof env[0]; i++) {
        size_t nl = strcspn(absent[i], "=");
        bool given = false;
        for (size_t k = 0; k < n && !given; k++)
            given = strncmp(env[k], absent[i], nl + 1) == 0;
        if (!given && !getenv(strndupa(absent[i], nl)))
            env[n++] = absent[i];
    }
    env[n] = NULL;
    s->proc = harness_spawn(binary, env);
    if (!s->proc)
        return -1;
    return harness_wait_ready(s->admin_port, 10000);
}

long long harness_sql(void *pg, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(pg, sql);
    long long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)
                      ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    return v;
}

int harness_start_consumer(harness_service_t *s, const char *binary, const char *conninfo,
                           const char *stream, const harness_service_t *producer)
{
    char rpc[160], pub[160], upper[64];
    size_t i = 0;

    for (; stream[i] && i + 1 < sizeof upper; i++)
        upper[i] = (char)(stream[i] >= 'a' && stream[i] <= 'z' ? stream[i] - 'a' + 'A' : stream[i]);
    upper[i] = '\0';
    snprintf(rpc, sizeof rpc, "SHOP_%s_RPC=%s", upper, producer->rpc);
    snprintf(pub, sizeof pub, "SHOP_%s_PUB=%s", upper, producer->pub);
    const char *env[] = {rpc, pub, NULL};
    return harness_start_service(s, binary, conninfo, env);
}
