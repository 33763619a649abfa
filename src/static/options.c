/* sluice - SPDX-License-Identifier: MIT
 *
 * The static route options (docs/static.md): root (required, an existing
 * directory, opened once here so every request resolves below that fd),
 * index, autoindex and max_listing_entries (listing.c), dotfiles, cache_control, mime,
 * precompressed, read_bytes, sendfile and open_file_cache {max, ttl_s, content_bytes}. Unknown keys
 * are refused so a typo does not silently change what is served.
 */
#include "static_int.h"
#include "../config.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define INDEX_MAX 16
#define MIME_MAX 256
#define NAME_MAX_LEN 255

static const char *const route_keys[] = {
    "root",          "index",      "autoindex",       "dotfiles", "cache_control",       "mime",
    "precompressed", "read_bytes", "open_file_cache", "sendfile", "max_listing_entries",
};

static int bad(char *err, size_t errlen, const char *path, const char *key, const char *why)
{
    snprintf(err, errlen, "%s.%s: %s", path, key, why);
    return SL_EINVAL;
}

/* A plain file name: no '/', not "." or "..", no NUL, not empty. */
static int plain_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= NAME_MAX_LEN && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

static int parse_index(json_t *route, const char *path, sl_static_opts_t *o, char *err,
                       size_t errlen)
{
    json_t *v = json_object_get(route, "index");
    if (!v) {
        o->index = sl_calloc(1, sizeof(char *));
        o->index[0] = sl_strdup("index.html");
        o->nindex = 1;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > INDEX_MAX)
        return bad(err, errlen, path, "index", "must be an array of at most 16 file names");
    o->nindex = json_array_size(v);
    o->index = sl_calloc(o->nindex ? o->nindex : 1, sizeof(char *));
    for (size_t i = 0; i < o->nindex; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || !plain_name(json_string_value(e)))
            return bad(err, errlen, path, "index", "entries must be plain file names");
        o->index[i] = sl_strdup(json_string_value(e));
    }
    return 0;
}

static int parse_mime(json_t *route, const char *path, sl_static_opts_t *o, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(route, "mime");
    if (!v)
        return 0;
    if (!json_is_object(v) || json_object_size(v) > MIME_MAX)
        return bad(err, errlen, path, "mime", "must be an object {\"ext\": \"type\"} (<= 256)");
    o->mime = sl_calloc(json_object_size(v) + 1, sizeof(*o->mime));
    const char *k;
    json_t *t;
    json_object_foreach(v, k, t)
    {
        const char *ext = k[0] == '.' ? k + 1 : k;
        if (!json_is_string(t) || !*ext || strchr(ext, '/') || !*json_string_value(t) ||
            strpbrk(json_string_value(t), "\r\n"))
            return bad(err, errlen, path, "mime", "each entry maps an extension to a type string");
        o->mime[o->nmime].ext = sl_strdup(ext);
        o->mime[o->nmime].type = sl_strdup(json_string_value(t));
        o->nmime++;
    }
    return 0;
}

static int parse_cache(json_t *route, const char *path, sl_static_opts_t *o, char *err,
                       size_t errlen)
{
    json_t *v = json_object_get(route, "open_file_cache");
    o->cache_max = 1024;
    o->cache_ttl_s = 1.0;
    o->cache_content_bytes = 16384;
    if (!v)
        return 0;
    char sub[256];
    snprintf(sub, sizeof(sub), "%s.open_file_cache", path);
    if (!json_is_object(v))
        return bad(err, errlen, path, "open_file_cache",
                   "must be an object {max, ttl_s, content_bytes}");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
    {
        if (strcmp(k, "max") != 0 && strcmp(k, "ttl_s") != 0 && strcmp(k, "content_bytes") != 0)
            return bad(err, errlen, sub, k, "unknown option");
    }
    int64_t max;
    if (sl_conf_get_int(v, sub, "max", 1024, 0, 1000000, &max, err, errlen))
        return SL_EINVAL;
    o->cache_max = (size_t)max;
    int64_t content;
    if (sl_conf_get_int(v, sub, "content_bytes", 16384, 0, 1048576, &content, err, errlen))
        return SL_EINVAL;
    o->cache_content_bytes = (size_t)content;
    json_t *ttl = json_object_get(v, "ttl_s");
    if (ttl) {
        if (!json_is_number(ttl) || json_number_value(ttl) < 0 || json_number_value(ttl) > 3600)
            return bad(err, errlen, sub, "ttl_s", "must be a number of seconds 0..3600");
        o->cache_ttl_s = json_number_value(ttl);
    }
    return 0;
}

static int open_root(json_t *route, const char *path, sl_static_opts_t *o, char *err, size_t errlen)
{
    const char *root;
    if (sl_conf_get_str(route, path, "root", NULL, &root, err, errlen))
        return SL_EINVAL;
    if (!root || !*root)
        return bad(err, errlen, path, "root", "required (the document root directory)");
    o->root = sl_strdup(root);
    o->rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (o->rootfd < 0) {
        snprintf(err, errlen, "%s.root: cannot open directory \"%s\": %s", path, root,
                 strerror(errno));
        return SL_EINVAL;
    }
    return 0;
}

static int parse_flags(json_t *route, const char *path, sl_static_opts_t *o, char *err,
                       size_t errlen)
{
    const char *cc;
    int64_t rb, mle;
    if (sl_conf_get_bool(route, path, "autoindex", 0, &o->autoindex, err, errlen) ||
        sl_conf_get_int(route, path, "max_listing_entries", 10000, 1, 1000000, &mle, err, errlen) ||
        sl_conf_get_bool(route, path, "dotfiles", 0, &o->dotfiles, err, errlen) ||
        sl_conf_get_bool(route, path, "precompressed", 1, &o->precompressed, err, errlen) ||
        sl_conf_get_bool(route, path, "sendfile", 1, &o->sendfile, err, errlen) ||
        sl_conf_get_str(route, path, "cache_control", NULL, &cc, err, errlen) ||
        sl_conf_get_int(route, path, "read_bytes", 131072, 4096, 4194304, &rb, err, errlen))
        return SL_EINVAL;
    o->max_listing_entries = (size_t)mle;
    if (cc && strpbrk(cc, "\r\n"))
        return bad(err, errlen, path, "cache_control", "must not contain CR or LF");
    o->cache_control = cc ? sl_strdup(cc) : NULL;
    o->cache_control_len = cc ? strlen(cc) : 0;
    o->read_bytes = (size_t)rb;
    return 0;
}

int sl_static_configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    sl_static_opts_t *o = sl_calloc(1, sizeof(*o));
    o->rootfd = -1;
    if (sl_router_check_keys(route, path, route_keys, SL_ARRAY_LEN(route_keys), err, errlen) ||
        parse_flags(route, path, o, err, errlen) || parse_index(route, path, o, err, errlen) ||
        parse_mime(route, path, o, err, errlen) || parse_cache(route, path, o, err, errlen) ||
        open_root(route, path, o, err, errlen))
        goto fail_options;
    *state = o;
    return 0;

fail_options:
    sl_static_free_state(o);
    return SL_EINVAL;
}

void sl_static_free_state(void *state)
{
    sl_static_opts_t *o = state;
    if (!o)
        return;
    for (size_t i = 0; i < SL_STATIC_MAX_WORKERS; i++)
        sl_static_cache_free(o->caches[i]);
    if (o->rootfd >= 0)
        close(o->rootfd);
    for (size_t i = 0; i < o->nindex; i++)
        sl_free(o->index[i]);
    sl_free(o->index);
    for (size_t i = 0; i < o->nmime; i++) {
        sl_free(o->mime[i].ext);
        sl_free(o->mime[i].type);
    }
    sl_free(o->mime);
    sl_free(o->cache_control);
    sl_free(o->root);
    sl_free(o);
}
