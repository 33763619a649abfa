/* sluice - SPDX-License-Identifier: MIT
 *
 * Resumable decoder for the chunked transfer coding (RFC 9112 section 7.1),
 * used for request bodies (h1/conn.c) and upstream response bodies (proxy).
 * It keeps no copy of the input: body runs are handed to the caller as
 * pointers into the bytes it was given. Chunk extensions are skipped but
 * bounded per size line, trailer fields are validated and bounded, and
 * kept for the caller that asks (d->trailers); line endings are CRLF only.
 */
#include "h1_int.h"

enum {
    ST_SIZE = 0,  /* first hex digit of a chunk-size */
    ST_SIZE_MORE, /* further hex digits */
    ST_BWS,       /* after the size: BWS, then ';' or CR */
    ST_EXT,       /* chunk-ext after ';', up to CR */
    ST_SIZE_LF,   /* CR seen at the end of the size line */
    ST_DATA,
    ST_DATA_CR, /* CRLF after chunk-data */
    ST_DATA_LF,
    ST_TRAILER, /* start of a trailer line (or the final CRLF) */
    ST_TR_NAME,
    ST_TR_VALUE,
    ST_TR_LF,
    ST_FINAL_LF,
    ST_DONE,
};

void sl_h1_chunked_init(sl_h1_chunked_t *d, size_t max_ext_bytes)
{
    memset(d, 0, sizeof(*d));
    d->state = ST_SIZE;
    d->max_ext = max_ext_bytes;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Count one extension or trailer byte against the bound. */
static int ext_byte(sl_h1_chunked_t *d)
{
    return ++d->ext_bytes > d->max_ext ? SL_ETOOBIG : 0;
}

/* A trailer byte, counted, and kept when the caller asked for fields. */
static int tr_byte(sl_h1_chunked_t *d, uint8_t c)
{
    if (ext_byte(d) != 0)
        return SL_ETOOBIG;
    if (d->tr)
        d->tr[d->tr_len++] = (char)c; /* tr_len <= ext_bytes <= max_ext */
    return 0;
}

/* The line tr[tr_line..tr_len) is one "name:value" field. */
static void tr_field(sl_h1_chunked_t *d)
{
    char *p = d->tr + d->tr_line, *end = d->tr + d->tr_len;
    char *colon = memchr(p, ':', (size_t)(end - p)); /* the state machine saw it */
    char *v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (char *c = p; c < colon; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    *colon = 0;
    *end = 0; /* the CR's place, counted by tr_byte */
    sl_headers_add_ref(d->pool, d->trailers, (sl_str_t){p, (size_t)(colon - p)},
                       (sl_str_t){v, (size_t)(end - v)});
    d->tr_line = ++d->tr_len; /* past the NUL: the next line must not overwrite it */
}

/* One byte of framing (anything but chunk-data). Returns 0 or an error. */
static int step(sl_h1_chunked_t *d, uint8_t c)
{
    int v;
    switch (d->state) {
    case ST_SIZE:
        if ((v = hexval(c)) < 0)
            return SL_EINVAL;
        d->remaining = (uint64_t)v;
        d->ext_bytes = 0;
        d->state = ST_SIZE_MORE;
        return 0;
    case ST_SIZE_MORE:
        if ((v = hexval(c)) >= 0) {
            if (d->remaining > (UINT64_MAX >> 4))
                return SL_EINVAL; /* overflow */
            /* Leading zeros carry no value but cost a byte each: bound them. */
            if (d->remaining == 0 && v == 0 && ext_byte(d) < 0)
                return SL_ETOOBIG;
            d->remaining = (d->remaining << 4) | (uint64_t)v;
            return 0;
        }
        /* the size is complete; this byte starts what follows it */
        d->state = ST_BWS;
        /* fall through */
    case ST_BWS:
        if (c == '\r') {
            d->state = ST_SIZE_LF;
            return 0;
        }
        if (c == ';')
            d->state = ST_EXT;
        else if (c != ' ' && c != '\t')
            return SL_EINVAL; /* "0x5", "5 5", bare LF */
        return ext_byte(d);
    case ST_EXT:
        if (c == '\r') {
            d->state = ST_SIZE_LF;
            return 0;
        }
        if (!sl_h1_is_fval(c))
            return SL_EINVAL; /* bare LF, NUL, other CTL */
        return ext_byte(d);
    case ST_SIZE_LF:
        if (c != '\n')
            return SL_EINVAL;
        if (d->remaining == 0) {
            d->ext_bytes = 0; /* the trailer section has its own budget */
            d->state = ST_TRAILER;
            if (d->trailers && !d->tr)
                d->tr = sl_pool_alloc(d->pool, d->max_ext + 1);
        } else {
            d->state = ST_DATA;
        }
        return 0;
    case ST_DATA_CR:
        if (c != '\r')
            return SL_EINVAL;
        d->state = ST_DATA_LF;
        return 0;
    case ST_DATA_LF:
        if (c != '\n')
            return SL_EINVAL;
        d->state = ST_SIZE;
        return 0;
    case ST_TRAILER:
        if (c == '\r') {
            d->state = ST_FINAL_LF;
            return 0;
        }
        if (!sl_h1_is_token(c))
            return SL_EINVAL; /* obs-fold, bare LF, bad name */
        d->state = ST_TR_NAME;
        return tr_byte(d, c);
    case ST_TR_NAME:
        if (c == ':')
            d->state = ST_TR_VALUE;
        else if (!sl_h1_is_token(c))
            return SL_EINVAL;
        return tr_byte(d, c);
    case ST_TR_VALUE:
        if (c == '\r') {
            d->state = ST_TR_LF;
            return ext_byte(d); /* room for the NUL tr_field writes here */
        }
        if (!sl_h1_is_fval(c))
            return SL_EINVAL;
        return tr_byte(d, c);
    case ST_TR_LF:
        if (c != '\n')
            return SL_EINVAL;
        d->state = ST_TRAILER;
        if (d->tr)
            tr_field(d);
        return 0;
    case ST_FINAL_LF:
        if (c != '\n')
            return SL_EINVAL;
        d->state = ST_DONE;
        d->done = 1;
        return 0;
    default: return SL_EINVAL;
    }
}

ssize_t sl_h1_chunked_decode(sl_h1_chunked_t *d, const uint8_t *in, size_t len,
                             void (*out)(void *arg, const uint8_t *p, size_t n), void *arg)
{
    size_t i = 0;
    while (i < len && !d->done) {
        if (d->state == ST_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > d->remaining)
                n = (size_t)d->remaining;
            out(arg, in + i, n);
            i += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = ST_DATA_CR;
            continue;
        }
        int rc = step(d, in[i]);
        if (rc < 0)
            return rc;
        i++;
    }
    return (ssize_t)i;
}
