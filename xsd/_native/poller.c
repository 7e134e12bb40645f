/*
 * poller.c: socket clients' batches read, answered and written in C
 * (poller.h says what and why).
 */
#define _GNU_SOURCE
#include "poller.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "delivery.h"

/* Room for replies waiting for the commit that a pconn keeps between commits. */
#define XSD_PENDING_KEPT (4u * XSD_REPLY_MAX)

struct xsd_pconn {
    xsd_poller *poller;
    xsd_conn *conn;
    uint64_t id;
    uint64_t epoch;         /* the epoch direct was given for */
    int fd;
    int reading;
    int direct;
    char *held;             /* XSD_REPLY_MAX bytes once a partial packet was held */
    size_t held_len;
    char *pending;          /* replies waiting for the journal's commit (poller.h) */
    size_t pending_len, pending_cap;
    uint64_t pending_journaled;
    xsd_pconn *next_waiting;    /* the poller's waiting list, */
    int waiting;                /* ... while on it */
    int64_t watcher;            /* its session's handle in the watch registry; -1: none */
    int events;                 /* Python lets the poller write its watch events */
    uint64_t event_run;         /* the run that last wrote it an event (one per run) */
};

struct xsd_poller {
    xsd_engine *engine;
    xsd_store *store;
    int epfd;
    int journaling;
    uint64_t epoch;
    uint64_t direct_batches;
    char *in;               /* in_cap bytes: a pconn's held bytes, then what recv read */
    size_t in_cap;
    xsd_pconn **by_fd;      /* fd number -> the pconn that registered it last */
    size_t by_fd_len;
    xsd_pconn *ready[XSD_POLL_EVENTS];  /* this turn's, in epoll's order; NULL: freed */
    unsigned ready_at, ready_n;
    uint32_t sample_every;  /* 0: no latency samples */
    uint32_t countdown;     /* requests until the next one sampled */
    struct xsd_poll_sample samples[XSD_POLL_SAMPLES];
    unsigned samples_n;
    xsd_pconn **by_watcher; /* watch registry session handle -> its pconn */
    size_t by_watcher_len;
    uint64_t runs;          /* runs made, numbering event_run */
    char frame[XSD_REPLY_MAX];  /* one watch event being written */
    /* pconns with replies waiting for the commit, in the order they began to wait:
     * released so, a writer's replies before the events its batch gave watchers, as
     * Daemon.flush writes them without a journal. */
    xsd_pconn *waiting;
    xsd_pconn **waiting_end;    /* the last one's next_waiting, or &waiting */
    unsigned waiting_n;
    int waiting_told;       /* XSD_POLL_COMMIT returned for them since the last release */
};

xsd_poller *xsd_poller_new(xsd_engine *e, xsd_store *store, size_t in_cap)
{
    if (in_cap < XSD_REPLY_MAX)
        in_cap = XSD_REPLY_MAX;
    xsd_poller *p = XSD_CALLOC(1, sizeof(*p));
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    p->in = XSD_MALLOC(in_cap);
    if (p->in == NULL) {
        XSD_FREE(p);
        errno = ENOMEM;
        return NULL;
    }
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        int err = errno;
        XSD_FREE(p->in);
        XSD_FREE(p);
        errno = err;
        return NULL;
    }
    p->engine = e;
    p->store = store;
    p->in_cap = in_cap;
    p->waiting_end = &p->waiting;
    return p;
}

void xsd_poller_free(xsd_poller *p)
{
    if (p == NULL)
        return;
    close(p->epfd);
    XSD_FREE(p->by_fd);
    XSD_FREE(p->by_watcher);
    XSD_FREE(p->in);
    XSD_FREE(p);
}

int xsd_poller_fd(const xsd_poller *p)
{
    return p->epfd;
}

void xsd_poller_epoch(xsd_poller *p, uint64_t epoch)
{
    p->epoch = epoch;
}

void xsd_poller_journaling(xsd_poller *p, int on)
{
    p->journaling = on != 0;
}

uint64_t xsd_poller_direct_batches(const xsd_poller *p)
{
    return p->direct_batches;
}

/* The table *table of *len pconns (by fd number, by watcher handle) covers index,
 * grown by doubling, new entries NULL; 0 or -ENOMEM (the table unchanged). */
static int cover(xsd_pconn ***table, size_t *len, size_t index)
{
    if (index < *len)
        return 0;
    size_t want = *len ? *len : 64;
    while (want <= index) {
        if (want > SIZE_MAX / 2 / sizeof(**table))
            return -ENOMEM;
        want *= 2;
    }
    xsd_pconn **grown = XSD_REALLOC(*table, want * sizeof(*grown));
    if (grown == NULL)
        return -ENOMEM;
    memset(grown + *len, 0, (want - *len) * sizeof(*grown));
    *table = grown;
    *len = want;
    return 0;
}

/* pc still owns its fd number in the epoll set (its fd was not closed and
 * given to a connection registered since). */
static int owns_fd(const xsd_pconn *pc)
{
    const xsd_poller *p = pc->poller;
    return pc->fd >= 0 && (size_t)pc->fd < p->by_fd_len && p->by_fd[pc->fd] == pc;
}

xsd_pconn *xsd_pconn_new(xsd_poller *p, xsd_conn *c, int fd, uint64_t id)
{
    if (fd < 0) {
        errno = EBADF;
        return NULL;
    }
    if (cover(&p->by_fd, &p->by_fd_len, (size_t)fd)) {
        errno = ENOMEM;
        return NULL;
    }
    xsd_pconn *pc = XSD_CALLOC(1, sizeof(*pc));
    if (pc == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    pc->poller = p;
    pc->conn = c;
    pc->watcher = -1;
    pc->id = id;
    pc->fd = fd;
    pc->reading = 1;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = pc };
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        /* EEXIST: the fd number is registered by a pconn whose socket is still
         * open under it (a dup); anything else: epoll's own refusal. */
        int err = errno;
        XSD_FREE(pc);
        errno = err;
        return NULL;
    }
    xsd_pconn *before = p->by_fd[fd];
    if (before != NULL)
        before->fd = -1;    /* its socket was closed: that number is this one's now */
    p->by_fd[fd] = pc;
    return pc;
}

void xsd_pconn_free(xsd_pconn *pc)
{
    if (pc == NULL)
        return;
    xsd_poller *p = pc->poller;
    if (owns_fd(pc)) {
        /* Fails with EBADF or ENOENT when the socket was closed first: nothing
         * is registered then. */
        (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, pc->fd, NULL);
        p->by_fd[pc->fd] = NULL;
    }
    for (unsigned i = p->ready_at; i < p->ready_n; i++)
        if (p->ready[i] == pc)
            p->ready[i] = NULL;
    if (pc->watcher >= 0 && (size_t)pc->watcher < p->by_watcher_len &&
        p->by_watcher[pc->watcher] == pc)
        p->by_watcher[pc->watcher] = NULL;
    if (pc->waiting)
        for (xsd_pconn **at = &p->waiting; *at != NULL; at = &(*at)->next_waiting)
            if (*at == pc) {
                *at = pc->next_waiting;
                if (p->waiting_end == &pc->next_waiting)
                    p->waiting_end = at;
                p->waiting_n--;
                break;
            }
    XSD_FREE(pc->held);
    XSD_FREE(pc->pending);
    XSD_FREE(pc);
}

int xsd_pconn_reading(xsd_pconn *pc, int on)
{
    on = on != 0;
    if (pc->reading == on)
        return 0;
    if (owns_fd(pc)) {
        struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.ptr = pc };
        if (epoll_ctl(pc->poller->epfd, EPOLL_CTL_MOD, pc->fd, &ev))
            return -errno;
    }
    pc->reading = on;
    return 0;
}

int xsd_pconn_watcher(xsd_pconn *pc, int64_t session, int events)
{
    xsd_poller *p = pc->poller;
    if (session != pc->watcher) {
        if (session >= 0 && cover(&p->by_watcher, &p->by_watcher_len, (size_t)session))
            return -ENOMEM;
        if (pc->watcher >= 0 && p->by_watcher[pc->watcher] == pc)
            p->by_watcher[pc->watcher] = NULL;
        pc->watcher = session;
        if (session >= 0)
            p->by_watcher[session] = pc;
    }
    pc->events = events != 0;
    return 0;
}

void xsd_pconn_direct(xsd_pconn *pc, int on, uint64_t epoch)
{
    pc->direct = on != 0;
    pc->epoch = epoch;
}

size_t xsd_pconn_held(const xsd_pconn *pc, const char **bytes)
{
    *bytes = pc->held;
    return pc->held_len;
}

/* Keep in[0..len) (a partial packet, under XSD_REPLY_MAX bytes) for pc's
 * next read; 0, or -ENOMEM with nothing kept. */
static int hold(xsd_pconn *pc, const char *in, size_t len)
{
    if (len == 0)
        return 0;
    if (len >= XSD_REPLY_MAX)
        return -ENOMEM;     /* not a partial packet: cannot happen after XSD_RUN_DONE */
    if (pc->held == NULL) {
        pc->held = XSD_MALLOC(XSD_REPLY_MAX);
        if (pc->held == NULL)
            return -ENOMEM;
    }
    memcpy(pc->held, in, len);
    pc->held_len = len;
    return 0;
}

static int wait_for_commit(xsd_pconn *pc, const char *out, size_t len, uint64_t journaled);

/* The pconn a delivery record's session handle names, if the poller may write it
 * the event now (poller.h); NULL: Python queues it. */
static xsd_pconn *event_target(xsd_poller *p, const xsd_pconn *writer, uint32_t session)
{
    if (session >= p->by_watcher_len)
        return NULL;
    xsd_pconn *t = p->by_watcher[session];
    if (t == NULL || t == writer || !t->direct || t->epoch != p->epoch || !t->events ||
        t->waiting || t->event_run == p->runs || !owns_fd(t))
        return NULL;
    return t;
}

/* What deliver does with the run's deliveries. */
enum { DELIVER_CHECK, DELIVER_SEND, DELIVER_WAIT };

/* Walk the run's deliveries (engine.h's groups of watchreg.h's records). CHECK:
 * whether every one can be written here (each to a direct watcher other than the
 * writer, one per watcher, within XSD_PAYLOAD_MAX, no WATCH's initial event among
 * them), marking each watcher for the run and making room for one frame in its
 * waiting replies. SEND: write each (what a socket does not take waits as replies
 * do for the commit, and is released to Python's transport); WAIT: each waits for
 * the commit (the run's changes are not in the journal yet). Each is counted on
 * the watcher's conn. 0: no (CHECK: out of memory too). */
static int deliver(xsd_poller *p, const xsd_pconn *writer, const struct xsd_run *r, int how)
{
    const char *at = r->deliveries, *end = r->deliveries + r->deliveries_len;
    while (at < end) {
        struct xsd_delivery_group grp;
        at = xsd_delivery_group_read(at, &grp);
        if (grp.reply_at & XSD_DELIVERY_AFTER)
            return 0;           /* a WATCH's initial event: Python's (or inlined) */
        for (const char *rec = grp.records; rec < grp.records_end;) {
            struct xsd_delivery d;
            rec = xsd_delivery_read(rec, grp.path, grp.path_len, &d);
            if (how == DELIVER_CHECK) {
                xsd_pconn *t = event_target(p, writer, d.session);
                if (t == NULL || xsd_event_payload(&d) > XSD_PAYLOAD_MAX)
                    return 0;
                if (t->pending_cap < XSD_REPLY_MAX) {
                    /* Room for a frame the socket may not take, made now: once the first
                     * event is written, nothing may fail (Python would queue them all). */
                    char *room = XSD_REALLOC(t->pending, XSD_REPLY_MAX);
                    if (room == NULL)
                        return 0;
                    t->pending = room;
                    t->pending_cap = XSD_REPLY_MAX;
                }
                t->event_run = p->runs;
                continue;
            }
            xsd_pconn *t = p->by_watcher[d.session];
            size_t n = xsd_event_frame(p->frame, &d);
            ssize_t sent = 0;
            if (how == DELIVER_SEND)
                sent = send(t->fd, p->frame, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent < 0)
                sent = 0;
            if ((size_t)sent < n)   /* fits the room CHECK made: cannot fail */
                (void)wait_for_commit(t, p->frame + sent, n - (size_t)sent, 0);
            xsd_conn_events_written(t->conn, 1);
        }
    }
    return 1;
}

/* The run needs nothing of Python but, perhaps, the journal's commit. Initial
 * events written among its replies (events_inlined) are counted on the conn when
 * the poller writes them (xsd_conn_events_written); where they would wait, Python
 * keeps them (Session.events_inlined: they count against later events). */
static int plain_run(const struct xsd_run *r)
{
    return r->stop == XSD_RUN_DONE && !r->watch_log_len;
}

/* A plain run's replies may show what the journal does not hold yet. */
static int needs_commit(const xsd_poller *p, const struct xsd_run *r)
{
    return p->journaling && (r->journaled != 0 || xsd_store_changes(p->store, NULL, 0) != 0);
}

/* Append out[0..len) to pc's replies waiting for the commit (pc joins the
 * waiting list); 0, or -ENOMEM with nothing appended. */
static int wait_for_commit(xsd_pconn *pc, const char *out, size_t len, uint64_t journaled)
{
    if (len > pc->pending_cap - pc->pending_len) {
        size_t cap = pc->pending_cap ? pc->pending_cap : XSD_REPLY_MAX;
        while (len > cap - pc->pending_len) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        char *grown = XSD_REALLOC(pc->pending, cap);
        if (grown == NULL)
            return -ENOMEM;
        pc->pending = grown;
        pc->pending_cap = cap;
    }
    if (!pc->waiting) {
        pc->waiting = 1;
        pc->next_waiting = NULL;
        *pc->poller->waiting_end = pc;
        pc->poller->waiting_end = &pc->next_waiting;
        pc->poller->waiting_n++;
    }
    if (len)
        memcpy(pc->pending + pc->pending_len, out, len);
    pc->pending_len += len;
    pc->pending_journaled += journaled;
    return 0;
}

unsigned xsd_poller_release(xsd_poller *p, struct xsd_released *items, unsigned max)
{
    unsigned n = 0;
    p->waiting_told = 0;
    while (p->waiting != NULL && n < max) {
        xsd_pconn *pc = p->waiting;
        p->waiting = pc->next_waiting;
        if (p->waiting == NULL)
            p->waiting_end = &p->waiting;
        pc->next_waiting = NULL;
        pc->waiting = 0;
        p->waiting_n--;
        struct xsd_released *item = &items[n++];
        item->id = pc->id;
        item->journaled = pc->pending_journaled;
        item->rest = NULL;
        item->rest_len = 0;
        ssize_t sent = 0;
        if (pc->pending_len && owns_fd(pc))
            sent = send(pc->fd, pc->pending, pc->pending_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0)
            sent = 0;
        if ((size_t)sent < pc->pending_len) {
            item->rest = pc->pending + sent;
            item->rest_len = pc->pending_len - (size_t)sent;
        }
        pc->pending_len = 0;
        pc->pending_journaled = 0;
        if (item->rest_len == 0 && pc->pending_cap > XSD_PENDING_KEPT) {
            XSD_FREE(pc->pending);  /* a burst's room is not kept for every later batch */
            pc->pending = NULL;
            pc->pending_cap = 0;
        }
    }
    return n;
}

void xsd_poller_sample(xsd_poller *p, uint32_t every, uint32_t countdown)
{
    p->sample_every = every;
    p->countdown = countdown;
}

uint32_t xsd_poller_countdown(const xsd_poller *p)
{
    return p->countdown;
}

unsigned xsd_poller_samples(xsd_poller *p, struct xsd_poll_sample *out, unsigned max)
{
    unsigned n = p->samples_n < max ? p->samples_n : max;
    memcpy(out, p->samples, n * sizeof(*out));
    memmove(p->samples, p->samples + n, (p->samples_n - n) * sizeof(*out));
    p->samples_n -= n;
    return n;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The run answered run->handled packets from in (whole, from its start) in ns:
 * those due for a sample are charged the mean (fastpath.py's _sample). */
static void sample_run(xsd_poller *p, const char *in, const struct xsd_run *run, uint64_t ns)
{
    uint32_t handled = run->handled;
    if (p->countdown >= handled) {
        p->countdown -= handled;
        return;
    }
    uint64_t mean = ns / handled;
    size_t at = 0;
    for (uint32_t index = 0; index < handled; index++) {
        uint32_t header[4];
        memcpy(header, in + at, sizeof header);
        if (index == p->countdown) {
            if (p->samples_n < XSD_POLL_SAMPLES) {
                struct xsd_poll_sample *sample = &p->samples[p->samples_n++];
                sample->op = header[0];
                sample->ns = mean > UINT32_MAX ? UINT32_MAX : (uint32_t)mean;
            }
            p->countdown += p->sample_every;
        }
        at += sizeof header + header[3];
    }
    p->countdown -= handled;
}

static int take_ready(xsd_poller *p)
{
    struct epoll_event events[XSD_POLL_EVENTS];
    int n = epoll_wait(p->epfd, events, (int)XSD_POLL_EVENTS, 0);
    p->ready_at = 0;
    p->ready_n = 0;
    for (int i = 0; i < n; i++)
        p->ready[p->ready_n++] = events[i].data.ptr;
    return n;
}

/* res for the connection Python must see now, kind given; last: nothing more this
 * turn (no ready connection left, no COMMIT to tell), so Python need not call again.
 * Only BYTES and RUN carry what was read (poller.h): an UNSENT's was answered, and a
 * CLOSED would show what a connection served before it in this call left there. */
static int hand_over(xsd_poller *p, struct xsd_poll *res, int kind)
{
    if (kind != XSD_POLL_BYTES && kind != XSD_POLL_RUN) {
        res->data = NULL;
        res->data_len = 0;
    }
    res->kind = kind;
    res->last = p->ready_at == p->ready_n && (p->waiting == NULL || p->waiting_told);
    return kind;
}

int xsd_poller_serve(xsd_poller *p, int poll, char *out, size_t cap, struct xsd_run *run,
                     struct xsd_poll *res)
{
    memset(res, 0, sizeof(*res));
    if (poll)
        take_ready(p);
    for (;;) {
        if (p->ready_at == p->ready_n) {
            if (p->waiting == NULL || p->waiting_told)
                return XSD_POLL_NONE;
            p->waiting_told = 1;
            res->waiting = p->waiting_n;
            res->kind = XSD_POLL_COMMIT;
            return res->kind;
        }
        xsd_pconn *pc = p->ready[p->ready_at++];
        if (pc == NULL || !pc->reading || !owns_fd(pc))
            continue;
        size_t have = pc->held_len;
        if (have)
            memcpy(p->in, pc->held, have);
        ssize_t n = recv(pc->fd, p->in + have, p->in_cap - have, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;   /* nothing after all; the held bytes stay held */
            res->err = errno;
        }
        res->id = pc->id;
        res->held = pc->waiting;
        if (n <= 0) {
            return hand_over(p, res, XSD_POLL_CLOSED);
        }
        pc->held_len = 0;
        size_t len = have + (size_t)n;
        res->data = p->in;
        res->data_len = len;
        if (!pc->direct || pc->epoch != p->epoch) {
            return hand_over(p, res, XSD_POLL_BYTES);
        }
        uint64_t started = p->sample_every ? now_ns() : 0;
        xsd_engine_run(p->engine, pc->conn, p->in, len, out, cap, XSD_RUN_MUTATE, run);
        if (p->sample_every && run->handled)
            sample_run(p, p->in, run, now_ns() - started);
        p->runs++;
        int fired = run->deliveries_len != 0;
        if (!plain_run(run) ||
            (fired && !deliver(p, pc, run, DELIVER_CHECK)) ||
            hold(pc, p->in + run->consumed, len - run->consumed)) {
            /* A partial packet not held goes to Python with it. */
            return hand_over(p, res, XSD_POLL_RUN);
        }
        if (run->out_len == 0 && run->journaled == 0)
            continue;           /* no whole packet yet: it is held */
        if (res->held || needs_commit(p, run)) {
            /* After the commit (and after what waits for it already). */
            if (run->events_inlined || wait_for_commit(pc, out, run->out_len, run->journaled)) {
                pc->held_len = 0;       /* the partial packet goes to Python with the run */
                return hand_over(p, res, XSD_POLL_RUN);
            }
            if (fired)                  /* its watchers' events after the commit too */
                deliver(p, pc, run, DELIVER_WAIT);
            p->direct_batches++;
            continue;
        }
        p->direct_batches++;
        if (run->events_inlined)
            xsd_conn_events_written(pc->conn, run->events_inlined);
        ssize_t sent = 0;
        if (run->out_len)
            sent = send(pc->fd, out, run->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (fired)      /* after the writer's replies, as Daemon.flush writes them */
            deliver(p, pc, run, DELIVER_SEND);
        if (sent == (ssize_t)run->out_len)
            continue;
        /* Python's transport writes the rest (and meets any error there). */
        res->sent = sent > 0 ? (size_t)sent : 0;
        return hand_over(p, res, XSD_POLL_UNSENT);
    }
}
