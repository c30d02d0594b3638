/* cfg: a service's settings, declared once as a table, read from the
 * environment and validated before anything starts. */
#ifndef SHOP_CFG_H
#define SHOP_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CFG_STR, CFG_INT, CFG_BOOL } cfg_type_t;

/* One setting. `offset` is where its value lives in the caller's settings
 * struct: a `char *` for CFG_STR (owned by the struct after cfg_load; free
 * with cfg_free), an `int64_t` for CFG_INT, a `bool` for CFG_BOOL. */
typedef struct {
    const char *name;      /* environment variable, e.g. "SHOP_WORKERS" */
    cfg_type_t type;
    const char *def;       /* default as text; NULL means required */
    int64_t min, max;      /* bounds for CFG_INT */
    size_t offset;
    const char *doc;       /* one line for the README table */
} cfg_var_t;

#define CFG_END {NULL, CFG_STR, NULL, 0, 0, 0, NULL}

/* Reads every variable of `table` (terminated by CFG_END) from the
 * environment into `out`, applying defaults and bounds. On failure writes
 * one line naming the variable and what is wrong to `err` (size errlen) and
 * returns -1; `out` must then still be passed to cfg_free. */
int cfg_load(const cfg_var_t *table, void *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Frees the strings cfg_load stored in `out`. */
void cfg_free(const cfg_var_t *table, void *out);

/* Writes the table as Markdown rows: | name | default | doc |. */
void cfg_print_markdown(const cfg_var_t *table, FILE *f);

#endif
