/*
 * test_alloc_fail.c: every allocation trie.c makes is checked, and a failed
 * operation leaves the object exactly as it was.
 *
 * trie.c is built with -DXSD_ALLOC_HOOKS (alloc.h) against alloc_hooks.c.
 * A fixed scenario runs once for every N: the first N allocations succeed and
 * the next fails (once, or every one after it in "sticky" mode). After each
 * operation the trie must agree with model.h, where an operation that
 * returned -ENOMEM was not applied; a failed operation must leave the node and
 * block counts as they were; at the end nothing may be left allocated.
 * N grows until the scenario completes without reaching an injected failure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail_harness.h"
#include "model.h"
#include "trie.h"

enum op_kind { OP_ADD, OP_REMOVE };

struct op {
    enum op_kind kind;
    const char *key;
    uint64_t id;
};

#define MAX_OPS 256
static struct op ops[MAX_OPS];
static size_t nops;
static char keybuf[MAX_OPS][48];

static void push(enum op_kind kind, const char *key, uint64_t id)
{
    ops[nops].kind = kind;
    ops[nops].key = key;
    ops[nops].id = id;
    nops++;
}

/* Chains of new nodes, a wide node whose table grows several times, an id
 * set that goes inline -> array -> grown array -> inline, specials, globs,
 * and removals that prune. */
static void build_scenario(void)
{
    int i;

    for (i = 1; i <= 6; i++) /* inline id, then an array that grows */
        push(OP_ADD, "/local/domain/1/device/vif/0/state", (uint64_t)i);
    push(OP_ADD, "/", 7);
    push(OP_ADD, "@introduceDomain", 8);
    push(OP_ADD, "@introduceDomain", 9);
    push(OP_ADD, "@introduceDomain", 10);
    push(OP_ADD, "/local/**", 11);
    push(OP_ADD, "/local/domain/*/device", 12);
    for (i = 0; i < 40; i++) {
        snprintf(keybuf[nops], sizeof keybuf[nops], "/local/domain/%d/name", i);
        push(OP_ADD, keybuf[nops], 100 + (uint64_t)i);
    }
    push(OP_REMOVE, "/local/domain/1/device/vif/0/state", 3);
    push(OP_REMOVE, "/local/domain/1/device/vif/0/state", 1);
    push(OP_REMOVE, "/local/domain/1/device/vif/0/state", 99);
    for (i = 0; i < 40; i += 3) {
        snprintf(keybuf[nops], sizeof keybuf[nops], "/local/domain/%d/name", i);
        push(OP_REMOVE, keybuf[nops], 100 + (uint64_t)i);
    }
    push(OP_ADD, "/local/domain/1/device/vif/0/state", 1);
    push(OP_REMOVE, "@introduceDomain", 9);
    push(OP_REMOVE, "@introduceDomain", 8);
    push(OP_ADD, "/a/b/c/d/e/f/g/h", 13);
    push(OP_REMOVE, "/a/b/c/d/e/f/g/h", 13);
}

static const char *probes[] = {
    "/", "/local", "/local/domain", "/local/domain/1",
    "/local/domain/1/device/vif/0/state", "/local/domain/7/name",
    "/local/domain/39/name/x", "@introduceDomain", "/a/b/c/d/e/f/g/h",
    "/local/domain/1/device",
};

/* The trie and the globset must both agree with their models right now. */
static void verify(const xsd_trie *t, xsd_globset *g, const struct model *tm,
                   const struct model *gm)
{
    static uint64_t out[512];
    uint64_t *want;
    size_t i, j, mn;
    int64_t n;
    unsigned flags;

    CHECK_EQ(xsd_trie_count(t), tm->n);
    CHECK_EQ(xsd_globset_count(g), gm->n);
    for (i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        const char *p = probes[i];

        for (flags = 1; flags <= 3; flags++) {
            n = xsd_trie_match(t, p, strlen(p), flags, out, 512);
            want = model_match(tm, p, strlen(p), flags, &mn);
            CHECK_EQ(n, mn);
            if (n == (int64_t)mn)
                CHECK(memcmp(out, want, mn * sizeof *want) == 0);
            free(want);
        }
        n = xsd_globset_match(g, p, strlen(p), out, 512);
        want = model_xalloc((gm->n + 1) * sizeof *want);
        for (mn = 0, j = 0; j < gm->n; j++)
            if (model_glob(gm->v[j].key, gm->v[j].len, p, strlen(p)) == 1)
                want[mn++] = gm->v[j].id;
        mn = model_sort_unique(want, mn);
        CHECK_EQ(n, mn);
        if (n == (int64_t)mn)
            CHECK(memcmp(out, want, mn * sizeof *want) == 0);
        free(want);
    }
}

/* Apply op to the object (trie or globset) and its model; rc -ENOMEM means
 * "not applied" and must only happen when a failure was injected. */
static void apply(int rc, const struct op *op, struct model *m)
{
    size_t len = strlen(op->key);
    int want;

    if (rc == -ENOMEM) {
        CHECK(hooks_failed());
        return;
    }
    if (op->kind == OP_ADD)
        want = model_add(m, op->key, len, op->id) ? -EEXIST : 0;
    else
        want = model_remove(m, op->key, len, op->id) ? -ENOENT : 0;
    CHECK_EQ(rc, want);
}

/* One run with failure after n allocations; 1 if a failure was injected. */
static int run_once(long n, int sticky)
{
    xsd_trie *t;
    xsd_globset *g;
    struct model tm, gm;
    size_t i, len;
    int rc, injected;

    hooks_fail_after(n, sticky);
    t = xsd_trie_new();
    g = xsd_globset_new();
    if (t == NULL || g == NULL) {
        CHECK(hooks_failed());
        xsd_trie_free(t);
        xsd_globset_free(g);
        CHECK_EQ(hooks_live_blocks(), 0);
        return 1;
    }
    model_init(&tm);
    model_init(&gm);
    for (i = 0; i < nops; i++) {
        const struct op *op = &ops[i];

        struct xsd_trie_stats before, after;
        int rc2;

        len = strlen(op->key);
        xsd_trie_stats(t, &before);
        rc = op->kind == OP_ADD ? xsd_trie_add(t, op->key, len, op->id)
                                : xsd_trie_remove(t, op->key, len, op->id);
        apply(rc, op, &tm);
        if (rc == -ENOMEM) {
            /* Same entries, nodes and blocks; only a child table that was
             * doubled before the failure may stay larger (trie.h). */
            xsd_trie_stats(t, &after);
            CHECK_EQ(after.entries, before.entries);
            CHECK_EQ(after.nodes, before.nodes);
            CHECK_EQ(after.blocks, before.blocks);
            CHECK(after.bytes >= before.bytes);
        }
        xsd_globset_stats(g, &before);
        rc2 = op->kind == OP_ADD ? xsd_globset_add(g, op->key, len, op->id)
                                 : xsd_globset_remove(g, op->key, len, op->id);
        apply(rc2, op, &gm);
        if (rc2 == -ENOMEM) { /* its scratch block may be new or larger */
            xsd_globset_stats(g, &after);
            CHECK_EQ(after.entries, before.entries);
            CHECK_EQ(after.nodes, before.nodes);
        }
        /* in full right after a failure, and now and then otherwise */
        if (rc == -ENOMEM || rc2 == -ENOMEM || i % 8 == 0 || i + 1 == nops)
            verify(t, g, &tm, &gm);
    }
    injected = hooks_failed();
    xsd_trie_free(t);
    xsd_globset_free(g);
    CHECK_EQ(hooks_live_blocks(), 0);
    model_clear(&tm);
    model_clear(&gm);
    return injected;
}

int main(void)
{
    build_scenario();
    run_alloc_fail_sweeps();
    return check_report();
}
