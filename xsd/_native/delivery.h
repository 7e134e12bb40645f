/*
 * delivery.h: engine.h's delivery groups, one watch delivery (watchreg.h's
 * record, as the groups carry them) and the WATCH_EVENT frame it becomes. Header
 * only, shared by engine.c (a WATCH's initial event written among a run's
 * replies) and poller.c (events written to direct watchers), so the two read
 * and write them one way (xsd/_native/watchreg.py deliver_payloads is
 * Python's reading).
 */
#ifndef XSD_DELIVERY_H
#define XSD_DELIVERY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine.h"
#include "watchreg.h"

struct xsd_delivery {
    uint32_t session;       /* the watcher's handle in the registry */
    const char *path;       /* the event path */
    size_t path_len;
    const char *token;
    size_t token_len;
};

/* One delivery group (engine.h: reply_at, path length, records' length, host
 * order, unaligned; the path; watchreg.h's records). */
struct xsd_delivery_group {
    uint64_t reply_at;      /* as written: XSD_DELIVERY_AFTER may be set */
    const char *path;
    uint32_t path_len;
    const char *records;
    const char *records_end;
};

/* Read the group at g into *grp; where the next group starts. */
static inline const char *xsd_delivery_group_read(const char *g, struct xsd_delivery_group *grp)
{
    uint32_t records_len;

    memcpy(&grp->reply_at, g, sizeof grp->reply_at);
    memcpy(&grp->path_len, g + 8, sizeof grp->path_len);
    memcpy(&records_len, g + 12, sizeof records_len);
    grp->path = g + XSD_DELIVERY_GROUP_HEADER;
    grp->records = grp->path + grp->path_len;
    grp->records_end = grp->records + records_len;
    return grp->records_end;
}

static inline uint32_t xsd_delivery_le(const char *p, int bytes)
{
    const unsigned char *u = (const unsigned char *)p;
    uint32_t v = 0;

    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | u[i];
    return v;
}

/* Read the record at rec (watchreg.h: little-endian, unaligned) of a fire call
 * given path[0..path_len) into *d; where the next record starts. */
static inline const char *xsd_delivery_read(const char *rec, const char *path, size_t path_len,
                                            struct xsd_delivery *d)
{
    uint32_t ev_len = xsd_delivery_le(rec + 4, 2), key_len = xsd_delivery_le(rec + 6, 2);
    const char *key = rec + XSD_WREG_DELIVERY_HEADER;

    d->session = xsd_delivery_le(rec, 4);
    if (ev_len == XSD_WREG_SAME_PATH) {
        d->path = path;
        d->path_len = path_len;
    } else {
        d->path = key;
        d->path_len = ev_len;
        key += ev_len;
    }
    d->token = key + key_len + 1;
    d->token_len = xsd_delivery_le(rec + 8, 2);
    return d->token + d->token_len;
}

/* The payload bytes of d's frame: "<event path>\0<token>\0". */
static inline size_t xsd_event_payload(const struct xsd_delivery *d)
{
    return d->path_len + 1 + d->token_len + 1;
}

/* d's WATCH_EVENT frame (type XS_WATCH_EVENT, req_id 0, tx_id 0, in host byte
 * order as xs_wire.h's header; then the payload) written at out, which has
 * room for it; its length. */
static inline size_t xsd_event_frame(char *out, const struct xsd_delivery *d)
{
    size_t payload = xsd_event_payload(d);
    uint32_t header[4] = { XSD_OP_WATCH_EVENT, 0, 0, (uint32_t)payload };

    memcpy(out, header, sizeof header);
    out += sizeof header;
    memcpy(out, d->path, d->path_len);
    out[d->path_len] = '\0';
    memcpy(out + d->path_len + 1, d->token, d->token_len);
    out[payload - 1] = '\0';
    return sizeof header + payload;
}

#endif /* XSD_DELIVERY_H */
