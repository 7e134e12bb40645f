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
 *   20,000 children costs no more per lookup than one with two.
 * - Owner counts: a small array of (domid, count) sorted by domid.
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
};

struct xsd_store {
    struct xsd_node *root;
    struct xsd_node **slots;    /* nslots entries, NULL = empty */
    size_t nslots;              /* a power of two */
    size_t count;               /* nodes in the index (all but the root) */
    uint64_t next_gen;
    struct owner *owners;       /* sorted by domid, counts > 0 */
    size_t nowners, owners_cap;
    size_t bytes, blocks;
};

#define INDEX_MIN 16u
#define DATA_MAX UINT16_MAX
#define DOMID_MAX 65535u

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
        uint32_t domid = 0;
        size_t digits = 0;
        if (kind != 'n' && kind != 'r' && kind != 'w' && kind != 'b')
            return 0;
        while (i < len && perms[i] >= '0' && perms[i] <= '9') {
            domid = domid * 10u + (uint32_t)(perms[i] - '0');
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

/* Count k more nodes for domid. Needs owner_reserve first when domid is new. */
static void owner_add(xsd_store *s, uint32_t domid, size_t k)
{
    int found;
    size_t i = owner_find(s, domid, &found);
    if (!found) {
        memmove(s->owners + i + 1, s->owners + i, (s->nowners - i) * sizeof *s->owners);
        s->owners[i].domid = domid;
        s->owners[i].count = 0;
        s->nowners++;
    }
    s->owners[i].count += k;
}

/* One node fewer for domid; the entry goes when it reaches 0. */
static void owner_sub(xsd_store *s, uint32_t domid)
{
    int found;
    size_t i = owner_find(s, domid, &found);
    if (!found)
        return;             /* cannot happen while the counts are sound (check) */
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

static size_t node_home(const xsd_store *s, const struct xsd_node *n)
{
    return (size_t)(key_hash(n->parent, node_name(n), n->name_len) & (s->nslots - 1));
}

static struct xsd_node *index_find(const xsd_store *s, const struct xsd_node *parent,
                                   const char *name, size_t len)
{
    size_t mask, i;
    if (!s->nslots)
        return NULL;
    mask = s->nslots - 1;
    i = (size_t)(key_hash(parent, name, len) & mask);
    for (struct xsd_node *n; (n = s->slots[i]) != NULL; i = (i + 1) & mask) {
        if (n->parent == parent && n->name_len == len && memcmp(node_name(n), name, len) == 0)
            return n;
    }
    return NULL;
}

/* Put n (not yet indexed) in the first free slot of its probe sequence.
 * There is always one: the load stays below 1 (index_reserve). */
static void index_put(xsd_store *s, struct xsd_node *n)
{
    size_t mask = s->nslots - 1, i = node_home(s, n);
    while (s->slots[i])
        i = (i + 1) & mask;
    s->slots[i] = n;
}

/* Make sure `more` nodes can be added: grow (double) to keep load <= 0.8.
 * If growing fails, carry on in the current table as long as a slot stays
 * free (longer probes, still correct); else -ENOMEM. */
static int index_reserve(xsd_store *s, size_t more)
{
    size_t want = s->count + more, nslots = s->nslots ? s->nslots : INDEX_MIN;
    struct xsd_node **slots, **old = s->slots;
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
    if (!slots)
        return want < old_n ? 0 : -ENOMEM;
    s->bytes += nslots * sizeof *slots;
    s->blocks++;
    s->slots = slots;
    s->nslots = nslots;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i])
            index_put(s, old[i]);
    }
    store_release(s, old, old_n * sizeof *old);
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
        m = s->slots[j];
        if (!m)
            break;
        /* m may fill the hole unless its home lies cyclically in (hole, j]. */
        size_t home = node_home(s, m);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            s->slots[hole] = m;
            hole = j;
        }
    }
    s->slots[hole] = NULL;
}

/* ------------------------------------------------------------ children lists */

static void child_append(struct xsd_node *parent, struct xsd_node *n)
{
    struct xsd_node *first = parent->child;
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

static void child_unlink(struct xsd_node *n)
{
    struct xsd_node *parent = n->parent, *first = parent->child;
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
    owner_add(s, 0, 1);
    s->next_gen = 1;
    return s;
}

void xsd_store_free(xsd_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nslots; i++) {
        if (s->slots[i])
            node_free(s, s->slots[i]);
    }
    XSD_FREE(s->slots);
    XSD_FREE(s->owners);
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

int64_t xsd_store_children(const xsd_store *s, const char *path, size_t len,
                           char *out, size_t cap)
{
    int err;
    size_t total = 0;
    const struct xsd_node *n = lookup(s, path, len, &err);
    if (!n)
        return err;
    for (const struct xsd_node *c = n->child; c; c = c->next)
        total += (size_t)c->name_len + 1;
    if (total <= cap) {
        size_t at = 0;
        for (const struct xsd_node *c = n->child; c; c = c->next) {
            memcpy(out + at, node_name(c), c->name_len);
            at += c->name_len;
            out[at++] = '\0';
        }
    }
    return (int64_t)total;
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

int64_t xsd_store_write(xsd_store *s, const char *path, size_t len,
                        const char *value, size_t value_len,
                        const char *perms, size_t perms_len)
{
    size_t rest, at;
    struct xsd_node *top, *chain = NULL, *tail = NULL;
    size_t created = 0;
    int err = path_check(path, len);
    if (err)
        return err;
    if (value_len > DATA_MAX || (value_len && !value))
        return value_len > DATA_MAX ? -E2BIG : -EINVAL;
    if (!value)
        value = "";
    top = walk(s, path, len, &rest);
    if (rest == len) {
        if ((size_t)top->name_len + top->perms_len + value_len > DATA_MAX)
            return -E2BIG;
        err = node_set(s, &top, value, value_len, NULL, 0);
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
    }
    err = index_reserve(s, created);
    if (!err && !xsd_store_owned_by(s, perms_owner(perms)))
        err = owner_reserve(s);
    if (err)
        goto fail;
    /* Nothing can fail from here on. */
    top->gen = s->next_gen++;
    for (struct xsd_node *parent = top, *n = chain; n;) {
        struct xsd_node *below = n->child;
        n->child = NULL;
        child_append(parent, n);
        index_put(s, n);
        s->count++;
        n->gen = s->next_gen++;
        parent = n;
        n = below;
    }
    owner_add(s, perms_owner(perms), created);
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
    uint32_t old_owner, new_owner;
    struct xsd_node *n = lookup(s, path, len, &err);
    if (!n)
        return err;
    if (!perms_valid(perms, perms_len))
        return -EINVAL;
    if (perms_len > DATA_MAX || (size_t)n->name_len + perms_len + n->value_len > DATA_MAX)
        return -E2BIG;
    old_owner = perms_owner(node_perms(n));
    new_owner = perms_owner(perms);
    if (new_owner != old_owner && !xsd_store_owned_by(s, new_owner) && owner_reserve(s) < 0)
        return -ENOMEM;
    err = node_set(s, &n, NULL, 0, perms, perms_len);
    if (err)
        return err;
    if (new_owner != old_owner) {
        owner_add(s, new_owner, 1);
        owner_sub(s, old_owner);
    }
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
 * -ENOMEM frees the buffer. */
static int path_append(char **buf, size_t *len, size_t *cap, const struct xsd_node *c)
{
    size_t sep = *len == 1 ? 0 : 1, need = *len + sep + c->name_len;
    if (need > *cap) {
        char *grown = XSD_REALLOC(*buf, need * 2);
        if (!grown) {
            XSD_FREE(*buf);
            return -ENOMEM;
        }
        *buf = grown;
        *cap = need * 2;
    }
    if (sep)
        (*buf)[*len] = '/';
    memcpy(*buf + *len + sep, node_name(c), c->name_len);
    *len = need;
    return 0;
}

int64_t xsd_store_subtree(const xsd_store *s, const char *path, size_t len,
                          char *out, size_t cap)
{
    int err;
    const struct xsd_node *top = lookup(s, path, len, &err), *n;
    char *buf;
    size_t buf_cap, buf_len = len, at = 0;
    static const char nul = '\0';
    if (!top)
        return err;
    buf_cap = len + 64;
    buf = XSD_MALLOC(buf_cap);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, path, len);
    n = top;
    for (;;) {
        /* visit n: buf[0..buf_len) is its path */
        emit(out, cap, &at, buf, buf_len);
        emit(out, cap, &at, &nul, 1);
        emit(out, cap, &at, node_perms(n), n->perms_len);
        emit(out, cap, &at, &nul, 1);
        if (n->child) {
            /* descend to the last child (a stack pops the last pushed) */
            const struct xsd_node *c = n->child->prev;
            if (path_append(&buf, &buf_len, &buf_cap, c))
                return -ENOMEM;
            n = c;
            continue;
        }
        /* go to the previous sibling, climbing while n is a first child */
        for (;;) {
            const struct xsd_node *parent;
            if (n == top)
                goto done;
            parent = n->parent;
            buf_len -= n->name_len;
            if (buf_len > 1)
                buf_len--;          /* the '/' before the name, unless parent is the root */
            if (n != parent->child) {
                const struct xsd_node *c = n->prev;
                if (path_append(&buf, &buf_len, &buf_cap, c))
                    return -ENOMEM;
                n = c;
                break;
            }
            n = parent;
        }
    }
done:
    XSD_FREE(buf);
    return (int64_t)at;
}

int64_t xsd_store_rm(xsd_store *s, const char *path, size_t len)
{
    int err;
    struct xsd_node *top = lookup(s, path, len, &err), *n;
    int64_t removed = 0;
    if (!top)
        return err;
    if (top == s->root)
        return -EINVAL;
    top->parent->gen = s->next_gen++;
    child_unlink(top);
    /* Free leaves first: descend along first children; a freed first child
     * leaves its next sibling first. The parent pointers are the stack. */
    n = top;
    for (;;) {
        struct xsd_node *parent;
        while (n->child)
            n = n->child;
        parent = n->parent;
        index_del(s, n);
        s->count--;
        owner_sub(s, perms_owner(node_perms(n)));
        removed++;
        if (n == top) {
            node_free(s, n);
            break;
        }
        child_unlink(n);                /* the first child: leaves go first */
        node_free(s, n);
        n = parent;
    }
    return removed;
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
        if (!n)
            continue;
        indexed++;
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
            size_t recount = perms_owner(node_perms(s->root)) == s->owners[k].domid;
            if (s->owners[k].count == 0 || (k && s->owners[k - 1].domid >= s->owners[k].domid))
                problems++;
            for (size_t i = 0; i < s->nslots; i++) {
                if (s->slots[i] && perms_owner(node_perms(s->slots[i])) == s->owners[k].domid)
                    recount++;
            }
            if (recount != s->owners[k].count)
                problems++;
            total += s->owners[k].count;
        }
        if (total != s->count + 1)
            problems++;
    }
    return problems;
}
