/* engine_packets.h: building request streams and reading reply streams for
 * the engine's C tests (test_engine.c, test_engine_alloc_fail.c,
 * fuzz_engine.c): xs_wire.h's header, host byte order. */
#ifndef XSD_TEST_ENGINE_PACKETS_H
#define XSD_TEST_ENGINE_PACKETS_H

#include <stdint.h>
#include <string.h>

#include "engine.h"

enum {
    T_DIRECTORY = 1, T_READ = 2, T_GET_PERMS = 3, T_WATCH = 4, T_WRITE = 11, T_MKDIR = 12,
    T_RM = 13, T_SET_PERMS = 14, T_ERROR = 16, T_DIRECTORY_PART = 22,
};
enum { T_UNWATCH = 5, T_WATCH_EVENT = 15 };

struct stream {
    char buf[1 << 16];
    size_t len;
};

/* Append one packet (type, req_id, tx_id, payload[0..plen)); 0 if it does not fit. */
static int put_packet(struct stream *s, uint32_t type, uint32_t req_id, uint32_t tx_id,
                      const char *payload, size_t plen)
{
    uint32_t h[4] = { type, req_id, tx_id, (uint32_t)plen };

    if (sizeof s->buf - s->len < sizeof h + plen)
        return 0;
    memcpy(s->buf + s->len, h, sizeof h);
    if (plen)
        memcpy(s->buf + s->len + sizeof h, payload, plen);
    s->len += sizeof h + plen;
    return 1;
}

/* A string literal payload with the literal's own NUL counted:
 * P("/a\0v") is "/a", NUL, "v" (no NUL after v). */
#define P(lit) (lit), (sizeof(lit) - 1)

/* The header fields of the packet at buf. */
static uint32_t field(const char *buf, int i)
{
    uint32_t v;

    memcpy(&v, buf + 4 * i, sizeof v);
    return v;
}

#endif /* XSD_TEST_ENGINE_PACKETS_H */
