/*
 * fuzz_poller.c: libFuzzer target for poller.h, the packet path every socket
 * connection takes. The input is a program run over one poller, one engine,
 * one store and trie and a C watch registry (xsd_wreg, wired by
 * xsd_engine_watches), with three or four clients over real AF_UNIX socket
 * pairs: the daemon's end non-blocking and registered with the poller, the
 * client's end the harness's. The harness plays the clients and Python's part
 * (xsd/transport/poller.py and connection.py), as test_poller_alloc_fail.c's
 * serve_all does:
 *   held       Python commits and releases first (Daemon.flush);
 *   BYTES      what was read is Python's (its decoder's); the client is no
 *              longer direct (Connection._hold);
 *   RUN        the run's replies are Python's to write, the bytes from consumed
 *              on Python's; a transaction started is kept as Session keeps it,
 *              one ended freed; no longer direct;
 *   UNSENT     the rest of the replies goes to the transport; no longer direct;
 *   CLOSED     the pconn is freed (Connection.ended);
 *   COMMIT     the change log is taken (the journal's commit) and every waiting
 *              pconn released, now or later (a scheduled flush); a released
 *              item's rest goes to the transport, and its client is no longer
 *              direct.
 * Python's transport writes at once: what it writes is appended to what its
 * client received, after the client reads its socket, so that order holds.
 * A client goes direct again only when Python would: its decoder holds no
 * partial packet (the bytes handed to it end at a packet boundary).
 *
 * Program format. Four setup bytes:
 *   0: bit 0 four clients (else three; client 3 is an unprivileged guest, domid
 *      1), bit 1 journaling (xsd_poller_journaling and xsd_store_track), bit 2
 *      in_cap 64 KiB (else the least, XSD_REPLY_MAX), bits 3 and 4 both: the
 *      run's out only XSD_REPLY_MAX bytes (runs stop FULL), bit 5 the daemon's
 *      ends' SO_SNDBUF small (replies fill a socket soon), bit 6 latency samples
 *      taken, bit 7 releases taken one item per call;
 *   1: bits 0-3 client i's pconn may be written others' events (xsd_pconn_
 *      watcher), bits 4-7 client i starts direct;
 *   2: two bits per client: a watch registered for it at start on nothing,
 *      "/a", "/b" or "/" (token "<i>w"),
 *   3: bits 0-3 client i's initial watch token is long (LONG_TOKEN: its events can
 *      be sent in part).
 * Then operations, until the input or MAX_OPS runs out: a control byte, its low
 * nibble the operation, its high nibble the argument (bits 0-1 the client):
 *   0-4  SEND: a byte k: k&3 requests (3 bytes each: type and tx_id, path,
 *        detail) appended to the client's outgoing bytes; k&4 then a raw chunk
 *        (a length byte, the bytes: its client is no longer accounted); k&8
 *        only as many outgoing bytes as the next byte says are sent (a packet
 *        cut anywhere), else all of them;
 *   5-7  SERVE: a turn, xsd_poller_serve until NONE, `last` or COMMIT. Bit 0:
 *        an allocation failure injected in each call (a byte: bits 0-5 the
 *        allocations that succeed first, bit 6 sticky); bit 1: the commit a
 *        COMMIT asks for is deferred; bit 2: the first handover's Python also
 *        loses another client's connection (a byte: the client), whose pconn
 *        may be in the turn's ready list; bit 3: `last` ignored: the next call
 *        must say NONE;
 *   8    COMMIT now (Daemon.flush);
 *   9    DIRECT: bit 2 on when Python would (a byte: the inline-event room,
 *        xsd_conn_inline_events), bit 3 for the epoch before the poller's;
 *        else off;
 *   10   the poller's EPOCH moves on (every direct permission ends);
 *   11   JOURNALING toggled, after a commit (nothing waits);
 *   12   WATCHER: xsd_pconn_watcher, bit 2 events on, bit 3 no handle;
 *   13   bit 2: FILL the client's socket (after a commit, output the client has
 *        not read: sends fail EAGAIN), else DRAIN it (the client reads);
 *   14   READING on (bit 2) or off;
 *   15   LIFECYCLE: an empty slot connects (bit 2 on a high fd number, bit 3
 *        direct); else bit 2 clear: the client shuts its writing side (bit 3
 *        clear) or closes its socket; bit 2 set: the connection is lost (its
 *        pconn freed, then its sockets closed; bit 3 clear) or its transport
 *        closes the socket first and the fd number goes to a new connection
 *        (the old pconn freed at the next LIFECYCLE).
 * Every client's requests carry req_ids 1, 2, ... in order; WATCH tokens start
 * with the client's digit (detail % 4 == 3: a long one). WRITE values are up to
 * 1984 bytes: READs of them make bursts of replies.
 *
 * Invariants (any failure aborts, so libFuzzer reports it):
 *   - no sanitizer report; after freeing everything, no allocation is left;
 *   - BYTES only for a client not direct (for the poller's epoch), RUN and
 *     UNSENT only for a direct one, UNSENT never with held; CLOSED only after
 *     the client shut or closed its end; every handover names a registered
 *     pconn; a RUN consumed no more than it read; only BYTES and RUN carry
 *     data; Python never gets more bytes than the client sent;
 *   - COMMIT's count of waiting pconns is what the release then returns; the
 *     released are distinct pconns that exist; after `last` the next call says
 *     NONE; xsd_store_check finds nothing after every turn; latency samples
 *     name request types the engine answers;
 *   - at the end (reading on, every byte read, a last commit and drain), for
 *     every client still connected: what it received is whole packets; the
 *     WATCH_EVENT frames among them (req_id 0) are well formed ("path NUL token
 *     NUL") and as many as the poller counted on its conn (xsd_conn_events_
 *     written) plus those among RUNs' replies; and for every accounted client
 *     (nothing but its own packets sent): each event's token is its own; its
 *     replies come in increasing req_id order, each with its request's type
 *     (or ERROR: a TRANSACTION_END's conflict); every request it sent whole is
 *     answered exactly once, by a reply it received or in the bytes handed to
 *     Python, which are its packets byte for byte; its trailing partial packet
 *     is held by its pconn or by Python's decoder, whole, not both.
 *
 * Built only with clang (-fsanitize=fuzzer); run by
 * tests/native/test_c_sanitizers.py for a bounded time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc_hooks.h"
#include "engine_packets.h"
#include "fuzz_input.h"
#include "poller.h"
#include "watchreg.h"

/* Abort naming the invariant broken: libFuzzer reports the crash and the input. */
#define MUST(cond)                                                                  \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                         \
            abort();                                                                \
        }                                                                           \
    } while (0)

enum { T_TRANSACTION_START = 6, T_TRANSACTION_END = 7, T_GET_DOMAIN_PATH = 10 };

/* Bounds that keep one input's work well under a millisecond or two. */
#define CLIENTS_MAX     4
#define ZOMBIES_MAX     4
#define MAX_OPS         256
#define MAX_REQS        1024        /* requests per client */
#define TXNS_MAX        8           /* transactions a client keeps open */
#define RELEASE_ITEMS   64
#define SERVE_CALLS_MAX 256         /* a turn hands over at most XSD_POLL_EVENTS, then ends */
#define FINAL_TURNS     64          /* every byte sent read in so many turns at most */
#define FILL_SENDS      128
#define HIGH_FD         300         /* the poller's fd table grows past its first 64 */
#define SMALL_SNDBUF    4096
/* A WATCH token long enough that its events span two of a small socket's skbs (SO_SNDBUF
 * 4096: 4032 bytes each; a shorter send goes whole or not at all), so that a send of one
 * can be partial. */
#define LONG_TOKEN      4040

enum slot_state {
    SLOT_EMPTY,
    SLOT_OPEN,
    SLOT_SHUT,      /* the client shut its writing side: it still reads, it is still accounted */
    SLOT_LOST,      /* the client closed its socket: nothing more is checked of it */
};

/* What a client received: its socket's bytes, and what Python's transport wrote it. */
struct received {
    char buf[1 << 20];
    size_t len;
};

struct client {
    enum slot_state state;
    int mine, theirs;       /* the daemon's end (the poller's), the client's; -1: closed */
    uint64_t id;            /* its pconn's id: a generation, then its slot in the low 3 bits */
    xsd_conn *conn;
    xsd_pconn *pc;          /* NULL once Python freed it (CLOSED) */
    int64_t session;        /* its handle in the watch registry */
    int reading;
    int direct;             /* what Python last told the pconn, */
    uint64_t direct_epoch;  /* ... for which epoch */
    int accounted;          /* it sent only its own packets: the end's checks apply */
    int broken;             /* Python's decoder met a header it would close the connection for */
    int got_lost;           /* its received stream overflowed: nothing about it is checked */
    uint32_t next_req;
    uint32_t req_at[MAX_REQS + 1];      /* where each request starts in gen */
    uint8_t req_type[MAX_REQS + 1];
    struct stream gen;      /* everything it wrote or will write, in order */
    size_t sent;            /* gen[0..sent) went into its socket */
    struct stream python;   /* the bytes handed to Python, in order */
    size_t python_whole;    /* python[0..python_whole): whole packets */
    struct received got;
    size_t filler;          /* filler bytes at the head of its socket, not yet read */
    uint64_t python_events; /* WATCH_EVENT frames among RUNs' replies (Python writes them) */
    struct {
        uint32_t id;
        xsd_txn *t;
    } txns[TXNS_MAX];
    unsigned ntxns;
};

/* A pconn whose socket the transport closed before freeing it, its number now a new
 * connection's: freed later, its conn with it (the pconn borrows the conn). */
struct zombie {
    xsd_pconn *pc;
    xsd_conn *conn;
    uint64_t id;
};

static struct {
    xsd_store *store;
    xsd_trie *trie;
    xsd_engine *engine;
    xsd_wreg *reg;
    xsd_poller *poller;
    unsigned nclients;
    struct zombie zombies[ZOMBIES_MAX];
    unsigned nzombies;
    uint64_t epoch;
    uint64_t generation;
    int journaling;
    int small_sndbuf;
    size_t out_cap;
    unsigned release_max;
    uint32_t sample_every;      /* 0: no latency samples */
    uint64_t direct_batches;    /* xsd_poller_direct_batches at the last turn's end */
} w;

static struct client clients[CLIENTS_MAX];
static char out[16 * XSD_REPLY_MAX];
static uint8_t answered[MAX_REQS + 1], handed[MAX_REQS + 1];

/* The packet at buf[0..avail): 1 and *len its length when whole, 0 when cut
 * short, -1 when its header announces more than a payload may hold (the engine
 * stops XSD_RUN_BAD and Python closes the connection). */
static int frame_at(const char *buf, size_t avail, size_t *len)
{
    if (avail < XSD_HEADER_SIZE)
        return 0;
    uint32_t plen = field(buf, 3);
    if (plen > XSD_PAYLOAD_MAX)
        return -1;
    *len = XSD_HEADER_SIZE + plen;
    return avail >= *len;
}

static size_t count_events(const char *buf, size_t len)
{
    size_t at = 0, events = 0, flen;
    while (at < len) {
        MUST(frame_at(buf + at, len - at, &flen) == 1);    /* a run's replies are whole */
        if (field(buf + at, 0) == T_WATCH_EVENT)
            events++;
        at += flen;
    }
    return events;
}

static int direct_now(const struct client *c)
{
    return c->direct && c->direct_epoch == w.epoch;
}

static void direct_off(struct client *c)
{
    c->direct = 0;
    if (c->pc != NULL)
        xsd_pconn_direct(c->pc, 0, 0);
}

/* Bytes that reach the client (its socket's, or Python's transport's). */
static void receive(struct client *c, const char *bytes, size_t len)
{
    if (c->theirs < 0 || len == 0 || c->got_lost)
        return;
    if (len > sizeof c->got.buf - c->got.len) {
        c->got_lost = 1;        /* past what this harness keeps: its client goes unchecked */
        return;
    }
    memcpy(c->got.buf + c->got.len, bytes, len);
    c->got.len += len;
}

/* The client reads everything its socket holds (the filler at its head skipped). */
static void drain(struct client *c)
{
    char buf[8192];
    ssize_t n;
    if (c->theirs < 0)
        return;
    while ((n = recv(c->theirs, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
        size_t skip = c->filler < (size_t)n ? c->filler : (size_t)n;
        c->filler -= skip;
        receive(c, buf + skip, (size_t)n - skip);
    }
}

/* Bytes handed to Python: its decoder takes them. */
static void python_takes(struct client *c, const char *data, size_t len)
{
    size_t flen;
    int whole;
    MUST(c->python.len + len <= c->sent);  /* never more than the client sent */
    memcpy(c->python.buf + c->python.len, data, len);
    c->python.len += len;
    while (!c->broken &&
           (whole = frame_at(c->python.buf + c->python_whole,
                             c->python.len - c->python_whole, &flen)) != 0) {
        if (whole < 0)
            c->broken = 1;
        else
            c->python_whole += flen;
    }
}

/* The client whose live pconn has this id, or NULL. */
static struct client *client_of(uint64_t id)
{
    if ((id & 7) >= w.nclients)
        return NULL;
    struct client *c = &clients[id & 7];
    return c->pc != NULL && c->id == id ? c : NULL;
}

static int zombie_id(uint64_t id)
{
    for (unsigned i = 0; i < w.nzombies; i++)
        if (w.zombies[i].id == id)
            return 1;
    return 0;
}

/* The journal's commit: the store's change log taken. */
static void take_changes(void)
{
    static char log[1 << 16];
    int64_t n = xsd_store_take_changes(w.store, log, sizeof log);
    MUST(n >= 0);
    if ((size_t)n > sizeof log) {           /* kept: taken once there is room */
        char *all = malloc((size_t)n);
        MUST(all != NULL);
        MUST(xsd_store_take_changes(w.store, all, (size_t)n) == n);
        free(all);
    }
}

/* Daemon.flush: the listeners' commit, then every waiting pconn released (poller.py
 * release: a rest goes to the connection's transport, Connection.unsent); how many. */
static unsigned commit(void)
{
    uint64_t ids[CLIENTS_MAX + ZOMBIES_MAX];
    unsigned total = 0;
    if (w.journaling)
        take_changes();
    for (;;) {
        struct xsd_released items[RELEASE_ITEMS];
        unsigned n = xsd_poller_release(w.poller, items, w.release_max);
        MUST(n <= w.release_max);
        for (unsigned i = 0; i < n; i++) {
            const struct xsd_released *item = &items[i];
            for (unsigned j = 0; j < total; j++)
                MUST(ids[j] != item->id);           /* each waiting pconn released once */
            MUST(total < CLIENTS_MAX + ZOMBIES_MAX);
            ids[total++] = item->id;
            MUST((item->rest == NULL) == (item->rest_len == 0));
            struct client *c = client_of(item->id);
            if (c == NULL) {
                MUST(zombie_id(item->id));          /* a freed pconn is never released */
                continue;
            }
            if (item->rest_len) {
                drain(c);
                receive(c, item->rest, item->rest_len);
                direct_off(c);
            }
        }
        if (n < w.release_max)
            return total;
    }
}

/* What Python drops with a session: its transactions (Session.transactions) and its
 * handle in the registry. */
static void end_session(struct client *c)
{
    for (unsigned i = 0; i < c->ntxns; i++) {
        xsd_conn_txn_drop(c->conn, c->txns[i].id);
        xsd_txn_free(c->txns[i].t);
    }
    c->ntxns = 0;
    if (c->session >= 0)
        MUST(xsd_wreg_session_free(w.reg, (uint32_t)c->session) == 0);
    c->session = -1;
}

static void close_sockets(struct client *c)
{
    if (c->mine >= 0)
        close(c->mine);
    if (c->theirs >= 0)
        close(c->theirs);
    c->mine = c->theirs = -1;
}

/* The connection is gone (connection_lost: the pconn freed, then the socket closed). */
static void lose(struct client *c)
{
    xsd_pconn_free(c->pc);
    c->pc = NULL;
    end_session(c);
    xsd_conn_free(c->conn);
    c->conn = NULL;
    close_sockets(c);
    c->state = SLOT_EMPTY;
}

static void free_zombies(void)
{
    for (unsigned i = 0; i < w.nzombies; i++) {
        xsd_pconn_free(w.zombies[i].pc);
        xsd_conn_free(w.zombies[i].conn);
    }
    w.nzombies = 0;
}

/* A RUN that stopped XSD_RUN_TXN: Python learns the transaction (fastpath.py). */
static void learn_txn(struct client *c, const struct xsd_run *run)
{
    if (run->stop != XSD_RUN_TXN)
        return;
    if (run->txn_kind == XSD_TXN_STARTED) {
        MUST(run->txn != NULL);
        if (c->ntxns == TXNS_MAX) {             /* dropped at once: later ENDs are Python's */
            xsd_conn_txn_drop(c->conn, run->txn_id);
            xsd_txn_free(run->txn);
            return;
        }
        c->txns[c->ntxns].id = run->txn_id;
        c->txns[c->ntxns++].t = run->txn;
        return;
    }
    MUST(run->txn == NULL);
    for (unsigned i = 0; i < c->ntxns; i++)
        if (c->txns[i].id == run->txn_id) {
            xsd_txn_free(c->txns[i].t);         /* the engine dropped it from the conn */
            c->txns[i] = c->txns[--c->ntxns];
            return;
        }
    MUST(0);                                    /* ended one the conn did not have */
}

/* Python takes over client c's connection for a handover of this kind; direct: the
 * client was direct when the poller read it (before held's release, which may end
 * that). */
static void take_over(struct client *c, int kind, int direct, const struct xsd_poll *res,
                      const struct xsd_run *run)
{
    switch (kind) {
    case XSD_POLL_BYTES:
        MUST(!direct);
        MUST(res->data != NULL && res->data_len > 0);
        drain(c);
        python_takes(c, res->data, res->data_len);
        direct_off(c);
        return;
    case XSD_POLL_RUN:
        MUST(direct);
        MUST(res->data != NULL && run->consumed <= res->data_len && run->out_len <= w.out_cap);
        drain(c);
        receive(c, out, run->out_len);
        c->python_events += count_events(out, run->out_len);
        python_takes(c, res->data + run->consumed, res->data_len - run->consumed);
        learn_txn(c, run);
        direct_off(c);
        return;
    case XSD_POLL_UNSENT:
        MUST(direct && !res->held);
        MUST(res->sent < run->out_len && run->out_len <= w.out_cap);
        MUST(res->data == NULL && res->data_len == 0);     /* poller.h: BYTES, RUN only */
        drain(c);
        receive(c, out + res->sent, run->out_len - res->sent);
        direct_off(c);
        return;
    case XSD_POLL_CLOSED:
        MUST(c->state == SLOT_SHUT || c->state == SLOT_LOST);   /* only after its peer did */
        MUST(res->err == 0 || c->state == SLOT_LOST);
        MUST(res->data == NULL && res->data_len == 0);
        xsd_pconn_free(c->pc);
        c->pc = NULL;
        if (c->state == SLOT_LOST)
            lose(c);
        return;
    default:
        MUST(0);
    }
}

/* Request types the engine answers in C (engine.h): what a latency sample may name. */
static int answered_in_c(uint32_t op)
{
    switch (op) {
    case T_DIRECTORY: case T_READ: case T_GET_PERMS: case T_WATCH: case T_UNWATCH:
    case T_TRANSACTION_START: case T_TRANSACTION_END: case T_WRITE: case T_MKDIR: case T_RM:
    case T_SET_PERMS: case T_DIRECTORY_PART:
        return 1;
    default:
        return 0;
    }
}

struct turn {
    long fail_after;        /* allocations that succeed in each call, then one fails; -1 none */
    int sticky;
    int defer;              /* the commit COMMIT asks for is left for later */
    int victim;             /* a client whose connection is lost at the first handover; -1 */
    int ignore_last;
};

/* One turn of the event loop's reader (poller.py _serve). */
static void serve_turn(const struct turn *t)
{
    int poll = 1, handed_over = 0;
    for (unsigned calls = 0;; calls++) {
        struct xsd_run run;
        struct xsd_poll res;
        MUST(calls < SERVE_CALLS_MAX);
        hooks_fail_after(t->fail_after, t->sticky);
        int kind = xsd_poller_serve(w.poller, poll, out, w.out_cap, &run, &res);
        hooks_fail_after(-1, 0);
        poll = 0;
        if (kind == XSD_POLL_NONE)
            break;
        MUST(kind == res.kind);
        if (kind == XSD_POLL_COMMIT) {
            MUST(res.waiting > 0);
            if (!t->defer)
                MUST(commit() == res.waiting);
            break;                      /* the turn's end */
        }
        struct client *c = client_of(res.id);
        MUST(c != NULL);                /* a pconn registered and not freed */
        int direct = direct_now(c);
        if (res.held)
            commit();                   /* its replies waiting for the commit go out first */
        take_over(c, kind, direct, &res, &run);
        if (t->victim >= 0 && !handed_over) {
            struct client *v = &clients[(unsigned)t->victim % w.nclients];
            if (v != c && v->pc != NULL)
                lose(v);
        }
        handed_over = 1;
        if (res.last) {
            if (t->ignore_last)
                MUST(xsd_poller_serve(w.poller, 0, out, w.out_cap, &run, &res) ==
                     XSD_POLL_NONE);
            break;
        }
    }
    struct xsd_poll_sample samples[XSD_POLL_SAMPLES];
    unsigned n = xsd_poller_samples(w.poller, samples, XSD_POLL_SAMPLES);
    for (unsigned i = 0; i < n; i++)
        MUST(answered_in_c(samples[i].op));
    /* The count carried on from one sampled request to the next stays within one period. */
    MUST(w.sample_every == 0 || xsd_poller_countdown(w.poller) < w.sample_every);
    MUST(xsd_poller_direct_batches(w.poller) >= w.direct_batches);
    w.direct_batches = xsd_poller_direct_batches(w.poller);
    MUST(xsd_store_check(w.store) == 0);
}

static void client_reset(struct client *c)
{
    c->state = SLOT_EMPTY;
    c->mine = c->theirs = -1;
    c->id = 0;
    c->conn = NULL;
    c->pc = NULL;
    c->session = -1;
    c->reading = 1;
    c->direct = 0;
    c->direct_epoch = 0;
    c->accounted = 1;
    c->broken = 0;
    c->got_lost = 0;
    c->next_req = 1;
    c->gen.len = 0;
    c->sent = 0;
    c->python.len = 0;
    c->python_whole = 0;
    c->got.len = 0;
    c->filler = 0;
    c->python_events = 0;
    c->ntxns = 0;
}

/* A new connection in slot (its sockets on fd number `number` when >= 0, which is
 * free, or past HIGH_FD when high), registered as Connection.connection_made does. */
static void connect_client(unsigned slot, int number, int high, int direct)
{
    static const struct xsd_quotas roomy = {
        .node_size = 2048, .permissions = 8, .nodes = 1000, .memory = 1u << 20,
        .memory_soft = 1u << 20 };
    struct client *c = &clients[slot];
    int sv[2];
    MUST(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    int mine = sv[0], theirs = sv[1];
    if (number >= 0 && sv[1] == number) {
        mine = sv[1];                       /* the ends are alike */
        theirs = sv[0];
    } else if (number >= 0 && sv[0] != number) {
        MUST(dup3(sv[0], number, O_CLOEXEC) == number);
        close(sv[0]);
        mine = number;
    } else if (number < 0 && high) {
        mine = fcntl(sv[0], F_DUPFD_CLOEXEC, HIGH_FD);
        MUST(mine >= 0);
        close(sv[0]);
    }
    MUST(fcntl(mine, F_SETFL, fcntl(mine, F_GETFL) | O_NONBLOCK) == 0);
    if (w.small_sndbuf) {
        int small = SMALL_SNDBUF;
        MUST(setsockopt(mine, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    }
    client_reset(c);
    c->mine = mine;
    c->theirs = theirs;
    c->id = (++w.generation << 3) | slot;
    c->conn = xsd_conn_new(w.engine);
    MUST(c->conn != NULL);
    int guest = slot == 3;
    xsd_conn_configure(c->conn, guest ? 1 : 0, -1, !guest, 0, 2048);
    if (guest) {
        xsd_conn_quotas(c->conn, &roomy);
        xsd_conn_txn_quotas(c->conn, 4, 64);
    }
    c->session = xsd_wreg_session_new(w.reg);
    MUST(c->session >= 0);
    MUST(xsd_wreg_session_set(w.reg, (uint32_t)c->session, guest ? 1 : 0, -1, !guest) == 0);
    xsd_conn_watches(c->conn, c->session, guest ? 8 : 0, 0);
    c->pc = xsd_pconn_new(w.poller, c->conn, mine, c->id);
    MUST(c->pc != NULL);
    c->state = SLOT_OPEN;
    if (direct) {
        c->direct = 1;
        c->direct_epoch = w.epoch;
        xsd_pconn_direct(c->pc, 1, w.epoch);
    }
}

/* The transport closes c's socket before its pconn is freed, and its fd number goes
 * to a new connection in the same slot. */
static void reconnect_on_the_same_fd(unsigned slot)
{
    struct client *c = &clients[slot];
    int number = c->mine;
    MUST(w.nzombies < ZOMBIES_MAX);
    end_session(c);
    close_sockets(c);
    w.zombies[w.nzombies].pc = c->pc;
    w.zombies[w.nzombies].conn = c->conn;
    w.zombies[w.nzombies++].id = c->id;
    c->pc = NULL;
    c->conn = NULL;
    connect_client(slot, number, 0, 1);
}

static const uint32_t request_types[16] = {
    T_READ, T_READ, T_WRITE, T_WRITE, T_WRITE, T_MKDIR, T_RM, T_DIRECTORY,
    T_DIRECTORY_PART, T_GET_PERMS, T_SET_PERMS, T_WATCH, T_UNWATCH,
    T_TRANSACTION_START, T_TRANSACTION_END, T_GET_DOMAIN_PATH,
};

/* One request of client c (in slot) from three input bytes (type and tx_id, path,
 * detail), appended to its outgoing bytes while it can send; 0 when the input ran
 * out. Paths of up to three components from a, b, w, c (detail bit 7: relative). */
static int request(struct client *c, unsigned slot, struct input *in)
{
    static const char names[4] = { 'a', 'b', 'w', 'c' };
    static const char *const perms[5] = { "n0", "r0", "b0\0r1", "n1", "w0\0n1" };
    static const size_t perms_len[5] = { 3, 3, 6, 3, 6 };
    static const char *const suffixes[3] = { "", "t", "u" };
    char payload[2 * XSD_REPLY_MAX];
    size_t n = 0;
    uint8_t t, p, q;

    if (!take(in, &t) || !take(in, &p) || !take(in, &q))
        return 0;
    uint32_t type = request_types[t & 15];
    uint32_t tx_id = (t >> 4) < 12 ? 0 : (uint32_t)(t >> 4) - 11;  /* 1-4: START's ids */
    if ((type == T_WATCH || type == T_UNWATCH) && (q & 0x40)) {
        memcpy(payload, "@releaseDomain", 14);
        n = 14;
    } else if ((p & 3) == 0) {
        payload[n++] = '/';
    } else {
        for (unsigned i = 0; i < (p & 3u); i++) {
            if (i > 0 || !(q & 0x80))
                payload[n++] = '/';
            payload[n++] = names[(p >> (2 + 2 * i)) & 3];
        }
    }
    payload[n++] = '\0';
    switch (type) {
    case T_WRITE: {
        size_t len = (q & 31u) * (q & 32 ? 64u : 1u);   /* READs of it: bursts of replies */
        memset(payload + n, 'v', len);
        n += len;
        break;
    }
    case T_SET_PERMS:
        memcpy(payload + n, perms[q % 5], perms_len[q % 5]);
        n += perms_len[q % 5];
        break;
    case T_WATCH:
    case T_UNWATCH:
        payload[n++] = (char)('0' + slot);          /* the event tells whose it is */
        if (q % 4 == 3) {
            memset(payload + n, 'x', LONG_TOKEN);
            n += LONG_TOKEN;
        } else {
            size_t len = strlen(suffixes[q % 4]);
            memcpy(payload + n, suffixes[q % 4], len);
            n += len;
        }
        payload[n++] = '\0';
        break;
    case T_DIRECTORY_PART:
        n += (size_t)snprintf(payload + n, sizeof payload - n, "%u", (q & 7u) * 2) + 1;
        break;
    case T_TRANSACTION_START:
        n = 1;
        payload[0] = '\0';
        break;
    case T_TRANSACTION_END:
        payload[0] = q & 1 ? 'T' : 'F';
        payload[1] = '\0';
        n = 2;
        break;
    default:
        break;
    }
    if (c->state != SLOT_OPEN || c->next_req > MAX_REQS)
        return 1;
    size_t at = c->gen.len;
    if (!put_packet(&c->gen, type, c->next_req, tx_id, payload, n))
        return 1;
    c->req_at[c->next_req] = (uint32_t)at;
    c->req_type[c->next_req] = (uint8_t)type;
    c->next_req++;
    return 1;
}

static void client_send(struct client *c, size_t want)
{
    if (c->state != SLOT_OPEN || want == 0)
        return;
    ssize_t n = send(c->theirs, c->gen.buf + c->sent, want, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0)
        c->sent += (size_t)n;
}

/* Output the client has not read fills its socket: the poller's sends fail EAGAIN. */
static void fill(struct client *c)
{
    static const char filler[4096];
    for (int i = 0; i < FILL_SENDS; i++) {
        ssize_t n = send(c->mine, filler, sizeof filler, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            break;
        c->filler += (size_t)n;
    }
}

static void operate(uint8_t ctl, struct input *in)
{
    unsigned op = ctl & 15u, arg = ctl >> 4;
    unsigned slot = (arg & 3u) % w.nclients;
    struct client *c = &clients[slot];
    uint8_t b = 0;

    switch (op) {
    case 0: case 1: case 2: case 3: case 4: {
        if (!take(in, &b))
            return;
        for (unsigned i = 0; i < (b & 3u); i++)
            if (!request(c, slot, in))
                return;
        if (b & 4) {
            uint8_t len = 0;
            char raw[64];
            (void)take(in, &len);
            size_t got = take_raw(in, raw, len & 63u);
            if (c->state == SLOT_OPEN && got <= sizeof c->gen.buf - c->gen.len) {
                memcpy(c->gen.buf + c->gen.len, raw, got);
                c->gen.len += got;
                c->accounted = 0;       /* its req_ids and framing are no longer ours */
            }
        }
        size_t want = c->gen.len - c->sent;
        if (b & 8) {
            uint8_t cut = 0;
            (void)take(in, &cut);
            if (cut < want)
                want = cut;
        }
        client_send(c, want);
        return;
    }
    case 5: case 6: case 7: {
        struct turn t = { -1, 0, (arg & 2) != 0, -1, (arg & 8) != 0 };
        if (arg & 1) {
            (void)take(in, &b);
            t.fail_after = b & 63;
            t.sticky = (b >> 6) & 1;
        }
        if (arg & 4) {
            (void)take(in, &b);
            t.victim = b & 3;
        }
        serve_turn(&t);
        return;
    }
    case 8:
        commit();
        return;
    case 9:
        if (!(arg & 4)) {
            direct_off(c);
            return;
        }
        (void)take(in, &b);
        /* Connection.go_direct: nothing of the client waits in Python's decoder. */
        if (c->pc != NULL && !c->broken && c->python_whole == c->python.len) {
            uint64_t epoch = (arg & 8) && w.epoch ? w.epoch - 1 : w.epoch;
            xsd_conn_inline_events(c->conn, b & 3u, b & 4 ? 64 : sizeof out);
            xsd_pconn_direct(c->pc, 1, epoch);
            c->direct = 1;
            c->direct_epoch = epoch;
        }
        return;
    case 10:
        xsd_poller_epoch(w.poller, ++w.epoch);
        return;
    case 11:
        commit();
        w.journaling = !w.journaling;
        xsd_poller_journaling(w.poller, w.journaling);
        xsd_store_track(w.store, w.journaling);
        return;
    case 12:
        if (c->pc != NULL)
            MUST(xsd_pconn_watcher(c->pc, arg & 8 ? -1 : c->session, (arg & 4) != 0) == 0);
        return;
    case 13:
        if ((arg & 4) && c->pc != NULL && c->theirs >= 0) {
            commit();           /* no partial frame of the poller's waits for that socket */
            drain(c);
            fill(c);
        } else {
            drain(c);
        }
        return;
    case 14:
        if (c->pc != NULL) {
            MUST(xsd_pconn_reading(c->pc, (arg & 4) != 0) == 0);
            c->reading = (arg & 4) != 0;
        }
        return;
    default:
        free_zombies();
        if (c->state == SLOT_EMPTY) {
            connect_client(slot, -1, (arg & 4) != 0, (arg & 8) != 0);
        } else if (!(arg & 4)) {
            if ((arg & 8) && c->theirs >= 0) {
                close(c->theirs);
                c->theirs = -1;
                c->state = SLOT_LOST;
                if (c->pc == NULL)
                    lose(c);
            } else if (c->state == SLOT_OPEN) {
                MUST(shutdown(c->theirs, SHUT_WR) == 0);
                c->state = SLOT_SHUT;
            }
        } else if (!(arg & 8) || c->pc == NULL) {
            lose(c);
        } else {
            reconnect_on_the_same_fd(slot);
        }
        return;
    }
}

static void setup(uint8_t config, uint8_t watchers, uint8_t watches, uint8_t long_tokens)
{
    static char token[LONG_TOKEN];
    static const char *const watch_paths[4] = { NULL, "/a", "/b", "/" };
    hooks_fail_after(-1, 0);
    memset(&w, 0, sizeof w);
    w.store = xsd_store_new();
    w.trie = xsd_trie_new();
    w.engine = w.store && w.trie ? xsd_engine_new(w.store, w.trie) : NULL;
    w.reg = w.engine ? xsd_wreg_new(w.trie, w.store) : NULL;
    MUST(w.reg != NULL);
    xsd_engine_watches(w.engine, w.reg);
    MUST(xsd_engine_domain_known(w.engine, 1, 1) == 0);
    /* The guest's home, its own (relative paths land there). */
    MUST(xsd_store_write(w.store, "/local/domain", 13, "", 0, "n0", 3) >= 0);
    MUST(xsd_store_write(w.store, "/local/domain/1", 15, "", 0, "n1", 3) >= 0);
    w.poller = xsd_poller_new(w.engine, w.store, config & 4 ? 1u << 16 : 0);
    MUST(w.poller != NULL);
    w.nclients = config & 1 ? 4 : 3;
    w.journaling = (config >> 1) & 1;
    xsd_poller_journaling(w.poller, w.journaling);
    xsd_store_track(w.store, w.journaling);
    w.out_cap = (config & 0x18) == 0x18 ? XSD_REPLY_MAX : sizeof out;
    w.small_sndbuf = (config >> 5) & 1;
    MUST(xsd_poller_fd(w.poller) >= 0);
    if (config & 0x40) {
        w.sample_every = 3;
        xsd_poller_sample(w.poller, w.sample_every, 1);
    }
    w.release_max = config & 0x80 ? 1 : RELEASE_ITEMS;
    for (unsigned i = 0; i < CLIENTS_MAX; i++)
        client_reset(&clients[i]);
    for (unsigned i = 0; i < w.nclients; i++) {
        struct client *c = &clients[i];
        connect_client(i, -1, i == 1, (watchers >> (4 + i)) & 1);
        if ((watchers >> i) & 1)
            MUST(xsd_pconn_watcher(c->pc, c->session, 1) == 0);
        const char *path = watch_paths[(watches >> (2 * i)) & 3];
        if (path != NULL) {
            size_t token_len = (long_tokens >> i) & 1 ? LONG_TOKEN : 2;
            uint64_t order;
            memset(token, 'x', token_len);
            token[0] = (char)('0' + i);
            token[1] = 'w';
            MUST(xsd_wreg_add(w.reg, (uint32_t)c->session, path, strlen(path), token, token_len,
                              0, &order) == 0);
        }
    }
}

/* The end of the program: reading on, every byte the clients sent read and served,
 * every peer's end met, a last commit, everything read by the clients. */
static void finish(void)
{
    static const struct turn plain = { -1, 0, 0, -1, 0 };
    for (unsigned i = 0; i < w.nclients; i++) {
        struct client *c = &clients[i];
        if (c->pc != NULL && !c->reading) {
            MUST(xsd_pconn_reading(c->pc, 1) == 0);
            c->reading = 1;
        }
    }
    for (unsigned turn = 0;; turn++) {
        int unread = 0;
        MUST(turn < FINAL_TURNS);
        for (unsigned i = 0; i < w.nclients; i++) {
            struct client *c = &clients[i];
            int queued = 0;
            drain(c);
            if (c->pc == NULL)
                continue;
            if (c->state != SLOT_OPEN || (ioctl(c->mine, FIONREAD, &queued) == 0 && queued > 0))
                unread = 1;             /* bytes to read, or its peer's end to meet */
        }
        if (!unread)
            break;
        serve_turn(&plain);
    }
    commit();
    for (unsigned i = 0; i < w.nclients; i++)
        drain(&clients[i]);
}

/* A WATCH_EVENT's payload: "path NUL token NUL"; the token starts with digit when
 * digit >= 0 (the client's own watch). */
static int event_ok(const char *payload, size_t len, int digit)
{
    const char *nul = memchr(payload, '\0', len);
    if (nul == NULL || nul == payload || payload[len - 1] != '\0')
        return 0;
    const char *token = nul + 1;
    size_t token_len = len - (size_t)(token - payload);
    if (token_len == 0 || memchr(token, '\0', token_len) != payload + len - 1)
        return 0;
    return digit < 0 || (token_len >= 2 && token[0] == '0' + digit);
}

static void check_client(unsigned slot)
{
    struct client *c = &clients[slot];
    size_t at = 0, flen;
    uint64_t events = 0;
    uint32_t last_req = 0;

    if ((c->state != SLOT_OPEN && c->state != SLOT_SHUT) || c->got_lost)
        return;
    memset(answered, 0, c->next_req);
    memset(handed, 0, c->next_req);
    /* What it received: whole packets, replies in order, events well formed. */
    while (at < c->got.len) {
        const char *f = c->got.buf + at;
        MUST(frame_at(f, c->got.len - at, &flen) == 1);
        if (field(f, 0) == T_WATCH_EVENT) {
            MUST(field(f, 1) == 0 && field(f, 2) == 0);
            MUST(event_ok(f + XSD_HEADER_SIZE, flen - XSD_HEADER_SIZE,
                          c->accounted ? (int)slot : -1));
            events++;
        } else if (c->accounted) {
            uint32_t req = field(f, 1);
            MUST(req > last_req && req < c->next_req);  /* in order, once, one of its own */
            MUST(field(f, 0) == c->req_type[req] || field(f, 0) == T_ERROR);
            answered[req] = 1;
            last_req = req;
        }
        at += flen;
    }
    MUST(events == xsd_conn_events_written_count(c->conn) + c->python_events);
    if (!c->accounted)
        return;
    /* What Python got: its packets, byte for byte. */
    MUST(!c->broken);
    for (at = 0; at < c->python_whole; at += flen) {
        const char *f = c->python.buf + at;
        MUST(frame_at(f, c->python_whole - at, &flen) == 1);
        uint32_t req = field(f, 1);
        MUST(req >= 1 && req < c->next_req && !handed[req]);
        MUST(memcmp(f, c->gen.buf + c->req_at[req], flen) == 0);
        handed[req] = 1;
    }
    /* Every request sent whole answered exactly once; none other. */
    size_t whole_end = 0;
    for (uint32_t req = 1; req < c->next_req; req++) {
        size_t end = c->req_at[req] + XSD_HEADER_SIZE + field(c->gen.buf + c->req_at[req], 3);
        if (end <= c->sent) {
            MUST(answered[req] + handed[req] == 1);
            whole_end = end;
        } else {
            MUST(answered[req] + handed[req] == 0);
        }
    }
    /* The partial packet it sent last: the pconn's or Python's, whole, not both. */
    if (c->pc != NULL) {
        const char *held;
        size_t held_len = xsd_pconn_held(c->pc, &held), tail = c->sent - whole_end,
               python_tail = c->python.len - c->python_whole;
        MUST(held_len + python_tail == tail && (held_len == 0 || python_tail == 0));
        MUST(held_len == 0 || memcmp(held, c->gen.buf + whole_end, held_len) == 0);
        MUST(python_tail == 0 ||
             memcmp(c->python.buf + c->python_whole, c->gen.buf + whole_end, python_tail) == 0);
    }
}

static void teardown(void)
{
    free_zombies();
    for (unsigned i = 0; i < w.nclients; i++)
        if (clients[i].state != SLOT_EMPTY)
            lose(&clients[i]);
    xsd_poller_free(w.poller);
    xsd_engine_watches(w.engine, NULL);
    xsd_wreg_free(w.reg);
    xsd_engine_free(w.engine);
    xsd_trie_free(w.trie);
    xsd_store_free(w.store);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { data, size };
    uint8_t config = 0, watchers = 0, watches = 0, long_tokens = 0, ctl;

    (void)take(&in, &config);
    (void)take(&in, &watchers);
    (void)take(&in, &watches);
    (void)take(&in, &long_tokens);
    setup(config, watchers, watches, long_tokens);
    for (unsigned ops = 0; ops < MAX_OPS && take(&in, &ctl); ops++)
        operate(ctl, &in);
    finish();
    for (unsigned i = 0; i < w.nclients; i++)
        check_client(i);
    MUST(xsd_store_check(w.store) == 0);
    teardown();
    MUST(hooks_live_blocks() == 0);
    return 0;
}
