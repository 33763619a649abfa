/* sluice - SPDX-License-Identifier: MIT
 *
 * The upstream families of a scrape (a metrics source, metrics.h): per
 * server, summed over the workers' own states (balance.c), which each
 * worker publishes into counters with relaxed stores (px_srv_publish) so
 * that the scraping worker reads them without a lock and without a race.
 * Names and meanings: docs/ops.md.
 */
#include "proxy_int.h"
#include "proxy.h"
#include "../config.h"
#include <stdio.h>

typedef struct srv_sum {
    unsigned long long attempts, failures, conns, idle, lat_ns;
    uint64_t lat[SL_M_BUCKETS];
    int workers, up;
} srv_sum_t;

static void sum_server(px_upstream_t *up, size_t i, uint64_t now_ms, srv_sum_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int w = 0; w <= PX_MAX_WORKERS; w++) {
        px_wstate_t *ws = __atomic_load_n(&up->ws[w], __ATOMIC_ACQUIRE);
        if (!ws)
            continue;
        const px_srvstate_t *s = &ws->srv[i];
        out->attempts += sl_counter_get(&s->m_attempts);
        out->failures += sl_counter_get(&s->m_failures);
        out->conns += sl_counter_get(&s->m_conns);
        out->idle += sl_counter_get(&s->m_idle);
        out->lat_ns += sl_counter_get(&s->m_lat_ns);
        for (int b = 0; b < SL_M_BUCKETS; b++)
            out->lat[b] += sl_counter_get(&s->m_lat[b]);
        out->workers++;
        out->up += sl_counter_get(&s->m_down) <= now_ms;
    }
}

static void family(sl_metrics_text_t *t, const px_upstreams_t *ups, const char *name,
                   const char *type, const char *help, int which)
{
    char u[256], sv[256];
    uint64_t now_ms = (uint64_t)(ev_time() * 1000.0);
    sl_metrics_head(t, name, type, help);
    for (size_t g = 0; ups && g < ups->n; g++) {
        px_upstream_t *up = &ups->v[g];
        for (size_t i = 0; i < up->nservers; i++) {
            srv_sum_t s;
            sum_server(up, i, now_ms, &s);
            unsigned long long v = which == 0   ? s.attempts
                                   : which == 1 ? s.failures
                                   : which == 2 ? s.conns
                                   : which == 3 ? s.idle
                                                : (unsigned long long)(s.up == s.workers);
            sl_metrics_printf(t, "%s{upstream=\"%s\",server=\"%s\"} %llu\n", name,
                              sl_metrics_label(u, sizeof(u), up->name),
                              sl_metrics_label(sv, sizeof(sv), up->servers[i].name), v);
        }
    }
}

static void latency(sl_metrics_text_t *t, const px_upstreams_t *ups)
{
    char u[256], sv[256], labels[600];
    sl_metrics_head(t, "sluice_upstream_response_seconds", "histogram",
                    "From sending a request to the server to its response head.");
    for (size_t g = 0; ups && g < ups->n; g++) {
        px_upstream_t *up = &ups->v[g];
        for (size_t i = 0; i < up->nservers; i++) {
            srv_sum_t s;
            sum_server(up, i, 0, &s);
            snprintf(labels, sizeof(labels), "upstream=\"%s\",server=\"%s\"",
                     sl_metrics_label(u, sizeof(u), up->name),
                     sl_metrics_label(sv, sizeof(sv), up->servers[i].name));
            sl_metrics_histogram(t, "sluice_upstream_response_seconds", labels, s.lat,
                                 (double)s.lat_ns / 1e9);
        }
    }
}

void px_metrics_source(sl_metrics_text_t *t, const struct sl_config *cfg)
{
    const px_upstreams_t *ups = sl_config_section(cfg, "upstreams");
    family(t, ups, "sluice_upstream_requests_total", "counter",
           "Attempts sent to an upstream server (a retry counts again).", 0);
    family(t, ups, "sluice_upstream_failures_total", "counter",
           "Attempts that failed: connect error, reset, timeout, bad response.", 1);
    family(t, ups, "sluice_upstream_connections", "gauge",
           "Connections open to the server (HTTP/1.1 busy and idle, HTTP/2).", 2);
    family(t, ups, "sluice_upstream_idle_connections", "gauge",
           "Idle keep-alive connections kept to the server.", 3);
    family(t, ups, "sluice_upstream_server_up", "gauge",
           "1 when no worker has the server marked down (passive or active checks).", 4);
    latency(t, ups);
}
