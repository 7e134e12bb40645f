/*
 * store.h: xenstore's node tree in C: one compact block per node, no Python
 * object per node. The Python store (xsd/core/store.py, driven as in
 * xsd/core/ops.py) is the oracle: tests/native/test_store_property.py runs
 * random operation sequences through both and requires the same nodes,
 * generations, children order, owner counts and bytes, change logs, dumps
 * and check results (xsd/nodestore.py PyNodeStore is that oracle behind the
 * same interface as xsd/_native/store.py).
 *
 *   struct xsd_store                       one xsd_node per node, one block each:
 *   +-----------+                          +--------+--------+------+------+-----+
 *   | root  ----+---> "/" (never indexed)  | parent | child  | next | prev | gen |
 *   | slots ----+--+                       +--------+--------+------+------+-----+
 *   | owners    |  |                       | name_len perms_len value_len cap    |
 *   +-----------+  |                       +-------------------------------------+
 *                  |                       | name | perms "n0\0r5\0" | value     |
 *                  v                       +-------------------------------------+
 *   index: | node | 0 | node | node | 0 | ... |   open addressing, linear probing,
 *          keyed by (parent pointer, name)        every node but the root
 *
 *        "/"             children of a node: child -> first; next runs to the last
 *         |                                  (NULL after it); prev runs back and
 *       "local"                              first->prev is the last, so appending
 *         |                                  and unlinking are O(1)
 *       "domain"  child -> "0" <-> "1" <-> "7"   (creation order)
 *                          |
 *                       "name"
 *
 * Paths are (bytes, length) starting with '/', split on '/' into non-empty
 * components; "/" is the root. "", relative paths, "//", "/a//b", a
 * trailing '/' and a NUL byte anywhere (listings are NUL-separated) are
 * -EINVAL. Any other byte may be in a component (xenstore's character rules
 * are the caller's; xenstore_protocol.paths checks them).
 * Lookup of a path of d components is d index probes, whatever the width of
 * any directory. Walks (remove, subtree listing, free) are iterative: the
 * parent pointers are the stack, so depth costs no C stack.
 *
 * Permissions are kept as the wire encodes them: entries "<kind><domid>\0"
 * with kind one of n r w b and domid a decimal number <= 2^32-1 (the same
 * rule as xenstore_protocol/perms.py; docs/misc/xenstore.txt, "Permissions").
 * The first entry's domid owns the node; the store counts nodes per owner
 * (the "nodes" quota reads it) and the bytes they are charged (the memory
 * quota): per node 40 + len(full path) + len(value) + 8 * permission entries
 * (xsd/core/quota.py memory_of_node), kept up to date by every mutation.
 *
 * Change tracking (the journal's change log; xsd/core/store.py Store.changes):
 * while on, every mutation records what happened to each path it touched:
 * CREATED (1), UPDATED (2: value, permissions or children changed; a path
 * already recorded keeps its kind) or REMOVED (3; a later create makes it
 * CREATED again). One record per path, in first-change order, until
 * xsd_store_take_changes drains them: at most one record per distinct path
 * changed since the last take. A mutation touches paths in this order:
 * write/put of a new node: the closest existing ancestor, then each created
 * node top-down; rm: the parent, then the removed nodes in removal order;
 * set_perms, write/put of an existing node: the node. xsd_store_load and
 * xsd_store_move_last record nothing.
 *
 * Generations (xsd/core/store.py): one counter, starting at 1 (the root has
 * 0). Every change stamps the changed node with the next number; creating or
 * removing a child stamps the parent first, then each created node from the
 * top down. xsd_store_load sets a generation as given, stamping nothing.
 *
 * Limits: a node's name, permissions and value together at most 65535 bytes
 * (xenstore's own limits are far lower: 3072-byte paths, 4096-byte payloads);
 * beyond: -ENAMETOOLONG for a component, -E2BIG for value or permissions.
 *
 * Memory: a node is one allocation of 48 bytes plus name, permissions and
 * value; the index holds one pointer per slot at load <= 0.8. A node whose
 * value or permissions shrink keeps its block; one that grows gets a new
 * block (its children's parent pointers are repointed: O(children)). The
 * index is not shrunk while the store lives. About 101 bytes of RSS per node
 * for 100k nodes of 32-byte values (bench/bench_store.py). While tracking,
 * each change record is one allocation of 24 bytes plus its path, with one
 * array slot and two table slots (load <= 0.5); a take frees the records and,
 * past 1024 table slots, the array and table too. Kept listings
 * (xsd_store_keep_listings): at most 8 of at most 64 KiB each, one allocation
 * each, counted in the stats like every other block; nothing per node.
 *
 * Errors are negative errno values: -EINVAL (bad path or permissions),
 * -ENOENT, -ENOMEM (an allocation failed: the store holds exactly what it
 * held before, generations, byte counts and the change log included; only
 * the index and the change log's table may have grown),
 * -E2BIG, -ENAMETOOLONG.
 *
 * Threads: no locks. Readers may run concurrently on an unchanging store;
 * any mutation needs the caller to serialise. Pointers handed out in an
 * xsd_node_view stay valid until the next mutation.
 */
#ifndef XSD_STORE_H
#define XSD_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xsd_store xsd_store;     /* opaque */

/* Kinds of change-log records (xsd/core/store.py CREATED, UPDATED, REMOVED). */
#define XSD_CHANGE_CREATED 1
#define XSD_CHANGE_UPDATED 2
#define XSD_CHANGE_REMOVED 3

/* What a reader sees of one node; the pointers are into the store. */
struct xsd_node_view {
    const char *value;
    size_t value_len;
    const char *perms;      /* perms_len bytes, "n0\0r5\0": every entry ends in NUL */
    size_t perms_len;
    uint64_t gen;
    uint32_t owner;         /* the first entry's domid */
};

struct xsd_store_stats {
    size_t nodes;           /* nodes in the tree, root included */
    size_t bytes;           /* bytes requested from the allocator and still held */
    size_t blocks;          /* live allocations (each costs malloc's own header too) */
    size_t index_slots;     /* slots of the path index */
};

/* A new store holding only the root "/" (value "", permissions "n0", gen 0,
 * owned by domain 0; the next generation is 1), or NULL when out of memory. */
xsd_store *xsd_store_new(void);

/* Free s and every node in it. NULL is allowed and does nothing. */
void xsd_store_free(xsd_store *s);

/* Look up path. 0 and *out filled if it exists; -ENOENT if not; -EINVAL for a
 * bad path. Reads only; O(components). */
int xsd_store_get(const xsd_store *s, const char *path, size_t len,
                  struct xsd_node_view *out);

/* The read path's copy of one node: its permission entries then its value
 * into out (out[0..meta[1]) the permissions, the rest the value), meta[0]
 * its generation. Returns perms_len + value_len = n with the n > cap rule of
 * xsd_store_children (meta is filled either way); -ENOENT, -EINVAL. Reads
 * only; O(components). One crossing and one copy where xsd_store_get hands
 * out pointers the caller must copy from. */
int64_t xsd_store_read(const xsd_store *s, const char *path, size_t len,
                       char *out, size_t cap, uint64_t meta[2]);

/* How many components at the end of path do not exist: 0 if path exists.
 * *top is filled with the closest existing node (path itself, or its deepest
 * existing ancestor; at worst the root), whose permissions new nodes inherit
 * (xsd/core/ops.py _create). -EINVAL for a bad path. Reads only. */
int64_t xsd_store_missing(const xsd_store *s, const char *path, size_t len,
                          struct xsd_node_view *top);

/* The children's names of path in creation order, each followed by NUL
 * ("a\0b\0"; "" for none): the DIRECTORY payload. Returns the total length n:
 * if n <= cap, out[0..n) holds it; if n > cap, out is unspecified: call again
 * with cap >= n. -ENOENT, -EINVAL. out may be NULL when cap == 0. Reads the
 * tree only: one walk of the children, or one copy of a kept listing (see
 * xsd_store_keep_listings), which a walk that fitted in cap may make. Never
 * fails for want of memory: a listing that cannot be kept is not. */
int64_t xsd_store_children(const xsd_store *s, const char *path, size_t len,
                           char *out, size_t cap);

/* Listings of at least this many bytes are kept by default: a walk of ~200
 * children costs more than keeping a copy (docs/benchmarks.md). */
#define XSD_STORE_LISTING_MIN 1024

/* Keep the listings xsd_store_children makes of min_len bytes or more (0: keep
 * none): a copy per node, up to 8 nodes (past 8, one kept listing is replaced), each
 * dropped by any change to that node's children (create, remove, move_last,
 * load) or the node's removal. A kept listing is what a walk would give,
 * always (xsd_store_check compares). Drops every kept listing. Never fails. */
void xsd_store_keep_listings(xsd_store *s, size_t min_len);

/* The last count children's names of path (all of them if it has fewer), in
 * creation order, as xsd_store_children lists them and with its n > cap rule:
 * the journal asks for the children a batch appended. Reads only;
 * O(count), whatever the number of children. */
int64_t xsd_store_last_children(const xsd_store *s, const char *path, size_t len,
                                size_t count, char *out, size_t cap);

/* Write value at path.
 * - path exists: its value becomes value, it is stamped; perms is ignored
 *   (may be NULL). Returns 0.
 * - path missing: path and each missing ancestor are created with
 *   permissions perms (the caller decides inheritance and owner), the
 *   ancestors with an empty value, path with value; the closest existing
 *   ancestor lists the first of them last among its children. Stamps: that
 *   ancestor, then every created node top-down. Returns how many nodes were
 *   created (>= 1).
 * -EINVAL (bad path, or perms needed and not valid), -E2BIG, -ENAMETOOLONG,
 * -ENOMEM (nothing changed). O(components) plus O(children) of the node when
 * its value grows. */
int64_t xsd_store_write(xsd_store *s, const char *path, size_t len,
                        const char *value, size_t value_len,
                        const char *perms, size_t perms_len);

/* Replace the permissions of path and stamp it; moves the node between
 * owners' counts and bytes when the owner changes. 0; -ENOENT, -EINVAL,
 * -E2BIG, -ENOMEM (nothing changed). */
int xsd_store_set_perms(xsd_store *s, const char *path, size_t len,
                        const char *perms, size_t perms_len);

/* List path and every node below it, in the order xsd/core/ops.py subtree()
 * gives and xsd_store_rm removes in (C xenstored's delete order): children
 * before their parent, siblings in creation order, path itself last; as
 * records "<path>\0<perms>\0": the node's full path, its permission entries
 * (each ending in NUL), and one more NUL. Returns the total length n with
 * the same n > cap rule as xsd_store_children. -ENOENT, -EINVAL, -ENOMEM
 * (scratch space for the path being built). O(subtree), iterative. */
int64_t xsd_store_subtree(const xsd_store *s, const char *path, size_t len,
                          char *out, size_t cap);

/* Remove path and everything below it, in xsd_store_subtree's order. Stamps
 * the parent. Returns the number of nodes removed (>= 1); -ENOENT if path
 * does not exist; -EINVAL for a bad path or the root. Allocates only while
 * tracking (the change records, a path scratch buffer): then -ENOMEM is
 * possible and changes nothing. O(subtree), iterative. */
int64_t xsd_store_rm(xsd_store *s, const char *path, size_t len);

/* A transaction commit's write of one node (the overlay replaces nodes):
 * - path exists: it gets value and perms (its owner counts follow) and is
 *   stamped once. Returns 0.
 * - path missing, its parent exists: created as the parent's last child
 *   with value and perms; stamps the parent, then the node (as
 *   xsd_store_write). Returns 1.
 * -ENOENT (parent missing), -EINVAL (bad path or perms), -E2BIG,
 * -ENAMETOOLONG, -ENOMEM (nothing changed). O(components). */
int64_t xsd_store_put(xsd_store *s, const char *path, size_t len,
                      const char *value, size_t value_len,
                      const char *perms, size_t perms_len);

/* Move path to the end of its parent's children (a node removed and
 * re-created inside a transaction ends up last). Stamps nothing and records
 * no change: the commit puts the parent too. 0; -ENOENT, -EINVAL (bad path,
 * the root). Never allocates. O(components). */
int xsd_store_move_last(xsd_store *s, const char *path, size_t len);

/* Journal replay, snapshot load, live update: the node at path gets exactly
 * value, perms and gen; no stamp, no change record. A missing node is
 * created as its parent's last child. Generations given here are not checked
 * against the counter: set it (xsd_store_set_next_gen) above every loaded
 * one before xsd_store_check. Returns 1 (created) or 0 (existing node
 * overwritten); -ENOENT (parent missing), -EINVAL (bad path or perms),
 * -E2BIG, -ENAMETOOLONG, -ENOMEM (nothing changed). O(components). */
int64_t xsd_store_load(xsd_store *s, const char *path, size_t len,
                       const char *value, size_t value_len,
                       const char *perms, size_t perms_len, uint64_t gen);

/* The whole tree, for snapshots, live-update state and statistics: one
 * record per node in pre-order (a node, then its children's subtrees in
 * creation order; "/" first):
 *   "<path>\0<perms entries, each ending in NUL>\0<gen: u64 little-endian>
 *    <value_len: u32 little-endian><value bytes>"
 * Returns the total length n with the same n > cap rule as
 * xsd_store_children; -ENOMEM (scratch space for the path). Reads only;
 * O(nodes + bytes), iterative. */
int64_t xsd_store_dump(const xsd_store *s, char *out, size_t cap);

/* The nodes whose permissions name domid in any entry, in xsd_store_dump's
 * pre-order, as records "<kind><path>\0": kind 'O' when domid owns the node
 * (its first entry), 'N' when only a later entry names it. What a domain's
 * release (xsd/core/daemon.py forget_domain) must remove or rewrite, found
 * without a record, a crossing or a Python object per node of the tree.
 * Returns the total length n with the n > cap rule of xsd_store_children;
 * -ENOMEM (scratch space for the path). Reads only; O(nodes + permission
 * bytes), iterative. */
int64_t xsd_store_naming(const xsd_store *s, uint32_t domid, char *out, size_t cap);

/* Change tracking on (non-zero) or off. Turning it off drops the log;
 * turning it on while on keeps it. Never fails. */
void xsd_store_track(xsd_store *s, int on);

/* The change log as records "<kind byte><path>\0", one per path, in
 * first-change order, with the n > cap rule of xsd_store_children. Reads
 * only (xsd_store_changes); xsd_store_take_changes also empties the log when
 * the records fit (n <= cap), keeping it otherwise. O(records). */
int64_t xsd_store_changes(const xsd_store *s, char *out, size_t cap);
int64_t xsd_store_take_changes(xsd_store *s, char *out, size_t cap);

/* The generation the next stamp takes; and setting it (replay, load). */
uint64_t xsd_store_next_gen(const xsd_store *s);
void xsd_store_set_next_gen(xsd_store *s, uint64_t gen);

/* Bytes charged to domid's nodes (see "Permissions" above), root included. */
uint64_t xsd_store_bytes_of(const xsd_store *s, uint32_t domid);

/* Nodes owned by domid (first permission entry), the root included. */
size_t xsd_store_owned_by(const xsd_store *s, uint32_t domid);

/* Take the next generation number (what a transaction commit stamps with). */
uint64_t xsd_store_stamp(xsd_store *s);

/* Number of nodes, root included. */
size_t xsd_store_count(const xsd_store *s);

/* Fill *st (see struct xsd_store_stats). */
void xsd_store_stats(const xsd_store *s, struct xsd_store_stats *st);

/* Verify the invariants: every indexed node reachable from the root through
 * children lists and found again by its key, parent/child/next/prev links
 * agreeing, lengths within the block, permissions valid, every generation
 * below the next one, owner counts and bytes equal to a recount, the change
 * log consistent (empty when off). Returns the number of
 * problems found (0: sound). A test and debugging aid:
 * O(nodes * (owners + depth)). */
size_t xsd_store_check(const xsd_store *s);

#ifdef __cplusplus
}
#endif

#endif /* XSD_STORE_H */
