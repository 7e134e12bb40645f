/*
 * test_poller_alloc_fail.c: every allocation the poller reaches is checked, and
 * a failed one loses no request.
 *
 * poller.c, with engine.c, store.c and trie.c under it, built with
 * -DXSD_ALLOC_HOOKS (alloc.h) against alloc_hooks.c. The scenario, once per N
 * (the first N allocations succeed, the next fails, once or from then on):
 * a poller journaling, two clients (one on a high fd number, so the fd table
 * grows), requests sent in pieces (partial packets held), writes whose replies
 * wait for the commit, a READ behind them, releases; client 0 watches what
 * client 1 writes (its events written by the poller in the second sweep, in
 * memory; the first journals). Whatever fails, every
 * request a client sent is answered exactly once, either in the replies it
 * receives (written by the poller, or released after the commit) or in the
 * bytes handed to Python (BYTES, or after a RUN's consumed bytes), which the
 * test plays the part of: once a client's bytes went to Python, it is no
 * longer direct (Python's decoder may hold a partial packet: Connection.
 * go_direct). Nothing may be left allocated.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ALLOC_FAIL_MIN_SITES 8
#include "alloc_fail_harness.h"
#include "engine_packets.h"
#include "poller.h"
#include "watchreg.h"

#define CLIENTS 2
#define HIGH_FD 300

struct client {
    int mine, theirs;
    xsd_conn *conn;
    xsd_pconn *pc;
    struct stream sent;          /* every request sent */
    struct stream python;        /* bytes handed to Python */
    struct stream replies;       /* replies received or released */
    int direct;
};

static struct client clients[CLIENTS];
static int journaling;          /* the sweep's pass: replies waiting for commits, or not */
static char out[16 * XSD_REPLY_MAX];

static void append(struct stream *s, const char *bytes, size_t len)
{
    if (len == 0)
        return;             /* bytes may be NULL then (a release with nothing unsent) */
    if (len > sizeof s->buf - s->len)
        abort();
    memcpy(s->buf + s->len, bytes, len);
    s->len += len;
}

static void drain_socket(struct client *c)
{
    char buf[4096];
    ssize_t n;
    while ((n = recv(c->theirs, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        append(&c->replies, buf, (size_t)n);
}

static struct client *by_id(uint64_t id)
{
    return &clients[id];
}

/* Serve until nothing is ready, playing Python's part. */
static void serve_all(xsd_poller *p)
{
    struct xsd_run run;
    struct xsd_poll res;
    int poll = 1;
    for (;;) {
        int kind = xsd_poller_serve(p, poll, out, sizeof out, &run, &res);
        poll = 0;
        if (kind == XSD_POLL_NONE)
            return;
        if (kind == XSD_POLL_COMMIT) {
            struct xsd_released items[CLIENTS];
            unsigned n = xsd_poller_release(p, items, CLIENTS);
            for (unsigned i = 0; i < n; i++)
                append(&by_id(items[i].id)->replies, items[i].rest, items[i].rest_len);
            continue;
        }
        struct client *c = by_id(res.id);
        if (res.held) {             /* Python commits first */
            struct xsd_released items[CLIENTS];
            unsigned n = xsd_poller_release(p, items, CLIENTS);
            for (unsigned i = 0; i < n; i++)
                append(&by_id(items[i].id)->replies, items[i].rest, items[i].rest_len);
        }
        drain_socket(c);
        if (kind == XSD_POLL_BYTES) {
            append(&c->python, res.data, res.data_len);
        } else if (kind == XSD_POLL_RUN) {
            append(&c->replies, out, run.out_len);
            append(&c->python, res.data + run.consumed, res.data_len - run.consumed);
        } else if (kind == XSD_POLL_UNSENT) {
            append(&c->replies, out + res.sent, run.out_len - res.sent);
            continue;
        } else {
            CHECK(0);               /* no client closes here */
            continue;
        }
        c->direct = 0;
        xsd_pconn_direct(c->pc, 0, 0);
    }
}

/* req_ids of the whole packets in s, as a bitmap over 1..63. */
static unsigned long long ids_of(const struct stream *s)
{
    unsigned long long ids = 0;
    size_t at = 0;
    while (s->len - at >= XSD_HEADER_SIZE) {
        size_t len = XSD_HEADER_SIZE + field(s->buf + at, 3);
        if (s->len - at < len)
            break;
        if (field(s->buf + at, 0) != T_WATCH_EVENT)    /* events: req_id 0, not counted */
            ids |= 1ull << field(s->buf + at, 1);
        at += len;
    }
    return ids;
}

static void send_piece(struct client *c, const struct stream *s, size_t from, size_t to)
{
    if (c->pc == NULL)
        return;
    if (write(c->theirs, s->buf + from, to - from) != (ssize_t)(to - from))
        abort();
    append(&c->sent, s->buf + from, to - from);
}

static int run_once(long n, int sticky)
{
    xsd_store *store = xsd_store_new();
    xsd_trie *trie = xsd_trie_new();
    xsd_engine *engine = store && trie ? xsd_engine_new(store, trie) : NULL;
    xsd_wreg *reg = engine ? xsd_wreg_new(trie, store) : NULL;
    if (reg == NULL)
        abort();
    xsd_engine_watches(engine, reg);
    xsd_store_track(store, 1);
    /* Client 0 watches /b: client 1's writes below it fire it an event. */
    int64_t watcher = xsd_wreg_session_new(reg);
    uint64_t order;
    if (watcher < 0 || xsd_wreg_session_set(reg, (uint32_t)watcher, 0, -1, 1) ||
        xsd_wreg_add(reg, (uint32_t)watcher, "/b", 2, "t", 1, 0, &order))
        abort();
    memset(clients, 0, sizeof clients);
    for (int i = 0; i < CLIENTS; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
            abort();
        if (i == 1) {
            if (dup2(sv[0], HIGH_FD) != HIGH_FD)
                abort();
            close(sv[0]);
            sv[0] = HIGH_FD;
        }
        fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
        clients[i].mine = sv[0];
        clients[i].theirs = sv[1];
        clients[i].conn = xsd_conn_new(engine);
        if (clients[i].conn == NULL)
            abort();
        xsd_conn_configure(clients[i].conn, 0, -1, 1, 0, 2048);
    }

    hooks_fail_after(n, sticky);
    xsd_poller *p = xsd_poller_new(engine, store, 0);
    if (p != NULL) {
        xsd_poller_journaling(p, journaling);
        for (int i = 0; i < CLIENTS; i++) {
            struct client *c = &clients[i];
            c->pc = xsd_pconn_new(p, c->conn, c->mine, (uint64_t)i);
            c->direct = c->pc != NULL;
            if (c->pc != NULL)
                xsd_pconn_direct(c->pc, 1, 0);
            if (c->pc != NULL && i == 0)
                (void)xsd_pconn_watcher(c->pc, watcher, 1);    /* -ENOMEM: Python's events */
        }
        /* Both the same requests but for the path of the write in pieces: client 1's is
         * below client 0's watch, client 0's is not (its own event would be Python's). */
        static struct stream s[CLIENTS];
        size_t first = 0;
        for (int i = 0; i < CLIENTS; i++) {
            uint32_t id = 1;
            s[i].len = 0;
            put_packet(&s[i], T_WRITE, id++, 0, P("/a\0v"));
            put_packet(&s[i], T_READ, id++, 0, P("/a\0"));
            first = s[i].len;
            if (i == 1)
                put_packet(&s[i], T_WRITE, id++, 0, P("/b/c/d\0value"));
            else
                put_packet(&s[i], T_WRITE, id++, 0, P("/x/c/d\0value"));
            put_packet(&s[i], T_MKDIR, id++, 0, P("/e/f\0"));
        }
        for (int round = 0; round < 2; round++) {
            /* Each client: a write and a READ behind it, then a packet in three pieces. */
            for (int i = 0; i < CLIENTS; i++)
                send_piece(&clients[i], &s[i], 0, first + 5);
            serve_all(p);
            for (int i = 0; i < CLIENTS; i++)
                send_piece(&clients[i], &s[i], first + 5, first + 20);
            serve_all(p);
            for (int i = 0; i < CLIENTS; i++)
                send_piece(&clients[i], &s[i], first + 20, s[i].len);
            serve_all(p);
            /* Distinct ids in the second round. */
            for (int i = 0; i < CLIENTS; i++)
                for (size_t at = 0; at < s[i].len;
                     at += XSD_HEADER_SIZE + field(s[i].buf + at, 3)) {
                    uint32_t rid = field(s[i].buf + at, 1) + 10;
                    memcpy(s[i].buf + at + 4, &rid, sizeof rid);
                }
        }
        struct xsd_released items[CLIENTS];
        unsigned released = xsd_poller_release(p, items, CLIENTS);
        for (unsigned i = 0; i < released; i++)
            append(&by_id(items[i].id)->replies, items[i].rest, items[i].rest_len);
        for (int i = 0; i < CLIENTS; i++) {
            struct client *c = &clients[i];
            if (c->pc == NULL)
                continue;
            drain_socket(c);
            unsigned long long sent = ids_of(&c->sent), answered = ids_of(&c->replies),
                               python = ids_of(&c->python);
            CHECK_EQ(answered & python, 0);
            CHECK_EQ(answered | python, sent);
        }
    }
    int failed = hooks_failed();
    hooks_fail_after(-1, 0);
    if (!failed && !journaling && p != NULL)    /* the scenario reaches the events' road */
        CHECK(xsd_conn_events_written_count(clients[0].conn) >= 2);
    for (int i = 0; i < CLIENTS; i++) {
        xsd_pconn_free(clients[i].pc);
        xsd_conn_free(clients[i].conn);
        close(clients[i].mine);
        close(clients[i].theirs);
    }
    xsd_poller_free(p);
    xsd_engine_watches(engine, NULL);
    xsd_wreg_free(reg);
    xsd_engine_free(engine);
    xsd_trie_free(trie);
    xsd_store_free(store);
    CHECK_EQ(hooks_live_blocks(), 0);
    return failed;
}

int main(void)
{
    journaling = 1;
    run_alloc_fail_sweeps();
    journaling = 0;             /* in memory: the watcher's events written by the poller */
    run_alloc_fail_sweeps();
    return check_report();
}
