/*
 * test_watchreg_alloc_fail.c: every allocation watchreg.c (and the trie under
 * it) makes is checked, and a call that fails with -ENOMEM changes nothing.
 *
 * watchreg.c, trie.c and store.c are built with -DXSD_ALLOC_HOOKS (alloc.h)
 * against alloc_hooks.c. A fixed scenario (sessions made, watches added on
 * shared, deep and many distinct paths so tables and the trie grow, fires of
 * every kind whose scratch space grows, removals and a session freed) runs
 * once for every N: the first N allocations succeed and the next fails
 *   - once: the failing call must leave the registry as it was (its counts
 *     and the trie's entries), and its retry succeeds, so every watch of the
 *     scenario ends up registered;
 *   - sticky: each call succeeds or fails with -ENOMEM changing nothing.
 * Nothing may be left allocated at the end.
 */
#include <errno.h>
#include <string.h>

#include "alloc_fail_harness.h"
#include "store.h"
#include "trie.h"
#include "watchreg.h"

static char out[1 << 17];
static char deep[400];
static size_t deep_len;

struct state {
    size_t watches, trie, s0, s1, text0;
};

static void snap(xsd_wreg *r, xsd_trie *t, int64_t s0, int64_t s1, struct state *st)
{
    st->watches = xsd_wreg_count(r);
    st->trie = xsd_trie_count(t);
    st->s0 = xsd_wreg_session_count(r, (uint32_t)s0);
    st->s1 = s1 >= 0 ? xsd_wreg_session_count(r, (uint32_t)s1) : 0;
    st->text0 = xsd_wreg_session_text_bytes(r, (uint32_t)s0);
}

static int same(const struct state *a, const struct state *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

/* Run call until it does not fail with -ENOMEM (only once when not sticky),
 * checking the state is unchanged by each failure; the last result. */
#define TRY(rc_var, call)                                                  \
    do {                                                                   \
        struct state before_, after_;                                      \
        snap(r, t, s0, s1, &before_);                                      \
        rc_var = (call);                                                   \
        while (rc_var == -ENOMEM) {                                        \
            snap(r, t, s0, s1, &after_);                                   \
            CHECK(same(&before_, &after_));                                \
            if (sticky)                                                    \
                break;                                                     \
            rc_var = (call);                                               \
        }                                                                  \
    } while (0)

static int run_once(long n, int sticky)
{
    xsd_trie *t;
    xsd_store *st;
    xsd_wreg *r;
    int64_t s0 = -1, s1 = -1, rc;
    char path[64], tok[16];
    int asks, i, injected, plen, tlen;
    static const char below[] = "\x04\0\0\0/a/b\x03\0\0\0n0\0\xff\xff\xff\xff";

    hooks_fail_after(-1, 0);
    t = xsd_trie_new();
    st = xsd_store_new();
    CHECK(t != NULL && st != NULL);
    CHECK(xsd_store_write(st, "/a/b", 4, "", 0, "n0", 3) >= 0);
    hooks_fail_after(n, sticky);
    r = xsd_wreg_new(t, st);
    if (r == NULL) {
        CHECK(hooks_failed());
        goto done;
    }
    s0 = xsd_wreg_session_new(r);
    if (s0 < 0) {
        CHECK_EQ(s0, -ENOMEM);
        goto done;
    }
    for (i = 0; i < 20; i++) { /* the session table grows past 8 handles */
        TRY(s1, xsd_wreg_session_new(r));
        if (s1 < 0)
            break;
        CHECK_EQ(xsd_wreg_session_set(r, (uint32_t)s1, (uint32_t)i, i % 3 ? -1 : 0, i % 2), 0);
    }
    for (i = 0; i < 60; i++) {
        plen = snprintf(path, sizeof path, i % 3 ? "/a/b/%d" : "/w%d", i);
        tlen = snprintf(tok, sizeof tok, "t%d", i % 7);
        TRY(rc, xsd_wreg_add(r, (uint32_t)(i % 2 ? s0 : s1 < 0 ? s0 : s1), path,
                             (size_t)plen, tok, (size_t)tlen, i % 5 == 0, NULL));
        CHECK(rc == 0 || rc == -EEXIST || (sticky && rc == -ENOMEM));
    }
    TRY(rc, xsd_wreg_add(r, (uint32_t)s0, deep, deep_len, "d", 1, 0, NULL));
    CHECK(rc == 0 || (sticky && rc == -ENOMEM));
    TRY(rc, xsd_wreg_add(r, (uint32_t)s0, "@releaseDomain", 14, "s", 1, 0, NULL));
    CHECK(rc == 0 || (sticky && rc == -ENOMEM));
    TRY(rc, xsd_wreg_add(r, (uint32_t)s0, "/", 1, "root", 4, 0, NULL));
    CHECK(rc == 0 || (sticky && rc == -ENOMEM));
    if (!sticky)
        CHECK_EQ(xsd_wreg_count(r), 63); /* 60 distinct keys, the deep, special and root */
    /* fires: scratch grows; a failure is -ENOMEM with nothing changed */
    TRY(rc, xsd_wreg_fire_change(r, "/a/b/3", 6, "n0", 3, NULL, 0, out, sizeof out));
    CHECK(rc >= 0 || (sticky && rc == -ENOMEM));
    TRY(rc, xsd_wreg_fire_change(r, deep, deep_len, "n0", 3, "r1", 3, out, sizeof out));
    CHECK(rc >= 0 || (sticky && rc == -ENOMEM));
    TRY(rc, xsd_wreg_fire_remove(r, "/a", 2, "n0", 3, NULL, 0, &asks, out, sizeof out));
    CHECK(rc >= 0 || (sticky && rc == -ENOMEM));
    TRY(rc, xsd_wreg_fire_remove(r, "/a", 2, "n0", 3, below, sizeof below - 1, &asks, out,
                                 sizeof out));
    CHECK(rc >= 0 || (sticky && rc == -ENOMEM));
    TRY(rc, xsd_wreg_fire_special(r, "@releaseDomain", 14, NULL, 0, out, sizeof out));
    CHECK(rc >= 0 || (sticky && rc == -ENOMEM));
    /* removals never allocate */
    for (i = 0; i < 60; i += 2) {
        char key[64];
        int klen;

        plen = snprintf(path, sizeof path, i % 3 ? "/a/b/%d" : "/w%d", i);
        klen = snprintf(key, sizeof key, "%s%ct%d", path, '\0', i % 7);
        rc = xsd_wreg_remove(r, (uint32_t)(s1 < 0 ? s0 : s1), key, (size_t)klen);
        CHECK(rc == 0 || rc == -ENOENT);
    }
    if (s1 >= 0)
        CHECK_EQ(xsd_wreg_session_free(r, (uint32_t)s1), 0);
    CHECK_EQ(xsd_wreg_session_clear(r, (uint32_t)s0), 0);
    CHECK_EQ(xsd_wreg_count(r), 0);
    CHECK_EQ(xsd_trie_count(t), 0);
done:
    injected = hooks_failed();
    hooks_fail_after(-1, 0);
    xsd_wreg_free(r);
    xsd_trie_free(t);
    xsd_store_free(st);
    CHECK_EQ(hooks_live_blocks(), 0);
    return injected;
}

int main(void)
{
    size_t i;

    for (i = 0; i < XSD_WREG_TRIE_DEPTH + 8; i++) { /* a watch filed under a cut path */
        deep[deep_len++] = '/';
        deep[deep_len++] = (char)('a' + i % 26);
    }
    run_alloc_fail_sweeps();
    return check_report();
}
