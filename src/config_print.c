/* sluice - SPDX-License-Identifier: MIT
 *
 * `sluice --print-config`: the effective configuration as JSON (config.h,
 * sl_config_effective). The core keys are written from the loaded
 * snapshot, so their defaults show; a module's section is shown as given
 * (file and environment merged). Secrets are redacted: the value of any key
 * named like a secret, and the password in a URL ("redis://u:pw@h").
 */
#include "config.h"
#include <ctype.h>
#include <stdio.h>

#define REDACTED "(redacted)"

static json_t *tls_json(const sl_tls_cfg_t *t)
{
    static const char *const verify[] = {"off", "optional", "require"};
    json_t *o = json_object(), *certs = json_array();
    for (size_t i = 0; i < t->ncerts; i++) {
        const sl_tls_cert_cfg_t *c = &t->certs[i];
        json_t *names = json_array();
        for (size_t j = 0; j < c->nnames; j++)
            json_array_append_new(names, json_string(c->names[j]));
        json_array_append_new(certs, json_pack("{s:s, s:s, s:o}", "cert", c->cert, "key", c->key,
                                               "names", names));
    }
    json_object_set_new(o, "certs", certs);
    json_object_set_new(o, "self_signed", json_boolean(t->self_signed));
    json_object_set_new(o, "ciphers", t->ciphers ? json_string(t->ciphers) : json_null());
    json_object_set_new(o, "ciphersuites",
                        t->ciphersuites ? json_string(t->ciphersuites) : json_null());
    json_object_set_new(o, "min_version", json_string(t->min_version));
    json_object_set_new(o, "session_tickets", json_boolean(t->session_tickets));
    json_object_set_new(o, "client_ca", t->client_ca ? json_string(t->client_ca) : json_null());
    json_object_set_new(o, "verify_client", json_string(verify[t->verify_client]));
    return o;
}

json_t *sl_config_listeners_json(const sl_config_t *cfg)
{
    json_t *a = json_array();
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const sl_listener_cfg_t *l = &cfg->listeners[i];
        json_t *o = json_pack("{s:s, s:b, s:b, s:b, s:i, s:b}", "addr", l->addr, "h2c", l->h2c,
                              "h2c_upgrade", l->h2c_upgrade, "proxy_protocol", l->proxy_protocol,
                              "backlog", l->backlog, "quic", l->quic);
        json_object_set_new(o, "alt_svc_max_age", json_integer(l->alt_svc_max_age));
        json_object_set_new(o, "tls", l->tls ? tls_json(l->tls) : json_null());
        json_array_append_new(a, o);
    }
    return a;
}

static int secret_key(const char *key)
{
    static const char *const words[] = {"token",  "password",      "passwd",  "secret", "credential",
                                         "cookie", "authorization", "api-key", "api_key"};
    char low[128];
    size_t n = 0;
    for (; key[n] && n + 1 < sizeof(low); n++)
        low[n] = (char)tolower((unsigned char)key[n]);
    low[n] = '\0';
    if (n >= 5 && strcmp(low + n - 5, "_file") == 0)
        return 0; /* a path to the secret, not the secret */
    for (size_t i = 0; i < SL_ARRAY_LEN(words); i++)
        if (strstr(low, words[i]))
            return 1;
    return 0;
}

/* "scheme://user:pw@host" -> "scheme://user:(redacted)@host"; NULL if none. */
static json_t *redact_url(const char *s)
{
    const char *auth = strstr(s, "://");
    if (!auth)
        return NULL;
    auth += 3;
    const char *at = strchr(auth, '@'), *end = auth + strcspn(auth, "/?#");
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!at || at > end || !colon)
        return NULL;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%.*s" REDACTED "%s", (int)(colon + 1 - s), s, at);
    return json_string(buf);
}

void sl_config_redact(json_t *v)
{
    const char *key;
    json_t *m;
    size_t i;
    if (json_is_array(v)) {
        json_array_foreach(v, i, m) {
            json_t *r = json_is_string(m) ? redact_url(json_string_value(m)) : NULL;
            if (r)
                json_array_set_new(v, i, r);
            else
                sl_config_redact(m);
        }
        return;
    }
    json_object_foreach(v, key, m) {
        json_t *r = NULL;
        if (secret_key(key) && !json_is_null(m))
            r = json_string(REDACTED);
        else if (json_is_string(m))
            r = redact_url(json_string_value(m));
        if (r)
            json_object_set_new(v, key, r);
        else
            sl_config_redact(m);
    }
}
