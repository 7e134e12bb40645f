/*
 * trie.c: the component trie and glob set described in trie.h.
 *
 * Two structures share the work.
 *
 * The trie gives the tree its shape: the rm case (everything below a path),
 * pruning, globs. A node holds its key (one path component) inline after the
 * struct and its children in an open-addressing hash table with linear
 * probing; a lone child, the common case in a path tree, sits inline in the
 * node as a one-slot "table" (also after removals leave one), which saves a
 * block and a cache miss. Each
 * child records its slot in the parent's table and a parent pointer, which is
 * what lets every walk (sub-tree collection, freeing, mark reset) run without
 * recursion and without a stack: from a node, "next sibling" is the next
 * occupied slot after node->slot in its parent's table.
 *
 * The watch index serves the write case (the path and its ancestors), the
 * one hot call. A node that holds ids owns a watch record: the ids and the
 * node's full key. Every record sits in one open-addressing table keyed by a
 * 64-bit hash of its full key. A match hashes each prefix of the written path
 * in one pass over its bytes, prefetches every slot it will probe, then
 * probes them: the lookups do not depend on each other, so their cache misses
 * overlap instead of queueing up one per level as a walk down the trie does
 * (measured by bench/bench_trie.py: about 7 dependent misses per write at
 * 100,000 watches, against about 1 for the index). Only watched nodes store
 * a full key, so memory stays linear in the path length, not quadratic.
 *
 * Invariants (checked by tests/native/c/test_whitebox.c):
 *   - every node other than the two roots has a record or children;
 *   - kcap is 0 or a power of two; nkids <= max_load(kcap); a table is
 *     allocated only when kcap >= 2 (kcap 1 is the inline slot), and then
 *     holds at least 2 children;
 *   - slots(n)[c->slot] == c and c->parent == n, for every child c of n;
 *   - a record has nids >= 1, strictly increasing ids, idcap == 0 meaning
 *     "inline, nids == 1", and the full key of its node;
 *   - the index holds each record exactly once, with the hash of its key,
 *     reachable by probing from that hash; icount records; load <= 1/2;
 *   - at_depth[d] counts the tree records whose key has d components
 *     (DEPTHS - 1 and more in the last slot);
 *   - the counters in struct xsd_trie match what is allocated.
 *
 * Failure.  Every allocation is checked. xsd_trie_add creates the missing
 * nodes top-down; if any allocation fails, the nodes it created are exactly
 * the ones left without records or children, and the prune that removal uses
 * frees them, restoring every entry and node. (A child table or the index
 * enlarged on the way stays enlarged: harmless, and freed once empty.)
 * Removal only frees, so it cannot fail.
 */
#include "trie.h"
#include "alloc.h"
#include "hash.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* The ids registered at one key, and that key in full. */
struct xsd_watch {
    union {
        uint64_t one;          /* while idcap == 0 (nids is 1) */
        uint64_t *many;        /* idcap slots, sorted, nids used */
    } ids;
    uint32_t nids, idcap;
    uint32_t len;
    char key[];                /* the full key: "/local/domain/1", "@x" */
};

struct xsd_node {
    struct xsd_node *parent;   /* NULL for the two roots */
    union {
        struct xsd_node *one;  /* kcap == 1: the only slot, inline */
        struct xsd_node **tab; /* kcap >= 2: kcap slots; NULL when kcap 0 */
    } kids;                    /* use slots(); a NULL slot is free */
    struct xsd_watch *w;       /* NULL while no id is registered here */
    uint32_t hash;             /* key_hash of key, with the owner's seed */
    uint32_t slot;             /* index of this node in slots(parent) */
    uint32_t nkids, kcap;
    uint32_t klen;
    uint32_t mark;             /* globset: stamp of the last state set */
    char key[];                /* klen bytes (one component), no NUL */
};

struct xsd_islot {
    uint64_t h;                /* full_hash of w->key */
    struct xsd_watch *w;       /* NULL: a free slot */
};

/* Records per depth ("/" is 0, "/a" 1 ...), the last slot counting every
 * depth from DEPTHS - 1 on: a match skips the prefixes at depths where no
 * watch is registered. Watches cluster at a few depths, so most are. */
#define DEPTHS 64

struct xsd_trie {
    struct xsd_node *root;     /* "/" */
    struct xsd_node *special;  /* parent of the "@..." names; holds no ids */
    struct xsd_islot *index;   /* icap slots (a power of two), or NULL */
    size_t icap, icount;
    uint32_t at_depth[DEPTHS]; /* tree records per depth (capped) */
    uint64_t seed;
    size_t entries, nodes, bytes, blocks;
};

struct xsd_globset {
    xsd_trie *t;               /* patterns, stored as ordinary keys */
    struct xsd_node **scratch; /* 2 * scap: current and next state sets */
    size_t scap;               /* >= t->nodes, reserved by add */
    uint32_t stamp;            /* mark value of the set being built */
    uint32_t h_star, h_dstar;  /* key_hash of "*" and "**" */
};

enum { KEY_TREE = 0, KEY_SPECIAL = 1 };

/* ---- accounting allocator wrappers ------------------------------------ */

static void *t_malloc(xsd_trie *t, size_t size)
{
    void *p = XSD_MALLOC(size);

    if (p != NULL) {
        t->bytes += size;
        t->blocks++;
    }
    return p;
}

static void *t_calloc(xsd_trie *t, size_t nmemb, size_t size)
{
    void *p = XSD_CALLOC(nmemb, size);
    if (p != NULL) {
        t->bytes += nmemb * size; /* calloc has refused an overflowing product */
        t->blocks++;
    }
    return p;
}

static void *t_realloc(xsd_trie *t, void *old, size_t old_size, size_t size)
{
    void *p = XSD_REALLOC(old, size);
    if (p != NULL) {
        t->bytes = t->bytes - old_size + size;
        if (old == NULL)
            t->blocks++;
    }
    return p;
}

static void t_free(xsd_trie *t, void *p, size_t size)
{
    if (p != NULL) {
        XSD_FREE(p);
        t->bytes -= size;
        t->blocks--;
    }
}

/* ---- keys --------------------------------------------------------------- */

/* KEY_TREE or KEY_SPECIAL for a valid key, else -EINVAL / -ENAMETOOLONG.
 * A plain byte loop: paths are short, and a memchr call per component cost
 * more than the scan (perf, bench/bench_trie.py). */
static int key_check(const char *key, size_t len)
{
    size_t i;

    if (key == NULL || len == 0)
        return -EINVAL;
    if (key[0] != '@' && key[0] != '/')
        return -EINVAL;
    if (len > UINT32_MAX) /* lengths are stored in 32 bits */
        return -ENAMETOOLONG;
    if (key[0] == '@')
        return KEY_SPECIAL;
    if (len == 1)
        return KEY_TREE;
    if (key[len - 1] == '/') /* "/a/" */
        return -EINVAL;
    for (i = 1; i < len; i++)
        if (key[i] == '/' && key[i - 1] == '/') /* "//", "/a//b" */
            return -EINVAL;
    return KEY_TREE;
}

/* Iterator over the components of a valid tree key. */
struct comp_iter {
    const char *key;
    size_t len, pos; /* pos: start of the next component; > len when done */
};

static void ci_init(struct comp_iter *it, const char *key, size_t len)
{
    it->key = key;
    it->len = len;
    it->pos = len == 1 ? 2 : 1; /* "/" has no components */
}

static int ci_next(struct comp_iter *it, const char **comp, size_t *clen)
{
    const char *start, *slash;
    size_t end;

    if (it->pos > it->len)
        return 0;
    start = it->key + it->pos;
    slash = memchr(start, '/', it->len - it->pos);
    end = slash != NULL ? (size_t)(slash - it->key) : it->len;
    *comp = start;
    *clen = end - it->pos;
    it->pos = end + 1;
    return 1;
}

/* The string hash of hash.h, seeded per trie, with the length folded in
 * before the finaliser. A match finalises the FNV state at every '/' to get
 * the hash of each prefix of a path in one pass (idx_ancestors). */
static uint64_t hash_final(uint64_t h, size_t len)
{
    return xsd_fmix64(h ^ (uint64_t)len);
}

static uint64_t full_hash(uint64_t seed, const char *key, size_t len)
{
    return hash_final(xsd_fnv1a(seed, key, len), len);
}

/* The at_depth slot of a valid tree key: its number of components, capped. */
static size_t depth_slot(const char *key, size_t len)
{
    size_t i, d = 0;

    if (len == 1)
        return 0;
    for (i = 0; i < len && d < DEPTHS - 1; i++)
        d += key[i] == '/';
    return d;
}

/* 32 bits for a component in a child table. */
static uint32_t key_hash(uint64_t seed, const char *key, size_t len)
{
    return (uint32_t)full_hash(seed, key, len);
}

#if defined(__GNUC__) || defined(__clang__)
#define XSD_PREFETCH(addr) __builtin_prefetch(addr)
#else
#define XSD_PREFETCH(addr) ((void)(addr))
#endif

/* ---- nodes and their child tables --------------------------------------- */

static struct xsd_node *node_new(xsd_trie *t, const char *key, size_t klen,
                                 uint32_t hash)
{
    struct xsd_node *n = t_malloc(t, sizeof *n + klen);

    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof *n);
    n->hash = hash;
    n->klen = (uint32_t)klen; /* key_check bounded it */
    if (klen != 0)
        memcpy(n->key, key, klen);
    t->nodes++;
    return n;
}

static void watch_free(xsd_trie *t, struct xsd_watch *w)
{
    if (w->idcap != 0)
        t_free(t, w->ids.many, (size_t)w->idcap * sizeof *w->ids.many);
    t_free(t, w, sizeof *w + w->len);
}

/* Free n's own storage (its record too, if any); its children must already
 * be gone or freed, and its record out of the index or the index dropped. */
static void node_free(xsd_trie *t, struct xsd_node *n)
{
    if (n->w != NULL)
        watch_free(t, n->w);
    if (n->kcap >= 2)
        t_free(t, n->kids.tab, (size_t)n->kcap * sizeof *n->kids.tab);
    t_free(t, n, sizeof *n + n->klen);
    t->nodes--;
}

/* The kcap slots of n's child table: the inline one while kcap is 1. */
static struct xsd_node **slots(struct xsd_node *n)
{
    return n->kcap == 1 ? &n->kids.one : n->kids.tab;
}

static struct xsd_node *const *slots_c(const struct xsd_node *n)
{
    return n->kcap == 1 ? &n->kids.one : n->kids.tab;
}

/* Linear probing stays short at 3/4 load; tables of 1 or 2 slots may fill
 * (a lookup gives up after kcap probes), which keeps chains of single
 * children, the common case in a path tree, at one pointer per node. */
static uint32_t max_load(uint32_t kcap)
{
    return kcap <= 2 ? kcap : kcap / 4 * 3;
}

static struct xsd_node *kid_find(const struct xsd_node *n, uint32_t hash,
                                 const char *key, size_t klen)
{
    struct xsd_node *const *kids;
    uint32_t mask, i, probes;
    struct xsd_node *c;

    if (n->nkids == 0)
        return NULL;
    kids = slots_c(n);
    mask = n->kcap - 1;
    i = hash & mask;
    for (probes = 0; probes < n->kcap; probes++) {
        c = kids[i];
        if (c == NULL)
            return NULL;
        if (c->hash == hash && c->klen == klen &&
            memcmp(c->key, key, klen) == 0)
            return c;
        i = (i + 1) & mask;
    }
    return NULL;
}

/* Double n's table (0 -> 1 inline -> 2 -> 4 ...), rehashing the children. */
static int kids_grow(xsd_trie *t, struct xsd_node *n)
{
    uint32_t ncap, mask, i, j;
    struct xsd_node **nk, **old = slots(n), *c;

    if (n->kcap == 0) {
        n->kids.one = NULL;
        n->kcap = 1;
        return 0;
    }
    if (n->kcap > (UINT32_MAX >> 1))
        return -ENOMEM;
    ncap = n->kcap * 2;
    nk = t_calloc(t, ncap, sizeof *nk);
    if (nk == NULL)
        return -ENOMEM;
    mask = ncap - 1;
    for (i = 0; i < n->kcap; i++) {
        c = old[i];
        if (c == NULL)
            continue;
        j = c->hash & mask;
        while (nk[j] != NULL)
            j = (j + 1) & mask;
        nk[j] = c;
        c->slot = j;
    }
    if (n->kcap >= 2)
        t_free(t, n->kids.tab, (size_t)n->kcap * sizeof *n->kids.tab);
    n->kids.tab = nk;
    n->kcap = ncap;
    return 0;
}

/* Link c under p. On -ENOMEM nothing changed. */
static int kid_link(xsd_trie *t, struct xsd_node *p, struct xsd_node *c)
{
    struct xsd_node **kids;
    uint32_t mask, i;
    int rc;

    if (p->nkids + 1 > max_load(p->kcap)) {
        rc = kids_grow(t, p);
        if (rc != 0)
            return rc;
    }
    kids = slots(p);
    mask = p->kcap - 1;
    i = c->hash & mask;
    while (kids[i] != NULL)
        i = (i + 1) & mask;
    kids[i] = c;
    c->slot = i;
    c->parent = p;
    p->nkids++;
    return 0;
}

/* Unlink c from p by backward-shift deletion, so no tombstones are needed:
 * each following entry of the probe run moves into the hole unless its home
 * slot lies cyclically in (hole, its position]. A table left with one child
 * gives way to the inline slot, and none is kept for no child. */
static void kid_unlink(xsd_trie *t, struct xsd_node *p, struct xsd_node *c)
{
    struct xsd_node **kids = slots(p);
    uint32_t mask = p->kcap - 1, hole = c->slot, j = c->slot, home;
    struct xsd_node *x;
    int stays;

    kids[hole] = NULL;
    p->nkids--;
    for (;;) {
        j = (j + 1) & mask;
        x = kids[j];
        if (x == NULL) /* there is always one: the hole itself */
            break;
        home = x->hash & mask;
        if (hole <= j)
            stays = hole < home && home <= j;
        else
            stays = hole < home || home <= j;
        if (stays)
            continue;
        kids[hole] = x;
        x->slot = hole;
        kids[j] = NULL;
        hole = j;
    }
    if (p->nkids <= 1 && p->kcap >= 2) { /* back to the inline slot */
        for (x = NULL, j = 0; j < p->kcap && x == NULL; j++)
            x = kids[j];
        t_free(t, p->kids.tab, (size_t)p->kcap * sizeof *p->kids.tab);
        p->kids.one = x;
        p->kcap = 1;
        if (x != NULL)
            x->slot = 0;
    }
    if (p->nkids == 0) {
        p->kids.tab = NULL;
        p->kcap = 0;
    }
}

/* Free n and its ancestors while they hold neither ids nor children. */
static void prune(xsd_trie *t, struct xsd_node *n)
{
    struct xsd_node *p;

    while (n->parent != NULL && n->w == NULL && n->nkids == 0) {
        p = n->parent;
        kid_unlink(t, p, n);
        node_free(t, n);
        n = p;
    }
}

/* Pre-order successor of n inside the sub-tree rooted at top (top itself
 * excluded), or NULL when the sub-tree is exhausted. No stack: climbing up
 * resumes the parent's table scan after the slot we came from. */
static struct xsd_node *preorder_next(const struct xsd_node *top,
                                      const struct xsd_node *n)
{
    struct xsd_node *const *kids;
    uint32_t i = 0;

    for (;;) {
        kids = slots_c(n);
        for (; i < n->kcap; i++)
            if (kids[i] != NULL)
                return kids[i];
        if (n == top)
            return NULL;
        i = n->slot + 1;
        n = n->parent;
    }
}

/* Free top and everything below it, post-order, without a stack. */
static void free_subtree(xsd_trie *t, struct xsd_node *top)
{
    struct xsd_node *n = top, *p;
    uint32_t i = 0;

    for (;;) {
        while (i < n->kcap && slots(n)[i] == NULL)
            i++;
        if (i < n->kcap) {
            n = slots(n)[i];
            i = 0;
            continue;
        }
        if (n == top)
            break;
        p = n->parent;
        i = n->slot + 1;
        node_free(t, n);
        n = p;
    }
    node_free(t, top);
}

/* ---- watch records and their id sets ------------------------------------- */

static const uint64_t *ids_of(const struct xsd_watch *n)
{
    return n->idcap != 0 ? n->ids.many : &n->ids.one;
}

/* A record for key holding just id, or NULL on -ENOMEM. */
static struct xsd_watch *watch_new(xsd_trie *t, const char *key, size_t len,
                                   uint64_t id)
{
    struct xsd_watch *w = t_malloc(t, sizeof *w + len);

    if (w == NULL)
        return NULL;
    memset(w, 0, sizeof *w);
    w->ids.one = id;
    w->nids = 1;
    w->len = (uint32_t)len; /* key_check bounded it */
    memcpy(w->key, key, len);
    return w;
}

/* First index whose id is >= id. */
static uint32_t ids_lower_bound(const uint64_t *v, uint32_t n, uint64_t id)
{
    uint32_t lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (v[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int ids_insert(xsd_trie *t, struct xsd_watch *n, uint64_t id)
{
    uint64_t *v, *a;
    uint32_t pos, ncap;

    pos = ids_lower_bound(ids_of(n), n->nids, id);
    if (pos < n->nids && ids_of(n)[pos] == id)
        return -EEXIST;
    if (n->idcap == 0) {
        a = t_malloc(t, 4 * sizeof *a);
        if (a == NULL)
            return -ENOMEM;
        a[0] = n->ids.one;
        n->ids.many = a;
        n->idcap = 4;
    } else if (n->nids == n->idcap) {
        if (n->idcap > (UINT32_MAX >> 1))
            return -ENOMEM;
        ncap = n->idcap * 2;
        a = t_realloc(t, n->ids.many, (size_t)n->idcap * sizeof *a,
                      (size_t)ncap * sizeof *a);
        if (a == NULL)
            return -ENOMEM;
        n->ids.many = a;
        n->idcap = ncap;
    }
    v = n->ids.many;
    memmove(v + pos + 1, v + pos, (size_t)(n->nids - pos) * sizeof *v);
    v[pos] = id;
    n->nids++;
    return 0;
}

/* Remove id; the caller frees the record once nids reaches 0. */
static int ids_remove(xsd_trie *t, struct xsd_watch *n, uint64_t id)
{
    uint64_t *v, keep;
    uint32_t pos;

    if (n->nids == 0)
        return -ENOENT;
    if (n->idcap == 0) {
        if (n->ids.one != id)
            return -ENOENT;
        n->nids = 0;
        return 0;
    }
    v = n->ids.many;
    pos = ids_lower_bound(v, n->nids, id);
    if (pos >= n->nids || v[pos] != id)
        return -ENOENT;
    memmove(v + pos, v + pos + 1, (size_t)(n->nids - pos - 1) * sizeof *v);
    n->nids--;
    if (n->nids <= 1) { /* back to inline storage */
        keep = v[0];
        t_free(t, v, (size_t)n->idcap * sizeof *v);
        n->idcap = 0;
        n->ids.one = keep; /* nids is 1 here: arrays hold at least 2 */
    }
    return 0;
}

/* ---- result buffers ------------------------------------------------------ */

/* Append w's ids to out if they fit; always count them. */
static void emit(const struct xsd_watch *n, uint64_t *out, size_t cap,
                 size_t *count)
{
    size_t k = n->nids;

    if (k <= cap && *count <= cap - k)
        memcpy(out + *count, ids_of(n), k * sizeof *out);
    *count += k;
}

static void sift_down(uint64_t *v, size_t root, size_t n)
{
    size_t child;
    uint64_t tmp;

    while ((child = 2 * root + 1) < n) {
        if (child + 1 < n && v[child + 1] > v[child])
            child++;
        if (v[root] >= v[child])
            return;
        tmp = v[root];
        v[root] = v[child];
        v[child] = tmp;
        root = child;
    }
}

/* Sort v[0..n) ascending and drop repeats; returns the new length.
 * Insertion sort for the usual handful, heapsort (in place, no recursion,
 * no allocation) for large sub-tree results. */
static size_t sort_unique(uint64_t *v, size_t n)
{
    size_t i, j, w;
    uint64_t x;

    if (n <= 1)
        return n;
    if (n <= 16) {
        for (i = 1; i < n; i++) {
            x = v[i];
            for (j = i; j > 0 && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
    } else {
        for (i = n / 2; i > 0; i--)
            sift_down(v, i - 1, n);
        for (i = n - 1; i > 0; i--) {
            x = v[0];
            v[0] = v[i];
            v[i] = x;
            sift_down(v, 0, i);
        }
    }
    for (w = 1, i = 1; i < n; i++)
        if (v[i] != v[w - 1])
            v[w++] = v[i];
    return w;
}

static int64_t finish(uint64_t *out, size_t cap, size_t count)
{
    if (count <= cap)
        count = sort_unique(out, count);
    return (int64_t)count;
}

/* ---- the watch index ----------------------------------------------------- */

/* Make room for one more record: keep the load at or under 1/2 so that the
 * probes for absent prefixes, most of a match, end within a slot or two. */
static int idx_reserve(xsd_trie *t)
{
    struct xsd_islot *nx;
    size_t ncap, mask, i, j;

    if ((t->icount + 1) * 2 <= t->icap)
        return 0;
    if (t->icap > SIZE_MAX / 2 / sizeof *nx)
        return -ENOMEM;
    ncap = t->icap != 0 ? t->icap * 2 : 16;
    nx = t_calloc(t, ncap, sizeof *nx);
    if (nx == NULL)
        return -ENOMEM;
    mask = ncap - 1;
    for (i = 0; i < t->icap; i++) {
        if (t->index[i].w == NULL)
            continue;
        j = (size_t)t->index[i].h & mask;
        while (nx[j].w != NULL)
            j = (j + 1) & mask;
        nx[j] = t->index[i];
    }
    t_free(t, t->index, t->icap * sizeof *t->index);
    t->index = nx;
    t->icap = ncap;
    return 0;
}

/* Insert w (hash h); idx_reserve has made room. */
static void idx_insert(xsd_trie *t, struct xsd_watch *w, uint64_t h)
{
    size_t mask = t->icap - 1, i = (size_t)h & mask;

    while (t->index[i].w != NULL)
        i = (i + 1) & mask;
    t->index[i].h = h;
    t->index[i].w = w;
    t->icount++;
}

/* Remove w (hash h) by backward-shift deletion, as kid_unlink does; drop
 * the table once empty. */
static void idx_remove(xsd_trie *t, const struct xsd_watch *w, uint64_t h)
{
    size_t mask = t->icap - 1, hole = (size_t)h & mask, j, home;
    struct xsd_islot *ix = t->index;
    int stays;

    while (ix[hole].w != w)
        hole = (hole + 1) & mask;
    ix[hole].w = NULL;
    t->icount--;
    for (j = hole;;) {
        j = (j + 1) & mask;
        if (ix[j].w == NULL)
            break;
        home = (size_t)ix[j].h & mask;
        if (hole <= j)
            stays = hole < home && home <= j;
        else
            stays = hole < home || home <= j;
        if (stays)
            continue;
        ix[hole] = ix[j];
        ix[j].w = NULL;
        hole = j;
    }
    if (t->icount == 0) {
        t_free(t, t->index, t->icap * sizeof *t->index);
        t->index = NULL;
        t->icap = 0;
    }
}

/* Emit the record whose key is key[0..len), hash h, if there is one. */
static void idx_probe(const xsd_trie *t, uint64_t h, const char *key,
                      size_t len, uint64_t *out, size_t cap, size_t *count)
{
    size_t mask = t->icap - 1, i = (size_t)h & mask;
    const struct xsd_islot *s;

    for (;; i = (i + 1) & mask) {
        s = &t->index[i];
        if (s->w == NULL)
            return;
        if (s->h == h && s->w->len == len &&
            memcmp(s->w->key, key, len) == 0) {
            emit(s->w, out, cap, count);
            return;
        }
    }
}

/* Emit the ids registered at key and at each of its ancestors: the prefixes
 * "/", then up to each '/', then key itself. One pass over the bytes gives
 * every prefix hash (FNV is finalised at each boundary); a batch of them is
 * prefetched before any is probed, so the misses overlap. */
#define PROBE_BATCH 16

static void idx_ancestors(const xsd_trie *t, const char *key, size_t len,
                          int kind, uint64_t *out, size_t cap, size_t *count)
{
    uint64_t hs[PROBE_BATCH], h = t->seed;
    size_t ends[PROBE_BATCH], mask = t->icap - 1, e, np = 0, k, depth = 0;

    if (kind == KEY_SPECIAL) { /* its own only ancestor */
        idx_probe(t, full_hash(t->seed, key, len), key, len, out, cap, count);
        return;
    }
    for (e = 1; e <= len; e++) {
        h = xsd_fnv1a(h, &key[e - 1], 1);
        if (e == 1 || e == len || key[e] == '/') {
            /* prefix key[0..e) has `depth` components ("/" has none) */
            if (t->at_depth[depth] != 0) {
                hs[np] = hash_final(h, e);
                ends[np] = e;
                XSD_PREFETCH(&t->index[(size_t)hs[np] & mask]);
                np++;
            }
            if (depth < DEPTHS - 1)
                depth++;
        }
        if (np == PROBE_BATCH || (e == len && np != 0)) {
            for (k = 0; k < np; k++)
                idx_probe(t, hs[k], key, ends[k], out, cap, count);
            np = 0;
        }
    }
}

/* ---- trie ----------------------------------------------------------------- */

xsd_trie *xsd_trie_new(void)
{
    xsd_trie *t = XSD_MALLOC(sizeof *t);

    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof *t);
    t->bytes = sizeof *t;
    t->blocks = 1;
    /* Seed from the address, which ASLR varies between runs (no global
     * state: cffi calls run without the GIL); see key_hash. */
    t->seed = 0xcbf29ce484222325ULL ^
              ((uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ULL);
    t->root = node_new(t, "", 0, 0);
    if (t->root == NULL) {
        XSD_FREE(t);
        return NULL;
    }
    t->special = node_new(t, "", 0, 0);
    if (t->special == NULL) {
        node_free(t, t->root);
        XSD_FREE(t);
        return NULL;
    }
    return t;
}

void xsd_trie_free(xsd_trie *t)
{
    if (t == NULL)
        return;
    free_subtree(t, t->root);   /* records go with their nodes */
    free_subtree(t, t->special);
    t_free(t, t->index, t->icap * sizeof *t->index);
    XSD_FREE(t);
}

/* The node for a valid key, or NULL if it is not in the trie. */
static struct xsd_node *find_node(const xsd_trie *t, const char *key,
                                  size_t len, int kind)
{
    struct comp_iter it;
    const char *comp;
    size_t clen;
    struct xsd_node *n;

    if (kind == KEY_SPECIAL)
        return kid_find(t->special, key_hash(t->seed, key, len), key, len);
    n = t->root;
    ci_init(&it, key, len);
    while (n != NULL && ci_next(&it, &comp, &clen))
        n = kid_find(n, key_hash(t->seed, comp, clen), comp, clen);
    return n;
}

/* Find or create the child of p named (key, klen). NULL on -ENOMEM, with p
 * unchanged. */
static struct xsd_node *kid_get(xsd_trie *t, struct xsd_node *p,
                                const char *key, size_t klen)
{
    uint32_t h = key_hash(t->seed, key, klen);
    struct xsd_node *c = kid_find(p, h, key, klen);

    if (c != NULL)
        return c;
    c = node_new(t, key, klen, h);
    if (c == NULL)
        return NULL;
    if (kid_link(t, p, c) != 0) {
        node_free(t, c);
        return NULL;
    }
    return c;
}

int xsd_trie_add(xsd_trie *t, const char *key, size_t len, uint64_t id)
{
    struct comp_iter it;
    const char *comp;
    size_t clen;
    struct xsd_node *n, *c;
    int kind = key_check(key, len), rc;

    if (kind < 0)
        return kind;
    if (kind == KEY_SPECIAL) {
        n = kid_get(t, t->special, key, len);
        if (n == NULL)
            return -ENOMEM; /* special root needs no prune */
    } else {
        n = t->root;
        ci_init(&it, key, len);
        while (ci_next(&it, &comp, &clen)) {
            c = kid_get(t, n, comp, clen);
            if (c == NULL) {
                prune(t, n); /* drop the chain created so far */
                return -ENOMEM;
            }
            n = c;
        }
    }
    if (n->w != NULL) {
        rc = ids_insert(t, n->w, id); /* n has a record: nothing to prune */
        if (rc != 0)
            return rc;
    } else {
        /* The record first: the index only grows for one that exists. */
        n->w = watch_new(t, key, len, id);
        rc = n->w != NULL ? idx_reserve(t) : -ENOMEM;
        if (rc != 0) {
            if (n->w != NULL)
                watch_free(t, n->w);
            n->w = NULL;
            prune(t, n); /* drop the chain created above, if any */
            return rc;
        }
        idx_insert(t, n->w, full_hash(t->seed, key, len));
        if (kind == KEY_TREE)
            t->at_depth[depth_slot(key, len)]++;
    }
    t->entries++;
    return 0;
}

int xsd_trie_remove(xsd_trie *t, const char *key, size_t len, uint64_t id)
{
    struct xsd_node *n;
    int kind = key_check(key, len), rc;

    if (kind < 0)
        return kind;
    n = find_node(t, key, len, kind);
    if (n == NULL || n->w == NULL)
        return -ENOENT;
    rc = ids_remove(t, n->w, id);
    if (rc != 0)
        return rc;
    t->entries--;
    if (n->w->nids == 0) {
        idx_remove(t, n->w, full_hash(t->seed, key, len));
        if (kind == KEY_TREE)
            t->at_depth[depth_slot(key, len)]--;
        watch_free(t, n->w);
        n->w = NULL;
        prune(t, n);
    }
    return 0;
}

int64_t xsd_trie_match(const xsd_trie *t, const char *key, size_t len,
                       unsigned flags, uint64_t *out, size_t cap)
{
    size_t count = 0;
    const struct xsd_node *n, *d;
    int kind = key_check(key, len);

    if (kind < 0)
        return kind;
    if ((flags & ~(XSD_MATCH_ANCESTORS | XSD_MATCH_DESCENDANTS)) != 0)
        return -EINVAL;
    if ((flags & XSD_MATCH_ANCESTORS) != 0 && t->icount != 0)
        idx_ancestors(t, key, len, kind, out, cap, &count);
    /* Strictly below: none for a special; else the sub-tree, in the trie. */
    if ((flags & XSD_MATCH_DESCENDANTS) != 0 && kind == KEY_TREE) {
        n = find_node(t, key, len, kind);
        if (n != NULL)
            for (d = preorder_next(n, n); d != NULL; d = preorder_next(n, d))
                if (d->w != NULL)
                    emit(d->w, out, cap, &count);
    }
    return finish(out, cap, count);
}

size_t xsd_trie_count(const xsd_trie *t)
{
    return t->entries;
}

void xsd_trie_stats(const xsd_trie *t, struct xsd_trie_stats *st)
{
    st->entries = t->entries;
    st->nodes = t->nodes;
    st->bytes = t->bytes;
    st->blocks = t->blocks;
}

/* ---- globs ------------------------------------------------------------- */

static int comp_is(const char *comp, size_t clen, const char *lit, size_t llen)
{
    return clen == llen && memcmp(comp, lit, llen) == 0;
}

/* The classic one-backtrack-point wildcard match, over components instead of
 * characters ("*" plays '?', "**" plays '*'): on a mismatch, the latest "**"
 * swallows one more component and matching resumes after it. Keeping only
 * the latest "**" is enough because "**" matches any run of components. */
int xsd_glob_match(const char *pattern, size_t plen, const char *path,
                   size_t len)
{
    struct comp_iter p, s, pn, sn, star_p, star_s;
    const char *pc, *sc;
    size_t pcl, scl;
    int pk = key_check(pattern, plen), sk = key_check(path, len);
    int have_star = 0;

    if (pk < 0)
        return pk;
    if (sk < 0)
        return sk;
    if (pk == KEY_SPECIAL || sk == KEY_SPECIAL)
        return pk == sk && plen == len && memcmp(pattern, path, len) == 0;
    ci_init(&p, pattern, plen);
    ci_init(&s, path, len);
    memset(&star_p, 0, sizeof star_p);
    memset(&star_s, 0, sizeof star_s);
    for (;;) {
        sn = s;
        if (!ci_next(&sn, &sc, &scl))
            break;
        pn = p;
        if (ci_next(&pn, &pc, &pcl)) {
            if (comp_is(pc, pcl, "**", 2)) {
                have_star = 1;
                star_p = pn;
                star_s = s;
                p = pn;
                continue;
            }
            if (comp_is(pc, pcl, "*", 1) || comp_is(pc, pcl, sc, scl)) {
                p = pn;
                s = sn;
                continue;
            }
        }
        if (!have_star)
            return 0;
        (void)ci_next(&star_s, &sc, &scl); /* "**" takes one more */
        p = star_p;
        s = star_s;
    }
    for (;;) { /* path used up: the rest of the pattern must be "**" only */
        if (!ci_next(&p, &pc, &pcl))
            return 1;
        if (!comp_is(pc, pcl, "**", 2))
            return 0;
    }
}

xsd_globset *xsd_globset_new(void)
{
    xsd_trie *t = xsd_trie_new();
    xsd_globset *g;

    if (t == NULL)
        return NULL;
    g = t_malloc(t, sizeof *g);
    if (g == NULL) {
        xsd_trie_free(t);
        return NULL;
    }
    memset(g, 0, sizeof *g);
    g->t = t;
    g->h_star = key_hash(t->seed, "*", 1);
    g->h_dstar = key_hash(t->seed, "**", 2);
    return g;
}

void xsd_globset_free(xsd_globset *g)
{
    xsd_trie *t;

    if (g == NULL)
        return;
    t = g->t;
    t_free(t, g->scratch, 2 * g->scap * sizeof *g->scratch);
    t_free(t, g, sizeof *g);
    xsd_trie_free(t);
}

int xsd_globset_add(xsd_globset *g, const char *pattern, size_t plen,
                    uint64_t id)
{
    xsd_trie *t = g->t;
    struct xsd_node **s;
    size_t need, ncap, i;
    int kind = key_check(pattern, plen);

    if (kind < 0)
        return kind;
    /* A state set never holds a node twice, so t->nodes bounds it; the add
     * creates at most one node per component. */
    need = t->nodes + 1;
    for (i = 0; i < plen; i++)
        need += pattern[i] == '/';
    if (need > g->scap) {
        ncap = g->scap * 2 > need ? g->scap * 2 : need;
        if (ncap < 16)
            ncap = 16;
        if (ncap > SIZE_MAX / (2 * sizeof *s))
            return -ENOMEM;
        s = t_malloc(t, 2 * ncap * sizeof *s);
        if (s == NULL)
            return -ENOMEM;
        t_free(t, g->scratch, 2 * g->scap * sizeof *s);
        g->scratch = s;
        g->scap = ncap;
    }
    return xsd_trie_add(t, pattern, plen, id);
}

int xsd_globset_remove(xsd_globset *g, const char *pattern, size_t plen,
                       uint64_t id)
{
    return xsd_trie_remove(g->t, pattern, plen, id);
}

/* The next mark value; on wrap-around (after 2^32 steps) clear every mark so
 * a stale one cannot alias the new stamp. */
static uint32_t gs_next_stamp(xsd_globset *g)
{
    struct xsd_node *n;

    if (++g->stamp == 0) {
        g->t->root->mark = 0;
        for (n = preorder_next(g->t->root, g->t->root); n != NULL;
             n = preorder_next(g->t->root, n))
            n->mark = 0;
        g->stamp = 1;
    }
    return g->stamp;
}

/* Add state n to set[0..k) with its closure: a "**" child matches zero
 * components, so being at n means being at n's "**" child too (and at that
 * one's "**" child ...). The mark keeps each node in the set once; a marked
 * node's chain is already in. Returns the new size. */
static size_t gs_add_state(const xsd_globset *g, struct xsd_node **set,
                           size_t k, struct xsd_node *n, uint32_t stamp)
{
    while (n != NULL && n->mark != stamp) {
        n->mark = stamp;
        set[k++] = n;
        n = kid_find(n, g->h_dstar, "**", 2);
    }
    return k;
}

int64_t xsd_globset_match(xsd_globset *g, const char *path, size_t len,
                          uint64_t *out, size_t cap)
{
    xsd_trie *t = g->t;
    struct comp_iter it;
    struct xsd_node **cur, **nxt, **tmp, *s, *k;
    const char *comp;
    size_t clen, count = 0, ncur, nnxt, i;
    uint32_t h, stamp;
    int kind = key_check(path, len);

    if (kind < 0)
        return kind;
    if (kind == KEY_SPECIAL) {
        s = kid_find(t->special, key_hash(t->seed, path, len), path, len);
        if (s != NULL && s->w != NULL)
            emit(s->w, out, cap, &count);
        return finish(out, cap, count);
    }
    if (g->scap == 0) /* nothing was ever added */
        return 0;
    cur = g->scratch;
    nxt = g->scratch + g->scap;
    ncur = gs_add_state(g, cur, 0, t->root, gs_next_stamp(g));
    ci_init(&it, path, len);
    while (ncur != 0 && ci_next(&it, &comp, &clen)) {
        h = key_hash(t->seed, comp, clen);
        stamp = gs_next_stamp(g);
        nnxt = 0;
        for (i = 0; i < ncur; i++) {
            s = cur[i];
            if (s->parent != NULL && comp_is(s->key, s->klen, "**", 2))
                nnxt = gs_add_state(g, nxt, nnxt, s, stamp);
            k = kid_find(s, h, comp, clen);
            if (k != NULL)
                nnxt = gs_add_state(g, nxt, nnxt, k, stamp);
            k = kid_find(s, g->h_star, "*", 1);
            if (k != NULL)
                nnxt = gs_add_state(g, nxt, nnxt, k, stamp);
        }
        tmp = cur;
        cur = nxt;
        nxt = tmp;
        ncur = nnxt;
    }
    for (i = 0; i < ncur; i++)
        if (cur[i]->w != NULL)
            emit(cur[i]->w, out, cap, &count);
    return finish(out, cap, count);
}

size_t xsd_globset_count(const xsd_globset *g)
{
    return g->t->entries;
}

void xsd_globset_stats(const xsd_globset *g, struct xsd_trie_stats *st)
{
    xsd_trie_stats(g->t, st);
}
