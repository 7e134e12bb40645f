/* check.h: the smallest test harness: CHECK reports and counts, never exits,
 * so one run shows every failure. main() returns check_failures != 0. */
#ifndef XSD_TEST_CHECK_H
#define XSD_TEST_CHECK_H

#include <stdio.h>
#include <time.h>

static int check_failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
            check_failures++;                                              \
        }                                                                  \
    } while (0)

#define CHECK_EQ(a, b)                                                     \
    do {                                                                   \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);    \
        if (check_a_ != check_b_) {                                        \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_);       \
            check_failures++;                                              \
        }                                                                  \
    } while (0)

#define RUN(test)                                                          \
    do {                                                                   \
        int check_before_ = check_failures;                                \
        clock_t check_t0_ = clock();                                       \
        test();                                                            \
        fprintf(stderr, "%-40s %-6s %6.0f ms cpu\n", #test,                \
                check_failures == check_before_ ? "ok" : "FAILED",         \
                1000.0 * (double)(clock() - check_t0_) / CLOCKS_PER_SEC);  \
    } while (0)

/* The end of every test main(): how many checks failed, and the exit status
 * ctest reads (0 only when none did). */
static inline int check_report(void)
{
    if (check_failures != 0)
        fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures != 0;
}

/* A seeded xorshift64* generator: every run sees the same sequence. */
static unsigned long long check_rng_state = 0x9e3779b97f4a7c15ULL;

static inline unsigned long long check_rand(void)
{
    unsigned long long x = check_rng_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    check_rng_state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static inline unsigned check_below(unsigned n)
{
    return (unsigned)(check_rand() % n);
}

#endif /* XSD_TEST_CHECK_H */
