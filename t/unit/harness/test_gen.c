/* sluice - SPDX-License-Identifier: MIT
 *
 * Unit tests for src/harness/gen.c and digest.c: the deterministic byte
 * stream matches the vectors computed by the Python version in
 * docs/harness.md, does not depend on how it is cut into pieces, and the
 * streamed SHA-256 agrees with one-shot hashing.
 */
#include "harness/harness_int.h"
#include "../helpers.h"
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

/* Vectors from the Python generator in docs/harness.md. */
START_TEST(gen_vectors)
{
    uint8_t b[16];
    char h[33];
    ck_assert(sl_harness_gen_word(0, 0) == 0xe220a8397b1dcdafull); /* splitmix64(0) */
    sl_harness_gen_fill(0, 0, b, 16);
    hex(b, 16, h);
    ck_assert_str_eq(h, "afcd1d7b39a820e2f465b9a16a9e786e");
    sl_harness_gen_fill(1, 0, b, 16);
    hex(b, 16, h);
    ck_assert_str_eq(h, "c15c0289ec2d0a9167ec8e65a18debbe");
    sl_harness_gen_fill(UINT64_MAX, 0, b, 16);
    hex(b, 16, h);
    ck_assert_str_eq(h, "202c651b7771d9e4c982f6db67f89fe9");
}
END_TEST

START_TEST(gen_pieces_do_not_matter)
{
    enum { N = 4099 };
    uint8_t *whole = malloc(N), *cut = malloc(N);
    sl_harness_gen_fill(42, 0, whole, N);
    /* Odd piece sizes start and end inside words. */
    static const size_t sizes[] = {1, 3, 7, 8, 9, 13, 64, 1000};
    for (size_t s = 0; s < SL_ARRAY_LEN(sizes); s++) {
        memset(cut, 0, N);
        for (size_t off = 0; off < N; off += sizes[s])
            sl_harness_gen_fill(42, off, cut + off, SL_MIN(sizes[s], (size_t)N - off));
        ck_assert(memcmp(whole, cut, N) == 0);
    }
    free(whole);
    free(cut);
}
END_TEST

START_TEST(gen_zero_length)
{
    uint8_t b[1] = {0x5a};
    sl_harness_gen_fill(0, 5, b, 0);
    ck_assert_int_eq(b[0], 0x5a);
}
END_TEST

static void sha_of_gen(uint64_t n, uint64_t seed, size_t piece, char out[65])
{
    sl_harness_sha_t sha;
    uint8_t *buf = malloc(piece);
    ck_assert_int_eq(sl_harness_sha_init(&sha, EVP_sha256()), 0);
    for (uint64_t off = 0; off < n; off += piece) {
        size_t len = (size_t)SL_MIN((uint64_t)piece, n - off);
        sl_harness_gen_fill(seed, off, buf, len);
        sl_harness_sha_update(&sha, buf, len);
    }
    ck_assert(sha.n == n);
    ck_assert_int_eq(sl_harness_sha_final_hex(&sha, out), 0);
    sl_harness_sha_dispose(&sha);
    free(buf);
}

START_TEST(gen_sha_vectors)
{
    char h[65];
    sha_of_gen(1 << 20, 0, 16384, h);
    ck_assert_str_eq(h, "bc9d1d01517351f3e2c02d32495b3bfbcba5ec54e5f1a44b06f51755d0086a01");
    sha_of_gen(1000, 42, 7, h);
    ck_assert_str_eq(h, "9478da224d93883893008c657d547a0a4f40ed3244d0f1cc527e2ee281d03f44");
    sha_of_gen(12345, 7, 4096, h);
    ck_assert_str_eq(h, "58257600665dc6151a6c00999f9a7a6474c66dd1910ddc4ce7660793504dd1f0");
}
END_TEST

START_TEST(sha_empty_and_abc)
{
    sl_harness_sha_t sha;
    char h[65];
    ck_assert_int_eq(sl_harness_sha_init(&sha, EVP_sha256()), 0);
    sl_harness_sha_update(&sha, NULL, 0);
    ck_assert_int_eq(sl_harness_sha_final_hex(&sha, h), 0);
    ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sl_harness_sha_dispose(&sha);
    sl_harness_sha_dispose(&sha); /* twice is harmless */
    ck_assert_int_eq(sl_harness_sha_init(&sha, EVP_sha256()), 0);
    sl_harness_sha_update(&sha, "a", 1);
    sl_harness_sha_update(&sha, "bc", 2);
    ck_assert_int_eq(sl_harness_sha_final_hex(&sha, h), 0);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sl_harness_sha_dispose(&sha);
}
END_TEST

static Suite *gen_suite(void)
{
    Suite *s = suite_create("harness_gen");
    TCase *tc = sl_test_tcase("gen");
    tcase_add_test(tc, gen_vectors);
    tcase_add_test(tc, gen_pieces_do_not_matter);
    tcase_add_test(tc, gen_zero_length);
    tcase_add_test(tc, gen_sha_vectors);
    tcase_add_test(tc, sha_empty_and_abc);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return sl_test_run(gen_suite());
}
