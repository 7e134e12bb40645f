/*
 * test_trie.c: behaviour of trie.h through its public interface, including a
 * seeded random sequence of operations checked against model.h.
 * Run under ASan + UBSan by ctest (see CMakeLists.txt).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model.h"
#include "trie.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static uint64_t out[4096];

/* Match into out and return the count, checking the call succeeded. */
static int64_t match(const xsd_trie *t, const char *k, unsigned flags)
{
    int64_t n = xsd_trie_match(t, k, strlen(k), flags, out, 4096);

    CHECK(n >= 0 && n <= 4096);
    return n;
}

static int add(xsd_trie *t, const char *k, uint64_t id)
{
    return xsd_trie_add(t, k, strlen(k), id);
}

static int del(xsd_trie *t, const char *k, uint64_t id)
{
    return xsd_trie_remove(t, k, strlen(k), id);
}

static void test_empty(void)
{
    xsd_trie *t = xsd_trie_new();

    CHECK(t != NULL);
    CHECK_EQ(xsd_trie_count(t), 0);
    CHECK_EQ(match(t, "/", XSD_MATCH_ANCESTORS | XSD_MATCH_DESCENDANTS), 0);
    CHECK_EQ(match(t, "/a/b", XSD_MATCH_ANCESTORS), 0);
    CHECK_EQ(xsd_trie_match(t, S("/"), XSD_MATCH_ANCESTORS, NULL, 0), 0);
    CHECK_EQ(del(t, "/a", 1), -ENOENT);
    xsd_trie_free(t);
    xsd_trie_free(NULL);
    xsd_globset_free(NULL);
}

static void test_ancestors_and_descendants(void)
{
    xsd_trie *t = xsd_trie_new();

    CHECK_EQ(add(t, "/", 1), 0);
    CHECK_EQ(add(t, "/local", 2), 0);
    CHECK_EQ(add(t, "/local/domain/1", 3), 0);
    CHECK_EQ(add(t, "/local/domain/1/name", 4), 0);
    CHECK_EQ(add(t, "/local/domain/10", 5), 0);
    CHECK_EQ(add(t, "/tool", 6), 0);
    CHECK_EQ(xsd_trie_count(t), 6);

    CHECK_EQ(match(t, "/local/domain/1/name", XSD_MATCH_ANCESTORS), 4);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 3 && out[3] == 4);
    /* a path below every watch, and one that is not in the trie */
    CHECK_EQ(match(t, "/local/domain/1/name/x/y", XSD_MATCH_ANCESTORS), 4);
    CHECK_EQ(match(t, "/local/domain/2", XSD_MATCH_ANCESTORS), 2);
    /* "/local/domain/1" is not an ancestor of "/local/domain/10" */
    CHECK_EQ(match(t, "/local/domain/10", XSD_MATCH_ANCESTORS), 3);
    CHECK(out[2] == 5);

    CHECK_EQ(match(t, "/local", XSD_MATCH_DESCENDANTS), 3);
    CHECK(out[0] == 3 && out[1] == 4 && out[2] == 5);
    CHECK_EQ(match(t, "/", XSD_MATCH_DESCENDANTS), 5);
    CHECK_EQ(match(t, "/local/domain/1/name", XSD_MATCH_DESCENDANTS), 0);
    CHECK_EQ(match(t, "/nothere", XSD_MATCH_DESCENDANTS), 0);
    CHECK_EQ(match(t, "/local/domain/1",
                   XSD_MATCH_ANCESTORS | XSD_MATCH_DESCENDANTS), 4);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 3 && out[3] == 4);
    CHECK_EQ(match(t, "/local/domain/1", 0), 0);
    xsd_trie_free(t);
}

static void test_invalid_keys(void)
{
    static const char *bad[] = {"", "a", "a/b", "//", "/a/", "/a//b", "//a",
                                "/a/b/", " /a"};
    xsd_trie *t = xsd_trie_new();
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(add(t, bad[i], 1), -EINVAL);
        CHECK_EQ(del(t, bad[i], 1), -EINVAL);
        CHECK_EQ(xsd_trie_match(t, bad[i], strlen(bad[i]),
                                XSD_MATCH_ANCESTORS, out, 16), -EINVAL);
        CHECK_EQ(xsd_glob_match(bad[i], strlen(bad[i]), S("/")), -EINVAL);
        CHECK_EQ(xsd_glob_match(S("/"), bad[i], strlen(bad[i])), -EINVAL);
    }
    CHECK_EQ(xsd_trie_add(t, NULL, 0, 1), -EINVAL);
    CHECK_EQ(xsd_trie_match(t, S("/"), 4, out, 16), -EINVAL);
    CHECK_EQ(xsd_trie_match(t, S("/"), ~0u, out, 16), -EINVAL);
    CHECK_EQ(xsd_trie_count(t), 0);
    /* keys are (bytes, length): a NUL is an ordinary byte */
    CHECK_EQ(xsd_trie_add(t, "/a\0b", 4, 1), 0);
    CHECK_EQ(xsd_trie_match(t, "/a", 2, XSD_MATCH_DESCENDANTS, out, 16), 0);
    CHECK_EQ(xsd_trie_match(t, "/a\0b", 4, XSD_MATCH_ANCESTORS, out, 16), 1);
    xsd_trie_free(t);
}

static void test_duplicates_and_absent(void)
{
    xsd_trie *t = xsd_trie_new();

    CHECK_EQ(add(t, "/a", 7), 0);
    CHECK_EQ(add(t, "/a", 7), -EEXIST);
    CHECK_EQ(add(t, "/a/b", 7), 0); /* same id, other path: fine */
    CHECK_EQ(xsd_trie_count(t), 2);
    /* each id once in a result */
    CHECK_EQ(match(t, "/a/b", XSD_MATCH_ANCESTORS), 1);
    CHECK_EQ(match(t, "/", XSD_MATCH_DESCENDANTS), 1);
    CHECK_EQ(del(t, "/a", 8), -ENOENT);
    CHECK_EQ(del(t, "/never/added", 7), -ENOENT);
    CHECK_EQ(del(t, "/a", 7), 0);
    CHECK_EQ(del(t, "/a", 7), -ENOENT);
    CHECK_EQ(match(t, "/a/b", XSD_MATCH_ANCESTORS), 1);
    CHECK_EQ(add(t, "/x", UINT64_MAX), 0);
    CHECK_EQ(add(t, "/x", 0), 0);
    CHECK_EQ(match(t, "/x", XSD_MATCH_ANCESTORS), 2);
    CHECK(out[0] == 0 && out[1] == UINT64_MAX);
    xsd_trie_free(t);
}

static void test_specials(void)
{
    xsd_trie *t = xsd_trie_new();

    CHECK_EQ(add(t, "/", 1), 0);
    CHECK_EQ(add(t, "@introduceDomain", 2), 0);
    CHECK_EQ(add(t, "/@introduceDomain", 3), 0);
    CHECK_EQ(add(t, "@releaseDomain", 4), 0);
    CHECK_EQ(add(t, "@a/b", 5), 0); /* one name, '/' and all */

    /* the special sees only its own watches, not the root's */
    CHECK_EQ(match(t, "@introduceDomain", XSD_MATCH_ANCESTORS), 1);
    CHECK(out[0] == 2);
    CHECK_EQ(match(t, "@introduceDomain", XSD_MATCH_DESCENDANTS), 0);
    /* the ordinary node of the same spelling does not fire the special */
    CHECK_EQ(match(t, "/@introduceDomain", XSD_MATCH_ANCESTORS), 2);
    CHECK(out[0] == 1 && out[1] == 3);
    /* "/" does not cover specials, in either direction */
    CHECK_EQ(match(t, "/", XSD_MATCH_DESCENDANTS), 1);
    CHECK(out[0] == 3);
    CHECK_EQ(match(t, "@a", XSD_MATCH_ANCESTORS | XSD_MATCH_DESCENDANTS), 0);
    CHECK_EQ(match(t, "@a/b", XSD_MATCH_ANCESTORS), 1);
    CHECK_EQ(match(t, "@", XSD_MATCH_ANCESTORS), 0);
    CHECK_EQ(del(t, "@introduceDomain", 3), -ENOENT);
    CHECK_EQ(del(t, "@introduceDomain", 2), 0);
    CHECK_EQ(match(t, "@introduceDomain", XSD_MATCH_ANCESTORS), 0);
    xsd_trie_free(t);
}

static void test_small_buffer_retry(void)
{
    xsd_trie *t = xsd_trie_new();
    uint64_t small[8];
    uint64_t i;
    int64_t n;

    for (i = 0; i < 100; i++)
        CHECK_EQ(add(t, "/a", 1000 - i), 0);
    CHECK_EQ(add(t, "/a/b", 5), 0);
    n = xsd_trie_match(t, S("/a/b"), XSD_MATCH_ANCESTORS, small, 8);
    CHECK(n > 8);
    n = xsd_trie_match(t, S("/a/b"), XSD_MATCH_ANCESTORS, NULL, 0);
    CHECK_EQ(n, 101);
    n = xsd_trie_match(t, S("/a/b"), XSD_MATCH_ANCESTORS, out, (size_t)n);
    CHECK_EQ(n, 101);
    CHECK(out[0] == 5 && out[1] == 901 && out[100] == 1000);
    xsd_trie_free(t);
}

/* 1536 levels is the most a 3072-byte xenstore path can hold; go well past
 * it to show no walk uses the C stack per level. */
static void test_deep(void)
{
    enum { DEPTH = 20000 };
    xsd_trie *t = xsd_trie_new();
    struct xsd_trie_stats empty, st;
    char *p = malloc(2 * DEPTH + 1);
    size_t d;

    xsd_trie_stats(t, &empty);
    for (d = 0; d < DEPTH; d++) {
        p[2 * d] = '/';
        p[2 * d + 1] = 'x';
    }
    p[2 * DEPTH] = 0;
    /* watches at depths 1, 1536, DEPTH */
    CHECK_EQ(xsd_trie_add(t, p, 2, 1), 0);
    CHECK_EQ(xsd_trie_add(t, p, 2 * 1536, 2), 0);
    CHECK_EQ(xsd_trie_add(t, p, 2 * DEPTH, 3), 0);
    CHECK_EQ(xsd_trie_match(t, p, 2 * DEPTH, XSD_MATCH_ANCESTORS, out, 16), 3);
    CHECK_EQ(xsd_trie_match(t, p, 2 * 1536, XSD_MATCH_ANCESTORS, out, 16), 2);
    CHECK_EQ(xsd_trie_match(t, p, 2 * 1536, XSD_MATCH_DESCENDANTS, out, 16), 1);
    CHECK(out[0] == 3);
    CHECK_EQ(xsd_trie_match(t, S("/"), XSD_MATCH_DESCENDANTS, out, 16), 3);
    xsd_trie_stats(t, &st);
    CHECK_EQ(st.nodes, empty.nodes + DEPTH);
    CHECK_EQ(xsd_trie_remove(t, p, 2 * DEPTH, 3), 0);
    xsd_trie_stats(t, &st);
    CHECK_EQ(st.nodes, empty.nodes + 1536); /* pruned up to the next watch */
    CHECK_EQ(xsd_trie_add(t, p, 2 * DEPTH, 3), 0);
    /* glob over the deep path: "/x/STARSTAR" and "/STARSTAR/x" */
    CHECK_EQ(xsd_glob_match(S("/x/**"), p, 2 * DEPTH), 1);
    CHECK_EQ(xsd_glob_match(S("/**/x"), p, 2 * DEPTH), 1);
    CHECK_EQ(xsd_glob_match(S("/**/y"), p, 2 * DEPTH), 0);
    /* leave the deep tree in place: xsd_trie_free must walk it */
    xsd_trie_free(t);
    free(p);
}

static void test_long_components(void)
{
    enum { LONG = 100000 };
    xsd_trie *t = xsd_trie_new();
    char *p = malloc(LONG + 8);
    struct xsd_trie_stats empty, st;

    xsd_trie_stats(t, &empty);
    p[0] = '/';
    memset(p + 1, 'k', LONG);
    CHECK_EQ(xsd_trie_add(t, p, LONG + 1, 1), 0);
    CHECK_EQ(xsd_trie_add(t, p, 3073, 2), 0); /* a 3072-byte component */
    CHECK_EQ(xsd_trie_match(t, p, LONG + 1, XSD_MATCH_ANCESTORS, out, 16), 1);
    CHECK_EQ(xsd_trie_match(t, S("/"), XSD_MATCH_DESCENDANTS, out, 16), 2);
    memcpy(p + LONG + 1, "/z", 2);
    CHECK_EQ(xsd_trie_match(t, p, LONG + 3, XSD_MATCH_ANCESTORS, out, 16), 1);
    CHECK_EQ(xsd_trie_remove(t, p, LONG + 1, 1), 0);
    CHECK_EQ(xsd_trie_remove(t, p, 3073, 2), 0);
    xsd_trie_stats(t, &st);
    CHECK_EQ(st.bytes, empty.bytes);
    CHECK_EQ(st.blocks, empty.blocks);
    xsd_trie_free(t);
    free(p);
}

/* 10,000 domains under /local/domain: every lookup and removal stays
 * correct while the child table grows and backward-shift deletes. */
static void test_wide(void)
{
    enum { N = 10000 };
    xsd_trie *t = xsd_trie_new();
    struct xsd_trie_stats empty, st;
    char k[64];
    int i, len;

    xsd_trie_stats(t, &empty);
    for (i = 0; i < N; i++) {
        len = snprintf(k, sizeof k, "/local/domain/%d", i);
        CHECK_EQ(xsd_trie_add(t, k, (size_t)len, (uint64_t)i), 0);
    }
    CHECK_EQ(xsd_trie_match(t, S("/local/domain"), XSD_MATCH_DESCENDANTS,
                            NULL, 0), N);
    for (i = 0; i < N; i += 2) {
        len = snprintf(k, sizeof k, "/local/domain/%d", i);
        CHECK_EQ(xsd_trie_remove(t, k, (size_t)len, (uint64_t)i), 0);
    }
    for (i = 0; i < N; i++) {
        int64_t n;

        len = snprintf(k, sizeof k, "/local/domain/%d/x", i);
        n = xsd_trie_match(t, k, (size_t)len, XSD_MATCH_ANCESTORS, out, 16);
        CHECK_EQ(n, i % 2);
        if (n == 1)
            CHECK(out[0] == (uint64_t)i);
    }
    for (i = 1; i < N; i += 2) {
        len = snprintf(k, sizeof k, "/local/domain/%d", i);
        CHECK_EQ(xsd_trie_remove(t, k, (size_t)len, (uint64_t)i), 0);
    }
    xsd_trie_stats(t, &st);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.nodes, empty.nodes);
    CHECK_EQ(st.bytes, empty.bytes);
    CHECK_EQ(st.blocks, empty.blocks);
    xsd_trie_free(t);
}

static void test_many_ids_one_path(void)
{
    xsd_trie *t = xsd_trie_new();
    struct xsd_trie_stats empty, st;
    uint64_t i;

    xsd_trie_stats(t, &empty);
    for (i = 0; i < 5000; i++)
        CHECK_EQ(add(t, "@releaseDomain", (i * 7919) % 5000), 0);
    CHECK_EQ(xsd_trie_match(t, S("@releaseDomain"), XSD_MATCH_ANCESTORS, out,
                            4096), 5000);
    for (i = 0; i < 5000; i++)
        CHECK_EQ(del(t, "@releaseDomain", i), 0);
    xsd_trie_stats(t, &st);
    CHECK_EQ(st.bytes, empty.bytes);
    xsd_trie_free(t);
}

struct glob_case {
    const char *pattern, *path;
    int want;
};

static void test_glob_match(void)
{
    static const struct glob_case cases[] = {
        {"/", "/", 1},
        {"/", "/a", 0},
        {"/**", "/", 1},
        {"/**", "/a/b/c", 1},
        {"/*", "/", 0},
        {"/*", "/a", 1},
        {"/*", "/a/b", 0},
        {"/local/domain/*/device", "/local/domain/3/device", 1},
        {"/local/domain/*/device", "/local/domain/device", 0},
        {"/local/domain/*/device", "/local/domain/3/device/vif", 0},
        {"/local/domain/**/state", "/local/domain/state", 1},
        {"/local/domain/**/state", "/local/domain/3/device/vif/0/state", 1},
        {"/local/domain/**/state", "/local/domain/3/device/vif/0/stat", 0},
        {"/a/**/b/**/c", "/a/x/b/y/b/c", 1},
        {"/a/**/b/*/c", "/a/b/b/x/c", 1},
        {"/a/**/b/*/c", "/a/b/x/c/c", 0},
        {"/**/**", "/", 1},
        {"/*/**", "/", 0},
        {"/a*", "/a", 0},   /* partial wildcards are literal */
        {"/a*", "/a*", 1},
        {"/x**", "/xy", 0},
        {"@releaseDomain", "@releaseDomain", 1},
        {"@releaseDomain", "@introduceDomain", 0},
        {"/**", "@releaseDomain", 0},
        {"/@releaseDomain", "@releaseDomain", 0},
        {"@releaseDomain", "/@releaseDomain", 0},
        {"@*", "@releaseDomain", 0},
    };
    size_t i;
    int got;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct glob_case *c = &cases[i];

        got = xsd_glob_match(c->pattern, strlen(c->pattern), c->path,
                             strlen(c->path));
        if (got != c->want)
            fprintf(stderr, "glob %s vs %s: got %d want %d\n", c->pattern,
                    c->path, got, c->want);
        CHECK_EQ(got, c->want);
        CHECK_EQ(model_glob(c->pattern, strlen(c->pattern), c->path,
                            strlen(c->path)), c->want);
    }
}

static void test_globset(void)
{
    xsd_globset *g = xsd_globset_new();
    struct xsd_trie_stats st;
    uint64_t small[2];
    int64_t n;
    uint64_t i;

    CHECK_EQ(xsd_globset_match(g, S("/a"), out, 16), 0);
    CHECK_EQ(xsd_globset_add(g, S("/local/domain/*/device/**"), 1), 0);
    CHECK_EQ(xsd_globset_add(g, S("/**"), 2), 0);
    CHECK_EQ(xsd_globset_add(g, S("@releaseDomain"), 3), 0);
    CHECK_EQ(xsd_globset_add(g, S("/local/**/device/*"), 4), 0);
    CHECK_EQ(xsd_globset_add(g, S("/local/**/device/*"), 4), -EEXIST);
    CHECK_EQ(xsd_globset_add(g, S("/a//b"), 4), -EINVAL);
    CHECK_EQ(xsd_globset_count(g), 4);
    CHECK_EQ(xsd_globset_match(g, S("/local/domain/3/device"), out, 16), 2);
    CHECK(out[0] == 1 && out[1] == 2);
    CHECK_EQ(xsd_globset_match(g, S("/local/domain/3/device/vif"), out, 16), 3);
    CHECK_EQ(xsd_globset_match(g, S("/"), out, 16), 1);
    CHECK_EQ(xsd_globset_match(g, S("@releaseDomain"), out, 16), 1);
    CHECK(out[0] == 3);
    CHECK_EQ(xsd_globset_match(g, S("@introduceDomain"), out, 16), 0);
    CHECK_EQ(xsd_globset_match(g, S("bad"), out, 16), -EINVAL);
    n = xsd_globset_match(g, S("/local/domain/3/device/vif"), small, 2);
    CHECK(n >= 3);
    CHECK_EQ(xsd_globset_remove(g, S("/**"), 2), 0);
    CHECK_EQ(xsd_globset_remove(g, S("/**"), 2), -ENOENT);
    CHECK_EQ(xsd_globset_match(g, S("/"), out, 16), 0);
    for (i = 0; i < 100; i++)
        CHECK_EQ(xsd_globset_add(g, S("/local/**"), 100 + i), 0);
    CHECK_EQ(xsd_globset_match(g, S("/local/domain/3/device/vif"), out, 200),
             102);
    xsd_globset_stats(g, &st);
    CHECK_EQ(st.entries, 103);
    xsd_globset_free(g);
}

/* Random operations on a small alphabet (so paths collide, nest and repeat)
 * against model.h; every answer must agree. */
static void random_key(char *k, size_t *len)
{
    static const char *comps[] = {"a", "b", "local", "0", "*", "**", "@x"};
    unsigned depth, i;
    size_t n = 0;
    const char *c;

    switch (check_below(20)) {
    case 0:
        memcpy(k, "/", 1);
        *len = 1;
        return;
    case 1:
        memcpy(k, "@x", 2);
        *len = 2;
        return;
    case 2:
        memcpy(k, "@introduceDomain", 16);
        *len = 16;
        return;
    default:
        break;
    }
    depth = 1 + check_below(4);
    for (i = 0; i < depth; i++) {
        c = comps[check_below(sizeof comps / sizeof comps[0])];
        k[n++] = '/';
        memcpy(k + n, c, strlen(c));
        n += strlen(c);
    }
    *len = n;
}

static void test_random_against_model(void)
{
    xsd_trie *t = xsd_trie_new();
    xsd_globset *g = xsd_globset_new();
    struct model m;
    struct xsd_trie_stats empty, st;
    char k[128], p[128];
    size_t klen, plen, i, mn;
    uint64_t id, *want;
    unsigned flags;
    int64_t n;
    int step, rc, mrc;

    model_init(&m);
    xsd_trie_stats(t, &empty);
    for (step = 0; step < 20000; step++) {
        random_key(k, &klen);
        id = check_below(4);
        switch (check_below(3)) {
        case 0:
            rc = xsd_trie_add(t, k, klen, id);
            mrc = model_add(&m, k, klen, id);
            CHECK_EQ(rc, mrc ? -EEXIST : 0);
            CHECK_EQ(xsd_globset_add(g, k, klen, id), rc);
            break;
        case 1:
            rc = xsd_trie_remove(t, k, klen, id);
            mrc = model_remove(&m, k, klen, id);
            CHECK_EQ(rc, mrc ? -ENOENT : 0);
            CHECK_EQ(xsd_globset_remove(g, k, klen, id), rc);
            break;
        default:
            flags = 1 + check_below(3);
            n = xsd_trie_match(t, k, klen, flags, out, 4096);
            want = model_match(&m, k, klen, flags, &mn);
            CHECK_EQ(n, mn);
            if (n == (int64_t)mn)
                CHECK(memcmp(out, want, mn * sizeof *want) == 0);
            free(want);
            /* globset: every registered key is a pattern; many may match,
             * so exercise the "n > cap: retry" contract */
            n = xsd_globset_match(g, k, klen, out, 4096);
            if (n > 4096) {
                uint64_t *big = malloc((size_t)n * sizeof *big);
                int64_t n2 = xsd_globset_match(g, k, klen, big, (size_t)n);

                CHECK(n2 >= 0 && n2 <= n);
                n = n2;
                if (n2 >= 0 && n2 <= 4096)
                    memcpy(out, big, (size_t)n2 * sizeof *big);
                free(big);
            }
            want = model_xalloc((m.n + 1) * sizeof *want);
            for (mn = 0, i = 0; i < m.n; i++)
                if (model_glob(m.v[i].key, m.v[i].len, k, klen) == 1)
                    want[mn++] = m.v[i].id;
            mn = model_sort_unique(want, mn);
            CHECK_EQ(n, mn);
            if (n == (int64_t)mn)
                CHECK(memcmp(out, want, mn * sizeof *want) == 0);
            free(want);
            random_key(p, &plen);
            CHECK_EQ(xsd_glob_match(p, plen, k, klen),
                     model_glob(p, plen, k, klen));
            break;
        }
        CHECK_EQ(xsd_trie_count(t), m.n);
    }
    /* remove everything: memory returns to the empty trie's */
    for (i = m.n; i > 0; i--) {
        CHECK_EQ(xsd_trie_remove(t, m.v[i - 1].key, m.v[i - 1].len,
                                 m.v[i - 1].id), 0);
    }
    xsd_trie_stats(t, &st);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.nodes, empty.nodes);
    CHECK_EQ(st.bytes, empty.bytes);
    CHECK_EQ(st.blocks, empty.blocks);
    model_clear(&m);
    xsd_globset_free(g);
    xsd_trie_free(t);
}

int main(void)
{
    RUN(test_empty);
    RUN(test_ancestors_and_descendants);
    RUN(test_invalid_keys);
    RUN(test_duplicates_and_absent);
    RUN(test_specials);
    RUN(test_small_buffer_retry);
    RUN(test_deep);
    RUN(test_long_components);
    RUN(test_wide);
    RUN(test_many_ids_one_path);
    RUN(test_glob_match);
    RUN(test_globset);
    RUN(test_random_against_model);
    return check_report();
}
