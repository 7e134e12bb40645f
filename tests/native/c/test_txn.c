/*
 * test_txn.c: txn.c's behaviour through txn.h (the Python Transaction is the
 * oracle for random runs, tests/native/test_txn.py; here: exact events
 * bytes, the quota, conflicts, order of made nodes, a deep removal).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "txn_scenario.h"

static void expect(const char *what, int64_t rc, int64_t want)
{
    if (rc != want)
        fprintf(stderr, "  %s: %lld, want %lld\n", what, (long long)rc, (long long)want);
    CHECK_EQ(rc, want);
}

static int64_t children(const xsd_store *s, const char *path, char *out, size_t cap)
{
    return xsd_store_children(s, path, strlen(path), out, cap);
}

static void test_scenario(void)
{
    xsd_store *s = xsd_store_new();
    xsd_txn *t = xsd_txn_new(s), *u = xsd_txn_new(s);
    struct xsd_node_view v;
    char buf[512];
    int64_t n;
    static const char events[] =
        "C/a/e\0n0\0r1\0\0\0"           /* first touched of the changed: /a/e */
        "C/f\0n1\0\0n0\0r1\0\0"
        "C/a/x/y/z\0n0\0\0\0"
        "R/a/b\0b0\0\0"                 /* removed, made again: its perms now */
        "C/a/b/q\0b0\0\0\0"
        "M/a/b/c\0n0\0r1\0\0M/a/b/d\0n0\0r1\0\0M/a/b\0n0\0r1\0\0";

    CHECK(s && t && u);
    CHECK_EQ(scenario_store(s), 0);
    CHECK_EQ(scenario_run(t, u, expect), 0);
    n = xsd_txn_events(t, buf, sizeof buf);
    CHECK_EQ(n, sizeof events - 1);
    CHECK(n == sizeof events - 1 && memcmp(buf, events, (size_t)n) == 0);
    /* Made nodes follow the transaction's children order: e, x, then b again. */
    n = children(s, "/a", buf, sizeof buf);
    CHECK(n == 6 && memcmp(buf, "e\0x\0b\0", 6) == 0);
    CHECK_EQ(xsd_store_get(s, S("/a/b/c"), &v), -ENOENT);
    CHECK_EQ(xsd_store_get(s, S("/a/x/y/z"), &v), 0);
    CHECK(v.value_len == 4 && memcmp(v.value, "deep", 4) == 0);
    CHECK_EQ(xsd_store_owned_by(s, 1), 1);
    CHECK_EQ(xsd_store_check(s), 0);
    xsd_txn_free(t);
    xsd_txn_free(u);
    xsd_store_free(s);
}

static void test_quota_and_doom(void)
{
    xsd_store *s = xsd_store_new();
    xsd_txn *t = xsd_txn_new(s);
    struct xsd_node_view v;

    xsd_txn_set_limit(t, 2);
    CHECK_EQ(xsd_txn_get(t, S("/"), &v), 1);
    CHECK_EQ(xsd_txn_get(t, S("/p"), &v), 0);
    CHECK_EQ(xsd_txn_get(t, S("/q"), &v), -ENOSPC);   /* one more untouched node */
    CHECK_EQ(xsd_txn_get(t, S("/p"), &v), 0);         /* touched: free */
    CHECK_EQ(xsd_txn_seen(t), 2);
    CHECK_EQ(xsd_txn_create(t, S("/q"), 1, S(""), S("n0\0")), -ENOSPC);
    xsd_txn_set_limit(t, 0);
    CHECK_EQ(xsd_txn_get(t, S("/bad//path"), &v), -EINVAL);
    CHECK_EQ(xsd_txn_commit(t), 0);                   /* read only: nothing to apply */
    xsd_txn_doom(t);
    CHECK_EQ(xsd_txn_commit(t), -EAGAIN);
    xsd_txn_free(t);
    xsd_store_free(s);
}

/* A node made and removed inside the transaction fires nothing and leaves nothing. */
static void test_made_and_removed(void)
{
    xsd_store *s = xsd_store_new();
    xsd_txn *t = xsd_txn_new(s);
    char buf[128];
    int64_t n;

    CHECK_EQ(xsd_txn_create(t, S("/m/n"), 2, S("x"), S("n0\0")), 0);
    CHECK_EQ(xsd_txn_note_change(t, S("/m/n"), S("n0\0"), NULL, 0), 0);
    CHECK_EQ(xsd_txn_owned_delta(t, 0), 2);
    CHECK_EQ(xsd_txn_remove(t, S("/m")), 2);
    n = xsd_txn_removed(t, buf, sizeof buf);
    CHECK(n == 16 && memcmp(buf, "/m/n\0n0\0\0/m\0n0\0\0", 16) == 0);
    CHECK_EQ(xsd_txn_note_remove(t, S("/m"), buf, (size_t)n), 0);
    CHECK_EQ(xsd_txn_owned_delta(t, 0), 0);
    CHECK_EQ(xsd_txn_commit(t), 0);
    CHECK_EQ(xsd_txn_events(t, buf, sizeof buf), 0);
    CHECK_EQ(xsd_store_count(s), 1);
    CHECK_EQ(xsd_store_next_gen(s), 2);               /* the root was put (stamped once) */
    xsd_txn_free(t);
    xsd_store_free(s);
}

/* Depth costs no C stack: the deepest subtree a path allows (3072 bytes) removed. */
static void test_deep_removal(void)
{
    enum { DEPTH = 1536 };
    xsd_store *s = xsd_store_new();
    xsd_txn *t = xsd_txn_new(s);
    char *path = malloc(2 * DEPTH + 1);

    CHECK(path != NULL);
    for (size_t i = 0; i < DEPTH; i++)
        memcpy(path + 2 * i, "/d", 2);
    CHECK_EQ(xsd_store_write(s, path, 2 * DEPTH, S(""), S("n0\0")), DEPTH);
    CHECK_EQ(xsd_txn_remove(t, S("/d")), DEPTH);
    CHECK_EQ(xsd_txn_commit(t), 0);
    CHECK_EQ(xsd_store_count(s), 1);
    CHECK_EQ(xsd_store_check(s), 0);
    free(path);
    xsd_txn_free(t);
    xsd_store_free(s);
}

int main(void)
{
    RUN(test_scenario);
    RUN(test_quota_and_doom);
    RUN(test_made_and_removed);
    RUN(test_deep_removal);
    return check_report();
}
