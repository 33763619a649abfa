/* sluice - SPDX-License-Identifier: MIT
 *
 * The per-worker counter blocks, their registry and the hooks the core
 * calls (see metrics.h for the threading rule).
 */
#include "metrics.h"

const double sl_metrics_bounds[SL_M_BUCKETS - 1] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,   1,    2.5,   10};

static sl_metrics_t *registry[SL_M_MAX_WORKERS];
static __thread sl_metrics_t *current;

void sl_metrics_init(sl_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
    m->requests =
        sl_calloc((SL_M_MAX_ROUTES + 2) * SL_M_PROTOS * SL_M_CLASSES, sizeof(sl_counter_t));
}

void sl_metrics_dispose(sl_metrics_t *m)
{
    sl_free(m->requests);
    memset(m, 0, sizeof(*m));
}

/* Written by the main thread only (config loads); a scrape on a worker
 * reads the count with acquire, so the names below it are complete. */
static struct {
    const char *v[SL_M_MAX_ROUTES];
    atomic_size_t n;
    size_t cap;
} names[SL_M_NAME_KINDS] = {{.cap = SL_M_MAX_ROUTES}, {.cap = SL_M_MAX_LISTENERS}};

int sl_metrics_intern(int kind, const char *label)
{
    size_t n = atomic_load_explicit(&names[kind].n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[kind].v[i], label) == 0)
            return (int)i;
    if (n == names[kind].cap)
        return kind == SL_M_NAME_ROUTE ? SL_M_ROUTE_OTHER : -1;
    /* libc, not sl_malloc: kept for the process's life, outside the
     * allocation count that tests check for leaks */
    char *copy = strdup(label);
    if (!copy)
        return kind == SL_M_NAME_ROUTE ? SL_M_ROUTE_OTHER : -1;
    names[kind].v[n] = copy;
    atomic_store_explicit(&names[kind].n, n + 1, memory_order_release);
    return (int)n;
}

const char *const *sl_metrics_names(int kind, size_t *n)
{
    *n = atomic_load_explicit(&names[kind].n, memory_order_acquire);
    return names[kind].v;
}

void sl_metrics_register(int worker_id, sl_metrics_t *m)
{
    SL_ASSERT(worker_id >= 0 && worker_id < SL_M_MAX_WORKERS);
    registry[worker_id] = m;
}

void sl_metrics_unregister(int worker_id)
{
    registry[worker_id] = NULL;
}

void sl_metrics_bind(sl_metrics_t *m)
{
    current = m;
}

sl_metrics_t *sl_metrics_current(void)
{
    return current;
}

sl_metrics_t *sl_metrics_worker(int worker_id)
{
    return worker_id >= 0 && worker_id < SL_M_MAX_WORKERS ? registry[worker_id] : NULL;
}

void sl_metrics_request(int p, size_t route, int status, uint64_t in, uint64_t out, uint64_t ns)
{
    sl_metrics_t *m = current;
    if (!m || p < 0 || p >= SL_M_PROTOS)
        return;
    int cls = status >= 100 && status < 600 ? status / 100 : 0;
    if (route > SL_M_ROUTE_OTHER)
        route = SL_M_ROUTE_NONE;
    sl_counter_add(&m->requests[(route * SL_M_PROTOS + (size_t)p) * SL_M_CLASSES + (size_t)cls], 1);
    sl_counter_add(&m->bytes_in[p], in);
    sl_counter_add(&m->bytes_out[p], out);
    double s = (double)ns / 1e9;
    size_t b = 0;
    while (b < SL_M_BUCKETS - 1 && s > sl_metrics_bounds[b])
        b++;
    sl_counter_add(&m->duration[p][b], 1);
    sl_counter_add(&m->duration_ns[p], ns);
}

void sl_metrics_conn_accepted(int listener)
{
    sl_metrics_t *m = current;
    if (m && listener >= 0 && listener < SL_M_MAX_LISTENERS)
        sl_counter_add(&m->accepted[listener], 1);
}

void sl_metrics_conn_proto(int listener, int p, int delta)
{
    sl_metrics_t *m = current;
    if (!m || listener < 0 || listener >= SL_M_MAX_LISTENERS || p < 0 || p >= SL_M_PROTOS)
        return;
    sl_counter_add(delta > 0 ? &m->opened[listener][p] : &m->closed[listener][p], 1);
}

void sl_metrics_h2_stall(int conn)
{
    sl_metrics_t *m = current;
    if (m)
        sl_counter_add(&m->h2_stalls[conn ? 1 : 0], 1);
}

void sl_metrics_tls(const char *version, int ok)
{
    sl_metrics_t *m = current;
    if (!m)
        return;
    if (!ok) {
        sl_counter_add(&m->tls_failed, 1);
        return;
    }
    int v = version && strcmp(version, "TLSv1.2") == 0   ? 0
            : version && strcmp(version, "TLSv1.3") == 0 ? 1
                                                         : 2;
    sl_counter_add(&m->tls_ok[v], 1);
}

void sl_metrics_h2_frame(int received, int goaway, uint32_t code)
{
    sl_metrics_t *m = current;
    if (!m)
        return;
    size_t c = code < SL_M_H2_CODES - 1 ? code : SL_M_H2_CODES - 1;
    int d = received ? 1 : 0;
    sl_counter_add(goaway ? &m->h2_goaway[d][c] : &m->h2_rst[d][c], 1);
}

void sl_metrics_abuse(sl_metrics_abuse_t kind)
{
    sl_metrics_t *m = current;
    if (m && kind < SL_M_ABUSE_KINDS)
        sl_counter_add(&m->abuse[kind], 1);
}

void sl_metrics_quic(sl_metrics_quic_t kind)
{
    sl_metrics_t *m = current;
    if (m && kind < SL_M_QUIC_KINDS)
        sl_counter_add(&m->quic[kind], 1);
}

void sl_metrics_auth(sl_metrics_auth_t kind)
{
    sl_metrics_t *m = current;
    if (m && kind < SL_M_AUTH_KINDS)
        sl_counter_add(&m->auth[kind], 1);
}

void sl_metrics_ws_conn(int delta)
{
    sl_metrics_t *m = current;
    if (m)
        sl_counter_add(delta > 0 ? &m->ws_opened : &m->ws_closed, 1);
}

void sl_metrics_ws_message(int received)
{
    sl_metrics_t *m = current;
    if (m)
        sl_counter_add(&m->ws_messages[received ? 1 : 0], 1);
}

void sl_metrics_ws_close(int received, unsigned code)
{
    sl_metrics_t *m = current;
    if (!m)
        return;
    size_t i = code == 0                       ? 0
               : code >= 1000 && code <= 1015 ? code - 999
                                               : SL_M_WS_CODES - 1;
    sl_counter_add(&m->ws_close[received ? 1 : 0][i], 1);
}

/* Process-wide: only the main thread reloads. */
static atomic_ullong reloads[2]; /* [failed, ok] */
static atomic_int last_reload_ok = 1;
static _Atomic double last_ok_at;

void sl_metrics_reload(int ok)
{
    if (ok >= 0)
        atomic_fetch_add(&reloads[ok ? 1 : 0], 1);
    atomic_store(&last_reload_ok, ok != 0);
    if (ok)
        atomic_store(&last_ok_at, (double)sl_wall_ms() / 1000.0);
}

static void reload_source(sl_metrics_text_t *t, const struct sl_config *cfg)
{
    SL_UNUSED(cfg);
    sl_metrics_head(t, "sluice_config_reloads_total", "counter",
                    "Configuration reloads (SIGHUP), by result.");
    sl_metrics_printf(t, "sluice_config_reloads_total{result=\"ok\"} %llu\n",
                      (unsigned long long)atomic_load(&reloads[1]));
    sl_metrics_printf(t, "sluice_config_reloads_total{result=\"failed\"} %llu\n",
                      (unsigned long long)atomic_load(&reloads[0]));
    sl_metrics_head(t, "sluice_config_last_reload_successful", "gauge",
                    "1 when the last reload (or the start) loaded its configuration.");
    sl_metrics_printf(t, "sluice_config_last_reload_successful %d\n", atomic_load(&last_reload_ok));
    sl_metrics_head(t, "sluice_config_last_reload_success_timestamp_seconds", "gauge",
                    "When the running configuration was loaded (Unix time).");
    sl_metrics_printf(t, "sluice_config_last_reload_success_timestamp_seconds %.3f\n",
                      atomic_load(&last_ok_at));
}

static sl_metrics_source_fn sources[8] = {reload_source};
static size_t nsources = 1;

void sl_metrics_add_source(sl_metrics_source_fn fn)
{
    SL_ASSERT(nsources < SL_ARRAY_LEN(sources));
    for (size_t i = 0; i < nsources; i++)
        if (sources[i] == fn)
            return;
    sources[nsources++] = fn;
}

void sl_metrics_run_sources(sl_metrics_text_t *t, const struct sl_config *cfg)
{
    for (size_t i = 0; i < nsources; i++)
        sources[i](t, cfg);
}
