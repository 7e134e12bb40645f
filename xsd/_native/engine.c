/*
 * engine.c: the request path in C (contract and scope in engine.h).
 *
 * Each handler either writes a whole reply payload and returns its length,
 * or returns PUNT having changed nothing: every check runs before the one
 * store call that mutates, and a store call that fails changes nothing
 * (store.h), so a punted packet reaches Python's dispatch as if the engine
 * had never seen it. A change that may fire watches also leaves its event in
 * the engine's event space, built before the store call (the one allocation
 * it may need happens before anything changes) and committed after it.
 * Rules cite the Python function they mirror.
 */
#include "engine.h"
#include "delivery.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "perms.h"
#include "txn.h"

/* xs_wire.h message types the engine answers. */
enum {
    OP_DIRECTORY = 1, OP_READ = 2, OP_GET_PERMS = 3, OP_WRITE = 11, OP_MKDIR = 12,
    OP_RM = 13, OP_SET_PERMS = 14, OP_DIRECTORY_PART = 22,
    OP_TRANSACTION_START = 6, OP_TRANSACTION_END = 7, OP_ERROR = 16,
};
enum { OP_WATCH = 4, OP_UNWATCH = 5 };

#define ABS_PATH_MAX 3072u          /* XENSTORE_ABS_PATH_MAX */
#define REL_PATH_MAX 2048u          /* XENSTORE_REL_PATH_MAX */
#define DOMID_FIRST_RESERVED 0x7FF0u  /* xen.h; domains.py */
#define STORE_DOMID_MAX UINT32_MAX  /* the largest domid store.c keeps in permissions */
#define U32_MAX 0xFFFFFFFFu
/* A permission list re-encoded: every entry at most as long as the field it
 * came from plus its NUL, and the fields fit in one payload. */
#define PERMS_BUF (XSD_PAYLOAD_MAX + 2u)

#define PUNT (-1)
#define PUNT_ABSENT (-2)            /* node_get: missing (a punt unless the caller knows better) */

struct xsd_engine {
    xsd_store *store;
    const xsd_trie *watches;
    uint8_t known[DOMID_FIRST_RESERVED / 8];    /* bit per domid that may own nodes */
    char *scratch;                              /* DIRECTORY_PART's full listing */
    size_t scratch_cap;
    char *event;                                /* a watched change's event (engine.h) */
    size_t event_cap;
    size_t event_len;                           /* 0: the last packet fired nothing */
    xsd_wreg *wreg;                             /* NULL: watched changes stop EVENTS */
    char *deliv;                                /* the run's delivery groups (engine.h) */
    size_t deliv_cap;
    size_t deliv_len;
    char *below;                                /* a removal's nodes below its root */
    size_t below_cap;
    int txn_kind;                               /* the packet's START/END (engine.h) */
    uint32_t txn_id;
    xsd_txn *txn;
    char *wlog;                                 /* the run's watch log (engine.h) */
    size_t wlog_cap;
    size_t wlog_len;
};

struct xsd_conn {
    uint32_t domid;
    int64_t target;             /* -1: none */
    int privileged;
    int read_only;
    uint32_t path_max;          /* 0: none */
    int quotas_set;             /* xsd_conn_quotas called: unprivileged changes may run here */
    struct xsd_quotas quotas;   /* what binds this caller when unprivileged (engine.h) */
    char home[32];              /* "/local/domain/<domid>/": what relative paths extend */
    size_t home_len;
    uint64_t requests[XSD_OP_COUNT];
    struct conn_txn *txns;      /* the session's transactions (borrowed), by tx_id */
    size_t txn_count, txn_cap;
    int txn_quotas_set;         /* xsd_conn_txn_quotas called: START may run here */
    uint32_t txn_max;           /* "transactions" (0: none) */
    uint32_t txn_nodes;         /* "transaction-nodes" of a new one (0: none) */
    uint32_t next_tx_id;        /* Session.next_tx_id's mirror */
    int64_t wsession;           /* its session in the engine's registry; -1: none yet */
    uint32_t watch_limit;       /* the "watches" quota; 0: none */
    int watches_journaled;      /* listeners hear of its watches: WATCH/UNWATCH Python's */
    uint64_t conflicts;         /* TRANSACTION_END answered EAGAIN here */
    uint64_t events_written;    /* watch events the poller wrote it (xsd_conn_events_written) */
    uint32_t inline_events;     /* a run's initial events written into out: at most */
    size_t inline_bytes;        /* these, its output within these (0: none; engine.h) */
};

struct conn_txn {
    uint32_t tx_id;
    xsd_txn *t;
};

xsd_engine *xsd_engine_new(xsd_store *store, const xsd_trie *watches)
{
    xsd_engine *e = XSD_CALLOC(1, sizeof *e);

    if (!e)
        return NULL;
    e->store = store;
    e->watches = watches;
    e->known[0] = 1;            /* dom0: DomainTable.is_introduced(0) */
    return e;
}

void xsd_engine_free(xsd_engine *e)
{
    if (!e)
        return;
    XSD_FREE(e->scratch);
    XSD_FREE(e->event);
    XSD_FREE(e->deliv);
    XSD_FREE(e->below);
    XSD_FREE(e->wlog);
    XSD_FREE(e);
}

void xsd_engine_watches(xsd_engine *e, xsd_wreg *reg)
{
    e->wreg = reg;
}

int xsd_engine_domain_known(xsd_engine *e, uint32_t domid, int known)
{
    uint8_t bit;

    if (domid >= DOMID_FIRST_RESERVED)
        return -EINVAL;
    bit = (uint8_t)(1u << (domid % 8));
    if (known)
        e->known[domid / 8] = (uint8_t)(e->known[domid / 8] | bit);
    else
        e->known[domid / 8] = (uint8_t)(e->known[domid / 8] & ~bit);
    return 0;
}

static int domain_known(const xsd_engine *e, uint32_t domid)
{
    return domid < DOMID_FIRST_RESERVED && (e->known[domid / 8] >> (domid % 8)) & 1u;
}

xsd_conn *xsd_conn_new(xsd_engine *e)
{
    xsd_conn *c = XSD_CALLOC(1, sizeof *c);

    (void)e;
    if (!c)
        return NULL;
    xsd_conn_configure(c, 0, -1, 0, 0, 0);
    c->next_tx_id = 1;          /* Session's first */
    c->wsession = -1;
    return c;
}

void xsd_conn_free(xsd_conn *c)
{
    if (c)
        XSD_FREE(c->txns);
    XSD_FREE(c);
}

static xsd_txn *conn_txn(const xsd_conn *c, uint32_t tx_id)
{
    for (size_t i = 0; i < c->txn_count; i++)
        if (c->txns[i].tx_id == tx_id)
            return c->txns[i].t;
    return NULL;
}

int xsd_conn_txn_add(xsd_conn *c, uint32_t tx_id, xsd_txn *t)
{
    if (tx_id == 0 || !t)
        return -EINVAL;
    for (size_t i = 0; i < c->txn_count; i++)
        if (c->txns[i].tx_id == tx_id) {
            c->txns[i].t = t;
            return 0;
        }
    if (c->txn_count == c->txn_cap) {
        size_t cap = c->txn_cap ? 2 * c->txn_cap : 4;
        struct conn_txn *bigger;

        if (cap > SIZE_MAX / sizeof *bigger)
            return -ENOMEM;
        bigger = XSD_REALLOC(c->txns, cap * sizeof *bigger);
        if (!bigger)
            return -ENOMEM;
        c->txns = bigger;
        c->txn_cap = cap;
    }
    c->txns[c->txn_count].tx_id = tx_id;
    c->txns[c->txn_count].t = t;
    c->txn_count++;
    return 0;
}

void xsd_conn_txn_drop(xsd_conn *c, uint32_t tx_id)
{
    for (size_t i = 0; i < c->txn_count; i++)
        if (c->txns[i].tx_id == tx_id) {
            c->txns[i] = c->txns[--c->txn_count];
            return;
        }
}

void xsd_conn_configure(xsd_conn *c, uint32_t domid, int64_t target,
                        int privileged, int read_only, uint32_t path_max)
{
    int n;

    c->domid = domid;
    c->target = target;
    c->privileged = privileged != 0;
    c->read_only = read_only != 0;
    c->path_max = path_max;
    n = snprintf(c->home, sizeof c->home, "/local/domain/%u/", (unsigned)domid);
    c->home_len = n > 0 ? (size_t)n : 0;
}

void xsd_conn_quotas(xsd_conn *c, const struct xsd_quotas *q)
{
    c->quotas_set = 1;
    c->quotas = *q;
}

void xsd_conn_txn_quotas(xsd_conn *c, uint32_t transactions, uint32_t transaction_nodes)
{
    c->txn_quotas_set = 1;
    c->txn_max = transactions;
    c->txn_nodes = transaction_nodes;
}

void xsd_conn_txn_next(xsd_conn *c, uint32_t next_tx_id)
{
    c->next_tx_id = next_tx_id;
}

void xsd_conn_watches(xsd_conn *c, int64_t session, uint32_t limit, int journaled)
{
    c->wsession = session >= 0 && session <= (int64_t)U32_MAX ? session : -1;
    c->watch_limit = limit;
    c->watches_journaled = journaled != 0;
}

void xsd_conn_inline_events(xsd_conn *c, uint32_t events, size_t bytes)
{
    c->inline_events = bytes ? events : 0;
    c->inline_bytes = events ? bytes : 0;
}

void xsd_conn_events_written(xsd_conn *c, uint32_t n)
{
    c->events_written += n;
}

uint64_t xsd_conn_events_written_count(const xsd_conn *c)
{
    return c->events_written;
}

uint64_t xsd_conn_conflicts(const xsd_conn *c)
{
    return c->conflicts;
}

uint64_t xsd_conn_requests(const xsd_conn *c, unsigned op)
{
    return op < XSD_OP_COUNT ? c->requests[op] : 0;
}

/* -- wire fields ---------------------------------------------------------- */

static uint32_t get_u32(const char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof v);
    return v;
}

static void put_u32(char *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

/* The one field of a single-path payload (ops._one_path): "<path>\0" with
 * no other NUL. Its length, or PUNT (missing NUL: ENOENT; none or several
 * fields: EINVAL). */
static int64_t one_field(const char *payload, size_t len)
{
    if (len == 0 || payload[len - 1] != '\0')
        return PUNT;
    if (memchr(payload, '\0', len - 1))
        return PUNT;
    return (int64_t)(len - 1);
}

/* domains.decimal: 1 to 20 ASCII digits, at most U32_MAX; else PUNT. */
static int64_t decimal(const char *s, size_t len)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return PUNT;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return PUNT;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > U32_MAX)
            return PUNT;
    }
    return (int64_t)v;
}

/* -- paths (xenstore_protocol.paths.canonicalize, ops._path) --------------- */

static int path_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '/' || ch == '_' || ch == '@' || ch == '-';
}

/* raw[0..n) made absolute into out (ABS_PATH_MAX bytes); its length, or PUNT
 * for anything canonicalize refuses, a special "@name", or a path over the
 * conn's path_max. */
static int64_t canonical(const xsd_conn *c, const char *raw, size_t n, char *out)
{
    size_t total, at = 0;

    if (n == 0 || raw[0] == '@')
        return PUNT;
    for (size_t i = 0; i < n; i++)
        if (!path_char(raw[i]))
            return PUNT;
    if (raw[0] == '/') {
        total = n;
    } else {
        if (n > REL_PATH_MAX)
            return PUNT;
        total = c->home_len + n;
        memcpy(out, c->home, c->home_len);
        at = c->home_len;
    }
    if (total > ABS_PATH_MAX)
        return PUNT;
    memcpy(out + at, raw, n);
    if (total > 1 && out[total - 1] == '/')
        return PUNT;
    for (size_t i = 1; i < total; i++)
        if (out[i] == '/' && out[i - 1] == '/')
            return PUNT;
    if (c->path_max && total > c->path_max)
        return PUNT;
    return (int64_t)total;
}

/* -- permissions (permissions.access, perms.h) ------------------------------ */

static unsigned access_of(const xsd_conn *c, const char *perms, size_t perms_len)
{
    return xsd_perms_access(c->domid, c->target, c->privileged, perms, perms_len);
}

/* -- handlers: reply payload length written at reply, or PUNT --------------- */

struct request {
    xsd_engine *e;
    const xsd_conn *c;
    xsd_conn *conn;             /* c, for TRANSACTION_START/END: its table and next id */
    uint32_t tx_id;
    xsd_txn *t;                 /* the request's transaction; NULL: the store itself */
    const char *payload;
    size_t len;
    unsigned flags;
    char *reply;                /* XSD_PAYLOAD_MAX bytes */
    size_t reply_at;            /* where the reply starts in the run's out */
};

/* The node at path as the request sees it (the store, or its transaction,
 * where a first read is recorded: Transaction.get): 0, or -ENOENT when
 * missing; anything else (ENOSPC: transaction-nodes; ENOMEM) is PUNT with
 * nothing recorded. A read recorded before a punt is the one Python's
 * handler makes first, so the transaction ends as if Python had run alone. */
static int node_get(const struct request *q, const char *path, size_t len,
                    struct xsd_node_view *v)
{
    int rc;

    if (!q->t)
        return xsd_store_get(q->e->store, path, len, v) ? PUNT_ABSENT : 0;
    rc = xsd_txn_get(q->t, path, len, v);
    return rc == 1 ? 0 : rc == 0 ? PUNT_ABSENT : PUNT;
}

/* The children listing of an existing node into out, with xsd_store_children's
 * n > cap rule. */
static int64_t node_children(const struct request *q, const char *path, size_t len,
                             char *out, size_t cap)
{
    if (!q->t)
        return xsd_store_children(q->e->store, path, len, out, cap);
    return xsd_txn_children(q->t, path, len, out, cap);
}

static const char OK[] = "OK";  /* with its NUL: 3 bytes, ops.OK */

static int64_t reply_ok(char *reply)
{
    memcpy(reply, OK, sizeof OK);
    return (int64_t)sizeof OK;
}

/* The node at the one path of the payload, readable by the caller
 * (permissions.existing_node with READ): its canonical path in path. */
static int64_t readable_node(const struct request *q, char *path, size_t *path_len,
                             struct xsd_node_view *v)
{
    int64_t n = one_field(q->payload, q->len);

    if (n < 0)
        return PUNT;
    n = canonical(q->c, q->payload, (size_t)n, path);
    if (n < 0)
        return PUNT;
    if (node_get(q, path, (size_t)n, v))
        return PUNT;            /* missing: ENOENT or EACCES */
    if (!(access_of(q->c, v->perms, v->perms_len) & XSD_ACCESS_READ))
        return PUNT;
    *path_len = (size_t)n;
    return 0;
}

static int64_t do_read(const struct request *q)
{
    char path[ABS_PATH_MAX];
    size_t path_len;
    struct xsd_node_view v;

    if (readable_node(q, path, &path_len, &v) || v.value_len > XSD_PAYLOAD_MAX)
        return PUNT;
    if (v.value_len)
        memcpy(q->reply, v.value, v.value_len);
    return (int64_t)v.value_len;
}

static int64_t do_get_perms(const struct request *q)
{
    char path[ABS_PATH_MAX];
    size_t path_len;
    struct xsd_node_view v;

    if (readable_node(q, path, &path_len, &v) || v.perms_len > XSD_PAYLOAD_MAX)
        return PUNT;
    memcpy(q->reply, v.perms, v.perms_len);    /* stored as encode_list gives it */
    return (int64_t)v.perms_len;
}

static int64_t do_directory(const struct request *q)
{
    char path[ABS_PATH_MAX];
    size_t path_len;
    struct xsd_node_view v;
    int64_t n;

    if (readable_node(q, path, &path_len, &v))
        return PUNT;
    n = node_children(q, path, path_len, q->reply, XSD_PAYLOAD_MAX);
    if (n < 0 || n > (int64_t)XSD_PAYLOAD_MAX)
        return PUNT;            /* E2BIG: use DIRECTORY_PART */
    return n;
}

/* The node's whole listing in the engine's scratch space; its length or PUNT. */
static int64_t listing(const struct request *q, const char *path, size_t path_len)
{
    xsd_engine *e = q->e;

    for (;;) {
        int64_t n = node_children(q, path, path_len, e->scratch, e->scratch_cap);
        char *bigger;
        size_t cap;

        if (n < 0)
            return PUNT;
        if ((size_t)n <= e->scratch_cap)
            return n;
        cap = (size_t)n > 2 * e->scratch_cap ? (size_t)n : 2 * e->scratch_cap;
        bigger = XSD_REALLOC(e->scratch, cap);
        if (!bigger)
            return PUNT;
        e->scratch = bigger;
        e->scratch_cap = cap;
    }
}

/* ops.do_directory_part: "<path>\0<offset>[\0]" -> "<gen>\0" and the
 * children from byte offset that fit, plus one NUL after the last chunk. */
static int64_t do_directory_part(const struct request *q)
{
    const char *payload = q->payload, *nul, *off;
    char path[ABS_PATH_MAX], gen[24];
    size_t off_len, room, end, total, gen_len, out;
    struct xsd_node_view v;
    int64_t n, offset;

    nul = q->len ? memchr(payload, '\0', q->len) : NULL;
    if (!nul)
        return PUNT;            /* one field: EINVAL */
    off = nul + 1;
    off_len = q->len - (size_t)(off - payload);
    if (off_len && off[off_len - 1] == '\0')
        off_len--;
    if (memchr(off, '\0', off_len))
        return PUNT;            /* a third field: EINVAL */
    offset = decimal(off, off_len);
    if (offset < 0)
        return PUNT;
    n = canonical(q->c, payload, (size_t)(nul - payload), path);
    if (n < 0)
        return PUNT;
    if (node_get(q, path, (size_t)n, &v) ||
        !(access_of(q->c, v.perms, v.perms_len) & XSD_ACCESS_READ))
        return PUNT;
    gen_len = (size_t)snprintf(gen, sizeof gen, "%llu", (unsigned long long)v.gen) + 1;
    memcpy(q->reply, gen, gen_len);            /* with its NUL */
    n = listing(q, path, (size_t)n);
    if (n < 0)
        return PUNT;
    total = (size_t)n;
    if ((size_t)offset >= total) {
        q->reply[gen_len] = '\0';              /* past the end: an empty last chunk */
        return (int64_t)gen_len + 1;
    }
    room = XSD_PAYLOAD_MAX - 1 - gen_len - 1;
    end = (size_t)offset;
    while (end < total) {
        const char *z = memchr(q->e->scratch + end, '\0', total - end);
        size_t next;
        if (!z)
            return PUNT;        /* a listing ends in NUL (store.h): never */
        next = (size_t)(z - q->e->scratch) + 1;
        if (next - (size_t)offset > room)
            break;
        end = next;
    }
    out = gen_len;
    memcpy(q->reply + out, q->e->scratch + offset, end - (size_t)offset);
    out += end - (size_t)offset;
    if (end == total)
        q->reply[out++] = '\0';
    return (int64_t)out;
}

/* Whether a change at path could fire a watch: then its event is described
 * for Python (engine.h, XSD_RUN_EVENTS). */
static int watched(const xsd_engine *e, const char *path, size_t len, unsigned match)
{
    return e->watches && xsd_trie_match(e->watches, path, len, match, NULL, 0) != 0;
}

/* Make the engine's buffer *buf (*cap bytes, used of them in use) hold need
 * more: doubled, from first when it has none, or grown to fit. 0, or -1 when
 * out of memory (the buffer as it was). The one way every growing buffer of
 * the engine grows. */
static int buffer_room(char **buf, size_t *cap, size_t used, size_t need, size_t first)
{
    size_t want;
    char *bigger;

    if (need <= *cap - used)
        return 0;
    if (need > SIZE_MAX / 4 - used)
        return -1;
    want = *cap ? 2 * *cap : first;
    if (want < used + need)
        want = used + need;
    bigger = XSD_REALLOC(*buf, want);
    if (!bigger)
        return -1;
    *buf = bigger;
    *cap = want;
    return 0;
}

/* At least need bytes of event space; 0, or -1 when out of memory (nothing
 * changed yet: the caller punts). */
static int event_room(xsd_engine *e, size_t need)
{
    return buffer_room(&e->event, &e->event_cap, 0, need, 0);
}

/* A CHANGE event for path with perms and old perms (old_len 0: none) into
 * the event space; its length, or PUNT when out of memory. Written before the
 * store changes (the perms may point into it); the caller commits it by
 * setting e->event_len only once the change is made. */
static int64_t change_event(xsd_engine *e, const char *path, size_t len,
                            const char *perms, size_t perms_len,
                            const char *old, size_t old_len)
{
    size_t at = 0;

    if (event_room(e, 1 + len + 1 + perms_len + 1 + old_len + 1))
        return PUNT;
    e->event[at++] = XSD_EVENT_CHANGE;
    memcpy(e->event + at, path, len);
    at += len;
    e->event[at++] = '\0';
    memcpy(e->event + at, perms, perms_len);
    at += perms_len;
    e->event[at++] = '\0';
    if (old_len)
        memcpy(e->event + at, old, old_len);
    at += old_len;
    e->event[at++] = '\0';
    return (int64_t)at;
}

/* A REMOVE event for path (existing, not the root) into the event space: the
 * records of xsd_store_subtree, listed before the removal; its length, or
 * PUNT (out of memory). */
static int64_t remove_event(xsd_engine *e, const char *path, size_t len)
{
    size_t head = 1 + len + 1;

    if (event_room(e, head + 64))
        return PUNT;
    for (;;) {
        int64_t n = xsd_store_subtree(e->store, path, len, e->event + head,
                                      e->event_cap - head);
        if (n < 0)
            return PUNT;
        if ((size_t)n <= e->event_cap - head) {
            e->event[0] = XSD_EVENT_REMOVE;
            memcpy(e->event + 1, path, len);
            e->event[1 + len] = '\0';
            return (int64_t)(head + (size_t)n);
        }
        if (event_room(e, head + (size_t)n))
            return PUNT;
    }
}

/* -- firing through the C registry (engine.h, xsd_engine_watches) ---------- */

/* What one fire call is given besides its path. */
struct firing {
    int remove;                 /* xsd_wreg_fire_remove, else fire_change */
    const char *perms;          /* the node's (a removal: the root's, before it went) */
    size_t perms_len;
    const char *old;            /* SET_PERMS: the perms before; else NULL */
    size_t old_len;
    const char *below;          /* a removal's entries below the root, or NULL */
    size_t below_len;
};

/* Room for need more bytes of deliveries; 0, or -1 when out of memory. */
static int deliveries_room(xsd_engine *e, size_t need)
{
    return buffer_room(&e->deliv, &e->deliv_cap, e->deliv_len, need, 4096);
}

static void put_u64_host(char *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

/* The deliveries of a change at path[0..len) appended to the run's buffer as
 * one group ahead of the reply at reply_at: 0 (nothing delivered: no group),
 * 1 when a removal without f->below has watches below its root (nothing
 * appended: call again with the entries), or PUNT (out of memory, or an
 * error of the registry; the buffer as it was). Changes nothing else: the
 * caller makes the change after, and on its failure cuts the buffer back. */
static int64_t fire_group(xsd_engine *e, size_t reply_at, const char *path, size_t len,
                          const struct firing *f)
{
    size_t head = XSD_DELIVERY_GROUP_HEADER + len, start = e->deliv_len, cap;
    int64_t n;
    int asks = 0;
    char *at;

    if (len > U32_MAX || deliveries_room(e, head + 256))
        return PUNT;
    for (;;) {
        at = e->deliv + start + head;
        cap = e->deliv_cap - start - head;
        if (f->remove)
            n = xsd_wreg_fire_remove(e->wreg, path, len, f->perms, f->perms_len, f->below,
                                     f->below_len, &asks, at, cap);
        else
            n = xsd_wreg_fire_change(e->wreg, path, len, f->perms, f->perms_len, f->old,
                                     f->old_len, at, cap);
        if (n < 0 || (uint64_t)n > U32_MAX)
            return PUNT;
        if ((size_t)n <= cap)
            break;
        if (deliveries_room(e, head + (size_t)n))  /* firing changes nothing: call again */
            return PUNT;
    }
    if (asks)
        return 1;
    if (n == 0)
        return 0;
    at = e->deliv + start;
    put_u64_host(at, (uint64_t)reply_at);
    put_u32(at + 8, (uint32_t)len);
    put_u32(at + 12, (uint32_t)n);
    memcpy(at + XSD_DELIVERY_GROUP_HEADER, path, len);
    e->deliv_len = start + head + (size_t)n;
    return 0;
}

/* Room for need more bytes of below entries past at. */
static int below_room(xsd_engine *e, size_t at, size_t need)
{
    return buffer_room(&e->below, &e->below_cap, at, need, 0);
}

static void put_le32(char *p, size_t v)
{
    p[0] = (char)(v & 0xff);
    p[1] = (char)((v >> 8) & 0xff);
    p[2] = (char)((v >> 16) & 0xff);
    p[3] = (char)((v >> 24) & 0xff);
}

static size_t up_len(const char *path, size_t len);

/* xsd_wreg_fire_remove's entries for every node strictly below root, in
 * xsd_store_subtree's order (children first; the order Python's removed dict
 * has): path, perms and the parent's perms (the parent is removed too: root
 * or below), read from the store before the removal, as CWatchRegistry's
 * removed_below gives them from ops.subtree. Nodes no watch names are
 * passed too: the registry skips them (it looks each path up among the
 * watches below root). Their length in e->below, or PUNT. */
static int64_t removed_below(xsd_engine *e, const char *root, size_t len)
{
    int64_t n = remove_event(e, root, len);     /* the subtree's records in e->event */
    size_t at, end, out = 0;

    if (n < 0)
        return PUNT;
    at = 1 + len + 1;
    end = (size_t)n;
    while (at < end) {
        const char *path = e->event + at, *perms, *p;
        size_t plen = strlen(path), perms_len, up;
        struct xsd_node_view parent;

        perms = path + plen + 1;
        p = perms;
        while (*p != '\0')                       /* entries, each with its NUL */
            p += strlen(p) + 1;
        perms_len = (size_t)(p - perms);
        at = (size_t)(p + 1 - e->event);
        if (plen == len)
            continue;                            /* the root: the registry has it */
        up = up_len(path, plen);
        if (xsd_store_get(e->store, path, up, &parent))
            return PUNT;                         /* below root: never missing */
        if (plen > U32_MAX || perms_len > U32_MAX || parent.perms_len > U32_MAX ||
            below_room(e, out, 12 + plen + perms_len + parent.perms_len))
            return PUNT;
        put_le32(e->below + out, plen);
        memcpy(e->below + out + 4, path, plen);
        out += 4 + plen;
        put_le32(e->below + out, perms_len);
        memcpy(e->below + out + 4, perms, perms_len);
        out += 4 + perms_len;
        put_le32(e->below + out, parent.perms_len);
        memcpy(e->below + out + 4, parent.perms, parent.perms_len);
        out += 4 + parent.perms_len;
    }
    return (int64_t)out;
}

/* Mutations the engine may make for this request: ops flagged MUTATES are
 * EROFS on a read-only conn; unprivileged ones need the quotas pushed. */
static int may_mutate(const struct request *q)
{
    return (q->flags & XSD_RUN_MUTATE) && !q->c->read_only &&
           (q->c->privileged || q->c->quotas_set);
}

/* quota.Quotas.check: a limit binds unprivileged callers only; 0 is none. */
static int over_quota(const xsd_conn *c, uint32_t limit, size_t would_be)
{
    return !c->privileged && limit && would_be > limit;
}

/* quota.memory_of_watch: what a watch is charged beyond its path and token. */
#define WATCH_CHARGE 40u

/* ops.watch_bytes of c's session: from the registry when the session has a
 * handle there (a WATCH or UNWATCH answered here counts at once), else as
 * Python pushed it (xsd_conn_quotas). */
static uint64_t watch_bytes(const xsd_engine *e, const xsd_conn *c)
{
    uint32_t s;

    if (!e->wreg || c->wsession < 0)
        return c->quotas.watch_bytes;
    s = (uint32_t)c->wsession;
    return (uint64_t)WATCH_CHARGE * xsd_wreg_session_count(e->wreg, s) +
           xsd_wreg_session_text_bytes(e->wreg, s);
}

/* quota.Quotas.check_memory for an unprivileged caller charged extra more
 * bytes (ops._charge: its domain's nodes, the session's watches, extra):
 * whether Python would let it pass saying nothing and leaving the domain's
 * soft-warned state as it is. Else (ENOMEM; or the warning logged when the
 * soft quota is crossed, or the warned state reset when back under it) the
 * request is Python's, so the log and that state stay Python's. */
static int memory_fits(const xsd_engine *e, const xsd_conn *c, uint64_t extra)
{
    const struct xsd_quotas *quotas = &c->quotas;
    uint64_t would_be = xsd_store_bytes_of(e->store, c->domid) + watch_bytes(e, c) + extra;
    int over_soft = quotas->memory_soft && would_be > quotas->memory_soft;

    if (over_soft != (quotas->soft_warned != 0))
        return 0;
    return !(quotas->memory && would_be > quotas->memory);
}

/* The entries of a stored permission list (each ends in NUL). */
static size_t perm_count(const char *perms, size_t perms_len)
{
    size_t n = 0;

    for (size_t i = 0; i < perms_len; i++)
        n += perms[i] == '\0';
    return n;
}

/* Nodes domid owns as the request sees them (view.owned_by): the store's
 * count, plus in a transaction what it made, removed or gave away
 * (Transaction.owned_delta). */
static int64_t owned_by(const struct request *q, uint32_t domid)
{
    int64_t n = (int64_t)xsd_store_owned_by(q->e->store, domid);

    return q->t ? n + xsd_txn_owned_delta(q->t, domid) : n;
}

/* ops._create for an unprivileged caller: missing nodes (path and its
 * missing ancestors) within the nodes quota (the caller's domain owns them
 * all) and the memory quota (quota.memory_of_node of each: 40 + path +
 * value, the deepest only, + 8 per permission entry). The new nodes' perms
 * into perms (PERMS_BUF bytes): inherited (top's), the first entry naming
 * the caller (C xenstored's construct_node); its length, or PUNT. */
static int64_t guest_creation(const struct request *q, const char *path, size_t len,
                              size_t value_len, const struct xsd_node_view *top,
                              uint64_t missing, char *perms)
{
    const xsd_conn *c = q->c;
    const char *owner_end = memchr(top->perms, '\0', top->perms_len);
    uint64_t extra, paths = len;
    size_t first, end = len;
    int w;

    if (!owner_end)
        return PUNT;            /* the store keeps no empty list: never */
    first = (size_t)(owner_end - top->perms) + 1;   /* the owner entry, its NUL included */
    if (c->quotas.nodes && owned_by(q, c->domid) + (int64_t)missing > (int64_t)c->quotas.nodes)
        return PUNT;            /* ENOSPC */
    for (uint64_t k = 1; k < missing; k++) {     /* each missing ancestor's path length */
        while (path[--end] != '/')
            ;
        paths += end;
    }
    extra = missing * (40 + 8 * (uint64_t)perm_count(top->perms, top->perms_len)) +
            paths + value_len;
    if (!memory_fits(q->e, c, extra))
        return PUNT;            /* ENOMEM, or the soft quota's log */
    w = snprintf(perms, PERMS_BUF, "%c%u", top->perms[0], (unsigned)c->domid);
    if (w < 0 || (size_t)w + 1 + top->perms_len - first > PERMS_BUF)
        return PUNT;
    memcpy(perms + w + 1, top->perms + first, top->perms_len - first);
    return (int64_t)((size_t)w + 1 + top->perms_len - first);
}

/* ops.do_write / ops._create: value at path; a missing node and its missing
 * ancestors take the closest existing ancestor's permissions, owned by an
 * unprivileged creator (a privileged one takes no ownership and no quota
 * binds it). */
static int64_t create_or_set(const struct request *q, const char *path, size_t len,
                             const char *value, size_t value_len)
{
    struct xsd_node_view top;
    char perms[PERMS_BUF];
    size_t perms_len = 0;
    int64_t missing = xsd_store_missing(q->e->store, path, len, &top);
    int64_t event = 0;
    size_t mark = q->e->deliv_len;

    if (missing < 0 || over_quota(q->c, q->c->quotas.node_size, value_len))
        return PUNT;            /* ENOSPC */
    if (!q->c->privileged) {
        /* ops.do_write / ops._create: WRITE access to the node or the closest
         * ancestor; a longer value in the caller's own node is charged to the
         * memory quota, new nodes to the nodes and memory quotas. */
        if (!(access_of(q->c, top.perms, top.perms_len) & XSD_ACCESS_WRITE))
            return PUNT;        /* EACCES */
        if (missing) {
            int64_t n = guest_creation(q, path, len, value_len, &top, (uint64_t)missing, perms);

            if (n < 0)
                return PUNT;
            perms_len = (size_t)n;
        } else if (top.owner == q->c->domid && value_len > top.value_len &&
                   !memory_fits(q->e, q->c, value_len - top.value_len)) {
            return PUNT;        /* ENOMEM, or the soft quota's log */
        }
    } else if (missing) {
        if (top.perms_len > sizeof perms)
            return PUNT;
        perms_len = top.perms_len;
        memcpy(perms, top.perms, perms_len);   /* the view is void after a mutation */
    }
    if (watched(q->e, path, len, XSD_MATCH_ANCESTORS)) {
        /* ops.do_write's event: the new nodes' perms, or the node's own */
        if (q->e->wreg) {
            struct firing f = {0, missing ? perms : top.perms,
                               missing ? perms_len : top.perms_len, NULL, 0, NULL, 0};

            if (fire_group(q->e, q->reply_at, path, len, &f) < 0)
                return PUNT;
        } else {
            event = missing ? change_event(q->e, path, len, perms, perms_len, NULL, 0)
                            : change_event(q->e, path, len, top.perms, top.perms_len, NULL, 0);
            if (event < 0)
                return PUNT;
        }
    }
    if (xsd_store_write(q->e->store, path, len, value, value_len,
                        missing ? perms : NULL, perms_len) < 0) {
        q->e->deliv_len = mark;
        return PUNT;            /* -ENOMEM and the like: nothing changed */
    }
    q->e->event_len = (size_t)event;
    return reply_ok(q->reply);
}

/* -- in a transaction (Transaction's view; the events wait in it) ---------- */

/* Length of the parent of path[0..len) ("/" for a top-level path). */
static size_t up_len(const char *path, size_t len)
{
    while (len > 0 && path[len - 1] != '/')
        len--;
    return len > 1 ? len - 1 : 1;
}

/* ops.do_write / do_mkdir (mkdir: MKDIR) over q->t: an existing node gets
 * the value (WRITE) or is kept (MKDIR); a missing one is created after
 * permissions.closest_ancestor's walk up one level at a time (each level a
 * recorded read), by an unprivileged caller within the same quotas as
 * outside (guest_creation: the nodes quota over the transaction's view,
 * view.owned_by; the memory quota over the store's bytes, view.bytes_of).
 * Anything refused or crossing the soft quota is Python's: every read made
 * before such a punt (the node, then its ancestors up to the closest
 * existing one) is one ops.py makes before it refuses, in the same order. */
static int64_t tx_create_or_set(const struct request *q, const char *path, size_t len,
                                const char *value, size_t value_len, int mkdir)
{
    struct xsd_node_view v;
    char perms[PERMS_BUF];
    size_t perms_len, cut = len, count = 1;
    int rc;

    if (!mkdir && over_quota(q->c, q->c->quotas.node_size, value_len))
        return PUNT;            /* ENOSPC, before any read (ops.do_write) */
    rc = node_get(q, path, len, &v);
    if (rc == 0) {
        if (!q->c->privileged && !(access_of(q->c, v.perms, v.perms_len) & XSD_ACCESS_WRITE))
            return PUNT;        /* EACCES */
        if (mkdir)
            return reply_ok(q->reply);         /* existing: kept, no event */
        if (!may_mutate(q) || v.perms_len > sizeof perms)
            return PUNT;
        if (!q->c->privileged && v.owner == q->c->domid && value_len > v.value_len &&
            !memory_fits(q->e, q->c, value_len - v.value_len))
            return PUNT;        /* ENOMEM, or the soft quota's log */
        perms_len = v.perms_len;
        memcpy(perms, v.perms, perms_len);     /* the view is void after the next call */
        if (xsd_txn_set_value(q->t, path, len, value, value_len) ||
            xsd_txn_note_change(q->t, path, len, perms, perms_len, NULL, 0))
            return PUNT;        /* -ENOMEM: the transaction is doomed (txn.h) */
        return reply_ok(q->reply);
    }
    if (rc != PUNT_ABSENT || !may_mutate(q))
        return PUNT;
    for (;;) {
        cut = up_len(path, cut);
        rc = node_get(q, path, cut, &v);
        if (rc == 0)
            break;
        if (rc != PUNT_ABSENT || cut == 1)
            return PUNT;
        count++;
    }
    if (!q->c->privileged) {
        int64_t n;

        if (!(access_of(q->c, v.perms, v.perms_len) & XSD_ACCESS_WRITE))
            return PUNT;        /* EACCES */
        n = guest_creation(q, path, len, value_len, &v, count, perms);
        if (n < 0)
            return PUNT;        /* ENOSPC, ENOMEM, or the soft quota's log */
        perms_len = (size_t)n;
    } else {
        if (v.perms_len > sizeof perms)
            return PUNT;
        perms_len = v.perms_len;
        memcpy(perms, v.perms, perms_len);     /* inherited as they are */
    }
    if (xsd_txn_create(q->t, path, len, count, value, value_len, perms, perms_len) ||
        xsd_txn_note_change(q->t, path, len, perms, perms_len, NULL, 0))
        return PUNT;
    return reply_ok(q->reply);
}

/* ops.do_rm over q->t: every node below is read (transaction-nodes). */
static int64_t tx_rm(const struct request *q, const char *path, size_t len)
{
    struct xsd_node_view v;

    if (node_get(q, path, len, &v))
        return PUNT;            /* missing: OK or an error, Python's to say */
    if (!(access_of(q->c, v.perms, v.perms_len) & XSD_ACCESS_WRITE))
        return PUNT;            /* EACCES */
    if (xsd_txn_remove(q->t, path, len) < 0 || xsd_txn_note_last_remove(q->t, path, len))
        return PUNT;            /* ENOSPC (reads kept: Python's walk makes them first) */
    return reply_ok(q->reply);
}

static int64_t do_write(const struct request *q)
{
    const char *nul = q->len ? memchr(q->payload, '\0', q->len) : NULL;
    char path[ABS_PATH_MAX];
    size_t cut;
    int64_t n;

    if (!nul || !may_mutate(q))
        return PUNT;
    cut = (size_t)(nul - q->payload);
    n = canonical(q->c, q->payload, cut, path);
    if (n < 0)
        return PUNT;
    if (q->t)
        return tx_create_or_set(q, path, (size_t)n, nul + 1, q->len - cut - 1, 0);
    return create_or_set(q, path, (size_t)n, nul + 1, q->len - cut - 1);
}

static int64_t do_mkdir(const struct request *q)
{
    char path[ABS_PATH_MAX];
    struct xsd_node_view v;
    int64_t n = one_field(q->payload, q->len);

    if (n < 0 || q->c->read_only)
        return PUNT;
    n = canonical(q->c, q->payload, (size_t)n, path);
    if (n < 0)
        return PUNT;
    if (q->t)
        return tx_create_or_set(q, path, (size_t)n, "", 0, 1);
    if (xsd_store_get(q->e->store, path, (size_t)n, &v) == 0) {
        if (!(access_of(q->c, v.perms, v.perms_len) & XSD_ACCESS_WRITE))
            return PUNT;        /* EACCES */
        return reply_ok(q->reply);             /* existing: kept, no event */
    }
    if (!may_mutate(q))
        return PUNT;
    return create_or_set(q, path, (size_t)n, "", 0);
}

static int64_t do_rm(const struct request *q)
{
    char path[ABS_PATH_MAX];
    struct xsd_node_view v;
    int64_t n = one_field(q->payload, q->len), event = 0;
    size_t mark = q->e->deliv_len;

    if (n < 0 || !may_mutate(q))
        return PUNT;
    n = canonical(q->c, q->payload, (size_t)n, path);
    if (n <= 1)
        return PUNT;            /* bad, or the root: EINVAL */
    if (q->t)
        return tx_rm(q, path, (size_t)n);
    if (xsd_store_get(q->e->store, path, (size_t)n, &v))
        return PUNT;            /* missing: OK or an error, Python's to say */
    if (!(access_of(q->c, v.perms, v.perms_len) & XSD_ACCESS_WRITE))
        return PUNT;            /* EACCES */
    if (watched(q->e, path, (size_t)n, XSD_MATCH_ANCESTORS | XSD_MATCH_DESCENDANTS)) {
        if (q->e->wreg) {
            struct firing f = {1, v.perms, v.perms_len, NULL, 0, NULL, 0};
            int64_t fired = fire_group(q->e, q->reply_at, path, (size_t)n, &f);

            if (fired == 1) {   /* watches below the root: tell it the removed nodes */
                int64_t below = removed_below(q->e, path, (size_t)n);

                if (below < 0)
                    return PUNT;
                f.below = below ? q->e->below : "";
                f.below_len = (size_t)below;
                fired = fire_group(q->e, q->reply_at, path, (size_t)n, &f);
            }
            if (fired != 0) {
                q->e->deliv_len = mark;
                return PUNT;
            }
        } else {
            event = remove_event(q->e, path, (size_t)n);
            if (event < 0)
                return PUNT;
        }
    }
    if (xsd_store_rm(q->e->store, path, (size_t)n) < 0) {
        q->e->deliv_len = mark;
        return PUNT;
    }
    q->e->event_len = (size_t)event;
    return reply_ok(q->reply);
}

/* perms.parse_list over the fields of fields[0..len) (split_fields: a last
 * field without its NUL counts), re-encoded "<kind><decimal>\0" into out;
 * its length, or PUNT for what parse refuses or store.c cannot hold. *owner
 * gets the first entry's domid, *count the number of entries. */
static int64_t parse_perms(const char *fields, size_t len, char *out, uint32_t *owner,
                           uint32_t *count)
{
    size_t at = 0, i = 0;
    int first = 1;

    if (len == 0)
        return PUNT;            /* no permissions: EINVAL */
    while (i < len) {
        const char *f = fields + i, *z = memchr(f, '\0', len - i);
        size_t flen = z ? (size_t)(z - f) : len - i;
        uint64_t domid = 0;
        int w;

        if (flen < 2 || (!xsd_perm_kind_access(f[0]) && f[0] != 'n'))
            return PUNT;
        for (size_t k = 1; k < flen; k++) {
            if (f[k] < '0' || f[k] > '9')
                return PUNT;
            domid = domid * 10 + (uint64_t)(f[k] - '0');
            if (domid > STORE_DOMID_MAX)
                return PUNT;
        }
        w = snprintf(out + at, PERMS_BUF - at, "%c%u", f[0], (unsigned)domid);
        if (w < 0 || (size_t)w + 1 > PERMS_BUF - at)
            return PUNT;
        at += (size_t)w + 1;   /* snprintf wrote the NUL */
        if (first)
            *owner = (uint32_t)domid;   /* <= UINT32_MAX: checked above */
        first = 0;
        (*count)++;
        i += flen + 1;
    }
    return (int64_t)at;
}

/* ops.do_set_perms. */
static int64_t do_set_perms(const struct request *q)
{
    const char *nul = q->len ? memchr(q->payload, '\0', q->len) : NULL;
    char path[ABS_PATH_MAX], perms[PERMS_BUF];
    struct xsd_node_view v;
    uint32_t owner = 0, count = 0;
    int64_t n, plen, event = 0;
    size_t cut, mark = q->e->deliv_len;

    if (!nul || !may_mutate(q))
        return PUNT;
    cut = (size_t)(nul - q->payload);
    plen = parse_perms(nul + 1, q->len - cut - 1, perms, &owner, &count);
    if (plen < 0 || !domain_known(q->e, owner) || over_quota(q->c, q->c->quotas.permissions, count))
        return PUNT;            /* EINVAL, ENOENT / the hypervisor's to say, ENOSPC */
    n = canonical(q->c, q->payload, cut, path);
    if (n < 0 || node_get(q, path, (size_t)n, &v))
        return PUNT;
    /* permissions.existing_node(WRITE | OWNER): the owner, or acting for it;
     * only a privileged caller gives a node away (EPERM). */
    if (!q->c->privileged && (access_of(q->c, v.perms, v.perms_len) != XSD_ACCESS_ALL ||
                              owner != v.owner))
        return PUNT;
    if (q->t) {
        char old[PERMS_BUF];
        size_t old_len = v.perms_len;

        if (old_len > sizeof old)
            return PUNT;
        memcpy(old, v.perms, old_len);         /* the view is void after the next call */
        if (xsd_txn_set_perms(q->t, path, (size_t)n, perms, (size_t)plen) ||
            xsd_txn_note_change(q->t, path, (size_t)n, perms, (size_t)plen, old, old_len))
            return PUNT;
        return reply_ok(q->reply);
    }
    if (watched(q->e, path, (size_t)n, XSD_MATCH_ANCESTORS)) {
        if (q->e->wreg) {
            struct firing f = {0, perms, (size_t)plen, v.perms, v.perms_len, NULL, 0};

            if (fire_group(q->e, q->reply_at, path, (size_t)n, &f) < 0)
                return PUNT;
        } else {
            event = change_event(q->e, path, (size_t)n, perms, (size_t)plen, v.perms,
                                 v.perms_len);
            if (event < 0)
                return PUNT;
        }
    }
    if (xsd_store_set_perms(q->e->store, path, (size_t)n, perms, (size_t)plen)) {
        q->e->deliv_len = mark;
        return PUNT;
    }
    q->e->event_len = (size_t)event;
    return reply_ok(q->reply);
}

/* -- TRANSACTION_START / TRANSACTION_END (engine.h, XSD_RUN_TXN) ------------ */

/* ops.do_transaction_start outside a transaction: "<id>\0". */
static int64_t do_transaction_start(const struct request *q)
{
    xsd_conn *c = q->conn;
    uint32_t id = c->next_tx_id;
    unsigned probes = 0;
    xsd_txn *t;
    int n;

    if (q->t || !(c->privileged || c->txn_quotas_set))
        return PUNT;            /* EBUSY; or the quotas not known yet */
    if (!c->privileged && c->txn_max && c->txn_count + 1 > c->txn_max)
        return PUNT;            /* ENOSPC (Python counts the refusal) */
    while (id == 0 || conn_txn(c, id)) {        /* ids wrap through uint32 (XSA-420) */
        if (++probes > XSD_TXN_PROBES)
            return PUNT;        /* a long run of ids in use: Python's dict walks it */
        id++;                   /* unsigned: 0xFFFFFFFF + 1 is 0, skipped next round */
    }
    t = xsd_txn_new(q->e->store);
    if (!t)
        return PUNT;
    xsd_txn_set_limit(t, c->privileged ? 0 : c->txn_nodes);
    if (xsd_conn_txn_add(c, id, t)) {
        xsd_txn_free(t);
        return PUNT;
    }
    c->next_tx_id = id + 1;
    q->e->txn_kind = XSD_TXN_STARTED;
    q->e->txn_id = id;
    q->e->txn = t;
    n = snprintf(q->reply, XSD_PAYLOAD_MAX, "%u", (unsigned)id);
    return (int64_t)n + 1;     /* with its NUL */
}

/* The perms entries starting at p (each ending in NUL, then one more NUL,
 * within end): their length without the closing NUL, or -1. */
static int64_t entries_len(const char *p, const char *end)
{
    const char *at = p;

    while (at < end && *at != '\0') {
        const char *nul = memchr(at, '\0', (size_t)(end - at));

        if (!nul)
            return -1;
        at = nul + 1;
    }
    return at < end ? (int64_t)(at - p) : -1;
}

/* The entries below root of a REMOVE the committed transaction t fired
 * (xsd_txn_removed_below) in e->below; their length, or PUNT. */
static int64_t txn_removed_below(xsd_engine *e, const xsd_txn *t, const char *root,
                                 size_t len)
{
    for (;;) {
        int64_t n = xsd_txn_removed_below(t, root, len, e->below, e->below_cap);

        if (n < 0)
            return PUNT;
        if ((size_t)n <= e->below_cap)
            return n;
        if (below_room(e, 0, (size_t)n))
            return PUNT;
    }
}

/* One merged REMOVE of the committed transaction t at path (perms: the
 * perms it has now when it was made again, else none) fired as one group,
 * as Daemon.fire hands it to CWatchRegistry.fire_remove: the root's perms
 * from the removed-perms map unless made again, the nodes below from the
 * map when watches lie below. 0, or PUNT (out of memory). */
static int64_t fire_committed_remove(xsd_engine *e, const xsd_txn *t, size_t reply_at,
                                     const char *path, size_t len,
                                     const char *perms, size_t perms_len)
{
    struct firing f = {1, perms, perms_len, NULL, 0, NULL, 0};
    int64_t fired, below;

    if (!perms_len && !xsd_txn_removed_perms(t, path, len, &f.perms, &f.perms_len))
        return PUNT;            /* a merged REMOVE's root is always in the map */
    fired = fire_group(e, reply_at, path, len, &f);
    if (fired != 1)
        return fired;
    below = txn_removed_below(e, t, path, len);     /* watches below the root */
    if (below < 0)
        return PUNT;
    f.below = below ? e->below : "";
    f.below_len = (size_t)below;
    return fire_group(e, reply_at, path, len, &f) == 0 ? 0 : PUNT;
}

/* The committed transaction's merged events fired through the registry in
 * first-touch order (CHANGEs and REMOVEs as xsd_txn_events lists them), each
 * a group ahead of the reply at reply_at, as Daemon.fire runs them. Stops at
 * the first that cannot be made (out of memory): the change is made and
 * will be acknowledged, as dispatch._fire's logged failure. */
static void fire_committed(xsd_engine *e, const xsd_txn *t, size_t reply_at)
{
    const char *at, *end;
    int64_t n;

    for (;;) {
        char *bigger;
        size_t cap;

        n = xsd_txn_events(t, e->scratch, e->scratch_cap);
        if (n < 0)
            return;
        if ((size_t)n <= e->scratch_cap)
            break;
        cap = (size_t)n > 2 * e->scratch_cap ? (size_t)n : 2 * e->scratch_cap;
        bigger = XSD_REALLOC(e->scratch, cap);
        if (!bigger)
            return;
        e->scratch = bigger;
        e->scratch_cap = cap;
    }
    if (n == 0)
        return;                 /* nothing pending (the scratch space may be NULL) */
    at = e->scratch;
    end = e->scratch + n;
    while (at < end && (*at == XSD_TXN_CHANGE || *at == XSD_TXN_REMOVE)) {
        const char *path = at + 1, *nul = memchr(path, '\0', (size_t)(end - path));
        struct firing f = {0, NULL, 0, NULL, 0, NULL, 0};
        int64_t perms_len, old_len;

        if (!nul)
            return;
        f.perms = nul + 1;
        perms_len = entries_len(f.perms, end);
        if (perms_len < 0)
            return;
        f.perms_len = (size_t)perms_len;
        if (*at == XSD_TXN_REMOVE) {    /* 'R' <path> NUL <perms or nothing> NUL */
            if (fire_committed_remove(e, t, reply_at, path, (size_t)(nul - path), f.perms,
                                      f.perms_len) < 0)
                return;
            at = f.perms + perms_len + 1;
            continue;
        }
        f.old = f.perms + perms_len + 1;
        old_len = entries_len(f.old, end);
        if (old_len < 0)
            return;
        f.old_len = (size_t)old_len;
        if (!old_len)
            f.old = NULL;
        if (fire_group(e, reply_at, path, (size_t)(nul - path), &f) < 0)
            return;
        at = f.perms + perms_len + 1 + old_len + 1;
    }
}

/* ops.do_transaction_end of a transaction the conn knows: "F" drops it, "T"
 * commits it and fires its events, or answers EAGAIN when it conflicts
 * (engine.h says which commits are Python's). */
static int64_t do_transaction_end(const struct request *q)
{
    xsd_engine *e = q->e;
    int rc;

    if (!q->t || q->len < 1 || q->len > 2 || (q->len == 2 && q->payload[1] != '\0') ||
        (q->payload[0] != 'T' && q->payload[0] != 'F'))
        return PUNT;            /* ENOENT (or a lost one Python adopts), EINVAL */
    if (q->payload[0] == 'T') {
        rc = xsd_txn_conflicts(q->t);
        if (rc == -EAGAIN) {    /* dispatch drops it first; the commit raises EAGAIN */
            xsd_conn_txn_drop(q->conn, q->tx_id);
            q->conn->conflicts++;
            e->txn_id = q->tx_id;
            e->txn_kind = XSD_TXN_CONFLICT;
            memcpy(q->reply, "EAGAIN", 7);
            return 7;
        }
        if (rc || !(q->flags & XSD_RUN_MUTATE) || !e->wreg)
            return PUNT;        /* the store's error; or Python commits and fires */
        rc = xsd_txn_commit(q->t);
        xsd_conn_txn_drop(q->conn, q->tx_id);
        e->txn_id = q->tx_id;
        if (rc) {               /* -ENOMEM applying: part may be in the store */
            e->txn_kind = XSD_TXN_FAILED;
            memcpy(q->reply, "EIO", 4);
            return 4;
        }
        fire_committed(e, q->t, q->reply_at);
    } else {
        xsd_conn_txn_drop(q->conn, q->tx_id);
        e->txn_id = q->tx_id;
    }
    e->txn_kind = XSD_TXN_ENDED;
    return reply_ok(q->reply);
}

/* -- watches (ops.do_watch, do_unwatch; engine.h) ------------------------- */

/* A special "@name" as ops._path gives it (canonicalize with allow_special:
 * path characters, no '/'; within path-max, which no home prefix shortens)
 * into out; its length, or PUNT. */
static int64_t special_name(const xsd_conn *c, const char *raw, size_t n, char *out)
{
    if (n > ABS_PATH_MAX || (c->path_max && n > c->path_max))
        return PUNT;
    for (size_t i = 0; i < n; i++)
        if (!path_char(raw[i]) || raw[i] == '/')
            return PUNT;
    memcpy(out, raw, n);
    return (int64_t)n;
}

/* A watch's key in the registry: "path NUL token". */
#define WATCH_KEY_MAX (ABS_PATH_MAX + 1u + XSD_PAYLOAD_MAX)

/* ops._watch_args: exactly two fields (split_fields: the last one's NUL may
 * be missing), the path made absolute (or a special name), as the watch's
 * key "path NUL token" into key (WATCH_KEY_MAX bytes): the path's length, or
 * PUNT (EINVAL); *tlen the token's; *relative: the client gave neither '/'
 * nor '@' first. */
static int64_t watch_args(const struct request *q, char *key, size_t *tlen, int *relative)
{
    const char *p = q->payload, *nul = q->len ? memchr(p, '\0', q->len) : NULL;
    const char *token;
    size_t cut, rest;
    int64_t n;

    if (!nul)
        return PUNT;            /* one field */
    cut = (size_t)(nul - p);
    rest = q->len - cut - 1;
    if (rest == 0)
        return PUNT;            /* "<path>\0": one field */
    token = nul + 1;
    if (token[rest - 1] == '\0')
        rest--;
    if (rest && memchr(token, '\0', rest))
        return PUNT;            /* three fields or more */
    *relative = cut != 0 && p[0] != '/' && p[0] != '@';
    n = cut != 0 && p[0] == '@' ? special_name(q->c, p, cut, key) : canonical(q->c, p, cut, key);
    if (n < 0)
        return PUNT;
    key[n] = '\0';             /* n <= ABS_PATH_MAX, rest < XSD_PAYLOAD_MAX */
    if (rest)
        memcpy(key + n + 1, token, rest);
    *tlen = rest;
    return n;
}

/* Whether WATCH and UNWATCH may run here for this conn (xsd_conn_watches). */
static int watches_here(const struct request *q)
{
    return q->e->wreg && q->c->wsession >= 0;
}

/* Room in the run's watch log for an entry of a klen-byte key, when c's
 * watches are logged (engine.h, watch_log); 0, or -1 out of memory. */
static int watch_log_room(xsd_engine *e, const xsd_conn *c, size_t klen)
{
    if (!c->watches_journaled)
        return 0;
    return buffer_room(&e->wlog, &e->wlog_cap, e->wlog_len, XSD_WATCH_LOG_HEADER + klen, 1024);
}

/* The entry of a WATCH or UNWATCH answered for c, if c's watches are
 * logged; its room made by watch_log_room. */
static void watch_log(xsd_engine *e, const xsd_conn *c, int kind, int relative,
                      const char *key, size_t klen)
{
    char *at;

    if (!c->watches_journaled)
        return;
    at = e->wlog + e->wlog_len;
    put_u32(at, (uint32_t)klen);        /* klen < WATCH_KEY_MAX */
    at[4] = (char)kind;
    at[5] = (char)(relative != 0);
    memcpy(at + XSD_WATCH_LOG_HEADER, key, klen);
    e->wlog_len += XSD_WATCH_LOG_HEADER + klen;
}

/* ops.do_watch: register, reply "OK", and queue the initial event after
 * the reply as a group flagged XSD_DELIVERY_AFTER. The group's room is
 * made before the watch is added, so nothing fails once it is. */
static int64_t do_watch(const struct request *q)
{
    xsd_engine *e = q->e;
    const xsd_conn *c = q->c;
    char key[WATCH_KEY_MAX];
    size_t tlen = 0, head, start = e->deliv_len, len, klen;
    uint32_t s;
    int relative = 0;
    int64_t n, rec;

    if (!watches_here(q))
        return PUNT;
    n = watch_args(q, key, &tlen, &relative);
    if (n < 0)
        return PUNT;
    len = (size_t)n;
    klen = len + 1 + tlen;
    s = (uint32_t)c->wsession;
    if (over_quota(c, c->watch_limit, xsd_wreg_session_count(e->wreg, s) + 1))
        return PUNT;            /* E2BIG */
    if (!c->privileged &&
        (!c->quotas_set || !memory_fits(e, c, WATCH_CHARGE + (uint64_t)len + tlen)))
        return PUNT;            /* ENOMEM, or the soft quota's log */
    /* the group: header, path, one delivery (its event path at most the path) */
    head = XSD_DELIVERY_GROUP_HEADER + len;
    if (deliveries_room(e, head + XSD_WREG_DELIVERY_HEADER + 2 * len + 1 + tlen) ||
        watch_log_room(e, c, klen))
        return PUNT;
    if (xsd_wreg_add(e->wreg, s, key, len, key + len + 1, tlen, relative, NULL))
        return PUNT;            /* EEXIST; ENOMEM: nothing registered */
    rec = xsd_wreg_initial(e->wreg, s, key, klen, e->deliv + start + head,
                           e->deliv_cap - start - head);
    if (rec < 0 || (size_t)rec > e->deliv_cap - start - head || (uint64_t)rec > U32_MAX) {
        xsd_wreg_remove(e->wreg, s, key, klen);     /* never: room made */
        return PUNT;
    }
    put_u64_host(e->deliv + start, (uint64_t)q->reply_at | XSD_DELIVERY_AFTER);
    put_u32(e->deliv + start + 8, (uint32_t)len);
    put_u32(e->deliv + start + 12, (uint32_t)rec);
    memcpy(e->deliv + start + XSD_DELIVERY_GROUP_HEADER, key, len);     /* the path */
    e->deliv_len = start + head + (size_t)rec;
    watch_log(e, c, XSD_WATCH_LOG_ADDED, relative, key, klen);
    return reply_ok(q->reply);
}

/* ops.do_unwatch: the session's watch of that path and token removed; none
 * is PYTHON (ENOENT). */
static int64_t do_unwatch(const struct request *q)
{
    char key[WATCH_KEY_MAX];
    size_t tlen = 0, klen;
    int relative = 0;
    int64_t n;

    if (!watches_here(q))
        return PUNT;
    n = watch_args(q, key, &tlen, &relative);
    if (n < 0)
        return PUNT;
    klen = (size_t)n + 1 + tlen;
    if (watch_log_room(q->e, q->c, klen))
        return PUNT;
    if (xsd_wreg_remove(q->e->wreg, (uint32_t)q->c->wsession, key, klen))
        return PUNT;            /* ENOENT */
    watch_log(q->e, q->c, XSD_WATCH_LOG_REMOVED, 0, key, klen);
    return reply_ok(q->reply);
}

static int64_t answer(const struct request *q, uint32_t op)
{
    switch (op) {
    case OP_READ: return do_read(q);
    case OP_DIRECTORY: return do_directory(q);
    case OP_DIRECTORY_PART: return do_directory_part(q);
    case OP_GET_PERMS: return do_get_perms(q);
    case OP_WRITE: return do_write(q);
    case OP_MKDIR: return do_mkdir(q);
    case OP_RM: return do_rm(q);
    case OP_SET_PERMS: return do_set_perms(q);
    case OP_TRANSACTION_START: return do_transaction_start(q);
    case OP_TRANSACTION_END: return do_transaction_end(q);
    case OP_WATCH: return do_watch(q);
    case OP_UNWATCH: return do_unwatch(q);
    default: return PUNT;
    }
}

/* -- a WATCH's initial event among the replies (xsd_conn_inline_events) -- */


/* The initial event of a WATCH's delivery group at g (do_watch's: one
 * record of xsd_wreg_initial): where its reply starts in out (the group's
 * reply_at without XSD_DELIVERY_AFTER) and the delivery; the next group.
 * NULL when g is not a WATCH's group. */
struct initial {
    size_t reply_at;
    struct xsd_delivery d;
};

static const char *initial_of(const char *g, struct initial *i)
{
    struct xsd_delivery_group grp;
    const char *next = xsd_delivery_group_read(g, &grp);

    if (!(grp.reply_at & XSD_DELIVERY_AFTER))
        return NULL;
    i->reply_at = (size_t)(grp.reply_at & ~XSD_DELIVERY_AFTER);
    xsd_delivery_read(grp.records, grp.path, grp.path_len, &i->d);
    return next;
}

/* Where the reply starting at out[at] ends. */
static size_t reply_end(const char *out, size_t at)
{
    return at + XSD_HEADER_SIZE + get_u32(out + at + 12);
}

/* The run's initial events (its delivery groups, every one a WATCH's)
 * written into out[0..*out_len) right after their WATCH's replies, within
 * c's room and cap, as engine.h's xsd_conn_inline_events says: how many,
 * with *out_len and the deliveries updated; 0 (nothing changed) when the
 * run does not qualify. Allocates nothing. */
static uint32_t inline_initial(xsd_engine *e, const xsd_conn *c, char *out, size_t *out_len,
                               size_t cap, int unwatched)
{
    const char *g, *end = e->deliv + e->deliv_len;
    size_t total = 0, n = *out_len, from, w, prev;
    uint32_t count = 0;
    struct initial i;

    for (g = e->deliv; g < end; count++) {
        g = initial_of(g, &i);
        if (!g || xsd_event_payload(&i.d) > XSD_PAYLOAD_MAX)
            return 0;
        total += XSD_HEADER_SIZE + xsd_event_payload(&i.d);
    }
    if (count > c->inline_events || (count > 1 && unwatched) ||
        total > c->inline_bytes || n > c->inline_bytes - total || total > cap - n)
        return 0;
    /* Everything after the first WATCH's reply moves up by all the events'
     * bytes, then comes back down a segment at a time, each event written
     * after its reply: a write never reaches bytes not yet moved back. */
    initial_of(e->deliv, &i);
    from = reply_end(out, i.reply_at);
    memmove(out + from + total, out + from, n - from);
    w = prev = from;
    for (g = e->deliv; g < end;) {
        size_t upto;

        g = initial_of(g, &i);
        upto = i.reply_at < from ? from : reply_end(out + total, i.reply_at);
        memmove(out + w, out + prev + total, upto - prev);
        w += upto - prev;
        prev = upto;
        w += xsd_event_frame(out + w, &i.d);
    }
    memmove(out + w, out + prev + total, n - prev);
    *out_len = n + total;
    e->deliv_len = 0;
    return count;
}

static int journaled_op(uint32_t op)
{
    return op == OP_WRITE || op == OP_MKDIR || op == OP_RM || op == OP_SET_PERMS;
}

int xsd_engine_run(xsd_engine *e, xsd_conn *c, const char *in, size_t len,
                   char *out, size_t cap, unsigned flags, struct xsd_run *r)
{
    size_t pos = 0, out_len = 0, journaled = 0, reply_at = 0;
    uint32_t handled = 0, inlined = 0;
    int stop, unwatched = 0;

    e->event_len = 0;
    e->deliv_len = 0;
    e->wlog_len = 0;    /* its buffer stays: the FULL stop below keeps it within twice
                           XSD_DELIVERIES_STOP and one entry (buffer_room doubles) */
    if (e->deliv_cap > 4 * XSD_DELIVERIES_STOP) {   /* a big removal's: not kept */
        XSD_FREE(e->deliv);
        e->deliv = NULL;
        e->deliv_cap = 0;
    }
    if (e->below_cap > 4 * XSD_DELIVERIES_STOP) {
        XSD_FREE(e->below);
        e->below = NULL;
        e->below_cap = 0;
    }
    for (;;) {
        uint32_t op, plen;
        struct request q;
        int64_t n;

        if (len - pos < XSD_HEADER_SIZE) {
            stop = XSD_RUN_DONE;
            break;
        }
        op = get_u32(in + pos);
        plen = get_u32(in + pos + 12);
        if (plen > XSD_PAYLOAD_MAX) {
            stop = XSD_RUN_BAD;
            break;
        }
        if (len - pos - XSD_HEADER_SIZE < plen) {
            stop = XSD_RUN_DONE;
            break;
        }
        if (cap - out_len < XSD_REPLY_MAX || e->deliv_len > XSD_DELIVERIES_STOP ||
            e->wlog_len > XSD_DELIVERIES_STOP) {
            stop = XSD_RUN_FULL;
            break;
        }
        q.t = NULL;
        if (get_u32(in + pos + 8) != 0) {      /* tx_id: a transaction C knows, or Python's */
            q.t = conn_txn(c, get_u32(in + pos + 8));
            if (!q.t) {
                stop = XSD_RUN_PYTHON;
                break;
            }
        }
        q.e = e;
        q.c = c;
        q.conn = c;
        q.tx_id = get_u32(in + pos + 8);
        e->txn_kind = 0;
        q.payload = in + pos + XSD_HEADER_SIZE;
        q.len = plen;
        q.flags = flags;
        q.reply = out + out_len + XSD_HEADER_SIZE;
        q.reply_at = out_len;
        n = answer(&q, op);     /* sets e->event_len only with a change made */
        if (n < 0) {
            stop = XSD_RUN_PYTHON;
            break;
        }
        memcpy(out + out_len, in + pos, 12);   /* type, req_id, tx_id */
        put_u32(out + out_len + 12, (uint32_t)n);
        if (e->txn_kind == XSD_TXN_FAILED || e->txn_kind == XSD_TXN_CONFLICT)
            put_u32(out + out_len, OP_ERROR);  /* dispatch's error_packet: counted there */
        else
            c->requests[op]++;  /* answered ops are all < XSD_OP_COUNT */
        out_len += XSD_HEADER_SIZE + (size_t)n;
        if (journaled_op(op))
            journaled += plen;
        unwatched |= op == OP_UNWATCH;
        handled++;
        pos += XSD_HEADER_SIZE + plen;
        if (e->txn_kind) {
            stop = XSD_RUN_TXN;
            break;
        }
        if (e->event_len) {
            reply_at = out_len - XSD_HEADER_SIZE - (size_t)n;
            stop = XSD_RUN_EVENTS;
            break;
        }
    }
    if (stop == XSD_RUN_DONE && pos == len && e->deliv_len && c->inline_events)
        inlined = inline_initial(e, c, out, &out_len, cap, unwatched);
    r->consumed = pos;
    r->out_len = out_len;
    r->journaled = journaled;
    r->handled = handled;
    r->stop = stop;
    r->reply_at = reply_at;
    r->event = stop == XSD_RUN_EVENTS ? e->event : NULL;
    r->event_len = stop == XSD_RUN_EVENTS ? e->event_len : 0;
    r->deliveries = e->deliv_len ? e->deliv : NULL;
    r->deliveries_len = e->deliv_len;
    r->txn_kind = stop == XSD_RUN_TXN ? e->txn_kind : 0;
    r->txn_id = stop == XSD_RUN_TXN ? e->txn_id : 0;
    r->txn = stop == XSD_RUN_TXN && e->txn_kind == XSD_TXN_STARTED ? e->txn : NULL;
    r->watch_log = e->wlog_len ? e->wlog : NULL;
    r->watch_log_len = e->wlog_len;
    r->events_inlined = inlined;
    return stop;
}
