/*
 * fuzz_trie.c: libFuzzer target. The input is read as a program of
 * operations on one trie and one globset; every answer is compared with
 * model.h, and any difference, sanitizer report or leak is a finding.
 *
 * Invariant: for any input, each operation returns what the model says (or
 * -ENOMEM exactly when a failure was injected, with nothing applied), and
 * after freeing, no allocation is left.
 *
 * Program format, one operation after another until the input runs out:
 *   op byte:  bits 0-1  0 add, 1 remove, 2 match, 3 glob_match
 *             bit  2    inject an allocation failure in this operation,
 *             bits 3-5  ... after this many successful allocations
 *   key:      see read_key (tokens from a small dictionary, so keys nest
 *             and collide, or raw bytes, so invalid keys are tried too)
 *   id byte:  id = byte % 8 (small, so duplicates happen)
 *   flags:    for match, byte % 4 (0 included)
 *
 * Built only with clang (-fsanitize=fuzzer); run by
 * tests/native/test_c_sanitizers.py for a bounded time.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_hooks.h"
#include "fuzz_input.h"
#include "model.h"
#include "trie.h"

/* A key into k (capacity 256); 0 when the input ran out. */
static int read_key(struct input *in, char *k, size_t *len)
{
    static const char *const tokens[] = {"a", "b", "local", "domain", "0", "*",
                                         "**", "@x", "@introduceDomain", "", "a*",
                                         "/"};
    uint8_t b;

    if (!take(in, &b))
        return 0;
    if (b >= 0xf0) { /* raw bytes, any of them */
        *len = take_raw(in, k, b & 0x0f);
        return 1;
    }
    if (b % 16 == 0) {
        k[0] = '/';
        *len = 1;
        return 1;
    }
    if (b % 16 == 1) {
        memcpy(k, "@x", 2);
        *len = 2;
        return 1;
    }
    *len = take_components(in, k, 0, 1 + b % 6, tokens, sizeof tokens / sizeof tokens[0]);
    return 1;
}

static void check_ids(int64_t n, const uint64_t *got, const uint64_t *want,
                      size_t wn)
{
    if (n != (int64_t)wn || memcmp(got, want, wn * sizeof *want) != 0)
        abort();
}

/* Match with a growing buffer, as the contract says: n > cap means retry
 * with cap >= n. Returns a malloc'd array (count in *n). */
static uint64_t *match_all(xsd_trie *t, xsd_globset *g, const char *k,
                           size_t klen, unsigned flags, int64_t *n)
{
    size_t cap = 4;
    uint64_t *buf = model_xalloc(cap * sizeof *buf);

    for (;;) {
        *n = t != NULL ? xsd_trie_match(t, k, klen, flags, buf, cap)
                       : xsd_globset_match(g, k, klen, buf, cap);
        if (*n < 0 || (size_t)*n <= cap)
            return buf;
        cap = (size_t)*n;
        free(buf);
        buf = model_xalloc(cap * sizeof *buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct model tm, gm;
    xsd_trie *t;
    xsd_globset *g;
    char k[256], p[256];
    size_t klen, plen, i, wn;
    uint64_t *want, *got;
    uint8_t op, b;
    int rc, mrc, grc;
    int64_t n;

    hooks_fail_after(-1, 0);
    t = xsd_trie_new();
    g = xsd_globset_new();
    if (t == NULL || g == NULL)
        abort();
    model_init(&tm);
    model_init(&gm);
    while (take(&in, &op) && read_key(&in, k, &klen)) {
        int kind = model_key_kind(k, klen);

        if (!take(&in, &b))
            break;
        if (op & 4)
            hooks_fail_after((op >> 3) & 7, 0);
        switch (op & 3) {
        case 0:
        case 1:
            if ((op & 3) == 0) {
                rc = xsd_trie_add(t, k, klen, b % 8);
                grc = xsd_globset_add(g, k, klen, b % 8);
            } else {
                rc = xsd_trie_remove(t, k, klen, b % 8);
                grc = xsd_globset_remove(g, k, klen, b % 8);
            }
            if (kind == 0) {
                if (rc != -EINVAL || grc != -EINVAL)
                    abort();
                break;
            }
            if (rc == -ENOMEM) {
                if (!hooks_failed() || (op & 3) != 0)
                    abort(); /* only injected, only on add */
            } else {
                mrc = (op & 3) == 0 ? model_add(&tm, k, klen, b % 8)
                                    : model_remove(&tm, k, klen, b % 8);
                if (rc != (mrc == 0 ? 0 : (op & 3) == 0 ? -EEXIST : -ENOENT))
                    abort();
            }
            if (grc == -ENOMEM) {
                if (!hooks_failed() || (op & 3) != 0)
                    abort();
            } else {
                mrc = (op & 3) == 0 ? model_add(&gm, k, klen, b % 8)
                                    : model_remove(&gm, k, klen, b % 8);
                if (grc != (mrc == 0 ? 0 : (op & 3) == 0 ? -EEXIST : -ENOENT))
                    abort();
            }
            break;
        case 2:
            got = match_all(t, NULL, k, klen, b % 4, &n);
            if (kind == 0) {
                if (n != -EINVAL)
                    abort();
                free(got);
                break;
            }
            want = model_match(&tm, k, klen, b % 4, &wn);
            check_ids(n, got, want, wn);
            free(want);
            free(got);
            got = match_all(NULL, g, k, klen, 0, &n);
            want = model_xalloc((gm.n + 1) * sizeof *want);
            for (wn = 0, i = 0; i < gm.n; i++)
                if (model_glob(gm.v[i].key, gm.v[i].len, k, klen) == 1)
                    want[wn++] = gm.v[i].id;
            wn = model_sort_unique(want, wn);
            check_ids(n, got, want, wn);
            free(want);
            free(got);
            break;
        default:
            if (!read_key(&in, p, &plen))
                break;
            rc = xsd_glob_match(p, plen, k, klen);
            mrc = model_glob(p, plen, k, klen);
            if (rc != (mrc < 0 ? -EINVAL : mrc))
                abort();
            break;
        }
        hooks_fail_after(-1, 0);
        if (xsd_trie_count(t) != tm.n || xsd_globset_count(g) != gm.n)
            abort();
    }
    xsd_trie_free(t);
    xsd_globset_free(g);
    model_clear(&tm);
    model_clear(&gm);
    if (hooks_live_blocks() != 0)
        abort();
    return 0;
}
