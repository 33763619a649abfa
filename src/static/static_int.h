/* sluice - SPDX-License-Identifier: MIT
 *
 * Private interface of the static handler (src/static/). The pure pieces
 * (path normalisation, HTTP date / ETag / Range / Accept-Encoding parsing,
 * the Content-Type table) are socket-free and unit-tested on their own;
 * open.c opens below the root, cache.c is the per-worker open-file cache,
 * options.c parses the route options and static.c answers requests.
 *
 * Ownership:
 *
 *   route state (sl_static_opts_t, owned by the config)
 *     +-- rootfd                      closed in free_state
 *     +-- caches[worker id] --> sl_static_cache_t   one per worker, touched
 *                                 |                  only by that worker
 *                                 +-- entries (fd + stat), LRU, refcounted:
 *                                     a request holds a ref while it reads;
 *                                     an evicted entry with refs > 0 is
 *                                     unlinked and freed by the last release.
 */
#ifndef SL_STATIC_INT_H
#define SL_STATIC_INT_H

#include "static.h"
#include "../http.h"
#include <sys/stat.h>

#define SL_STATIC_MAX_WORKERS 256 /* config.c MAX_WORKERS */
#define SL_STATIC_PATH_MAX 4096   /* normalised path bytes; 414 past this */

typedef struct sl_static_cache sl_static_cache_t;

typedef struct sl_static_mime {
    char *ext; /* lower-case, without the dot */
    char *type;
} sl_static_mime_t;

typedef struct sl_static_opts {
    char *root;
    int rootfd;   /* O_PATH|O_DIRECTORY on root */
    char **index; /* file names tried for a directory */
    size_t nindex;
    int dotfiles;               /* serve path segments starting with '.' */
    int autoindex;              /* list a directory that has no index file */
    size_t max_listing_entries; /* entries shown; past it the listing is cut */
    int precompressed;          /* look for .br / .gz beside the file */
    int sendfile;               /* zero-copy where the protocol can (cleartext h1) */
    char *cache_control;        /* NULL = none */
    size_t cache_control_len;
    sl_static_mime_t *mime; /* overrides, checked before the built-in table */
    size_t nmime;
    size_t read_bytes; /* slice read per send (bounds memory per request) */
    size_t cache_max;  /* open-file cache entries per worker; 0 = off */
    double cache_ttl_s;
    size_t cache_content_bytes; /* files up to this size are kept in memory */
    sl_static_cache_t *caches[SL_STATIC_MAX_WORKERS];
} sl_static_opts_t;

/* ---- options.c: the route options (router.h configure / free_state) ---- */

int sl_static_configure(json_t *route, const char *path, void **state, char *err, size_t errlen);
void sl_static_free_state(void *state);

/* ---- path.c ---- */

/* Decode percent escapes in raw[0..n) once and resolve "." and ".."
 * segments lexically, writing the path relative to the root into out
 * (no leading '/', segments joined by single '/', a trailing '/' kept when
 * the request names a directory; "" is the root). Returns 0, SL_EINVAL
 * (bad escape, NUL, encoded '/', '\\', ".." above the root; *why says
 * which) or SL_ETOOBIG (longer than cap - 1). out is NUL-terminated. */
int sl_static_path_normalize(const char *raw, size_t n, char *out, size_t cap, size_t *outlen,
                             const char **why);
/* True when a segment of the normalised path starts with '.'. */
int sl_static_path_has_dotfile(const char *rel, size_t n);

/* ---- http.c: the file ETag, content negotiation (dates, entity-tag
 * comparison and ranges are src/http.h) ---- */

/* The strong ETag of a file: "ino-size-mtime_ns" in hex, quoted. */
void sl_static_etag(const struct stat *st, char out[64]);

#define SL_STATIC_ENC_BR 1
#define SL_STATIC_ENC_GZIP 2
/* The encodings (SL_STATIC_ENC_* bits) Accept-Encoding v allows with
 * q > 0, "*" included. In order of preference: br, then gzip. */
int sl_static_accept_encoding(sl_str_t v);

/* ---- mime.c ---- */

/* Content-Type for a file name: overrides first, then the built-in table
 * (text types carry "; charset=utf-8"), else application/octet-stream. */
const char *sl_static_mime_type(const sl_static_opts_t *o, const char *name, size_t n);

/* ---- listing.c ---- */

/* Answer req with the HTML listing of the directory open as dirfd (not
 * consumed): sorted, names escaped, dotfiles per the route, at most
 * max_listing_entries rows. */
void sl_static_listing(const sl_static_opts_t *o, sl_req_t *req, int dirfd);

/* ---- open.c ---- */

/* Open rel (normalised, "" for the root) below rootfd, read-only and
 * non-blocking, never leaving the root: openat2 with RESOLVE_BENEATH and
 * RESOLVE_NO_MAGICLINKS; where the kernel lacks openat2, a component walk
 * with O_NOFOLLOW (so every symlink is refused there). Returns the fd or
 * -errno (EXDEV / ELOOP: escape attempt or refused symlink). */
int sl_static_open(int rootfd, const char *rel);

/* ---- cache.c ---- */

/* What is known of an open file: kept in its cache entry, or in the
 * request pool when it is not cached. A request holds a pointer to it, so
 * a cache hit copies none of it. */
typedef struct sl_static_meta {
    struct stat st;
    char etag[64];          /* sl_static_etag of st (regular files) */
    char last_modified[32]; /* sl_static_date_format of the mtime */
    uint8_t etag_len, last_modified_len;
    uint8_t dotfile;  /* its key has a segment starting with '.' */
    const char *type; /* Content-Type by the key's name: static or route state */
    size_t type_len;
} sl_static_meta_t;

typedef struct sl_static_file {
    int fd;
    const sl_static_meta_t *m; /* valid while the file is held */
    const uint8_t *data;       /* the whole content, held by the cache, or NULL */
    void *_entry;              /* the cache entry holding the fd, NULL when owned */
} sl_static_file_t;

/* Look key up in the calling worker's cache; on a hit fill *f (a ref is
 * taken: release it with sl_static_file_release) and return 1, else 0. */
int sl_static_cache_get(sl_static_opts_t *o, int worker, const char *key, size_t klen, double now,
                        sl_static_file_t *f);
/* Offer an opened regular file (validators filled in) to the cache. On
 * success the cache owns the fd and f holds a ref; a file of at most
 * content_bytes is also read into the entry (f->data) so hits cost no
 * read. When caching is off or the key is too long, f keeps owning the fd.
 * Never fails. */
void sl_static_cache_put(sl_static_opts_t *o, int worker, const char *key, size_t klen, double now,
                         sl_static_file_t *f);
/* Drop f's ref (or close the fd it owns). f->fd is -1 afterwards. */
void sl_static_file_release(sl_static_file_t *f);
/* Free a worker cache; every ref must have been released. */
void sl_static_cache_free(sl_static_cache_t *c);

#endif
