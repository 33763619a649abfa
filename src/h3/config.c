/* sluice - SPDX-License-Identifier: MIT
 *
 * The "quic" section: how every QUIC listener's connections behave
 * (docs/h3.md). Which listeners speak QUIC is the listener's own "quic".
 */
#include "h3_int.h"
#include <string.h>

#define K(f, t, def, min, max) SL_CONF_INT(t, sl_h3_cfg_t, f, def, min, max)

static const sl_conf_key_t quic_keys[] = {
    K(retry_handshakes, SL_CONF_U32, 100, 1, 1000000),
    SL_CONF_SECONDS(sl_h3_cfg_t, idle_timeout_s, 30, 1, 3600),
    K(max_streams, SL_CONF_U32, 100, 1, 10000),
    K(stream_window, SL_CONF_U32, 256 << 10, 16384, 1 << 30),
    K(conn_window, SL_CONF_U32, 4 << 20, 65536, 1 << 30),
    K(response_buffer, SL_CONF_U32, 256 << 10, 16384, 64 << 20),
    K(header_list_bytes, SL_CONF_U32, 65536, 1024, 16 << 20),
    K(qpack_table_bytes, SL_CONF_U32, 4096, 0, 1 << 20),
    K(qpack_blocked, SL_CONF_U32, 100, 0, 10000),
    K(reset_burst, SL_CONF_U32, 1000, 1, 1000000),
    K(reset_rate, SL_CONF_U32, 33, 1, 1000000),
};

static const sl_h3_cfg_t *defaults(void)
{
    static sl_h3_cfg_t d;
    static int done;
    if (!done) { /* first called while the main thread loads, before any worker */
        sl_conf_table_defaults(quic_keys, SL_ARRAY_LEN(quic_keys), &d);
        d.retry = SL_H3_RETRY_AUTO;
        done = 1;
    }
    return &d;
}

static int parse_retry(json_t *obj, const char *path, sl_h3_cfg_t *q, char *err, size_t errlen)
{
    static const char *const names[] = {"auto", "always", "never"};
    const char *v;
    if (sl_conf_get_str(obj, path, "retry", "auto", &v, err, errlen))
        return SL_EINVAL;
    for (int i = 0; i < 3; i++)
        if (strcmp(v, names[i]) == 0) {
            q->retry = i;
            return 0;
        }
    return sl_conf_fail(err, errlen, "%s.retry: must be \"auto\", \"always\" or \"never\"", path);
}

static int parse_quic(json_t *v, const char *path, void **state, char *err, size_t errlen)
{
    static const char *const also[] = {"retry"};
    defaults();
    if (!v)
        return 0;
    if (!json_is_object(v))
        return sl_conf_fail(err, errlen, "%s: must be an object", path);
    sl_h3_cfg_t *q = sl_calloc(1, sizeof(*q));
    *state = q;
    if (sl_conf_table_load(quic_keys, SL_ARRAY_LEN(quic_keys), v, path, q, also, 1, err, errlen))
        return SL_EINVAL;
    return parse_retry(v, path, q, err, errlen);
}

static int slot = -1;

static const sl_config_section_def_t quic_section = {
    .name = "quic", .parse = parse_quic, .free_state = sl_free};

void sl_h3_config_register(void)
{
    if (slot < 0)
        slot = sl_config_register_section(&quic_section);
}

const sl_h3_cfg_t *sl_h3_cfg(const sl_config_t *cfg)
{
    const sl_h3_cfg_t *q = slot >= 0 ? sl_config_section_at(cfg, slot) : NULL;
    return q ? q : defaults();
}
