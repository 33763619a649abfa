/* sluice - SPDX-License-Identifier: MIT
 *
 * The "health" handler: route option "check" is "live" (always 200, the
 * process answers) or "ready" (200 until the worker starts draining, then
 * 503 so load balancers stop sending new work). Bodies are small static
 * JSON documents, never cached.
 */
#include "handlers.h"
#include "config.h"
#include "conn.h"
#include <stdio.h>

typedef enum check { CHECK_LIVE = 0, CHECK_READY = 1 } check_t;

static const char live_body[] = "{\"status\":\"live\"}\n";
static const char ready_body[] = "{\"status\":\"ready\"}\n";
static const char draining_body[] = "{\"status\":\"draining\"}\n";

static int configure(json_t *route, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const keys[] = {"check"};
    const char *check;
    int rv = sl_router_check_keys(route, path, keys, SL_ARRAY_LEN(keys), err, errlen);
    if (rv == 0)
        rv = sl_conf_get_str(route, path, "check", "live", &check, err, errlen);
    if (rv != 0)
        return rv;
    static const check_t kinds[] = {CHECK_LIVE, CHECK_READY};
    if (!check || (strcmp(check, "live") != 0 && strcmp(check, "ready") != 0)) {
        snprintf(err, errlen, "%s.check: must be \"live\" or \"ready\"", path);
        return SL_EINVAL;
    }
    /* A pointer to a static constant: nothing to free. */
    *state = (void *)(uintptr_t)&kinds[strcmp(check, "ready") == 0];
    return 0;
}

static void free_state(void *state)
{
    SL_UNUSED(state); /* points at a static constant */
}

static void answer(sl_req_t *req, int status, const char *body, size_t len)
{
    req->cbs = &sl_req_discard_cbs;
    req->res.status = status;
    req->res.content_length = (int64_t)len;
    sl_resp_header_add(req, "content-type", "application/json");
    sl_resp_header_add(req, "cache-control", "no-store");
    sl_resp_send(req, body, len, 1);
}

static void on_req(sl_req_t *req)
{
    check_t check = *(const check_t *)req->route->state;
    if (check == CHECK_LIVE)
        answer(req, 200, live_body, sizeof(live_body) - 1);
    else if (!sl_conn_is_draining(req->conn))
        answer(req, 200, ready_body, sizeof(ready_body) - 1);
    else
        answer(req, 503, draining_body, sizeof(draining_body) - 1);
}

const sl_handler_def_t sl_health_handler = {
    .name = "health",
    .configure = configure,
    .free_state = free_state,
    .on_req = on_req,
};
