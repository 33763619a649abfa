/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the job event -> SSE encoder (src/reply/sse.c). The
 * first 8 input bytes are the sequence number, the next picks the event
 * type, the rest is the payload. The output must fit the size bound and,
 * parsed as the HTML spec parses an event stream (CRLF, LF and CR end
 * lines), be exactly one event with that id and type whose data is the
 * payload with its line ends made LF: no payload can forge a field.
 */
#include "reply/reply_int.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static const char *const types[] = {"started", "data", "progress", "error", "end", "dropped"};

typedef struct parsed {
    uint64_t id;
    int have_id, nblank;
    const char *event;
    size_t event_len;
    uint8_t *data;
    size_t data_len;
    int have_data;
} parsed_t;

static void field(parsed_t *p, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    check(colon != NULL); /* every line we write is a field */
    size_t kn = (size_t)(colon - line), vn = n - kn - 1;
    const char *v = colon + 1;
    if (vn && v[0] == ' ')
        v++, vn--;
    if (kn == 2 && memcmp(line, "id", 2) == 0) {
        check(!p->have_id);
        p->have_id = 1;
        p->id = strtoull(v, NULL, 10);
    } else if (kn == 5 && memcmp(line, "event", 5) == 0) {
        check(p->event == NULL);
        p->event = v;
        p->event_len = vn;
    } else {
        check(kn == 4 && memcmp(line, "data", 4) == 0);
        if (p->have_data)
            p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, v, vn);
        p->data_len += vn;
        p->have_data = 1;
    }
}

/* The spec's line splitting; after the one event only the end remains. */
static void parse(const char *o, size_t n, parsed_t *p)
{
    size_t i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && o[i] != '\r' && o[i] != '\n')
            i++;
        check(i < n); /* the last line is terminated */
        size_t len = i - s;
        i += (o[i] == '\r' && i + 1 < n && o[i + 1] == '\n') ? 2 : 1;
        if (len == 0) {
            p->nblank++;
            continue;
        }
        check(p->nblank == 0); /* nothing after the dispatching blank line */
        field(p, o + s, len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 9)
        return 0;
    uint64_t seq = 0;
    memcpy(&seq, data, 8);
    const char *type = types[data[8] % SL_ARRAY_LEN(types)];
    const uint8_t *pl = data + 9;
    size_t n = size - 9;
    size_t cap = sl_reply_sse_size(pl, n);
    char *o = malloc(cap);
    size_t len = sl_reply_sse_format(o, seq, type, pl, n);
    check(len <= cap);
    parsed_t p = {0};
    p.data = malloc(n + 1);
    parse(o, len, &p);
    check(p.nblank == 1 && p.have_id && p.id == seq && p.have_data);
    check(p.event && p.event_len == strlen(type) && memcmp(p.event, type, p.event_len) == 0);
    /* the payload with CRLF and CR made LF */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (pl[i] == '\r' && i + 1 < n && pl[i + 1] == '\n')
            continue;
        check(k < p.data_len && p.data[k] == (pl[i] == '\r' ? '\n' : pl[i]));
        k++;
    }
    check(k == p.data_len);
    free(p.data);
    free(o);
    return 0;
}
