/*
 * journal_enc.c: the journal record of journal_enc.h. Read journal_enc.h
 * first: the format, the order of entries and the contract are there.
 *
 * Inside:
 * - The change log is read through store.h (xsd_store_changes) into a copy
 *   that lives through the call; every path below points into it. The log
 *   is emptied (xsd_store_take_changes into the same copy) only once the
 *   record is whole, so a failure leaves it as it was.
 * - Created paths and their parents go in one open-addressing table of
 *   indices into keys[] (load <= 0.5, no deletion); a parent's entry counts
 *   its created children (journal.py's per_parent Counter), and parents[]
 *   keeps the order in which the log first names each as a parent.
 * - The walk's stack holds key indices: a parent is pushed at most once
 *   (at the start if it was not created, else when its CREATE is emitted),
 *   so it never holds more than the number of parents.
 * - CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320), eight
 *   bytes a step through eight tables built by xsd_journal_new (slicing-by-8;
 *   a byte at a time cost a tenth of a large record's time).
 */
#include "journal_enc.h"

#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "hash.h"

#define ENTRY_CREATE 1
#define ENTRY_UPDATE 2
#define ENTRY_DELETE 3
#define ENTRY_ORDER 4

#define FRAME_SIZE 12           /* "XSDR" | length u32 | crc32 u32 */
#define BATCH_SIZE 16           /* seq u64 | next_gen u64 */
#define NODE_SIZE 17            /* kind u8 | path u16 | value u32 | perms u16 | gen u64 */
#define PATH_SIZE 3             /* kind u8 | path u16 */
#define NAMES_SIZE 7            /* kind u8 | path u16 | names u32 */
#define BUF_MIN 256u
#define SLOTS_SHRINK 16         /* created_index: a table this much too big is replaced */
#define NO_KEY SIZE_MAX

struct buf {
    char *p;
    size_t len, cap;
};

/* A created path, or the parent of one (or both). */
struct key {
    const char *path;           /* into j->log */
    size_t len;
    uint64_t hash;
    size_t children;            /* created children (0: not a parent of any) */
    int created;
    struct xsd_node_view node;  /* a created one's, as the first pass found it */
};

struct xsd_journal {
    struct buf out;             /* the record */
    struct buf log;             /* the change log's records "<kind><path>\0" */
    struct buf list;            /* a children listing */
    struct buf path;            /* a child's path being built */
    struct key *keys;
    size_t nkeys, keys_cap;
    size_t *slots;              /* index into keys + 1; 0 = empty */
    size_t nslots;              /* a power of two, or 0 */
    size_t *order;              /* parents first-named first, then the stack */
    size_t order_cap;
    size_t orders;              /* ORDER entries in the last record */
    uint32_t crc_table[8][256];
};

/* ------------------------------------------------------------ buffers */

/* Room for extra more bytes in b. 0 or -ENOMEM (b unchanged). */
static int buf_reserve(struct buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > SIZE_MAX - b->len)
        return -ENOMEM;
    need = b->len + extra;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : BUF_MIN;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = XSD_REALLOC(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_free(struct buf *b)
{
    XSD_FREE(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Append p[0..n): room must have been reserved. */
static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (n) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

static void buf_u8(struct buf *b, unsigned v)
{
    b->p[b->len++] = (char)(unsigned char)v;
}

static void le_put(char *at, uint64_t v, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        at[i] = (char)(unsigned char)(v >> (8 * i));
}

static void buf_le(struct buf *b, uint64_t v, size_t bytes)
{
    le_put(b->p + b->len, v, bytes);
    b->len += bytes;
}

/* arr (of elements of size elem) grown to hold want >= 1: the block to use
 * from now on (arr itself when it holds enough; *cap updated), or NULL when
 * out of memory (arr unchanged). */
static void *array_reserve(void *arr, size_t *cap, size_t want, size_t elem)
{
    void *p;
    size_t n;

    if (want <= *cap)
        return arr;
    n = *cap ? *cap : 16;
    while (n < want)
        n = n > SIZE_MAX / 4 ? want : n * 2;
    if (n > SIZE_MAX / elem)
        return NULL;
    p = XSD_REALLOC(arr, n * elem);
    if (p)
        *cap = n;
    return p;
}

/* ------------------------------------------------------------ CRC-32 */

/* Bytes p[0..4) as a little-endian number. */
static uint32_t le32(const char *p)
{
    return (uint32_t)(unsigned char)p[0] | (uint32_t)(unsigned char)p[1] << 8 |
           (uint32_t)(unsigned char)p[2] << 16 | (uint32_t)(unsigned char)p[3] << 24;
}

uint32_t xsd_journal_crc32(const xsd_journal *j, uint32_t crc, const char *p, size_t len)
{
    const uint32_t (*t)[256] = j->crc_table;

    crc = ~crc;
    for (; len >= 8; p += 8, len -= 8) {        /* slicing-by-8: eight bytes a step */
        uint32_t lo = crc ^ le32(p), hi = le32(p + 4);
        crc = t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^ t[5][(lo >> 16) & 0xffu] ^
              t[4][lo >> 24] ^ t[3][hi & 0xffu] ^ t[2][(hi >> 8) & 0xffu] ^
              t[1][(hi >> 16) & 0xffu] ^ t[0][hi >> 24];
    }
    for (; len; p++, len--)
        crc = t[0][(crc ^ (unsigned char)*p) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* ------------------------------------------------------------ entries */

static int emit_node(xsd_journal *j, unsigned kind, const char *path, size_t len,
                     const struct xsd_node_view *v)
{
    int rc;

    if (len > UINT16_MAX || v->perms_len > UINT16_MAX || v->value_len > UINT32_MAX)
        return -E2BIG;
    rc = buf_reserve(&j->out, NODE_SIZE + len + v->value_len + v->perms_len);
    if (rc)
        return rc;
    buf_u8(&j->out, kind);
    buf_le(&j->out, len, 2);
    buf_le(&j->out, v->value_len, 4);
    buf_le(&j->out, v->perms_len, 2);
    buf_le(&j->out, v->gen, 8);
    buf_put(&j->out, path, len);
    buf_put(&j->out, v->value, v->value_len);
    buf_put(&j->out, v->perms, v->perms_len);
    return 0;
}

static int emit_delete(xsd_journal *j, const char *path, size_t len)
{
    int rc;

    if (len > UINT16_MAX)
        return -E2BIG;
    rc = buf_reserve(&j->out, PATH_SIZE + len);
    if (rc)
        return rc;
    buf_u8(&j->out, ENTRY_DELETE);
    buf_le(&j->out, len, 2);
    buf_put(&j->out, path, len);
    return 0;
}

static int emit_order(xsd_journal *j, const char *path, size_t len, const char *names,
                      size_t names_len)
{
    int rc;

    if (len > UINT16_MAX || names_len > UINT32_MAX)
        return -E2BIG;
    rc = buf_reserve(&j->out, NAMES_SIZE + len + names_len);
    if (rc)
        return rc;
    buf_u8(&j->out, ENTRY_ORDER);
    buf_le(&j->out, len, 2);
    buf_le(&j->out, names_len, 4);
    buf_put(&j->out, path, len);
    buf_put(&j->out, names, names_len);
    return 0;
}

/* ------------------------------------------------------------ the table */

/* The index of path's key, or NO_KEY; *slot gets the slot it is in, or the
 * empty one where it would go. */
static size_t key_find(const xsd_journal *j, const char *path, size_t len, uint64_t h,
                       size_t *slot)
{
    size_t mask = j->nslots - 1, i;

    for (i = (size_t)(h & mask); j->slots[i]; i = (i + 1) & mask) {
        const struct key *k = &j->keys[j->slots[i] - 1];
        if (k->hash == h && k->len == len && memcmp(k->path, path, len) == 0) {
            *slot = i;
            return j->slots[i] - 1;
        }
    }
    *slot = i;
    return NO_KEY;
}

/* path's key, added (children 0, not created) if missing: room for it in
 * keys[] and the table was made by the caller. */
static size_t key_get(xsd_journal *j, const char *path, size_t len)
{
    uint64_t h = xsd_hash_path(path, len);
    size_t slot, at = key_find(j, path, len, h, &slot);
    struct key *k;

    if (at != NO_KEY)
        return at;
    at = j->nkeys++;
    k = &j->keys[at];
    k->path = path;
    k->len = len;
    k->hash = h;
    k->children = 0;
    k->created = 0;
    memset(&k->node, 0, sizeof k->node);
    j->slots[slot] = at + 1;
    return at;
}

/* The parent's length within path ("/" for a top-level node: length 1). */
static size_t parent_len(const char *path, size_t len)
{
    size_t i = len;

    while (i > 1 && path[i - 1] != '/')
        i--;
    return i > 1 ? i - 1 : 1;
}

/* ------------------------------------------------------------ listings */

/* A listing of up (its last count children, or all of them when count is
 * 0) into j->list. 0, or a negative errno from the store or -ENOMEM. */
static int list_children(xsd_journal *j, const xsd_store *s, const char *up, size_t up_len,
                         size_t count)
{
    for (;;) {
        int64_t n = count ? xsd_store_last_children(s, up, up_len, count, j->list.p, j->list.cap)
                          : xsd_store_children(s, up, up_len, j->list.p, j->list.cap);
        int rc;
        if (n < 0)
            return (int)n;
        if ((uint64_t)n <= j->list.cap) {
            j->list.len = (size_t)n;
            return 0;
        }
        j->list.len = 0;
        rc = buf_reserve(&j->list, (size_t)n);
        if (rc)
            return rc;
    }
}

/* The length of the name at j->list.p + at (a listing ends every name in
 * NUL; a last one without is taken to the end). */
static size_t name_length(const xsd_journal *j, size_t at)
{
    const char *nul = memchr(j->list.p + at, '\0', j->list.len - at);

    return nul ? (size_t)(nul - (j->list.p + at)) : j->list.len - at;
}

/* up + "/" + name into j->path (up "/": "/" + name). 0 or -ENOMEM. */
static int child_path(xsd_journal *j, const char *up, size_t up_len, const char *name,
                      size_t name_len)
{
    size_t base = up_len == 1 ? 0 : up_len;
    int rc;

    j->path.len = 0;
    if (name_len > SIZE_MAX - 1 - base)
        return -ENOMEM;
    rc = buf_reserve(&j->path, base + 1 + name_len);
    if (rc)
        return rc;
    buf_put(&j->path, up, base);
    buf_u8(&j->path, '/');
    buf_put(&j->path, name, name_len);
    return 0;
}

/* Is up/name a created path? Its key index in *at (NO_KEY: not in the table). */
static int child_created(xsd_journal *j, const char *up, size_t up_len, const char *name,
                         size_t name_len, size_t *at, int *rc)
{
    size_t slot;

    *rc = child_path(j, up, up_len, name, name_len);
    if (*rc)
        return 0;
    *at = key_find(j, j->path.p, j->path.len, xsd_hash_path(j->path.p, j->path.len), &slot);
    return *at != NO_KEY && j->keys[*at].created;
}

/* ------------------------------------------------------------ creations */

/* Table and arrays for ncreated created keys (keys[0..ncreated) already
 * filled by the first pass) plus their parents. 0 or -ENOMEM. */
static int created_index(xsd_journal *j, size_t ncreated)
{
    size_t want = 4, i, *order;
    struct key *keys;

    if (ncreated > SIZE_MAX / 8)
        return -ENOMEM;
    keys = array_reserve(j->keys, &j->keys_cap, 2 * ncreated, sizeof *j->keys);
    if (!keys)
        return -ENOMEM;
    j->keys = keys;
    order = array_reserve(j->order, &j->order_cap, 2 * ncreated, sizeof *j->order);
    if (!order)
        return -ENOMEM;
    j->order = order;
    while (want < 4 * ncreated)
        want *= 2;
    /* A table grown for a big batch (up to XSD_JOURNAL_KEEP bytes, kept) is cleared
     * whole at every batch after it: one creating a node would memset 256 KiB. So
     * it is replaced by one of the size wanted once it is SLOTS_SHRINK times that
     * (out of memory then: the big one serves). */
    if (want > j->nslots || j->nslots / SLOTS_SHRINK >= want) {
        size_t *slots = XSD_CALLOC(want, sizeof *slots);
        if (slots) {
            XSD_FREE(j->slots);
            j->slots = slots;
            j->nslots = want;
        } else if (want > j->nslots) {
            return -ENOMEM;
        } else {
            memset(j->slots, 0, j->nslots * sizeof *j->slots);
        }
    } else {
        memset(j->slots, 0, j->nslots * sizeof *j->slots);
    }
    for (i = 0; i < ncreated; i++) {
        struct key *k = &j->keys[i];
        size_t slot;
        k->hash = xsd_hash_path(k->path, k->len);
        if (key_find(j, k->path, k->len, k->hash, &slot) != NO_KEY)
            return -EPROTO;     /* a path twice in the log */
        j->slots[slot] = i + 1;
    }
    return 0;
}

/* The CREATE entries (and any ORDER) for keys[0..ncreated), as
 * journal_enc.h describes. 0 or a negative errno. */
static int encode_created(xsd_journal *j, const xsd_store *s, size_t ncreated)
{
    size_t nparents = 0, sp = 0, emitted = 0, *parents, *stack, i;
    int rc = created_index(j, ncreated);

    if (rc)
        return rc;
    parents = j->order;
    stack = j->order + ncreated;
    for (i = 0; i < ncreated; i++) {
        const struct key *k = &j->keys[i];
        size_t up = key_get(j, k->path, parent_len(k->path, k->len));
        if (j->keys[up].children++ == 0)
            parents[nparents++] = up;
    }
    for (i = 0; i < nparents; i++)
        if (!j->keys[parents[i]].created)
            stack[sp++] = parents[i];
    while (sp) {
        const struct key *up = &j->keys[stack[--sp]];
        const char *up_path = up->path;
        size_t up_len = up->len, at = 0, child;
        int explicit = 0;

        rc = list_children(j, s, up_path, up_len, up->children);
        if (rc)
            return rc;
        while (at < j->list.len && !explicit) {
            const char *name = j->list.p + at;
            size_t name_len = name_length(j, at);
            explicit = !child_created(j, up_path, up_len, name, name_len, &child, &rc);
            if (rc)
                return rc;
            at += name_len + 1;
        }
        if (explicit) {
            rc = list_children(j, s, up_path, up_len, 0);
            if (rc)
                return rc;
        }
        for (at = 0; at < j->list.len;) {
            const char *name = j->list.p + at;
            size_t name_len = name_length(j, at);
            int created = child_created(j, up_path, up_len, name, name_len, &child, &rc);
            if (rc)
                return rc;
            at += name_len + 1;
            if (!created)
                continue;       /* explicit: an older child, in the ORDER entry only */
            rc = emit_node(j, ENTRY_CREATE, j->path.p, j->path.len, &j->keys[child].node);
            if (rc)
                return rc;
            emitted++;
            if (j->keys[child].children) {
                if (sp == ncreated)
                    return -EPROTO;     /* a parent pushed twice: cannot be in a tree */
                stack[sp++] = child;
            }
        }
        if (explicit) {
            rc = emit_order(j, up_path, up_len, j->list.p, j->list.len);
            if (rc)
                return rc;
            j->orders++;
        }
    }
    return emitted == ncreated ? 0 : -EPROTO;
}

/* ------------------------------------------------------------ records */

xsd_journal *xsd_journal_new(void)
{
    xsd_journal *j = XSD_CALLOC(1, sizeof *j);

    if (!j)
        return NULL;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        j->crc_table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)          /* table k: a byte followed by k zero bytes */
        for (size_t i = 0; i < 256; i++) {
            uint32_t c = j->crc_table[k - 1][i];
            j->crc_table[k][i] = (c >> 8) ^ j->crc_table[0][c & 0xffu];
        }
    return j;
}

void xsd_journal_free(xsd_journal *j)
{
    if (!j)
        return;
    buf_free(&j->out);
    buf_free(&j->log);
    buf_free(&j->list);
    buf_free(&j->path);
    XSD_FREE(j->keys);
    XSD_FREE(j->slots);
    XSD_FREE(j->order);
    XSD_FREE(j);
}

/* Buffers a big batch grew are not kept for the small ones that follow. */
static void release_big(xsd_journal *j)
{
    struct buf *bufs[] = {&j->out, &j->log, &j->list, &j->path};

    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]->cap > XSD_JOURNAL_KEEP)
            buf_free(bufs[i]);
    if (j->keys_cap * sizeof *j->keys > XSD_JOURNAL_KEEP) {
        XSD_FREE(j->keys);
        j->keys = NULL;
        j->keys_cap = 0;
    }
    if (j->nslots * sizeof *j->slots > XSD_JOURNAL_KEEP) {
        XSD_FREE(j->slots);
        j->slots = NULL;
        j->nslots = 0;
    }
    if (j->order_cap * sizeof *j->order > XSD_JOURNAL_KEEP) {
        XSD_FREE(j->order);
        j->order = NULL;
        j->order_cap = 0;
    }
}

/* The change log into j->log. Its length, or -ENOMEM. */
static int64_t copy_log(xsd_journal *j, const xsd_store *s)
{
    for (;;) {
        int64_t n = xsd_store_changes(s, j->log.p, j->log.cap);
        int rc;
        if (n < 0 || (uint64_t)n <= j->log.cap)
            return n;
        j->log.len = 0;
        rc = buf_reserve(&j->log, (size_t)n);
        if (rc)
            return rc;
    }
}

/* DELETE and UPDATE entries in log order; the created paths into keys[]
 * (their count in *ncreated). 0 or a negative errno. */
static int encode_log(xsd_journal *j, const xsd_store *s, size_t n, size_t *ncreated)
{
    size_t at = 0;

    *ncreated = 0;
    j->nkeys = 0;
    while (at < n) {
        unsigned kind = (unsigned char)j->log.p[at];
        const char *path = j->log.p + at + 1;
        const char *nul = memchr(path, '\0', n - at - 1);
        struct xsd_node_view v;
        size_t len;
        int rc;

        if (!nul)
            return -EPROTO;
        len = (size_t)(nul - path);
        at += len + 2;
        rc = xsd_store_get(s, path, len, &v);
        if (rc == -ENOENT) {
            rc = emit_delete(j, path, len);
        } else if (rc == 0 && kind == XSD_CHANGE_UPDATED) {
            rc = emit_node(j, ENTRY_UPDATE, path, len, &v);
        } else if (rc == 0 && kind == XSD_CHANGE_CREATED) {
            struct key *keys = array_reserve(j->keys, &j->keys_cap, j->nkeys + 1,
                                             sizeof *j->keys);
            if (!keys) {
                rc = -ENOMEM;
            } else {
                j->keys = keys;
                j->keys[j->nkeys].path = path;
                j->keys[j->nkeys].len = len;
                j->keys[j->nkeys].children = 0;
                j->keys[j->nkeys].created = 1;
                j->keys[j->nkeys].node = v;     /* valid: nothing changes the store meanwhile */
                j->nkeys++;
            }
        }
        if (rc)
            return rc;
    }
    *ncreated = j->nkeys;
    return 0;
}

int64_t xsd_journal_record(xsd_journal *j, xsd_store *s, uint64_t seq,
                           const char *tail, size_t tail_len)
{
    int64_t n;
    size_t ncreated, payload;
    uint32_t crc;
    int rc;

    release_big(j);
    j->out.len = 0;
    j->orders = 0;
    n = copy_log(j, s);
    if (n < 0)
        return n;
    if (n == 0 && tail_len == 0)
        return 0;
    rc = buf_reserve(&j->out, FRAME_SIZE + BATCH_SIZE);
    if (rc)
        return rc;
    buf_put(&j->out, "XSDR", 4);
    j->out.len = FRAME_SIZE;                    /* length and CRC once known */
    buf_le(&j->out, seq, 8);
    buf_le(&j->out, xsd_store_next_gen(s), 8);
    rc = encode_log(j, s, (size_t)n, &ncreated);
    if (rc == 0 && ncreated)
        rc = encode_created(j, s, ncreated);
    if (rc == 0)
        rc = buf_reserve(&j->out, tail_len);
    if (rc) {
        j->out.len = 0;
        return rc;
    }
    buf_put(&j->out, tail, tail_len);
    payload = j->out.len - FRAME_SIZE;
    if (payload > UINT32_MAX) {
        j->out.len = 0;
        return -E2BIG;
    }
    le_put(j->out.p + 4, payload, 4);
    crc = xsd_journal_crc32(j, 0, j->out.p + 4, 4);
    crc = xsd_journal_crc32(j, crc, j->out.p + FRAME_SIZE, payload);
    le_put(j->out.p + 8, crc, 4);
    /* The record is whole: empty the log (it fits the copy it was read into). */
    if (xsd_store_take_changes(s, j->log.p, j->log.cap) != n) {
        j->out.len = 0;
        return -EPROTO;
    }
    return (int64_t)j->out.len;
}

const char *xsd_journal_data(const xsd_journal *j)
{
    return j->out.p;
}

size_t xsd_journal_orders(const xsd_journal *j)
{
    return j->orders;
}
