/*
 * floor_c.c: the C floor for the request benchmarks (bench/bench_floors.py).
 *
 * A responder that speaks the xenstore wire framing on a Unix socket and
 * answers every request with a canned reply, keeping no store: what any
 * daemon costs at least with the same client, kernel and socket here.
 * One thread, epoll; all complete packets of one read are answered with one
 * write (the same batching a daemon can do) unless they fill OUT_CAP first.
 *
 * Header: struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; } in host
 * order, payload at most 4096 bytes (xs_wire.h, XENSTORE_PAYLOAD_MAX).
 * Replies echo type, req_id and tx_id, with the shape and size of the real
 * ones for every one-client test of xsbench (../shared/anchors/xsbench.c: rw,
 * dir, tx, watch:W): READ gets 31 bytes (xsbench checks the length it wrote
 * last); DIRECTORY the listing of 1000 children named 0..999 (3890 bytes, the
 * node xsbench dir lists and counts), whatever the path; TRANSACTION_START a
 * fresh id; WATCH "OK" then the watch's initial event (path and token echoed),
 * as xenstored sends them; everything else "OK".
 *
 * Watches are one hash table of (connection, path, token), so that a WRITE
 * outside a transaction sends an event (the written path, the watch's token)
 * to each watch on that path or one of its ancestors: xsbench watch:W's client
 * A waits for the events of client B's writes.  It ignores everything else a
 * daemon fires for (MKDIR, RM, SET_PERMS, commits, special paths), a relative
 * path's ancestors, quotas and permissions; a repeated WATCH is a second entry.
 * UNWATCH and a closing connection remove watches.  Events to another connection are written to its socket at
 * once, blocking (fine for a floor: xsbench's watcher drains its events).
 *
 * Build: cc -O2 -o floor_c floor_c.c     Run: ./floor_c SOCKET_PATH
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define HEADER 16u
#define PAYLOAD_MAX 4096u
#define XS_DIRECTORY 1u
#define XS_READ 2u
#define XS_WATCH 4u
#define XS_UNWATCH 5u
#define XS_TRANSACTION_START 6u
#define XS_WRITE 11u
#define XS_WATCH_EVENT 15u
#define IN_CAP (64u * 1024u)
#define OUT_CAP (64u * 1024u)            /* > the largest reply plus the event a WATCH adds */
#define BUCKETS (1u << 16)

static const char READ_VALUE[] = "0123456789abcdef0123456789abcde";
static char listing[3890];               /* "0\0" "1\0" ... "999\0", made in main */

struct conn {
    int fd;
    size_t have;                 /* bytes of in[] not yet answered */
    size_t out_len;              /* bytes of out[] not yet written */
    unsigned char in[IN_CAP];
    unsigned char out[OUT_CAP];
};

struct watch {                   /* path NUL token NUL in text[] */
    struct watch *next;
    struct conn *conn;
    uint32_t hash;
    size_t path_len, token_len;
    char text[];
};

static struct watch *table[BUCKETS];
static size_t watch_count;
static uint32_t next_tx_id = 1;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static uint32_t hash(const char *s, size_t len)    /* FNV-1a */
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int write_all(int fd, const void *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

static int flush(struct conn *c)
{
    int rc = write_all(c->fd, c->out, c->out_len);
    c->out_len = 0;
    return rc;
}

/* Append one packet to c->out, writing out what is there first when it would not fit. */
static int emit(struct conn *c, uint32_t type, uint32_t req_id, uint32_t tx_id,
                const char *body, size_t len)
{
    if (c->out_len + HEADER + len > OUT_CAP && flush(c))
        return -1;
    uint32_t rep[4] = { type, req_id, tx_id, (uint32_t)len };
    memcpy(c->out + c->out_len, rep, HEADER);
    memcpy(c->out + c->out_len + HEADER, body, len);
    c->out_len += HEADER + len;
    return 0;
}

/* The event "path NUL token NUL" of watch w for a write of path[0..len). */
static int send_event(struct conn *self, const struct watch *w, const char *path, size_t len)
{
    char body[2 * PAYLOAD_MAX + 2];
    memcpy(body, path, len);
    body[len] = 0;
    memcpy(body + len + 1, w->text + w->path_len + 1, w->token_len + 1);
    size_t body_len = len + 1 + w->token_len + 1;
    if (w->conn == self)        /* after this connection's replies so far */
        return emit(self, XS_WATCH_EVENT, 0, 0, body, body_len);
    uint32_t hdr[4] = { XS_WATCH_EVENT, 0, 0, (uint32_t)body_len };
    /* another connection: its out[] is empty between its own batches; a failed write is its
     * closing, which epoll reports to the loop */
    if (write_all(w->conn->fd, hdr, HEADER) == 0)
        write_all(w->conn->fd, body, body_len);
    return 0;
}

/* Events for a write of path[0..len): the watches on it and on each ancestor, "/" last
 * (a relative path: only the watches on itself). */
static int fire(struct conn *self, const char *path, size_t len)
{
    for (size_t at = len; at > 0;) {
        uint32_t h = hash(path, at);
        for (struct watch *w = table[h % BUCKETS]; w; w = w->next)
            if (w->hash == h && w->path_len == at && !memcmp(w->text, path, at)
                && send_event(self, w, path, len))
                return -1;
        if (at == 1 || path[0] != '/')
            break;
        do                       /* "/a/b" -> "/a" -> "/" */
            at--;
        while (at > 1 && path[at] != '/');
    }
    return 0;
}

/* Split "path NUL token NUL" (payload of WATCH/UNWATCH); the lengths exclude the NULs,
 * a missing NUL ends the field at the payload's end. */
static const unsigned char *path_token(const unsigned char *p, size_t len, size_t *path_len,
                                       size_t *token_len)
{
    const unsigned char *nul = memchr(p, 0, len);
    *path_len = nul ? (size_t)(nul - p) : len;
    const unsigned char *token = nul ? nul + 1 : p + len;
    const unsigned char *end = memchr(token, 0, (size_t)(p + len - token));
    *token_len = end ? (size_t)(end - token) : (size_t)(p + len - token);
    return token;
}

static struct watch *add_watch(struct conn *c, const unsigned char *path, size_t path_len,
                               const unsigned char *token, size_t token_len)
{
    struct watch *w = malloc(sizeof(*w) + path_len + token_len + 2);
    if (!w)
        die("malloc");
    w->conn = c;
    w->path_len = path_len;
    w->token_len = token_len;
    memcpy(w->text, path, path_len);
    w->text[path_len] = 0;
    memcpy(w->text + path_len + 1, token, token_len);
    w->text[path_len + 1 + token_len] = 0;
    w->hash = hash(w->text, path_len);
    w->next = table[w->hash % BUCKETS];
    table[w->hash % BUCKETS] = w;
    watch_count++;
    return w;
}

/* Remove c's watches: the one on path with token (path != NULL), or all of them. */
static void remove_watches(struct conn *c, const unsigned char *p, size_t path_len,
                           const unsigned char *token, size_t token_len)
{
    if (!watch_count)
        return;
    uint32_t first = 0, last = BUCKETS - 1;
    if (p)
        first = last = hash((const char *)p, path_len) % BUCKETS;
    for (uint32_t b = first; b <= last; b++)
        for (struct watch **at = &table[b]; *at;) {
            struct watch *w = *at;
            if (w->conn == c && (!p || (w->path_len == path_len && w->token_len == token_len
                                        && !memcmp(w->text, p, path_len)
                                        && !memcmp(w->text + path_len + 1, token, token_len)))) {
                *at = w->next;
                free(w);
                watch_count--;
            } else {
                at = &w->next;
            }
        }
}

/* Answer every complete packet in c->in; keep the partial tail.
 * Returns -1 when the connection is to be closed. */
static int serve(struct conn *c)
{
    size_t at = 0;
    while (c->have - at >= HEADER) {
        uint32_t hdr[4];
        memcpy(hdr, c->in + at, HEADER);
        if (hdr[3] > PAYLOAD_MAX)
            return -1;
        if (c->have - at < HEADER + hdr[3])
            break;
        const unsigned char *payload = c->in + at + HEADER;
        const char *body = "OK";
        size_t len = 3;
        char tx_id[16];
        if (hdr[0] == XS_READ) {
            body = READ_VALUE;
            len = 31;
        } else if (hdr[0] == XS_DIRECTORY) {
            body = listing;
            len = sizeof(listing);
        } else if (hdr[0] == XS_TRANSACTION_START) {
            len = (size_t)snprintf(tx_id, sizeof(tx_id), "%u", next_tx_id) + 1;
            next_tx_id = next_tx_id == UINT32_MAX ? 1 : next_tx_id + 1;
            body = tx_id;
        }
        if (emit(c, hdr[0], hdr[1], hdr[2], body, len))
            return -1;
        if (hdr[0] == XS_WRITE && watch_count && !hdr[2]) {
            const unsigned char *nul = memchr(payload, 0, hdr[3]);
            if (fire(c, (const char *)payload, nul ? (size_t)(nul - payload) : hdr[3]))
                return -1;
        } else if (hdr[0] == XS_WATCH || hdr[0] == XS_UNWATCH) {
            size_t path_len, token_len;
            const unsigned char *token = path_token(payload, hdr[3], &path_len, &token_len);
            if (hdr[0] == XS_UNWATCH) {
                remove_watches(c, payload, path_len, token, token_len);
            } else {             /* the initial event: path NUL token NUL */
                struct watch *w = add_watch(c, payload, path_len, token, token_len);
                if (emit(c, XS_WATCH_EVENT, 0, 0, w->text, path_len + token_len + 2))
                    return -1;
            }
        }
        at += HEADER + hdr[3];
    }
    memmove(c->in, c->in + at, c->have - at);
    c->have -= at;
    return c->out_len ? flush(c) : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
        return 2;
    }
    size_t made = 0;
    for (int i = 0; i < 1000; i++)
        made += (size_t)snprintf(listing + made, sizeof(listing) - made, "%d", i) + 1;
    if (made != sizeof(listing))
        die("listing");
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (lfd < 0 || strlen(argv[1]) >= sizeof(addr.sun_path))
        die("socket");
    strcpy(addr.sun_path, argv[1]);
    unlink(argv[1]);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 64))
        die("bind/listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
        die("epoll");
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0)
                    continue;
                c = calloc(1, sizeof(*c));
                if (!c)
                    die("calloc");
                c->fd = fd;
                struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev))
                    die("epoll_ctl");
                continue;
            }
            ssize_t got = read(c->fd, c->in + c->have, IN_CAP - c->have);
            if (got > 0) {
                c->have += (size_t)got;
                if (serve(c) == 0)
                    continue;
            } else if (got < 0 && errno == EINTR) {
                continue;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            remove_watches(c, NULL, 0, NULL, 0);
            free(c);
        }
    }
}
