/* sluice - SPDX-License-Identifier: MIT
 *
 * Configuration snapshots at run time, on the main thread: what the
 * process builds for one (TLS contexts, attached to it and freed with
 * it), handing a new one to running workers (SIGHUP), and retiring old
 * ones once nothing uses them (config.h describes the counts). docs/ops.md
 * "Reload" has the user's view.
 */
#ifndef SL_RELOAD_H
#define SL_RELOAD_H

#include "sl.h"
#include "config.h"
#include "worker.h"
#include <openssl/ssl.h>

/* Build cfg's TLS contexts (every certificate read and checked) and
 * attach them to cfg. Returns 0, or SL_ERROR with err set. */
int sl_reload_build(sl_config_t *cfg, char *err, size_t errlen);
/* Per listener of cfg: its TLS context, or NULL for cleartext. */
SSL_CTX *const *sl_reload_ctxs(const sl_config_t *cfg);

/* Make cfg (built) current on every worker after old: listeners with the
 * same address keep their sockets, new ones are opened here (one per
 * worker), the others close. Returns 0, or SL_ERROR with err set and
 * nothing changed. cfg gets a hold per worker; the caller keeps its own. */
int sl_reload_apply(sl_worker_t *workers, int nworkers, const sl_config_t *old,
                    const sl_config_t *cfg, char *err, size_t errlen);

/* Step the snapshots queued by config_life.c: ask running workers to
 * drop their state of retired ones, free unreferenced ones. live = 0 once
 * the workers are gone (shutdown): everything is freed here. */
void sl_reload_retire(sl_worker_t *workers, int nworkers, int live);

#endif
