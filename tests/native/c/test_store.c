/*
 * test_store.c: behaviour of store.h through its public interface, and a
 * seeded random sequence of operations with xsd_store_check after each.
 * The semantics (generations, order, owners) are checked against the Python
 * store by tests/native/test_store_property.py; this file is what runs
 * under ASan + UBSan (ctest, see CMakeLists.txt).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "store.h"
#include "store_dump.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define N0 "n0\0"
#define P(lit) (lit), (sizeof(lit) - 1)     /* permission lists keep their last NUL */

static int64_t put(xsd_store *s, const char *path, const char *value, const char *perms, size_t plen)
{
    return xsd_store_write(s, path, strlen(path), value, strlen(value), perms, plen);
}

static void test_new_store_has_only_the_root(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_node_view v;
    CHECK(s != NULL);
    CHECK_EQ(xsd_store_count(s), 1);
    CHECK_EQ(xsd_store_get(s, S("/"), &v), 0);
    CHECK_EQ(v.value_len, 0);
    CHECK_EQ(v.perms_len, 3);
    CHECK(memcmp(v.perms, "n0\0", 3) == 0);
    CHECK_EQ(v.gen, 0);
    CHECK_EQ(xsd_store_owned_by(s, 0), 1);
    CHECK_EQ(xsd_store_stamp(s), 1);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
    xsd_store_free(NULL);
}

static void test_write_creates_ancestors_and_stamps_top_down(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_node_view v;
    char buf[64];
    CHECK_EQ(put(s, "/local/domain/1/name", "vm1", P("b1\0r0\0")), 4);
    CHECK_EQ(xsd_store_get(s, S("/"), &v), 0);
    CHECK_EQ(v.gen, 1);                                /* the closest existing node first */
    CHECK_EQ(xsd_store_get(s, S("/local"), &v), 0);
    CHECK_EQ(v.gen, 2);
    CHECK_EQ(v.value_len, 0);
    CHECK_EQ(xsd_store_get(s, S("/local/domain/1/name"), &v), 0);
    CHECK_EQ(v.gen, 5);
    CHECK_EQ(v.owner, 1);
    CHECK(v.value_len == 3 && memcmp(v.value, "vm1", 3) == 0);
    CHECK_EQ(xsd_store_owned_by(s, 1), 4);
    /* overwrite: 0 created, restamped, perms ignored */
    CHECK_EQ(xsd_store_write(s, S("/local/domain/1/name"), S("a much longer value than before"), NULL, 0), 0);
    CHECK_EQ(xsd_store_get(s, S("/local/domain/1/name"), &v), 0);
    CHECK_EQ(v.gen, 6);
    CHECK_EQ(v.owner, 1);
    CHECK_EQ(put(s, "/local/domain/2", "", P(N0)), 1);
    CHECK_EQ(put(s, "/local/domain/0", "", P(N0)), 1);
    CHECK_EQ(xsd_store_children(s, S("/local/domain"), buf, sizeof buf), 6);
    CHECK(memcmp(buf, "1\0" "2\0" "0\0", 6) == 0);     /* creation order */
    CHECK_EQ(xsd_store_missing(s, S("/local/domain/3/x/y"), &v), 3);
    CHECK_EQ(v.gen, 9);                                /* /local/domain, stamped by the last create */
    CHECK_EQ(xsd_store_missing(s, S("/local"), &v), 0);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

static void test_directory_that_grows_its_value_keeps_its_children(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_node_view v;
    char big[3000];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 300; i++) {
        char path[32];
        snprintf(path, sizeof path, "/dir/%d/leaf", i);
        CHECK_EQ(put(s, path, "x", P(N0)), i == 0 ? 3 : 2);
    }
    /* the node moves to a bigger block: 300 children re-filed under it */
    CHECK_EQ(put(s, "/dir", big, P(N0)), 0);
    CHECK_EQ(xsd_store_get(s, S("/dir/299/leaf"), &v), 0);
    CHECK_EQ(xsd_store_get(s, S("/dir"), &v), 0);
    CHECK_EQ(v.value_len, sizeof big - 1);
    /* the root too (set_perms growing it) */
    CHECK_EQ(xsd_store_set_perms(s, S("/"), P("n0\0r1\0r2\0r3\0r4\0r5\0r6\0r7\0")), 0);
    CHECK_EQ(xsd_store_get(s, S("/dir/0/leaf"), &v), 0);
    CHECK_EQ(xsd_store_set_perms(s, S("/dir"), P("b7\0")), 0);
    CHECK_EQ(xsd_store_owned_by(s, 7), 1);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

static void test_subtree_lists_in_stack_order_and_rm_frees_it(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_store_stats before, after;
    char out[256];
    static const char want[] =
        "/a\0n0\0\0" "/a/c\0n0\0\0" "/a/b\0r3\0\0" "/a/b/d\0r3\0\0";
    xsd_store_stats(s, &before);
    CHECK_EQ(put(s, "/a/b/d", "", P("r3\0")), 3);
    CHECK_EQ(xsd_store_set_perms(s, S("/a"), P(N0)), 0);
    CHECK_EQ(put(s, "/a/c", "", P(N0)), 1);
    CHECK_EQ(xsd_store_subtree(s, S("/a"), NULL, 0), sizeof want - 1);
    CHECK_EQ(xsd_store_subtree(s, S("/a"), out, sizeof out), sizeof want - 1);
    CHECK(memcmp(out, want, sizeof want - 1) == 0);
    CHECK_EQ(xsd_store_rm(s, S("/a")), 4);
    CHECK_EQ(xsd_store_owned_by(s, 3), 0);
    CHECK_EQ(xsd_store_rm(s, S("/a")), -ENOENT);
    CHECK_EQ(xsd_store_rm(s, S("/")), -EINVAL);
    xsd_store_stats(s, &after);
    CHECK_EQ(after.nodes, 1);
    CHECK_EQ(after.blocks, before.blocks + 1);        /* the index, kept at its peak */
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

static void test_rejects(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_node_view v;
    CHECK_EQ(xsd_store_write(s, S("/a//b"), S(""), P(N0)), -EINVAL);
    CHECK_EQ(xsd_store_write(s, S("/a/"), S(""), P(N0)), -EINVAL);
    CHECK_EQ(xsd_store_write(s, S("a"), S(""), P(N0)), -EINVAL);
    CHECK_EQ(xsd_store_write(s, S("/a"), S(""), P("n0")), -EINVAL);   /* no NUL */
    CHECK_EQ(xsd_store_write(s, S("/a"), S(""), P("q0\0")), -EINVAL);
    CHECK_EQ(xsd_store_write(s, S("/a"), S(""), P("n65536\0")), -EINVAL);
    CHECK_EQ(xsd_store_write(s, S("/a"), S(""), NULL, 0), -EINVAL);
    CHECK_EQ(xsd_store_get(s, S("/a"), &v), -ENOENT);
    CHECK_EQ(xsd_store_set_perms(s, S("/"), P("r\0")), -EINVAL);
    CHECK_EQ(xsd_store_stamp(s), 1);                  /* nothing above spent a generation */
    CHECK_EQ(xsd_store_count(s), 1);
    xsd_store_free(s);
}

static void test_deep_chain_is_iterative(void)
{
    enum { DEPTH = 20000 };
    xsd_store *s = xsd_store_new();
    char *path = malloc(2 * DEPTH + 1);
    int64_t n;
    for (int i = 0; i < DEPTH; i++)
        memcpy(path + 2 * i, "/x", 2);
    CHECK_EQ(xsd_store_write(s, path, 2 * DEPTH, S("v"), P(N0)), DEPTH);
    n = xsd_store_subtree(s, S("/x"), NULL, 0);
    CHECK(n > 2 * DEPTH);
    CHECK_EQ(xsd_store_rm(s, S("/x")), DEPTH);
    free(path);
    xsd_store_free(s);
}

/* Random writes, overwrites, set_perms and rms on a small name space; the
 * store must stay sound, and removing everything leaves only the root. */
static void test_random_operations_keep_the_store_sound(void)
{
    static const char *names[] = { "a", "b", "c", "local", "0", "17" };
    static const char *perms[] = { "n0\0", "r1\0n0\0", "b2\0", "w65535\0r3\0" };
    xsd_store *s = xsd_store_new();
    char path[64], value[200];
    memset(value, 'q', sizeof value);
    for (int step = 0; step < 20000; step++) {
        size_t len = 0, depth = 1 + check_below(4);
        const char *p = perms[check_below(4)];
        for (size_t d = 0; d < depth; d++)
            len += (size_t)snprintf(path + len, sizeof path - len, "/%s", names[check_below(6)]);
        switch (check_below(5)) {
        case 0: case 1:
            CHECK(xsd_store_write(s, path, len, value, check_below(200), p, strlen(p) + 1) >= 0);
            break;
        case 2: {
            int rc = xsd_store_set_perms(s, path, len, p, strlen(p) + 1);
            CHECK(rc == 0 || rc == -ENOENT);
            break;
        }
        case 3: {
            int64_t rc = xsd_store_rm(s, path, len);
            CHECK(rc > 0 || rc == -ENOENT);
            break;
        }
        default: {
            struct xsd_node_view v;
            int rc = xsd_store_get(s, path, len, &v);
            CHECK(rc == 0 || rc == -ENOENT);
        }
        }
        if (step % 500 == 0)
            CHECK_EQ(xsd_store_check(s), 0);
    }
    CHECK_EQ(xsd_store_check(s), 0);
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "/%s", names[i]);
        xsd_store_rm(s, path, strlen(path));
    }
    CHECK_EQ(xsd_store_count(s), 1);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

/* Does bytes[0..len) contain the string want? (the dump holds NULs) */
static int contains(const char *bytes, size_t len, const char *want)
{
    size_t wl = strlen(want);
    for (size_t i = 0; i + wl <= len; i++)
        if (memcmp(bytes + i, want, wl) == 0)
            return 1;
    return 0;
}

static void test_dump_sees_every_node(void)
{
    xsd_store *s = xsd_store_new();
    size_t len;
    char *d;
    put(s, "/a/b", "v", P(N0));
    d = store_dump(s, &len);
    CHECK(contains(d, len, "/a/b 3 0 1 3\nvn0"));
    CHECK(contains(d, len, "count 3\n"));
    free(d);
    xsd_store_free(s);
}

int main(void)
{
    RUN(test_new_store_has_only_the_root);
    RUN(test_write_creates_ancestors_and_stamps_top_down);
    RUN(test_directory_that_grows_its_value_keeps_its_children);
    RUN(test_subtree_lists_in_stack_order_and_rm_frees_it);
    RUN(test_rejects);
    RUN(test_deep_chain_is_iterative);
    RUN(test_random_operations_keep_the_store_sound);
    RUN(test_dump_sees_every_node);
    return check_report();
}
