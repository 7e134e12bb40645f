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
    memset(buf, 'x', sizeof buf);
    CHECK_EQ(xsd_store_children(s, S("/local/domain"), buf, 6), 6);   /* exactly fits */
    CHECK(memcmp(buf, "1\0" "2\0" "0\0" "x", 7) == 0);
    CHECK_EQ(xsd_store_children(s, S("/local/domain"), buf, 5), 6);   /* one short: the length */
    CHECK_EQ(xsd_store_children(s, S("/local/domain"), buf, 1), 6);
    CHECK_EQ(xsd_store_children(s, S("/local/domain"), NULL, 0), 6);
    CHECK_EQ(xsd_store_last_children(s, S("/local/domain"), 2, buf, sizeof buf), 4);
    CHECK(memcmp(buf, "2\0" "0\0", 4) == 0);           /* the tail, in creation order */
    CHECK_EQ(xsd_store_last_children(s, S("/local/domain"), 9, buf, sizeof buf), 6);
    CHECK(memcmp(buf, "1\0" "2\0" "0\0", 6) == 0);     /* fewer than asked: all */
    CHECK_EQ(xsd_store_last_children(s, S("/local/domain"), 0, buf, sizeof buf), 0);
    CHECK_EQ(xsd_store_last_children(s, S("/local/domain/1/name"), 3, buf, sizeof buf), 0);
    CHECK_EQ(xsd_store_last_children(s, S("/local/domain"), 1, buf, 1), 2);   /* n > cap */
    CHECK_EQ(xsd_store_last_children(s, S("/nowhere"), 1, buf, sizeof buf), -ENOENT);
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

/* Children before their parent, siblings in creation order, the top last:
 * xsd/core/ops.py subtree(), C xenstored's delete order. */
static void test_subtree_lists_in_removal_order_and_rm_frees_it(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_store_stats before, after;
    char out[256];
    static const char want[] =
        "/a/b/d\0r3\0\0" "/a/b\0r3\0\0" "/a/c\0n0\0\0" "/a\0n0\0\0";
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
    CHECK_EQ(after.blocks, before.blocks + 2);        /* the index and its tags, kept at its peak */
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
    CHECK_EQ(xsd_store_write(s, S("/a"), S(""), P("n4294967296\0")), -EINVAL);   /* past 2^32-1 */
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

/* 40 + len(path) + len(value) + 8 per permission entry, per owner. */
static void test_bytes_of_follows_every_mutation(void)
{
    xsd_store *s = xsd_store_new();
    CHECK_EQ(xsd_store_bytes_of(s, 0), 40 + 1 + 8);
    CHECK_EQ(put(s, "/a/bb", "xyz", P("n5\0r1\0")), 2);
    CHECK_EQ(xsd_store_bytes_of(s, 5), (40 + 2 + 16) + (40 + 5 + 3 + 16));
    CHECK_EQ(put(s, "/a/bb", "", NULL, 0), 0);                 /* the value shrinks */
    CHECK_EQ(xsd_store_bytes_of(s, 5), (40 + 2 + 16) + (40 + 5 + 16));
    CHECK_EQ(xsd_store_set_perms(s, S("/a/bb"), P("n7\0")), 0); /* moves to another owner */
    CHECK_EQ(xsd_store_bytes_of(s, 5), 40 + 2 + 16);
    CHECK_EQ(xsd_store_bytes_of(s, 7), 40 + 5 + 8);
    CHECK_EQ(xsd_store_put(s, S("/a/bb"), S("12345678"), P("n5\0")), 0);
    CHECK_EQ(xsd_store_bytes_of(s, 7), 0);
    CHECK_EQ(xsd_store_bytes_of(s, 5), (40 + 2 + 16) + (40 + 5 + 8 + 8));
    CHECK_EQ(xsd_store_load(s, S("/a/c"), S("v"), P("n7\0r0\0"), 3), 1);
    CHECK_EQ(xsd_store_bytes_of(s, 7), 40 + 4 + 1 + 16);
    CHECK_EQ(xsd_store_check(s), 0);
    CHECK_EQ(xsd_store_rm(s, S("/a")), 3);
    CHECK_EQ(xsd_store_bytes_of(s, 5), 0);
    CHECK_EQ(xsd_store_bytes_of(s, 7), 0);
    CHECK_EQ(xsd_store_bytes_of(s, 0), 40 + 1 + 8);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

static int64_t take(xsd_store *s, char *out, size_t cap)
{
    return xsd_store_take_changes(s, out, cap);
}

static void test_change_log_records_kinds_in_first_change_order(void)
{
    xsd_store *s = xsd_store_new();
    char out[256];
    static const char first[] = "\2/\0" "\1/a\0" "\1/a/b\0";
    static const char second[] = "\3/a/b\0" "\2/a\0" "\1/a/c\0";
    CHECK_EQ(put(s, "/untracked", "", P(N0)), 1);
    xsd_store_track(s, 1);
    CHECK_EQ(take(s, out, sizeof out), 0);                      /* nothing before it */
    CHECK_EQ(put(s, "/a/b", "", P(N0)), 2);
    CHECK_EQ(put(s, "/a/b", "v", P(N0)), 0);                    /* CREATED stays CREATED */
    CHECK_EQ(take(s, out, 2), sizeof first - 1);               /* too small: kept */
    CHECK_EQ(xsd_store_changes(s, out, sizeof out), sizeof first - 1);
    CHECK_EQ(take(s, out, sizeof out), sizeof first - 1);
    CHECK(memcmp(out, first, sizeof first - 1) == 0);
    CHECK_EQ(take(s, out, sizeof out), 0);                      /* the take emptied it */
    CHECK_EQ(xsd_store_set_perms(s, S("/a/b"), P("r1\0")), 0);
    CHECK_EQ(xsd_store_put(s, S("/a/c"), S(""), P(N0)), 1);      /* the parent, then it */
    CHECK_EQ(xsd_store_rm(s, S("/a/b")), 1);                    /* UPDATED -> REMOVED, in place */
    CHECK_EQ(xsd_store_move_last(s, S("/a/c")), 0);             /* records nothing */
    CHECK_EQ(xsd_store_load(s, S("/a/z"), S(""), P(N0), 1), 1); /* nor does load */
    CHECK_EQ(take(s, out, sizeof out), sizeof second - 1);
    CHECK(memcmp(out, second, sizeof second - 1) == 0);
    CHECK_EQ(put(s, "/a/q", "", P(N0)), 1);
    CHECK_EQ(xsd_store_rm(s, S("/a/q")), 1);
    CHECK_EQ(put(s, "/a/q", "", P(N0)), 1);                     /* REMOVED -> CREATED */
    CHECK_EQ(take(s, out, sizeof out), 10);
    CHECK(memcmp(out, "\2/a\0\1/a/q\0", 10) == 0);
    CHECK_EQ(put(s, "/a/r", "", P(N0)), 1);
    xsd_store_track(s, 0);                                      /* off drops the log */
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_track(s, 1);
    CHECK_EQ(take(s, out, sizeof out), 0);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

/* A removal records the parent then every node in removal order; the log
 * holds one record per path however often it changes, and a take of a big
 * log gives its table back. */
static void test_change_log_of_a_removal_and_its_bound(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_store_stats idle, busy;
    char out[4096], path[32];
    static const char want[] =
        "\2/\0" "\3/a/b/d\0" "\3/a/b\0" "\3/a/c\0" "\3/a\0";
    CHECK_EQ(put(s, "/a/b/d", "", P(N0)), 3);
    CHECK_EQ(put(s, "/a/c", "", P(N0)), 1);
    xsd_store_track(s, 1);
    CHECK_EQ(xsd_store_rm(s, S("/a")), 4);
    CHECK_EQ(take(s, out, sizeof out), sizeof want - 1);
    CHECK(memcmp(out, want, sizeof want - 1) == 0);
    xsd_store_stats(s, &idle);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 3000; i++) {
            snprintf(path, sizeof path, "/w/%d", i);
            CHECK(put(s, path, round % 2 ? "x" : "yy", P(N0)) >= 0);
        }
    }
    /* 150,000 writes, 3002 records: "/", "/w" and each "/w/<i>" once */
    CHECK_EQ(xsd_store_changes(s, NULL, 0), 3 + 4 + 10 * 6 + 90 * 7 + 900 * 8 + 2000 * 9);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_stats(s, &busy);
    CHECK(busy.bytes > idle.bytes);
    CHECK(take(s, NULL, 0) > 0);                                /* too small: kept */
    {
        int64_t n = xsd_store_changes(s, NULL, 0);
        char *all = malloc((size_t)n);
        CHECK(all != NULL);
        CHECK_EQ(take(s, all, (size_t)n), n);
        free(all);
    }
    CHECK_EQ(xsd_store_rm(s, S("/w")), 3001);
    xsd_store_track(s, 0);
    xsd_store_stats(s, &busy);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

static uint64_t le(const char *p, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = bytes; i-- > 0;)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

static void test_dump_is_pre_order_records(void)
{
    xsd_store *s = xsd_store_new();
    char out[512];
    const char *at = out;
    static const char *const paths[] = { "/", "/a", "/a/b", "/a/b/d", "/a/c", "/z" };
    static const char *const perms[] = { "n0", "n1", "n1", "n1", "r2", "n1" };
    int64_t n;
    CHECK_EQ(put(s, "/a/b/d", "dee", P("n1\0")), 3);
    CHECK_EQ(put(s, "/a/c", "", P("r2\0")), 1);
    CHECK_EQ(put(s, "/z", "zz", P("n1\0")), 1);
    n = xsd_store_dump(s, NULL, 0);
    CHECK(n > 0 && (size_t)n <= sizeof out);
    CHECK_EQ(xsd_store_dump(s, out, sizeof out), n);
    for (size_t i = 0; i < 6; i++) {
        struct xsd_node_view v;
        size_t plen = strlen(paths[i]);
        CHECK(strcmp(at, paths[i]) == 0);
        at += plen + 1;
        CHECK(strcmp(at, perms[i]) == 0 && at[3] == '\0');      /* one entry, then NUL */
        at += 4;
        CHECK_EQ(xsd_store_get(s, paths[i], plen, &v), 0);
        CHECK_EQ(le(at, 8), v.gen);
        CHECK_EQ(le(at + 8, 4), v.value_len);
        CHECK(memcmp(at + 12, v.value, v.value_len) == 0);
        at += 12 + v.value_len;
    }
    CHECK_EQ(at - out, n);
    xsd_store_free(s);
}

static void test_naming_lists_the_nodes_naming_a_domid_in_pre_order(void)
{
    xsd_store *s = xsd_store_new();
    char out[256];
    static const char want[] = "O/a\0" "N/a/b\0" "O/a/b/d\0" "N/z\0";
    int64_t n;
    CHECK_EQ(put(s, "/a/b/d", "", P("n12\0")), 3);               /* /a, /a/b, /a/b/d: n12 */
    CHECK_EQ(xsd_store_set_perms(s, "/a/b", 4, P("r0\0w12\0")), 0);
    CHECK_EQ(put(s, "/a/c", "", P("r1\0r120\0")), 1);           /* 120 is not 12 */
    CHECK_EQ(put(s, "/z", "", P("b0\0n3\0r12\0")), 1);
    n = xsd_store_naming(s, 12, NULL, 0);
    CHECK_EQ(n, (int64_t)sizeof want - 1);
    CHECK_EQ(xsd_store_naming(s, 12, out, sizeof out), n);
    CHECK(memcmp(out, want, sizeof want - 1) == 0);
    CHECK_EQ(xsd_store_naming(s, 12, out, 5), n);                /* short: only the length */
    CHECK_EQ(xsd_store_naming(s, 0, out, sizeof out), 13);       /* the root, /a/b (r0), /z (b0) */
    CHECK(memcmp(out, "O/\0" "O/a/b\0" "O/z\0", 13) == 0);
    CHECK_EQ(xsd_store_naming(s, 7, out, sizeof out), 0);
    xsd_store_free(s);
}

static void test_put_creates_last_and_stamps_once(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_node_view v;
    char names[64];
    CHECK_EQ(put(s, "/d/x", "", P(N0)), 2);                    /* gens 1 (/), 2 (/d), 3 (/d/x) */
    CHECK_EQ(xsd_store_put(s, S("/d/y"), S("new"), P("n4\0")), 1);
    CHECK_EQ(xsd_store_get(s, S("/d"), &v), 0);
    CHECK_EQ(v.gen, 4);                                        /* the parent first */
    CHECK_EQ(xsd_store_get(s, S("/d/y"), &v), 0);
    CHECK_EQ(v.gen, 5);
    CHECK_EQ(xsd_store_put(s, S("/d/x"), S("vv"), P("b4\0")), 0);
    CHECK_EQ(xsd_store_get(s, S("/d/x"), &v), 0);
    CHECK(v.gen == 6 && v.value_len == 2 && v.owner == 4);
    CHECK_EQ(xsd_store_stamp(s), 7);                           /* stamped once */
    CHECK_EQ(xsd_store_children(s, S("/d"), names, sizeof names), 4);
    CHECK(memcmp(names, "x\0y\0", 4) == 0);
    CHECK_EQ(xsd_store_put(s, S("/q/r"), S(""), P(N0)), -ENOENT); /* no parent */
    CHECK_EQ(xsd_store_put(s, S("/d/z"), S(""), P("x\0")), -EINVAL);
    CHECK_EQ(xsd_store_put(s, S("/d/"), S(""), P(N0)), -EINVAL);
    CHECK_EQ(xsd_store_owned_by(s, 4), 2);
    CHECK_EQ(xsd_store_count(s), 4);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

static void test_read_copies_perms_then_value(void)
{
    xsd_store *s = xsd_store_new();
    char out[16];
    uint64_t meta[2] = { 0, 0 };
    CHECK_EQ(put(s, "/a", "value", P("b3\0r4\0")), 1);
    CHECK_EQ(xsd_store_read(s, S("/a"), out, 4, meta), 6 + 5);   /* too small: the size */
    CHECK(meta[0] == 2 && meta[1] == 6);
    CHECK_EQ(xsd_store_read(s, S("/a"), out, sizeof out, meta), 11);
    CHECK(memcmp(out, "b3\0r4\0value", 11) == 0);
    CHECK_EQ(xsd_store_read(s, S("/b"), out, sizeof out, meta), -ENOENT);
    CHECK_EQ(xsd_store_read(s, S("b"), out, sizeof out, meta), -EINVAL);
    xsd_store_free(s);
}

static void test_move_last_and_load(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_node_view v;
    char names[64];
    CHECK_EQ(put(s, "/d/a", "", P(N0)), 2);
    CHECK_EQ(put(s, "/d/b", "", P(N0)), 1);
    CHECK_EQ(put(s, "/d/c", "", P(N0)), 1);
    CHECK_EQ(xsd_store_next_gen(s), 8);
    CHECK_EQ(xsd_store_move_last(s, S("/d/a")), 0);
    CHECK_EQ(xsd_store_move_last(s, S("/d/a")), 0);            /* already last */
    CHECK_EQ(xsd_store_move_last(s, S("/d/c")), 0);
    CHECK_EQ(xsd_store_children(s, S("/d"), names, sizeof names), 6);
    CHECK(memcmp(names, "b\0a\0c\0", 6) == 0);
    CHECK_EQ(xsd_store_next_gen(s), 8);                        /* no stamp */
    CHECK_EQ(xsd_store_move_last(s, S("/")), -EINVAL);
    CHECK_EQ(xsd_store_move_last(s, S("/nope")), -ENOENT);
    CHECK_EQ(xsd_store_load(s, S("/d/b"), S("loaded"), P("r9\0"), 77), 0);
    CHECK_EQ(xsd_store_get(s, S("/d/b"), &v), 0);
    CHECK(v.gen == 77 && v.value_len == 6 && v.owner == 9);
    CHECK_EQ(xsd_store_load(s, S("/d/new"), S(""), P(N0), 78), 1);
    CHECK_EQ(xsd_store_load(s, S("/x/y"), S(""), P(N0), 79), -ENOENT);
    CHECK_EQ(xsd_store_load(s, S("/d/n"), S(""), P("n0"), 79), -EINVAL);
    CHECK_EQ(xsd_store_next_gen(s), 8);
    CHECK(xsd_store_check(s) > 0);                             /* gens above the counter */
    xsd_store_set_next_gen(s, 79);
    CHECK_EQ(xsd_store_check(s), 0);
    CHECK_EQ(xsd_store_stamp(s), 79);
    CHECK_EQ(xsd_store_children(s, S("/d"), names, sizeof names), 10);
    CHECK(memcmp(names, "b\0a\0c\0new\0", 10) == 0);
    xsd_store_free(s);
}

/* Random writes, overwrites, set_perms, rms, puts, move_lasts and takes of
 * the change log on a small name space; the store (byte counts and log
 * included) must stay sound, and removing everything leaves only the root. */
/* path's listing as xsd_store_children gives it equals a fresh walk
 * (xsd_store_last_children of every child never reads a kept listing). */
static int listing_is_walk(xsd_store *s, const char *path)
{
    static char got[1 << 14], walked[1 << 14];
    int64_t n = xsd_store_children(s, path, strlen(path), got, sizeof got);
    int64_t w = xsd_store_last_children(s, path, strlen(path), SIZE_MAX, walked, sizeof walked);
    return n == w && n >= 0 && (size_t)n <= sizeof got && memcmp(got, walked, (size_t)n) == 0;
}

static void test_kept_listing_follows_every_change_to_the_children(void)
{
    xsd_store *s = xsd_store_new();
    struct xsd_store_stats before, kept;
    char path[64], buf[8192];
    int64_t n;
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof path, "/d/%d", i);
        CHECK_EQ(put(s, path, "", P(N0)), i == 0 ? 2 : 1);
    }
    CHECK_EQ(put(s, "/d/0/below", "x", P(N0)), 1);
    xsd_store_stats(s, &before);
    n = xsd_store_children(s, S("/d"), buf, sizeof buf);
    CHECK_EQ(n, 1090);                      /* 10 x 2 + 90 x 3 + 200 x 4 bytes: kept (>= 1024) */
    xsd_store_stats(s, &kept);
    CHECK_EQ(kept.bytes, before.bytes + 1090);     /* counted like every other block */
    CHECK_EQ(kept.blocks, before.blocks + 1);
    CHECK_EQ(xsd_store_children(s, S("/d"), buf, 10), 1090);    /* n > cap from the copy */
    CHECK(listing_is_walk(s, "/d"));
    CHECK_EQ(xsd_store_check(s), 0);
    /* each change to the children: the next listing is the walk's */
    CHECK_EQ(put(s, "/d/new", "", P(N0)), 1);                   /* create */
    CHECK(listing_is_walk(s, "/d"));
    CHECK_EQ(xsd_store_rm(s, S("/d/5")), 1);                    /* remove */
    CHECK(listing_is_walk(s, "/d"));
    CHECK_EQ(xsd_store_move_last(s, S("/d/7")), 0);              /* move_last */
    CHECK(listing_is_walk(s, "/d"));
    CHECK_EQ(xsd_store_load(s, S("/d/loaded"), "", 0, P(N0), 3), 1);   /* load */
    CHECK(listing_is_walk(s, "/d"));
    CHECK_EQ(xsd_store_put(s, S("/d/put"), "", 0, P(N0)), 1);   /* put */
    CHECK(listing_is_walk(s, "/d"));
    CHECK_EQ(xsd_store_check(s), 0);
    /* the node moves to a bigger block: its listing goes with it */
    CHECK(listing_is_walk(s, "/d"));
    memset(buf, 'v', 2000);
    CHECK_EQ(xsd_store_write(s, S("/d"), buf, 2000, NULL, 0), 0);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_stats(s, &before);
    CHECK(listing_is_walk(s, "/d"));
    xsd_store_stats(s, &kept);
    CHECK_EQ(kept.blocks, before.blocks);   /* the kept copy served: it moved too */
    /* changes that leave the children alone keep it: value, perms, a child's value */
    CHECK_EQ(xsd_store_write(s, S("/d/3"), S("value"), NULL, 0), 0);
    CHECK_EQ(xsd_store_set_perms(s, S("/d"), P("b2\0")), 0);
    xsd_store_stats(s, &before);
    CHECK(listing_is_walk(s, "/d"));
    xsd_store_stats(s, &kept);
    CHECK_EQ(kept.blocks, before.blocks);   /* served from the kept copy: nothing new */
    /* the node removed, a new one at its path: never the old listing */
    CHECK(xsd_store_rm(s, S("/d")) > 300);
    CHECK_EQ(put(s, "/d/only", "", P(N0)), 2);
    n = xsd_store_children(s, S("/d"), buf, sizeof buf);
    CHECK(n == 5 && memcmp(buf, "only", 5) == 0);
    CHECK_EQ(xsd_store_check(s), 0);
    /* at most 8 kept; 0 keeps none and frees them */
    for (int d = 0; d < 12; d++) {
        for (int i = 0; i < 300; i++) {
            snprintf(path, sizeof path, "/w%d/%d", d, i);
            CHECK(put(s, path, "", P(N0)) >= 1);
        }
        snprintf(path, sizeof path, "/w%d", d);
        CHECK(listing_is_walk(s, path));
        CHECK_EQ(xsd_store_check(s), 0);
    }
    xsd_store_stats(s, &kept);
    xsd_store_keep_listings(s, 0);
    xsd_store_stats(s, &before);
    CHECK_EQ(kept.blocks, before.blocks + 8);
    CHECK(listing_is_walk(s, "/w3"));
    xsd_store_stats(s, &kept);
    CHECK_EQ(kept.blocks, before.blocks);
    /* a small listing is kept when asked to */
    xsd_store_keep_listings(s, 1);
    CHECK(listing_is_walk(s, "/d"));
    xsd_store_stats(s, &kept);
    CHECK_EQ(kept.blocks, before.blocks + 1);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_store_free(s);
}

static void test_random_operations_keep_the_store_sound(void)
{
    static const char *names[] = { "a", "b", "c", "local", "0", "17" };
    static const char *perms[] = { "n0\0", "r1\0n0\0", "b2\0", "w65535\0r3\0" };
    xsd_store *s = xsd_store_new();
    char path[64], value[200];
    static char log[1 << 16];
    memset(value, 'q', sizeof value);
    xsd_store_track(s, 1);
    xsd_store_keep_listings(s, 1);          /* every listing kept: each change must drop it */
    for (int step = 0; step < 20000; step++) {
        size_t len = 0, depth = 1 + check_below(4);
        const char *p = perms[check_below(4)];
        for (size_t d = 0; d < depth; d++)
            len += (size_t)snprintf(path + len, sizeof path - len, "/%s", names[check_below(6)]);
        switch (check_below(9)) {
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
        case 5: {
            int64_t rc = xsd_store_put(s, path, len, value, check_below(200), p, strlen(p) + 1);
            CHECK(rc == 0 || rc == 1 || rc == -ENOENT);
            break;
        }
        case 6: {
            int rc = xsd_store_move_last(s, path, len);
            CHECK(rc == 0 || rc == -ENOENT);
            break;
        }
        case 7:
            CHECK(xsd_store_take_changes(s, log, sizeof log) >= 0);
            break;
        case 4: {
            struct xsd_node_view v;
            CHECK(xsd_store_get(s, path, len, &v) == -ENOENT || listing_is_walk(s, path));
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
    CHECK(contains(d, len, "count 3 next 4\n"));
    free(d);
    xsd_store_free(s);
}

int main(void)
{
    RUN(test_new_store_has_only_the_root);
    RUN(test_write_creates_ancestors_and_stamps_top_down);
    RUN(test_directory_that_grows_its_value_keeps_its_children);
    RUN(test_subtree_lists_in_removal_order_and_rm_frees_it);
    RUN(test_bytes_of_follows_every_mutation);
    RUN(test_change_log_records_kinds_in_first_change_order);
    RUN(test_change_log_of_a_removal_and_its_bound);
    RUN(test_dump_is_pre_order_records);
    RUN(test_naming_lists_the_nodes_naming_a_domid_in_pre_order);
    RUN(test_put_creates_last_and_stamps_once);
    RUN(test_move_last_and_load);
    RUN(test_read_copies_perms_then_value);
    RUN(test_rejects);
    RUN(test_deep_chain_is_iterative);
    RUN(test_kept_listing_follows_every_change_to_the_children);
    RUN(test_random_operations_keep_the_store_sound);
    RUN(test_dump_sees_every_node);
    return check_report();
}
