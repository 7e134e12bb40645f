/* txn_scenario.h: one run of transactions over a C store, shared by
 * test_txn.c (behaviour) and test_txn_alloc_fail.c (every allocation of
 * txn.c and store.c failed in turn). Two transactions overlap: the first
 * reads, writes, makes a subtree, removes one and makes it again, notes the
 * events ops.py would hand it, and commits; the second read a node the first
 * changes and must conflict. Each call's result goes to the caller's step()
 * (expected value, or -ENOMEM / -EAGAIN after a failure when failures are
 * injected). */
#ifndef XSD_TEST_TXN_SCENARIO_H
#define XSD_TEST_TXN_SCENARIO_H

#include <errno.h>
#include <string.h>

#include "store.h"
#include "txn.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* The store the scenario starts from. 0, or -ENOMEM. */
static int scenario_store(xsd_store *s)
{
    static const char *const paths[] = {"/a/b/c", "/a/b/d", "/a/e", "/f"};

    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        int64_t rc = xsd_store_write(s, paths[i], strlen(paths[i]), S("v"), S("n0\0r1\0"));

        if (rc < 0)
            return (int)rc;
    }
    return 0;
}

/* step(what, rc, want): the caller checks rc against want. Returns the
 * commit's result. */
typedef void (*scenario_step)(const char *what, int64_t rc, int64_t want);

static int scenario_run(xsd_txn *t, xsd_txn *u, scenario_step step)
{
    struct xsd_node_view v;
    char buf[256];
    int rc;

    step("get /a", xsd_txn_get(t, S("/a"), &v), 1);
    step("get /a/x absent", xsd_txn_get(t, S("/a/x"), &v), 0);
    step("children /a", xsd_txn_children(t, S("/a"), buf, sizeof buf), 4);
    step("u reads /a/e", xsd_txn_get(u, S("/a/e"), &v), 1);
    step("set_value /a/e", xsd_txn_set_value(t, S("/a/e"), S("new")), 0);
    step("note", xsd_txn_note_change(t, S("/a/e"), S("n0\0r1\0"), NULL, 0), 0);
    step("set_perms /f", xsd_txn_set_perms(t, S("/f"), S("n1\0")), 0);
    step("note", xsd_txn_note_change(t, S("/f"), S("n1\0"), S("n0\0r1\0")), 0);
    step("owned", xsd_txn_owned_delta(t, 1), 1);
    step("create /a/x/y/z", xsd_txn_create(t, S("/a/x/y/z"), 3, S("deep"), S("n0\0")), 0);
    step("note", xsd_txn_note_change(t, S("/a/x/y/z"), S("n0\0"), NULL, 0), 0);
    step("remove /a/b", xsd_txn_remove(t, S("/a/b")), 3);
    {
        int64_t n = xsd_txn_removed(t, buf, sizeof buf);

        step("removed", n, 40);     /* "/a/b/c\0n0\0r1\0\0" "/a/b/d\0..." "/a/b\0..." */
        if (n == 40)
            step("note remove", xsd_txn_note_remove(t, S("/a/b"), buf, (size_t)n), 0);
    }
    step("make /a/b again", xsd_txn_create(t, S("/a/b/q"), 2, S(""), S("b0\0")), 0);
    step("note", xsd_txn_note_change(t, S("/a/b/q"), S("b0\0"), NULL, 0), 0);
    step("seen", (int64_t)xsd_txn_seen(t), 10);
    rc = xsd_txn_commit(t);
    step("commit", rc, 0);
    step("u conflicts", xsd_txn_commit(u), -EAGAIN);
    return rc;
}

#endif /* XSD_TEST_TXN_SCENARIO_H */
