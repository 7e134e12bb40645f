/*
 * store.h: xenstore's node tree in C: one compact block per node, no Python
 * object per node. The Python store (xsd/store.py, driven as in xsd/ops.py)
 * is the oracle: tests/native/test_store_property.py runs random operation
 * sequences through both and requires the same nodes, generations, children
 * order, owner counts and check results (xsd/nodestore.py PyNodeStore is
 * that oracle behind the same interface as xsd/_native/store.py).
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
 * with kind one of n r w b and domid a decimal number <= 65535 (the same
 * rule as xenstore_protocol/perms.py; docs/misc/xenstore.txt, "Permissions").
 * The first entry's domid owns the node; the store counts nodes per owner
 * (the "nodes" quota reads it).
 *
 * Generations (xsd/store.py): one counter, starting at 1 (the root has 0).
 * Every change stamps the changed node with the next number; creating or
 * removing a child stamps the parent first, then each created node from the
 * top down.
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
 * for 100k nodes of 32-byte values (bench/bench_store.py).
 *
 * Errors are negative errno values: -EINVAL (bad path or permissions),
 * -ENOENT, -ENOMEM (an allocation failed: the store holds exactly what it
 * held before, generations included; only the index may have grown),
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

/* How many components at the end of path do not exist: 0 if path exists.
 * *top is filled with the closest existing node (path itself, or its deepest
 * existing ancestor; at worst the root), whose permissions new nodes inherit
 * (xsd/ops.py _create). -EINVAL for a bad path. Reads only. */
int64_t xsd_store_missing(const xsd_store *s, const char *path, size_t len,
                          struct xsd_node_view *top);

/* The children's names of path in creation order, each followed by NUL
 * ("a\0b\0"; "" for none): the DIRECTORY payload. Returns the total length n:
 * if n <= cap, out[0..n) holds it; if n > cap, out is unspecified: call again
 * with cap >= n. -ENOENT, -EINVAL. out may be NULL when cap == 0. Reads only;
 * O(children). */
int64_t xsd_store_children(const xsd_store *s, const char *path, size_t len,
                           char *out, size_t cap);

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
 * owners' counts when the owner changes. 0; -ENOENT, -EINVAL, -E2BIG,
 * -ENOMEM (nothing changed). */
int xsd_store_set_perms(xsd_store *s, const char *path, size_t len,
                        const char *perms, size_t perms_len);

/* List path and every node below it, in the order xsd/ops.py subtree() gives
 * (a stack: the node, then the subtrees of its children, last child first),
 * as records "<path>\0<perms>\0": the node's full path, its permission
 * entries (each ending in NUL), and one more NUL. Returns the total length n
 * with the same n > cap rule as xsd_store_children. -ENOENT, -EINVAL,
 * -ENOMEM (scratch space for the path being built). O(subtree). */
int64_t xsd_store_subtree(const xsd_store *s, const char *path, size_t len,
                          char *out, size_t cap);

/* Remove path and everything below it. Stamps the parent. Returns the number
 * of nodes removed (>= 1); -ENOENT if path does not exist; -EINVAL for a bad
 * path or the root. Never allocates. O(subtree), iterative. */
int64_t xsd_store_rm(xsd_store *s, const char *path, size_t len);

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
 * below the next one, owner counts equal to a recount. Returns the number of
 * problems found (0: sound). A test and debugging aid:
 * O(nodes * (owners + depth)). */
size_t xsd_store_check(const xsd_store *s);

#ifdef __cplusplus
}
#endif

#endif /* XSD_STORE_H */
