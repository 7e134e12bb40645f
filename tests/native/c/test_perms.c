/*
 * test_perms.c: permissions.access in C (perms.h), the rule engine.c and
 * watchreg.c share: each of its cases (docs/misc/xenstore.txt,
 * "Permissions"; xsd/core/permissions.py), then random lists, callers and
 * targets against a trivial model that parses the list into an array first,
 * under ASan/UBSan. The oracle tests (tests/native/test_engine.py,
 * test_watchreg.py) hold the engine and the registry to the Python core.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "perms.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define R XSD_ACCESS_READ
#define W XSD_ACCESS_WRITE
#define ALL XSD_ACCESS_ALL

static unsigned caller_access(uint32_t caller, int64_t target, const char *perms, size_t len)
{
    return xsd_perms_access(caller, target, 0, perms, len);
}

static void test_kinds(void)
{
    CHECK_EQ(xsd_perm_kind_access('r'), R);
    CHECK_EQ(xsd_perm_kind_access('w'), W);
    CHECK_EQ(xsd_perm_kind_access('b'), R | W);
    CHECK_EQ(xsd_perm_kind_access('n'), 0);
    CHECK_EQ(xsd_perm_kind_access('x'), 0);
    CHECK_EQ(xsd_perm_kind_access('\0'), 0);
}

static void test_the_rule(void)
{
    /* privileged: everything, whatever the list, even none */
    CHECK_EQ(xsd_perms_access(5, -1, 1, S("n0\0")), ALL);
    CHECK_EQ(xsd_perms_access(5, -1, 1, NULL, 0), ALL);
    /* no list: nothing */
    CHECK_EQ(caller_access(5, -1, NULL, 0), 0);
    CHECK_EQ(caller_access(5, -1, "n5", 0), 0);
    /* the owner, or a caller acting for it (SET_TARGET): everything */
    CHECK_EQ(caller_access(5, -1, S("n5\0")), ALL);
    CHECK_EQ(caller_access(7, 5, S("n5\0r7\0")), ALL);
    /* the first later entry naming the caller or its target decides */
    CHECK_EQ(caller_access(2, -1, S("n1\0r2\0b2\0")), R);
    CHECK_EQ(caller_access(2, -1, S("b1\0n2\0")), 0);
    CHECK_EQ(caller_access(7, 5, S("n1\0w5\0r7\0")), W);
    CHECK_EQ(caller_access(7, 5, S("n1\0r7\0w5\0")), R);
    /* else the owner entry's kind, everyone's default */
    CHECK_EQ(caller_access(3, -1, S("r0\0w5\0")), R);
    CHECK_EQ(caller_access(3, -1, S("b0\0")), R | W);
    CHECK_EQ(caller_access(3, -1, S("w0\0")), W);
    CHECK_EQ(caller_access(3, -1, S("n0\0r1\0")), 0);
    /* no target: -1 names no one (not domid 2^64 - 1, nor 0) */
    CHECK_EQ(caller_access(3, -1, S("n4294967295\0")), 0);
    CHECK_EQ(caller_access(0, -1, S("n1\0")), 0);
    /* the largest domid the store keeps, and digits past any domid */
    CHECK_EQ(caller_access(4294967295u, -1, S("n4294967295\0")), ALL);
    CHECK_EQ(caller_access(4294967295u, -1, S("r99999999999999999999\0")), R);
    CHECK_EQ(caller_access(3, 4294967295, S("n1\0w4294967295\0")), W);
    /* a list whose last entry lacks its NUL still reads to its end */
    CHECK_EQ(caller_access(2, -1, S("n1\0r2")), R);
}

/* The model: the entries split into arrays first, then permissions.access. */
static unsigned model(uint32_t caller, int64_t target, const char *kinds,
                      const uint32_t *domids, size_t n)
{
    size_t i;

    if (n == 0)
        return 0;
    if (domids[0] == caller || (target >= 0 && domids[0] == (uint64_t)target))
        return ALL;
    for (i = 1; i < n; i++)
        if (domids[i] == caller || (target >= 0 && domids[i] == (uint64_t)target))
            return xsd_perm_kind_access(kinds[i]);
    return xsd_perm_kind_access(kinds[0]);
}

static void test_random_lists_against_the_model(void)
{
    static const char kinds_of[] = "nrwbx";
    static const uint32_t pool[] = {0, 1, 2, 3, 7, 32768, 4294967295u};
    const size_t npool = sizeof pool / sizeof pool[0];

    for (int round = 0; round < 200000; round++) {
        char list[128], kinds[4];
        uint32_t domids[4];
        size_t n = check_below(5), len = 0;
        uint32_t caller = pool[check_below((unsigned)npool)];
        int64_t target = check_below(3) ? -1 : (int64_t)pool[check_below((unsigned)npool)];
        int privileged = check_below(10) == 0;

        for (size_t i = 0; i < n; i++) {
            int w;

            kinds[i] = kinds_of[check_below(sizeof kinds_of - 1)];
            domids[i] = pool[check_below((unsigned)npool)];
            w = snprintf(list + len, sizeof list - len, "%c%u", kinds[i], (unsigned)domids[i]);
            len += (size_t)w + 1;           /* snprintf wrote the NUL */
        }
        CHECK_EQ(xsd_perms_access(caller, target, privileged, n ? list : NULL, len),
                 privileged ? ALL : model(caller, target, kinds, domids, n));
    }
}

int main(void)
{
    RUN(test_kinds);
    RUN(test_the_rule);
    RUN(test_random_lists_against_the_model);
    return check_report();
}
