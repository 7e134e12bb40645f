/* alloc_fail_harness.h: the sweep shared by test_alloc_fail.c (trie.c) and
 * test_store_alloc_fail.c (store.c). The test supplies
 *     static int run_once(long n, int sticky);
 * one run of its scenario in which the first n allocations succeed and the
 * next fails (once, or every one after it when sticky); it returns 1 if a
 * failure was injected. The sweep raises n until a run completes without
 * reaching one, so every allocation site is failed in turn. */
#ifndef XSD_TEST_ALLOC_FAIL_HARNESS_H
#define XSD_TEST_ALLOC_FAIL_HARNESS_H

#include <stdio.h>

#include "alloc_hooks.h"
#include "check.h"

static int run_once(long n, int sticky);

/* Fewer would mean the scenario no longer reaches the allocation paths (a
 * test whose code allocates less defines its own bound first). */
#ifndef ALLOC_FAIL_MIN_SITES
#define ALLOC_FAIL_MIN_SITES 100
#endif

static void test_fail_each_allocation_once(void)
{
    long n;

    for (n = 0; run_once(n, 0); n++)
        ;
    fprintf(stderr, "  %ld allocations failed in turn\n", n);
    CHECK(n > ALLOC_FAIL_MIN_SITES);
}

static void test_fail_every_allocation_from_n(void)
{
    long n;

    for (n = 0; run_once(n, 1); n++)
        ;
    CHECK(n > ALLOC_FAIL_MIN_SITES);
}

/* Both sweeps, then the allocator back to never failing. */
static void run_alloc_fail_sweeps(void)
{
    RUN(test_fail_each_allocation_once);
    RUN(test_fail_every_allocation_from_n);
    hooks_fail_after(-1, 0);
}

#endif /* XSD_TEST_ALLOC_FAIL_HARNESS_H */
