/*
 * test_engine_txn_alloc_fail.c: TRANSACTION_START and TRANSACTION_END in the
 * engine (engine.h, XSD_RUN_TXN): how they answer, and every allocation they
 * reach checked.
 *
 * engine.c, store.c, trie.c, txn.c and watchreg.c are built with
 * -DXSD_ALLOC_HOOKS (alloc.h). The caller's side of XSD_RUN_TXN is played
 * here as fastpath.py plays it: a started transaction's overlay is owned by
 * the test (freed when its END is answered or at the end), the conn keeps
 * the table. The scenario: a watcher on /t (dom0) and one on /t/b (dom1,
 * which may not read below it: XSA-115 filters), transactions started,
 * written in (creations with missing ancestors), aborted, committed (their
 * CHANGE events fired through the registry ahead of END's reply), an empty
 * one committed, then reads of what they made; a removal committed (a watch
 * below its root, the root made again) and a conflicting commit (EAGAIN,
 * XSD_TXN_CONFLICT). A golden run answers every
 * request in C; then for every N the first N allocations succeed and the
 * next fails:
 *   - once: a request may come back PYTHON only when the failure was
 *     injected in it, the store as before it (it is then run again: the
 *     failure is spent; a request in a transaction so hit may have doomed it,
 *     from there on the run may differ); a commit hit while applying answers EIO
 *     (XSD_TXN_FAILED, from there on the run may differ from the golden
 *     one), a commit whose firing was hit delivers a prefix of the golden
 *     deliveries (Python logs such a failure); every other reply and
 *     delivery equals the golden run's;
 *   - sticky: every request is answered, PYTHON unchanged, or EIO at END.
 * xsd_store_check must pass after each request, and nothing may be left
 * allocated. Before the sweep, direct checks: the id wrap (XSA-420), a run
 * of ids in use past XSD_TXN_PROBES, the transactions quota, unknown quotas,
 * END's payloads, a conflict and a doomed commit (EAGAIN), a removal
 * committed, START inside a transaction, no registry.
 */
#define _GNU_SOURCE         /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALLOC_FAIL_MIN_SITES 30
#include "alloc_fail_harness.h"
#include "engine.h"
#include "watchreg.h"
#include "engine_packets.h"
#include "store_dump.h"

enum { T_TRANSACTION_START = 6, T_TRANSACTION_END = 7 };

#define MAX_REQ 32
#define MAX_TXN 128

static struct stream req[MAX_REQ];
static size_t nreq;
static char *golden_reply[MAX_REQ];
static size_t golden_reply_len[MAX_REQ];
static char *golden_deliv[MAX_REQ];
static size_t golden_deliv_len[MAX_REQ];
static char *golden_dump[MAX_REQ];
static size_t golden_dump_len[MAX_REQ];
static char *initial_dump;
static size_t initial_dump_len;
static char out[2 * XSD_REPLY_MAX];
static long failed_commits, short_firings;     /* what the sweep reached */

struct world {
    xsd_store *store;
    xsd_trie *trie;
    xsd_wreg *wreg;
    xsd_engine *engine;
    xsd_conn *conn;
    uint32_t ids[MAX_TXN];      /* the transactions the caller owns (fastpath's side) */
    xsd_txn *txns[MAX_TXN];
    size_t ntxn;
};

/* The last run's, for the caller to compare. */
struct result {
    int stop;
    size_t len;                 /* reply bytes in out */
    const char *deliv;
    size_t deliv_len;
    int kind;                   /* XSD_TXN_* or 0 */
    size_t consumed;
};

static void add(uint32_t type, uint32_t tx_id, const char *payload, size_t len)
{
    put_packet(&req[nreq], type, (uint32_t)nreq + 1, tx_id, payload, len);
    nreq++;
}

static void build_scenario(void)
{
    add(T_WRITE, 0, P("/t/base\0" "x"));
    add(T_TRANSACTION_START, 0, P("\0"));                   /* id 1 */
    add(T_WRITE, 1, P("/t/a\0" "1"));
    add(T_WRITE, 1, P("/t/b/c/d\0" "deep"));                /* three nodes made */
    add(T_TRANSACTION_START, 0, P("\0"));                   /* id 2 */
    add(T_READ, 2, P("/t/base\0"));
    add(T_WRITE, 2, P("/t/x\0" "2"));
    add(T_TRANSACTION_END, 2, P("F\0"));                    /* aborted */
    add(T_SET_PERMS, 1, P("/t/a\0n0\0r1\0"));               /* a CHANGE with old perms */
    add(T_TRANSACTION_END, 1, P("T\0"));                    /* committed: events fire */
    add(T_TRANSACTION_START, 0, P(""));                     /* id 3 */
    add(T_TRANSACTION_END, 3, P("T"));                      /* empty, no NUL */
    add(T_READ, 0, P("/t/b/c/d\0"));
    add(T_DIRECTORY, 0, P("/t\0"));
    add(T_TRANSACTION_START, 0, P("\0"));                   /* id 4 */
    add(T_READ, 4, P("/t/b/c/d\0"));
    add(T_RM, 4, P("/t/b\0"));                              /* a removal, watched below */
    add(T_WRITE, 4, P("/t/b/new\0" "again"));               /* its root made again */
    add(T_TRANSACTION_END, 4, P("T\0"));                    /* committed: REMOVE fires */
    add(T_TRANSACTION_START, 0, P("\0"));                   /* id 5 */
    add(T_READ, 5, P("/t/a\0"));
    add(T_WRITE, 0, P("/t/a\0" "moved"));                   /* outside: a conflict */
    add(T_RM, 5, P("/t/base\0"));
    add(T_TRANSACTION_END, 5, P("T\0"));                    /* EAGAIN, nothing changed */
    add(T_READ, 0, P("/t/x\0"));                            /* never made: PYTHON */
}

static int make(struct world *w)
{
    int64_t s0, s1;
    uint64_t order;

    memset(w, 0, sizeof *w);
    w->store = xsd_store_new();
    w->trie = xsd_trie_new();
    if (!w->store || !w->trie)
        return 0;
    w->wreg = xsd_wreg_new(w->trie, w->store);
    if (!w->wreg)
        return 0;
    s0 = xsd_wreg_session_new(w->wreg);
    s1 = xsd_wreg_session_new(w->wreg);
    if (s0 < 0 || s1 < 0 || xsd_wreg_session_set(w->wreg, (uint32_t)s0, 0, -1, 1) ||
        xsd_wreg_session_set(w->wreg, (uint32_t)s1, 1, -1, 0) ||
        xsd_wreg_add(w->wreg, (uint32_t)s0, "/t", 2, "a", 1, 0, &order) ||
        xsd_wreg_add(w->wreg, (uint32_t)s1, "/t/b", 4, "b", 1, 0, &order) ||
        xsd_wreg_add(w->wreg, (uint32_t)s0, "/t/b/c/d", 8, "c", 1, 0, &order))
        return 0;
    w->engine = xsd_engine_new(w->store, w->trie);
    if (!w->engine)
        return 0;
    xsd_engine_watches(w->engine, w->wreg);
    w->conn = xsd_conn_new(w->engine);
    if (!w->conn)
        return 0;
    xsd_conn_configure(w->conn, 0, -1, 1, 0, 0);
    return 1;
}

static void forget(struct world *w, uint32_t id)
{
    for (size_t i = 0; i < w->ntxn; i++)
        if (w->ids[i] == id) {
            xsd_txn_free(w->txns[i]);
            w->ids[i] = w->ids[--w->ntxn];
            w->txns[i] = w->txns[w->ntxn];
            return;
        }
    CHECK(0 && "an END of a transaction the caller does not own");
}

static void unmake(struct world *w)
{
    while (w->ntxn)
        forget(w, w->ids[w->ntxn - 1]);     /* conn dropped with it: it only borrows */
    xsd_conn_free(w->conn);
    xsd_engine_free(w->engine);
    xsd_wreg_free(w->wreg);
    xsd_trie_free(w->trie);
    xsd_store_free(w->store);
}

/* One run over in[0..len) for w's conn, the caller's side of XSD_RUN_TXN done. */
static struct result run_bytes(struct world *w, const char *in, size_t len)
{
    struct xsd_run r;
    struct result res;

    xsd_engine_run(w->engine, w->conn, in, len, out, sizeof out, XSD_RUN_MUTATE, &r);
    res.stop = r.stop;
    res.len = r.out_len;
    res.deliv = r.deliveries;
    res.deliv_len = r.deliveries_len;
    res.kind = r.txn_kind;
    res.consumed = r.consumed;
    CHECK(r.stop == XSD_RUN_DONE || r.stop == XSD_RUN_PYTHON || r.stop == XSD_RUN_TXN);
    CHECK_EQ(r.stop == XSD_RUN_TXN, r.txn_kind != 0);
    CHECK_EQ(r.txn_kind == XSD_TXN_STARTED, r.txn != NULL);
    if (r.txn_kind == XSD_TXN_STARTED) {
        if (w->ntxn < MAX_TXN) {
            w->ids[w->ntxn] = r.txn_id;
            w->txns[w->ntxn++] = r.txn;
        } else {
            CHECK(0 && "too many transactions for the test");
        }
    } else if (r.txn_kind) {
        forget(w, r.txn_id);
    }
    if (r.txn_kind == XSD_TXN_FAILED)
        CHECK(r.out_len == XSD_HEADER_SIZE + 4 && field(out, 0) == T_ERROR &&
              memcmp(out + XSD_HEADER_SIZE, "EIO", 4) == 0);
    if (r.txn_kind == XSD_TXN_CONFLICT)
        CHECK(r.out_len == XSD_HEADER_SIZE + 7 && field(out, 0) == T_ERROR &&
              memcmp(out + XSD_HEADER_SIZE, "EAGAIN", 7) == 0 && r.deliveries_len == 0);
    return res;
}

static struct result run_req(struct world *w, size_t i)
{
    struct result res = run_bytes(w, req[i].buf, req[i].len);

    CHECK_EQ(res.consumed, res.stop == XSD_RUN_PYTHON ? 0 : req[i].len);
    return res;
}

static int same(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void *copy(const void *p, size_t n)
{
    void *c = malloc(n ? n : 1);

    if (!c)
        abort();
    if (n)
        memcpy(c, p, n);
    return c;
}

static void golden(void)
{
    struct world w;

    hooks_fail_after(-1, 0);
    if (!make(&w))
        abort();
    initial_dump = store_dump(w.store, &initial_dump_len);
    for (size_t i = 0; i < nreq; i++) {
        struct result res = run_req(&w, i);

        golden_reply[i] = res.stop == XSD_RUN_PYTHON ? NULL : copy(out, res.len);
        golden_reply_len[i] = res.len;
        golden_deliv[i] = copy(res.deliv, res.deliv_len);
        golden_deliv_len[i] = res.deliv_len;
        golden_dump[i] = store_dump(w.store, &golden_dump_len[i]);
        CHECK_EQ(xsd_store_check(w.store), 0);
        CHECK_EQ(res.stop == XSD_RUN_PYTHON, i == nreq - 1);   /* only the last: ENOENT */
    }
    /* START's replies: the ids from 1 on. */
    CHECK(same(golden_reply[1] + XSD_HEADER_SIZE, golden_reply_len[1] - XSD_HEADER_SIZE,
               "1", 2));
    CHECK(same(golden_reply[10] + XSD_HEADER_SIZE, golden_reply_len[10] - XSD_HEADER_SIZE,
               "3", 2));
    /* The commit fired: /t/a (perms changed: both watchers? dom1 may read it now),
     * /t/b/c/d's CHANGE to dom0; the aborted /t/x nowhere. */
    CHECK(golden_deliv_len[9] > 0);
    CHECK(golden_deliv_len[7] == 0 && golden_deliv_len[11] == 0);
    CHECK(memmem(golden_deliv[9], golden_deliv_len[9], "/t/b/c/d", 8) != NULL);
    CHECK(memmem(golden_deliv[9], golden_deliv_len[9], "/t/x", 4) == NULL);
    CHECK(same(golden_reply[12] + XSD_HEADER_SIZE, golden_reply_len[12] - XSD_HEADER_SIZE,
               "deep", 4));
    /* The removal committed in C: dom0's watch below the root told of its node (from
     * the removed-perms map), the watches on and above it of the root; then the
     * conflict: EAGAIN, nothing fired, the store as before. */
    CHECK(memmem(golden_deliv[18], golden_deliv_len[18], "/t/b/c/d\0c", 10) != NULL);
    CHECK(field(golden_reply[18], 0) == T_TRANSACTION_END);
    CHECK(field(golden_reply[23], 0) == T_ERROR && golden_deliv_len[23] == 0);
    CHECK(same(golden_dump[23], golden_dump_len[23], golden_dump[22], golden_dump_len[22]));
    unmake(&w);
    CHECK_EQ(hooks_live_blocks(), 0);
}

static const char *golden_before(size_t i, size_t *len)
{
    *len = i ? golden_dump_len[i - 1] : initial_dump_len;
    return i ? golden_dump[i - 1] : initial_dump;
}

static int run_once(long n, int sticky)
{
    struct world w;
    int diverged = 0, injected;

    hooks_fail_after(n, sticky);
    if (!make(&w)) {
        CHECK(hooks_failed());
        unmake(&w);
        CHECK_EQ(hooks_live_blocks(), 0);
        return 1;
    }
    for (size_t i = 0; i < nreq; i++) {
        int failed_before = hooks_failed();
        size_t before_len, after_len;
        char *before = store_dump(w.store, &before_len), *after;
        struct result res = run_req(&w, i);

        CHECK_EQ(xsd_store_check(w.store), 0);
        if (res.stop == XSD_RUN_PYTHON) {
            after = store_dump(w.store, &after_len);
            CHECK(same(before, before_len, after, after_len));     /* nothing changed */
            free(after);
            if (golden_reply[i] && !sticky && !diverged) {
                CHECK(hooks_failed() && !failed_before);
                res = run_req(&w, i);                               /* the failure is spent */
                if (field(req[i].buf, 2) != 0)
                    diverged = 1;   /* its transaction may be doomed (txn.h): EAGAIN later */
            }
        }
        free(before);
        if (res.kind == XSD_TXN_FAILED) {
            CHECK(hooks_failed());
            failed_commits++;
            diverged = 1;       /* part of the commit may be applied */
            continue;
        }
        if (sticky ? hooks_failed() : diverged)
            continue;
        CHECK_EQ(res.stop == XSD_RUN_PYTHON, golden_reply[i] == NULL);
        if (!golden_reply[i])
            continue;
        CHECK(same(out, res.len, golden_reply[i], golden_reply_len[i]));
        if (hooks_failed() && !failed_before) {     /* hit in this one: firing may stop */
            CHECK(res.deliv_len <= golden_deliv_len[i] &&
                  same(res.deliv, res.deliv_len, golden_deliv[i], res.deliv_len));
            short_firings += res.deliv_len < golden_deliv_len[i];
        }
        else
            CHECK(same(res.deliv, res.deliv_len, golden_deliv[i], golden_deliv_len[i]));
        {
            size_t want_len;
            const char *want = golden_before(i + 1, &want_len);

            after = store_dump(w.store, &after_len);
            CHECK(same(after, after_len, want, want_len));
            free(after);
        }
    }
    injected = hooks_failed();
    unmake(&w);
    CHECK_EQ(hooks_live_blocks(), 0);
    return injected;
}

/* -- direct checks (no failures injected) ------------------------------------- */

static struct result one(struct world *w, uint32_t type, uint32_t tx_id, const char *payload,
                         size_t len)
{
    static struct stream s;

    s.len = 0;
    put_packet(&s, type, 7, tx_id, payload, len);
    return run_bytes(w, s.buf, s.len);
}

static uint32_t started_id(struct world *w)
{
    struct result res = one(w, T_TRANSACTION_START, 0, P("\0"));
    char id[16];

    if (res.kind != XSD_TXN_STARTED || res.len <= XSD_HEADER_SIZE ||
        res.len - XSD_HEADER_SIZE > sizeof id || out[res.len - 1] != '\0')
        return 0;
    memcpy(id, out + XSD_HEADER_SIZE, res.len - XSD_HEADER_SIZE);
    return (uint32_t)strtoul(id, NULL, 10);
}

static void test_start_and_end(void)
{
    struct world w;
    struct result res;
    uint32_t a, b;

    hooks_fail_after(-1, 0);
    if (!make(&w))
        abort();
    /* Ids wrap through uint32, skipping 0 and ids in use (XSA-420). */
    a = started_id(&w);
    CHECK_EQ(a, 1);
    xsd_conn_txn_next(w.conn, 0xFFFFFFFFu);
    CHECK_EQ(started_id(&w), 0xFFFFFFFFu);
    CHECK_EQ(started_id(&w), 2);                    /* 0 skipped, 1 in use */
    /* START inside a transaction, END of an unknown one, END's bad payloads: PYTHON. */
    CHECK_EQ(one(&w, T_TRANSACTION_START, a, P("\0")).stop, XSD_RUN_PYTHON);
    CHECK_EQ(one(&w, T_TRANSACTION_END, 99, P("T\0")).stop, XSD_RUN_PYTHON);
    CHECK_EQ(one(&w, T_TRANSACTION_END, 0, P("T\0")).stop, XSD_RUN_PYTHON);
    CHECK_EQ(one(&w, T_TRANSACTION_END, a, P("X\0")).stop, XSD_RUN_PYTHON);
    CHECK_EQ(one(&w, T_TRANSACTION_END, a, P("TT\0")).stop, XSD_RUN_PYTHON);
    CHECK_EQ(one(&w, T_TRANSACTION_END, a, P("")).stop, XSD_RUN_PYTHON);
    CHECK_EQ(one(&w, T_TRANSACTION_END, a, P("T\0\0")).stop, XSD_RUN_PYTHON);
    /* A conflict: EAGAIN here; nothing changes, the transaction is gone (counted). */
    CHECK_EQ(one(&w, T_READ, a, P("/t\0")).stop, XSD_RUN_PYTHON);  /* absent: ENOENT */
    CHECK_EQ(one(&w, T_WRITE, 0, P("/t\0" "v")).stop, XSD_RUN_DONE);
    res = one(&w, T_TRANSACTION_END, a, P("T\0"));
    CHECK(res.kind == XSD_TXN_CONFLICT && res.stop == XSD_RUN_TXN);
    CHECK_EQ(xsd_conn_conflicts(w.conn), 1);
    CHECK_EQ(xsd_conn_requests(w.conn, T_TRANSACTION_END), 0);     /* an error, not a request */
    CHECK_EQ(one(&w, T_TRANSACTION_END, a, P("F\0")).stop, XSD_RUN_PYTHON);  /* gone */
    /* A doomed one (out of memory, a live update): EAGAIN as well. */
    b = started_id(&w);
    CHECK_EQ(b, 3);
    xsd_txn_doom(w.txns[w.ntxn - 1]);
    CHECK_EQ(one(&w, T_TRANSACTION_END, b, P("F\0")).kind, XSD_TXN_ENDED);  /* abort: OK */
    b = started_id(&w);
    xsd_txn_doom(w.txns[w.ntxn - 1]);
    CHECK_EQ(one(&w, T_TRANSACTION_END, b, P("T")).kind, XSD_TXN_CONFLICT);
    /* A removal waiting in a commit: committed here, the removal fired. */
    b = started_id(&w);
    CHECK_EQ(one(&w, T_RM, b, P("/t\0")).stop, XSD_RUN_DONE);
    res = one(&w, T_TRANSACTION_END, b, P("T\0"));
    CHECK(res.kind == XSD_TXN_ENDED && res.len == XSD_HEADER_SIZE + 3 && res.deliv_len > 0);
    /* A long run of ids in use: PYTHON past XSD_TXN_PROBES. */
    for (uint32_t i = 0; i < XSD_TXN_PROBES + 2; i++)
        CHECK(started_id(&w) != 0);
    xsd_conn_txn_next(w.conn, 6);             /* 6 to 71 in use */
    CHECK_EQ(one(&w, T_TRANSACTION_START, 0, P("\0")).stop, XSD_RUN_PYTHON);
    unmake(&w);

    /* An unprivileged caller: PYTHON until its quotas are known, then within them. */
    if (!make(&w))
        abort();
    xsd_conn_configure(w.conn, 1, -1, 0, 0, 0);
    CHECK_EQ(one(&w, T_TRANSACTION_START, 0, P("\0")).stop, XSD_RUN_PYTHON);
    xsd_conn_txn_quotas(w.conn, 2, 5);
    CHECK_EQ(started_id(&w), 1);
    CHECK_EQ(started_id(&w), 2);
    CHECK_EQ(one(&w, T_TRANSACTION_START, 0, P("\0")).stop, XSD_RUN_PYTHON);  /* ENOSPC */
    CHECK_EQ(one(&w, T_TRANSACTION_END, 2, P("T")).kind, XSD_TXN_ENDED);
    CHECK_EQ(started_id(&w), 3);
    unmake(&w);

    /* Without the C registry a commit is Python's (it fires); an abort is not. */
    if (!make(&w))
        abort();
    xsd_engine_watches(w.engine, NULL);
    a = started_id(&w);
    CHECK_EQ(one(&w, T_TRANSACTION_END, a, P("T\0")).stop, XSD_RUN_PYTHON);
    CHECK_EQ(one(&w, T_TRANSACTION_END, a, P("F\0")).kind, XSD_TXN_ENDED);
    unmake(&w);
    CHECK_EQ(hooks_live_blocks(), 0);
}

int main(void)
{
    RUN(test_start_and_end);
    build_scenario();
    golden();
    run_alloc_fail_sweeps();
    fprintf(stderr, "  %ld commits failed applying, %ld firings cut short\n", failed_commits,
            short_firings);
    CHECK(failed_commits > 0 && short_firings > 0);    /* the sweep reached both */
    for (size_t i = 0; i < nreq; i++) {
        free(golden_reply[i]);
        free(golden_deliv[i]);
        free(golden_dump[i]);
    }
    free(initial_dump);
    return check_report();
}
