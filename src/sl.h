/* sluice - SPDX-License-Identifier: MIT
 *
 * Common definitions every sluice file includes: error codes, assertions,
 * the allocator wrappers (with the fail-the-Nth-call test hook) and small
 * string helpers. Nothing here knows about sockets or protocols.
 */
#ifndef SL_H
#define SL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#define SL_VERSION "0.1.0"

/* Error codes: functions return 0 on success or one of these (negative). */
#define SL_OK 0
#define SL_ERROR (-1)       /* generic failure */
#define SL_EAGAIN (-2)      /* no room / no data now; try again when told */
#define SL_EINCOMPLETE (-3) /* parser needs more bytes; not an error */
#define SL_ENOMEM (-4)      /* a bounded allocation failed or a bound was hit */
#define SL_EINVAL (-5)      /* bad input */
#define SL_ECLOSED (-6)     /* the object was closed/freed inside the call */
#define SL_ECANCELED (-7)   /* operation cancelled (callback contract) */
#define SL_ETIMEDOUT (-8)
#define SL_ETOOBIG (-9)    /* a configured limit was exceeded */
#define SL_ELIMIT (-10)    /* one client's share of a limit was exceeded (429) */
#define SL_ECONFLICT (-11) /* the same key names a different thing (422) */

#define SL_UNUSED(x) ((void)(x))
#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SL_WARN_UNUSED __attribute__((warn_unused_result))
#define SL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define sl_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Asserts stay on in every build; never use them on peer input. */
void sl_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define SL_ASSERT(e) ((e) ? (void)0 : sl_assert_fail(#e, __FILE__, __LINE__))

/* Small internal allocations abort with the size on failure. */
void *sl_malloc(size_t n);
void *sl_calloc(size_t n, size_t sz);
void *sl_realloc(void *p, size_t n);
char *sl_strndup(const char *s, size_t n);
char *sl_strdup(const char *s);
/* Both NULL, or the same C string. */
static inline int sl_cstr_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}
/* A formatted string from sl_malloc; *len (when not NULL) gets its length. */
char *sl_strdup_printf(size_t *len, const char *fmt, ...) SL_PRINTF(2, 3);
void sl_free(void *p);
/* Peer-sized allocations: bounded by the caller first, may return NULL. */
SL_WARN_UNUSED void *sl_try_malloc(size_t n);
SL_WARN_UNUSED void *sl_try_realloc(void *p, size_t n);

/* Test hook: make the Nth allocation from now fail (0 disables). sl_malloc
 * then aborts, sl_try_* return NULL. sl_alloc_count() counts live blocks. */
void sl_alloc_fail_nth(long n);
long sl_alloc_count(void);

/* A borrowed byte string. */
typedef struct sl_str {
    const char *p;
    size_t n;
} sl_str_t;

#define SL_STR(lit) ((sl_str_t){(lit), sizeof(lit) - 1})

static inline int sl_str_eq(sl_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && memcmp(a.p, lit, n) == 0;
}
/* Inline so that strlen of a literal folds away: most calls are header
 * names that differ in length, which then cost one compare. */
static inline int sl_str_caseeq(sl_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && strncasecmp(a.p, lit, n) == 0;
}
/* Whether one of eight bytes is an ASCII upper-case letter. For a byte
 * b < 0x80, (b | 0x80) - 0x41 keeps bit 7 iff b >= 'A', and (b | 0x80) -
 * 0x5b keeps it iff b > 'Z'; no borrow crosses bytes. */
static inline int sl_upper_in_word(uint64_t w)
{
    const uint64_t hi = 0x8080808080808080ull;
    uint64_t ge_a = (w | hi) - 0x4141414141414141ull;
    uint64_t gt_z = (w | hi) - 0x5b5b5b5b5b5b5b5bull;
    return (ge_a & ~gt_z & ~w & hi) != 0;
}

/* Whether s has an ASCII upper-case letter, a word at a time: field names
 * are checked on every response, and nearly all are lower-case. The tail
 * is one more word ending at the last byte (a byte seen twice cannot
 * change the answer), and 4 to 7 bytes are two overlapping halves. */
static inline int sl_has_upper(const char *s, size_t n)
{
    uint64_t w;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8) {
            memcpy(&w, s + i, 8);
            if (sl_upper_in_word(w))
                return 1;
        }
        memcpy(&w, s + n - 8, 8);
        return sl_upper_in_word(w);
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        return sl_upper_in_word(a | (uint64_t)b << 32);
    }
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            return 1;
    return 0;
}
/* The value of a hex digit, or -1. */
int sl_hex_value(int c);
/* n bytes as 2n lower-case hex digits and a NUL into out. */
void sl_hex_encode(const uint8_t *p, size_t n, char *out);
/* Bytes for identifiers that must not repeat but need not be secret
 * (request ids, trace and span ids): xoshiro256** per thread, seeded from
 * getrandom(2). Secrets (job ids, keys) come from OpenSSL's RAND_bytes. */
void sl_rand_fast(void *buf, size_t n);
/* Decode base64url (RFC 4648 section 5, padding optional) into out (at
 * most outcap bytes). Returns the decoded length or -1 on bad input. */
ssize_t sl_base64url_decode(const char *in, size_t len, uint8_t *out, size_t outcap);
/* n bytes as standard base64 with padding (RFC 4648 4), NUL-terminated,
 * malloc'd (free with sl_free). */
char *sl_base64_encode(const uint8_t *p, size_t n);
/* A W3C trace context traceparent: "00-" 32 hex "-" 16 hex "-" 2 hex,
 * lower-case, 55 bytes (version 00 layout). */
int sl_traceparent_is_valid(sl_str_t v);
/* s without leading and trailing OWS (spaces and tabs, RFC 9110 5.6.3). */
sl_str_t sl_str_trim_ows(sl_str_t s);
/* RFC 9110 token (tchar+): a field name, a method. */
int sl_str_is_token(sl_str_t s);
/* Whether a comma-separated header value (Connection, Upgrade, ...) has
 * tok as one of its elements, compared case-insensitively. */
int sl_str_has_token(sl_str_t list, const char *tok);
/* The same for a token that is not NUL-terminated (never matches empty). */
int sl_str_has_token_s(sl_str_t list, sl_str_t tok);
/* Parse an unsigned decimal (digits only, no sign, no spaces; leading
 * zeros allowed) into *out. Returns 0, SL_EINVAL when malformed or
 * SL_ETOOBIG when outside [min, max] (overflow included). */
int sl_str_parse_u64(sl_str_t s, uint64_t min, uint64_t max, uint64_t *out);
/* The same into int64 range; returns -1 on anything else. */
int64_t sl_str_to_u64(sl_str_t s);
/* v in decimal and a NUL into out (at least 21 bytes); returns the length.
 * For header values on hot paths, where snprintf costs ~300 instructions. */
size_t sl_u64_format(char *out, uint64_t v);

/* Monotonic clock in nanoseconds and wall clock in milliseconds. */
uint64_t sl_now_ns(void);
/* Monotonic ns as of the start of this loop iteration on a worker thread
 * (sl_clock_tick runs once per iteration, right after the poll), a fresh
 * reading on any other thread: a request's start costs no clock read of
 * its own (a vDSO call is ~3% of a small HTTP/2 request's CPU here). */
uint64_t sl_clock_ns(void);
void sl_clock_tick(void);
uint64_t sl_wall_ms(void);

#endif
