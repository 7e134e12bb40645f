/*
 * txn.c: one transaction's overlay over the C node store (contract in txn.h).
 * Each function cites the Python one it mirrors (xsd/core/transactions.py);
 * the order in which paths are first read is part of the semantics (it is
 * the order of Transaction.seen: the quota, the commit check and the events
 * all follow it), so every walk reads nodes in the order the Python one does.
 */
#include "txn.h"

#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "hash.h"

/* A private node: the snapshot of one the transaction read, or one it made. */
struct tnode {
    char *value;            /* NULL when value_len == 0 */
    size_t value_len;
    char *perms;            /* entries "n0\0r5\0" */
    size_t perms_len;
    char *names;            /* children "a\0b\0", creation order; NULL when none */
    size_t names_len;
    uint64_t gen;           /* as first read; 0 for a made node (Node's default) */
};

enum { OV_NONE, OV_SNAP, OV_MADE, OV_GONE };   /* Transaction.overlay[path] */

struct entry {
    char *path;
    size_t path_len;
    uint64_t hash;
    uint64_t seen_gen;
    unsigned char seen_present;     /* Transaction.seen[path] is not None */
    unsigned char ov;
    unsigned char ev_in;            /* PendingEvents.by_path has path */
    unsigned char ev_removed;
    unsigned char has_rm_perms;     /* PendingEvents.removed_perms has path */
    unsigned char created;          /* commit: made by this commit */
    struct tnode *snap;             /* NULL: absent when first read */
    struct tnode *made;             /* OV_MADE */
    char *ev_perms;                 /* CHANGE's perms (NULL: None) */
    size_t ev_perms_len;
    char *ev_old;                   /* first old perms (NULL: None) */
    size_t ev_old_len;
    char *rm_perms;
    size_t rm_perms_len;
    size_t per_parent;              /* commit: made children to put under it */
};

struct owned {
    uint32_t domid;
    int64_t delta;
};

struct xsd_txn {
    xsd_store *store;
    uint32_t limit;                 /* transaction-nodes; 0: none */
    int doomed;
    struct entry **entries;         /* first-touch order */
    size_t count, cap;
    size_t *slots;                  /* index + 1 into entries; 0: empty */
    size_t slot_count;              /* power of two, or 0 */
    struct entry **overlay;         /* first-write order */
    size_t ov_count, ov_cap;
    struct entry **rm_order;        /* removed_perms' insertion order */
    size_t rm_count, rm_cap;
    struct owned *owned;
    size_t owned_count, owned_cap;
    char *removed;                  /* the last remove's records */
    size_t removed_len, removed_cap;
    char *pathbuf;                  /* a path being built */
    size_t pathbuf_cap;
};

/* -- small helpers ------------------------------------------------------- */

static int dup_bytes(const char *p, size_t n, char **out)
{
    char *copy;

    *out = NULL;
    if (n == 0)
        return 0;
    copy = XSD_MALLOC(n);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, p, n);
    *out = copy;
    return 0;
}

static int grow(void **array, size_t *cap, size_t need, size_t size)
{
    size_t n = *cap ? *cap : 8;
    void *p;

    if (need <= *cap)
        return 0;
    while (n < need) {
        if (n > SIZE_MAX / 2 / size)
            return -ENOMEM;
        n *= 2;
    }
    p = XSD_REALLOC(*array, n * size);
    if (!p)
        return -ENOMEM;
    *array = p;
    *cap = n;
    return 0;
}

static int buf_room(char **buf, size_t *cap, size_t need)
{
    return grow((void **)buf, cap, need, 1);
}

static void tnode_free(struct tnode *n)
{
    if (!n)
        return;
    XSD_FREE(n->value);
    XSD_FREE(n->perms);
    XSD_FREE(n->names);
    XSD_FREE(n);
}

static struct tnode *tnode_new(const char *value, size_t value_len, const char *perms,
                               size_t perms_len, const char *names, size_t names_len,
                               uint64_t gen)
{
    struct tnode *n = XSD_CALLOC(1, sizeof *n);

    if (!n)
        return NULL;
    if (dup_bytes(value, value_len, &n->value) || dup_bytes(perms, perms_len, &n->perms)
        || dup_bytes(names, names_len, &n->names)) {
        tnode_free(n);
        return NULL;
    }
    n->value_len = value_len;
    n->perms_len = perms_len;
    n->names_len = names_len;
    n->gen = gen;
    return n;
}

/* The first entry's domid (store.c checked the entries). */
static uint32_t perms_owner(const char *perms, size_t len)
{
    uint64_t v = 0;

    for (size_t i = 1; i < len && perms[i] >= '0' && perms[i] <= '9'; i++)
        v = v * 10u + (uint64_t)(perms[i] - '0');
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Where name starts in names, or -1. */
static int64_t names_find(const struct tnode *n, const char *name, size_t len)
{
    size_t at = 0;

    while (at < n->names_len) {
        const char *end = memchr(n->names + at, '\0', n->names_len - at);
        size_t l = end ? (size_t)(end - (n->names + at)) : n->names_len - at;

        if (l == len && memcmp(n->names + at, name, len) == 0)
            return (int64_t)at;
        at += l + 1;
    }
    return -1;
}

/* children[name] = None: appended unless already listed (a dict keeps its place). */
static int names_add(struct tnode *n, const char *name, size_t len)
{
    char *p;

    if (names_find(n, name, len) >= 0)
        return 0;
    p = XSD_REALLOC(n->names, n->names_len + len + 1);
    if (!p)
        return -ENOMEM;
    memcpy(p + n->names_len, name, len);
    p[n->names_len + len] = '\0';
    n->names = p;
    n->names_len += len + 1;
    return 0;
}

/* children.pop(name, None) */
static void names_drop(struct tnode *n, const char *name, size_t len)
{
    int64_t at = names_find(n, name, len);
    size_t from, rest;

    if (at < 0)
        return;
    from = (size_t)at + len + 1;
    rest = n->names_len - from;
    if (rest)
        memmove(n->names + at, n->names + from, rest);
    n->names_len -= len + 1;
}

/* Length of parent(path) ("/" for a top-level path); path is not the root. */
static size_t parent_len(const char *path, size_t len)
{
    size_t cut = len;

    while (cut > 0 && path[cut - 1] != '/')
        cut--;
    return cut > 1 ? cut - 1 : 1;
}

/* -- the table ----------------------------------------------------------- */

static struct entry *find(const xsd_txn *t, const char *path, size_t len, uint64_t h)
{
    size_t mask, i;

    if (!t->slot_count)
        return NULL;
    mask = t->slot_count - 1;
    for (i = (size_t)h & mask; t->slots[i]; i = (i + 1) & mask) {
        struct entry *e = t->entries[t->slots[i] - 1];

        if (e->hash == h && e->path_len == len && memcmp(e->path, path, len) == 0)
            return e;
    }
    return NULL;
}

static int reindex(xsd_txn *t, size_t slot_count)
{
    size_t *slots = XSD_CALLOC(slot_count, sizeof *slots);
    size_t mask = slot_count - 1;

    if (!slots)
        return -ENOMEM;
    for (size_t k = 0; k < t->count; k++) {
        size_t i = (size_t)t->entries[k]->hash & mask;

        while (slots[i])
            i = (i + 1) & mask;
        slots[i] = k + 1;
    }
    XSD_FREE(t->slots);
    t->slots = slots;
    t->slot_count = slot_count;
    return 0;
}

/* A new entry for path (not in the table), seen as snap says; snap is taken
 * over only on success. */
static struct entry *add(xsd_txn *t, const char *path, size_t len, uint64_t h,
                         struct tnode *snap)
{
    struct entry *e;
    size_t mask, i;

    if (grow((void **)&t->entries, &t->cap, t->count + 1, sizeof *t->entries))
        return NULL;
    if ((t->count + 1) * 2 > t->slot_count) {
        size_t n = t->slot_count ? t->slot_count * 2 : 16;

        if (n > SIZE_MAX / 2 / sizeof(size_t) || reindex(t, n))
            return NULL;
    }
    e = XSD_CALLOC(1, sizeof *e);
    if (!e)
        return NULL;
    if (dup_bytes(path, len, &e->path)) {
        XSD_FREE(e);
        return NULL;
    }
    e->path_len = len;
    e->hash = h;
    e->snap = snap;
    e->seen_present = snap != NULL;
    e->seen_gen = snap ? snap->gen : 0;
    t->entries[t->count++] = e;
    mask = t->slot_count - 1;
    for (i = (size_t)h & mask; t->slots[i]; i = (i + 1) & mask)
        ;
    t->slots[i] = t->count;
    return e;
}

static void entry_free(struct entry *e)
{
    tnode_free(e->snap);
    tnode_free(e->made);
    XSD_FREE(e->path);
    XSD_FREE(e->ev_perms);
    XSD_FREE(e->ev_old);
    XSD_FREE(e->rm_perms);
    XSD_FREE(e);
}

static struct tnode *view_of(const struct entry *e)
{
    switch (e->ov) {
    case OV_MADE:
        return e->made;
    case OV_GONE:
        return NULL;
    default:
        return e->snap;
    }
}

/* A private copy of the store's node at path: 0 and *out (NULL: absent). */
static int copy_of(xsd_txn *t, const char *path, size_t len, struct tnode **out)
{
    struct xsd_node_view v;
    int rc = xsd_store_get(t->store, path, len, &v);
    int64_t n;
    char *names = NULL;
    struct tnode *node;

    *out = NULL;
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    n = xsd_store_children(t->store, path, len, NULL, 0);
    if (n < 0)
        return (int)n;
    if (n > 0) {
        names = XSD_MALLOC((size_t)n);
        if (!names)
            return -ENOMEM;
        n = xsd_store_children(t->store, path, len, names, (size_t)n);
        if (n < 0) {
            XSD_FREE(names);
            return (int)n;
        }
    }
    node = XSD_CALLOC(1, sizeof *node);
    if (!node || dup_bytes(v.value, v.value_len, &node->value)
        || dup_bytes(v.perms, v.perms_len, &node->perms)) {
        XSD_FREE(names);
        tnode_free(node);
        return -ENOMEM;
    }
    node->value_len = v.value_len;
    node->perms_len = v.perms_len;
    node->names = names;
    node->names_len = (size_t)n;
    node->gen = v.gen;
    *out = node;
    return 0;
}

/* Transaction.get: the entry of path, read from the store the first time. */
static int touch(xsd_txn *t, const char *path, size_t len, struct entry **out)
{
    uint64_t h = xsd_hash_path(path, len);
    struct entry *e = find(t, path, len, h);
    struct tnode *snap;
    int rc;

    if (e) {
        *out = e;
        return 0;
    }
    if (t->limit && t->count >= t->limit)
        return -ENOSPC;
    rc = copy_of(t, path, len, &snap);
    if (rc)
        return rc;
    e = add(t, path, len, h, snap);
    if (!e) {
        tnode_free(snap);
        return -ENOMEM;
    }
    *out = e;
    return 0;
}

/* overlay[path] gets a value: first-write order keeps its first place. */
static int overlay_note(xsd_txn *t, struct entry *e)
{
    if (e->ov != OV_NONE)
        return 0;
    if (grow((void **)&t->overlay, &t->ov_cap, t->ov_count + 1, sizeof *t->overlay))
        return -ENOMEM;
    t->overlay[t->ov_count++] = e;
    return 0;
}

/* Transaction._mut: the node to change in place (the snapshot unless made). */
static int mut(xsd_txn *t, struct entry *e, struct tnode **out)
{
    struct tnode *n = view_of(e);

    if (!n)
        return -ENOENT;
    if (e->ov == OV_NONE) {
        if (overlay_note(t, e))
            return -ENOMEM;
        e->ov = OV_SNAP;
    }
    *out = n;
    return 0;
}

static int owned_add(xsd_txn *t, uint32_t domid, int64_t delta)
{
    for (size_t i = 0; i < t->owned_count; i++)
        if (t->owned[i].domid == domid) {
            t->owned[i].delta += delta;
            return 0;
        }
    if (grow((void **)&t->owned, &t->owned_cap, t->owned_count + 1, sizeof *t->owned))
        return -ENOMEM;
    t->owned[t->owned_count].domid = domid;
    t->owned[t->owned_count].delta = delta;
    t->owned_count++;
    return 0;
}

/* A mutator's failure after it may have changed the overlay (txn.h). */
static int doom(xsd_txn *t, int rc)
{
    if (rc == -ENOMEM)
        t->doomed = 1;
    return rc;
}

static const char *path_join(xsd_txn *t, const char *up, size_t up_len, const char *name,
                             size_t name_len, size_t *len)
{
    size_t n = (up_len == 1 ? 0 : up_len) + 1 + name_len;

    if (buf_room(&t->pathbuf, &t->pathbuf_cap, n))
        return NULL;
    if (up_len > 1)
        memcpy(t->pathbuf, up, up_len);
    t->pathbuf[up_len > 1 ? up_len : 0] = '/';
    memcpy(t->pathbuf + n - name_len, name, name_len);
    *len = n;
    return t->pathbuf;
}

/* -- public ------------------------------------------------------------- */

xsd_txn *xsd_txn_new(xsd_store *s)
{
    xsd_txn *t = XSD_CALLOC(1, sizeof *t);

    if (t)
        t->store = s;
    return t;
}

void xsd_txn_free(xsd_txn *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++)
        entry_free(t->entries[i]);
    XSD_FREE(t->entries);
    XSD_FREE(t->slots);
    XSD_FREE(t->overlay);
    XSD_FREE(t->rm_order);
    XSD_FREE(t->owned);
    XSD_FREE(t->removed);
    XSD_FREE(t->pathbuf);
    XSD_FREE(t);
}

void xsd_txn_set_limit(xsd_txn *t, uint32_t limit)
{
    t->limit = limit;
}

void xsd_txn_doom(xsd_txn *t)
{
    t->doomed = 1;
}

size_t xsd_txn_seen(const xsd_txn *t)
{
    return t->count;
}

int xsd_txn_get(xsd_txn *t, const char *path, size_t len, struct xsd_node_view *out)
{
    struct entry *e;
    struct tnode *n;
    int rc = touch(t, path, len, &e);

    if (rc)
        return rc;
    n = view_of(e);
    if (!n)
        return 0;
    out->value = n->value;
    out->value_len = n->value_len;
    out->perms = n->perms;
    out->perms_len = n->perms_len;
    out->gen = n->gen;
    out->owner = perms_owner(n->perms, n->perms_len);
    return 1;
}

int64_t xsd_txn_children(xsd_txn *t, const char *path, size_t len, char *out, size_t cap)
{
    struct entry *e;
    struct tnode *n;
    int rc = touch(t, path, len, &e);

    if (rc)
        return rc;
    n = view_of(e);
    if (!n)
        return -ENOENT;
    if (n->names_len <= cap && n->names_len)
        memcpy(out, n->names, n->names_len);
    return (int64_t)n->names_len;
}

int xsd_txn_create(xsd_txn *t, const char *path, size_t len, size_t count,
                   const char *value, size_t value_len, const char *perms, size_t perms_len)
{
    size_t top_len = len, i, ends[64], *end = ends;
    struct entry *e, *up;
    struct tnode *upn;
    uint32_t owner = perms_owner(perms, perms_len);
    int rc = 0;

    if (count == 0 || !perms_len || len == 0 || path[0] != '/')
        return -EINVAL;
    if (count > sizeof ends / sizeof *ends) {
        end = XSD_MALLOC(count * sizeof *end);
        if (!end)
            return -ENOMEM;
    }
    /* missing[i] = path[:end[i]]; every one read first (recorded absent). */
    for (i = 0; i < count; i++) {
        if (top_len <= 1) {
            rc = -EINVAL;
            goto out;
        }
        end[i] = top_len;
        rc = touch(t, path, top_len, &e);
        if (rc)
            goto out;
        if (view_of(e)) {
            rc = -EINVAL;
            goto out;
        }
        top_len = parent_len(path, top_len);
    }
    rc = touch(t, path, top_len, &up);
    if (rc)
        goto out;
    if (!view_of(up)) {
        rc = -EINVAL;
        goto out;
    }
    /* From here a failure dooms the transaction. */
    rc = mut(t, up, &upn);
    if (!rc) {
        size_t top = end[count - 1], base = top_len == 1 ? 1 : top_len + 1;

        rc = names_add(upn, path + base, top - base);
    }
    for (i = count; !rc && i-- > 0;) {
        struct tnode *made = tnode_new(i ? NULL : value, i ? 0 : value_len, perms,
                                       perms_len, NULL, 0, 0);

        /* A made ancestor lists the next one down. */
        if (!made || (i && names_add(made, path + end[i] + 1, end[i - 1] - end[i] - 1))) {
            tnode_free(made);
            rc = -ENOMEM;
            break;
        }
        e = find(t, path, end[i], xsd_hash_path(path, end[i]));
        rc = overlay_note(t, e);
        if (rc) {
            tnode_free(made);
            break;
        }
        tnode_free(e->made);
        e->made = made;
        e->ov = OV_MADE;
    }
    if (!rc)
        rc = owned_add(t, owner, (int64_t)count);
    rc = doom(t, rc);
out:
    if (end != ends)
        XSD_FREE(end);
    return rc;
}

/* One step of the removal walk (store.py subtree over the view). */
struct walk {
    struct entry *e;            /* NULL until read */
    const struct entry *up;     /* the parent whose names list this child */
    size_t name_at, name_len;
    int expanded;
};

static int removed_put(xsd_txn *t, const struct entry *e, const struct tnode *n)
{
    size_t need = t->removed_len + e->path_len + 1 + n->perms_len + 1;

    if (buf_room(&t->removed, &t->removed_cap, need))
        return -ENOMEM;
    memcpy(t->removed + t->removed_len, e->path, e->path_len);
    t->removed[t->removed_len + e->path_len] = '\0';
    memcpy(t->removed + t->removed_len + e->path_len + 1, n->perms, n->perms_len);
    t->removed[need - 1] = '\0';
    t->removed_len = need;
    return 0;
}

int64_t xsd_txn_remove(xsd_txn *t, const char *path, size_t len)
{
    struct walk *stack = NULL;
    size_t depth = 0, cap = 0, removed = 0;
    struct entry *root, *up;
    struct tnode *upn;
    int rc;

    if (len <= 1)
        return -EINVAL;
    rc = touch(t, path, len, &root);
    if (rc)
        return rc;
    if (!view_of(root))
        return -ENOENT;
    t->removed_len = 0;
    if (grow((void **)&stack, &cap, 1, sizeof *stack))
        return -ENOMEM;
    stack[depth++] = (struct walk){root, NULL, 0, 0, 0};
    while (depth) {
        struct walk w = stack[--depth];
        struct tnode *n;
        size_t at, k, names;

        if (!w.e) {
            size_t plen;
            const char *p = path_join(t, w.up->path, w.up->path_len,
                                      view_of(w.up)->names + w.name_at, w.name_len, &plen);

            if (!p) {
                rc = -ENOMEM;
                goto out;
            }
            rc = touch(t, p, plen, &w.e);
            if (rc)
                goto out;
        }
        n = view_of(w.e);
        if (!n)                 /* listed, yet absent: the parent was read before the */
            continue;           /* child went outside; the commit conflicts (subtree) */
        if (w.expanded) {
            rc = removed_put(t, w.e, n);
            if (rc)
                goto out;
            removed++;
            continue;
        }
        for (names = 0, at = 0; at < n->names_len; at += strlen(n->names + at) + 1)
            names++;
        if (grow((void **)&stack, &cap, depth + 1 + names, sizeof *stack)) {
            rc = -ENOMEM;
            goto out;
        }
        stack[depth++] = (struct walk){w.e, NULL, 0, 0, 1};
        /* The children pushed last first: the first child is read first. */
        k = depth + names;
        for (at = 0; at < n->names_len; at += strlen(n->names + at) + 1)
            stack[--k] = (struct walk){NULL, w.e, at, strlen(n->names + at), 0};
        depth += names;
    }
    /* The view changes from here: a failure dooms the transaction. */
    rc = touch(t, path, parent_len(path, len), &up);
    if (!rc)
        rc = mut(t, up, &upn);
    if (!rc) {
        size_t base = parent_len(path, len);

        base += base > 1;
        names_drop(upn, path + base, len - base);
    }
    for (size_t at = 0; !rc && at < t->removed_len;) {
        const char *p = t->removed + at;
        size_t plen = strlen(p);
        const char *perms = p + plen + 1;
        size_t perms_len = 0;
        struct entry *e = find(t, p, plen, xsd_hash_path(p, plen));

        while (perms[perms_len])
            perms_len += strlen(perms + perms_len) + 1;
        rc = overlay_note(t, e);
        if (!rc) {
            e->ov = OV_GONE;
            tnode_free(e->made);
            e->made = NULL;
            rc = owned_add(t, perms_owner(perms, perms_len), -1);
        }
        at += plen + 1 + perms_len + 1;
    }
    rc = doom(t, rc);
out:
    XSD_FREE(stack);
    return rc ? rc : (int64_t)removed;
}

int xsd_txn_note_last_remove(xsd_txn *t, const char *root, size_t root_len)
{
    return xsd_txn_note_remove(t, root, root_len, t->removed, t->removed_len);
}

int64_t xsd_txn_removed(const xsd_txn *t, char *out, size_t cap)
{
    if (t->removed_len <= cap && t->removed_len)
        memcpy(out, t->removed, t->removed_len);
    return (int64_t)t->removed_len;
}

int xsd_txn_set_perms(xsd_txn *t, const char *path, size_t len,
                      const char *perms, size_t perms_len)
{
    struct entry *e;
    struct tnode *n;
    char *copy;
    uint32_t was, now = perms_owner(perms, perms_len);
    int rc = touch(t, path, len, &e);

    if (rc)
        return rc;
    if (!view_of(e))
        return -ENOENT;
    if (!perms_len)
        return -EINVAL;
    if (dup_bytes(perms, perms_len, &copy))
        return -ENOMEM;
    rc = mut(t, e, &n);
    if (rc) {
        XSD_FREE(copy);
        return doom(t, rc);
    }
    was = perms_owner(n->perms, n->perms_len);
    if (now != was) {
        rc = owned_add(t, was, -1);
        if (!rc)
            rc = owned_add(t, now, 1);
        if (rc) {
            XSD_FREE(copy);
            return doom(t, rc);
        }
    }
    XSD_FREE(n->perms);
    n->perms = copy;
    n->perms_len = perms_len;
    return 0;
}

int xsd_txn_set_value(xsd_txn *t, const char *path, size_t len,
                      const char *value, size_t value_len)
{
    struct entry *e;
    struct tnode *n;
    char *copy;
    int rc = touch(t, path, len, &e);

    if (rc)
        return rc;
    if (!view_of(e))
        return -ENOENT;
    if (dup_bytes(value, value_len, &copy))
        return -ENOMEM;
    rc = mut(t, e, &n);
    if (rc) {
        XSD_FREE(copy);
        return doom(t, rc);
    }
    XSD_FREE(n->value);
    n->value = copy;
    n->value_len = value_len;
    return 0;
}

int64_t xsd_txn_owned_delta(const xsd_txn *t, uint32_t domid)
{
    for (size_t i = 0; i < t->owned_count; i++)
        if (t->owned[i].domid == domid)
            return t->owned[i].delta;
    return 0;
}

/* -- pending events (PendingEvents) ---------------------------------------- */

static void ev_pop(struct entry *e)
{
    e->ev_in = 0;
    e->ev_removed = 0;
    XSD_FREE(e->ev_perms);
    XSD_FREE(e->ev_old);
    e->ev_perms = e->ev_old = NULL;
    e->ev_perms_len = e->ev_old_len = 0;
}

int xsd_txn_note_change(xsd_txn *t, const char *path, size_t len, const char *perms,
                        size_t perms_len, const char *old, size_t old_len)
{
    struct entry *e = find(t, path, len, xsd_hash_path(path, len));
    char *pcopy, *ocopy = NULL;

    if (!e || !perms_len)
        return -EINVAL;
    if (dup_bytes(perms, perms_len, &pcopy))
        return doom(t, -ENOMEM);
    if (old && !(e->ev_in && e->ev_old) && dup_bytes(old, old_len, &ocopy)) {
        XSD_FREE(pcopy);
        return doom(t, -ENOMEM);
    }
    XSD_FREE(e->ev_perms);
    e->ev_perms = pcopy;
    e->ev_perms_len = perms_len;
    if (!e->ev_in) {
        e->ev_in = 1;
        e->ev_removed = 0;
    }
    if (!e->ev_old && ocopy) {
        e->ev_old = ocopy;
        e->ev_old_len = old_len;
    }
    return 0;
}

int xsd_txn_note_remove(xsd_txn *t, const char *root, size_t root_len,
                        const char *records, size_t records_len)
{
    struct entry *r = find(t, root, root_len, xsd_hash_path(root, root_len));
    int had = r && r->ev_in;        /* PendingEvents.extend's entry, read first */
    size_t at = 0, perms_len;

    if (!r)
        return -EINVAL;
    while (at < records_len) {
        const char *p = records + at, *perms, *nul = memchr(p, '\0', records_len - at);
        size_t plen, end;
        struct entry *e;

        if (!nul)
            return doom(t, -EINVAL);
        plen = (size_t)(nul - p);
        end = at + plen + 1;
        perms = records + end;
        while (end < records_len && records[end]) {
            const char *stop = memchr(records + end, '\0', records_len - end);

            if (!stop)
                return doom(t, -EINVAL);
            end = (size_t)(stop - records) + 1;
        }
        if (end >= records_len)
            return doom(t, -EINVAL);
        perms_len = (size_t)(records + end - perms);
        at = end + 1;
        e = find(t, p, plen, xsd_hash_path(p, plen));
        if (!e)
            return doom(t, -EINVAL);
        if (!e->seen_present) {
            if (e != r)
                ev_pop(e);
            continue;
        }
        if (e->has_rm_perms)
            continue;
        if (grow((void **)&t->rm_order, &t->rm_cap, t->rm_count + 1, sizeof *t->rm_order)
            || dup_bytes(perms, perms_len, &e->rm_perms))
            return doom(t, -ENOMEM);
        e->rm_perms_len = perms_len;
        e->has_rm_perms = 1;
        t->rm_order[t->rm_count++] = e;
    }
    if (!r->seen_present) {
        ev_pop(r);
    } else if (!had) {
        ev_pop(r);
        r->ev_in = 1;
        r->ev_removed = 1;
    } else {
        r->ev_removed = 1;
        XSD_FREE(r->ev_perms);
        r->ev_perms = NULL;
        r->ev_perms_len = 0;
    }
    return 0;
}

/* -- commit -------------------------------------------------------------- */

static int put(xsd_txn *t, const struct entry *e, const struct tnode *n)
{
    int64_t rc = xsd_store_put(t->store, e->path, e->path_len, n->value, n->value_len,
                               n->perms, n->perms_len);

    return rc < 0 ? (int)rc : 0;
}

/* Transaction._create_in_order. */
static int create_in_order(xsd_txn *t, size_t created)
{
    struct entry **parents = XSD_MALLOC(created * sizeof *parents);
    struct entry **stack = XSD_MALLOC((2 * created + 1) * sizeof *stack);
    size_t n_parents = 0, depth = 0, made = 0, i;
    int rc = 0;

    if (!parents || !stack) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < t->ov_count; i++) {
        struct entry *e = t->overlay[i], *up;
        size_t ulen;

        if (!e->created)
            continue;
        ulen = parent_len(e->path, e->path_len);
        up = find(t, e->path, ulen, xsd_hash_path(e->path, ulen));
        if (!up) {
            rc = -EIO;
            goto out;
        }
        if (!up->per_parent++)
            parents[n_parents++] = up;
    }
    for (i = 0; i < n_parents; i++)
        if (!parents[i]->created)
            stack[depth++] = parents[i];
    while (depth) {
        struct entry *up = stack[--depth];
        const struct tnode *un = view_of(up);
        size_t want = up->per_parent, at, start, k;

        if (!un) {
            rc = -EIO;
            goto out;
        }
        /* The last `want` names, in order. */
        start = un->names_len;
        for (k = 0; k < want && start > 0; k++) {
            start--;                            /* the NUL ending the one before */
            while (start > 0 && un->names[start - 1] != '\0')
                start--;
        }
        for (at = start; at < un->names_len;) {
            size_t nlen = strlen(un->names + at), plen;
            const char *p = path_join(t, up->path, up->path_len, un->names + at, nlen, &plen);
            struct entry *e;

            if (!p) {
                rc = -ENOMEM;
                goto out;
            }
            e = find(t, p, plen, xsd_hash_path(p, plen));
            if (!e || e->ov != OV_MADE) {
                rc = -EIO;
                goto out;
            }
            rc = put(t, e, e->made);
            if (rc)
                goto out;
            made++;
            if (e->per_parent) {
                if (depth >= 2 * created + 1) {
                    rc = -EIO;
                    goto out;
                }
                stack[depth++] = e;
            }
            at += nlen + 1;
        }
    }
    if (made != created)
        rc = -EIO;
out:
    XSD_FREE(parents);
    XSD_FREE(stack);
    return rc;
}

int xsd_txn_conflicts(const xsd_txn *t)
{
    struct xsd_node_view v;
    int rc;

    if (t->doomed)
        return -EAGAIN;
    for (size_t i = 0; i < t->count; i++) {
        const struct entry *e = t->entries[i];

        rc = xsd_store_get(t->store, e->path, e->path_len, &v);
        if (rc && rc != -ENOENT)
            return rc;
        if ((rc == 0) != e->seen_present || (e->seen_present && v.gen != e->seen_gen))
            return -EAGAIN;
    }
    return 0;
}

int xsd_txn_commit(xsd_txn *t)
{
    size_t i, created = 0;
    struct xsd_node_view v;
    int rc = xsd_txn_conflicts(t);

    if (rc)
        return rc;
    for (i = 0; i < t->ov_count; i++) {
        struct entry *e = t->overlay[i];

        if (e->ov == OV_SNAP) {
            rc = put(t, e, e->snap);
            if (rc)
                return rc;
            continue;
        }
        if (e->seen_present && xsd_store_get(t->store, e->path, e->path_len, &v) == 0) {
            int64_t n = xsd_store_rm(t->store, e->path, e->path_len);

            if (n < 0)
                return (int)n;
        }
        if (e->ov == OV_MADE) {
            e->created = 1;
            created++;
        }
    }
    return created ? create_in_order(t, created) : 0;
}

/* Bytes into out while they fit; n counts them all (the n > cap rule). */
struct sink {
    char *out;
    size_t cap, n;
};

static void emit(struct sink *s, const void *p, size_t len)
{
    if (len && s->n + len <= s->cap)
        memcpy(s->out + s->n, p, len);
    s->n += len;
}

static void emit_byte(struct sink *s, char c)
{
    emit(s, &c, 1);
}

int xsd_txn_removed_perms(const xsd_txn *t, const char *path, size_t len,
                          const char **perms, size_t *perms_len)
{
    const struct entry *e = find(t, path, len, xsd_hash_path(path, len));

    if (!e || !e->has_rm_perms)
        return 0;
    *perms = e->rm_perms;
    *perms_len = e->rm_perms_len;
    return 1;
}

static void emit_le32(struct sink *s, size_t v)
{
    char b[4] = {(char)(v & 0xff), (char)((v >> 8) & 0xff), (char)((v >> 16) & 0xff),
                 (char)((v >> 24) & 0xff)};

    emit(s, b, 4);
}

int64_t xsd_txn_removed_below(const xsd_txn *t, const char *root, size_t len,
                              char *out, size_t cap)
{
    struct sink s = {out, cap, 0};
    struct xsd_node_view now;
    int again = xsd_store_get(t->store, root, len, &now) == 0;

    for (size_t i = 0; i < t->rm_count; i++) {
        const struct entry *e = t->rm_order[i], *up;
        size_t ulen;

        /* Strictly below root: no other entry can be a watched node below it. */
        if (e->path_len <= len + 1 || memcmp(e->path, root, len) != 0 || e->path[len] != '/')
            continue;
        if (e->path_len > UINT32_MAX || e->rm_perms_len > UINT32_MAX)
            return -EINVAL;
        emit_le32(&s, e->path_len);
        emit(&s, e->path, e->path_len);
        emit_le32(&s, e->rm_perms_len);
        emit(&s, e->rm_perms, e->rm_perms_len);
        ulen = parent_len(e->path, e->path_len);
        if (again && ulen == len) {             /* ChainMap({root: now}, removed_perms) */
            if (now.perms_len > UINT32_MAX)
                return -EINVAL;
            emit_le32(&s, now.perms_len);
            emit(&s, now.perms, now.perms_len);
            continue;
        }
        up = find(t, e->path, ulen, xsd_hash_path(e->path, ulen));
        if (up && up->has_rm_perms) {
            emit_le32(&s, up->rm_perms_len);
            emit(&s, up->rm_perms, up->rm_perms_len);
        } else {
            emit_le32(&s, UINT32_MAX);          /* removed.get(parent) is None */
        }
    }
    return (int64_t)s.n;
}

int64_t xsd_txn_events(const xsd_txn *t, char *out, size_t cap)
{
    struct sink s = {out, cap, 0};
    struct xsd_node_view v;

    for (size_t i = 0; i < t->count; i++) {
        const struct entry *e = t->entries[i];

        if (!e->ev_in)
            continue;
        emit_byte(&s, e->ev_removed ? XSD_TXN_REMOVE : XSD_TXN_CHANGE);
        emit(&s, e->path, e->path_len);
        emit_byte(&s, '\0');
        if (!e->ev_removed) {
            emit(&s, e->ev_perms, e->ev_perms_len);
            emit_byte(&s, '\0');
            emit(&s, e->ev_old, e->ev_old_len);
        } else if (xsd_store_get(t->store, e->path, e->path_len, &v) == 0) {
            emit(&s, v.perms, v.perms_len);
        }
        emit_byte(&s, '\0');
    }
    for (size_t i = 0; i < t->rm_count; i++) {
        const struct entry *e = t->rm_order[i];

        emit_byte(&s, XSD_TXN_REMOVED_PERMS);
        emit(&s, e->path, e->path_len);
        emit_byte(&s, '\0');
        emit(&s, e->rm_perms, e->rm_perms_len);
        emit_byte(&s, '\0');
    }
    return (int64_t)s.n;
}
