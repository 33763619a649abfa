/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the config loader (src/config.c and the route option
 * parsers of every handler main.c registers). The input is the JSON text;
 * a loaded config is freed at once, so LeakSanitizer checks both the
 * success and every error unwinding path. Build: make -C t/fuzz.
 */
#include "config.h"
#include "handlers.h"
#include "harness/harness.h"
#include "log.h"
#include "router.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same set as main.c register_handlers, so route options reach their
 * parsers instead of stopping at "unknown handler". */
static void setup(void)
{
    /* SLUICE_* variables override the file; keep runs reproducible. */
    static const char *const vars[] = {"SLUICE_WORKERS", "SLUICE_LOG_LEVEL", "SLUICE_ACCESS_LOG",
                                       "SLUICE_LISTEN",  "SLUICE_TLS_CERT",  "SLUICE_TLS_KEY"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    sl_log_set_level("error");
    sl_router_register(&sl_health_handler);
    sl_router_register(&sl_return_handler);
    sl_router_register(&sl_harness_handler);
    sl_router_init();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    char err[512];
    if (!ready) {
        setup();
        ready = 1;
    }
    /* A NUL in the input would just end the text early: the loader takes
     * a C string, as does the file reader that rejects embedded NULs. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    err[0] = '\0';
    sl_config_t *cfg = sl_config_load_string(text, "fuzz.json", err, sizeof(err));
    /* A failure must say why. */
    if (!cfg && err[0] == '\0')
        abort();
    sl_config_free(cfg);
    free(text);
    return 0;
}
