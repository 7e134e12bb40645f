/*
 * test_store_alloc_fail.c: every allocation store.c makes is checked, and a
 * failed operation leaves the store exactly as it was.
 *
 * store.c is built with -DXSD_ALLOC_HOOKS (alloc.h) against alloc_hooks.c.
 * A golden run without failures records each operation's result and the
 * store's dump (store_dump.h) after it. Then a fixed scenario runs once for
 * every N: the first N allocations succeed and the next fails.
 *   - once: an operation that returned -ENOMEM must leave the dump as it was;
 *     it is then retried (the failure was one-shot), and from there on every
 *     result and dump must equal the golden run's;
 *   - sticky (every allocation after the N-th fails): each operation either
 *     succeeds or leaves the dump unchanged with -ENOMEM.
 * xsd_store_check must pass after every operation, and nothing may be left
 * allocated at the end. N grows until the scenario runs without reaching an
 * injected failure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail_harness.h"
#include "store.h"
#include "store_dump.h"

enum op_kind { OP_WRITE, OP_SET_PERMS, OP_RM, OP_SUBTREE, OP_TRACK, OP_PUT, OP_LOAD,
               OP_MOVE_LAST, OP_DUMP, OP_NAMING, OP_TAKE, OP_KEEP_LISTINGS, OP_CHILDREN };

struct op {
    enum op_kind kind;
    char path[600];
    const char *value;
    size_t value_len;
    const char *perms;
    size_t perms_len;
};

#define MAX_OPS 512
static struct op ops[MAX_OPS];
static size_t nops;
static int64_t golden_rc[MAX_OPS];
static char *golden_dump[MAX_OPS];
static size_t golden_len[MAX_OPS];
static char long_value[400];
static void build_round(void);

#define PERMS(lit) (lit), (sizeof(lit) - 1)

static struct op *push(enum op_kind kind, const char *path)
{
    struct op *op = &ops[nops++];
    op->kind = kind;
    snprintf(op->path, sizeof op->path, "%s", path);
    op->value = "";
    op->value_len = 0;
    op->perms = "n0";
    op->perms_len = 3;
    return op;
}

static void write_op(const char *path, const char *value, size_t vlen, const char *perms, size_t plen)
{
    struct op *op = push(OP_WRITE, path);
    op->value = value;
    op->value_len = vlen;
    op->perms = perms;
    op->perms_len = plen;
}

/* Chains, a directory wide enough to double the index several times, new
 * owners (the owner array grows), values and permissions that outgrow their
 * block (a directory moving with its children, the root moving), subtree
 * listings with paths longer than the scratch buffer starts, and removals;
 * with change tracking on (untracked mutations allocate a subset of what
 * tracked ones do: the log's records, array and table grow; a removal
 * reserves a record per node), then put, load, move_last, dump and takes;
 * every listing kept (OP_KEEP_LISTINGS), and listings between the changes
 * that must drop them: a listing never fails, kept or not, and is always
 * the walk's (apply checks). */
static void build_scenario(void)
{
    push(OP_TRACK, "/");
    push(OP_KEEP_LISTINGS, "/");
    build_round();
    write_op("/t/a/b", "v", 1, PERMS("n3\0"));
    push(OP_PUT, "/t/a/c")->value = "put";
    ops[nops - 1].value_len = 3;
    push(OP_PUT, "/t/a/b")->value = long_value;               /* grows its block */
    ops[nops - 1].value_len = sizeof long_value;
    push(OP_TAKE, "/");
    push(OP_PUT, "/t/a")->perms = "r7\0";                      /* a new owner */
    push(OP_LOAD, "/t/a/d")->value = long_value;
    ops[nops - 1].value_len = sizeof long_value;
    push(OP_LOAD, "/t/a/b")->perms = "b8\0";
    push(OP_CHILDREN, "/t/a");
    push(OP_MOVE_LAST, "/t/a/b");
    push(OP_CHILDREN, "/t/a");
    write_op("/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p/p",
             "", 0, PERMS("n0\0"));                             /* past dump's first buffer */
    push(OP_DUMP, "/");
    push(OP_NAMING, "/");
    push(OP_RM, "/p");
    push(OP_RM, "/t");
    push(OP_TAKE, "/");
}

static void build_round(void)
{
    char path[600];
    write_op("/local/domain/1/device/vif/0/state", "4", 1, PERMS("b1\0r0\0"));
    for (int i = 0; i < 100; i++) {
        snprintf(path, sizeof path, "/wide/%d", i);
        write_op(path, "x", 1, PERMS("n0\0"));
    }
    for (int d = 2; d <= 8; d++) {
        static const char *owners[] = { "n2", "n0\0r5", "n4", "n0\0r5", "n6", "n0\0r5", "n8" };
        const char *perms = owners[d - 2];
        snprintf(path, sizeof path, "/local/domain/%d/name", d);
        write_op(path, "vm", 2, perms, strlen(perms) == 2 ? 3 : 6);   /* the literal's NUL ends it */
    }
    push(OP_CHILDREN, "/wide");
    write_op("/wide/extra", "x", 1, PERMS("n0\0"));
    push(OP_CHILDREN, "/wide");
    write_op("/wide", long_value, sizeof long_value, PERMS("n0\0"));            /* moves, 100 children */
    push(OP_CHILDREN, "/wide");
    push(OP_CHILDREN, "/local/domain");
    push(OP_SET_PERMS, "/")->perms = "n0\0r1\0r2\0r3\0r4\0r5\0r6\0r7\0r8\0r9\0";
    ops[nops - 1].perms_len = 30;
    push(OP_SET_PERMS, "/local")->perms = "b9\0";
    ops[nops - 1].perms_len = 3;
    memset(path, 0, sizeof path);
    for (int i = 0; i < 60; i++)             /* longer than subtree's first scratch buffer */
        memcpy(path + 2 * i, "/p", 2);
    write_op(path, "deep", 4, PERMS("r3\0"));
    push(OP_SUBTREE, "/p");
    push(OP_SUBTREE, "/local");
    push(OP_RM, "/local/domain/3");
    push(OP_CHILDREN, "/local/domain");
    push(OP_RM, "/wide");
    write_op("/wide/again", "", 0, PERMS("n0\0"));
    push(OP_RM, "/p");
    push(OP_RM, "/local");
    push(OP_RM, "/wide");
}

static int64_t apply(xsd_store *s, const struct op *op)
{
    size_t len = strlen(op->path);
    switch (op->kind) {
    case OP_WRITE:
        return xsd_store_write(s, op->path, len, op->value, op->value_len, op->perms, op->perms_len);
    case OP_SET_PERMS:
        return xsd_store_set_perms(s, op->path, len, op->perms, op->perms_len);
    case OP_RM:
        return xsd_store_rm(s, op->path, len);
    case OP_SUBTREE:
        return xsd_store_subtree(s, op->path, len, NULL, 0);
    case OP_TRACK:
        xsd_store_track(s, 1);
        return 0;
    case OP_PUT:
        return xsd_store_put(s, op->path, len, op->value, op->value_len, op->perms, op->perms_len);
    case OP_LOAD:
        return xsd_store_load(s, op->path, len, op->value, op->value_len, op->perms,
                              op->perms_len, 1);
    case OP_MOVE_LAST:
        return xsd_store_move_last(s, op->path, len);
    case OP_DUMP:
        return xsd_store_dump(s, NULL, 0);
    case OP_NAMING:
        return xsd_store_naming(s, 0, NULL, 0);
    case OP_KEEP_LISTINGS:
        xsd_store_keep_listings(s, 1);
        return 0;
    case OP_CHILDREN: {
        static char got[1 << 12], walked[1 << 12];
        int64_t n = xsd_store_children(s, op->path, len, got, sizeof got);
        CHECK(n != -ENOMEM && n <= (int64_t)sizeof got);   /* -ENOENT: sticky lost its node */
        CHECK_EQ(xsd_store_last_children(s, op->path, len, SIZE_MAX, walked, sizeof walked), n);
        if (n > 0 && n <= (int64_t)sizeof got)
            CHECK(memcmp(got, walked, (size_t)n) == 0);
        return n;
    }
    default: {
        static char out[1 << 16];
        return xsd_store_take_changes(s, out, sizeof out);
    }
    }
}

static int same(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static void golden(void)
{
    xsd_store *s;
    hooks_fail_after(-1, 0);
    s = xsd_store_new();
    for (size_t i = 0; i < nops; i++) {
        golden_rc[i] = apply(s, &ops[i]);
        CHECK(golden_rc[i] >= 0);
        golden_dump[i] = store_dump(s, &golden_len[i]);
        CHECK_EQ(xsd_store_check(s), 0);
    }
    xsd_store_free(s);
    CHECK_EQ(hooks_live_blocks(), 0);
}

/* One run with failure after n allocations; 1 if a failure was injected. */
static int run_once(long n, int sticky)
{
    xsd_store *s;
    int injected;

    hooks_fail_after(n, sticky);
    s = xsd_store_new();
    if (!s) {
        CHECK(hooks_failed());
        CHECK_EQ(hooks_live_blocks(), 0);
        return 1;
    }
    for (size_t i = 0; i < nops; i++) {
        /* Until the failure, the run is the golden run: the state before
         * op i is golden_dump[i - 1]; after a sticky failure, dump it. */
        int failed_before = hooks_failed();
        size_t before_len = 0, after_len;
        char *before = NULL, *after;
        int64_t rc;
        if (sticky && failed_before)
            before = store_dump(s, &before_len);
        rc = apply(s, &ops[i]);
        if (rc == -ENOMEM) {
            CHECK(hooks_failed());
            after = store_dump(s, &after_len);
            if (before)
                CHECK(same(before, before_len, after, after_len));
            else if (i > 0)
                CHECK(same(golden_dump[i - 1], golden_len[i - 1], after, after_len));
            free(after);
            if (!sticky) {
                rc = apply(s, &ops[i]);        /* the one failure is spent */
                CHECK_EQ(rc, golden_rc[i]);
                after = store_dump(s, &after_len);
                CHECK(same(after, after_len, golden_dump[i], golden_len[i]));
                free(after);
            }
        } else if (!sticky || !hooks_failed()) {
            CHECK_EQ(rc, golden_rc[i]);
        }
        free(before);
        if (hooks_failed())
            CHECK_EQ(xsd_store_check(s), 0);
    }
    if (!sticky) {
        size_t end_len;
        char *end = store_dump(s, &end_len);
        CHECK(same(end, end_len, golden_dump[nops - 1], golden_len[nops - 1]));
        free(end);
    }
    injected = hooks_failed();
    xsd_store_free(s);
    CHECK_EQ(hooks_live_blocks(), 0);
    return injected;
}

int main(void)
{
    memset(long_value, 'L', sizeof long_value);
    build_scenario();
    golden();
    run_alloc_fail_sweeps();
    for (size_t i = 0; i < nops; i++)
        free(golden_dump[i]);
    return check_report();
}
