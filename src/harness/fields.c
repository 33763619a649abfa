/* sluice - SPDX-License-Identifier: MIT
 *
 * Field-name and field-value checks for what a client asks the harness to
 * send back (trailers) and for configured headers: RFC 9110 tokens, safe
 * values, the names that must never appear as trailers, and the HTTP/2
 * error code names reset?code= accepts.
 */
#include "harness_int.h"

int sl_harness_is_field_value(sl_str_t s)
{
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    /* No leading or trailing whitespace: peers would strip it. */
    if (s.n && (s.p[0] == ' ' || s.p[0] == '\t' || s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        return 0;
    return 1;
}

int sl_harness_is_forbidden_trailer(sl_str_t n)
{
    static const char *const names[] = {
        "content-length",
        "transfer-encoding",
        "content-type",
        "content-encoding",
        "content-range",
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "authorization",
        "set-cookie",
        "cache-control",
        "expect",
        "max-forwards",
        "pragma",
        "range",
        "age",
        "expires",
        "date",
        "location",
        "retry-after",
        "vary",
        "warning",
        "www-authenticate",
        "proxy-authenticate",
        "proxy-authorization",
        "http2-settings",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++)
        if (sl_str_eq(n, names[i]))
            return 1;
    return 0;
}

static const char *const h2_errors[] = {
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
};

int sl_harness_h2_error_code(sl_str_t name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(h2_errors); i++)
        if (sl_str_caseeq(name, h2_errors[i]))
            return (int)i;
    return -1;
}
