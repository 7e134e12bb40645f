/*
 * floor_c.c: the C floor for the request benchmarks (bench/bench_floors.py).
 *
 * A responder that speaks the xenstore wire framing on a Unix socket and
 * answers every request with a canned reply, keeping no store: what any
 * daemon costs at least with the same client, kernel and socket here.
 * One thread, epoll; all complete packets of one read are answered with one
 * write (the same batching a daemon can do).
 *
 * Header: struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; } in host
 * order, payload at most 4096 bytes (xs_wire.h, XENSTORE_PAYLOAD_MAX).
 * Replies echo type, req_id and tx_id: READ gets 31 bytes (xsbench checks
 * the length it wrote last), every other request "OK\0". So the floor is only
 * meaningful for loads of READ/WRITE/RM (xsbench rw and mc:N).
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
#define XS_READ 2u
#define IN_CAP (64u * 1024u)

struct conn {
    int fd;
    size_t have;                 /* bytes of in[] not yet answered */
    unsigned char in[IN_CAP];
    unsigned char out[IN_CAP / HEADER * (HEADER + 31u)];  /* the most a full in[] can ask for */
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Answer every complete packet in c->in with one write; keep the partial tail.
 * Returns -1 when the connection is to be closed. */
static int serve(struct conn *c)
{
    size_t at = 0, out = 0;
    while (c->have - at >= HEADER) {
        uint32_t hdr[4];
        memcpy(hdr, c->in + at, HEADER);
        if (hdr[3] > PAYLOAD_MAX)
            return -1;
        if (c->have - at < HEADER + hdr[3])
            break;
        uint32_t len = hdr[0] == XS_READ ? 31u : 3u;
        uint32_t rep[4] = { hdr[0], hdr[1], hdr[2], len };
        memcpy(c->out + out, rep, HEADER);
        memcpy(c->out + out + HEADER, hdr[0] == XS_READ ? "0123456789abcdef0123456789abcde" : "OK", len);
        out += HEADER + len;
        at += HEADER + hdr[3];
    }
    memmove(c->in, c->in + at, c->have - at);
    c->have -= at;
    for (size_t done = 0; done < out;) {
        ssize_t n = write(c->fd, c->out + done, out - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;       /* blocking write is fine for a floor: clients read their replies */
        done += (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
        return 2;
    }
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
            free(c);
        }
    }
}
