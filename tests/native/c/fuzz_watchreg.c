/*
 * fuzz_watchreg.c: libFuzzer target for watchreg.h. The input is a program
 * of operations on one registry over one trie and one store, some with an
 * injected allocation failure.
 *
 * Invariant: for any input, every call returns 0/a count or one of the
 * documented -errno values; a call that returns -ENOMEM changed nothing (the
 * counts of the registry, of each session and of the trie are those before);
 * the trie holds exactly one entry per watch, and the sessions' counts add
 * up to the registry's; every fire's output is well formed (headers and
 * lengths consistent to its last byte, sessions in use, keys whose path is
 * an ancestor of, equal to or below the fired path); after freeing, no
 * allocation is left. Which deliveries are made is held to the Python
 * registry by tests/native/test_watchreg.py.
 *
 * Program format, one operation after another until the input runs out:
 *   op byte:  bits 0-2  0/1 add, 2 remove, 3 fire_change, 4 fire_remove (the
 *                       below list from the fuzz input's paths), 5
 *                       fire_special, 6 session new / free / clear / set,
 *                       7 store write (so parents have perms)
 *             bit  3    inject an allocation failure in this operation,
 *             bits 4-6  ... after this many successful allocations
 *   session:  one byte, taken mod 8 (a handle not in use is tried too)
 *   path:     tokens from a small dictionary, a special name, or raw bytes
 *   perms:    one byte picks a list
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
#include "store.h"
#include "trie.h"
#include "watchreg.h"

#define NSESS 8

/* Permission lists; each entry ends in NUL, the literal's own is the last. */
#define P(lit) {(lit), sizeof(lit)}
static const struct {
    const char *p;
    size_t len;
} PERMS[] = {P("n0"), P("r1"), P("n1\0r2"), P("b2\0n1"), P("w3\0r0\0r1"), P("n5")};
static char out[1 << 16];

static void perms_of(uint8_t b, const char **p, size_t *len)
{
    size_t i = b % (sizeof PERMS / sizeof PERMS[0]);

    *p = PERMS[i].p;
    *len = PERMS[i].len;
}

static void put32(char *dst, size_t v)
{
    for (int k = 0; k < 4; k++)
        dst[k] = (char)(uint8_t)(v >> (8 * k));
}

static int read_path(struct input *in, char *k, size_t *len)
{
    static const char *const tokens[] = {"a", "b", "local", "domain", "1", "2", "x"};
    uint8_t b;

    if (!take(in, &b))
        return 0;
    if (b < 200) {
        k[0] = '/';
        *len = take_components(in, k, 0, b % 6, tokens, 7);
        if (*len == 0)
            *len = 1;
        return 1;
    }
    if (b < 230) {
        memcpy(k, b & 1 ? "@releaseDomain" : "@introduceDomain", b & 1 ? 14 : 16);
        *len = b & 1 ? 14 : 16;
        return 1;
    }
    *len = take_raw(in, k, b % 24);
    return 1;
}

static int is_at_or_above_or_below(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;

    if (alen == 1 && a[0] == '/')
        return blen >= 1 && b[0] == '/';
    if (blen == 1 && b[0] == '/')
        return a[0] == '/';
    return memcmp(a, b, n) == 0 && (alen == blen || (alen < blen ? b[n] : a[n]) == '/');
}

static void check_deliveries(int64_t n, size_t cap, const int *used, const char *path,
                             size_t len, int special)
{
    size_t at = 0, evlen, plen, tlen;
    uint32_t s;

    if (n < 0) {
        if (n != -ENOMEM && n != -EINVAL)
            abort();
        return;
    }
    if ((size_t)n > cap)
        return; /* not written: only its size was */
    while (at < (size_t)n) {
        if ((size_t)n - at < XSD_WREG_DELIVERY_HEADER)
            abort();
        s = (uint32_t)(uint8_t)out[at] | (uint32_t)(uint8_t)out[at + 1] << 8 |
            (uint32_t)(uint8_t)out[at + 2] << 16 | (uint32_t)(uint8_t)out[at + 3] << 24;
        evlen = (size_t)(uint8_t)out[at + 4] | (size_t)(uint8_t)out[at + 5] << 8;
        plen = (size_t)(uint8_t)out[at + 6] | (size_t)(uint8_t)out[at + 7] << 8;
        tlen = (size_t)(uint8_t)out[at + 8] | (size_t)(uint8_t)out[at + 9] << 8;
        at += XSD_WREG_DELIVERY_HEADER;
        if (s >= NSESS || !used[s])
            abort();
        if (evlen != XSD_WREG_SAME_PATH)
            at += evlen;
        if (at + plen + 1 + tlen > (size_t)n || out[at + plen] != '\0')
            abort();
        if (special ? (plen != len || memcmp(out + at, path, len) != 0)
                    : !is_at_or_above_or_below(out + at, plen, path, len))
            abort();
        at += plen + 1 + tlen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    xsd_trie *t;
    xsd_store *st;
    xsd_wreg *r;
    int used[NSESS] = {0}, asks, rc;
    size_t count[NSESS] = {0}, total, len, i, plen, cap;
    int64_t n, h;
    uint8_t op, b;
    char path[256], key[300];
    const char *perms;
    char below[600];
    size_t blen;

    t = xsd_trie_new();
    st = xsd_store_new();
    r = t != NULL ? xsd_wreg_new(t, st) : NULL;
    if (r == NULL || st == NULL)
        goto done;
    while (take(&in, &op)) {
        size_t before_total = xsd_wreg_count(r), before_trie = xsd_trie_count(t);

        if (!take(&in, &b))
            break;
        i = b % NSESS;
        if (op & 8)
            hooks_fail_after((op >> 4) & 7, 0);
        switch (op & 7) {
        case 0:
        case 1:
            if (!read_path(&in, path, &len) || !take(&in, &b))
                break;
            rc = xsd_wreg_add(r, (uint32_t)i, path, len, "tok", b % 4, op & 16, NULL);
            if (rc == 0) {
                count[i]++;
            } else if (rc != -EEXIST && rc != -EINVAL && rc != -ENOMEM) {
                abort();
            }
            if (rc == -ENOMEM && (xsd_wreg_count(r) != before_total ||
                                  xsd_trie_count(t) != before_trie))
                abort();
            break;
        case 2:
            if (!read_path(&in, path, &len) || !take(&in, &b))
                break;
            memcpy(key, path, len);
            key[len] = '\0';
            memcpy(key + len + 1, "tok", b % 4);
            rc = xsd_wreg_remove(r, (uint32_t)i, key, len + 1 + b % 4);
            if (rc == 0)
                count[i]--;
            else if (rc != -ENOENT && rc != -EINVAL)
                abort();
            break;
        case 3:
            if (!read_path(&in, path, &len) || !take(&in, &b))
                break;
            perms_of(b, &perms, &plen);
            cap = b & 128 ? 16 : sizeof out;
            n = xsd_wreg_fire_change(r, path, len, perms, plen, b & 64 ? "r2" : NULL,
                                     b & 64 ? 3 : 0, out, cap);
            check_deliveries(n, cap, used, path, len, 0);
            break;
        case 4:
            if (!read_path(&in, path, &len) || !take(&in, &b))
                break;
            perms_of(b, &perms, &plen);
            n = xsd_wreg_fire_remove(r, path, len, perms, plen, NULL, 0, &asks, out,
                                     sizeof out);
            if (n >= 0 && asks && (size_t)n <= sizeof out) {
                /* every path it asked about, with perms and no parent's */
                blen = 0;
                for (size_t at = 0; at < (size_t)n && blen + 300 < sizeof below;) {
                    size_t l = strlen(out + at);

                    put32(below + blen, l);
                    memcpy(below + blen + 4, out + at, l);
                    blen += 4 + l;
                    put32(below + blen, plen);
                    memcpy(below + blen + 4, perms, plen);
                    blen += 4 + plen;
                    memset(below + blen, 0xff, 4);
                    blen += 4;
                    at += l + 1;
                }
                n = xsd_wreg_fire_remove(r, path, len, perms, plen, below, blen, &asks,
                                         out, sizeof out);
            }
            check_deliveries(n, sizeof out, used, path, len, 0);
            break;
        case 5:
            perms_of(b, &perms, &plen);
            n = xsd_wreg_fire_special(r, "@releaseDomain", 14, b & 64 ? perms : NULL, plen,
                                      out, sizeof out);
            check_deliveries(n, sizeof out, used, "@releaseDomain", 14, 1);
            break;
        case 6:
            if (!used[i] && (b & 0xc0) == 0) {
                h = xsd_wreg_session_new(r);
                if (h >= 0) {
                    if (h >= NSESS || used[h])
                        abort();
                    used[h] = 1;
                    count[h] = 0;
                } else if (h != -ENOMEM) {
                    abort();
                }
            } else if ((b & 0xc0) == 0x40) {
                rc = xsd_wreg_session_free(r, (uint32_t)i);
                if (rc != (used[i] ? 0 : -EINVAL))
                    abort();
                used[i] = 0;
                count[i] = 0;
            } else if ((b & 0xc0) == 0x80) {
                rc = xsd_wreg_session_clear(r, (uint32_t)i);
                if (rc != (used[i] ? 0 : -EINVAL))
                    abort();
                count[i] = 0;
            } else {
                rc = xsd_wreg_session_set(r, (uint32_t)i, b & 3, b & 4 ? 1 : -1, b & 8);
                if (rc != (used[i] ? 0 : -EINVAL))
                    abort();
            }
            break;
        default:
            if (!read_path(&in, path, &len) || !take(&in, &b))
                break;
            perms_of(b, &perms, &plen);
            (void)xsd_store_write(st, path, len, "", 0, perms, plen);
            break;
        }
        hooks_fail_after(-1, 0);
        for (total = 0, i = 0; i < NSESS; i++) {
            if (xsd_wreg_session_count(r, (uint32_t)i) != (used[i] ? count[i] : 0))
                abort();
            total += used[i] ? count[i] : 0;
        }
        if (xsd_wreg_count(r) != total || xsd_trie_count(t) != total)
            abort();
    }
done:
    hooks_fail_after(-1, 0);
    xsd_wreg_free(r);
    xsd_trie_free(t);
    xsd_store_free(st);
    if (hooks_live_blocks() != 0)
        abort();
    return 0;
}
