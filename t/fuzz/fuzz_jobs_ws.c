/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the client messages of /jobs/ws
 * (sl_reply_ws_parse in src/reply/ws_msg.c): the input is one text
 * message (the first byte's low bit makes it binary instead). An accepted
 * message has a known op, an id of 1..63 bytes without NUL, and "from"
 * only on subscribe; writing it back as JSON and parsing that again gives
 * the same message. A refused one says why. LeakSanitizer checks that no
 * JSON is left behind either way.
 */
#include "reply/reply_int.h"
#include <jansson.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static const char *const op_names[] = {"", "subscribe", "unsubscribe", "cancel"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int binary = data[0] & 1;
    sl_reply_ws_msg_t m, again;
    const char *why = NULL;
    int rv = sl_reply_ws_parse(data + 1, size - 1, binary, &m, &why);
    if (rv != 0) {
        check(rv == 400 && why != NULL);
        return 0;
    }
    check(!binary && why == NULL);
    check(m.op >= SL_REPLY_WS_SUBSCRIBE && m.op <= SL_REPLY_WS_CANCEL);
    size_t n = strlen(m.id);
    check(n > 0 && n < sizeof(m.id));
    check(!m.has_from || m.op == SL_REPLY_WS_SUBSCRIBE);
    json_t *o = json_pack("{s:s,s:s}", "op", op_names[m.op], "id", m.id);
    if (m.has_from)
        json_object_set_new(o, "from", json_integer((json_int_t)m.from));
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    check(txt != NULL);
    check(sl_reply_ws_parse((const uint8_t *)txt, strlen(txt), 0, &again, &why) == 0);
    free(txt);
    check(again.op == m.op && strcmp(again.id, m.id) == 0 && again.has_from == m.has_from &&
          again.from == m.from);
    return 0;
}
