/*
 * engine.h: xenstore requests from packet bytes to reply bytes in C, over the
 * C node store (store.h) and the watch registry's trie (trie.h).
 *
 *   bytes a connection delivered                         replies, in order
 *   +--------+---------+--------+--------+------+        +--------+--------+
 *   | READ   | WRITE   | INTRO. | READ   | RE.. |  run   | READ r | WRITE r|
 *   +--------+---------+--------+--------+------+  --->  +--------+--------+
 *   ^ answered ^ answered ^ stop PYTHON: consumed points here; Python's
 *                           dispatch answers exactly that packet, then calls
 *                           run again on the rest, so replies keep their order
 *
 * The engine answers the common requests itself and hands everything else to
 * Python ("punts": stop PYTHON) before changing anything, so every error reply
 * and everything rare is produced by xsd/core exactly as without the engine;
 * a change that may fire watches is made here and its event handed to Python
 * (stop EVENTS), whose watch registry fires it; or, given the C registry
 * (xsd_engine_watches), fired here, its deliveries returned with the run. The Python core (xsd/core/ops.py, dispatch.py,
 * permissions.py) is the oracle: tests/native/test_engine.py feeds the same
 * packets to both and requires the same reply bytes and the same nodes.
 *
 * Answered here (anything else, and any case whose answer would be an error,
 * is PYTHON):
 *   - READ, DIRECTORY, DIRECTORY_PART, GET_PERMS, WRITE, MKDIR, RM, SET_PERMS
 *     with tx_id == 0, or with the tx_id of a transaction registered on the
 *     conn (xsd_conn_txn_add): then over its overlay (txn.h), as ops.py runs
 *     on a Transaction: reads are recorded (transaction-nodes: ENOSPC is
 *     PYTHON), a change goes into the overlay and its event into the
 *     transaction's pending events (no XSD_RUN_EVENTS: nothing fires before
 *     the commit: TRANSACTION_END, below). A read
 *     recorded before a punt is the one Python's handler makes first, so the
 *     transaction ends as if Python had answered alone. Unprivileged
 *     callers create nodes in a transaction within the quotas below as
 *     ops._create counts them there: the nodes quota over the transaction's
 *     view (xsd_store_owned_by plus xsd_txn_owned_delta: what its own
 *     creations, removals and SET_PERMS moved), the memory quota over the
 *     store's bytes (Transaction.bytes_of), after the walk up to the closest
 *     existing ancestor whose reads any refusal would make too;
 *   - paths as xenstore_protocol.paths.canonicalize makes them, for the
 *     common cases: absolute, or relative to "/local/domain/<domid>/";
 *     characters A-Z a-z 0-9 / _ @ - ; no "//", no trailing '/'. Special
 *     "@names", anything over the conn's path_max (the prefix is not
 *     discounted here: such paths go to Python, which knows the exact rule),
 *     a single-path payload without its NUL or with extra fields: PYTHON;
 *   - reads by unprivileged callers when permissions.access grants READ;
 *   - MKDIR of an existing node: "OK", no change (unprivileged: with WRITE);
 *   - mutations (WRITE, MKDIR creating, RM, SET_PERMS) only with
 *     XSD_RUN_MUTATE in flags, on a conn that is not read-only. When a watch
 *     could fire (xsd_trie_match on the changed path, XSD_MATCH_ANCESTORS;
 *     for RM also XSD_MATCH_DESCENDANTS, finds an id) the engine makes the
 *     change, writes its reply and stops XSD_RUN_EVENTS right after it with
 *     the event described (struct xsd_run's event): Python fires it before
 *     sending the reply (C xenstored queues a request's events before its
 *     reply), so who sees what stays the watch registry's to decide.
 *     New nodes inherit the closest existing ancestor's permissions (a
 *     privileged creator takes no ownership: ops._create); WRITE on an
 *     existing node changes only its value.
 *     Unprivileged callers, once their quotas are pushed (xsd_conn_quotas):
 *     WRITE of an existing node they may write, within node-size, and when
 *     it grows a node their domain owns, within the memory quota; WRITE and
 *     MKDIR creating nodes under the closest existing ancestor they may
 *     write (ops._create), within node-size, the nodes quota (the nodes their
 *     domain owns, xsd_store_owned_by, plus the new ones) and the memory
 *     quota; the new nodes take that ancestor's permissions with the first
 *     entry naming the caller's domid (it owns them; a target it acts for
 *     does not). The memory quota as ops._charge counts it: the bytes of the
 *     domain's nodes (xsd_store_bytes_of) plus the session's watch bytes
 *     (read from the registry when the conn has a handle there, so a WATCH
 *     answered here counts at once; else the pushed quotas.watch_bytes)
 *     plus what the request adds (quota.memory_of_node per new node; the
 *     growth of the value). Any request that quota.Quotas.check_memory would
 *     answer with a word in the log or a change of the domain's soft-warned
 *     state (crossing the soft memory quota upwards or back) is PYTHON, as
 *     is every quota error (and a new list that would outgrow one payload). RM of a node they may write; SET_PERMS of a node
 *     they own (or whose owner they act for), keeping the owner, within the
 *     permissions quota.
 *     SET_PERMS: the list parsed as
 *     xenstore_protocol.perms.parse_list, re-encoded in canonical decimal;
 *     an entry naming a domid over 2^32-1 (EINVAL), an owner at or
 *     above DOMID_FIRST_RESERVED or not known (xsd_engine_domain_known):
 *     PYTHON. RM of "/" or of a missing node: PYTHON.
 *   - TRANSACTION_START and TRANSACTION_END as the comment above
 *     XSD_TXN_STARTED says (the run stops XSD_RUN_TXN after each);
 *   - DIRECTORY whose listing is over 4096 bytes (E2BIG) and READ or
 *     GET_PERMS whose answer would be over 4096 bytes: PYTHON.
 *   - WATCH and UNWATCH, given the C registry (xsd_engine_watches) and the
 *     session's handle in it (xsd_conn_watches), any tx_id, as ops.do_watch
 *     and do_unwatch: "<path>\0<token>[\0]" (exactly two fields), the path
 *     absolute, relative or a special "@name" (ops._path with
 *     allow_special; the same cases as above, "@name" without '/'). WATCH
 *     registers it (xsd_wreg_add, as CWatchRegistry.add) when the session
 *     has no watch of that path and token (EEXIST: PYTHON), within the
 *     "watches" quota (E2BIG: PYTHON) and, unprivileged, the memory quota
 *     (40 + path + token more: ops._charge, quota.memory_of_watch), replies
 *     "OK" and queues the watch's initial event AFTER that reply (dispatch's
 *     REPLY_FIRST) as a delivery group flagged XSD_DELIVERY_AFTER, or writes
 *     it into out right after that reply (xsd_conn_inline_events).
 *     UNWATCH of a watch the session has removes it and replies "OK"; of
 *     none, PYTHON (ENOENT). Both are PYTHON without the registry. For a
 *     session whose watches the daemon's listeners hear of (journaled != 0
 *     in xsd_conn_watches: a journaled guest's, Daemon.watch_added) each
 *     WATCH and UNWATCH answered also appends an entry to the run's watch
 *     log (watch_log below), room made first (else PYTHON, nothing done).
 *   An allocation failure inside the store (-ENOMEM: the store is unchanged)
 *   or in the engine's scratch space is PYTHON too.
 *
 * Framing: xs_wire.h's struct xsd_sockmsg { uint32_t type, req_id, tx_id,
 * len; } in host byte order, then len payload bytes. A reply carries the
 * request's type, req_id and tx_id.
 *
 * Ownership: the engine borrows the store and the trie (Python owns both and
 * must keep them alive and unchanged by others during a run); a conn belongs
 * to one session. No locks: one thread (the event loop) at a time.
 */
#ifndef XSD_ENGINE_H
#define XSD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "trie.h"
#include "txn.h"
#include "watchreg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xsd_engine xsd_engine;   /* opaque */
typedef struct xsd_conn xsd_conn;       /* opaque */

#define XSD_HEADER_SIZE   16u
#define XSD_PAYLOAD_MAX   4096u                        /* XENSTORE_PAYLOAD_MAX */
#define XSD_REPLY_MAX     (XSD_HEADER_SIZE + XSD_PAYLOAD_MAX)

/* Flags of xsd_engine_run. */
#define XSD_RUN_MUTATE    1u    /* C may change the store (Python clears it while it cannot) */

/* Why xsd_engine_run stopped (also its return value). */
#define XSD_RUN_DONE      0     /* no whole packet left: in[consumed..len) is a partial one */
#define XSD_RUN_PYTHON    1     /* in[consumed..) starts with a packet Python must answer */
#define XSD_RUN_FULL      2     /* fewer than XSD_REPLY_MAX bytes free in out, or the
                                   run's deliveries passed XSD_DELIVERIES_STOP */
#define XSD_RUN_BAD       3     /* the header at in[consumed] announces len > 4096 */
#define XSD_RUN_EVENTS    4     /* the last packet answered changed a watched node: out
                                   [reply_at..out_len) is its reply, event its event */
#define XSD_RUN_TXN       5     /* the last packet answered was a TRANSACTION_START or END
                                   the engine answered: txn_* say what Python must learn */

/* The event of an XSD_RUN_EVENTS stop (what xsd/core/ops.py appends to
 * events), as records "<path>\0<perms>\0" (perms: the node's permission
 * entries, each ending in NUL, as store.h keeps them):
 *   'C' record(path, perms after) <old perms> '\0'   CHANGE; old perms (SET_PERMS
 *                                                   only) empty for WRITE/MKDIR
 *   'R' "<root>\0" record... RM: every removed node, xsd_store_subtree's order
 *                            (children first, root last) */
#define XSD_EVENT_CHANGE  'C'
#define XSD_EVENT_REMOVE  'R'

#define XSD_OP_COUNT      32u   /* message types counted per conn (xs_wire.h has 27) */
#define XSD_OP_WATCH_EVENT 15u  /* xs_wire.h XS_WATCH_EVENT: the type of an event's frame */

struct xsd_run {
    size_t consumed;    /* bytes of in fully answered (whole packets) */
    size_t out_len;     /* reply bytes written to out[0..out_len) */
    size_t journaled;   /* payload bytes of the WRITE/MKDIR/RM/SET_PERMS answered */
    uint32_t handled;   /* packets answered */
    int stop;           /* XSD_RUN_* */
    size_t reply_at;    /* XSD_RUN_EVENTS: where the last reply starts in out */
    const char *event;  /* XSD_RUN_EVENTS: event_len bytes in the engine's space, */
    size_t event_len;   /* valid until the next run or xsd_engine_free; else NULL, 0 */
    const char *deliveries;  /* with a registry (xsd_engine_watches): the run's */
    size_t deliveries_len;   /* deliveries, as below; valid as event is; else NULL, 0 */
    int txn_kind;            /* XSD_RUN_TXN: XSD_TXN_STARTED, _ENDED, _FAILED or
                                _CONFLICT; else 0 */
    uint32_t txn_id;         /* XSD_RUN_TXN: the transaction's id */
    xsd_txn *txn;            /* XSD_TXN_STARTED: its new overlay, which the caller now
                                owns (frees with xsd_txn_free, after xsd_conn_txn_drop);
                                else NULL */
    const char *watch_log;   /* the WATCHes and UNWATCHes of a journaled session the run
                                answered, in order, as below; valid as event is; */
    size_t watch_log_len;    /* else NULL, 0 */
    uint32_t events_inlined; /* initial events written into out among the replies
                                (xsd_conn_inline_events); 0: none */
};

/* The watch log of a run (struct xsd_run): for each WATCH or UNWATCH the
 * engine answered for a conn whose listeners hear of its watches
 * (xsd_conn_watches' journaled), in the order answered, an entry
 *   u32 key length, u8 kind, u8 relative, key     (host byte order)
 * where key is the watch's "path NUL token" (the path absolute or "@name",
 * as the registry keys it), kind XSD_WATCH_LOG_ADDED or _REMOVED, relative
 * 1 when an added watch's path was given relative (0 for a removal). Python tells the listeners (the journal)
 * each entry before any of the run's replies can be seen (fastpath.py), as
 * Daemon.watch_added / watch_removed would. Past XSD_DELIVERIES_STOP bytes
 * of log the run stops FULL before the next packet. */
#define XSD_WATCH_LOG_HEADER  6u
#define XSD_WATCH_LOG_ADDED   1
#define XSD_WATCH_LOG_REMOVED 0

/* TRANSACTION_START and TRANSACTION_END (XSD_RUN_TXN). The session's table
 * of transactions and its next id belong to Python (Session.transactions,
 * Session.next_tx_id); the conn keeps a mirror of both, the table through
 * xsd_conn_txn_add / _drop, the id through xsd_conn_txn_next, and the run
 * stops right after each START or END it answers so that Python updates
 * its side before anything else runs:
 *   - START, outside a transaction (tx_id 0; else PYTHON: EBUSY, ENOENT),
 *     once the caller's transaction quotas are known (xsd_conn_txn_quotas;
 *     privileged: none bind), within "transactions" (the conn's table plus
 *     one; else PYTHON: ENOSPC): the id as ops.do_transaction_start picks it
 *     (from the next id on, skipping 0 and ids in use, wrapping through
 *     uint32: XSA-420; more than XSD_TXN_PROBES ids in use in a row is
 *     PYTHON), a new overlay (xsd_txn_new) with the transaction-nodes limit,
 *     registered on the conn, the next id moved past it; reply "<id>\0";
 *     XSD_TXN_STARTED, txn_id, txn: Python wraps the overlay
 *     (ctransaction.CTransaction) and records both;
 *   - END of a transaction registered on the conn with payload "T" or "F"
 *     (with or without its NUL; anything else, or an unknown id: PYTHON).
 *     "F" drops it. "T" first asks xsd_txn_conflicts: a conflict (or a
 *     doomed transaction) is answered here as dispatch answers the commit's
 *     EAGAIN: an ERROR packet "EAGAIN\0", nothing changed, the transaction
 *     dropped from the conn, XSD_TXN_CONFLICT, txn_id: Python forgets it and
 *     counts the error (Counters.error), as dispatch would
 *     (xsd_conn_conflicts counts them). Else (only with XSD_RUN_MUTATE and
 *     the C watch registry; else PYTHON, which commits and fires) it
 *     commits, then fires its merged events in first-touch order through the
 *     registry, one delivery group each, all ahead of END's "OK"
 *     (ops.do_transaction_end, Daemon.fire): a CHANGE as fire_change; a
 *     REMOVE as CWatchRegistry.fire_remove given PendingEvents' map (the
 *     root's perms from the removed-perms map, or as it is now when made
 *     again; the nodes below from the map, txn.h xsd_txn_removed_below).
 *     A group that cannot be made for want of memory ends the firing (Python
 *     logs such a failure and sends the reply). The transaction is dropped
 *     from the conn; XSD_TXN_ENDED, txn_id: Python forgets it (and frees it).
 *     A commit that fails while applying (-ENOMEM: part may be applied) is
 *     answered "EIO" as dispatch answers an internal error, the transaction
 *     dropped, XSD_TXN_FAILED: Python counts the error and logs it. */
#define XSD_TXN_STARTED   1
#define XSD_TXN_ENDED     2
#define XSD_TXN_FAILED    3
#define XSD_TXN_CONFLICT  4
#define XSD_TXN_PROBES    64u

/* The caller's "transactions" and "transaction-nodes" quotas (0: none), for
 * START; until the first call an unprivileged caller's START is PYTHON.
 * Python calls it with xsd_conn_quotas. */
void xsd_conn_txn_quotas(xsd_conn *c, uint32_t transactions, uint32_t transaction_nodes);

/* The id the next START tries first (Session.next_tx_id; 1 for a new conn). */
void xsd_conn_txn_next(xsd_conn *c, uint32_t next_tx_id);

/* With the C watch registry (xsd_engine_watches), a watched change outside a
 * transaction does not stop the run: the engine fires it itself, exactly as
 * xsd/core/watches.py CWatchRegistry.fire_change / fire_remove would (CHANGE
 * with the old perms on SET_PERMS; REMOVE with the removed nodes' perms and
 * their parents', taken from the store just before the removal), and appends
 * its deliveries to the run's delivery buffer as one group:
 *   u64 reply_at, u32 path length, u32 records length, path, records
 * (host byte order) where reply_at is where the changing request's reply
 * starts in out and records are watchreg.h's delivery records of a fire call
 * given path (XSD_WREG_SAME_PATH meaning path). A change that delivers
 * nothing adds no group. Python queues each group's deliveries after the
 * replies before reply_at and before that reply (C xenstored queues a
 * request's events before its reply). The deliveries are computed at the
 * change, just before the store call that makes it (a CHANGE's XSA-115 check
 * reads the parent's perms in the store: a node created with missing
 * ancestors has a parent with its own perms, so before or after the call the
 * answer is the same; a later request of the run cannot have changed them
 * yet). A buffer that cannot grow is PYTHON with nothing changed. Past
 * XSD_DELIVERIES_STOP bytes of deliveries the run stops FULL before the next
 * packet, so Python queues them (its budgets and drops apply) before more
 * are made. */
#define XSD_DELIVERY_GROUP_HEADER 16u
/* Set in a group's reply_at: its deliveries go AFTER that reply (a WATCH's
 * initial event, C xenstored and dispatch's REPLY_FIRST), not before it. */
#define XSD_DELIVERY_AFTER        (UINT64_C(1) << 63)
#define XSD_DELIVERIES_STOP       (256u * 1024u)

/* A WATCH's initial event among the run's replies. By default (and beyond
 * the room below) it leaves as a delivery group flagged XSD_DELIVERY_AFTER,
 * for Python to queue (Session.queue_event). Given room on the conn, a run
 * writes the events into out instead, each frame right after its WATCH's
 * reply, as Python's session.event_frame builds it (type XS_WATCH_EVENT,
 * req_id 0, tx_id 0, payload "<event path>\0<token>\0": the path relative
 * for a relative watch, as xsd_wreg_initial gives it), and counts them in
 * events_inlined; then it returns no delivery group. It does so only for a
 * run that answered every byte it was given (XSD_RUN_DONE, consumed == len)
 * and fired nothing else (every group of the run a WATCH's), with at most
 * events events, its output with them within bytes (and cap), no frame over
 * XSD_PAYLOAD_MAX (Python drops such an event: XSA-324), and, when it
 * answered an UNWATCH, only one WATCH (a key dropped and added again in one
 * run gives two identical events, the second of which Python coalesces).
 * Otherwise the groups stay as they were: all or none, so the events of one
 * run are either all queued by Python or all written here. Python gives
 * room only where queue_event would queue each such event among the
 * replies with nothing to coalesce, drop or flush on the way (nothing of the
 * client waiting, the run starting its batch: fastpath.py, Session.event_room).
 * events 0 or bytes 0: none (a new conn's setting). */
void xsd_conn_inline_events(xsd_conn *c, uint32_t events, size_t bytes);

/* Fire watched changes through reg (borrowed; it must watch through the trie
 * given to xsd_engine_new and outlive e's runs) instead of stopping
 * XSD_RUN_EVENTS; NULL: stop as before. */
void xsd_engine_watches(xsd_engine *e, xsd_wreg *reg);

/* A new engine over store and watches (watches may be NULL: no watch
 * registry, nothing can fire), or NULL when out of memory. Domain 0 is known
 * from the start (C xenstored: dom0 is always introduced). */
xsd_engine *xsd_engine_new(xsd_store *store, const xsd_trie *watches);

/* Free e (not the store or the trie). NULL does nothing. Its conns must be
 * freed by their owners; they do not point to e. */
void xsd_engine_free(xsd_engine *e);

/* Mark domid as a domain that may own nodes (known != 0) or not: what
 * Daemon.domain_exists answers for SET_PERMS's new owner. An unknown owner
 * is PYTHON (it asks the hypervisor). 0, or -EINVAL for a domid at or above
 * DOMID_FIRST_RESERVED (0x7FF0), which is never known. */
int xsd_engine_domain_known(xsd_engine *e, uint32_t domid, int known);

/* A new conn (one per session), configured as an unprivileged, writable
 * domain 0 conn without path-max until xsd_conn_configure; NULL when out of
 * memory. e is accepted for symmetry and future per-engine state. */
xsd_conn *xsd_conn_new(xsd_engine *e);

/* Free c. NULL does nothing. */
void xsd_conn_free(xsd_conn *c);

/* Who the session is: its domid, SET_TARGET's target (-1: none),
 * privileged, read-only socket, and the path-max quota binding it (0: none).
 * Python calls it again whenever one of these changes. */
void xsd_conn_configure(xsd_conn *c, uint32_t domid, int64_t target,
                        int privileged, int read_only, uint32_t path_max);

/* What binds an unprivileged caller (xsd/core/quota.py; a limit of 0 is
 * none), as Python knows it for the session's domid. */
struct xsd_quotas {
    uint32_t node_size;     /* "node-size": bytes of a value */
    uint32_t permissions;   /* "permissions": entries in a SET_PERMS list */
    uint32_t nodes;         /* "nodes": nodes the domain owns (store.h's owner counts) */
    uint32_t memory;        /* "memory": the domain's node bytes + watch_bytes */
    uint32_t memory_soft;   /* the soft "memory" (quota-soft; one value for all) */
    int soft_warned;        /* the domain is in Quotas.soft_warned (warned once already) */
    uint64_t watch_bytes;   /* ops.watch_bytes of the session: its watches' charge */
};

/* The quotas binding c's caller when it is unprivileged, copied from *q;
 * Python calls it again before the next run whenever one of them changes
 * (quotas set, a watch added or removed, the domain's soft-warned state).
 * Until the first call the engine leaves every change an unprivileged
 * caller asks for to Python. Privileged callers are bound by none. */
void xsd_conn_quotas(xsd_conn *c, const struct xsd_quotas *q);

/* The conn's transaction tx_id (!= 0) is t (borrowed: the caller drops it
 * with xsd_conn_txn_drop before freeing t); requests carrying tx_id run in
 * it. 0, -EINVAL, -ENOMEM. */
int xsd_conn_txn_add(xsd_conn *c, uint32_t tx_id, xsd_txn *t);
void xsd_conn_txn_drop(xsd_conn *c, uint32_t tx_id);

/* WATCH and UNWATCH for c (engine.h's list above): its session's handle in
 * the registry given to xsd_engine_watches (-1: none yet; Python's
 * fastpath.configure_watches gives every session one when it configures
 * the conn), the "watches" quota binding it (0: none, as for a privileged
 * caller), and journaled != 0 when the daemon's listeners must hear of its
 * watches (Daemon.watch_added: a journaled guest's): then the run logs
 * them (watch_log above).
 * Python calls it again whenever one of these changes. */
void xsd_conn_watches(xsd_conn *c, int64_t session, uint32_t limit, int journaled);

/* Watch events c's client was sent without Python (the poller wrote them:
 * poller.h; its runs' initial events, and others' batches' events to it),
 * counted here for Python's event counts (stats.py), since Session never saw
 * them: add n; the total. */
void xsd_conn_events_written(xsd_conn *c, uint32_t n);
uint64_t xsd_conn_events_written_count(const xsd_conn *c);

/* TRANSACTION_ENDs the engine answered EAGAIN on c (XSD_TXN_CONFLICT; not
 * in xsd_conn_requests: dispatch counts an error reply as an error). */
uint64_t xsd_conn_conflicts(const xsd_conn *c);

/* Requests of type op that the engine answered on c (dispatch.py counts
 * the ones Python answers); 0 for op >= XSD_OP_COUNT. */
uint64_t xsd_conn_requests(const xsd_conn *c, unsigned op);

/* Answer the whole packets at the start of in[0..len) for conn c, writing
 * the replies to out[0..cap) in order, until one of the stop reasons above;
 * fills *r and returns r->stop. Before each whole packet the engine requires
 * XSD_REPLY_MAX bytes free in out (else FULL, nothing of that packet done);
 * a cap below XSD_REPLY_MAX therefore always stops FULL at the first whole
 * packet. A packet that is PYTHON changed nothing. Never allocates except
 * the store's own node blocks and the engine's scratch space (grown, kept)
 * for DIRECTORY_PART of a wide node and for a watched mutation's event, or
 * with a registry its deliveries (and a removal's entries below its root;
 * kept up to 4 * XSD_DELIVERIES_STOP bytes), the watch log of a journaled
 * conn (kept likewise) and the registry's own space (match scratch, watch
 * records); a failed allocation is PYTHON. After XSD_RUN_EVENTS call again on
 * the rest. */
int xsd_engine_run(xsd_engine *e, xsd_conn *c, const char *in, size_t len,
                   char *out, size_t cap, unsigned flags, struct xsd_run *r);

#ifdef __cplusplus
}
#endif

#endif /* XSD_ENGINE_H */
