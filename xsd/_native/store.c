/*
 * store.c: the node tree of store.h. Read store.h first: the picture, the
 * rules and the contract of every public function are there.
 *
 * Inside:
 * - One block per node (struct xsd_node: links, generation, lengths, then
 *   name, permissions and value back to back), so a 32-byte value costs one
 *   malloc of about 90 bytes.
 * - The index: an open-addressing table of node pointers keyed by (parent
 *   pointer, name), linear probing, load <= 0.8, deletion by backward shift
 *   (no tombstones). It replaces a per-node child table: a directory with
 *   20,000 children costs no more per lookup than one with two. Beside it, a
 *   byte per slot: 0 when empty, else seven bits of the key's hash (the top
 *   bit set). A probe reads the tags, one cache line for many slots, and
 *   dereferences a node only when its tag matches: in a big store every node
 *   read is a cache miss, and a lookup passed on average one or two other
 *   nodes (a missing one, as a create looks, several) before it.
 * - Owner counts: a small array of (domid, nodes, bytes) sorted by domid.
 * - The change log (xsd_store_track): records "<kind><path>" in first-change
 *   order in an array, found again by path through a second open-addressing
 *   table (load <= 0.5). A mutation first reserves a record (kind 0) for every
 *   path it will touch, then changes the tree, then sets the kinds: a failure
 *   while reserving drops the reserved records (log_rollback), so a failed
 *   mutation leaves the log as it was.
 * - Kept listings (xsd_store_keep_listings): up to LISTINGS copies of a wide
 *   node's children listing, each keyed by the node's address, so DIRECTORY
 *   of a big directory is one memcpy instead of a walk of its scattered
 *   children (measured in docs/benchmarks.md). Every change to a node's
 *   children list goes through child_append / child_unlink, which drop the
 *   parent's listing; node_replace moves a listing to the node's new block.
 *   A kept listing is never empty, so its node has children, and they leave
 *   it (child_unlink, dropping the listing) before anything frees it: no
 *   listing outlives its node. Outside struct xsd_node: a node costs no more
 *   for it.
 * Every allocation goes through alloc.h and is counted in bytes/blocks.
 */
#include "store.h"

#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "hash.h"

struct xsd_node {
    struct xsd_node *parent;    /* NULL for the root */
    struct xsd_node *child;     /* first child, NULL if none */
    struct xsd_node *next;      /* next sibling, NULL after the last */
    struct xsd_node *prev;      /* previous sibling; the first's is the last */
    uint64_t gen;
    uint16_t name_len;
    uint16_t perms_len;
    uint16_t value_len;
    uint16_t cap;               /* bytes of data[] allocated (>= the three lengths) */
    char data[];                /* name, perms, value */
};

struct owner {
    uint32_t domid;
    size_t count;
    uint64_t bytes;             /* sum of node_mem over the nodes it owns */
};

/* A kept children listing: node's names as xsd_store_children gives them. */
struct kept_listing {
    const struct xsd_node *node;
    size_t len;                 /* >= 1: an empty listing is never kept */
    char *names;
};

#define LISTINGS 8u             /* listings kept at most: a few wide directories */
#define LISTING_MAX 65536u      /* longer ones are not kept: at most 512 KiB in all */

/* One path in the change log. */
struct change {
    uint64_t hash;
    size_t len;
    uint8_t kind;               /* XSD_CHANGE_*, or 0 while a mutation reserves it */
    char path[];
};

struct xsd_store {
    struct xsd_node *root;
    struct xsd_node **slots;    /* nslots entries, NULL = empty */
    uint8_t *tags;              /* nslots: 0 = empty, else key_tag of slots[i]'s key */
    size_t nslots;              /* a power of two */
    size_t count;               /* nodes in the index (all but the root) */
    uint64_t next_gen;
    struct owner *owners;       /* sorted by domid, counts > 0 */
    size_t nowners, owners_cap;
    size_t bytes, blocks;
    int tracking;               /* xsd_store_track */
    struct change **log;        /* nlog records in first-change order */
    size_t nlog, log_cap;
    struct change **log_slots;  /* nlog_slots (a power of two), NULL = empty */
    size_t nlog_slots;
    struct kept_listing listings[LISTINGS];  /* [0, nlistings) in use */
    size_t nlistings;
    size_t listing_victim;      /* the next one replaced when all are in use */
    size_t listing_min;         /* keep listings this long or longer; 0: none */
};

#define INDEX_MIN 16u
#define DATA_MAX UINT16_MAX
#define DOMID_MAX UINT32_MAX   /* as perms.py parse: C xenstored's unsigned int */
#define LOG_SLOTS_MIN 32u
#define LOG_SLOTS_KEEP 1024u    /* a take keeps a table this small, frees a bigger one */

/* ------------------------------------------------------------ allocation */

static void *store_alloc(xsd_store *s, size_t size)
{
    void *p = XSD_MALLOC(size);
    if (p) {
        s->bytes += size;
        s->blocks++;
    }
    return p;
}

static void store_release(xsd_store *s, void *p, size_t size)
{
    if (p) {
        s->bytes -= size;
        s->blocks--;
        XSD_FREE(p);
    }
}

static size_t node_size(size_t cap)
{
    return offsetof(struct xsd_node, data) + cap;
}

static const char *node_name(const struct xsd_node *n)
{
    return n->data;
}

static const char *node_perms(const struct xsd_node *n)
{
    return n->data + n->name_len;
}

static const char *node_value(const struct xsd_node *n)
{
    return n->data + n->name_len + n->perms_len;
}

/* A detached node holding name, perms and value; NULL when out of memory.
 * The caller has checked that the three lengths fit DATA_MAX together. */
static struct xsd_node *node_new(xsd_store *s, const char *name, size_t name_len,
                                 const char *perms, size_t perms_len,
                                 const char *value, size_t value_len)
{
    size_t cap = name_len + perms_len + value_len;
    struct xsd_node *n = store_alloc(s, node_size(cap));
    if (!n)
        return NULL;
    n->parent = n->child = n->next = n->prev = NULL;
    n->gen = 0;
    n->name_len = (uint16_t)name_len;
    n->perms_len = (uint16_t)perms_len;
    n->value_len = (uint16_t)value_len;
    n->cap = (uint16_t)cap;
    if (name_len)
        memcpy(n->data, name, name_len);
    if (perms_len)
        memcpy(n->data + name_len, perms, perms_len);
    if (value_len)
        memcpy(n->data + name_len + perms_len, value, value_len);
    return n;
}

static void node_free(xsd_store *s, struct xsd_node *n)
{
    store_release(s, n, node_size(n->cap));
}

/* ------------------------------------------------------------ permissions */

/* The owner of a valid permission list: the first entry's domid. */
static uint32_t perms_owner(const char *perms)
{
    uint32_t domid = 0;
    for (const char *p = perms + 1; *p; p++)
        domid = domid * 10u + (uint32_t)(*p - '0');
    return domid;
}

/* 1 if perms is one or more entries "<n|r|w|b><digits>\0" with each domid
 * <= DOMID_MAX (xenstore_protocol/perms.py parse), else 0. */
static int perms_valid(const char *perms, size_t len)
{
    size_t i = 0;
    if (!perms || len == 0)
        return 0;
    while (i < len) {
        char kind = perms[i++];
        uint64_t domid = 0;
        size_t digits = 0;
        if (kind != 'n' && kind != 'r' && kind != 'w' && kind != 'b')
            return 0;
        while (i < len && perms[i] >= '0' && perms[i] <= '9') {
            domid = domid * 10u + (uint64_t)(perms[i] - '0');
            if (domid > DOMID_MAX)
                return 0;
            digits++;
            i++;
        }
        if (digits == 0 || i >= len || perms[i] != '\0')
            return 0;
        i++;
    }
    return 1;
}

/* What a node is charged against its owner's memory quota (xsd/core/quota.py
 * memory_of_node): a fixed 40 for the record, its full path, its value and 8
 * per permission entry. */
static uint64_t node_mem(size_t path_len, size_t value_len, const char *perms, size_t perms_len)
{
    uint64_t entries = 0;
    for (size_t i = 0; i < perms_len; i++)
        entries += perms[i] == '\0';
    return 40u + (uint64_t)path_len + value_len + 8u * entries;
}

/* Length of n's full path ("/" is 1): O(depth). */
static size_t node_path_len(const struct xsd_node *n)
{
    size_t len = 0;
    if (!n->parent)
        return 1;
    for (; n->parent; n = n->parent)
        len += 1u + n->name_len;
    return len;
}

/* ------------------------------------------------------------ owner counts */

/* Index of domid in s->owners, or of where it would go; *found set. */
static size_t owner_find(const xsd_store *s, uint32_t domid, int *found)
{
    size_t lo = 0, hi = s->nowners;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->owners[mid].domid < domid)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < s->nowners && s->owners[lo].domid == domid;
    return lo;
}

/* Make room for one more owner entry so owner_add cannot fail. 0 or -ENOMEM. */
static int owner_reserve(xsd_store *s)
{
    size_t cap;
    struct owner *grown;
    if (s->nowners < s->owners_cap)
        return 0;
    cap = s->owners_cap ? s->owners_cap * 2 : 4;
    grown = XSD_REALLOC(s->owners, cap * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    if (!s->owners)
        s->blocks++;
    s->bytes += (cap - s->owners_cap) * sizeof *grown;
    s->owners = grown;
    s->owners_cap = cap;
    return 0;
}

/* Count k more nodes (charged bytes together) for domid. Needs owner_reserve
 * first when domid is new. */
static void owner_add(xsd_store *s, uint32_t domid, size_t k, uint64_t bytes)
{
    int found;
    size_t i = owner_find(s, domid, &found);
    if (!found) {
        memmove(s->owners + i + 1, s->owners + i, (s->nowners - i) * sizeof *s->owners);
        s->owners[i].domid = domid;
        s->owners[i].count = 0;
        s->owners[i].bytes = 0;
        s->nowners++;
    }
    s->owners[i].count += k;
    s->owners[i].bytes += bytes;
}

/* One node (charged bytes) fewer for domid; the entry goes when it owns none. */
static void owner_sub(xsd_store *s, uint32_t domid, uint64_t bytes)
{
    int found;
    size_t i = owner_find(s, domid, &found);
    if (!found)
        return;             /* cannot happen while the counts are sound (check) */
    s->owners[i].bytes -= bytes;
    if (--s->owners[i].count == 0) {
        memmove(s->owners + i, s->owners + i + 1, (s->nowners - i - 1) * sizeof *s->owners);
        s->nowners--;
    }
}

/* ------------------------------------------------------------ index */

/* FNV-1a over the name, started from the parent's address, then fmix64
 * (hash.h) so the low bits (the slot) depend on every byte. */
static uint64_t key_hash(const struct xsd_node *parent, const char *name, size_t len)
{
    /* the parent's address is part of the key: a node that moves re-files
     * its children (node_replace) */
    uint64_t h = XSD_FNV_OFFSET ^ ((uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ULL);
    return xsd_fmix64(xsd_fnv1a(h, name, len));
}

/* A key's tag in s->tags: the hash's top seven bits, never 0 (empty). The
 * slot comes from the low bits, so the two are independent. */
static uint8_t key_tag(uint64_t h)
{
    return (uint8_t)(0x80u | (unsigned)(h >> 57));
}

static uint64_t node_hash(const struct xsd_node *n)
{
    return key_hash(n->parent, node_name(n), n->name_len);
}

static size_t node_home(const xsd_store *s, const struct xsd_node *n)
{
    return (size_t)(node_hash(n) & (s->nslots - 1));
}

static struct xsd_node *index_find(const xsd_store *s, const struct xsd_node *parent,
                                   const char *name, size_t len)
{
    size_t mask, i;
    uint64_t h;
    uint8_t tag, t;
    if (!s->nslots)
        return NULL;
    mask = s->nslots - 1;
    h = key_hash(parent, name, len);
    tag = key_tag(h);
    for (i = (size_t)(h & mask); (t = s->tags[i]) != 0; i = (i + 1) & mask) {
        const struct xsd_node *n = s->slots[i];
        if (t == tag && n->parent == parent && n->name_len == len
                && memcmp(node_name(n), name, len) == 0)
            return s->slots[i];
    }
    return NULL;
}

/* Put n (not yet indexed) in the first free slot of its probe sequence.
 * There is always one: the load stays below 1 (index_reserve). */
static void index_put(xsd_store *s, struct xsd_node *n)
{
    uint64_t h = node_hash(n);
    size_t mask = s->nslots - 1, i = (size_t)(h & mask);
    while (s->tags[i])
        i = (i + 1) & mask;
    s->slots[i] = n;
    s->tags[i] = key_tag(h);
}

/* Make sure `more` nodes can be added: grow (double) to keep load <= 0.8.
 * If growing fails, carry on in the current table as long as a slot stays
 * free (longer probes, still correct); else -ENOMEM. */
static int index_reserve(xsd_store *s, size_t more)
{
    size_t want = s->count + more, nslots = s->nslots ? s->nslots : INDEX_MIN;
    struct xsd_node **slots, **old = s->slots;
    uint8_t *tags, *old_tags = s->tags;
    size_t old_n = s->nslots;
    if (want < more)
        return -ENOMEM;
    while (want > nslots / 5 * 4) {
        if (nslots > SIZE_MAX / 2 / sizeof *slots)
            return -ENOMEM;
        nslots *= 2;
    }
    if (nslots == old_n)
        return 0;
    slots = XSD_CALLOC(nslots, sizeof *slots);
    tags = slots ? XSD_CALLOC(nslots, 1) : NULL;
    if (!tags) {
        XSD_FREE(slots);
        return want < old_n ? 0 : -ENOMEM;
    }
    s->bytes += nslots * (sizeof *slots + 1);
    s->blocks += 2;
    s->slots = slots;
    s->tags = tags;
    s->nslots = nslots;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i])
            index_put(s, old[i]);
    }
    store_release(s, old, old_n * sizeof *old);
    store_release(s, old_tags, old_n);
    return 0;
}

static size_t index_slot_of(const xsd_store *s, const struct xsd_node *n)
{
    size_t mask = s->nslots - 1, i = node_home(s, n);
    while (s->slots[i] != n)
        i = (i + 1) & mask;
    return i;
}

/* Take n out of the index: backward-shift the entries after it that would
 * otherwise be cut off from their home slot. */
static void index_del(xsd_store *s, const struct xsd_node *n)
{
    size_t mask = s->nslots - 1, hole = index_slot_of(s, n), j = hole;
    for (;;) {
        struct xsd_node *m;
        j = (j + 1) & mask;
        if (!s->tags[j])
            break;
        m = s->slots[j];
        /* m may fill the hole unless its home lies cyclically in (hole, j]. */
        size_t home = node_home(s, m);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            s->slots[hole] = m;
            s->tags[hole] = s->tags[j];
            hole = j;
        }
    }
    s->slots[hole] = NULL;
    s->tags[hole] = 0;
}

/* ------------------------------------------------------------ change log */

static struct change *log_find(const xsd_store *s, const char *path, size_t len, uint64_t h)
{
    size_t mask, i;
    if (!s->nlog_slots)
        return NULL;
    mask = s->nlog_slots - 1;
    for (i = (size_t)(h & mask); s->log_slots[i]; i = (i + 1) & mask) {
        struct change *c = s->log_slots[i];
        if (c->hash == h && c->len == len && memcmp(c->path, path, len) == 0)
            return c;
    }
    return NULL;
}

static void log_slot_put(xsd_store *s, struct change *c)
{
    size_t mask = s->nlog_slots - 1, i = (size_t)(c->hash & mask);
    while (s->log_slots[i])
        i = (i + 1) & mask;
    s->log_slots[i] = c;
}

/* Take c out of the table (backward shift, as index_del). */
static void log_slot_del(xsd_store *s, const struct change *c)
{
    size_t mask = s->nlog_slots - 1, hole = (size_t)(c->hash & mask), j;
    while (s->log_slots[hole] != c)
        hole = (hole + 1) & mask;
    for (j = hole;;) {
        struct change *m;
        size_t home;
        j = (j + 1) & mask;
        m = s->log_slots[j];
        if (!m)
            break;
        home = (size_t)(m->hash & mask);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            s->log_slots[hole] = m;
            hole = j;
        }
    }
    s->log_slots[hole] = NULL;
}

/* Make sure path has a record (a new one has kind 0 and goes last), so that
 * log_mark cannot fail. 0 or -ENOMEM (the log as it was). */
static int log_reserve(xsd_store *s, const char *path, size_t len)
{
    uint64_t h = xsd_hash_path(path, len);
    struct change *c;
    if (log_find(s, path, len, h))
        return 0;
    if (s->nlog == s->log_cap) {
        size_t cap = s->log_cap ? s->log_cap * 2 : 16;
        struct change **grown;
        if (cap > SIZE_MAX / 2 / sizeof *grown)
            return -ENOMEM;
        grown = XSD_REALLOC(s->log, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        if (!s->log)
            s->blocks++;
        s->bytes += (cap - s->log_cap) * sizeof *grown;
        s->log = grown;
        s->log_cap = cap;
    }
    if ((s->nlog + 1) * 2 > s->nlog_slots) {
        size_t n = s->nlog_slots ? s->nlog_slots * 2 : LOG_SLOTS_MIN, old_n = s->nlog_slots;
        struct change **slots, **old = s->log_slots;
        if (n > SIZE_MAX / 2 / sizeof *slots)
            return -ENOMEM;
        slots = XSD_CALLOC(n, sizeof *slots);
        if (!slots)
            return -ENOMEM;
        s->bytes += n * sizeof *slots;
        s->blocks++;
        s->log_slots = slots;
        s->nlog_slots = n;
        for (size_t i = 0; i < s->nlog; i++)
            log_slot_put(s, s->log[i]);
        store_release(s, old, old_n * sizeof *old);
    }
    if (len > SIZE_MAX - sizeof *c)
        return -ENOMEM;
    c = store_alloc(s, sizeof *c + len);
    if (!c)
        return -ENOMEM;
    c->hash = h;
    c->len = len;
    c->kind = 0;
    memcpy(c->path, path, len);
    s->log[s->nlog++] = c;
    log_slot_put(s, c);
    return 0;
}

/* Drop the records reserved since the log held mark of them. */
static void log_rollback(xsd_store *s, size_t mark)
{
    while (s->nlog > mark) {
        struct change *c = s->log[--s->nlog];
        log_slot_del(s, c);
        store_release(s, c, sizeof *c + c->len);
    }
}

/* Record what happened to path (reserved before): as xsd/core/store.py,
 * UPDATED only if nothing is recorded yet, CREATED and REMOVED always. */
static void log_mark(xsd_store *s, const char *path, size_t len, uint8_t kind)
{
    struct change *c = log_find(s, path, len, xsd_hash_path(path, len));
    if (!c)
        return;                 /* cannot happen: reserved first */
    if (kind != XSD_CHANGE_UPDATED || c->kind == 0)
        c->kind = kind;
}

/* Empty the log; keep its array and a small table for the next records. */
static void log_clear(xsd_store *s)
{
    log_rollback(s, 0);
    if (s->nlog_slots > LOG_SLOTS_KEEP) {
        store_release(s, s->log_slots, s->nlog_slots * sizeof *s->log_slots);
        store_release(s, s->log, s->log_cap * sizeof *s->log);
        s->log_slots = NULL;
        s->log = NULL;
        s->nlog_slots = s->log_cap = 0;
    }
}

/* ------------------------------------------------------------ kept listings */

static struct kept_listing *listing_find(const xsd_store *s, const struct xsd_node *n)
{
    for (size_t i = 0; i < s->nlistings; i++) {
        if (s->listings[i].node == n)
            return (struct kept_listing *)&s->listings[i];
    }
    return NULL;
}

static void listing_release(xsd_store *s, struct kept_listing *l)
{
    store_release(s, l->names, l->len);
}

/* n's children changed, or n goes: drop its listing if one is kept. */
static void listing_forget(xsd_store *s, const struct xsd_node *n)
{
    struct kept_listing *l = listing_find(s, n);
    if (l) {
        listing_release(s, l);
        *l = s->listings[--s->nlistings];
        if (s->listing_victim >= s->nlistings)
            s->listing_victim = 0;
    }
}

static void listing_forget_all(xsd_store *s)
{
    for (size_t i = 0; i < s->nlistings; i++)
        listing_release(s, &s->listings[i]);
    s->nlistings = 0;
    s->listing_victim = 0;
}

/* Keep a copy of n's listing (names[0..len), just made by a walk) when it is
 * long enough to be worth it. Best effort: when the copy cannot be allocated
 * nothing is kept and the next listing walks again. */
static void listing_keep(xsd_store *s, const struct xsd_node *n, const char *names, size_t len)
{
    struct kept_listing *l;
    char *copy;
    if (!s->listing_min || len < s->listing_min || len > LISTING_MAX)
        return;
    copy = store_alloc(s, len);
    if (!copy)
        return;
    memcpy(copy, names, len);
    if (s->nlistings < LISTINGS) {
        l = &s->listings[s->nlistings++];
    } else {
        l = &s->listings[s->listing_victim];
        s->listing_victim = (s->listing_victim + 1) % LISTINGS;
        listing_release(s, l);
    }
    l->node = n;
    l->len = len;
    l->names = copy;
}

/* ------------------------------------------------------------ children lists */

/* Both of these change parent's listing: the only two that do. */
static void child_append(xsd_store *s, struct xsd_node *parent, struct xsd_node *n)
{
    struct xsd_node *first = parent->child;
    if (s->nlistings)
        listing_forget(s, parent);
    n->parent = parent;
    n->next = NULL;
    if (!first) {
        parent->child = n;
        n->prev = n;
    } else {
        struct xsd_node *last = first->prev;
        last->next = n;
        n->prev = last;
        first->prev = n;
    }
}

static void child_unlink(xsd_store *s, struct xsd_node *n)
{
    struct xsd_node *parent = n->parent, *first = parent->child;
    if (s->nlistings)
        listing_forget(s, parent);
    if (n == first) {
        parent->child = n->next;
        if (n->next)
            n->next->prev = n->prev;
    } else {
        n->prev->next = n->next;
        if (n->next)
            n->next->prev = n->prev;
        else
            first->prev = n->prev;
    }
    n->next = n->prev = NULL;
}

/* Put fresh (a detached copy of old with new data) where old is: in its
 * parent's list, the index, and as its children's parent; free old. The
 * children are keyed by their parent's address, so each is taken out of the
 * index under old and put back under fresh: O(children). Never allocates. */
static void node_replace(xsd_store *s, struct xsd_node *old, struct xsd_node *fresh)
{
    struct xsd_node *parent = old->parent;
    struct kept_listing *l = s->nlistings ? listing_find(s, old) : NULL;
    if (l)
        l->node = fresh;        /* the same children: the listing follows */
    fresh->parent = parent;
    fresh->child = old->child;
    fresh->gen = old->gen;
    for (struct xsd_node *c = old->child; c; c = c->next) {
        index_del(s, c);            /* found under old, still allocated */
        c->parent = fresh;
        index_put(s, c);
    }
    if (parent) {
        struct xsd_node *first = parent->child;
        s->slots[index_slot_of(s, old)] = fresh;   /* same key: same slot */
        fresh->next = old->next;
        fresh->prev = old->prev == old ? fresh : old->prev;
        if (old == first)
            parent->child = fresh;
        else
            old->prev->next = fresh;
        if (old->next)
            old->next->prev = fresh;
        else if (old != first)
            first->prev = fresh;        /* an only child: fresh->prev is fresh already */
    } else {
        s->root = fresh;
    }
    node_free(s, old);
}

/* ------------------------------------------------------------ paths */

/* The component of a checked path (path_check) whose '/' is at path[*at]:
 * sets name and name_len, and moves *at to the '/' after it (or to len). */
static void next_component(const char *path, size_t len, size_t *at,
                           const char **name, size_t *name_len)
{
    size_t start = *at + 1, end = start;
    while (end < len && path[end] != '/')
        end++;
    *name = path + start;
    *name_len = end - start;
    *at = end;
}

static int path_check(const char *path, size_t len)
{
    if (!path || len == 0 || path[0] != '/')
        return -EINVAL;
    if (len == 1)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (path[i] == '\0')
            return -EINVAL;         /* would end a name early in the NUL-separated listings */
        if (path[i] == '/' && (i + 1 == len || path[i + 1] == '/'))
            return -EINVAL;
    }
    return 0;
}

/* Walk path as far as it exists. Returns the deepest existing node and sets
 * *rest to the offset of the first missing component's '/' (len if all
 * exist). The path must have passed path_check. */
static struct xsd_node *walk(const xsd_store *s, const char *path, size_t len, size_t *rest)
{
    struct xsd_node *n = s->root;
    size_t at = 0;
    if (len == 1) {
        *rest = len;
        return n;
    }
    while (at < len) {
        const char *name = NULL;
        size_t name_len = 0, next = at;
        struct xsd_node *c;
        next_component(path, len, &next, &name, &name_len);
        c = index_find(s, n, name, name_len);
        if (!c)
            break;
        n = c;
        at = next;
    }
    *rest = at;
    return n;
}

static struct xsd_node *lookup(const xsd_store *s, const char *path, size_t len, int *err)
{
    size_t rest;
    struct xsd_node *n;
    *err = path_check(path, len);
    if (*err)
        return NULL;
    n = walk(s, path, len, &rest);
    if (rest != len) {
        *err = -ENOENT;
        return NULL;
    }
    return n;
}

static void fill_view(const struct xsd_node *n, struct xsd_node_view *out)
{
    out->value = node_value(n);
    out->value_len = n->value_len;
    out->perms = node_perms(n);
    out->perms_len = n->perms_len;
    out->gen = n->gen;
    out->owner = perms_owner(node_perms(n));
}

/* ------------------------------------------------------------ public */

xsd_store *xsd_store_new(void)
{
    static const char root_perms[] = "n0";     /* with its NUL: "n0\0" */
    xsd_store *s = XSD_CALLOC(1, sizeof *s);
    if (!s)
        return NULL;
    s->bytes = sizeof *s;
    s->blocks = 1;
    s->root = node_new(s, NULL, 0, root_perms, sizeof root_perms, NULL, 0);
    if (!s->root || owner_reserve(s) < 0) {
        xsd_store_free(s);
        return NULL;
    }
    owner_add(s, 0, 1, node_mem(1, 0, root_perms, sizeof root_perms));
    s->next_gen = 1;
    s->listing_min = XSD_STORE_LISTING_MIN;
    return s;
}

void xsd_store_free(xsd_store *s)
{
    if (!s)
        return;
    listing_forget_all(s);
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->slots[i])
            node_free(s, s->slots[i]);
    }
    XSD_FREE(s->slots);
    XSD_FREE(s->tags);
    XSD_FREE(s->owners);
    log_rollback(s, 0);
    XSD_FREE(s->log);
    XSD_FREE(s->log_slots);
    if (s->root)
        node_free(s, s->root);
    XSD_FREE(s);
}

int xsd_store_get(const xsd_store *s, const char *path, size_t len,
                  struct xsd_node_view *out)
{
    int err;
    const struct xsd_node *n = lookup(s, path, len, &err);
    if (!n)
        return err;
    fill_view(n, out);
    return 0;
}

int64_t xsd_store_read(const xsd_store *s, const char *path, size_t len,
                       char *out, size_t cap, uint64_t meta[2])
{
    int err;
    const struct xsd_node *n = lookup(s, path, len, &err);
    size_t total;
    if (!n)
        return err;
    total = (size_t)n->perms_len + n->value_len;
    meta[0] = n->gen;
    meta[1] = n->perms_len;
    if (total <= cap && total)
        memcpy(out, node_perms(n), total);      /* perms then value: adjacent in the block */
    return (int64_t)total;
}

int64_t xsd_store_missing(const xsd_store *s, const char *path, size_t len,
                          struct xsd_node_view *top)
{
    size_t rest, at;
    int64_t missing = 0;
    const struct xsd_node *n;
    int err = path_check(path, len);
    if (err)
        return err;
    n = walk(s, path, len, &rest);
    for (at = rest; at < len; at++) {
        if (path[at] == '/')
            missing++;
    }
    fill_view(n, top);
    return missing;
}

/* The names of from and the siblings after it, each followed by NUL, into
 * out while they fit in cap; past the first that does not, only counted. One
 * walk of the list: the nodes are scattered blocks, so the walk (a cache miss
 * per child in a big directory) is the cost, not the copy. Returns the total
 * length, as xsd_store_children's n > cap rule asks. */
static size_t list_names(const struct xsd_node *from, char *out, size_t cap)
{
    const struct xsd_node *c = from;
    size_t at = 0;

    for (; c; c = c->next) {
        size_t len = c->name_len;
        if (len >= cap - at)
            break;              /* the name and its NUL do not fit */
        memcpy(out + at, node_name(c), len);
        at += len;
        out[at++] = '\0';
    }
    for (; c; c = c->next)
        at += (size_t)c->name_len + 1;
    return at;
}

int64_t xsd_store_children(const xsd_store *s, const char *path, size_t len,
                           char *out, size_t cap)
{
    int err;
    size_t total;
    const struct xsd_node *n = lookup(s, path, len, &err);
    const struct kept_listing *l;
    if (!n)
        return err;
    l = s->nlistings ? listing_find(s, n) : NULL;
    if (l) {
        if (l->len <= cap)
            memcpy(out, l->names, l->len);
        return (int64_t)l->len;
    }
    total = list_names(n->child, out, cap);
    if (total <= cap)
        listing_keep((xsd_store *)s, n, out, total);    /* store.h "Threads" */
    return (int64_t)total;
}

void xsd_store_keep_listings(xsd_store *s, size_t min_len)
{
    listing_forget_all(s);
    s->listing_min = min_len;
}

int64_t xsd_store_last_children(const xsd_store *s, const char *path, size_t len,
                                size_t count, char *out, size_t cap)
{
    int err;
    size_t k = 0;
    const struct xsd_node *from = NULL;
    const struct xsd_node *n = lookup(s, path, len, &err);
    if (!n)
        return err;
    if (n->child && count) {
        /* Back from the last child (first->prev) to the count-th last, or the first. */
        const struct xsd_node *c = n->child->prev;
        for (;;) {
            from = c;
            if (++k == count || c == n->child)
                break;
            c = c->prev;
        }
    }
    return (int64_t)list_names(from, out, cap);
}

/* Give n a new value and/or permissions (NULL: keep), in place when they fit
 * its block, else in a new block. 0 or -ENOMEM (n unchanged). *np is updated
 * to the node's (possibly new) address. */
static int node_set(xsd_store *s, struct xsd_node **np, const char *value, size_t value_len,
                    const char *perms, size_t perms_len)
{
    struct xsd_node *n = *np, *fresh;
    size_t need;
    if (!value) {
        value = node_value(n);
        value_len = n->value_len;
    }
    if (!perms) {
        perms = node_perms(n);
        perms_len = n->perms_len;
    }
    need = (size_t)n->name_len + perms_len + value_len;
    if (need <= n->cap) {
        /* The value first (it may be the node's own, moving left or right:
         * memmove), then the permissions, which come from the caller. */
        memmove(n->data + n->name_len + perms_len, value, value_len);
        if (perms != node_perms(n))
            memmove(n->data + n->name_len, perms, perms_len);
        n->perms_len = (uint16_t)perms_len;
        n->value_len = (uint16_t)value_len;
        return 0;
    }
    fresh = node_new(s, node_name(n), n->name_len, perms, perms_len, value, value_len);
    if (!fresh)
        return -ENOMEM;
    node_replace(s, n, fresh);
    *np = fresh;
    return 0;
}

/* Give the existing node *np, whose path is path[0..path_len), a new value
 * and/or permissions (NULL: keep; perms already checked), moving it between
 * owners' counts and bytes; with track (and tracking on) record UPDATED for
 * its path. No stamp. 0; -E2BIG, -ENOMEM (nothing changed, the log included). */
static int node_update(xsd_store *s, struct xsd_node **np, const char *path, size_t path_len,
                       const char *value, size_t value_len, const char *perms,
                       size_t perms_len, int track)
{
    struct xsd_node *n = *np;
    const char *new_perms = perms ? perms : node_perms(n);
    size_t new_plen = perms ? perms_len : n->perms_len;
    size_t new_vlen = value ? value_len : n->value_len;
    uint32_t old_owner = perms_owner(node_perms(n)), new_owner = perms_owner(new_perms);
    uint64_t old_mem = node_mem(path_len, n->value_len, node_perms(n), n->perms_len);
    uint64_t new_mem = node_mem(path_len, new_vlen, new_perms, new_plen);
    size_t mark = s->nlog;
    int err;
    track = track && s->tracking;
    if (new_plen > DATA_MAX || new_vlen > DATA_MAX ||
        (size_t)n->name_len + new_plen + new_vlen > DATA_MAX)
        return -E2BIG;
    if (new_owner != old_owner && !xsd_store_owned_by(s, new_owner) && owner_reserve(s) < 0)
        return -ENOMEM;
    if (track && log_reserve(s, path, path_len) < 0)
        return -ENOMEM;
    err = node_set(s, np, value, value_len, perms, perms_len);
    if (err) {
        log_rollback(s, mark);
        return err;
    }
    /* new before old: the old owner's entry may go, the new one has its room */
    owner_add(s, new_owner, new_owner != old_owner, new_mem);
    if (new_owner != old_owner) {
        owner_sub(s, old_owner, old_mem);
    } else {
        int found;
        s->owners[owner_find(s, old_owner, &found)].bytes -= old_mem;
    }
    if (track)
        log_mark(s, path, path_len, XSD_CHANGE_UPDATED);
    return 0;
}

/* The path of path's parent: path[0..*plen) ("/" for a child of the root). */
static const char *parent_path(const char *path, size_t len, size_t name_len, size_t *plen)
{
    *plen = len - 1 - name_len;
    if (*plen == 0) {
        *plen = 1;
        return "/";
    }
    return path;
}

int64_t xsd_store_write(xsd_store *s, const char *path, size_t len,
                        const char *value, size_t value_len,
                        const char *perms, size_t perms_len)
{
    size_t rest, at, mark = s->nlog, top_len;
    struct xsd_node *top, *chain = NULL, *tail = NULL;
    size_t created = 0;
    uint64_t bytes = 0;
    const char *top_path;
    int err = path_check(path, len);
    if (err)
        return err;
    if (value_len > DATA_MAX || (value_len && !value))
        return value_len > DATA_MAX ? -E2BIG : -EINVAL;
    if (!value)
        value = "";
    top = walk(s, path, len, &rest);
    if (rest == len) {
        err = node_update(s, &top, path, len, value, value_len, NULL, 0, 1);
        if (err)
            return err;
        top->gen = s->next_gen++;
        return 0;
    }
    if (!perms_valid(perms, perms_len))
        return -EINVAL;
    if (perms_len + value_len > DATA_MAX)
        return -E2BIG;
    /* Build the missing chain detached (linked through child), then index. */
    for (at = rest; at < len;) {
        const char *name = NULL;
        size_t name_len = 0;
        int leaf;
        struct xsd_node *n;
        next_component(path, len, &at, &name, &name_len);
        leaf = at == len;
        if (name_len + perms_len + (leaf ? value_len : 0) > DATA_MAX) {
            err = -ENAMETOOLONG;
            goto fail;
        }
        n = node_new(s, name, name_len, perms, perms_len, leaf ? value : NULL, leaf ? value_len : 0);
        if (!n) {
            err = -ENOMEM;
            goto fail;
        }
        if (tail)
            tail->child = n;
        else
            chain = n;
        tail = n;
        created++;
        bytes += node_mem(at, leaf ? value_len : 0, perms, perms_len);
    }
    err = index_reserve(s, created);
    if (!err && !xsd_store_owned_by(s, perms_owner(perms)))
        err = owner_reserve(s);
    top_path = rest ? path : "/";
    top_len = rest ? rest : 1;
    if (!err && s->tracking) {
        err = log_reserve(s, top_path, top_len);
        for (at = rest; !err && at < len;) {
            const char *name = NULL;
            size_t name_len = 0;
            next_component(path, len, &at, &name, &name_len);
            err = log_reserve(s, path, at);
        }
        if (err)
            log_rollback(s, mark);
    }
    if (err)
        goto fail;
    /* Nothing can fail from here on. */
    top->gen = s->next_gen++;
    for (struct xsd_node *parent = top, *n = chain; n;) {
        struct xsd_node *below = n->child;
        n->child = NULL;
        child_append(s, parent, n);
        index_put(s, n);
        s->count++;
        n->gen = s->next_gen++;
        parent = n;
        n = below;
    }
    owner_add(s, perms_owner(perms), created, bytes);
    if (s->tracking) {
        log_mark(s, top_path, top_len, XSD_CHANGE_UPDATED);
        for (at = rest; at < len;) {
            const char *name = NULL;
            size_t name_len = 0;
            next_component(path, len, &at, &name, &name_len);
            log_mark(s, path, at, XSD_CHANGE_CREATED);
        }
    }
    return (int64_t)created;
fail:
    while (chain) {
        struct xsd_node *below = chain->child;
        node_free(s, chain);
        chain = below;
    }
    return err;
}

int xsd_store_set_perms(xsd_store *s, const char *path, size_t len,
                        const char *perms, size_t perms_len)
{
    int err;
    struct xsd_node *n = lookup(s, path, len, &err);
    if (!n)
        return err;
    if (!perms_valid(perms, perms_len))
        return -EINVAL;
    err = node_update(s, &n, path, len, NULL, 0, perms, perms_len, 1);
    if (err)
        return err;
    n->gen = s->next_gen++;
    return 0;
}

/* Append bytes to out if they fit; always count them. */
static void emit(char *out, size_t cap, size_t *at, const char *bytes, size_t len)
{
    if (*at + len <= cap && len)
        memcpy(out + *at, bytes, len);
    *at += len;
}

/* Extend the path in (*buf)[0..*len) by c's name ("/" between, none after
 * the root's "/"), growing the buffer to twice what it needs when short.
 * -ENOMEM leaves the buffer as it was (the caller frees it). */
static int path_append(char **buf, size_t *len, size_t *cap, const struct xsd_node *c)
{
    size_t sep = *len == 1 ? 0 : 1, need = *len + sep + c->name_len;
    if (need > *cap) {
        char *grown = XSD_REALLOC(*buf, need * 2);
        if (!grown)
            return -ENOMEM;
        *buf = grown;
        *cap = need * 2;
    }
    if (sep)
        (*buf)[*len] = '/';
    memcpy(*buf + *len + sep, node_name(c), c->name_len);
    *len = need;
    return 0;
}

/* Cut n's name (and the '/' before it, unless its parent is the root) off
 * the end of the path n's path. */
static void path_pop(size_t *len, const struct xsd_node *n)
{
    *len -= n->name_len;
    if (*len > 1)
        (*len)--;
}

typedef int (*visit_fn)(void *ctx, const struct xsd_node *n, const char *path, size_t len);

/* Visit top (whose path is path[0..len)) and every node below it in the
 * order xsd/core/ops.py subtree() gives: children before their parent,
 * siblings in creation order, top last. The path being built lives in
 * *buf (*cap bytes; the caller frees it): a second walk with the same buffer
 * never allocates. Stops at the first visit returning non-zero and returns
 * it; -ENOMEM if the path buffer cannot grow. Iterative. */
static int walk_post(const struct xsd_node *top, const char *path, size_t len,
                     char **buf, size_t *cap, visit_fn visit, void *ctx)
{
    const struct xsd_node *n = top;
    size_t buf_len = len;
    int err;
    if (*cap < len) {
        char *grown = XSD_REALLOC(*buf, len + 64);
        if (!grown)
            return -ENOMEM;
        *buf = grown;
        *cap = len + 64;
    }
    memcpy(*buf, path, len);
    for (;;) {
        while (n->child) {
            n = n->child;
            if (path_append(buf, &buf_len, cap, n))
                return -ENOMEM;
        }
        for (;;) {
            err = visit(ctx, n, *buf, buf_len);
            if (err)
                return err;
            if (n == top)
                return 0;
            path_pop(&buf_len, n);
            if (n->next) {
                n = n->next;
                if (path_append(buf, &buf_len, cap, n))
                    return -ENOMEM;
                break;          /* descend into the next sibling's subtree */
            }
            n = n->parent;
        }
    }
}

/* Where a listing goes (the n > cap rule: emit counts past cap). */
struct listing {
    char *out;
    size_t cap, at;
    uint32_t domid;             /* xsd_store_naming's */
};

static int visit_list(void *ctx, const struct xsd_node *n, const char *path, size_t len)
{
    struct listing *l = ctx;
    static const char nul = '\0';
    emit(l->out, l->cap, &l->at, path, len);
    emit(l->out, l->cap, &l->at, &nul, 1);
    emit(l->out, l->cap, &l->at, node_perms(n), n->perms_len);
    emit(l->out, l->cap, &l->at, &nul, 1);
    return 0;
}

int64_t xsd_store_subtree(const xsd_store *s, const char *path, size_t len,
                          char *out, size_t cap)
{
    int err;
    const struct xsd_node *top = lookup(s, path, len, &err);
    struct listing l = { out, cap, 0, 0 };
    char *buf = NULL;
    size_t buf_cap = 0;
    if (!top)
        return err;
    err = walk_post(top, path, len, &buf, &buf_cap, visit_list, &l);
    XSD_FREE(buf);
    return err ? err : (int64_t)l.at;
}

static int visit_reserve(void *ctx, const struct xsd_node *n, const char *path, size_t len)
{
    (void)n;
    return log_reserve(ctx, path, len);
}

static int visit_removed(void *ctx, const struct xsd_node *n, const char *path, size_t len)
{
    (void)n;
    log_mark(ctx, path, len, XSD_CHANGE_REMOVED);
    return 0;
}

/* With tracking on: record the parent UPDATED, then every node of top's
 * subtree REMOVED in removal order. 0 or -ENOMEM (the log as it was). */
static int log_removal(xsd_store *s, const struct xsd_node *top, const char *path, size_t len)
{
    size_t mark = s->nlog, buf_cap = 0, plen;
    const char *ppath = parent_path(path, len, top->name_len, &plen);
    char *buf = NULL;
    int err = log_reserve(s, ppath, plen);
    if (!err)
        err = walk_post(top, path, len, &buf, &buf_cap, visit_reserve, s);
    if (err) {
        log_rollback(s, mark);
        XSD_FREE(buf);
        return -ENOMEM;
    }
    log_mark(s, ppath, plen, XSD_CHANGE_UPDATED);
    walk_post(top, path, len, &buf, &buf_cap, visit_removed, s);   /* buffer big enough */
    XSD_FREE(buf);
    return 0;
}

int64_t xsd_store_rm(xsd_store *s, const char *path, size_t len)
{
    int err;
    struct xsd_node *top = lookup(s, path, len, &err), *n;
    int64_t removed = 0;
    size_t plen = len;
    if (!top)
        return err;
    if (top == s->root)
        return -EINVAL;
    if (s->tracking && log_removal(s, top, path, len) < 0)
        return -ENOMEM;
    top->parent->gen = s->next_gen++;
    child_unlink(s, top);
    /* Free leaves first: descend along first children; a freed first child
     * leaves its next sibling first (the order of walk_post). The parent
     * pointers are the stack; plen follows the path length (top is not the
     * root, so every child's path is its parent's, '/', its name). */
    n = top;
    for (;;) {
        struct xsd_node *parent;
        while (n->child) {
            n = n->child;
            plen += 1u + n->name_len;
        }
        parent = n->parent;
        index_del(s, n);
        s->count--;
        owner_sub(s, perms_owner(node_perms(n)),
                  node_mem(plen, n->value_len, node_perms(n), n->perms_len));
        removed++;
        if (n == top) {
            node_free(s, n);
            break;
        }
        plen -= 1u + n->name_len;
        child_unlink(s, n);                /* the first child: leaves go first */
        node_free(s, n);
        n = parent;
    }
    return removed;
}

int64_t xsd_store_put(xsd_store *s, const char *path, size_t len,
                      const char *value, size_t value_len,
                      const char *perms, size_t perms_len)
{
    size_t rest;
    struct xsd_node *n;
    int err = path_check(path, len);
    if (err)
        return err;
    if ((value_len && !value) || !perms_valid(perms, perms_len))
        return -EINVAL;
    if (value_len > DATA_MAX)
        return -E2BIG;
    n = walk(s, path, len, &rest);
    if (rest == len) {
        err = node_update(s, &n, path, len, value ? value : "", value_len, perms, perms_len, 1);
        if (err)
            return err;
        n->gen = s->next_gen++;
        return 0;
    }
    if (memchr(path + rest + 1, '/', len - rest - 1))
        return -ENOENT;             /* the parent is missing */
    return xsd_store_write(s, path, len, value, value_len, perms, perms_len);
}

int xsd_store_move_last(xsd_store *s, const char *path, size_t len)
{
    int err;
    struct xsd_node *n = lookup(s, path, len, &err), *parent;
    if (!n)
        return err;
    if (n == s->root)
        return -EINVAL;
    if (n->next) {
        parent = n->parent;
        child_unlink(s, n);
        child_append(s, parent, n);
    }
    return 0;
}

int64_t xsd_store_load(xsd_store *s, const char *path, size_t len,
                       const char *value, size_t value_len,
                       const char *perms, size_t perms_len, uint64_t gen)
{
    size_t rest, name_len;
    struct xsd_node *n, *top;
    int err = path_check(path, len);
    if (err)
        return err;
    if ((value_len && !value) || !perms_valid(perms, perms_len))
        return -EINVAL;
    if (value_len > DATA_MAX || perms_len > DATA_MAX)
        return -E2BIG;
    if (!value)
        value = "";
    top = walk(s, path, len, &rest);
    if (rest == len) {
        err = node_update(s, &top, path, len, value, value_len, perms, perms_len, 0);
        if (!err)
            top->gen = gen;
        return err;
    }
    name_len = len - rest - 1;
    if (memchr(path + rest + 1, '/', name_len))
        return -ENOENT;
    if (name_len + perms_len + value_len > DATA_MAX)
        return -ENAMETOOLONG;
    n = node_new(s, path + rest + 1, name_len, perms, perms_len, value, value_len);
    if (!n)
        return -ENOMEM;
    err = index_reserve(s, 1);
    if (!err && !xsd_store_owned_by(s, perms_owner(perms)))
        err = owner_reserve(s);
    if (err) {
        node_free(s, n);
        return err;
    }
    child_append(s, top, n);
    index_put(s, n);
    s->count++;
    n->gen = gen;
    owner_add(s, perms_owner(perms), 1, node_mem(len, value_len, perms, perms_len));
    return 1;
}

static void emit_le(char *out, size_t cap, size_t *at, uint64_t v, size_t bytes)
{
    char le[8];
    for (size_t i = 0; i < bytes; i++)
        le[i] = (char)(unsigned char)(v >> (8 * i));
    emit(out, cap, at, le, bytes);
}

/* Visit every node of s, each parent before its children, siblings in
 * creation order, with its path: the order of xsd_store_dump and
 * xsd_store_naming. Stops at the first visit returning non-zero and returns
 * it; -ENOMEM if the path buffer cannot grow. Iterative. */
static int walk_pre(const xsd_store *s, visit_fn visit, void *ctx)
{
    const struct xsd_node *n = s->root;
    size_t buf_cap = 64, buf_len = 1;           /* grows to the longest path */
    char *buf = XSD_MALLOC(buf_cap);
    int rc;

    if (!buf)
        return -ENOMEM;
    buf[0] = '/';
    for (;;) {
        rc = visit(ctx, n, buf, buf_len);
        if (rc)
            break;
        if (n->child) {
            n = n->child;
        } else {
            while (n != s->root && !n->next) {
                path_pop(&buf_len, n);
                n = n->parent;
            }
            if (n == s->root)
                break;
            path_pop(&buf_len, n);
            n = n->next;
        }
        if (path_append(&buf, &buf_len, &buf_cap, n)) {
            rc = -ENOMEM;
            break;
        }
    }
    XSD_FREE(buf);
    return rc;
}

static int dump_node(void *ctx, const struct xsd_node *n, const char *path, size_t len)
{
    static const char nul = '\0';
    struct listing *l = ctx;

    emit(l->out, l->cap, &l->at, path, len);
    emit(l->out, l->cap, &l->at, &nul, 1);
    emit(l->out, l->cap, &l->at, node_perms(n), n->perms_len);
    emit(l->out, l->cap, &l->at, &nul, 1);
    emit_le(l->out, l->cap, &l->at, n->gen, 8);
    emit_le(l->out, l->cap, &l->at, n->value_len, 4);
    emit(l->out, l->cap, &l->at, node_value(n), n->value_len);
    return 0;
}

int64_t xsd_store_dump(const xsd_store *s, char *out, size_t cap)
{
    struct listing l = {out, cap, 0, 0};
    int rc = walk_pre(s, dump_node, &l);

    return rc ? rc : (int64_t)l.at;
}

/* Whether a valid permission list names domid in any entry; *owns set when
 * its first entry does. */
static int perms_name(const char *perms, size_t len, uint32_t domid, int *owns)
{
    const char *p = perms, *end = perms + len;
    int first = 1;

    *owns = 0;
    while (p < end) {
        uint32_t v = 0;
        for (p++; *p; p++)                      /* past the kind letter */
            v = v * 10u + (uint32_t)(*p - '0');
        p++;                                    /* past the entry's NUL */
        if (v == domid) {
            *owns = first;
            return 1;
        }
        first = 0;
    }
    return 0;
}

static int naming_node(void *ctx, const struct xsd_node *n, const char *path, size_t len)
{
    static const char nul = '\0';
    struct listing *l = ctx;
    int owns;

    if (perms_name(node_perms(n), n->perms_len, l->domid, &owns)) {
        char kind = owns ? 'O' : 'N';
        emit(l->out, l->cap, &l->at, &kind, 1);
        emit(l->out, l->cap, &l->at, path, len);
        emit(l->out, l->cap, &l->at, &nul, 1);
    }
    return 0;
}

int64_t xsd_store_naming(const xsd_store *s, uint32_t domid, char *out, size_t cap)
{
    struct listing l = {out, cap, 0, domid};
    int rc = walk_pre(s, naming_node, &l);

    return rc ? rc : (int64_t)l.at;
}

void xsd_store_track(xsd_store *s, int on)
{
    if (!on)
        log_clear(s);
    s->tracking = on != 0;
}

int64_t xsd_store_changes(const xsd_store *s, char *out, size_t cap)
{
    size_t at = 0;
    static const char nul = '\0';
    for (size_t i = 0; i < s->nlog; i++) {
        const struct change *c = s->log[i];
        char kind = (char)c->kind;
        emit(out, cap, &at, &kind, 1);
        emit(out, cap, &at, c->path, c->len);
        emit(out, cap, &at, &nul, 1);
    }
    return (int64_t)at;
}

int64_t xsd_store_take_changes(xsd_store *s, char *out, size_t cap)
{
    int64_t n = xsd_store_changes(s, out, cap);
    if ((size_t)n <= cap)
        log_clear(s);
    return n;
}

uint64_t xsd_store_next_gen(const xsd_store *s)
{
    return s->next_gen;
}

void xsd_store_set_next_gen(xsd_store *s, uint64_t gen)
{
    s->next_gen = gen;
}

uint64_t xsd_store_bytes_of(const xsd_store *s, uint32_t domid)
{
    int found;
    size_t i = owner_find(s, domid, &found);
    return found ? s->owners[i].bytes : 0;
}

size_t xsd_store_owned_by(const xsd_store *s, uint32_t domid)
{
    int found;
    size_t i = owner_find(s, domid, &found);
    return found ? s->owners[i].count : 0;
}

uint64_t xsd_store_stamp(xsd_store *s)
{
    return s->next_gen++;
}

size_t xsd_store_count(const xsd_store *s)
{
    return s->count + 1;
}

void xsd_store_stats(const xsd_store *s, struct xsd_store_stats *st)
{
    st->nodes = s->count + 1;
    st->bytes = s->bytes;
    st->blocks = s->blocks;
    st->index_slots = s->nslots;
}

/* Problems of one node's own fields and links (not its place in the tree). */
static size_t check_node(const xsd_store *s, const struct xsd_node *n)
{
    size_t problems = 0;
    if ((size_t)n->name_len + n->perms_len + n->value_len > n->cap)
        problems++;
    if (!perms_valid(node_perms(n), n->perms_len))
        problems++;
    if (n->gen >= s->next_gen)
        problems++;
    if (n->child) {
        const struct xsd_node *c = n->child, *last = c->prev;
        size_t seen = 0;
        if (!last || last->next)
            problems++;
        for (; c && seen++ <= s->count; c = c->next) {
            if (c->parent != n)
                problems++;
            if (c->next && c->next->prev != c)
                problems++;
        }
    }
    return problems;
}

size_t xsd_store_check(const xsd_store *s)
{
    size_t problems = 0, indexed = 0, reached = 0;
    if (!s->root || s->root->parent || s->root->name_len)
        return 1;
    problems += check_node(s, s->root);
    for (size_t i = 0; i < s->nslots; i++) {
        const struct xsd_node *n = s->slots[i], *up;
        size_t depth = 0;
        if (!n) {
            if (s->tags[i])
                problems++;     /* a tag without a node: a probe would read NULL */
            continue;
        }
        indexed++;
        if (s->tags[i] != key_tag(node_hash(n)))
            problems++;
        problems += check_node(s, n);
        if (!n->parent || n->name_len == 0)
            problems++;
        else if (index_find(s, n->parent, node_name(n), n->name_len) != n)
            problems++;
        /* its ancestors lead to the root (no cycle, no detached parent) */
        for (up = n; up->parent && depth <= s->count; up = up->parent)
            depth++;
        if (up != s->root)
            problems++;
    }
    /* every listed child is the indexed node of its key, and the lists hold
     * as many nodes as the index: so they hold exactly the indexed nodes */
    for (size_t i = 0; i <= s->nslots; i++) {
        const struct xsd_node *n = i < s->nslots ? s->slots[i] : s->root;
        if (!n)
            continue;
        for (const struct xsd_node *c = n->child; c && reached <= s->count; c = c->next) {
            reached++;
            if (index_find(s, n, node_name(c), c->name_len) != c)
                problems++;
        }
    }
    if (indexed != s->count || reached != s->count)
        problems++;
    /* owner counts against a recount, one owner at a time */
    {
        size_t total = 0;
        for (size_t k = 0; k < s->nowners; k++) {
            const struct xsd_node *root = s->root;
            size_t recount = perms_owner(node_perms(root)) == s->owners[k].domid;
            uint64_t rebytes = recount ? node_mem(1, root->value_len, node_perms(root),
                                                  root->perms_len) : 0;
            if (s->owners[k].count == 0 || (k && s->owners[k - 1].domid >= s->owners[k].domid))
                problems++;
            for (size_t i = 0; i < s->nslots; i++) {
                const struct xsd_node *n = s->slots[i];
                if (n && perms_owner(node_perms(n)) == s->owners[k].domid) {
                    recount++;
                    rebytes += node_mem(node_path_len(n), n->value_len, node_perms(n),
                                        n->perms_len);
                }
            }
            if (recount != s->owners[k].count || rebytes != s->owners[k].bytes)
                problems++;
            total += s->owners[k].count;
        }
        if (total != s->count + 1)
            problems++;
    }
    /* the change log: off means empty; each record settled and found again */
    if (!s->tracking && s->nlog)
        problems++;
    {
        size_t slotted = 0;
        for (size_t i = 0; i < s->nlog_slots; i++)
            slotted += s->log_slots[i] != NULL;
        if (slotted != s->nlog || s->nlog > s->log_cap)
            problems++;
    }
    for (size_t i = 0; i < s->nlog; i++) {
        const struct change *c = s->log[i];
        if (c->kind < XSD_CHANGE_CREATED || c->kind > XSD_CHANGE_REMOVED ||
            log_find(s, c->path, c->len, c->hash) != c || xsd_hash_path(c->path, c->len) != c->hash)
            problems++;
    }
    /* kept listings: each of a node in the tree, distinct, and equal to its walk */
    if (s->nlistings > LISTINGS || (s->nlistings && s->listing_victim >= s->nlistings))
        return problems + 1;
    for (size_t k = 0; k < s->nlistings; k++) {
        const struct kept_listing *l = &s->listings[k];
        const struct xsd_node *n = l->node;
        size_t at = 0;
        int known = n == s->root;
        for (size_t i = 0; !known && i < s->nslots; i++)
            known = s->slots[i] == n;
        if (!known || l->len == 0 || l->len < s->listing_min || listing_find(s, n) != l) {
            problems++;
            continue;           /* not a node of the tree: never read through it */
        }
        for (const struct xsd_node *c = n->child; c && at <= l->len; c = c->next) {
            if (c->name_len >= l->len - at || memcmp(l->names + at, node_name(c), c->name_len)
                || l->names[at + c->name_len] != '\0')
                at = l->len + 1;
            else
                at += (size_t)c->name_len + 1;
        }
        if (at != l->len)
            problems++;
    }
    return problems;
}
