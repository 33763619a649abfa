/* sluice - SPDX-License-Identifier: MIT
 *
 * Cache configuration: the top-level "caches" section (zones by name) and
 * a proxy route's "cache" object. A zone's entries live in the registry
 * (zone.c), so a reload that keeps a zone's name and size keeps what it
 * holds. The disk tier ("disk") is refused for now: memory only
 * (docs/cache.md says how the disk tier fits).
 */
#include "cache_int.h"
#include "../conf.h"
#include <stdio.h>

typedef struct zones {
    cc_zone_t **v;
    size_t n;
} zones_t;

typedef struct zone_opts {
    int64_t memory_bytes, max_entries;
} zone_opts_t;

static const sl_conf_key_t zone_keys[] = {
    SL_CONF_INT(SL_CONF_I64, zone_opts_t, memory_bytes, 268435456, 65536, (int64_t)1 << 40),
    SL_CONF_INT(SL_CONF_I64, zone_opts_t, max_entries, 0, 0, 100000000),
};

static void zones_free(void *state)
{
    zones_t *zs = state;
    if (!zs)
        return;
    for (size_t i = 0; i < zs->n; i++)
        cc_zone_release(zs->v[i]);
    sl_free(zs->v);
    sl_free(zs);
}

static int zones_parse(json_t *v, const char *path, void **state, char *err, size_t errlen)
{
    static int metrics_added;
    *state = NULL;
    if (!v)
        return 0;
    if (!json_is_object(v))
        return sl_conf_fail(err, errlen, "%s: must be an object of zones", path);
    zones_t *zs = sl_calloc(1, sizeof(*zs));
    zs->v = sl_calloc(json_object_size(v) + 1, sizeof(*zs->v));
    const char *name;
    json_t *z;
    json_object_foreach(v, name, z)
    {
        char p[SL_CONF_PATH_LEN];
        sl_conf_path(p, path, name);
        zone_opts_t o;
        static const char *const also[] = {"disk", "comment"};
        if (!json_is_object(z) || !*name) {
            zones_free(zs);
            return sl_conf_fail(err, errlen, "%s: a zone is an object with a name", p);
        }
        if (sl_conf_table_load(zone_keys, SL_ARRAY_LEN(zone_keys), z, p, &o, also, 2, err,
                               errlen)) {
            zones_free(zs);
            return SL_EINVAL;
        }
        if (json_object_get(z, "disk")) {
            zones_free(zs);
            return sl_conf_fail(err, errlen,
                                "%s.disk: the disk tier is not built yet; zones are in memory "
                                "(docs/cache.md)",
                                p);
        }
        if (o.max_entries == 0)
            o.max_entries = SL_MAX(16, o.memory_bytes / 4096); /* an entry costs >= 4 KiB */
        zs->v[zs->n++] = cc_zone_acquire(name, o.memory_bytes, o.max_entries);
    }
    if (!metrics_added) {
        metrics_added = 1;
        sl_metrics_add_source(cc_metrics_source); /* at load: before the workers run */
    }
    *state = zs;
    return 0;
}

const sl_config_section_def_t sl_cache_section = {
    .name = "caches",
    .parse = zones_parse,
    .free_state = zones_free,
};

static cc_zone_t *zone_find(const char *name)
{
    const sl_config_t *cfg = sl_config_loading();
    const zones_t *zs = cfg ? sl_config_section(cfg, "caches") : NULL;
    for (size_t i = 0; zs && i < zs->n; i++)
        if (strcmp(zs->v[i]->name, name) == 0)
            return zs->v[i];
    return NULL;
}

cc_zone_t *cc_zone_named(const char *name)
{
    return zone_find(name);
}

typedef struct route_opts {
    int64_t max_entry_bytes, max_variants;
    double pass_s, lock_s, stale_while_revalidate_s, stale_if_error_s;
} route_opts_t;

static const sl_conf_key_t route_keys[] = {
    SL_CONF_INT(SL_CONF_I64, route_opts_t, max_entry_bytes, 8388608, 1, (int64_t)1 << 40),
    SL_CONF_INT(SL_CONF_I64, route_opts_t, max_variants, 8, 1, 1024),
    SL_CONF_SECONDS(route_opts_t, pass_s, 30, 0, 86400),
    SL_CONF_SECONDS(route_opts_t, lock_s, 5, 0, 3600),
    SL_CONF_SECONDS(route_opts_t, stale_while_revalidate_s, -1, -1, 31536000),
    SL_CONF_SECONDS(route_opts_t, stale_if_error_s, -1, -1, 31536000),
};

int sl_cache_route_parse(json_t *route, const char *path, const sl_cache_upstream_t *up,
                         sl_cache_route_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *c = json_object_get(route, "cache");
    if (!c)
        return 0;
    char p[SL_CONF_PATH_LEN];
    sl_conf_path(p, path, "cache");
    const char *zname;
    route_opts_t o;
    static const char *const also[] = {"zone"};
    if (!json_is_object(c))
        return sl_conf_fail(err, errlen, "%s: must be an object with a \"zone\"", p);
    if (sl_conf_get_str(c, p, "zone", NULL, &zname, err, errlen) ||
        sl_conf_table_load(route_keys, SL_ARRAY_LEN(route_keys), c, p, &o, also, 1, err, errlen))
        return SL_EINVAL;
    if (!zname)
        return sl_conf_fail(err, errlen, "%s.zone: required (a name from \"caches\")", p);
    cc_zone_t *z = zone_find(zname);
    if (!z)
        return sl_conf_fail(err, errlen, "%s.zone: no zone named \"%s\" in \"caches\"", p, zname);
    if (o.max_entry_bytes > z->memory_bytes)
        return sl_conf_fail(err, errlen, "%s.max_entry_bytes: larger than zone \"%s\" (%lld)", p,
                            zname, (long long)z->memory_bytes);
    sl_cache_route_t *cr = sl_calloc(1, sizeof(*cr));
    cr->z = z; /* the config's section holds the zone */
    cr->max_entry_bytes = o.max_entry_bytes;
    cr->max_variants = o.max_variants;
    cr->pass_s = o.pass_s;
    cr->lock_s = o.lock_s;
    cr->swr_s = o.stale_while_revalidate_s;
    cr->sie_s = o.stale_if_error_s;
    cr->up = up;
    *out = cr;
    return 0;
}

void sl_cache_route_free(sl_cache_route_t *cr)
{
    sl_free(cr);
}
