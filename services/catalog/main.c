/* shop-catalog: products, SKUs, stock and reservations. */
#include <stddef.h>

#include "catalog.h"
#include "shop/catalog/v1/catalog.pb-c.h"

extern const migrate_file_t catalog_migrations[];
extern const size_t catalog_migrations_count;

#define SET(field) offsetof(catalog_settings_t, field)
static const cfg_var_t s_settings[] = {
    {"CATALOG_RESERVATION_TTL_S", CFG_INT, "900", 1, 604800, SET(reservation_ttl_s),
     "how long a reservation holds stock unless the request sets ttl_seconds"},
    {"CATALOG_MAX_LINES", CFG_INT, "100", 1, 1000, SET(max_lines),
     "most lines in one reservation"},
    CFG_END,
};

int main(int argc, char **argv)
{
    static catalog_settings_t settings;
    server_def_t def = {
        .name = "catalog",
        .service = &shop__catalog__v1__catalog_service__descriptor,
        .methods = catalog_methods,
        .n_methods = catalog_n_methods,
        .migrations = catalog_migrations,
        .n_migrations = catalog_migrations_count,
        .settings = s_settings,
        .settings_out = &settings,
        .maintain = catalog_maintain,
    };
    return server_main(&def, argc, argv);
}
