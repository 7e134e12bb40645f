/*
 * test_txn_alloc_fail.c: every allocation txn.c (and the store under it)
 * makes is checked. txn_scenario.h runs once for every N: the first N
 * allocations succeed and the next fails (once, or every one after it).
 * Each call either gives the result of the run without failures or fails
 * with -ENOMEM (a commit: -EAGAIN once a failure doomed the transaction);
 * the store stays sound (xsd_store_check), and nothing is left allocated.
 */
#include <errno.h>

#include "alloc_fail_harness.h"
#include "txn_scenario.h"

static void tolerate(const char *what, int64_t rc, int64_t want)
{
    (void)what;
    /* After an injected failure later results may differ too (a read that failed
     * is not recorded, a removal's records are not there to note): only the
     * kind of answer is checked here, the exact ones in test_txn.c. */
    if (!hooks_failed())
        CHECK_EQ(rc, want);
}

/* Three rounds of the scenario, each on its own store, under one count of
 * allocations (the stores' own setup is failed in turn too). */
static int run_once(long n, int sticky)
{
    int injected;

    hooks_fail_after(n, sticky);
    for (int round = 0; round < 3; round++) {
        xsd_store *s = xsd_store_new();
        xsd_txn *t = s ? xsd_txn_new(s) : NULL, *u = s ? xsd_txn_new(s) : NULL;
        char buf[512];

        if (t && u && scenario_store(s) == 0) {
            (void)scenario_run(t, u, tolerate);
            (void)xsd_txn_events(t, buf, sizeof buf);
        }
        if (s)
            CHECK_EQ(xsd_store_check(s), 0);
        xsd_txn_free(t);
        xsd_txn_free(u);
        xsd_store_free(s);
    }
    injected = hooks_failed();
    hooks_fail_after(-1, 0);
    CHECK_EQ(hooks_live_blocks(), 0);
    return injected;
}

int main(void)
{
    run_alloc_fail_sweeps();
    return check_report();
}
