/* sluice - SPDX-License-Identifier: MIT
 *
 * Configuration: one JSON file loaded with jansson into an immutable
 * snapshot (sl_config_t) that workers read without locks. The core keys are
 * described by static tables in config.c (name, type, default, min, max);
 * each handler parses its own route options through its sl_handler_def_t
 * (router.h). Errors name the JSON path ("limits.h2_max_concurrent_streams")
 * and, for syntax errors, the line. See README "Configuration".
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include "sl.h"
#include "conf.h"
#include <jansson.h>
#include <stdatomic.h>
#include <sys/socket.h>

typedef struct sl_tls_cert_cfg {
    char *cert, *key;
    char **names; /* server names for SNI (from config, else from the cert) */
    size_t nnames;
} sl_tls_cert_cfg_t;

typedef struct sl_tls_cfg {
    sl_tls_cert_cfg_t *certs; /* the first is the default */
    size_t ncerts;
    int self_signed;     /* create cert/key for localhost when missing */
    char *ciphers;       /* TLS 1.2 cipher list */
    char *ciphersuites;  /* TLS 1.3 suites */
    char *min_version;   /* "TLSv1.2" (default) or "TLSv1.3" */
    int session_tickets; /* default on */
    char *client_ca;     /* CA file for client certificates, NULL = none */
    int verify_client;   /* SL_TLS_VERIFY_OFF / _OPTIONAL / _REQUIRE */
} sl_tls_cfg_t;

enum { SL_TLS_VERIFY_OFF = 0, SL_TLS_VERIFY_OPTIONAL, SL_TLS_VERIFY_REQUIRE };

typedef struct sl_listener_cfg {
    char *addr; /* as written: "[::]:8443", "127.0.0.1:0" */
    struct sockaddr_storage ss;
    socklen_t sslen;
    sl_tls_cfg_t *tls; /* NULL for cleartext */
    int h2c;           /* cleartext: accept the h2 prior-knowledge preface (default 1) */
    int h2c_upgrade;   /* cleartext: also HTTP/1.1 "Upgrade: h2c" (default 0: h2c smuggling) */
    int proxy_protocol; /* a PROXY protocol v1/v2 header comes first (default 0) */
    int quic;           /* TLS: also HTTP/3 over UDP on the same address and port (0) */
    int64_t alt_svc_max_age; /* quic: Alt-Svc "ma" on HTTP/1.1 and HTTP/2 answers; 0 = none */
    /* Set by the main thread once the port is bound, before any worker
     * sees the snapshot (sl_listener_cfg_bound): the Alt-Svc value, or
     * empty when none is sent. */
    int bound_port;
    char alt_svc[48];
    int backlog;
    int index;
    int slot; /* its metrics label (sl_metrics_intern), -1 when none */
} sl_listener_cfg_t;

typedef struct sl_limits {
    /* HTTP/1.1 */
    size_t h1_uri_bytes;      /* 414 past this (default 8192) */
    size_t h1_header_bytes;   /* 431 past this: request line + headers (65536) */
    size_t h1_max_headers;    /* 431 past this count (100) */
    size_t body_window_bytes; /* unconsumed request-body bytes before reads stop (65536) */
    int64_t max_body_bytes;   /* 413 past this (default 1 GiB, 0 = unlimited) */
    size_t conn_out_bytes;    /* per-connection output queue (256 KiB) */
    /* HTTP/2 */
    uint32_t h2_max_concurrent_streams; /* 100 */
    uint32_t h2_initial_window;         /* 65535..2^31-1 (default 1 MiB) */
    uint32_t h2_conn_window;            /* connection window (default 16 MiB) */
    uint32_t h2_max_frame_size;         /* 16384..16777215 (16384) */
    uint32_t h2_header_list_bytes;      /* SETTINGS_MAX_HEADER_LIST_SIZE (65536) */
    uint32_t h2_header_table_bytes;     /* HPACK table (4096) */
    uint32_t h2_max_continuations;      /* CONTINUATION frames per header block (8) */
    uint32_t h2_reset_burst;            /* client RST_STREAM token bucket burst (1000) */
    uint32_t h2_reset_rate;             /* ... refilled per second (33) */
    uint32_t h2_glitch_limit;           /* abusive frames per window before GOAWAY (1000) */
    uint32_t h2_glitch_window_s;        /* (10) */
    uint32_t h2_max_settings;           /* entries per SETTINGS (32) */
    uint32_t h2_max_outbound_ack;       /* queued SETTINGS/PING acks (1000) */
    /* connections */
    uint32_t max_conns_per_worker;   /* (10000) */
    uint32_t conns_per_ip;           /* open connections per client address, all workers (0 = off) */
    uint32_t conns_per_ip_v6_prefix; /* IPv6 clients grouped by this prefix (64) */
} sl_limits_t;

typedef struct sl_timeouts {
    double tls_handshake_s; /* 10 */
    double h1_header_s;     /* header read (slowloris) -> 408 (10) */
    double h1_keepalive_s;  /* idle between requests (75) */
    double h2_idle_s;       /* connection with no open streams (300) */
    double h2_frame_s;      /* one frame or header block left incomplete (10; 0 = off) */
    double stream_idle_s;   /* no bytes either way on a stream (300; 0 = off) */
    double request_body_s;  /* no body bytes while expecting more (60) */
    double drain_s;         /* drain_timeout_s: in-flight grace on shutdown (30) */
    double linger_s;        /* flush-before-close limit (2) */
    double reload_drain_s;  /* after a reload, HTTP/2 conns on the old config go on (60) */
} sl_timeouts_t;

#define SL_CONFIG_MAX_SECTIONS 16

typedef struct sl_config {
    int workers; /* resolved: "auto" -> online CPUs */
    sl_listener_cfg_t *listeners;
    size_t nlisteners;
    sl_tls_cfg_t *tls_cfgs; /* owned; listeners point in here */
    size_t ntls;
    sl_limits_t limits;
    sl_timeouts_t timeouts;
    int access_log;          /* JSON access lines (default 1) */
    char *access_log_path;   /* appended to; NULL = stdout */
    char *pid_file;          /* written at start, removed at exit; NULL = none */
    int allow_encoded_slash; /* "%2F" in a path kept encoded, not a 400 (default 0) */
    char *log_level;         /* "debug","info","warn","error" (default "info") */
    char *server_name;       /* Server header value, NULL = none (default "sluice") */
    char *path;              /* file it was loaded from, or "(embedded)" */
    json_t *root;            /* the parsed document (for handlers) */
    void *sections[SL_CONFIG_MAX_SECTIONS]; /* registered sections' parsed state */
    /* What the process built for this snapshot (main.c: TLS contexts),
     * freed with it. */
    void *runtime;
    void (*runtime_free)(void *runtime);
    /* Lifetime across reloads (config_life.c). */
    atomic_int live;  /* the main thread's current, workers, connections */
    atomic_int refs;  /* one for all of `live`, plus jobs and deliveries */
    atomic_int acks;  /* workers yet to drop their per-worker state */
    int stage;        /* what the main thread does next (SL_CONFIG_RETIRE/_FREE) */
    double replaced_at; /* ev_time() when a reload replaced it; 0 while current */
    struct sl_config *next_retired;
} sl_config_t;

/* The listener's socket is bound to port: fill bound_port and alt_svc.
 * Main thread only, before the snapshot reaches a worker. */
void sl_listener_cfg_bound(const sl_listener_cfg_t *lc, int port);

/* Load and validate. On failure returns NULL and writes a one-line message
 * naming the JSON path (and line for syntax errors) into err. */
sl_config_t *sl_config_load_file(const char *path, char *err, size_t errlen);
sl_config_t *sl_config_load_string(const char *json, const char *name, char *err, size_t errlen);
void sl_config_free(sl_config_t *cfg);

/* The effective configuration for --print-config: the document with file
 * and environment merged, the core keys with their defaults, secrets
 * redacted (config_print.c). The caller owns the result. */
json_t *sl_config_effective(const sl_config_t *cfg);
json_t *sl_config_listeners_json(const sl_config_t *cfg);
/* Replace secret values in v, in place. */
void sl_config_redact(json_t *v);

/* A top-level key owned by another module ("upstreams", "executors",
 * "routes", ...). Register before loading (main.c). parse gets the key's
 * value, or NULL when absent, and path (the key) for messages; it stores
 * its result in *state. Sections are parsed after the core keys in the
 * order registered; the router's "routes" comes last, so a handler's
 * configure may look the others up with
 * sl_config_section(sl_config_loading(), name). */
typedef struct sl_config_section_def {
    const char *name;
    int (*parse)(json_t *value, const char *path, void **state, char *err, size_t errlen);
    void (*free_state)(void *state);
    /* Optional: drop what worker worker_id keeps for this snapshot (timers,
     * idle connections) on that worker's thread, its loop still running,
     * once no connection uses the snapshot any more (after a reload). */
    void (*retire_worker)(void *state, int worker_id);
} sl_config_section_def_t;

/* Returns the section's slot, for sl_config_section_at. */
int sl_config_register_section(const sl_config_section_def_t *def);
/* The parsed state of a registered section (NULL if it stored none). */
void *sl_config_section(const sl_config_t *cfg, const char *name);
/* The same by slot, without a name lookup (for the request path). */
static inline void *sl_config_section_at(const sl_config_t *cfg, int slot)
{
    return cfg->sections[slot];
}
/* The config being loaded, valid only during sl_config_load_*. */
const sl_config_t *sl_config_loading(void);

/* ---- lifetime across reloads (config_life.c) ----
 *
 * A loaded snapshot starts with one `live` hold, the loader's. Workers
 * hold their current snapshot and every connection the one it was
 * accepted on, so a reload never changes the config under an open
 * connection. When the last hold goes, the snapshot is queued for the
 * main thread, which asks every worker to drop its per-worker state
 * (sections' retire_worker); the last worker to do so drops the
 * snapshot's reference. Jobs (and result deliveries) take references:
 * they need the executors and upstreams, not the workers' state. At zero
 * references it is queued again and the main thread frees it. Any thread
 * may hold, release, ref and unref. */
#define SL_CONFIG_RETIRE 1
#define SL_CONFIG_FREE 2
void sl_config_hold(const sl_config_t *cfg);
void sl_config_release(const sl_config_t *cfg);
void sl_config_ref(const sl_config_t *cfg);
void sl_config_unref(const sl_config_t *cfg);
/* Main thread: the next queued snapshot and its stage, or NULL. */
sl_config_t *sl_config_next_retired(void);
/* SL_CONFIG_RETIRE: the main thread expects n acknowledgements plus its
 * own (sl_config_ack once it has asked the workers); the last one drops
 * the reference. A worker that was not asked (its loop is over) keeps its
 * state until sl_config_free, which frees it without the loop. */
void sl_config_expect_acks(sl_config_t *cfg, int n);
void sl_config_ack(sl_config_t *cfg);
/* Worker worker_id's part, on its thread: sections' retire_worker, then
 * its acknowledgement. */
void sl_config_retire_worker(sl_config_t *cfg, int worker_id);

#endif
