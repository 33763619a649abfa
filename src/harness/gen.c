/* sluice - SPDX-License-Identifier: MIT
 *
 * The deterministic byte stream behind bytes/N, stream/N and reset: the
 * splitmix64 sequence used in counter mode, so any offset can be produced
 * without generating what comes before it, and chunk boundaries never
 * change the bytes. docs/harness.md gives the same generator in Python.
 */
#include "harness_int.h"

#define GOLDEN 0x9E3779B97F4A7C15ull

uint64_t sl_harness_gen_word(uint64_t seed, uint64_t k)
{
    uint64_t z = seed + (k + 1) * GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void store_le(uint8_t *dst, uint64_t w)
{
    for (int i = 0; i < 8; i++)
        dst[i] = (uint8_t)(w >> (8 * i));
}

void sl_harness_gen_fill(uint64_t seed, uint64_t offset, uint8_t *dst, size_t n)
{
    uint64_t k = offset / 8;
    size_t skip = (size_t)(offset % 8);
    uint8_t tmp[8];
    /* A piece that starts or ends inside a word goes through tmp. */
    if (skip) {
        store_le(tmp, sl_harness_gen_word(seed, k++));
        size_t take = SL_MIN(n, 8 - skip);
        memcpy(dst, tmp + skip, take);
        dst += take;
        n -= take;
    }
    for (; n >= 8; n -= 8, dst += 8)
        store_le(dst, sl_harness_gen_word(seed, k++));
    if (n) {
        store_le(tmp, sl_harness_gen_word(seed, k));
        memcpy(dst, tmp, n);
    }
}
