/* sluice - SPDX-License-Identifier: MIT
 *
 * Content-Type by file extension: the route's "mime" overrides first, then
 * a small built-in table of the types a web root commonly holds. Text
 * types carry charset=utf-8. The extension is matched case-insensitively;
 * unknown extensions are application/octet-stream.
 */
#include "static_int.h"
#include <strings.h>

static const struct {
    const char *ext, *type;
} builtin[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "text/xml; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"webmanifest", "application/manifest+json"},
};

const char *sl_static_mime_type(const sl_static_opts_t *o, const char *name, size_t n)
{
    size_t i = n;
    while (i > 0 && name[i - 1] != '.' && name[i - 1] != '/')
        i--;
    if (i == 0 || name[i - 1] != '.')
        return "application/octet-stream";
    const char *ext = name + i;
    size_t elen = n - i;
    for (size_t k = 0; o && k < o->nmime; k++)
        if (strlen(o->mime[k].ext) == elen && strncasecmp(o->mime[k].ext, ext, elen) == 0)
            return o->mime[k].type;
    for (size_t k = 0; k < SL_ARRAY_LEN(builtin); k++)
        if (strlen(builtin[k].ext) == elen && strncasecmp(builtin[k].ext, ext, elen) == 0)
            return builtin[k].type;
    return "application/octet-stream";
}
