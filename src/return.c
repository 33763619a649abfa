/* sluice - SPDX-License-Identifier: MIT
 *
 * The "return" handler: answers every request on its route with the
 * status, headers and body written in the route ("status" 200-599,
 * default 200; "headers" an object of strings; "body" a string, default
 * empty), with content-length set. The options are checked once at load
 * time, so a request costs no parsing and no copying.
 */
#include "handlers.h"
#include "config.h"
#include <stdio.h>

typedef struct ret_header {
    char *name, *value;
} ret_header_t;

typedef struct ret_state {
    int status;
    ret_header_t *headers;
    size_t nheaders;
    char *body;
    size_t body_len;
} ret_state_t;

static void free_state(void *state)
{
    ret_state_t *s = state;
    if (!s)
        return;
    for (size_t i = 0; i < s->nheaders; i++) {
        sl_free(s->headers[i].name);
        sl_free(s->headers[i].value);
    }
    sl_free(s->headers);
    sl_free(s->body);
    sl_free(s);
}

/* Fields the protocol owns; a route must not set them. */
static int is_reserved(const char *name)
{
    return sl_field_is_connection_specific((sl_str_t){name, strlen(name)}) ||
           strcmp(name, "content-length") == 0 || strcmp(name, "trailer") == 0;
}

static int check_name(const char *name)
{
    return sl_str_is_token((sl_str_t){name, strlen(name)}) && !is_reserved(name);
}

static int check_value(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

static char *lower_dup(const char *s)
{
    char *d = sl_strdup(s);
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

static int parse_headers(json_t *route, const char *path, ret_state_t *s, char *err, size_t errlen)
{
    json_t *obj = json_object_get(route, "headers");
    if (!obj)
        return 0;
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "%s.headers: must be an object of strings", path);
        return SL_EINVAL;
    }
    s->headers = sl_calloc(json_object_size(obj) + 1, sizeof(ret_header_t));
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        char *name = lower_dup(key);
        if (!check_name(name)) {
            snprintf(err, errlen, "%s.headers.%s: not a header name a route may set", path, key);
            sl_free(name);
            return SL_EINVAL;
        }
        if (!json_is_string(val) || !check_value(json_string_value(val), json_string_length(val))) {
            snprintf(err, errlen, "%s.headers.%s: must be a string without control characters",
                     path, key);
            sl_free(name);
            return SL_EINVAL;
        }
        s->headers[s->nheaders].name = name;
        s->headers[s->nheaders].value = sl_strdup(json_string_value(val));
        s->nheaders++;
    }
    return 0;
}

static int parse_body(json_t *route, const char *path, ret_state_t *s, char *err, size_t errlen)
{
    json_t *b = json_object_get(route, "body");
    if (b && !json_is_string(b)) {
        snprintf(err, errlen, "%s.body: must be a string", path);
        return SL_EINVAL;
    }
    s->body_len = b ? json_string_length(b) : 0;
    s->body = sl_strndup(b ? json_string_value(b) : "", s->body_len);
    /* These statuses never carry content. */
    if (s->body_len && (s->status == 204 || s->status == 304)) {
        snprintf(err, errlen, "%s.body: must be empty for status %d", path, s->status);
        return SL_EINVAL;
    }
    return 0;
}

static int configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const keys[] = {"status", "headers", "body"};
    if (sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen))
        return SL_EINVAL;
    ret_state_t *s = sl_calloc(1, sizeof(*s));
    int64_t status;
    /* Final statuses only: a 1xx cannot end an exchange. */
    if (sl_conf_get_int(route, path, "status", 200, 200, 599, &status, err, errlen) != 0)
        goto fail;
    s->status = (int)status;
    if (parse_headers(route, path, s, err, errlen) != 0)
        goto fail;
    if (parse_body(route, path, s, err, errlen) != 0)
        goto fail;
    *state = s;
    return 0;

fail:
    free_state(s);
    return SL_EINVAL;
}

static void on_req(sl_req_t *req)
{
    const ret_state_t *s = req->route->state;
    req->cbs = &sl_req_discard_cbs;
    req->res.status = s->status;
    /* 204 and 304 must not announce a length. */
    req->res.content_length = s->status == 204 || s->status == 304 ? -1 : (int64_t)s->body_len;
    for (size_t i = 0; i < s->nheaders; i++)
        sl_resp_header_add(req, s->headers[i].name, s->headers[i].value);
    /* The body lives as long as the config snapshot this request runs on. */
    sl_resp_send(req, s->body, s->body_len, 1);
}

const sl_handler_def_t sl_return_handler = {
    .name = "return",
    .configure = configure,
    .free_state = free_state,
    .on_req = on_req,
};
