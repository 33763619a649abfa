/* sluice - SPDX-License-Identifier: MIT
 *
 * The request's side of route auth. While the auth service is asked, the
 * request body waits in a buffer that the protocol's window bounds (no
 * byte is consumed, so the client cannot send more); once allowed, the
 * copied fields replace any the client sent, the handler runs and gets
 * the buffered body. A denial goes to the client as the service wrote
 * it; a failure is a 503 (fail closed).
 *
 * Once allowed, a request with reauth_s asks again every reauth_s for as
 * long as it lives (a stream: SSE, WebSocket, a long proxied response),
 * through the same cache, so many streams with one credential cost one
 * request per cache_s. A denial ends the stream through the handler's
 * on_revoke (or a reset); a failure to ask keeps it (logged).
 *
 * The gate outlives nothing: the request's pool disposal detaches it,
 * and it is freed then, or after the handler call it is inside of.
 */
#include "auth_int.h"
#include "../log.h"
#include "../metrics.h"
#include "../worker.h"
#include <stdio.h>

typedef struct gate {
    sl_auth_waiter_t w; /* first: the waiter is the gate */
    sl_auth_t *a;
    sl_req_t *req; /* NULL once the request is gone */
    sl_auth_next_fn next;
    struct ev_loop *loop;
    sl_buf_t body;
    ev_timer reauth;
    unsigned body_on : 1, fin : 1, passed : 1, in_next : 1, reauth_on : 1;
} gate_t;

static void gate_free(gate_t *g)
{
    if (g->body_on)
        sl_buf_dispose(&g->body);
    sl_free(g);
}

/* The request's pool is being disposed: it is over. */
static void gate_gone(void *arg)
{
    gate_t *g = arg;
    g->req = NULL;
    sl_auth_unwait(&g->w);
    if (g->reauth_on)
        ev_timer_stop(g->loop, &g->reauth);
    g->reauth_on = 0;
    if (!g->in_next)
        gate_free(g);
}

static void on_body(sl_req_t *req, const uint8_t *data, size_t len, int fin)
{
    gate_t *g = req->hdata;
    if (!g->body_on) {
        sl_worker_t *w = sl_worker_current();
        sl_buf_init(&g->body, &w->bufpool, sl_req_body_chunks(req));
        g->body_on = 1;
    }
    /* Within the protocol's own window, so this cannot overflow. */
    if (len && sl_buf_write_all(&g->body, data, len) != 0) {
        sl_log_stream(SL_LOG_ERROR, req->conn, req->stream_id,
                      "auth: %zu body bytes past the buffer bound", len);
        sl_req_consume(req, len);
    }
    g->fin |= fin;
}

static const sl_handler_cbs_t gate_cbs = {.on_body = on_body};

/* The client's values of the copied fields go; the service's come. */
static void apply(gate_t *g, const sl_auth_decision_t *d)
{
    sl_req_t *req = g->req;
    sl_headers_t *h = &req->headers;
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++) {
        int copied = 0;
        for (size_t j = 0; j < g->a->ncopy && !copied; j++)
            copied = sl_str_eq(h->v[i].name, g->a->copy[j]);
        if (!copied)
            h->v[k++] = h->v[i];
    }
    h->n = k;
    char note[512];
    size_t nn = 0;
    for (size_t j = 0; j < g->a->ncopy; j++) {
        const char *v = d->values[j];
        if (!v)
            continue;
        sl_headers_add(&req->pool, h, g->a->copy[j], strlen(g->a->copy[j]), v, strlen(v));
        int w = snprintf(note + nn, sizeof(note) - nn, "%s%s=%s", nn ? " " : "", g->a->copy[j], v);
        nn = w > 0 ? SL_MIN(nn + (size_t)w, sizeof(note) - 1) : nn;
    }
    if (nn)
        sl_req_note(req, &req->log_auth, note, nn);
}

/* The buffered body, to the handler that now owns the request. */
static void replay(gate_t *g)
{
    const uint8_t *p;
    size_t n;
    sl_req_t *req = g->req;
    if (!req->cbs || !req->cbs->on_body) { /* not wanted: give the credit back */
        if (g->body_on)
            sl_req_consume(req, sl_buf_len(&g->body));
        return;
    }
    while (g->req && g->body_on && sl_buf_peek(&g->body, &p, &n) == 0) {
        int last = g->fin && sl_buf_len(&g->body) == n;
        req->cbs->on_body(req, p, n, last);
        if (!g->req || last)
            return;
        sl_buf_skip(&g->body, n);
    }
    if (g->req && g->fin && req->cbs && req->cbs->on_body)
        req->cbs->on_body(req, NULL, 0, 1);
}

static void deny(gate_t *g, sl_auth_decision_t *d)
{
    sl_req_t *req = g->req;
    if (g->body_on)
        sl_req_consume(req, sl_buf_len(&g->body));
    req->cbs = &sl_req_discard_cbs;
    req->hdata = NULL;
    if (d->kind == SL_AUTH_ERROR) {
        sl_resp_header_add(req, "retry-after", "1");
        sl_resp_error(req, 503, "authorization unavailable");
        return;
    }
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id, "route %s: access denied (%d)",
                  g->a->route, d->status);
    if (d->www_authenticate)
        sl_resp_header_add(req, "www-authenticate", d->www_authenticate);
    sl_resp_simple(req, d->status, d->content_type ? d->content_type : "text/plain", d->body,
                   d->body_len);
}

static void on_recheck(struct ev_loop *loop, ev_timer *t, int revents);

static void allow(gate_t *g, sl_auth_decision_t *d)
{
    sl_req_t *req = g->req;
    apply(g, d);
    g->passed = 1;
    req->cbs = NULL;
    req->hdata = NULL;
    g->in_next = 1;
    g->next(req);
    if (g->req)
        replay(g);
    g->in_next = 0;
    if (!g->req) {
        gate_free(g);
        return;
    }
    if (g->body_on) {
        sl_buf_dispose(&g->body);
        g->body_on = 0;
    }
    /* A JWT's stream lasts until the token expires; a service's is asked
     * again every reauth_s. */
    double wall = (double)sl_wall_ms() / 1000.0;
    double first = d->not_after > 0 ? SL_MAX(d->not_after - wall, 0.001) : g->a->reauth_s;
    if (first > 0 && !req->final_sent) {
        ev_timer_init(&g->reauth, on_recheck, first, g->a->jwt ? 0. : g->a->reauth_s);
        g->reauth.data = g;
        ev_timer_start(g->loop, &g->reauth);
        g->reauth_on = 1;
    }
}

static void end_stream(gate_t *g, const char *why)
{
    sl_req_t *req = g->req;
    ev_timer_stop(g->loop, &g->reauth);
    g->reauth_on = 0;
    if (req->final_sent)
        return;
    sl_metrics_auth(SL_M_AUTH_REVOKED);
    sl_log_stream(SL_LOG_INFO, req->conn, req->stream_id,
                  "route %s: access withdrawn (%s); ending the stream", g->a->route, why);
    if (req->cbs && req->cbs->on_revoke)
        req->cbs->on_revoke(req, "access revoked");
    else
        sl_resp_reset(req, SL_RESET_CANCEL);
}

static void decided(gate_t *g, sl_auth_decision_t *d)
{
    if (!g->passed && d->kind == SL_AUTH_ALLOW)
        allow(g, d);
    else if (!g->passed)
        deny(g, d);
    else if (d->kind == SL_AUTH_DENY)
        end_stream(g, d->status == 403 ? "the auth service answered 403"
                                       : "the auth service answered 401");
    else if (d->kind == SL_AUTH_ERROR)
        sl_log_stream(SL_LOG_WARN, g->req->conn, g->req->stream_id,
                      "route %s: could not ask the auth service again (%s); the stream goes on",
                      g->a->route, d->error);
    sl_auth_decision_unref(d);
}

static void on_decided(sl_auth_waiter_t *w, sl_auth_decision_t *d)
{
    decided((gate_t *)w, d);
}

static void on_recheck(struct ev_loop *loop, ev_timer *t, int revents)
{
    SL_UNUSED(loop);
    SL_UNUSED(revents);
    gate_t *g = t->data;
    if (g->a->jwt) {
        end_stream(g, "the token expired");
        return;
    }
    if (g->w.check) /* the last question is still out */
        return;
    sl_auth_decision_t *d = sl_auth_ask(g->a, g->req, &g->w);
    if (d)
        decided(g, d);
}

void sl_auth_begin(sl_auth_t *a, sl_req_t *req, sl_auth_next_fn next)
{
    gate_t *g = sl_calloc(1, sizeof(*g));
    g->w.done = on_decided;
    g->a = a;
    g->req = req;
    g->next = next;
    g->loop = sl_worker_current()->loop;
    sl_pool_on_dispose(&req->pool, gate_gone, g);
    req->cbs = &gate_cbs;
    req->hdata = g;
    sl_auth_decision_t *d = a->jwt ? sl_auth_jwt_check(a, req) : sl_auth_ask(a, req, &g->w);
    if (d)
        decided(g, d);
}
