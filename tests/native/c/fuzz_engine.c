/*
 * fuzz_engine.c: libFuzzer target for engine.h. The input is a program of
 * byte batches delivered by several conns (privileged, guests, read-only)
 * to one engine over one store and a trie holding a few watches.
 *
 * Invariant: for any input, every run stops with a documented reason at a
 * packet boundary, never reads past its input or writes past its output;
 * each reply carries its request's type and req_id; a run that stops
 * PYTHON without answering anything changed nothing (the dump of
 * store_dump.h is the same before and after); xsd_store_check finds no
 * problem after any batch; after freeing, no allocation is left. Some
 * batches run with an allocation failure injected. A run that stops EVENTS
 * has answered at least the changing packet, whose reply starts at
 * reply_at, and describes its event in engine.h's format exactly: a CHANGE
 * with path, a permission list and an old one; a REMOVE whose records end
 * with the root.
 * When the input's first byte is odd the engine fires through a C watch
 * registry instead (xsd_engine_watches; watchers dom0, a guest, and one
 * below a removable root): no run stops EVENTS, and a run's deliveries are
 * groups laid out as engine.h says, each at the start of one of the run's
 * replies, in order (a WATCH's after its reply: XSD_DELIVERY_AFTER). There
 * conns 0 and 1 answer WATCH and UNWATCH in C too (xsd_conn_watches; conn
 * 1 within a watches quota of 3 and its memory quota, its watches journaled:
 * each run's watch log is well formed, and its entries add up to the change
 * in conn 1's watch count; no other conn logs), and a run that stops
 * PYTHON without answering anything registered or dropped no watch.
 * Conns 0 and 1 may also write a WATCH's initial event among the replies
 * (xsd_conn_inline_events; conn 0's room from the first byte's bits 1-3):
 * every such frame follows a WATCH's reply, its payload that WATCH's own
 * (NUL-terminated: the path as given, the token), and a run that wrote some
 * answered its whole input, fired nothing else and kept within its room.
 *
 * Program format, after that first byte, one batch after another until the
 * input runs out:
 *   control byte: bits 0-1 conn, bit 2 without XSD_RUN_MUTATE,
 *                 bit 3 inject an allocation failure after bits 4-6 successes,
 *                 bit 7 raw bytes (length byte, then the bytes) instead of
 *                 packets
 *   packets:      count byte (1-4), each: type byte (picks from the request
 *                 types, or raw), tx byte, path tokens, value/perms byte
 * Transactions (txn.h): tx byte 0xf1 on conns 0 and 1 and 0xf2 on conn 0
 * name transactions registered there (conn 1's limited to 4 nodes); tx bytes
 * 0xf3-0xf6 are ids 1-4, those TRANSACTION_START gives in the engine (conn 1
 * within a transactions quota of 3; conn 2's quotas unknown: PYTHON); the
 * other tx ids are unknown to the engine (PYTHON). TRANSACTION_END's payload
 * is "T", "F" with or without NUL, or junk. A run stopped XSD_RUN_TXN reports
 * a started transaction with its overlay (kept here as fastpath.py keeps it,
 * freed at its END) or an ended one (never again in the conn; a conflicting
 * commit's answered ERROR, as a failed one's). At the end
 * each fixed one not ended in the engine is committed (0, -EAGAIN or
 * -ENOMEM) and its events read; the store stays sound.
 * A conn keeps the bytes not yet consumed (a partial packet) for its next
 * batch, as a transport does; PYTHON skips the packet (Python's), BAD drops
 * the conn's bytes (the connection is closed).
 *
 * Built only with clang (-fsanitize=fuzzer); run by
 * tests/native/test_c_sanitizers.py for a bounded time.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_hooks.h"
#include "engine.h"
#include "engine_packets.h"
#include "fuzz_input.h"
#include "store_dump.h"
#include "watchreg.h"

#define CONNS 4

/* An initial event written after the reply to the WATCH request req (its
 * type checked by the caller): its payload is req's, NUL-terminated. */
static int inlined_ok(const char *ev, size_t room, const char *req)
{
    uint32_t n, rn;

    if (room < XSD_HEADER_SIZE)
        return 0;
    memcpy(&n, ev + 12, 4);
    memcpy(&rn, req + 12, 4);
    if (room - XSD_HEADER_SIZE < n || field(ev, 1) != 0 || field(ev, 2) != 0 || rn == 0)
        return 0;
    ev += XSD_HEADER_SIZE;
    req += XSD_HEADER_SIZE;
    if (req[rn - 1] != '\0')
        return n == rn + 1 && memcmp(ev, req, rn) == 0 && ev[rn] == '\0';
    return n == rn && memcmp(ev, req, rn) == 0;
}

struct pending {
    char buf[8192];
    size_t len;
};

static size_t read_path(struct input *in, char *k)
{
    static const char *const tokens[] = { "a", "b", "w", "local", "domain", "1", "x" };
    uint8_t b;
    size_t n = 0;

    if (!take(in, &b))
        return 0;
    if (b >= 0xf0)
        return take_raw(in, k, b & 0x0f);        /* bad paths too */
    if (b % 7 == 0) {
        k[n++] = '/';
        return n;
    }
    if (b & 0x40) {                              /* relative: no leading '/' */
        n = take_components(in, k, 0, b % 4 + 1, tokens, 7);
        if (n)
            memmove(k, k + 1, --n);
        return n;
    }
    return take_components(in, k, n, b % 5, tokens, 7);
}

/* One request into s from the input; 0 when the input ran out. */
static int read_packet(struct input *in, struct stream *s)
{
    static const uint32_t types[] = { T_READ, T_DIRECTORY, T_DIRECTORY_PART, T_GET_PERMS,
                                      T_WRITE, T_MKDIR, T_RM, T_SET_PERMS, T_WATCH,
                                      T_UNWATCH, T_WATCH,
                                      6 /* TRANSACTION_START */, 7 /* TRANSACTION_END */ };
    static const char *const ends[] = { "T", "F", "X", "TF" };
    static const char *const wtokens[] = { "t", "u", "", "v\0x", "tok" };
    static const char *const perms[] = { "n0", "r1", "b2", "w0\0r1", "n1", "r99999", "q" };
    char payload[256];
    size_t n, extra;
    uint8_t t, tx, v;
    uint32_t type;

    if (!take(in, &t) || !take(in, &tx))
        return 0;
    type = t < 0xf0 ? types[t % 11] : t;
    n = read_path(in, payload);
    if (!take(in, &v))
        return 0;
    payload[n++] = '\0';
    if (type == T_WRITE) {
        extra = v % 64;
        memset(payload + n, 'v', extra);
        n += extra;
    } else if (type == T_SET_PERMS) {
        const char *p = perms[v % 7];
        size_t plen = strlen(p) + 1 + (v % 7 == 3 ? 3 : 0);
        memcpy(payload + n, p, plen);
        n += plen;
    } else if (type == 7) {                     /* TRANSACTION_END: the path dropped */
        n = strlen(ends[v % 4]);
        memcpy(payload, ends[v % 4], n);
        if (v & 0x80)
            payload[n++] = '\0';
    } else if (type == T_DIRECTORY_PART) {
        n += (size_t)snprintf(payload + n, sizeof payload - n, "%u", (unsigned)v * 8) + 1;
    } else if ((type == T_WATCH || type == T_UNWATCH) && !(v & 0x40)) {
        const char *tok = wtokens[v % 5];        /* "v\0x": a third field */
        size_t tlen = strlen(tok) + (v % 5 == 3 ? 2 : 0);

        memcpy(payload + n, tok, tlen);
        n += tlen;
        if (!(v & 0x80))
            payload[n++] = '\0';                /* else the last field without its NUL */
    } else if (v & 0x80) {
        n--;                                     /* no NUL */
    }
    put_packet(s, type, t, tx < 0xf0 ? 0 : tx >= 0xf3 && tx <= 0xf6 ? tx - 0xf2u : tx,
               payload, n);
    return 1;
}

/* A permission list at ev[*at..len): entries "<kind><digits>\0" then one NUL;
 * *at moves past it. 0 if malformed. */
static int perm_list(const char *ev, size_t len, size_t *at)
{
    while (*at < len && ev[*at] != '\0') {
        const char *z = memchr(ev + *at, '\0', len - *at);
        if (!z || z - (ev + *at) < 2 || !strchr("nrwb", ev[*at]))
            return 0;
        *at = (size_t)(z - ev) + 1;
    }
    if (*at >= len)
        return 0;
    (*at)++;
    return 1;
}

/* Whether ev[0..len) is an event as engine.h describes it. */
static int event_ok(const char *ev, size_t len)
{
    const char *z;
    size_t at, root_len, rec = 0, rec_len = 0;

    if (!ev || len < 3)
        return 0;
    z = memchr(ev + 1, '\0', len - 1);
    if (!z || z == ev + 1 || ev[1] != '/')
        return 0;
    root_len = (size_t)(z - ev) - 1;
    at = root_len + 2;
    if (ev[0] == XSD_EVENT_CHANGE)         /* the perms (never empty), the old (maybe) */
        return at < len && ev[at] != '\0' && perm_list(ev, len, &at) &&
               perm_list(ev, len, &at) && at == len;
    if (ev[0] != XSD_EVENT_REMOVE)
        return 0;
    while (at < len) {                     /* records: "<path>\0<perms>\0" */
        z = memchr(ev + at, '\0', len - at);
        if (!z || ev[at] != '/')
            return 0;
        rec = at;
        rec_len = (size_t)(z - ev) - at;
        at = (size_t)(z - ev) + 1;
        if (!perm_list(ev, len, &at))
            return 0;
    }
    return rec_len == root_len && memcmp(ev + rec, ev + 1, root_len) == 0;
}

/* The deliveries of a run that answered replies starting at starts[0..n). */
static int deliveries_ok(const struct xsd_run *r, const size_t *starts, uint32_t n)
{
    size_t at = 0, k = 0;

    if ((r->deliveries == NULL) != (r->deliveries_len == 0))
        return 0;
    while (at < r->deliveries_len) {
        uint64_t reply_at;
        uint32_t plen, rlen;

        if (r->deliveries_len - at < XSD_DELIVERY_GROUP_HEADER)
            return 0;
        memcpy(&reply_at, r->deliveries + at, 8);
        memcpy(&plen, r->deliveries + at + 8, 4);
        memcpy(&rlen, r->deliveries + at + 12, 4);
        at += XSD_DELIVERY_GROUP_HEADER;
        if (rlen == 0 || r->deliveries_len - at < (size_t)plen + rlen || plen == 0 ||
            (r->deliveries[at] != '/' &&
             !(reply_at & XSD_DELIVERY_AFTER && r->deliveries[at] == '@')))
            return 0;
        reply_at &= ~XSD_DELIVERY_AFTER;
        while (k < n && starts[k] < reply_at)
            k++;                                 /* groups in order, each at a reply */
        if (k == n || starts[k] != reply_at)
            return 0;
        at += (size_t)plen + rlen;
    }
    return 1;
}

/* A run's watch log (engine.h): entries laid out whole, each a WATCH
 * (ADDED, its key "path NUL token") or an UNWATCH (REMOVED, relative 0), on
 * a logged conn only, adding up to its watch count going from before to
 * after. */
static int watch_log_ok(const struct xsd_run *r, int logs, size_t before, size_t after)
{
    size_t at = 0;
    int64_t net = 0;

    if ((r->watch_log == NULL) != (r->watch_log_len == 0) || (!logs && r->watch_log_len))
        return 0;
    while (at < r->watch_log_len) {
        uint32_t klen;
        const char *key;

        if (r->watch_log_len - at < XSD_WATCH_LOG_HEADER)
            return 0;
        memcpy(&klen, r->watch_log + at, 4);
        key = r->watch_log + at + XSD_WATCH_LOG_HEADER;
        if (r->watch_log_len - at - XSD_WATCH_LOG_HEADER < klen || klen < 2 ||
            memchr(key, '\0', klen) == NULL || key[0] == '\0')
            return 0;
        if (r->watch_log[at + 4] == XSD_WATCH_LOG_ADDED)
            net++;
        else if (r->watch_log[at + 4] == XSD_WATCH_LOG_REMOVED && r->watch_log[at + 5] == 0)
            net--;
        else
            return 0;
        if (r->watch_log[at + 5] != 0 && r->watch_log[at + 5] != 1)
            return 0;
        at += XSD_WATCH_LOG_HEADER + klen;
    }
    return !logs || (int64_t)after - (int64_t)before == net;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { data, size };
    static struct pending pend[CONNS];
    static struct stream batch;
    static char out[4 * XSD_REPLY_MAX];
    xsd_store *store;
    xsd_trie *trie;
    xsd_engine *engine;
    xsd_wreg *wreg = NULL;
    int64_t logged_session = -1;    /* conn 1's registry handle: its watches are logged */
    xsd_conn *conns[CONNS];
    xsd_txn *txns[3];
    int ended[3] = {0, 0, 0};               /* ended in the engine: not committed again */
    static struct { int conn; uint32_t id; xsd_txn *t; } started[32];  /* the engine's */
    size_t nstarted = 0;
    static size_t starts[4 * XSD_REPLY_MAX / XSD_HEADER_SIZE];
    uint8_t ctl, mode = 0;
    uint32_t inline_events[CONNS] = {0};
    size_t inline_bytes[CONNS] = {0};

    hooks_fail_after(-1, 0);
    store = xsd_store_new();
    trie = xsd_trie_new();
    engine = store && trie ? xsd_engine_new(store, trie) : NULL;
    if (!engine)
        abort();
    xsd_store_keep_listings(store, 1);  /* listings kept: check() compares them with walks */
    for (int i = 0; i < CONNS; i++) {
        conns[i] = xsd_conn_new(engine);
        if (!conns[i])
            abort();
        pend[i].len = 0;
    }
    xsd_conn_configure(conns[0], 0, -1, 1, 0, 2048);
    xsd_conn_configure(conns[1], 1, -1, 0, 0, 2048);
    xsd_conn_configure(conns[2], 2, 1, 0, 0, 64);
    xsd_conn_configure(conns[3], 0, -1, 1, 1, 0);
    {
        /* Guests' changes run in C too: one near tight quotas (its creations
         * stop at the nodes, memory and soft memory quotas), one unbound. */
        static const struct xsd_quotas tight = {
            .node_size = 32, .permissions = 3, .nodes = 12, .memory = 1500,
            .memory_soft = 1000, .watch_bytes = 100 };
        static const struct xsd_quotas none;
        xsd_conn_quotas(conns[1], &tight);
        xsd_conn_quotas(conns[2], &none);
        xsd_conn_txn_quotas(conns[1], 3, 4);
        xsd_conn_txn_quotas(conns[0], 0, 0);
    }
    xsd_engine_domain_known(engine, 1, 1);
    (void)take(&in, &mode);
    if (mode & 1) {
        uint64_t order;
        int64_t s0, s1;

        wreg = xsd_wreg_new(trie, store);
        s0 = wreg ? xsd_wreg_session_new(wreg) : -1;
        s1 = wreg ? xsd_wreg_session_new(wreg) : -1;
        if (s0 < 0 || s1 < 0 || xsd_wreg_session_set(wreg, (uint32_t)s0, 0, -1, 1) ||
            xsd_wreg_session_set(wreg, (uint32_t)s1, 1, -1, 0) ||
            xsd_wreg_add(wreg, (uint32_t)s0, "/w", 2, "t", 1, 0, &order) ||
            xsd_wreg_add(wreg, (uint32_t)s1, "/a/b/x", 6, "u", 1, 0, &order) ||
            xsd_wreg_add(wreg, (uint32_t)s1, "/local/domain/1/a", 17, "v", 1, 1, &order) ||
            xsd_wreg_add(wreg, (uint32_t)s0, "/a/b/x/w", 8, "t", 1, 0, &order))
            abort();
        xsd_engine_watches(engine, wreg);
        xsd_conn_watches(conns[0], s0, 0, 0);
        xsd_conn_watches(conns[1], s1, 3, 1);
        inline_events[0] = (mode >> 1) & 3;
        inline_bytes[0] = mode & 8 ? 64 : sizeof out;
        inline_events[1] = 4;
        inline_bytes[1] = sizeof out;
        for (int i = 0; i < 2; i++)
            xsd_conn_inline_events(conns[i], inline_events[i], inline_bytes[i]);
        logged_session = s1;
    } else if (xsd_trie_add(trie, "/w", 2, 1) || xsd_trie_add(trie, "/a/b/x", 6, 2)) {
        abort();
    }
    for (int i = 0; i < 3; i++) {
        txns[i] = xsd_txn_new(store);
        if (!txns[i])
            abort();
    }
    xsd_txn_set_limit(txns[1], 4);
    if (xsd_conn_txn_add(conns[0], 0xf1, txns[0]) || xsd_conn_txn_add(conns[1], 0xf1, txns[1])
        || xsd_conn_txn_add(conns[0], 0xf2, txns[2]))
        abort();

    while (take(&in, &ctl)) {
        int ci = ctl & 3;
        struct pending *p = &pend[ci];
        size_t pos = 0;

        batch.len = 0;
        if (ctl & 0x80) {
            uint8_t n;
            if (!take(&in, &n))
                break;
            batch.len = take_raw(&in, batch.buf, n);
        } else {
            uint8_t count;
            if (!take(&in, &count))
                break;
            for (int i = 0; i <= count % 4; i++)
                if (!read_packet(&in, &batch))
                    break;
        }
        if (p->len + batch.len > sizeof p->buf)
            p->len = 0;                          /* a connection that never completes */
        memcpy(p->buf + p->len, batch.buf, batch.len);
        p->len += batch.len;

        if (ctl & 8)
            hooks_fail_after((ctl >> 4) & 7, 0);
        for (;;) {
            struct xsd_run r;
            size_t before_len, after_len, at = 0, last_at = 0;
            uint32_t inlined = 0;
            char *before = store_dump(store, &before_len), *after;
            size_t watches = wreg ? xsd_wreg_count(wreg) : 0;
            size_t logged_before = logged_session >= 0 ?
                xsd_wreg_session_count(wreg, (uint32_t)logged_session) : 0;

            xsd_engine_run(engine, conns[ci], p->buf + pos, p->len - pos, out, sizeof out,
                           ctl & 4 ? 0 : XSD_RUN_MUTATE, &r);
            if (r.consumed > p->len - pos || r.out_len > sizeof out)
                abort();
            for (uint32_t k = 0; k < r.handled; k++) {
                if ((field(out + at, 0) != field(p->buf + pos, 0) &&
                     !((r.txn_kind == XSD_TXN_FAILED || r.txn_kind == XSD_TXN_CONFLICT) &&
                       k + 1 == r.handled &&
                       field(out + at, 0) == T_ERROR)) ||       /* END's EIO or EAGAIN */
                    field(out + at, 1) != field(p->buf + pos, 1))
                    abort();
                last_at = at;
                starts[k] = at;
                at += XSD_HEADER_SIZE + field(out + at, 3);
                if (field(out + last_at, 0) == T_WATCH && at < r.out_len &&
                    field(out + at, 0) == T_WATCH_EVENT) {
                    if (!inlined_ok(out + at, r.out_len - at, p->buf + pos))
                        abort();
                    at += XSD_HEADER_SIZE + field(out + at, 3);
                    inlined++;
                }
                pos += XSD_HEADER_SIZE + field(p->buf + pos, 3);
            }
            if (inlined != r.events_inlined ||
                (inlined && (ci > 1 || r.deliveries_len || r.stop != XSD_RUN_DONE ||
                             pos != p->len || inlined > inline_events[ci] ||
                             r.out_len > inline_bytes[ci])))
                abort();
            if (at != r.out_len || !deliveries_ok(&r, starts, r.handled) ||
                (wreg && r.stop == XSD_RUN_EVENTS))
                abort();
            if (!watch_log_ok(&r, ci == 1 && logged_session >= 0, logged_before,
                              logged_session >= 0 ?
                              xsd_wreg_session_count(wreg, (uint32_t)logged_session) : 0))
                abort();
            if (r.stop == XSD_RUN_PYTHON && r.handled == 0) {
                after = store_dump(store, &after_len);
                if (after_len != before_len || memcmp(after, before, after_len) != 0)
                    abort();                     /* a punted request changed the store */
                free(after);
                if (wreg && xsd_wreg_count(wreg) != watches)
                    abort();                     /* or the watches */
            }
            free(before);
            if (xsd_store_check(store) != 0)
                abort();
            if (r.stop == XSD_RUN_DONE)
                break;
            if (r.stop == XSD_RUN_BAD) {
                pos = p->len;                    /* the connection is dropped */
                break;
            }
            if (r.stop == XSD_RUN_TXN) {            /* fastpath.py's side */
                if (r.handled == 0 || !r.txn_kind)
                    abort();
                if (r.txn_kind == XSD_TXN_STARTED) {
                    if (!r.txn)
                        abort();
                    if (nstarted == sizeof started / sizeof started[0]) {
                        xsd_conn_txn_drop(conns[ci], r.txn_id);
                        xsd_txn_free(r.txn);
                    } else {
                        started[nstarted].conn = ci;
                        started[nstarted].id = r.txn_id;
                        started[nstarted++].t = r.txn;
                    }
                } else {
                    int found = 0;

                    if (r.txn)
                        abort();
                    for (size_t k = 0; k < nstarted && !found; k++)
                        if (started[k].conn == ci && started[k].id == r.txn_id) {
                            xsd_txn_free(started[k].t);
                            started[k] = started[--nstarted];
                            found = 1;
                        }
                    for (int k = 0; k < 3 && !found; k++)
                        if (r.txn_id == (k == 2 ? 0xf2u : 0xf1u) && ci == (k == 1) &&
                            !ended[k])
                            found = ended[k] = 1;
                    if (!found)
                        abort();                     /* ended one the conn did not have */
                }
            } else if (r.stop == XSD_RUN_PYTHON)
                pos += XSD_HEADER_SIZE + field(p->buf + pos, 3);
            else if (r.stop == XSD_RUN_EVENTS) {
                if (r.handled == 0 || r.reply_at != last_at || !event_ok(r.event, r.event_len))
                    abort();
            } else if (r.stop != XSD_RUN_FULL)
                abort();
        }
        hooks_fail_after(-1, 0);
        memmove(p->buf, p->buf + pos, p->len - pos);
        p->len -= pos;
    }

    for (int i = 0; i < 3; i++) {
        char events[4096];
        int rc = ended[i] ? 0 : xsd_txn_commit(txns[i]);

        if (rc != 0 && rc != -EAGAIN && rc != -ENOMEM)
            abort();
        if (rc == 0 && !ended[i] && xsd_txn_events(txns[i], events, sizeof events) < 0)
            abort();
        if (xsd_store_check(store) != 0)
            abort();
    }
    for (int i = 0; i < CONNS; i++)
        xsd_conn_free(conns[i]);
    for (int i = 0; i < 3; i++)
        xsd_txn_free(txns[i]);
    for (size_t k = 0; k < nstarted; k++)
        xsd_txn_free(started[k].t);
    xsd_engine_free(engine);
    xsd_wreg_free(wreg);
    xsd_trie_free(trie);
    xsd_store_free(store);
    if (hooks_live_blocks() != 0)
        abort();
    return 0;
}
