/*
 * test_poller.c: poller.h over real socket pairs, under ASan/UBSan.
 *
 * A direct connection's batch answered and written by the poller; one not
 * direct (or of another epoch) handed over as BYTES; a run Python must finish
 * (RUN); a partial packet held across reads and handed over with the next
 * BYTES; replies the socket cannot take (UNSENT); end of file (CLOSED), with no
 * data left by a connection served before it in the same call; a
 * pconn freed while in the turn's ready list; an fd number closed and given
 * to a new connection; reading off; and, journaling, replies held for the
 * commit (COMMIT, held, xsd_poller_release), released in the order they
 * began to wait, the waiting list kept through frees.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "engine_packets.h"
#include "poller.h"
#include "watchreg.h"

static xsd_store *store;
static xsd_trie *trie;
static xsd_engine *engine;
static xsd_poller *poller;
static char out[16 * XSD_REPLY_MAX];
static struct xsd_run run;
static struct xsd_poll res;

static void setup(void)
{
    store = xsd_store_new();
    trie = xsd_trie_new();
    engine = xsd_engine_new(store, trie);
    poller = xsd_poller_new(engine, store, 0);
    if (!store || !trie || !engine || !poller)
        abort();
}

static void teardown(void)
{
    xsd_poller_free(poller);
    xsd_engine_free(engine);
    xsd_trie_free(trie);
    xsd_store_free(store);
}

struct client {
    int mine, theirs;       /* the daemon's end (non-blocking), the client's */
    xsd_conn *conn;
    xsd_pconn *pc;
};

static void connect_client(struct client *c, uint64_t id)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        abort();
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    c->mine = sv[0];
    c->theirs = sv[1];
    c->conn = xsd_conn_new(engine);
    if (c->conn == NULL)
        abort();
    xsd_conn_configure(c->conn, 0, -1, 1, 0, 2048);
    c->pc = xsd_pconn_new(poller, c->conn, c->mine, id);
    CHECK(c->pc != NULL);
}

static void disconnect(struct client *c)
{
    xsd_pconn_free(c->pc);
    xsd_conn_free(c->conn);
    close(c->mine);
    close(c->theirs);
}

static void send_stream(struct client *c, const struct stream *s, size_t from, size_t to)
{
    CHECK_EQ(write(c->theirs, s->buf + from, to - from), (ssize_t)(to - from));
}

/* What the client can read now (non-blocking), into buf. */
static ssize_t received(struct client *c, char *buf, size_t cap)
{
    ssize_t n = recv(c->theirs, buf, cap, MSG_DONTWAIT);
    return n < 0 ? 0 : n;
}

static struct stream one_packet(uint32_t type, uint32_t req_id, const char *payload, size_t plen)
{
    struct stream s = { .len = 0 };
    put_packet(&s, type, req_id, 0, payload, plen);
    return s;
}

static void test_a_direct_batch_is_answered_and_written_in_c(void)
{
    setup();
    struct client a;
    connect_client(&a, 7);
    xsd_pconn_direct(a.pc, 1, 0);
    struct stream s = { .len = 0 };
    put_packet(&s, T_WRITE, 1, 0, P("/a\0v"));
    put_packet(&s, T_READ, 2, 0, P("/a\0"));
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    CHECK_EQ(xsd_poller_direct_batches(poller), 1);
    char buf[256];
    ssize_t n = received(&a, buf, sizeof buf);
    CHECK_EQ(n, 16 + 3 + 16 + 1);
    CHECK_EQ(field(buf, 0), T_WRITE);
    CHECK(memcmp(buf + 16, "OK\0", 3) == 0);
    CHECK_EQ(field(buf + 19, 1), 2);
    CHECK(memcmp(buf + 35, "v", 1) == 0);
    disconnect(&a);
    teardown();
}

static void test_not_direct_or_another_epoch_is_bytes(void)
{
    setup();
    struct client a;
    connect_client(&a, 7);
    struct stream s = one_packet(T_READ, 1, P("/\0"));
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_BYTES);
    CHECK_EQ(res.id, 7);
    CHECK_EQ(res.data_len, s.len);
    CHECK(memcmp(res.data, s.buf, s.len) == 0);
    CHECK_EQ(xsd_poller_serve(poller, 0, out, sizeof out, &run, &res), XSD_POLL_NONE);
    /* Direct for epoch 3 while the poller is at 4: still Python's. */
    xsd_pconn_direct(a.pc, 1, 3);
    xsd_poller_epoch(poller, 4);
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_BYTES);
    xsd_pconn_direct(a.pc, 1, 4);
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    char buf[64];
    CHECK_EQ(received(&a, buf, sizeof buf), 16);       /* "/" holds the empty value */
    disconnect(&a);
    teardown();
}

static void test_a_run_python_must_finish_is_run(void)
{
    setup();
    struct client a;
    connect_client(&a, 9);
    xsd_pconn_direct(a.pc, 1, 0);
    struct stream s = { .len = 0 };
    put_packet(&s, T_WRITE, 1, 0, P("/a\0v"));
    put_packet(&s, T_READ, 2, 0, P("/missing\0"));     /* ENOENT: Python's */
    put_packet(&s, T_READ, 3, 0, P("/a\0"));
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_RUN);
    CHECK_EQ(res.id, 9);
    CHECK_EQ(res.data_len, s.len);
    CHECK_EQ(run.stop, XSD_RUN_PYTHON);
    CHECK_EQ(run.handled, 1);
    CHECK_EQ(run.out_len, 19);
    char buf[64];
    CHECK_EQ(received(&a, buf, sizeof buf), 0);        /* Python sends the run's replies */
    disconnect(&a);
    teardown();
}

static void test_a_partial_packet_is_held_then_handed_over_with_the_next_bytes(void)
{
    setup();
    struct client a;
    connect_client(&a, 1);
    xsd_pconn_direct(a.pc, 1, 0);
    struct stream s = { .len = 0 };
    put_packet(&s, T_WRITE, 1, 0, P("/a\0v"));
    put_packet(&s, T_READ, 2, 0, P("/a\0"));
    size_t cut = s.len - 5;
    send_stream(&a, &s, 0, cut);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    const char *held;
    CHECK_EQ(xsd_pconn_held(a.pc, &held), cut - 20);
    /* The rest, byte by byte: each read joins the held bytes. */
    for (size_t at = cut; at < s.len - 1; at++) {
        send_stream(&a, &s, at, at + 1);
        CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    }
    CHECK_EQ(xsd_pconn_held(a.pc, &held), s.len - 1 - 20);
    /* No longer direct: the held bytes go to Python first, with the last byte. */
    xsd_pconn_direct(a.pc, 0, 0);
    send_stream(&a, &s, s.len - 1, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_BYTES);
    CHECK_EQ(res.data_len, s.len - 20);
    CHECK(memcmp(res.data, s.buf + 20, s.len - 20) == 0);
    CHECK_EQ(xsd_pconn_held(a.pc, &held), 0);
    disconnect(&a);
    teardown();
}

static void test_replies_the_socket_cannot_take_are_unsent(void)
{
    setup();
    struct client a;
    connect_client(&a, 2);
    int small = 4096;
    setsockopt(a.mine, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    struct stream s;
    static char value[4000];
    memset(value, 'x', sizeof value);
    s.len = 0;
    char payload[4100];
    memcpy(payload, "/big\0", 5);
    memcpy(payload + 5, value, sizeof value);
    put_packet(&s, T_WRITE, 1, 0, payload, 5 + sizeof value);
    xsd_pconn_direct(a.pc, 1, 0);
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    char buf[64];
    received(&a, buf, sizeof buf);
    /* READs of it until the socket's buffer is full. */
    struct stream reads = { .len = 0 };
    for (int i = 0; i < 10; i++)
        put_packet(&reads, T_READ, 2 + (uint32_t)i, 0, P("/big\0"));
    send_stream(&a, &reads, 0, reads.len);
    int kind = xsd_poller_serve(poller, 1, out, sizeof out, &run, &res);
    CHECK_EQ(kind, XSD_POLL_UNSENT);
    CHECK(res.data == NULL && res.data_len == 0);  /* the batch was answered */
    CHECK(res.sent < run.out_len);
    CHECK_EQ(run.handled, 10);
    disconnect(&a);
    teardown();
}

static void test_end_of_file_is_closed(void)
{
    setup();
    struct client a;
    connect_client(&a, 3);
    shutdown(a.theirs, SHUT_WR);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_CLOSED);
    CHECK_EQ(res.id, 3);
    CHECK_EQ(res.err, 0);
    disconnect(&a);
    teardown();
}

static void test_a_closed_carries_no_data_of_a_connection_served_before_it(void)
{
    /* a's partial packet is held in the same call that meets b's end of file: the CLOSED
     * must not show a's bytes (poller.h: data only for BYTES and RUN). */
    setup();
    struct client a, b;
    connect_client(&a, 1);
    connect_client(&b, 2);
    xsd_pconn_direct(a.pc, 1, 0);
    struct stream s = one_packet(T_READ, 1, P("/\0"));
    send_stream(&a, &s, 0, 5);
    shutdown(b.theirs, SHUT_WR);
    int kind = xsd_poller_serve(poller, 1, out, sizeof out, &run, &res);
    CHECK_EQ(kind, XSD_POLL_CLOSED);
    CHECK_EQ(res.id, 2);
    CHECK(res.data == NULL && res.data_len == 0);
    const char *held;
    CHECK_EQ(xsd_pconn_held(a.pc, &held), 5);
    disconnect(&a);
    disconnect(&b);
    teardown();
}

static void test_a_pconn_freed_in_the_ready_list_is_skipped(void)
{
    setup();
    struct client a, b;
    connect_client(&a, 1);
    connect_client(&b, 2);
    struct stream s = one_packet(T_READ, 1, P("/\0"));
    send_stream(&a, &s, 0, s.len);
    send_stream(&b, &s, 0, s.len);
    int kind = xsd_poller_serve(poller, 1, out, sizeof out, &run, &res);
    CHECK_EQ(kind, XSD_POLL_BYTES);
    /* Whichever came first is handed over; the other is freed before it is read. */
    struct client *other = res.id == 1 ? &b : &a;
    xsd_pconn_free(other->pc);
    other->pc = NULL;
    CHECK_EQ(xsd_poller_serve(poller, 0, out, sizeof out, &run, &res), XSD_POLL_NONE);
    disconnect(&a);
    disconnect(&b);
    teardown();
}

static void test_an_fd_number_given_to_a_new_connection_is_the_new_ones(void)
{
    setup();
    struct client a, b;
    connect_client(&a, 1);
    /* The transport closes a's socket (epoll drops it) before its pconn is freed, and the
     * number goes to b's socket. */
    int number = a.mine;
    close(a.mine);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        abort();
    if (sv[0] != number) {          /* make it the same number */
        CHECK_EQ(dup2(sv[0], number), number);
        close(sv[0]);
    }
    fcntl(number, F_SETFL, fcntl(number, F_GETFL) | O_NONBLOCK);
    b.mine = number;
    b.theirs = sv[1];
    b.conn = xsd_conn_new(engine);
    b.pc = xsd_pconn_new(poller, b.conn, number, 2);
    CHECK(b.pc != NULL);
    xsd_pconn_free(a.pc);           /* must not unregister b's */
    a.pc = NULL;
    CHECK_EQ(xsd_pconn_reading(b.pc, 1), 0);
    struct stream s = one_packet(T_READ, 1, P("/\0"));
    send_stream(&b, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_BYTES);
    CHECK_EQ(res.id, 2);
    xsd_conn_free(a.conn);
    close(a.theirs);
    disconnect(&b);
    teardown();
}

static void test_reading_off_leaves_the_bytes(void)
{
    setup();
    struct client a;
    connect_client(&a, 1);
    CHECK_EQ(xsd_pconn_reading(a.pc, 0), 0);
    struct stream s = one_packet(T_READ, 1, P("/\0"));
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    CHECK_EQ(xsd_pconn_reading(a.pc, 1), 0);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_BYTES);
    disconnect(&a);
    teardown();
}

static void test_journaling_replies_wait_for_the_commit(void)
{
    setup();
    xsd_store_track(store, 1);
    xsd_poller_journaling(poller, 1);
    struct client a, b;
    connect_client(&a, 1);
    connect_client(&b, 2);
    xsd_pconn_direct(a.pc, 1, 0);
    xsd_pconn_direct(b.pc, 1, 0);
    struct stream w = one_packet(T_WRITE, 1, P("/a\0v"));
    send_stream(&a, &w, 0, w.len);
    send_stream(&b, &w, 0, w.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_COMMIT);
    CHECK_EQ(res.waiting, 2);
    CHECK_EQ(xsd_poller_serve(poller, 0, out, sizeof out, &run, &res), XSD_POLL_NONE);
    char buf[64];
    CHECK_EQ(received(&a, buf, sizeof buf), 0);         /* nothing before the commit */
    /* a's READ behind its waiting reply waits too, even with the log empty. */
    char changes[256];
    xsd_store_take_changes(store, changes, sizeof changes);
    struct stream r = one_packet(T_READ, 2, P("/a\0"));
    send_stream(&a, &r, 0, r.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    CHECK_EQ(received(&a, buf, sizeof buf), 0);
    /* b, freed, leaves the waiting list. */
    xsd_pconn_free(b.pc);
    b.pc = NULL;
    struct xsd_released items[4];
    CHECK_EQ(xsd_poller_release(poller, items, 4), 1);
    CHECK_EQ(items[0].id, 1);
    CHECK_EQ(items[0].journaled, 4);
    CHECK_EQ(items[0].rest_len, 0);
    CHECK_EQ(received(&a, buf, sizeof buf), 19 + 17);
    CHECK_EQ(field(buf + 19, 1), 2);
    CHECK_EQ(xsd_poller_release(poller, items, 4), 0);
    /* A read with nothing waiting and the log empty goes straight out. */
    send_stream(&a, &r, 0, r.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    CHECK_EQ(received(&a, buf, sizeof buf), 17);
    /* One that finds a held reply hands its bytes over with held set. */
    send_stream(&a, &w, 0, w.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_COMMIT);
    xsd_pconn_direct(a.pc, 0, 0);
    send_stream(&a, &r, 0, r.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_BYTES);
    CHECK(res.held);
    CHECK_EQ(xsd_poller_release(poller, items, 4), 1);
    disconnect(&a);
    disconnect(&b);
    teardown();
}

static void test_released_in_the_order_they_began_to_wait(void)
{
    /* c, a, b wait in that order; b (the last) freed, then d joins: c, a, d. */
    setup();
    xsd_store_track(store, 1);
    xsd_poller_journaling(poller, 1);
    struct client a, b, c, d;
    connect_client(&a, 1);
    connect_client(&b, 2);
    connect_client(&c, 3);
    connect_client(&d, 4);
    struct client *order[] = { &c, &a, &b, &d };
    struct stream w = one_packet(T_WRITE, 1, P("/a\0v"));
    for (int i = 0; i < 4; i++) {
        xsd_pconn_direct(order[i]->pc, 1, 0);
        if (i == 3) {
            xsd_pconn_free(b.pc);
            b.pc = NULL;
        }
        send_stream(order[i], &w, 0, w.len);
        /* COMMIT is told once until the release. */
        CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res),
                 i == 0 ? XSD_POLL_COMMIT : XSD_POLL_NONE);
    }
    struct xsd_released items[4];
    CHECK_EQ(xsd_poller_release(poller, items, 4), 3);
    CHECK_EQ(items[0].id, 3);
    CHECK_EQ(items[1].id, 1);
    CHECK_EQ(items[2].id, 4);
    /* Emptied, the list starts again. */
    send_stream(&a, &w, 0, w.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_COMMIT);
    CHECK_EQ(xsd_poller_release(poller, items, 4), 1);
    CHECK_EQ(items[0].id, 1);
    disconnect(&a);
    disconnect(&b);
    disconnect(&c);
    disconnect(&d);
    teardown();
}

static void test_a_burst_waiting_for_the_commit_is_released_whole(void)
{
    /* Turns of writes with no commit between: the waiting replies grow past the room a
     * pconn keeps, all go out at the release, in order, and the room is given back. */
    setup();
    xsd_poller_free(poller);
    poller = xsd_poller_new(engine, store, 1 << 16);    /* each turn's sends read whole */
    if (poller == NULL)
        abort();
    xsd_store_track(store, 1);
    xsd_poller_journaling(poller, 1);
    struct client a;
    connect_client(&a, 1);
    int big = 1 << 20;
    setsockopt(a.theirs, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    xsd_pconn_direct(a.pc, 1, 0);
    uint32_t req = 0;
    for (int turn = 0; turn < 8; turn++) {
        struct stream s = { .len = 0 };
        for (int i = 0; i < 500; i++)
            put_packet(&s, T_WRITE, req++, 0, P("/a\0v"));
        send_stream(&a, &s, 0, s.len);
        int kind;
        while ((kind = xsd_poller_serve(poller, 1, out, sizeof out, &run, &res)) ==
               XSD_POLL_COMMIT)
            ;
        CHECK_EQ(kind, XSD_POLL_NONE);
    }
    struct xsd_released items[2];
    CHECK_EQ(xsd_poller_release(poller, items, 2), 1);
    CHECK_EQ(items[0].journaled, (uint64_t)req * 4);
    CHECK_EQ(items[0].rest_len, 0);
    static char buf[1 << 17];
    size_t got = 0;
    ssize_t n;
    while ((n = received(&a, buf + got, sizeof buf - got)) > 0)
        got += (size_t)n;
    CHECK_EQ(got, (size_t)req * 19);
    CHECK_EQ(field(buf + (size_t)(req - 1) * 19, 1), req - 1);     /* the last, last */
    disconnect(&a);
    teardown();
}

static void test_one_request_in_every_is_timed(void)
{
    /* Every 4th request the poller answers, counted on from the countdown given: batches of
     * 3 and 5 (8 requests from countdown 2) time the 3rd and the 7th, each its batch's
     * mean, and the countdown goes on as Python's would (_sample). */
    setup();
    struct client a;
    connect_client(&a, 1);
    xsd_pconn_direct(a.pc, 1, 0);
    xsd_poller_sample(poller, 4, 2);
    struct stream s = { .len = 0 };
    put_packet(&s, T_WRITE, 1, 0, P("/a\0v"));
    put_packet(&s, T_READ, 2, 0, P("/a\0"));
    put_packet(&s, T_DIRECTORY, 3, 0, P("/\0"));
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    CHECK_EQ(xsd_poller_countdown(poller), 3);
    s.len = 0;
    for (uint32_t i = 0; i < 5; i++)
        put_packet(&s, i == 3 ? T_GET_PERMS : T_READ, 4 + i, 0, P("/a\0"));
    send_stream(&a, &s, 0, s.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    CHECK_EQ(xsd_poller_countdown(poller), 2);
    struct xsd_poll_sample samples[4];
    CHECK_EQ(xsd_poller_samples(poller, samples, 4), 2);
    CHECK_EQ(samples[0].op, T_DIRECTORY);
    CHECK_EQ(samples[1].op, T_GET_PERMS);
    CHECK(samples[0].ns > 0);
    CHECK_EQ(xsd_poller_samples(poller, samples, 4), 0);
    static char buf[4096];
    received(&a, buf, sizeof buf);
    disconnect(&a);
    teardown();
}

static void test_watch_events_go_from_c_to_a_direct_watcher(void)
{
    /* A watcher's event from a writer's direct batch: written here after the writer's reply,
     * counted on the watcher's conn; two events for one watcher in one run, or a watcher
     * not direct, leave the run to Python; an event its socket cannot take waits for the
     * release, which hands the rest to Python. */
    setup();
    xsd_wreg *reg = xsd_wreg_new(trie, store);
    if (reg == NULL)
        abort();
    xsd_engine_watches(engine, reg);
    struct client w, a;
    connect_client(&w, 1);      /* the writer */
    connect_client(&a, 2);      /* the watcher */
    int64_t s = xsd_wreg_session_new(reg);
    CHECK(s >= 0);
    CHECK_EQ(xsd_wreg_session_set(reg, (uint32_t)s, 0, -1, 1), 0);
    uint64_t order;
    CHECK_EQ(xsd_wreg_add(reg, (uint32_t)s, "/w", 2, "tok", 3, 0, &order), 0);
    CHECK_EQ(xsd_pconn_watcher(a.pc, s, 1), 0);
    xsd_pconn_direct(w.pc, 1, 0);
    xsd_pconn_direct(a.pc, 1, 0);
    struct stream one = one_packet(T_WRITE, 1, P("/w\0v"));
    send_stream(&w, &one, 0, one.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_NONE);
    char buf[256];
    CHECK_EQ(received(&w, buf, sizeof buf), 19);
    CHECK_EQ(received(&a, buf, sizeof buf), 16 + 7);
    CHECK_EQ(field(buf, 0), 15);
    CHECK(memcmp(buf + 16, "/w\0tok\0", 7) == 0);
    CHECK_EQ(xsd_conn_events_written_count(a.conn), 1);
    /* Two events for the watcher in one run: Python's (it may coalesce them). */
    struct stream two = { .len = 0 };
    put_packet(&two, T_WRITE, 2, 0, P("/w\0x"));
    put_packet(&two, T_WRITE, 3, 0, P("/w/c\0y"));
    send_stream(&w, &two, 0, two.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_RUN);
    CHECK_EQ(received(&a, buf, sizeof buf), 0);
    /* The watcher not direct: Python's. */
    xsd_pconn_direct(a.pc, 0, 0);
    send_stream(&w, &one, 0, one.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_RUN);
    xsd_pconn_direct(a.pc, 1, 0);
    /* The watcher's socket full: the event waits, COMMIT, the release hands it over. */
    static char filler[4096];
    while (send(a.mine, filler, sizeof filler, MSG_DONTWAIT) > 0)
        ;
    send_stream(&w, &one, 0, one.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_COMMIT);
    CHECK_EQ(res.waiting, 1);
    struct xsd_released items[2];
    CHECK_EQ(xsd_poller_release(poller, items, 2), 1);
    CHECK_EQ(items[0].id, 2);
    CHECK_EQ(items[0].rest_len, 16 + 7);
    CHECK_EQ(xsd_conn_events_written_count(a.conn), 2);
    /* Journaling: the event waits for the commit with the writer's reply. */
    while (received(&a, buf, sizeof buf) > 0)
        ;
    xsd_store_track(store, 1);
    xsd_poller_journaling(poller, 1);
    send_stream(&w, &one, 0, one.len);
    CHECK_EQ(xsd_poller_serve(poller, 1, out, sizeof out, &run, &res), XSD_POLL_COMMIT);
    CHECK_EQ(res.waiting, 2);
    CHECK_EQ(received(&a, buf, sizeof buf), 0);
    CHECK_EQ(xsd_poller_release(poller, items, 2), 2);
    CHECK_EQ(items[0].id, 1);   /* the writer's reply before its watcher's event */
    CHECK_EQ(items[1].id, 2);
    CHECK_EQ(received(&a, buf, sizeof buf), 16 + 7);
    CHECK_EQ(xsd_conn_events_written_count(a.conn), 3);
    disconnect(&w);
    disconnect(&a);
    xsd_engine_watches(engine, NULL);
    xsd_wreg_free(reg);
    teardown();
}

int main(void)
{
    RUN(test_a_direct_batch_is_answered_and_written_in_c);
    RUN(test_not_direct_or_another_epoch_is_bytes);
    RUN(test_a_run_python_must_finish_is_run);
    RUN(test_a_partial_packet_is_held_then_handed_over_with_the_next_bytes);
    RUN(test_replies_the_socket_cannot_take_are_unsent);
    RUN(test_end_of_file_is_closed);
    RUN(test_a_closed_carries_no_data_of_a_connection_served_before_it);
    RUN(test_a_pconn_freed_in_the_ready_list_is_skipped);
    RUN(test_an_fd_number_given_to_a_new_connection_is_the_new_ones);
    RUN(test_reading_off_leaves_the_bytes);
    RUN(test_journaling_replies_wait_for_the_commit);
    RUN(test_released_in_the_order_they_began_to_wait);
    RUN(test_a_burst_waiting_for_the_commit_is_released_whole);
    RUN(test_one_request_in_every_is_timed);
    RUN(test_watch_events_go_from_c_to_a_direct_watcher);
    return check_report();
}
