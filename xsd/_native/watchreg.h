/*
 * watchreg.h: xenstore's watch registry in C. Each watch is one compact
 * record; a write's matching watches, their XSA-115 permission check and
 * their event paths are worked out in one call, and only the deliveries go
 * back to the caller (xsd/core/watches.py CWatchRegistry; its Python
 * WatchRegistry is the oracle this must agree with, delivery for delivery).
 *
 *   sessions (handle -> facts, watches)          the trie (borrowed, trie.h)
 *   +----+-------------------------------+       path -> ids; an id is the
 *   | 0  | dom0 priv   tab: [r1][  ][r2] |       address of a record:
 *   | 1  | dom5 tgt -1 tab: [  ][r3][  ] |         "/local/domain/5" -> r3
 *   | .. | (free: next free handle)      |         "/w"              -> r1, r2
 *   +----+-------------------------------+
 *   record: | order (seq << 2 | deep << 1 | relative) | session | plen | tlen |
 *           | path NUL token |
 *
 * A session's table is open addressing over its records, keyed by
 * "path NUL token" (what EEXIST and UNWATCH look up); the records are found
 * from a path through the trie. A record is in exactly one table and under
 * exactly one trie key: its path cut after XSD_WREG_TRIE_DEPTH components
 * (a deep path costs a trie node per component; watches.py says why), the
 * full path checked at match time.
 *
 * Firing order and filtering are those of watches.py's WatchRegistry:
 *   change:  watches on the path or an ancestor, in registration order; an
 *            unprivileged session's watch fires if it can read the node, its
 *            parent (looked up in the store) or, on SET_PERMS, the old perms.
 *   remove:  first, for each removed node below the root in the order the
 *            caller lists them (children before parents), the watches on
 *            exactly that node, by its perms or its parent's; then watches
 *            on the root or above see the root, by the root's perms or the
 *            perms of the root's parent in the store.
 *   special: watches on that "@name"; privileged sessions, or as its perms
 *            (SET_PERMS on the name) allow.
 * Permissions follow permissions.access (docs/misc/xenstore.txt): the
 * owner or its SET_TARGET domain has all; else the first later entry naming
 * the session (or its target) decides; else the owner entry's kind.
 *
 * Deliveries are written to the caller's buffer, each as
 *   u32 session, u16 event path length, u16 path length, u16 token length,
 *   event path, path, NUL, token            (little-endian, unaligned)
 * where an event path that is the call's own path, unchanged (the common
 * case), has the length XSD_WREG_SAME_PATH and no bytes: the caller has it.
 * Paths given to the fire calls are shorter than XSD_WREG_SAME_PATH.
 * A call returns the bytes needed n >= 0: n <= cap, out holds them; n > cap,
 * call again with cap >= n (firing changes nothing here, so it may be
 * repeated). Errors are negative errno: -EINVAL, -ENOMEM, -EEXIST, -ENOENT,
 * -E2BIG (a path or token over 65535 bytes).
 *
 * Memory: all allocation through alloc.h, counted (xsd_wreg_stats); the
 * trie's own counts are its own. No recursion. Not thread-safe: one caller.
 */
#ifndef XSD_WATCHREG_H
#define XSD_WATCHREG_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "trie.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xsd_wreg xsd_wreg; /* opaque */

/* Components of a watch path filed in the trie (watches.py TRIE_DEPTH). */
#define XSD_WREG_TRIE_DEPTH 32

/* Bytes before a delivery's event path in the output. */
#define XSD_WREG_DELIVERY_HEADER 10

/* A delivery's event path length meaning "the path the call was given". */
#define XSD_WREG_SAME_PATH 0xffff

struct xsd_wreg_stats {
    size_t watches;   /* records registered */
    size_t sessions;  /* handles in use */
    size_t bytes;     /* bytes requested from the allocator and still held */
    size_t blocks;    /* live allocations */
};

/* A new registry over trie (which it fills and empties; it must start empty
 * and be used by nothing else but readers) and store (the parents' perms of
 * changed nodes; NULL: none known). Both are borrowed: they must outlive
 * every call on r, not r itself (xsd_wreg_free touches neither; the trie
 * then still holds the addresses of freed records as ids, fit only to be
 * counted, which is all the request engine asks of it). NULL when out of
 * memory. */
xsd_wreg *xsd_wreg_new(xsd_trie *trie, const xsd_store *store);

/* Free r, its records and sessions. Leaves the trie as it is. NULL is fine. */
void xsd_wreg_free(xsd_wreg *r);

/* A new session handle (>= 0; a freed one is given out again), an
 * unprivileged dom0 with no target until xsd_wreg_session_set; -ENOMEM. */
int64_t xsd_wreg_session_new(xsd_wreg *r);

/* What the permission check knows of session s: its domid, SET_TARGET's
 * target (-1: none), privilege. -EINVAL for a handle not in use. */
int xsd_wreg_session_set(xsd_wreg *r, uint32_t s, uint32_t domid,
                         int64_t target, int privileged);

/* Drop every watch of s and free the handle. -EINVAL if not in use. */
int xsd_wreg_session_free(xsd_wreg *r, uint32_t s);

/* Drop every watch of s; the handle stays. -EINVAL if not in use. */
int xsd_wreg_session_clear(xsd_wreg *r, uint32_t s);

/* Watches of s and the sum of their path and token lengths (what
 * quota.memory_of_watch charges beyond the record); 0 for a bad handle. */
size_t xsd_wreg_session_count(const xsd_wreg *r, uint32_t s);
size_t xsd_wreg_session_text_bytes(const xsd_wreg *r, uint32_t s);

/* Register (path, token) for s; relative: the client gave a relative path
 * (its events are relative to /local/domain/<domid>/ too). *order gets the
 * record's order value (seq << 2 | deep << 1 | relative; seq grows with
 * each registration). -EEXIST if s has it; -EINVAL for a bad handle or a
 * path the trie refuses; -E2BIG; -ENOMEM with nothing registered. */
int xsd_wreg_add(xsd_wreg *r, uint32_t s, const char *path, size_t plen,
                 const char *token, size_t tlen, int relative,
                 uint64_t *order);

/* Unregister s's watch whose key is "path NUL token" (klen bytes). 0, or
 * -ENOENT if s has none such; -EINVAL for a bad handle. */
int xsd_wreg_remove(xsd_wreg *r, uint32_t s, const char *key, size_t klen);

/* 1 and *order set if s has the watch keyed "path NUL token", else 0. */
int xsd_wreg_find(const xsd_wreg *r, uint32_t s, const char *key,
                  size_t klen, uint64_t *order);

/* The delivery of the initial event of s's watch keyed "path NUL token"
 * (ops.do_watch's INITIAL: every new watch is told its own path at once,
 * relative for a relative watch, a special "@name" as it is), written as
 * the fire calls write theirs for a call given that path: the event path is
 * XSD_WREG_SAME_PATH unless made relative. Returns bytes needed (the n > cap
 * rule above), -ENOENT if s has no such watch, -EINVAL for a bad handle. */
int64_t xsd_wreg_initial(const xsd_wreg *r, uint32_t s, const char *key,
                         size_t klen, char *out, size_t cap);

/* s's watches into out, each as u64 order, u16 path length, u16 token
 * length, path NUL token; in no particular order. Returns bytes needed (the
 * n > cap rule above), -EINVAL for a bad handle. */
int64_t xsd_wreg_session_watches(const xsd_wreg *r, uint32_t s, char *out,
                                 size_t cap);

/* Deliveries of a change to path (perms: the node's "n0\0r5\0" list;
 * old_perms: before a SET_PERMS, or NULL). */
int64_t xsd_wreg_fire_change(xsd_wreg *r, const char *path, size_t len,
                             const char *perms, size_t perms_len,
                             const char *old_perms, size_t old_len,
                             char *out, size_t cap);

/* Deliveries of the removal of the subtree at root (root_perms: the root's
 * perms before it went). The nodes below root come in `below`: entries of
 *   u32 path length, path, u32 perms length, perms,
 *   u32 parent perms length (0xffffffff: none), parent perms
 * in the order their watches fire (children before parents). When below is
 * NULL and some watch lies strictly below root, *asks is set to 1 and out
 * gets instead the distinct paths of those watches, each ending in NUL (the
 * caller then calls again with the entries of the removed ones among them);
 * otherwise *asks is 0. */
int64_t xsd_wreg_fire_remove(xsd_wreg *r, const char *root, size_t len,
                             const char *root_perms, size_t root_perms_len,
                             const char *below, size_t below_len, int *asks,
                             char *out, size_t cap);

/* Deliveries of a special event "@name" (perms: set on the name by
 * SET_PERMS, or NULL: privileged sessions only). */
int64_t xsd_wreg_fire_special(xsd_wreg *r, const char *name, size_t len,
                              const char *perms, size_t perms_len, char *out,
                              size_t cap);

/* Number of watches registered. */
size_t xsd_wreg_count(const xsd_wreg *r);

void xsd_wreg_stats(const xsd_wreg *r, struct xsd_wreg_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* XSD_WATCHREG_H */
