/* cfg: settings tables read from the environment. */
#include "cfg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int s_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int cfg_load(const cfg_var_t *table, void *out, char *err, size_t errlen)
{
    for (const cfg_var_t *v = table; v->name; v++) {
        const char *val = getenv(v->name);
        char *field = (char *)out + v->offset;

        if (!val || !*val)
            val = v->def;
        if (!val) {
            snprintf(err, errlen, "%s: required but not set (%s)", v->name, v->doc);
            return -1;
        }
        switch (v->type) {
        case CFG_STR: {
            char *copy = strdup(val);
            if (!copy) {
                snprintf(err, errlen, "%s: out of memory", v->name);
                return -1;
            }
            free(*(char **)field);
            *(char **)field = copy;
            break;
        }
        case CFG_INT: {
            char *end = NULL;
            errno = 0;
            long long n = strtoll(val, &end, 10);
            if (errno || end == val || *end || n < v->min || n > v->max) {
                snprintf(err, errlen, "%s: expected an integer from %" PRId64 " to %" PRId64
                         ", got \"%s\"", v->name, v->min, v->max, val);
                return -1;
            }
            *(int64_t *)field = (int64_t)n;
            break;
        }
        case CFG_BOOL:
            if (s_bool(val, (bool *)field) != 0) {
                snprintf(err, errlen, "%s: expected true or false (also 1/0, yes/no, on/off), "
                         "got \"%s\"", v->name, val);
                return -1;
            }
            break;
        }
    }
    return 0;
}

void cfg_free(const cfg_var_t *table, void *out)
{
    for (const cfg_var_t *v = table; v->name; v++) {
        if (v->type == CFG_STR) {
            char **field = (char **)((char *)out + v->offset);
            free(*field);
            *field = NULL;
        }
    }
}

void cfg_print_markdown(const cfg_var_t *table, FILE *f)
{
    for (const cfg_var_t *v = table; v->name; v++) {
        if (v->def)
            fprintf(f, "| `%s` | `%s` | %s |\n", v->name, v->def, v->doc);
        else
            fprintf(f, "| `%s` | (required) | %s |\n", v->name, v->doc);
    }
}
