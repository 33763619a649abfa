/* sluice - SPDX-License-Identifier: MIT
 *
 * The "ws" route handler: parses the route's options (one table: name,
 * default, bounds) and starts the route's app on each handshake.
 *   {"path": "/_h/ws/echo", "handler": "ws", "app": "echo"}
 *   {"path": "/_h/ws/broadcast/", "handler": "ws", "app": "broadcast"}
 *   {"path": "/_f/ws", "handler": "ws", "app": "fault", "faults": true}
 */
#include "ws_int.h"
#include "../config.h"
#include <stdio.h>

typedef struct opt_def {
    const char *key;
    int64_t def, min, max;
} opt_def_t;

enum { O_MAX_MSG, O_SENDQ, O_PING, O_IDLE, O_CHANNELS, O_SUBS, O_INBOX, O_N };

static const opt_def_t opt_defs[O_N] = {
    [O_MAX_MSG] = {"max_message_bytes", 1 << 20, 125, 1 << 30},
    [O_SENDQ] = {"send_queue_bytes", 1 << 20, 1024, 1 << 30},
    [O_PING] = {"ping_interval_s", 30, 0, 86400},
    [O_IDLE] = {"idle_timeout_s", 120, 0, 86400},
    [O_CHANNELS] = {"max_channels", 1024, 1, 1 << 20},
    [O_SUBS] = {"max_subscribers", 10000, 1, 1 << 24},
    [O_INBOX] = {"inbox_bytes", 64 << 20, 1 << 16, (int64_t)1 << 34},
};

static void free_state(void *state)
{
    sl_free(state);
}

static int configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    const char *keys[O_N + 3] = {"deflate", "app", "faults"};
    for (size_t i = 0; i < O_N; i++)
        keys[i + 3] = opt_defs[i].key;
    if (sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen))
        return SL_EINVAL;
    sl_ws_route_t *r = sl_calloc(1, sizeof(*r));
    int64_t v[O_N];
    for (size_t i = 0; i < O_N; i++) {
        const opt_def_t *d = &opt_defs[i];
        if (sl_conf_get_int(route, path, d->key, d->def, d->min, d->max, &v[i], err, errlen))
            goto fail;
    }
    int deflate;
    if (sl_conf_get_bool(route, path, "deflate", 1, &deflate, err, errlen))
        goto fail;
    if (sl_conf_get_str(route, path, "app", NULL, &r->app, err, errlen))
        goto fail;
    if (sl_conf_get_bool(route, path, "faults", 0, &r->faults, err, errlen))
        goto fail;
    if (!r->app || (strcmp(r->app, "echo") != 0 && strcmp(r->app, "broadcast") != 0 &&
                    strcmp(r->app, "fault") != 0)) {
        snprintf(err, errlen, "%s.app: must be \"echo\", \"broadcast\" or \"fault\"", path);
        goto fail;
    }
    if (strcmp(r->app, "fault") == 0 && !r->faults) {
        snprintf(err, errlen, "%s.app: \"fault\" needs \"faults\": true on the route", path);
        goto fail;
    }
    if (r->faults)
        sl_ws_fault_metrics();
    r->opts.max_message_bytes = (size_t)v[O_MAX_MSG];
    r->opts.send_queue_bytes = (size_t)v[O_SENDQ];
    r->opts.ping_interval_s = (int)v[O_PING];
    r->opts.idle_timeout_s = (int)v[O_IDLE];
    r->opts.deflate = deflate;
    r->max_channels = (size_t)v[O_CHANNELS];
    r->max_subscribers = (size_t)v[O_SUBS];
    r->inbox_bytes = (size_t)v[O_INBOX];
    *state = r;
    return 0;

fail:
    free_state(r);
    return SL_EINVAL;
}

static void on_req(sl_req_t *req)
{
    const sl_ws_route_t *r = req->route->state;
    if (r->app[0] == 'e')
        sl_ws_echo_start(req, r);
    else if (r->app[0] == 'f')
        sl_ws_fault_start(req, r);
    else
        sl_ws_broadcast_start(req, r);
}

const sl_handler_def_t sl_ws_handler = {
    .name = "ws",
    .configure = configure,
    .free_state = free_state,
    .on_req = on_req,
};
