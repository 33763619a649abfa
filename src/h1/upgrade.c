/* sluice - SPDX-License-Identifier: MIT
 *
 * Leaving HTTP/1.1 for HTTP/2 on a cleartext listener: on the client's
 * preface (prior knowledge, RFC 9113 3.3, even split over reads) or on
 * "Upgrade: h2c" (RFC 7540 3.2, off unless the listener opts in). The h1
 * state is freed before HTTP/2 takes the conn. (The 101 of a WebSocket
 * upgrade is a response like any other: respond.c.)
 */
#include "server_int.h"
#include "../h2/h2.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN 24
#define SETTINGS_MAX 1024 /* decoded HTTP2-Settings bytes */

int sl_h1_can_h2c(const h1_conn_t *hc)
{
    return !sl_conn_is_tls(hc->c) && hc->c->lcfg && hc->c->lcfg->h2c;
}

/* Hand the connection to HTTP/2. Frees the h1 state first (conn.h), so
 * bytes that live in hc->in are detached and freed after the call. */
static int switch_to_h2(h1_conn_t *hc, const uint8_t *p, size_t len, const sl_req_t *req,
                        const uint8_t *settings, size_t slen)
{
    sl_conn_t *c = hc->c;
    uint8_t *keep = hc->in;
    hc->in = NULL;
    c->pdata = NULL;
    sl_h1_set_timer(hc, 0);
    if (hc->paused_input || hc->paused_body)
        sl_conn_resume_read(c);
    int r = req ? sl_h2_conn_upgrade(c, settings, slen, req, p, len) : sl_h2_conn_start(c, p, len);
    if (hc->live) {
        hc->x.closed = 1;
        sl_req_dispose(&hc->x.req);
    }
    sl_free(hc);
    sl_free(keep);
    return r == 0 ? H1_SWITCHED : H1_SWITCHED_CLOSE;
}

/* RFC 7540 3.2 (h2c upgrade): cleartext, no body, Upgrade lists h2c, one
 * HTTP2-Settings and Connection naming both. Returns 0 when not
 * upgrading (serve HTTP/1.1), else H1_SWITCHED / H1_SWITCHED_CLOSE. */
int sl_h1_try_upgrade(h1_conn_t *hc, const sl_h1_head_t *head, const uint8_t *rest, size_t restlen)
{
    /* Off by default: a client can tunnel past a front proxy's rules by
     * upgrading a connection the proxy passed through ("h2c smuggling"). */
    if (!head->upgrade || !sl_h1_can_h2c(hc) || !hc->c->lcfg->h2c_upgrade ||
        head->version_minor != 1 || head->chunked || head->content_length > 0 ||
        !sl_str_has_token(head->upgrade_proto, "h2c"))
        return 0;
    const sl_header_t *settings = NULL;
    int conn_ok = 0;
    for (size_t i = 0; i < head->nheaders; i++) {
        const sl_header_t *h = &head->headers[i];
        if (sl_str_caseeq(h->name, "http2-settings")) {
            if (settings)
                return 0;
            settings = h;
        } else if (sl_str_caseeq(h->name, "connection")) {
            conn_ok |= sl_str_has_token(h->value, "http2-settings");
        }
    }
    if (!settings || !conn_ok)
        return 0;
    uint8_t buf[SETTINGS_MAX];
    ssize_t slen = sl_base64url_decode(settings->value.p, settings->value.n, buf, sizeof(buf));
    if (slen < 0 || slen % 6 != 0)
        return 0;
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: h2c\r\n\r\n";
    if (sl_conn_write(hc->c, resp, sizeof(resp) - 1) != 0)
        return 0;
    sl_h1_build_req(hc, head);
    hc->live = 1;
    return switch_to_h2(hc, rest, restlen, &hc->x.req, buf, (size_t)slen);
}

/* Prior knowledge: the first bytes on a cleartext h2c listener are the
 * HTTP/2 preface (possibly split). Returns 0 to go on as HTTP/1.1,
 * H1_INCOMPLETE when the bytes so far match but are too few, or a
 * switch result. */
int sl_h1_check_preface(h1_conn_t *hc, const uint8_t *data, size_t len)
{
    size_t have = hc->in_len, n = SL_MIN(have + len, (size_t)PREFACE_LEN);
    int broken = 0;
    for (size_t i = 0; i < n && !broken; i++) {
        uint8_t b = i < have ? hc->in[i] : data[i - have];
        if (b != (uint8_t)PREFACE[i]) {
            /* "PRI " then something else: a broken HTTP/2 preface, not an
             * HTTP/1.1 request. HTTP/2 answers it (GOAWAY PROTOCOL_ERROR). */
            broken = i >= 4;
            if (broken)
                break;
            hc->not_preface = 1;
            return 0;
        }
    }
    if (!broken && have + len < PREFACE_LEN) {
        if (sl_h1_in_append(hc, data, len) != 0)
            return SL_ECLOSED;
        if (hc->state == H1_IDLE) {
            sl_h1_set_state(hc, H1_HEAD);
            sl_h1_set_timer(hc, hc->cfg->timeouts.h1_header_s);
        }
        return H1_INCOMPLETE;
    }
    if (have == 0)
        return switch_to_h2(hc, data, len, NULL, NULL, 0);
    if (sl_h1_in_append(hc, data, len) != 0)
        return SL_ECLOSED;
    return switch_to_h2(hc, hc->in, hc->in_len, NULL, NULL, 0);
}
