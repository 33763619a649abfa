/* sluice - SPDX-License-Identifier: MIT
 *
 * Configuration keys from the environment: SLUICE_<PATH>, levels joined by
 * "__", array items by index (SLUICE_LIMITS__H2_MAX_CONCURRENT_STREAMS=200,
 * SLUICE_LISTEN__0__ADDR=[::]:9443, SLUICE_ROUTES='[...]'). A value that
 * parses as JSON is that JSON, anything else is a string. A variable
 * without "__" whose name is no top-level key (SLUICE_BIN) is not
 * configuration and is left alone. docs/config.md has the rule.
 */
#ifndef SL_CONFIG_ENV_H
#define SL_CONFIG_ENV_H

#include "conf.h"

#define SL_CONFIG_ENV_MAX 128

typedef struct sl_config_env_set {
    char path[SL_CONF_PATH_LEN]; /* "limits.h2_max_concurrent_streams" */
    char var[208];
} sl_config_env_set_t;

/* What the environment set, so that errors can name the variable. */
typedef struct sl_config_env {
    sl_config_env_set_t set[SL_CONFIG_ENV_MAX];
    size_t n;
} sl_config_env_t;

/* Merge every configuration variable into root (the parsed file); keys are
 * the top-level key names. On a bad variable: SL_EINVAL and a message. */
int sl_config_env_merge(json_t *root, const char *const *keys, size_t nkeys, sl_config_env_t *tr,
                        char *err, size_t errlen);
/* Append " (from the environment: VAR)" to err when it is about a path a
 * variable set. */
void sl_config_env_blame(const sl_config_env_t *tr, char *err, size_t errlen);

#endif
