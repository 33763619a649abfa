/* sluice - SPDX-License-Identifier: MIT
 *
 * Living under a service manager or as a container's PID 1, without
 * libsystemd: the sd_notify datagram protocol (READY=1, RELOADING=1,
 * STOPPING=1 to $NOTIFY_SOCKET), socket activation ($LISTEN_FDS), the
 * pid file and `sluice -s SIGNAL`, and reaping orphans when sluice is
 * PID 1. docs/ops.md describes each.
 */
#ifndef SL_SERVICE_H
#define SL_SERVICE_H

#include "config.h"

/* Send state ("READY=1", ...) to $NOTIFY_SOCKET; nothing when unset. */
void sl_service_notify(const char *state);

/* Take the sockets systemd passed ($LISTEN_PID is us, $LISTEN_FDS of them
 * from fd 3). Call once, before opening listeners. */
void sl_service_take_sockets(void);
/* An inherited listening socket bound to lc's address (its ownership
 * passes to the caller), or -1. */
int sl_service_socket_for(const sl_listener_cfg_t *lc);
/* Close inherited sockets no listener took (logged). */
void sl_service_close_unused(void);

/* Write our pid to path (atomically: a temporary file renamed). */
int sl_service_write_pid(const char *path, char *err, size_t errlen);
/* Remove path if it still holds our pid. */
void sl_service_remove_pid(const char *path);
/* `sluice -s reload|reopen|stop`: signal the pid in path. 0 or 1 (exit code). */
int sl_service_signal(const char *path, const char *what);

/* Reap exited children of the calling thread that nobody else waits for:
 * the orphans a PID 1 inherits. The jobs thread's own children are left to
 * it (__WNOTHREAD). */
void sl_service_reap(void);

#endif
