/*
 * trie.h: a trie over path components, mapping each path to a set of 64-bit
 * ids. xsd uses it for its watch registry ("which watches does a write to
 * this path fire?"); the trie itself knows nothing of xenstore.
 *
 *   tree namespace (keys start with '/')       special namespace (keys start with '@')
 *
 *            (root "/")  [w]                           (special root, never matched)
 *            /         \                               /                  \
 *       "local"       "tool"                 "@introduceDomain"    "@releaseDomain"
 *          |             |                         [w]                    [w]
 *       "domain"      "xenstored" [w]
 *       /   |   \
 *     "0"  "1" ... "9999"           <- wide node: children live in an
 *      |    |                          open-addressing hash table, so a
 *   "device" ...                       lookup costs O(1), not O(children)
 *      |
 *    "vif" - "0" - "state" [w]
 *
 *   [w] = a watch record: the ids registered at that node and its full key
 *   ("/local/domain/0/device/vif/0/state"). Every record is also in one hash
 *   table keyed by its full key (the watch index):
 *
 *   index: | h("/") -> [w] | empty | h(".../vif/0/state") -> [w] | ... |
 *
 *   A write to P probes the index for "/", each prefix of P and P itself:
 *   independent lookups whose cache misses overlap (prefetched in a batch),
 *   instead of one dependent miss per level walking down the trie. The trie
 *   serves everything else: what lies below a path, pruning, globs.
 *
 * Keys.  A key is (bytes, length); no NUL terminator is needed or looked for.
 *   - A key starting with '/' is a tree path. It is split on '/' into
 *     components; "/" is the root and has no components. Components must be
 *     non-empty: "", "//", "/a//b" and a trailing "/a/" are rejected with
 *     -EINVAL. Any other byte is allowed inside a component (xenstore's own
 *     character rules are the caller's business).
 *   - A key starting with '@' is a special name ("@introduceDomain"). The whole
 *     key is ONE name in a namespace separate from the tree: "/" is not its
 *     ancestor, the tree node "/@introduceDomain" is a different key, and a
 *     special has neither ancestors nor descendants besides itself.
 *   - Anything else (empty, relative "a/b") is -EINVAL.
 *   Depth and component length are bounded only by memory (a key is at most
 *   UINT32_MAX bytes, else -ENAMETOOLONG); xenstore's 3072-byte paths give
 *   at most 1536 levels. Every walk is iterative: no recursion, so depth
 *   never costs C stack.
 *
 * Values.  Each node holds a sorted set of uint64_t ids. The same id may be
 * registered at several paths; (path, id) pairs are unique: adding one twice
 * is -EEXIST.
 *
 * Matching.  One call fills a caller-provided buffer:
 *   XSD_MATCH_ANCESTORS   ids registered at the path itself or any ancestor
 *                         up to the root (what a write to the path fires);
 *   XSD_MATCH_DESCENDANTS ids registered strictly below the path (what an rm
 *                         of the subtree fires);
 *   both OR-ed: the union. The result is a set: each id appears once, sorted
 *   ascending.
 *   Cost: ancestors, one pass over the key's bytes and one index probe per
 *   prefix (overlapped), plus the ids found; descendants, a walk down to the
 *   path and over its sub-tree. Neither depends on how many watches are
 *   registered elsewhere (bench/bench_trie.py measures it).
 *
 * Globs (xsd_globset, xsd_glob_match): see the note after this comment; its
 * examples contain a star followed by a slash, which would end this one.
 *
 * Errors are negative errno values: -EINVAL (bad key or flags), -ENOMEM
 * (allocation failed; no entry or node was added), -EEXIST, -ENOENT,
 * -ENAMETOOLONG.
 *
 * Memory.  All allocation goes through alloc.h. Each object counts the bytes
 * and blocks it holds (xsd_trie_stats). Removing everything returns the
 * counts to those of an empty trie: emptied nodes are pruned at once, and
 * the index is dropped with its last record. Tables grow by doubling (the
 * index at load 1/2) and are not shrunk while in use, so a trie keeps the
 * peak size of its index and of each child table until they empty.
 * About 240 bytes per watch on /local/domain/D/device/vif/V/state paths
 * (bench/bench_trie.py).
 *
 * Threads.  No locks. Any number of concurrent xsd_trie_match calls are safe
 * on an unchanging trie; anything else (add, remove, any globset call, which
 * uses scratch space in the set) needs the caller to serialise.
 */

// Glob patterns. A pattern is a key in the same syntax as above. In a tree
// pattern, a component that is exactly "*" matches exactly one component of
// the path; a component that is exactly "**" matches any number of
// components, including zero; any other component (including "a*" or "x**")
// matches itself literally. So:
//   "/local/domain/*/device"   matches "/local/domain/3/device",
//                              not "/local/domain/device" nor ".../3/device/vif";
//   "/local/domain/**/state"   matches "/local/domain/state" and
//                              "/local/domain/3/device/vif/0/state";
//   "/**"                      matches every tree path, "/" included;
//   "/"                        matches "/" only.
// A special pattern ("@releaseDomain") matches only that same special key;
// tree patterns never match specials, and specials never match tree paths.

#ifndef XSD_TRIE_H
#define XSD_TRIE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xsd_trie xsd_trie;       /* opaque */
typedef struct xsd_globset xsd_globset; /* opaque */

#define XSD_MATCH_ANCESTORS   1u
#define XSD_MATCH_DESCENDANTS 2u

struct xsd_trie_stats {
    size_t entries; /* (key, id) pairs registered */
    size_t nodes;   /* nodes allocated, both roots included */
    size_t bytes;   /* bytes requested from the allocator and still held */
    size_t blocks;  /* live allocations (each costs malloc's own header too) */
};

/* A new empty trie, or NULL when out of memory. Free it with xsd_trie_free. */
xsd_trie *xsd_trie_new(void);

/* Free t and everything in it. NULL is allowed and does nothing. */
void xsd_trie_free(xsd_trie *t);

/* Register id at key. 0 on success; -EEXIST if (key, id) is already there;
 * -EINVAL for a bad key; -ENAMETOOLONG for a key over UINT32_MAX bytes;
 * -ENOMEM if an allocation failed, in which case t holds exactly the entries
 * and nodes it held before (a child table or the index may have been
 * enlarged on the way; each is freed once empty, like any table). Amortised
 * O(length of key); growing the index rehashes it, O(watches), at each
 * doubling. */
int xsd_trie_add(xsd_trie *t, const char *key, size_t len, uint64_t id);

/* Unregister id at key. 0 on success; -ENOENT if (key, id) was not there;
 * -EINVAL for a bad key. Never allocates, so never fails with -ENOMEM.
 * Nodes left without ids and children are freed before returning. */
int xsd_trie_remove(xsd_trie *t, const char *key, size_t len, uint64_t id);

/* Collect the ids selected by flags (XSD_MATCH_*, OR-ed) for key into
 * out[0..cap). Returns n >= 0:
 *   n <= cap: out[0..n) holds the result, sorted ascending, each id once;
 *   n >  cap: out was too small, its contents are unspecified; call again
 *             with cap >= n (n bounds the result while t is unchanged).
 * Returns -EINVAL for a bad key or unknown flag bits. flags == 0 gives 0.
 * Reads t only; never allocates. out may be NULL when cap == 0. */
int64_t xsd_trie_match(const xsd_trie *t, const char *key, size_t len,
                       unsigned flags, uint64_t *out, size_t cap);

/* Number of (key, id) pairs registered. */
size_t xsd_trie_count(const xsd_trie *t);

/* Fill *st with t's counters (see struct xsd_trie_stats). */
void xsd_trie_stats(const xsd_trie *t, struct xsd_trie_stats *st);

/* 1 if path matches pattern under the glob rules above, 0 if not, -EINVAL if
 * either is not a valid key. Iterative; O(components(pattern) *
 * components(path)) in the worst case, no allocation. */
int xsd_glob_match(const char *pattern, size_t plen, const char *path,
                   size_t len);

/* A new empty set of glob patterns, or NULL when out of memory. */
xsd_globset *xsd_globset_new(void);

/* Free g and everything in it. NULL is allowed and does nothing. */
void xsd_globset_free(xsd_globset *g);

/* Register id for pattern. Same results as xsd_trie_add; on -ENOMEM no
 * pattern was added (scratch space may have grown). Also reserves the scratch
 * space later matches need, so that xsd_globset_match never allocates. */
int xsd_globset_add(xsd_globset *g, const char *pattern, size_t plen,
                    uint64_t id);

/* Unregister id for pattern. Same results as xsd_trie_remove. */
int xsd_globset_remove(xsd_globset *g, const char *pattern, size_t plen,
                       uint64_t id);

/* Collect the ids of every pattern in g that matches path, into out[0..cap).
 * Return value as xsd_trie_match (n > cap: retry with cap >= n).
 * Cost: O(components(path) * live pattern states), independent of how many
 * patterns cannot match. Writes scratch space inside g (not reentrant on one
 * g); never allocates. */
int64_t xsd_globset_match(xsd_globset *g, const char *path, size_t len,
                          uint64_t *out, size_t cap);

/* Number of (pattern, id) pairs registered. */
size_t xsd_globset_count(const xsd_globset *g);

/* Fill *st with g's counters, scratch space included in bytes/blocks. */
void xsd_globset_stats(const xsd_globset *g, struct xsd_trie_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* XSD_TRIE_H */
