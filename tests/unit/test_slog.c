/* test_slog: JSON lines on stderr — fields, escaping, level filter, truncation. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "slog.h"

/* Runs the logging in `what` with fd 2 captured; returns what was written. */
static char *s_capture(void (*what)(void))
{
    int fds[2], saved = dup(2);
    static char buf[65536];
    ssize_t n, total = 0;

    if (pipe(fds) != 0)
        return NULL;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    dup2(fds[1], 2);
    what();
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    while ((n = read(fds[0], buf + total, sizeof buf - 1 - (size_t)total)) > 0)
        total += n;
    close(fds[0]);
    buf[total] = '\0';
    return buf;
}

static void s_basic(void) { slog_info("hello %d", 42); }
static void s_escapes(void) { slog_warn("q\" b\\ n\n t\t c\x01 end"); }
static void s_filtered(void) { slog_debug("hidden"); slog_error("shown"); }
static void s_call(void) { slog_call(SLOG_WARN, "r-1", "shop.x.v1.X/A", "failed"); }
static void s_long(void)
{
    static char big[20000];
    memset(big, 'a', sizeof big - 1);
    slog_info("%s", big);
}

int main(void)
{
    slog_level_t lvl;
    char *out;

    CHECK(slog_parse_level("warn", &lvl) && lvl == SLOG_WARN);
    CHECK(!slog_parse_level("loud", &lvl));
    slog_init("svc", SLOG_INFO);

    out = s_capture(s_basic);
    CHECK(strncmp(out, "{\"ts\":\"20", 9) == 0);
    CHECK(strstr(out, "Z\",\"level\":\"info\",\"service\":\"svc\",\"msg\":\"hello 42\"}\n") != NULL);

    out = s_capture(s_escapes);
    CHECK(strstr(out, "\"msg\":\"q\\\" b\\\\ n\\n t\\t c\\u0001 end\"}\n") != NULL);

    out = s_capture(s_filtered);
    CHECK(strstr(out, "hidden") == NULL);
    CHECK(strstr(out, "\"level\":\"error\"") != NULL);

    out = s_capture(s_call);
    CHECK(strstr(out, "\"request_id\":\"r-1\",\"method\":\"shop.x.v1.X/A\",\"msg\":\"failed\"") != NULL);

    out = s_capture(s_long);
    size_t len = strlen(out);
    CHECK(len < 4200);
    CHECK(len > 1000 && strcmp(out + len - 6, "\xe2\x80\xa6\"}\n") == 0);
    CHECK(strchr(out, '\n') == out + len - 1);   /* one line, not split */
    return check_done();
}
