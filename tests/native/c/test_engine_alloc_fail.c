/*
 * test_engine_alloc_fail.c: every allocation on the request path is checked,
 * and a request hit by a failed allocation is left to Python having changed
 * nothing.
 *
 * engine.c, store.c and trie.c are built with -DXSD_ALLOC_HOOKS (alloc.h)
 * against alloc_hooks.c. A golden run without failures records each
 * request's reply and the store's dump (store_dump.h) after it. Then the
 * scenario (engine, conns, a watch, a stream of requests that create nodes,
 * grow values, page a wide directory and change watched nodes, whose events
 * grow the engine's event space) runs once for every N: the first N
 * allocations succeed and the next fails. A watched change's event must be
 * the golden run's whenever its reply is.
 *   - once: a request the golden run answered may come back PYTHON only
 *     when the failure was injected in it; the store must be as before it.
 *     It is then run again (the failure is spent) and from there on every
 *     reply must equal the golden run's, and the final dump too;
 *   - sticky: every request is answered or left to Python unchanged.
 * xsd_store_check must pass after a failure and at the end, and nothing may
 * be left allocated.
 * The whole sweep runs twice: the engine stopping EVENTS with the event
 * described, then firing through a C watch registry (watchreg.c built with
 * the same hooks; xsd_engine_watches), where the run's deliveries stand for
 * the event: a privileged and a guest watcher, one watch below the removed
 * root (the removed nodes' entries are built, and grow their space); and
 * there the conn's WATCH and UNWATCH are answered too (xsd_conn_watches):
 * registrations that grow the session's table, each with its initial event
 * in the deliveries (a failed one registers nothing, or its retry would be
 * EEXIST, Python's, and differ from the golden run), and unwatches, the
 * conn's watches journaled so that each is logged (engine.h, watch_log: a
 * log that cannot grow leaves the request to Python, logging nothing).
 * Without the registry those are Python's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_fail_harness.h"
#include "engine.h"
#include "watchreg.h"
#include "engine_packets.h"
#include "store_dump.h"

#define MAX_REQ 400

static struct stream req[MAX_REQ];      /* one request each */
static size_t nreq;
static char *golden_reply[MAX_REQ];
static size_t golden_reply_len[MAX_REQ];
static char *golden_event[MAX_REQ];   /* NULL: the request fired nothing */
static size_t golden_event_len[MAX_REQ];
static char *golden_dump[MAX_REQ];
static size_t golden_dump_len[MAX_REQ];
static char *initial_dump;
static size_t initial_dump_len;
static char out[2 * XSD_REPLY_MAX];
static const char *event;               /* run_req's: the last run's event, or NULL */
static size_t event_len;
static int firing;                      /* the pass through the C watch registry */
static size_t nwatch;                   /* WATCH/UNWATCH requests: Python's without it */
#define BELOW_WATCH "/watched/t/a-child-name-long-enough-that-fifty-removed-nodes-list-over-4096-007"

static void add(uint32_t type, const char *payload, size_t len)
{
    put_packet(&req[nreq], type, (uint32_t)nreq + 1, 0, payload, len);
    nreq++;
}

static void build_scenario(void)
{
    char p[128], big[1500];
    int n;

    add(T_WRITE, P("/local/domain/1/device/vif/0/state\0" "4"));
    for (int i = 0; i < 40; i++) {            /* the session's watch table grows */
        n = snprintf(p, sizeof p, "/wide/a-rather-long-child-name-%03d%ctoken-%d%c", i, 0, i, 0);
        add(T_WATCH, p, (size_t)n);
    }
    add(T_WATCH, P("relative/path\0r\0"));
    add(T_WATCH, P("@releaseDomain\0s\0"));
    for (int i = 0; i < 40; i += 3) {
        n = snprintf(p, sizeof p, "/wide/a-rather-long-child-name-%03d%ctoken-%d%c", i, 0, i, 0);
        add(T_UNWATCH, p, (size_t)n);
    }
    nwatch = nreq - 1;
    for (int i = 0; i < 150; i++) {           /* the store's index doubles */
        n = snprintf(p, sizeof p, "/wide/a-rather-long-child-name-%03d%c", i, 0);
        add(T_MKDIR, p, (size_t)n);
    }
    add(T_DIRECTORY_PART, P("/wide\0" "0\0"));   /* the engine's scratch space grows */
    add(T_DIRECTORY_PART, P("/wide\0" "4000\0"));
    memset(big, 'v', sizeof big);
    memcpy(big, "/wide\0", 6);
    add(T_WRITE, big, sizeof big);            /* the value outgrows its block */
    add(T_SET_PERMS, P("/local\0b0\0r1\0r2\0r3\0r4\0r5\0"));
    add(T_SET_PERMS, P("/wide/a-rather-long-child-name-007\0n2\0"));   /* a new owner */
    add(T_WRITE, P("/watched/below\0x"));     /* a watch on /watched: an event */
    for (int i = 0; i < 50; i++) {            /* a subtree whose removal lists 4 KiB */
        n = snprintf(p, sizeof p, "/watched/t/%s-%03d%c",
                     "a-child-name-long-enough-that-fifty-removed-nodes-list-over-4096", i, 0);
        add(T_MKDIR, p, (size_t)n);
    }
    add(T_SET_PERMS, P("/watched/below\0n0\0r1\0"));
    add(T_RM, P("/watched\0"));                /* the event space grows */
    add(T_RM, P("/wide\0"));
    add(T_WRITE, P("/wide/again\0"));
    add(T_READ, P("/local/domain/1/device/vif/0/state\0"));
    add(T_DIRECTORY, P("/local/domain/1/device\0"));
    add(T_GET_PERMS, P("/local\0"));
}

/* The scenario's objects; NULL pieces when an allocation failed making them. */
struct world {
    xsd_store *store;
    xsd_trie *trie;
    xsd_wreg *wreg;             /* the firing pass's */
    xsd_engine *engine;
    xsd_conn *conn;
    int64_t wsession;           /* the conn's session in wreg */
};

/* The firing pass's watchers: dom0 on /watched and below the removed root, a
 * guest (dom1) on /watched/below. */
static int watch_all(struct world *w)
{
    int64_t s0, s1, s2;
    uint64_t order;

    w->wreg = xsd_wreg_new(w->trie, w->store);
    if (!w->wreg)
        return 0;
    s0 = xsd_wreg_session_new(w->wreg);
    s1 = xsd_wreg_session_new(w->wreg);
    if (s0 < 0 || s1 < 0 || xsd_wreg_session_set(w->wreg, (uint32_t)s0, 0, -1, 1) ||
        xsd_wreg_session_set(w->wreg, (uint32_t)s1, 1, -1, 0))
        return 0;
    if (xsd_wreg_add(w->wreg, (uint32_t)s0, "/watched", 8, "a", 1, 0, &order) ||
        xsd_wreg_add(w->wreg, (uint32_t)s1, "/watched/below", 14, "b", 1, 0, &order) ||
        xsd_wreg_add(w->wreg, (uint32_t)s0, BELOW_WATCH, sizeof BELOW_WATCH - 1, "c", 1, 0,
                     &order))
        return 0;
    s2 = xsd_wreg_session_new(w->wreg);      /* the conn's: its WATCH and UNWATCH */
    if (s2 < 0 || xsd_wreg_session_set(w->wreg, (uint32_t)s2, 0, -1, 1))
        return 0;
    w->wsession = s2;
    return 1;
}

static int make(struct world *w)
{
    memset(w, 0, sizeof *w);
    w->store = xsd_store_new();
    w->trie = xsd_trie_new();
    if (!w->store || !w->trie)
        return 0;
    if (firing ? !watch_all(w) : xsd_trie_add(w->trie, "/watched", 8, 1) != 0)
        return 0;
    w->engine = xsd_engine_new(w->store, w->trie);
    if (!w->engine || xsd_engine_domain_known(w->engine, 2, 1))
        return 0;
    if (firing)
        xsd_engine_watches(w->engine, w->wreg);
    w->conn = xsd_conn_new(w->engine);
    if (!w->conn)
        return 0;
    xsd_conn_configure(w->conn, 0, -1, 1, 0, 0);
    if (firing)
        xsd_conn_watches(w->conn, w->wsession, 0, 1);
    return 1;
}

static void unmake(struct world *w)
{
    xsd_conn_free(w->conn);
    xsd_engine_free(w->engine);
    xsd_wreg_free(w->wreg);
    xsd_trie_free(w->trie);
    xsd_store_free(w->store);
}

/* Run request i; its reply into out (length *len), or PYTHON. */
static int run_req(struct world *w, size_t i, size_t *len)
{
    struct xsd_run r;

    xsd_engine_run(w->engine, w->conn, req[i].buf, req[i].len, out, sizeof out,
                   XSD_RUN_MUTATE, &r);
    *len = r.out_len;
    CHECK(r.stop == XSD_RUN_DONE || r.stop == XSD_RUN_PYTHON ||
          (!firing && r.stop == XSD_RUN_EVENTS));
    CHECK_EQ(r.consumed, r.stop == XSD_RUN_PYTHON ? 0 : req[i].len);
    event = firing ? r.deliveries : r.event;
    event_len = firing ? r.deliveries_len : r.event_len;
    if (firing)
        CHECK(r.event == NULL && (r.stop != XSD_RUN_PYTHON || event == NULL) &&
              (r.stop != XSD_RUN_PYTHON || r.watch_log_len == 0));
    else
        CHECK_EQ(r.stop == XSD_RUN_EVENTS, event != NULL);
    return r.stop == XSD_RUN_EVENTS ? XSD_RUN_DONE : r.stop;
}

static int same(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void golden(void)
{
    struct world w;
    size_t python = 0;

    hooks_fail_after(-1, 0);
    if (!make(&w))
        abort();
    initial_dump = store_dump(w.store, &initial_dump_len);
    for (size_t i = 0; i < nreq; i++) {
        size_t len;
        if (run_req(&w, i, &len) == XSD_RUN_PYTHON) {
            python++;
            golden_reply[i] = NULL;
        } else {
            golden_reply[i] = malloc(len);
            if (!golden_reply[i])
                abort();
            memcpy(golden_reply[i], out, len);
        }
        golden_event[i] = NULL;
        golden_event_len[i] = event_len;
        if (event) {
            golden_event[i] = malloc(event_len);
            if (!golden_event[i])
                abort();
            memcpy(golden_event[i], event, event_len);
        }
        golden_reply_len[i] = len;
        golden_dump[i] = store_dump(w.store, &golden_dump_len[i]);
        CHECK_EQ(xsd_store_check(w.store), 0);
    }
    CHECK_EQ(python, firing ? 0 : nwatch);  /* watched changes too are answered */
    if (firing)     /* RM /watched: the root to dom0, the node below to both */
        CHECK(golden_event != NULL && golden_event[nreq - 6] != NULL);
    else
        CHECK(golden_event_len[nreq - 6] > 4096);  /* RM /watched: the event space grew */
    unmake(&w);
    CHECK_EQ(hooks_live_blocks(), 0);
}

/* The store before request i of the golden run. */
static const char *golden_before(size_t i, size_t *len)
{
    *len = i ? golden_dump_len[i - 1] : initial_dump_len;
    return i ? golden_dump[i - 1] : initial_dump;
}

/* Dumps are taken only where the state can differ from the golden run's
 * (after a sticky failure), so the sweep stays quick under ASan. */
static int run_once(long n, int sticky)
{
    struct world w;
    char *cur = NULL, *after;
    size_t cur_len = 0, after_len, want_len;
    int injected;

    hooks_fail_after(n, sticky);
    if (!make(&w)) {
        CHECK(hooks_failed());
        unmake(&w);
        CHECK_EQ(hooks_live_blocks(), 0);
        return 1;
    }
    for (size_t i = 0; i < nreq; i++) {
        int failed_before = hooks_failed();
        size_t len;
        int stop;

        if (sticky && failed_before && !cur)
            cur = store_dump(w.store, &cur_len);
        stop = run_req(&w, i, &len);
        if (stop == XSD_RUN_PYTHON) {
            const char *want = cur ? cur : golden_before(i, &want_len);
            if (cur)
                want_len = cur_len;
            after = store_dump(w.store, &after_len);
            CHECK(same(want, want_len, after, after_len));          /* nothing changed */
            free(after);
            if (golden_reply[i] && !sticky) {
                CHECK(hooks_failed() && !failed_before);           /* failed in this one */
                CHECK_EQ(xsd_store_check(w.store), 0);
                stop = run_req(&w, i, &len);                        /* the failure is spent */
            }
        } else {
            free(cur);
            cur = NULL;
        }
        if (!sticky || !hooks_failed()) {
            CHECK_EQ(stop == XSD_RUN_DONE, golden_reply[i] != NULL);
            if (golden_reply[i]) {
                CHECK(same(out, len, golden_reply[i], golden_reply_len[i]));
                CHECK(same(event, event_len, golden_event[i], golden_event_len[i]));
            }
        }
    }
    free(cur);
    if (!sticky) {
        after = store_dump(w.store, &after_len);
        CHECK(same(after, after_len, golden_dump[nreq - 1], golden_dump_len[nreq - 1]));
        free(after);
    }
    CHECK_EQ(xsd_store_check(w.store), 0);
    injected = hooks_failed();
    unmake(&w);
    CHECK_EQ(hooks_live_blocks(), 0);
    return injected;
}

int main(void)
{
    build_scenario();
    for (firing = 0; firing < 2; firing++) {
        golden();
        run_alloc_fail_sweeps();
        for (size_t i = 0; i < nreq; i++) {
            free(golden_reply[i]);
            free(golden_event[i]);
            free(golden_dump[i]);
        }
        free(initial_dump);
    }
    return check_report();
}
