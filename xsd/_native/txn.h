/*
 * txn.h: one xenstore transaction in C: a private overlay over the C node
 * store (store.h), checked at commit. The Python Transaction
 * (xsd/core/transactions.py) is the oracle: same reads recorded in the same
 * order, same quota refusals, same replies, same pending events, same commit
 * (tests/native/test_txn.py runs both side by side).
 *
 *   xsd_txn                              one entry per path touched, in first-touch
 *   +----------+                         order (Transaction.seen's order)
 *   | entries -+--> [ "/a" | "/a/b" | "/a/c" | ... ]
 *   | index   -+--> open addressing over the entries, keyed by path
 *   | overlay -+--> the entries written, in first-write order (Transaction.overlay)
 *   | owned    |    per-domain owned-node delta (Transaction.owned_delta)
 *   +----------+
 *
 *   entry: seen (generation when first read, or absent)
 *          snapshot: a private copy of the node as first read (value, perms,
 *                    children names in order), changed in place once written
 *          made: a node the transaction created (also after removing the path)
 *          overlay state: untouched, the snapshot written, made, or removed
 *          pending event: CHANGE (perms, first old perms) or REMOVE, and the
 *                    permissions the node had when the transaction first removed it
 *
 * Reads: a path not yet touched is copied from the store and counts against
 * the limit (transaction-nodes; -ENOSPC when the entries already reach it;
 * 0: no limit). Mutators take checked arguments (ops.py validates): they
 * mirror Transaction's create_missing, remove_tree, set_perms, set_value.
 * Events (what dispatch hands PendingEvents.extend) are noted separately:
 * xsd_txn_note_change / xsd_txn_note_remove merge them per node.
 *
 * Commit: every seen path's generation compared with the store's (-EAGAIN on
 * any difference, or when doomed; nothing changed); then, in overlay order,
 * a written snapshot is put (xsd_store_put), a removed or re-made path that
 * existed is removed (xsd_store_rm); then the made nodes are put parents
 * first, each parent's in the transaction's children order
 * (Transaction._create_in_order). The merged events are then read with
 * xsd_txn_events.
 *
 * Allocation failure: a read that fails with -ENOMEM records nothing; a
 * mutator or note that fails with -ENOMEM may have changed part of the
 * overlay, so it dooms the transaction (its commit answers -EAGAIN, as after
 * a live update, and the client retries). A commit that fails with -ENOMEM
 * while applying may have applied part (each store call is atomic, the store
 * stays sound).
 *
 * Iterative throughout (subtree walks use an explicit stack). Threads: none;
 * the store must not change during a call. The store is borrowed: it must
 * outlive the transaction.
 */
#ifndef XSD_TXN_H
#define XSD_TXN_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xsd_txn xsd_txn;     /* opaque */

/* Event records of xsd_txn_events (and the removal records of
 * xsd_txn_removed), "<perms>" being entries each ending in NUL, then one NUL:
 *   'C' <path> NUL <perms> <old perms> NUL       CHANGE (old empty: None)
 *   'R' <path> NUL <perms or nothing> NUL        REMOVE; perms: the path was made
 *                                               again (what it has now)
 *   'M' <path> NUL <perms>                        one entry of the removed-perms map
 *                                               every REMOVE shares; after the events */
#define XSD_TXN_CHANGE 'C'
#define XSD_TXN_REMOVE 'R'
#define XSD_TXN_REMOVED_PERMS 'M'

/* A new empty transaction over s, or NULL when out of memory. */
xsd_txn *xsd_txn_new(xsd_store *s);

/* Free t (not the store). NULL does nothing. */
void xsd_txn_free(xsd_txn *t);

/* The transaction-nodes limit for the next reads (0: none). */
void xsd_txn_set_limit(xsd_txn *t, uint32_t limit);

/* Its commit will answer -EAGAIN (state lost: live update, restart). */
void xsd_txn_doom(xsd_txn *t);

/* Paths touched so far (len(Transaction.seen)). */
size_t xsd_txn_seen(const xsd_txn *t);

/* The node at path as the transaction sees it (Transaction.get): *out
 * filled, pointers valid until the next call on t. 1 present; 0 absent;
 * -ENOSPC (one more path than the limit), -ENOMEM, -EINVAL (bad path):
 * nothing recorded. gen is the generation first read (0 for a made node). */
int xsd_txn_get(xsd_txn *t, const char *path, size_t len, struct xsd_node_view *out);

/* The children names of path ("a\0b\0") as the transaction sees them, with
 * xsd_store_children's n > cap rule; -ENOENT absent, else xsd_txn_get's. */
int64_t xsd_txn_children(xsd_txn *t, const char *path, size_t len, char *out, size_t cap);

/* Transaction.create_missing: path and the count - 1 ancestors above it do
 * not exist, the one above them does; path gets value, the others "", all
 * perms. 0; -ENOSPC (a read over the limit; nothing changed), -EINVAL,
 * -ENOMEM. */
int xsd_txn_create(xsd_txn *t, const char *path, size_t len, size_t count,
                   const char *value, size_t value_len, const char *perms, size_t perms_len);

/* Transaction.remove_tree of an existing path (not the root): every node
 * below is read first (counted; -ENOSPC stops it with those reads recorded
 * and nothing removed; a listed child absent in the view, the parent read
 * before it went outside, is skipped: the commit conflicts anyway); then the
 * subtree is removed from the view. Returns the number removed;
 * xsd_txn_removed gives their records. */
int64_t xsd_txn_remove(xsd_txn *t, const char *path, size_t len);

/* The last xsd_txn_remove's records "<path>\0<perms>\0" (xsd_store_subtree's
 * format and order), with the n > cap rule. */
int64_t xsd_txn_removed(const xsd_txn *t, char *out, size_t cap);

/* Transaction.set_perms / set_value on an existing node. 0; -ENOENT,
 * -EINVAL, -ENOMEM. */
int xsd_txn_set_perms(xsd_txn *t, const char *path, size_t len,
                      const char *perms, size_t perms_len);
int xsd_txn_set_value(xsd_txn *t, const char *path, size_t len,
                      const char *value, size_t value_len);

/* Transaction.owned_by's delta: nodes domid owns in the view minus in the store. */
int64_t xsd_txn_owned_delta(const xsd_txn *t, uint32_t domid);

/* PendingEvents.extend of one CHANGE (old NULL: None) or one REMOVE (records
 * as xsd_txn_removed gives them). Paths the transaction has not touched are
 * -EINVAL. 0; -ENOMEM. */
int xsd_txn_note_change(xsd_txn *t, const char *path, size_t len, const char *perms,
                        size_t perms_len, const char *old, size_t old_len);
int xsd_txn_note_remove(xsd_txn *t, const char *root, size_t root_len,
                        const char *records, size_t records_len);

/* xsd_txn_note_remove of the last xsd_txn_remove's records (root: its path). */
int xsd_txn_note_last_remove(xsd_txn *t, const char *root, size_t root_len);

/* The commit's check alone (nothing changed): 0 when xsd_txn_commit would
 * apply, -EAGAIN when it would conflict (or t is doomed), else the store's
 * error. The engine asks it first so that a conflicting TRANSACTION_END is
 * answered EAGAIN (the engine's or Python's) before anything moves. */
int xsd_txn_conflicts(const xsd_txn *t);


/* Apply to the store (see above). 0; -EAGAIN (nothing changed); -ENOMEM. */
int xsd_txn_commit(xsd_txn *t);

/* After a successful commit: the merged events in first-touch order, then
 * the removed-perms map (records above), with the n > cap rule. */
int64_t xsd_txn_events(const xsd_txn *t, char *out, size_t cap);

/* After a successful commit, what watchreg.h's xsd_wreg_fire_remove needs
 * of a merged REMOVE at root, as PendingEvents.__iter__ hands it to
 * Daemon.fire (the removed-perms map every REMOVE shares; a root made again
 * put in front of it with the perms it has now, a ChainMap):
 * xsd_txn_removed_perms: 1 and *perms set (valid until the next change of
 * t) when path is in the map (the perms it had when the transaction first
 * removed it), else 0.
 * xsd_txn_removed_below: the fire call's `below` entries (u32 path length,
 * path, u32 perms length, perms, u32 parent perms length (0xffffffff:
 * none), parent perms; little-endian) of every node of the map strictly
 * below root, in the map's order, its parent's perms from the map (root's
 * as it is now in the store when it was made again), as
 * CWatchRegistry.fire_remove gives them; with the n > cap rule, -EINVAL for
 * a length over 32 bits. */
int xsd_txn_removed_perms(const xsd_txn *t, const char *path, size_t len,
                          const char **perms, size_t *perms_len);
int64_t xsd_txn_removed_below(const xsd_txn *t, const char *root, size_t len,
                              char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* XSD_TXN_H */
