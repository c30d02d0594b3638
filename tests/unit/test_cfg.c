/* test_cfg: defaults, bounds, required settings, booleans and the Markdown table. */
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "check.h"

typedef struct {
    char *url;
    int64_t workers;
    bool verbose;
} settings_t;

static const cfg_var_t s_table[] = {
    {"T_URL", CFG_STR, NULL, 0, 0, offsetof(settings_t, url), "where to connect"},
    {"T_WORKERS", CFG_INT, "4", 1, 64, offsetof(settings_t, workers), "worker threads"},
    {"T_VERBOSE", CFG_BOOL, "off", 0, 0, offsetof(settings_t, verbose), "chatty logs"},
    CFG_END,
};

static int s_load(settings_t *s, char *err, size_t len)
{
    memset(s, 0, sizeof *s);
    err[0] = '\0';
    return cfg_load(s_table, s, err, len);
}

int main(void)
{
    settings_t s;
    char err[256];

    unsetenv("T_URL");
    unsetenv("T_WORKERS");
    unsetenv("T_VERBOSE");
    CHECK_INT(s_load(&s, err, sizeof err), -1);
    CHECK(strstr(err, "T_URL: required but not set") == err);
    cfg_free(s_table, &s);

    setenv("T_URL", "", 1);   /* empty counts as unset */
    CHECK_INT(s_load(&s, err, sizeof err), -1);
    cfg_free(s_table, &s);

    setenv("T_URL", "host=x", 1);
    CHECK_INT(s_load(&s, err, sizeof err), 0);
    CHECK_STR(s.url, "host=x");
    CHECK_INT(s.workers, 4);
    CHECK(!s.verbose);
    cfg_free(s_table, &s);
    CHECK(s.url == NULL);

    setenv("T_WORKERS", "abc", 1);
    CHECK_INT(s_load(&s, err, sizeof err), -1);
    CHECK_STR(err, "T_WORKERS: expected an integer from 1 to 64, got \"abc\"");
    cfg_free(s_table, &s);
    setenv("T_WORKERS", "65", 1);
    CHECK_INT(s_load(&s, err, sizeof err), -1);
    cfg_free(s_table, &s);
    setenv("T_WORKERS", "12x", 1);
    CHECK_INT(s_load(&s, err, sizeof err), -1);
    cfg_free(s_table, &s);
    setenv("T_WORKERS", "64", 1);
    CHECK_INT(s_load(&s, err, sizeof err), 0);
    CHECK_INT(s.workers, 64);
    cfg_free(s_table, &s);

    const char *yes[] = {"true", "1", "YES", "on"}, *no[] = {"false", "0", "no", "Off"};
    for (int i = 0; i < 4; i++) {
        setenv("T_VERBOSE", yes[i], 1);
        CHECK_INT(s_load(&s, err, sizeof err), 0);
        CHECK(s.verbose);
        cfg_free(s_table, &s);
        setenv("T_VERBOSE", no[i], 1);
        CHECK_INT(s_load(&s, err, sizeof err), 0);
        CHECK(!s.verbose);
        cfg_free(s_table, &s);
    }
    setenv("T_VERBOSE", "maybe", 1);
    CHECK_INT(s_load(&s, err, sizeof err), -1);
    CHECK(strstr(err, "T_VERBOSE:") == err);
    cfg_free(s_table, &s);

    char *md = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&md, &len);
    cfg_print_markdown(s_table, f);
    fclose(f);
    CHECK(strstr(md, "| `T_URL` | (required) | where to connect |\n") != NULL);
    CHECK(strstr(md, "| `T_WORKERS` | `4` | worker threads |\n") != NULL);
    free(md);
    return check_done();
}
