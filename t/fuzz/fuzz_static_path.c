/* sluice - SPDX-License-Identifier: MIT
 *
 * libFuzzer entry for the static handler's path mapper
 * (sl_static_path_normalize in src/static/path.c): the input is a raw
 * request path. An accepted one must be relative (no leading '/'), have no
 * empty, "." or ".." segment, no NUL, no '\\', fit the buffer, and map to
 * itself again (a second decode would be a double-decoding bug, so only
 * paths without '%' are checked for that).
 */
#include "static/static_int.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[SL_STATIC_PATH_MAX], again[SL_STATIC_PATH_MAX];
    size_t n = 0, n2 = 0;
    const char *why = NULL;
    int r = sl_static_path_normalize((const char *)data, size, out, sizeof(out), &n, &why);
    if (r != 0) {
        check(r == SL_EINVAL || r == SL_ETOOBIG);
        return 0;
    }
    check(n < sizeof(out) && out[n] == '\0');
    check(n == 0 || out[0] != '/');
    check(memchr(out, '\0', n) == NULL && memchr(out, '\\', n) == NULL);
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && out[e] != '/')
            e++;
        size_t seg = e - i;
        check(seg > 0 || e == n);
        check(!(seg == 1 && out[i] == '.'));
        check(!(seg == 2 && out[i] == '.' && out[i + 1] == '.'));
        i = e + 1;
    }
    sl_static_path_has_dotfile(out, n);
    if (!memchr(out, '%', n)) {
        check(sl_static_path_normalize(out, n, again, sizeof(again), &n2, &why) == 0);
        check(n2 == n && memcmp(again, out, n) == 0);
    }
    return 0;
}
