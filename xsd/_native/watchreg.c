/*
 * watchreg.c: the watch registry described in watchreg.h.
 *
 * Invariants (checked by tests/native/c/test_watchreg.c through the API):
 *   - every record is in its session's table exactly once and in the trie
 *     under its cut path with its address as the id;
 *   - a session's count and text bytes are those of the records in its
 *     table; r->watches is their sum over the sessions in use;
 *   - a table's cap is 0 or a power of two, and count * 4 <= cap * 3.
 *
 * Failure: xsd_wreg_add allocates the record, then room in the table, then
 * the trie entry; a failure at any step undoes the steps before it (a grown
 * table stays grown). The fire calls allocate only scratch space kept on r
 * for the next call; on -ENOMEM nothing was delivered and nothing changed.
 */
#include "watchreg.h"
#include "alloc.h"
#include "hash.h"
#include "perms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One watch. Its key "path NUL token" is what the session's table is keyed
 * by; the trie has the path. 16 bytes before the key. */
struct wrec {
    uint64_t order;     /* seq << 2 | deep << 1 | relative */
    uint32_t session;
    uint16_t plen, tlen;
    char key[];         /* plen + 1 + tlen bytes */
};

#define ORDER_RELATIVE 1u
#define ORDER_DEEP     2u

struct wsess {
    struct wrec **tab;  /* cap slots (NULL: free), open addressing by key */
    uint32_t cap, count;
    size_t text;        /* sum of plen + tlen */
    int64_t target;     /* -1: none */
    uint32_t domid;
    uint32_t next_free; /* while not used: the next free handle */
    uint8_t privileged, used;
};

#define NO_HANDLE UINT32_MAX

struct xsd_wreg {
    xsd_trie *trie;             /* borrowed: path -> record addresses */
    const xsd_store *store;     /* borrowed, may be NULL */
    struct wsess *sess;         /* nsess handles ever made, scap slots */
    uint32_t nsess, scap, free_head, in_use;
    uint64_t seq, seed;
    size_t watches;
    uint64_t *ids;              /* scratch: trie matches */
    size_t idcap;
    struct wrec **hits;         /* scratch: 2 * hitcap records */
    size_t hitcap;
    size_t bytes, blocks;
};

/* ---- accounting allocator ------------------------------------------------ */

static void *r_malloc(xsd_wreg *r, size_t size)
{
    void *p = XSD_MALLOC(size);

    if (p != NULL) {
        r->bytes += size;
        r->blocks++;
    }
    return p;
}

static void *r_calloc(xsd_wreg *r, size_t nmemb, size_t size)
{
    void *p = XSD_CALLOC(nmemb, size);

    if (p != NULL) {
        r->bytes += nmemb * size; /* calloc refused an overflowing product */
        r->blocks++;
    }
    return p;
}

static void r_free(xsd_wreg *r, void *p, size_t size)
{
    if (p != NULL) {
        XSD_FREE(p);
        r->bytes -= size;
        r->blocks--;
    }
}

static size_t rec_size(const struct wrec *w)
{
    return sizeof *w + (size_t)w->plen + 1 + w->tlen;
}

static size_t key_len(const struct wrec *w)
{
    return (size_t)w->plen + 1 + w->tlen;
}

static uint64_t rec_id(const struct wrec *w)
{
    return (uint64_t)(uintptr_t)w;
}

static struct wrec *id_rec(uint64_t id)
{
    return (struct wrec *)(uintptr_t)id;
}

/* ---- paths (xenstore_protocol/paths.py) ---------------------------------- */

/* Bytes of path filed in the trie: up to its XSD_WREG_TRIE_DEPTH-th
 * component (watches.py _trie_key: cut before the next '/'). */
static size_t trie_cut(const char *path, size_t len)
{
    size_t i, slashes = 0;

    for (i = 0; i < len; i++)
        if (path[i] == '/' && ++slashes > XSD_WREG_TRIE_DEPTH)
            return i;
    return len;
}

/* paths.is_child: child is parent or lies below it, by component. */
static int is_child(const char *child, size_t clen, const char *par,
                    size_t plen)
{
    if (plen == 1 && par[0] == '/')
        return clen >= 1 && child[0] == '/';
    if (clen < plen || memcmp(child, par, plen) != 0)
        return 0;
    return clen == plen || child[plen] == '/';
}

/* paths.parent's length for a path other than "/": up to its last '/'. */
static size_t parent_len(const char *path, size_t len)
{
    size_t i = len;

    while (i > 0 && path[i - 1] != '/')
        i--;
    return i > 1 ? i - 1 : 1;
}

/* ---- permissions (permissions.access) ------------------------------------ */

/* permissions.can_read: privileged, or READ under perms (NULL: none). */
static int can_read(const struct wsess *s, const char *perms, size_t len)
{
    return (xsd_perms_access(s->domid, s->target, s->privileged, perms, len) &
            XSD_ACCESS_READ) != 0;
}

/* ---- sessions' tables ------------------------------------------------------ */

static uint64_t key_hash(const xsd_wreg *r, const char *key, size_t klen)
{
    return xsd_fmix64(xsd_fnv1a(r->seed, key, klen) ^ (uint64_t)klen);
}

static struct wsess *session_of(const xsd_wreg *r, uint32_t s)
{
    return s < r->nsess && r->sess[s].used ? &r->sess[s] : NULL;
}

/* The slot holding the record keyed key, or the free slot ending its probe
 * run. The table must have a free slot. */
static uint32_t tab_slot(const xsd_wreg *r, const struct wsess *ss,
                         const char *key, size_t klen)
{
    uint32_t mask = ss->cap - 1, i = (uint32_t)key_hash(r, key, klen) & mask;
    const struct wrec *w;

    for (;; i = (i + 1) & mask) {
        w = ss->tab[i];
        if (w == NULL ||
            (key_len(w) == klen && memcmp(w->key, key, klen) == 0))
            return i;
    }
}

static struct wrec *tab_find(const xsd_wreg *r, const struct wsess *ss,
                             const char *key, size_t klen)
{
    return ss->cap == 0 ? NULL : ss->tab[tab_slot(r, ss, key, klen)];
}

/* Room for one more record; -ENOMEM with the table unchanged. */
static int tab_reserve(xsd_wreg *r, struct wsess *ss)
{
    uint32_t ncap, i, j, mask;
    struct wrec **nt, *w;

    if (((size_t)ss->count + 1) * 4 <= (size_t)ss->cap * 3)
        return 0;
    if (ss->cap > (UINT32_MAX >> 1))
        return -ENOMEM;
    ncap = ss->cap == 0 ? 4 : ss->cap * 2;
    nt = r_calloc(r, ncap, sizeof *nt);
    if (nt == NULL)
        return -ENOMEM;
    mask = ncap - 1;
    for (i = 0; i < ss->cap; i++) {
        w = ss->tab[i];
        if (w == NULL)
            continue;
        j = (uint32_t)key_hash(r, w->key, key_len(w)) & mask;
        while (nt[j] != NULL)
            j = (j + 1) & mask;
        nt[j] = w;
    }
    r_free(r, ss->tab, (size_t)ss->cap * sizeof *ss->tab);
    ss->tab = nt;
    ss->cap = ncap;
    return 0;
}

/* Take the record at slot hole out by backward-shift deletion (no
 * tombstones): each later record of the run moves into the hole unless its
 * home slot lies cyclically in (hole, its slot]. */
static void tab_delete(const xsd_wreg *r, struct wsess *ss, uint32_t hole)
{
    uint32_t mask = ss->cap - 1, j = hole, home;
    struct wrec *x;
    int stays;

    ss->tab[hole] = NULL;
    for (;;) {
        j = (j + 1) & mask;
        x = ss->tab[j];
        if (x == NULL)
            break;
        home = (uint32_t)key_hash(r, x->key, key_len(x)) & mask;
        if (hole <= j)
            stays = hole < home && home <= j;
        else
            stays = hole < home || home <= j;
        if (stays)
            continue;
        ss->tab[hole] = x;
        ss->tab[j] = NULL;
        hole = j;
    }
}

/* Out of the trie and freed; the caller has taken it out of its table. */
static void rec_drop(xsd_wreg *r, struct wsess *ss, struct wrec *w)
{
    (void)xsd_trie_remove(r->trie, w->key, trie_cut(w->key, w->plen),
                          rec_id(w)); /* never fails: it is there */
    ss->count--;
    ss->text -= (size_t)w->plen + w->tlen;
    r->watches--;
    r_free(r, w, rec_size(w));
}

/* ---- registry ---------------------------------------------------------------- */

xsd_wreg *xsd_wreg_new(xsd_trie *trie, const xsd_store *store)
{
    xsd_wreg *r;

    if (trie == NULL)
        return NULL;
    r = XSD_MALLOC(sizeof *r);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof *r);
    r->trie = trie;
    r->store = store;
    r->free_head = NO_HANDLE;
    r->bytes = sizeof *r;
    r->blocks = 1;
    /* Seeded from the address, as trie.c: ASLR varies it between runs. */
    r->seed = XSD_FNV_OFFSET ^ ((uint64_t)(uintptr_t)r * 0x9e3779b97f4a7c15ULL);
    return r;
}

static void session_empty(xsd_wreg *r, struct wsess *ss)
{
    uint32_t i;

    for (i = 0; i < ss->cap; i++)
        if (ss->tab[i] != NULL)
            rec_drop(r, ss, ss->tab[i]);
    r_free(r, ss->tab, (size_t)ss->cap * sizeof *ss->tab);
    ss->tab = NULL;
    ss->cap = 0;
}

void xsd_wreg_free(xsd_wreg *r)
{
    uint32_t i, j;
    struct wsess *ss;

    if (r == NULL)
        return;
    for (i = 0; i < r->nsess; i++) {
        ss = &r->sess[i];
        for (j = 0; j < ss->cap; j++)
            if (ss->tab[j] != NULL)
                XSD_FREE(ss->tab[j]); /* the trie may be gone already */
        XSD_FREE(ss->tab);
    }
    XSD_FREE(r->sess);
    XSD_FREE(r->ids);
    XSD_FREE(r->hits);
    XSD_FREE(r);
}

int64_t xsd_wreg_session_new(xsd_wreg *r)
{
    struct wsess *ns, *ss;
    uint32_t s, ncap;

    if (r->free_head != NO_HANDLE) {
        s = r->free_head;
        r->free_head = r->sess[s].next_free;
    } else {
        if (r->nsess == r->scap) {
            if (r->scap >= (UINT32_MAX >> 2))
                return -ENOMEM;
            ncap = r->scap == 0 ? 8 : r->scap * 2;
            ns = r_calloc(r, ncap, sizeof *ns);
            if (ns == NULL)
                return -ENOMEM;
            if (r->nsess != 0)
                memcpy(ns, r->sess, r->nsess * sizeof *ns);
            r_free(r, r->sess, r->scap * sizeof *r->sess);
            r->sess = ns;
            r->scap = ncap;
        }
        s = r->nsess++;
    }
    ss = &r->sess[s];
    memset(ss, 0, sizeof *ss);
    ss->target = -1;
    ss->used = 1;
    r->in_use++;
    return s;
}

int xsd_wreg_session_set(xsd_wreg *r, uint32_t s, uint32_t domid,
                         int64_t target, int privileged)
{
    struct wsess *ss = session_of(r, s);

    if (ss == NULL)
        return -EINVAL;
    ss->domid = domid;
    ss->target = target < 0 ? -1 : target;
    ss->privileged = privileged != 0;
    return 0;
}

int xsd_wreg_session_clear(xsd_wreg *r, uint32_t s)
{
    struct wsess *ss = session_of(r, s);

    if (ss == NULL)
        return -EINVAL;
    session_empty(r, ss);
    return 0;
}

int xsd_wreg_session_free(xsd_wreg *r, uint32_t s)
{
    struct wsess *ss = session_of(r, s);

    if (ss == NULL)
        return -EINVAL;
    session_empty(r, ss);
    ss->used = 0;
    ss->next_free = r->free_head;
    r->free_head = s;
    r->in_use--;
    return 0;
}

size_t xsd_wreg_session_count(const xsd_wreg *r, uint32_t s)
{
    const struct wsess *ss = session_of(r, s);

    return ss != NULL ? ss->count : 0;
}

size_t xsd_wreg_session_text_bytes(const xsd_wreg *r, uint32_t s)
{
    const struct wsess *ss = session_of(r, s);

    return ss != NULL ? ss->text : 0;
}

int xsd_wreg_add(xsd_wreg *r, uint32_t s, const char *path, size_t plen,
                 const char *token, size_t tlen, int relative,
                 uint64_t *order)
{
    struct wsess *ss = session_of(r, s);
    struct wrec *w;
    size_t cut;
    int rc;

    if (ss == NULL || path == NULL || plen == 0 || (token == NULL && tlen))
        return -EINVAL;
    if (plen > UINT16_MAX || tlen > UINT16_MAX)
        return -E2BIG;
    w = r_malloc(r, sizeof *w + plen + 1 + tlen);
    if (w == NULL)
        return -ENOMEM;
    w->session = s;
    w->plen = (uint16_t)plen;
    w->tlen = (uint16_t)tlen;
    memcpy(w->key, path, plen);
    w->key[plen] = '\0';
    if (tlen != 0)
        memcpy(w->key + plen + 1, token, tlen);
    if (tab_find(r, ss, w->key, key_len(w)) != NULL) {
        r_free(r, w, rec_size(w));
        return -EEXIST;
    }
    cut = trie_cut(path, plen);
    w->order = (r->seq + 1) << 2 | (cut < plen ? ORDER_DEEP : 0) |
               (relative ? ORDER_RELATIVE : 0);
    rc = tab_reserve(r, ss);
    if (rc == 0)
        rc = xsd_trie_add(r->trie, path, cut, rec_id(w));
    if (rc != 0) {
        r_free(r, w, rec_size(w));
        return rc == -ENAMETOOLONG ? -EINVAL : rc;
    }
    ss->tab[tab_slot(r, ss, w->key, key_len(w))] = w;
    ss->count++;
    ss->text += plen + tlen;
    r->watches++;
    r->seq++;
    if (order != NULL)
        *order = w->order;
    return 0;
}

int xsd_wreg_remove(xsd_wreg *r, uint32_t s, const char *key, size_t klen)
{
    struct wsess *ss = session_of(r, s);
    uint32_t slot;
    struct wrec *w;

    if (ss == NULL || key == NULL)
        return -EINVAL;
    if (ss->cap == 0)
        return -ENOENT;
    slot = tab_slot(r, ss, key, klen);
    w = ss->tab[slot];
    if (w == NULL)
        return -ENOENT;
    tab_delete(r, ss, slot);
    rec_drop(r, ss, w);
    return 0;
}

int xsd_wreg_find(const xsd_wreg *r, uint32_t s, const char *key,
                  size_t klen, uint64_t *order)
{
    const struct wsess *ss = session_of(r, s);
    const struct wrec *w;

    if (ss == NULL || key == NULL)
        return 0;
    w = tab_find(r, ss, key, klen);
    if (w == NULL)
        return 0;
    if (order != NULL)
        *order = w->order;
    return 1;
}

/* ---- output ---------------------------------------------------------------- */

struct outw {
    char *out;
    size_t cap, n;
};

static void put(struct outw *o, const void *p, size_t len)
{
    if (len != 0 && o->n + len <= o->cap)
        memcpy(o->out + o->n, p, len);
    o->n += len;
}

static void put_u16(struct outw *o, size_t v)
{
    unsigned char b[2] = {(unsigned char)(v & 0xff), (unsigned char)(v >> 8 & 0xff)};

    put(o, b, 2);
}

static void put_u32(struct outw *o, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v & 0xff), (unsigned char)(v >> 8 & 0xff),
                          (unsigned char)(v >> 16 & 0xff), (unsigned char)(v >> 24)};

    put(o, b, 4);
}

static void put_u64(struct outw *o, uint64_t v)
{
    put_u32(o, (uint32_t)(v & 0xffffffffu));
    put_u32(o, (uint32_t)(v >> 32));
}

int64_t xsd_wreg_session_watches(const xsd_wreg *r, uint32_t s, char *out,
                                 size_t cap)
{
    const struct wsess *ss = session_of(r, s);
    struct outw o = {out, cap, 0};
    const struct wrec *w;
    uint32_t i;

    if (ss == NULL)
        return -EINVAL;
    for (i = 0; i < ss->cap; i++) {
        w = ss->tab[i];
        if (w == NULL)
            continue;
        put_u64(&o, w->order);
        put_u16(&o, w->plen);
        put_u16(&o, w->tlen);
        put(&o, w->key, key_len(w));
    }
    return (int64_t)o.n;
}

#define EV_SPECIAL   1u /* never made relative */
#define EV_CALL_PATH 2u /* ev is the path the call was given */

/* One delivery of w's watch: event path ev, relative_to the session's home
 * for a relative watch unless special. The call's own path, unchanged, is
 * written as XSD_WREG_SAME_PATH without its bytes: the caller has it. */
static void put_delivery(struct outw *o, const struct wsess *ss,
                         const struct wrec *w, const char *ev, size_t evlen,
                         unsigned how)
{
    char home[32];
    int hlen;

    if ((w->order & ORDER_RELATIVE) && !(how & EV_SPECIAL)) {
        /* paths.relative_to: strip "/local/domain/<domid>/" */
        hlen = snprintf(home, sizeof home, "/local/domain/%u/", (unsigned)ss->domid);
        if (hlen > 0 && (size_t)hlen <= evlen && memcmp(ev, home, (size_t)hlen) == 0) {
            ev += hlen;
            evlen -= (size_t)hlen;
            how &= ~EV_CALL_PATH;
        }
    }
    put_u32(o, w->session);
    put_u16(o, (how & EV_CALL_PATH) ? XSD_WREG_SAME_PATH : evlen);
    put_u16(o, w->plen);
    put_u16(o, w->tlen);
    if (!(how & EV_CALL_PATH))
        put(o, ev, evlen);
    put(o, w->key, key_len(w));
}

/* ---- matching ----------------------------------------------------------------- */

static int cmp_order(const void *a, const void *b)
{
    const struct wrec *x = *(const struct wrec *const *)a;
    const struct wrec *y = *(const struct wrec *const *)b;

    return x->order < y->order ? -1 : x->order > y->order;
}

/* By path, then order. */
static int cmp_path(const void *a, const void *b)
{
    const struct wrec *x = *(const struct wrec *const *)a;
    const struct wrec *y = *(const struct wrec *const *)b;
    size_t n = x->plen < y->plen ? x->plen : y->plen;
    int c = memcmp(x->key, y->key, n);

    if (c != 0)
        return c;
    if (x->plen != y->plen)
        return x->plen < y->plen ? -1 : 1;
    return cmp_order(a, b);
}

/* The records the trie gives for key under flags, in r->hits[0..*n), deep
 * ones checked against their full paths as watches.py _match does, sorted
 * by order. r->hits has room for 2 * *n. */
static int match(xsd_wreg *r, const char *key, size_t len, unsigned flags,
                 int filter_deep, size_t *nhits)
{
    int64_t n;
    size_t i, k, cap;
    uint64_t *ids;
    struct wrec **hits, *w;

    for (;;) {
        n = xsd_trie_match(r->trie, key, len, flags, r->ids, r->idcap);
        if (n < 0)
            return (int)n;
        if ((size_t)n <= r->idcap)
            break;
        cap = (size_t)n > 2 * r->idcap ? (size_t)n : 2 * r->idcap;
        if (cap > SIZE_MAX / sizeof *ids)
            return -ENOMEM;
        ids = r_malloc(r, cap * sizeof *ids);
        if (ids == NULL)
            return -ENOMEM;
        r_free(r, r->ids, r->idcap * sizeof *r->ids);
        r->ids = ids;
        r->idcap = cap;
    }
    if ((size_t)n > r->hitcap) {
        cap = (size_t)n > 2 * r->hitcap ? (size_t)n : 2 * r->hitcap;
        if (cap > SIZE_MAX / (2 * sizeof *hits))
            return -ENOMEM;
        hits = r_malloc(r, 2 * cap * sizeof *hits);
        if (hits == NULL)
            return -ENOMEM;
        r_free(r, r->hits, 2 * r->hitcap * sizeof *r->hits);
        r->hits = hits;
        r->hitcap = cap;
    }
    for (i = k = 0; i < (size_t)n; i++) {
        w = id_rec(r->ids[i]);
        if (filter_deep && (w->order & ORDER_DEEP) &&
            !is_child(key, len, w->key, w->plen) &&
            !((flags & XSD_MATCH_DESCENDANTS) && is_child(w->key, w->plen, key, len)))
            continue;
        r->hits[k++] = w;
    }
    if (k > 1)
        qsort(r->hits, k, sizeof *r->hits, cmp_order);
    *nhits = k;
    return 0;
}

/* The perms of path's parent in the store (none for "/" or a missing one). */
static void parent_perms(const xsd_wreg *r, const char *path, size_t len,
                         const char **perms, size_t *plen)
{
    struct xsd_node_view v;

    *perms = NULL;
    *plen = 0;
    if (r->store == NULL || len == 0 || path[0] != '/' || len == 1)
        return;
    if (xsd_store_get(r->store, path, parent_len(path, len), &v) == 0) {
        *perms = v.perms;
        *plen = v.perms_len;
    }
}

static int64_t finish(const struct outw *o)
{
    return o->n > INT64_MAX ? -ENOMEM : (int64_t)o->n;
}

int64_t xsd_wreg_initial(const xsd_wreg *r, uint32_t s, const char *key,
                         size_t klen, char *out, size_t cap)
{
    const struct wsess *ss = session_of(r, s);
    struct outw o = {out, cap, 0};
    const struct wrec *w;

    if (ss == NULL || key == NULL)
        return -EINVAL;
    w = tab_find(r, ss, key, klen);
    if (w == NULL)
        return -ENOENT;
    put_delivery(&o, ss, w, w->key, w->plen,
                 EV_CALL_PATH | (w->key[0] == '@' ? EV_SPECIAL : 0u));
    return finish(&o);
}

int64_t xsd_wreg_fire_change(xsd_wreg *r, const char *path, size_t len,
                             const char *perms, size_t perms_len,
                             const char *old_perms, size_t old_len,
                             char *out, size_t cap)
{
    struct outw o = {out, cap, 0};
    const char *pp = NULL;
    size_t n, i, pplen = 0;
    int rc, parent_known = 0;
    const struct wsess *ss;
    struct wrec *w;

    if (path == NULL || len >= XSD_WREG_SAME_PATH)
        return -EINVAL;
    rc = match(r, path, len, XSD_MATCH_ANCESTORS, 1, &n);
    if (rc != 0)
        return rc;
    for (i = 0; i < n; i++) {
        w = r->hits[i];
        ss = &r->sess[w->session];
        if (!ss->privileged) {
            if (!parent_known) { /* looked up at most once, and only if needed */
                parent_perms(r, path, len, &pp, &pplen);
                parent_known = 1;
            }
            if (!can_read(ss, perms, perms_len) && !can_read(ss, pp, pplen) &&
                !(old_perms != NULL && can_read(ss, old_perms, old_len)))
                continue;
        }
        put_delivery(&o, ss, w, path, len, EV_CALL_PATH);
    }
    return finish(&o);
}

int64_t xsd_wreg_fire_special(xsd_wreg *r, const char *name, size_t len,
                              const char *perms, size_t perms_len, char *out,
                              size_t cap)
{
    struct outw o = {out, cap, 0};
    size_t n, i;
    int rc;
    const struct wsess *ss;
    struct wrec *w;

    if (name == NULL || len >= XSD_WREG_SAME_PATH)
        return -EINVAL;
    rc = match(r, name, len, XSD_MATCH_ANCESTORS, 0, &n);
    if (rc != 0)
        return rc;
    for (i = 0; i < n; i++) {
        w = r->hits[i];
        ss = &r->sess[w->session];
        if (ss->privileged || (perms != NULL && can_read(ss, perms, perms_len)))
            put_delivery(&o, ss, w, name, len, EV_SPECIAL | EV_CALL_PATH);
    }
    return finish(&o);
}

/* A u32 length and that many bytes from *p (none: 0xffffffff, *field NULL);
 * 0, or -EINVAL when the buffer ends first. */
static int take_field(const char **p, const char *end, int may_be_none,
                      const char **field, size_t *flen)
{
    const unsigned char *q = (const unsigned char *)*p;
    uint32_t v;

    if (end - *p < 4)
        return -EINVAL;
    v = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
        (uint32_t)q[3] << 24;
    *p += 4;
    if (v == UINT32_MAX && may_be_none) {
        *field = NULL;
        *flen = 0;
        return 0;
    }
    if ((size_t)(end - *p) < v)
        return -EINVAL;
    *field = *p;
    *flen = v;
    *p += v;
    return 0;
}

int64_t xsd_wreg_fire_remove(xsd_wreg *r, const char *root, size_t len,
                             const char *root_perms, size_t root_perms_len,
                             const char *below, size_t below_len, int *asks,
                             char *out, size_t cap)
{
    struct outw o = {out, cap, 0};
    struct wrec **above, **under, *w;
    const struct wsess *ss;
    const char *p, *end, *npath, *nperms, *npp, *pp;
    size_t n, i, nabove = 0, nunder = 0, nplen, nperms_len, npplen, pplen;
    size_t lo, hi, mid;
    int rc, c;

    *asks = 0;
    if (root == NULL || len >= XSD_WREG_SAME_PATH)
        return -EINVAL;
    rc = match(r, root, len, XSD_MATCH_ANCESTORS | XSD_MATCH_DESCENDANTS, 1, &n);
    if (rc != 0 || n == 0) /* no watch: nothing to deliver (r->hits may be NULL) */
        return rc;
    /* hits[0..n) in order: those above (root itself included) stay in
     * place, those strictly below go to hits[n..) (room for 2n). */
    above = r->hits;
    under = r->hits + n;
    for (i = 0; i < n; i++) {
        w = r->hits[i];
        if (w->plen != len && is_child(w->key, w->plen, root, len))
            under[nunder++] = w;
        else
            above[nabove++] = w;
    }
    if (nunder > 1)
        qsort(under, nunder, sizeof *under, cmp_path);
    if (nunder != 0 && below == NULL) {
        *asks = 1;
        for (i = 0; i < nunder; i++) /* sorted by path: each path once */
            if (i == 0 || under[i - 1]->plen != under[i]->plen ||
                memcmp(under[i - 1]->key, under[i]->key, under[i]->plen) != 0)
                put(&o, under[i]->key, (size_t)under[i]->plen + 1);
        return finish(&o);
    }
    if (nunder != 0) {
        p = below;
        end = below + below_len;
        while (p < end) {
            if (take_field(&p, end, 0, &npath, &nplen) != 0 ||
                take_field(&p, end, 0, &nperms, &nperms_len) != 0 ||
                take_field(&p, end, 1, &npp, &npplen) != 0)
                return -EINVAL;
            if (nplen >= XSD_WREG_SAME_PATH)
                continue; /* no watch has so long a path */
            /* The first record of path npath (under is sorted by path). */
            lo = 0;
            hi = nunder;
            while (lo < hi) {
                mid = lo + (hi - lo) / 2;
                w = under[mid];
                c = memcmp(w->key, npath, w->plen < nplen ? w->plen : nplen);
                if (c < 0 || (c == 0 && w->plen < nplen))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (i = lo; i < nunder && under[i]->plen == nplen &&
                         memcmp(under[i]->key, npath, nplen) == 0; i++) {
                w = under[i];
                ss = &r->sess[w->session];
                if (ss->privileged || can_read(ss, nperms, nperms_len) ||
                    (npp != NULL && can_read(ss, npp, npplen)))
                    put_delivery(&o, ss, w, npath, nplen, 0);
            }
        }
    }
    parent_perms(r, root, len, &pp, &pplen);
    for (i = 0; i < nabove; i++) {
        w = above[i];
        ss = &r->sess[w->session];
        if (ss->privileged || can_read(ss, root_perms, root_perms_len) ||
            can_read(ss, pp, pplen))
            put_delivery(&o, ss, w, root, len, EV_CALL_PATH);
    }
    return finish(&o);
}

size_t xsd_wreg_count(const xsd_wreg *r)
{
    return r->watches;
}

void xsd_wreg_stats(const xsd_wreg *r, struct xsd_wreg_stats *st)
{
    st->watches = r->watches;
    st->sessions = r->in_use;
    st->bytes = r->bytes;
    st->blocks = r->blocks;
}
