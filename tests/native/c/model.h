/*
 * model.h: the trivial model the C trie is checked against, header-only.
 *
 * A flat list of (key, id) pairs. Matching compares strings directly
 * ("is K an ancestor of P": K is "/", or P starts with K followed by '/' or
 * the end), and globs are matched by a dynamic-programming table over
 * components, an algorithm unrelated to the one in trie.c. Uses plain
 * malloc, never the hooked allocator, so it keeps working while a test makes
 * the trie's allocations fail.
 */
#ifndef XSD_TEST_MODEL_H
#define XSD_TEST_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trie.h"

struct model_entry {
    char *key;
    size_t len;
    uint64_t id;
};

struct model {
    struct model_entry *v;
    size_t n, cap;
};

static inline void *model_xalloc(size_t size)
{
    void *p = malloc(size != 0 ? size : 1);

    if (p == NULL) {
        fprintf(stderr, "model: out of memory\n");
        abort();
    }
    return p;
}

/* Same key rules as trie.h: 1 valid tree key, 2 valid special, 0 invalid. */
static inline int model_key_kind(const char *k, size_t len)
{
    size_t i;

    if (len == 0)
        return 0;
    if (k[0] == '@')
        return 2;
    if (k[0] != '/')
        return 0;
    if (len == 1)
        return 1;
    if (k[len - 1] == '/')
        return 0;
    for (i = 1; i < len; i++)
        if (k[i] == '/' && k[i - 1] == '/')
            return 0;
    return 1;
}

static inline void model_init(struct model *m)
{
    memset(m, 0, sizeof *m);
}

static inline void model_clear(struct model *m)
{
    size_t i;

    for (i = 0; i < m->n; i++)
        free(m->v[i].key);
    free(m->v);
    model_init(m);
}

static inline long model_find(const struct model *m, const char *k, size_t len,
                       uint64_t id)
{
    size_t i;

    for (i = 0; i < m->n; i++)
        if (m->v[i].id == id && m->v[i].len == len &&
            memcmp(m->v[i].key, k, len) == 0)
            return (long)i;
    return -1;
}

/* 0, or 1 if already there (the trie says -EEXIST). */
static inline int model_add(struct model *m, const char *k, size_t len, uint64_t id)
{
    if (model_find(m, k, len, id) >= 0)
        return 1;
    if (m->n == m->cap) {
        size_t ncap = m->cap != 0 ? m->cap * 2 : 16;
        struct model_entry *nv = model_xalloc(ncap * sizeof *nv);

        if (m->n != 0)
            memcpy(nv, m->v, m->n * sizeof *nv);
        free(m->v);
        m->v = nv;
        m->cap = ncap;
    }
    m->v[m->n].key = model_xalloc(len);
    memcpy(m->v[m->n].key, k, len);
    m->v[m->n].len = len;
    m->v[m->n].id = id;
    m->n++;
    return 0;
}

/* 0, or 1 if absent (the trie says -ENOENT). */
static inline int model_remove(struct model *m, const char *k, size_t len,
                        uint64_t id)
{
    long i = model_find(m, k, len, id);

    if (i < 0)
        return 1;
    free(m->v[i].key);
    m->v[i] = m->v[m->n - 1];
    m->n--;
    return 0;
}

/* Is a (a tree key) an ancestor of b or b itself? */
static inline int model_is_anc_or_self(const char *a, size_t alen, const char *b,
                                size_t blen)
{
    if (alen == 1) /* "/" */
        return 1;
    if (alen > blen || memcmp(a, b, alen) != 0)
        return 0;
    return alen == blen || b[alen] == '/';
}

static inline int model_cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

    return a < b ? -1 : a > b;
}

static inline size_t model_sort_unique(uint64_t *v, size_t n)
{
    size_t i, w;

    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, model_cmp_u64);
    for (w = 1, i = 1; i < n; i++)
        if (v[i] != v[w - 1])
            v[w++] = v[i];
    return w;
}

/* Sorted unique ids for (key, flags) into a fresh array; count in *n. */
static inline uint64_t *model_match(const struct model *m, const char *k, size_t len,
                             unsigned flags, size_t *n)
{
    uint64_t *out = model_xalloc((m->n + 1) * sizeof *out);
    int kind = model_key_kind(k, len);
    size_t i, c = 0;

    for (i = 0; i < m->n; i++) {
        const struct model_entry *e = &m->v[i];
        int ekind = model_key_kind(e->key, e->len);

        if (kind == 2 || ekind == 2) {
            if ((flags & XSD_MATCH_ANCESTORS) && kind == ekind &&
                e->len == len && memcmp(e->key, k, len) == 0)
                out[c++] = e->id;
            continue;
        }
        if ((flags & XSD_MATCH_ANCESTORS) &&
            model_is_anc_or_self(e->key, e->len, k, len))
            out[c++] = e->id;
        else if ((flags & XSD_MATCH_DESCENDANTS) && e->len != len &&
                 model_is_anc_or_self(k, len, e->key, e->len))
            out[c++] = e->id;
    }
    *n = model_sort_unique(out, c);
    return out;
}

/* Components of a valid tree key: starts[i], lens[i]; returns the count. */
static inline size_t model_split(const char *k, size_t len, size_t *starts,
                          size_t *lens)
{
    size_t i, c = 0, s;

    if (len == 1)
        return 0;
    s = 1;
    for (i = 1; i <= len; i++) {
        if (i == len || k[i] == '/') {
            starts[c] = s;
            lens[c] = i - s;
            c++;
            s = i + 1;
        }
    }
    return c;
}

/* Glob by DP: d[i][j] = first i pattern components match first j path
 * components. Same result convention as xsd_glob_match for valid keys.
 * Small keys use stack buffers (the random tests call this a lot). */
static inline int model_glob(const char *p, size_t plen, const char *s, size_t slen)
{
    enum { SMALL = 64 };
    size_t sbuf[4][SMALL + 1];
    unsigned char dbuf[(SMALL + 1) * (SMALL + 1)];
    int pk = model_key_kind(p, plen), sk = model_key_kind(s, slen);
    int small = plen <= SMALL && slen <= SMALL;
    size_t *ps, *pl, *ss, *sl, np, ns, i, j, w;
    unsigned char *d;
    int r;

    if (pk == 0 || sk == 0)
        return -1;
    if (pk == 2 || sk == 2)
        return pk == sk && plen == slen && memcmp(p, s, slen) == 0;
    ps = small ? sbuf[0] : model_xalloc((plen + 1) * sizeof *ps);
    pl = small ? sbuf[1] : model_xalloc((plen + 1) * sizeof *pl);
    ss = small ? sbuf[2] : model_xalloc((slen + 1) * sizeof *ss);
    sl = small ? sbuf[3] : model_xalloc((slen + 1) * sizeof *sl);
    np = model_split(p, plen, ps, pl);
    ns = model_split(s, slen, ss, sl);
    w = ns + 1;
    d = small ? dbuf : model_xalloc((np + 1) * w);
    memset(d, 0, (np + 1) * w);
    d[0] = 1;
    for (i = 1; i <= np; i++) {
        const char *pc = p + ps[i - 1];
        size_t pn = pl[i - 1];
        int dstar = pn == 2 && pc[0] == '*' && pc[1] == '*';
        int star = pn == 1 && pc[0] == '*';

        for (j = 0; j <= ns; j++) {
            unsigned char v = 0;

            if (dstar)
                v = d[(i - 1) * w + j] || (j > 0 && d[i * w + j - 1]);
            else if (j > 0 &&
                     (star || (pn == sl[j - 1] &&
                               memcmp(pc, s + ss[j - 1], pn) == 0)))
                v = d[(i - 1) * w + j - 1];
            d[i * w + j] = v;
        }
    }
    r = d[np * w + ns];
    if (!small) {
        free(d);
        free(ps);
        free(pl);
        free(ss);
        free(sl);
    }
    return r;
}

#endif /* XSD_TEST_MODEL_H */
