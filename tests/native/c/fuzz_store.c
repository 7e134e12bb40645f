/*
 * fuzz_store.c: libFuzzer target for store.h. The input is a program of
 * operations on one store, some with an injected allocation failure.
 *
 * Invariant: for any input, every call returns 0/a count or one of the
 * documented -errno values; a call that returns -ENOMEM changed nothing (the
 * dump of store_dump.h is the same before and after); xsd_store_check finds
 * no problem after any operation; after freeing, no allocation is left.
 *
 * Program format, one operation after another until the input runs out:
 *   op byte:  bits 0-2  0/1 write, 2 set_perms, 3 rm, 4 get and read, 5 children
 *                       (every listing is kept: it must equal a walk),
 *                       6 subtree, 7 one more byte picks (mod 10): 0 missing,
 *                       1 track (on if bit 4), 2/3 put, 4 load (a generation
 *                       byte follows, taken mod the counter), 5 move_last,
 *                       6 dump, 7 take_changes (bit 4: a big buffer, else
 *                       16 bytes), 8 changes, 9 bytes_of
 *             bit  3    inject an allocation failure in this operation,
 *             bits 4-6  ... after this many successful allocations
 *   path:     tokens from a small dictionary (so paths nest and collide),
 *             or raw bytes (so bad paths are tried too)
 *   value:    length byte (values up to 255 bytes, so nodes outgrow blocks)
 *   perms:    one byte picks a valid list, or raw bytes follow
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
#include "store_dump.h"

static int read_path(struct input *in, char *k, size_t *len)
{
    static const char *const tokens[] = { "a", "b", "local", "domain", "0", "1", "x" };
    uint8_t b;
    size_t n = 0;
    if (!take(in, &b))
        return 0;
    if (b >= 0xf0) {                 /* raw bytes */
        *len = take_raw(in, k, b & 0x0f);
        return 1;
    }
    if (b % 6 == 0)                  /* 0 components: the root */
        k[n++] = '/';
    *len = take_components(in, k, n, b % 6, tokens, sizeof tokens / sizeof tokens[0]);
    return 1;
}

#define LIST(lit) { (lit), sizeof(lit) - 1 }

static int read_perms(struct input *in, char *p, size_t *len)
{
    static const struct { const char *s; size_t len; } lists[] = {
        LIST("n0\0"), LIST("r1\0"), LIST("b2\0n0\0"), LIST("w65535\0r3\0r4\0"), LIST("n5\0"),
    };
    uint8_t b;
    if (!take(in, &b))
        return 0;
    if (b >= 0xf0) {                 /* raw bytes: mostly invalid lists */
        *len = take_raw(in, p, b & 0x0f);
        return 1;
    }
    memcpy(p, lists[b % 5].s, lists[b % 5].len);
    *len = lists[b % 5].len;
    return 1;
}

static int documented(int64_t rc)
{
    return rc >= 0 || rc == -EINVAL || rc == -ENOENT || rc == -ENOMEM || rc == -E2BIG ||
           rc == -ENAMETOOLONG;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { data, size };
    static char path[64], perms[32], value[256], out[4096];
    xsd_store *s;
    uint8_t op, vlen;
    size_t plen, permlen;

    hooks_fail_after(-1, 0);
    s = xsd_store_new();
    if (!s)
        abort();
    xsd_store_keep_listings(s, 1);      /* every listing kept: each change must drop it */
    memset(value, 'v', sizeof value);
    while (take(&in, &op) && read_path(&in, path, &plen)) {
        struct xsd_node_view v;
        int64_t rc;
        size_t before_len = 0, after_len;
        char *before = NULL, *after;
        if (op & 8) {
            before = store_dump(s, &before_len);
            hooks_fail_after((op >> 4) & 7, 0);
        }
        switch (op & 7) {
        case 0: case 1:
            if (!take(&in, &vlen) || !read_perms(&in, perms, &permlen))
                goto out;
            rc = xsd_store_write(s, path, plen, value, vlen, perms, permlen);
            break;
        case 2:
            if (!read_perms(&in, perms, &permlen))
                goto out;
            rc = xsd_store_set_perms(s, path, plen, perms, permlen);
            break;
        case 3:
            rc = xsd_store_rm(s, path, plen);
            break;
        case 4: {
            uint64_t meta[2];
            rc = xsd_store_get(s, path, plen, &v);
            if (xsd_store_read(s, path, plen, out, op & 0x40 ? 8 : sizeof out, meta) !=
                (rc ? rc : (int64_t)(v.perms_len + v.value_len)))
                abort();             /* read and get disagree */
            break;
        }
        case 5: {
            static char walked[sizeof out];
            rc = xsd_store_children(s, path, plen, out, sizeof out);
            if (xsd_store_last_children(s, path, plen, SIZE_MAX, walked, sizeof walked) != rc
                || (rc > 0 && rc <= (int64_t)sizeof out && memcmp(out, walked, (size_t)rc)))
                abort();             /* a listing that is not the walk's: a stale kept copy */
            break;
        }
        case 6:
            rc = xsd_store_subtree(s, path, plen, out, sizeof out);
            break;
        default: {
            uint8_t sub, gen;
            if (!take(&in, &sub))
                goto out;
            switch (sub % 10) {
            case 0:
                rc = xsd_store_missing(s, path, plen, &v);
                break;
            case 1:
                xsd_store_track(s, sub & 0x10);
                rc = 0;
                break;
            case 2: case 3:
                if (!take(&in, &vlen) || !read_perms(&in, perms, &permlen))
                    goto out;
                rc = xsd_store_put(s, path, plen, value, vlen, perms, permlen);
                break;
            case 4:
                /* a generation below the counter, so that check() holds */
                if (!take(&in, &vlen) || !take(&in, &gen) || !read_perms(&in, perms, &permlen))
                    goto out;
                rc = xsd_store_load(s, path, plen, value, vlen, perms, permlen,
                                    gen % xsd_store_next_gen(s));
                break;
            case 5:
                rc = xsd_store_move_last(s, path, plen);
                break;
            case 6:
                if (sub & 0x20)
                    rc = xsd_store_naming(s, sub & 0x40 ? 0 : 1, out, sub & 0x10 ? sizeof out : 16);
                else
                    rc = xsd_store_dump(s, out, sub & 0x10 ? sizeof out : 16);
                break;
            case 7:
                rc = xsd_store_take_changes(s, out, sub & 0x10 ? sizeof out : 16);
                break;
            case 8:
                rc = xsd_store_changes(s, out, sizeof out);
                break;
            default:
                rc = (int64_t)(xsd_store_bytes_of(s, sub) % 2);
            }
        }
        }
        hooks_fail_after(-1, 0);
        if (!documented(rc))
            abort();
        if (rc == -ENOMEM && !before)
            abort();                 /* -ENOMEM without an injected failure */
        if (rc == -ENOMEM) {
            after = store_dump(s, &after_len);
            if (after_len != before_len || memcmp(after, before, after_len) != 0)
                abort();             /* a failed call changed the store */
            free(after);
        }
        free(before);
        if (xsd_store_check(s) != 0)
            abort();
        continue;
out:
        free(before);
        hooks_fail_after(-1, 0);
        break;
    }
    xsd_store_free(s);
    if (hooks_live_blocks() != 0)
        abort();
    return 0;
}
