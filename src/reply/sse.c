/* sluice - SPDX-License-Identifier: MIT
 *
 * One job event as a server-sent event (HTML "Server-sent events",
 * event stream interpretation). The payload cannot forge fields: CR, LF
 * and CRLF are all line ends to an SSE parser, so each starts a new
 * "data:" line, and the client that joins the data lines with LF gets the
 * payload back with its line ends made LF.
 */
#include "reply_int.h"
#include <stdio.h>

static size_t line_ends(const uint8_t *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n' || (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'));
    return k;
}

size_t sl_reply_sse_size(const uint8_t *data, size_t len)
{
    return 96 + len + 6 * line_ends(data, len); /* the head is at most 65 bytes */
}

size_t sl_reply_sse_format(char *o, uint64_t seq, const char *type, const uint8_t *data, size_t len)
{
    size_t n = (size_t)sprintf(o, "id: %llu\nevent: %s\ndata: ", (unsigned long long)seq, type);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (c == '\r' && i + 1 < len && data[i + 1] == '\n')
            continue; /* CRLF: the LF ends the line */
        if (c == '\r' || c == '\n') {
            memcpy(o + n, "\ndata: ", 7);
            n += 7;
        } else {
            o[n++] = (char)c;
        }
    }
    memcpy(o + n, "\n\n", 2);
    return n + 2;
}
