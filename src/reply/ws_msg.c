/* sluice - SPDX-License-Identifier: MIT
 *
 * The client's messages on /jobs/ws (ws_sub.c), parsed apart from the
 * socket so the parser can be tested and fuzzed alone:
 *   {"op":"subscribe","id":J,"from":N}, {"op":"unsubscribe","id":J},
 *   {"op":"cancel","id":J}; other members are ignored.
 */
#include "reply_int.h"
#include <jansson.h>

/* Larger than any job id: a longer one names no job. */
static int copy_id(json_t *v, sl_reply_ws_msg_t *m)
{
    const char *id = json_string_value(v);
    size_t n = id ? json_string_length(v) : 0;
    if (!n || n >= sizeof(m->id) || memchr(id, '\0', n))
        return -1;
    memcpy(m->id, id, n + 1);
    return 0;
}

int sl_reply_ws_parse(const uint8_t *data, size_t len, int binary, sl_reply_ws_msg_t *m,
                      const char **why)
{
    memset(m, 0, sizeof(*m));
    json_t *msg = binary ? NULL : json_loadb((const char *)data, len, 0, NULL);
    json_t *op = json_object_get(msg, "op"), *f = json_object_get(msg, "from");
    const char *ops = json_string_value(op);
    int rv = 400;
    *why = "a message that is not {\"op\":...,\"id\":\"...\"}";
    if (!ops || copy_id(json_object_get(msg, "id"), m) != 0)
        goto out;
    if (strcmp(ops, "subscribe") == 0)
        m->op = SL_REPLY_WS_SUBSCRIBE;
    else if (strcmp(ops, "unsubscribe") == 0)
        m->op = SL_REPLY_WS_UNSUBSCRIBE;
    else if (strcmp(ops, "cancel") == 0)
        m->op = SL_REPLY_WS_CANCEL;
    else {
        *why = "an unknown op (subscribe, unsubscribe, cancel)";
        goto out;
    }
    if (m->op == SL_REPLY_WS_SUBSCRIBE && f) {
        if (!json_is_integer(f) || json_integer_value(f) < 0) {
            *why = "a bad \"from\" (a sequence number >= 0)";
            goto out;
        }
        m->has_from = 1;
        m->from = (uint64_t)json_integer_value(f);
    }
    rv = 0;
    *why = NULL;
out:
    json_decref(msg);
    return rv;
}
