/*
 * test_journal_alloc_fail.c: every allocation journal_enc.c makes is
 * checked, and a record that fails leaves the change log as it was.
 *
 * journal_enc.c and store.c are built with -DXSD_ALLOC_HOOKS (alloc.h)
 * against alloc_hooks.c. A scenario of rounds (store changes, then one
 * record each: a wide and deep batch, removals, the ORDER fallback, a batch
 * past XSD_JOURNAL_KEEP and a small one after it, a tail alone) runs once
 * without failures for the golden records, then once for every N: the
 * first N of the encoder's allocations succeed and the next fails (once, or
 * every one after it: sticky). The store's own changes are made with the
 * hooks disarmed, so N counts the encoder's allocations alone. A record
 * that returns -ENOMEM must leave the change log byte for byte as it was;
 * retried with the allocator back, it must equal the golden record, as must
 * every record that succeeded. Nothing may be left allocated at the end.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ALLOC_FAIL_MIN_SITES 30     /* the encoder allocates a few buffers per record */
#include "alloc_fail_harness.h"
#include "journal_enc.h"
#include "store.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define N0 "n0\0"
#define ROUNDS 6

static char *golden[ROUNDS];
static int64_t golden_len[ROUNDS];

static void write_path(xsd_store *s, const char *path, const char *value, size_t value_len)
{
    if (xsd_store_write(s, path, strlen(path), value, value_len, S(N0)) < 0)
        abort();
}

/* Round r's changes to s (hooks disarmed); its tail in *tail. */
static void changes(xsd_store *s, int r, const char **tail, size_t *tail_len)
{
    char path[2200], value[120];
    size_t at = 0;

    memset(value, 'v', sizeof value);
    *tail = NULL;
    *tail_len = 0;
    switch (r) {
    case 0:                                     /* wide, deep, updates */
        for (int i = 0; i < 300; i++) {
            snprintf(path, sizeof path, "/w/%d", i);
            write_path(s, path, value, (size_t)(i % 40));
        }
        for (int d = 0; d < 100; d++) {
            path[at++] = '/';
            path[at++] = (char)('a' + d % 26);
        }
        if (xsd_store_write(s, path, at, "", 0, S(N0)) < 0)
            abort();
        write_path(s, "/w/7", "again", 5);
        break;
    case 1:                                     /* removals, permissions, re-creation */
        if (xsd_store_rm(s, S("/w")) < 0 || xsd_store_set_perms(s, S("/a"), S("n3\0r1\0")) < 0)
            abort();
        write_path(s, "/w/7", "new", 3);
        break;
    case 2:                                     /* created, then not last: ORDER */
        write_path(s, "/p/old", "1", 1);
        write_path(s, "/p/new", "2", 1);
        if (xsd_store_move_last(s, S("/p/old")) != 0)
            abort();
        break;
    case 3:                                     /* past XSD_JOURNAL_KEEP */
        for (int i = 0; i < 2500; i++) {
            snprintf(path, sizeof path, "/big/%d/%d", i % 7, i);
            write_path(s, path, value, sizeof value);
        }
        break;
    case 4:                                     /* small, in buffers built anew */
        write_path(s, "/big/0/x", "1", 1);
        break;
    default:                                    /* no changes: the caller's entries alone */
        *tail = "WATCH-AND-META";
        *tail_len = 14;
        break;
    }
}

/* A copy of s's change log (plain malloc: the test's memory). */
static char *log_copy(const xsd_store *s, int64_t *len)
{
    char *copy;

    *len = xsd_store_changes(s, NULL, 0);
    copy = malloc((size_t)*len + 1);
    if (!copy || xsd_store_changes(s, copy, (size_t)*len) != *len)
        abort();
    return copy;
}

static void record_golden(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();

    if (!s || !j)
        abort();
    xsd_store_track(s, 1);
    for (int r = 0; r < ROUNDS; r++) {
        const char *tail;
        size_t tail_len;
        changes(s, r, &tail, &tail_len);
        golden_len[r] = xsd_journal_record(j, s, (uint64_t)r + 1, tail, tail_len);
        CHECK(golden_len[r] > 0);
        golden[r] = malloc((size_t)golden_len[r]);
        if (!golden[r])
            abort();
        memcpy(golden[r], xsd_journal_data(j), (size_t)golden_len[r]);
    }
    CHECK((uint64_t)golden_len[3] > XSD_JOURNAL_KEEP);
    xsd_journal_free(j);
    xsd_store_free(s);
}

static int run_once(long n, int sticky)
{
    long budget = n;                /* the encoder's allocations left before the failure */
    int injected = 0;
    xsd_store *s;
    xsd_journal *j;

    hooks_fail_after(-1, 0);
    s = xsd_store_new();
    if (!s)
        abort();
    xsd_store_track(s, 1);
    hooks_fail_after(budget, sticky);
    j = xsd_journal_new();
    injected = hooks_failed();
    budget -= hooks_attempts();
    hooks_fail_after(-1, 0);
    if (!j) {
        CHECK(injected);
        xsd_store_free(s);
        CHECK_EQ(hooks_live_blocks(), 0);
        return 1;
    }
    for (int r = 0; r < ROUNDS; r++) {
        const char *tail;
        size_t tail_len;
        int64_t before_len, got;
        char *before;

        changes(s, r, &tail, &tail_len);
        before = log_copy(s, &before_len);
        hooks_fail_after(injected && sticky ? 0 : (injected ? -1 : budget), sticky);
        got = xsd_journal_record(j, s, (uint64_t)r + 1, tail, tail_len);
        if (hooks_failed())
            injected = 1;
        budget -= hooks_attempts();
        hooks_fail_after(-1, 0);
        if (got == -ENOMEM) {
            int64_t after_len;
            char *after = log_copy(s, &after_len);
            CHECK(injected);
            CHECK_EQ(after_len, before_len);
            CHECK(memcmp(after, before, (size_t)before_len) == 0);
            free(after);
            got = xsd_journal_record(j, s, (uint64_t)r + 1, tail, tail_len);
        }
        CHECK_EQ(got, golden_len[r]);
        if (got == golden_len[r])
            CHECK(memcmp(xsd_journal_data(j), golden[r], (size_t)got) == 0);
        CHECK_EQ(xsd_store_changes(s, NULL, 0), 0);
        CHECK_EQ(xsd_store_check(s), 0);
        free(before);
    }
    xsd_journal_free(j);
    xsd_store_free(s);
    CHECK_EQ(hooks_live_blocks(), 0);
    return injected;
}

int main(void)
{
    record_golden();
    run_alloc_fail_sweeps();
    for (int r = 0; r < ROUNDS; r++)
        free(golden[r]);
    return check_report();
}
