/*
 * poller.h: socket clients' batches read, answered and written in C.
 *
 * With eight clients at once the daemon's cost per request was mostly the
 * Python between the event loop's wakeup and the write: a callback per
 * connection per batch (data_received), the batch's bytes made a Python
 * object, the C path's crossing, the reply made a Python object and handed
 * to the transport. The poller takes that whole way into C for the common
 * batch: one epoll set holds the socket connections; the event loop calls
 * Python once when any of them is readable, and one crossing
 * (xsd_poller_serve) reads each ready connection, runs the engine on what it
 * read (xsd_engine_run) and sends the replies with one send(2) each.
 *
 * The poller answers and writes a connection's batch itself only while
 * Python says it may (xsd_pconn_direct: nothing of that client waits in
 * Python: no queued output or backlog, no partial packet in Python's
 * decoder, the transport's buffer empty, its conn configured as the current
 * epoch says) and only when the run is one Python would have ended by
 * writing the replies straight to the socket (fastpath.py): the engine
 * answered every whole packet (XSD_RUN_DONE), fired no watch, wrote no
 * initial event, logged no watch, and, when a journal must hold a change
 * before its reply is seen (xsd_poller_journaling), changed nothing and left
 * the store's change log empty. Everything else is handed to Python, one
 * connection at a time, in the order read (struct xsd_poll's kind):
 *   BYTES   what was read, unanswered: Python's path (its decoder and the C
 *           path through fastpath.py) takes it as the transport's
 *           data_received would have;
 *   RUN     the engine ran on what was read and stopped where Python takes
 *           over: *run as xsd_engine_run filled it, its replies in out;
 *           Python finishes the batch as it finishes any run of the C path;
 *   UNSENT  the batch was answered but the socket took only part of its
 *           replies: Python writes the rest (out[sent..run->out_len)) to
 *           the transport, which buffers it, and stops the direct writes;
 *   CLOSED  end of file or a read error (err): Python lets the transport
 *           read again, which sees it and closes as it always does.
 * Journaling, replies that may show a change the journal does not hold yet
 * wait in C, per pconn, after what waits there already (a later READ's too,
 * to keep the order); the turn ends with XSD_POLL_COMMIT, Python commits and
 * xsd_poller_release sends them. A connection with replies waiting whose next
 * batch needs Python is handed over with held set: Python commits and releases
 * first.
 *
 * A partial packet at the end of a direct batch (libxenstore writes a header
 * and its payload apart) is held by the pconn and put before the next read;
 * it goes to Python with the next BYTES, so nothing read is ever lost.
 *
 * fds: the caller owns every socket (the event loop's transport does); the
 * poller only reads and writes them. An fd the transport closes leaves the
 * epoll set by itself (Linux drops a closed file's registrations), and the
 * poller keeps, per fd number, which pconn registered it last, so a pconn
 * whose fd number was closed and given to a new connection never reads,
 * writes or unregisters the new one's. That table knows only connections
 * registered here: a pconn must be freed before its socket is closed if it
 * may still have replies or events to send (a release, another's events), or
 * they could go to whatever file took the number. asyncio's transports call
 * connection_lost, which frees it, before they close the socket.
 *
 * One thread (the event loop's). No allocation per batch: the input buffer
 * is the poller's, the output the caller's, a pconn's held bytes allocated
 * once (at its first partial packet).
 */
#ifndef XSD_POLLER_H
#define XSD_POLLER_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xsd_poller xsd_poller;   /* opaque */
typedef struct xsd_pconn xsd_pconn;     /* opaque */

/* Kinds of struct xsd_poll (the value xsd_poller_serve returns). */
#define XSD_POLL_NONE    0  /* every connection ready this turn is served */
#define XSD_POLL_BYTES   1
#define XSD_POLL_RUN     2
#define XSD_POLL_UNSENT  3
#define XSD_POLL_CLOSED  4
#define XSD_POLL_COMMIT  5  /* replies wait for the journal's commit (xsd_poller_release) */

/* Ready connections taken from the epoll set per turn. */
#define XSD_POLL_EVENTS  64u

struct xsd_poll {
    uint64_t id;        /* the pconn's id (xsd_pconn_new) */
    int kind;           /* XSD_POLL_* */
    int err;            /* CLOSED: errno of the failed recv, 0 at end of file */
    const char *data;   /* BYTES, RUN: what was read (the held partial packet first), */
    size_t data_len;    /* valid until the next xsd_poller_serve; else NULL, 0 */
    size_t sent;        /* UNSENT: bytes of out[0..run->out_len) the socket took */
    int held;           /* the pconn has replies waiting for the commit: Python commits
                           and releases them (Daemon.flush) before it takes this */
    unsigned waiting;   /* COMMIT: how many pconns have replies waiting for it */
    int last;           /* nothing more this turn: no need to call again (NONE would come) */
};

/* One pconn's replies released after the commit (xsd_poller_release). */
struct xsd_released {
    uint64_t id;
    uint64_t journaled;     /* payload bytes of its journaled requests among them */
    const char *rest;       /* what the socket did not take, for Python's transport: */
    size_t rest_len;        /* valid until the next serve or release; else NULL, 0 */
};

/* A poller running engine e over store (e's store: its change log says
 * whether replies may go out before a journal commit), reading at most
 * in_cap bytes per connection per turn (at least XSD_REPLY_MAX), or NULL
 * with errno set (ENOMEM, or epoll_create1's). Borrows e and store. */
xsd_poller *xsd_poller_new(xsd_engine *e, xsd_store *store, size_t in_cap);

/* Free p (its epoll fd closed; pconns must be freed first by their owners).
 * NULL does nothing. */
void xsd_poller_free(xsd_poller *p);

/* The epoll fd: readable when some connection is (the event loop watches it). */
int xsd_poller_fd(const xsd_poller *p);

/* The epoch a pconn's direct permission must carry (xsd_pconn_direct) to be
 * used: Python bumps it whenever every session's conn must be configured
 * again (fastpath.py's epoch). */
void xsd_poller_epoch(xsd_poller *p, uint64_t epoch);

/* on != 0: a journal must write a change before a reply showing it can be
 * seen, so a run that journaled or left changes in the store's log is RUN. */
void xsd_poller_journaling(xsd_poller *p, int on);

/* Batches answered and written by the poller itself since p was made. */
uint64_t xsd_poller_direct_batches(const xsd_poller *p);

/* Register fd (a connected, non-blocking stream socket) for conn c under
 * id, reading on, direct off. NULL with errno set (ENOMEM, EBADF,
 * epoll_ctl's). c is borrowed: the caller frees the pconn first. */
xsd_pconn *xsd_pconn_new(xsd_poller *p, xsd_conn *c, int fd, uint64_t id);

/* Unregister and free pc (also from the turn's ready list). NULL does
 * nothing. Its held partial packet, if any, is dropped: take it first
 * (xsd_pconn_held) if it matters. */
void xsd_pconn_free(xsd_pconn *pc);

/* Reading on or off (a client whose output is paused is not read). 0, or
 * -errno of epoll_ctl. */
int xsd_pconn_reading(xsd_pconn *pc, int on);

/* pc's session's handle in the engine's watch registry (-1: none) and whether
 * the poller may write it the watch events another connection's direct batch
 * fires (Python: nothing of the client waits, its budget and --max-watch-events
 * allow one, no event is owed). A run whose every delivery goes to such a
 * direct watcher, one event each, not the writer itself, is written here: the
 * writer's replies, then each event (counted on the watcher's conn:
 * xsd_conn_events_written); journaling, the events wait for the commit with the
 * writer's replies; what a watcher's socket does not take waits likewise and
 * goes to Python's transport at the release. Any other run that fired is RUN.
 * 0 or -ENOMEM. */
int xsd_pconn_watcher(xsd_pconn *pc, int64_t session, int events);

/* Whether the poller may answer and write pc's batches itself (above),
 * given for epoch: a pconn whose epoch is not the poller's is BYTES. */
void xsd_pconn_direct(xsd_pconn *pc, int on, uint64_t epoch);

/* The partial packet pc holds (put before its next read), its length, and
 * *bytes pointing at it (valid until pc's next read or free); 0 for none. */
size_t xsd_pconn_held(const xsd_pconn *pc, const char **bytes);

/* After the journal's commit: send every waiting pconn's replies, up to max
 * pconns, each described in items; returns how many (call again while it
 * returns max). */
unsigned xsd_poller_release(xsd_poller *p, struct xsd_released *items, unsigned max);

/* Latency samples (Python's --metrics, xsd/core/stats.py): with every != 0,
 * one request in every the poller's runs answer is timed, charged its run's
 * mean (as fastpath.py's _sample charges a batch), and kept for Python to
 * take (xsd_poller_samples); past XSD_POLL_SAMPLES kept, samples are skipped
 * until Python takes them. 0: none (the default). countdown: requests until
 * the next sample (Python's count, which the poller carries on while it runs:
 * xsd_poller_countdown gives it back). */
#define XSD_POLL_SAMPLES 256u
struct xsd_poll_sample {
    uint32_t op;        /* the request's type */
    uint32_t ns;        /* nanoseconds (its run's mean; capped at UINT32_MAX) */
};
void xsd_poller_sample(xsd_poller *p, uint32_t every, uint32_t countdown);
uint32_t xsd_poller_countdown(const xsd_poller *p);

/* Take up to max samples kept (oldest first) into out; how many. */
unsigned xsd_poller_samples(xsd_poller *p, struct xsd_poll_sample *out, unsigned max);

/* Serve ready connections. poll != 0 takes the ready ones from the epoll set
 * first (without waiting; the event loop says some are); 0 goes on with the
 * ones left from the last call. Returns at the first connection Python must
 * see (*res filled, its kind returned), or XSD_POLL_NONE once every ready
 * one is served, except that once per release, when replies wait for the
journal's commit, it returns XSD_POLL_COMMIT first. out[0..cap) (cap >= XSD_REPLY_MAX) and *run are the
 * engine's run output (xsd_engine_run), valid for a RUN or UNSENT until the
 * next call. */
int xsd_poller_serve(xsd_poller *p, int poll, char *out, size_t cap, struct xsd_run *run,
                     struct xsd_poll *res);

#ifdef __cplusplus
}
#endif

#endif /* XSD_POLLER_H */
