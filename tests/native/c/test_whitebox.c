/*
 * test_whitebox.c: trie.c's internal invariants (listed at the top of
 * trie.c), checked after every step of random add/remove sequences, plus the
 * globset mark wrap-around, which no black-box test can reach in reasonable
 * time. Includes trie.c directly to see its structs.
 */
#include "trie.c"

#include <stdlib.h>

#include "check.h"
#include "model.h"

/* The full key of n, rebuilt by climbing to its root, into buf (cap). */
static size_t full_key(const struct xsd_node *n, int special, char *buf,
                       size_t cap)
{
    size_t len = 0, total;
    const struct xsd_node *m;

    if (special) {
        memcpy(buf, n->key, n->klen);
        return n->klen;
    }
    if (n->parent == NULL) {
        buf[0] = '/';
        return 1;
    }
    for (m = n; m->parent != NULL; m = m->parent)
        len += 1 + m->klen;
    total = len;
    CHECK(total <= cap);
    for (m = n; m->parent != NULL && total <= cap; m = m->parent) {
        len -= m->klen;
        memcpy(buf + len, m->key, m->klen);
        buf[--len] = '/';
    }
    return total;
}

/* Probing from w's hash reaches w: its probe run is intact. */
static void check_reachable(const xsd_trie *t, const struct xsd_watch *w)
{
    uint64_t h = full_hash(t->seed, w->key, w->len);
    size_t i, mask;

    CHECK(t->icap != 0);
    if (t->icap == 0)
        return;
    mask = t->icap - 1;
    for (i = (size_t)h & mask; t->index[i].w != NULL && t->index[i].w != w;
         i = (i + 1) & mask)
        ;
    CHECK(t->index[i].w == w);
    CHECK(t->index[i].h == h);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(const void *const *)a;
    uintptr_t y = (uintptr_t)*(const void *const *)b;

    return x < y ? -1 : x > y;
}

/* The index holds exactly the records of the nodes, each once. */
static void check_index_holds(const xsd_trie *t, const void **recs, size_t n)
{
    const void **slots_w = malloc((t->icount + 1) * sizeof *slots_w);
    size_t i, k = 0;

    for (i = 0; i < t->icap; i++)
        if (t->index[i].w != NULL && k < t->icount)
            slots_w[k++] = t->index[i].w;
    CHECK_EQ(k, n);
    qsort(recs, n, sizeof *recs, cmp_ptr);
    qsort(slots_w, k, sizeof *slots_w, cmp_ptr);
    if (k == n)
        CHECK(memcmp(recs, slots_w, n * sizeof *recs) == 0);
    free(slots_w);
}

/* Walk every node (iteratively, with the same preorder_next the trie uses)
 * and check each invariant; recompute the byte and block counters. */
static void check_invariants(const xsd_trie *t)
{
    const struct xsd_node *tops[2] = {t->root, t->special};
    size_t nodes = 0, entries = 0, records = 0, bytes = sizeof *t, blocks = 1;
    size_t used_slots = 0, klen;
    const struct xsd_node *n, *c;
    static char buf[1 << 16];
    const void **recs = malloc((t->icount + 1) * sizeof *recs);
    uint32_t i, used;
    int r;

    for (r = 0; r < 2; r++) {
        CHECK(tops[r]->parent == NULL);
        CHECK(tops[r]->klen == 0);
        for (n = tops[r]; n != NULL; n = preorder_next(tops[r], n)) {
            nodes++;
            bytes += sizeof *n + n->klen;
            blocks++;
            if (n != tops[r]) {
                CHECK(n->w != NULL || n->nkids != 0); /* pruned when empty */
                CHECK(n->hash == key_hash(t->seed, n->key, n->klen));
                CHECK(slots(n->parent)[n->slot] == n);
                CHECK(kid_find(n->parent, n->hash, n->key, n->klen) == n);
            }
            if (r == 1 && n != tops[r])
                CHECK(n->klen >= 1 && n->key[0] == '@');
            if (r == 1)
                CHECK(n == tops[r] ? n->w == NULL : n->nkids == 0);
            CHECK(n->kcap == 0 || (n->kcap & (n->kcap - 1)) == 0);
            CHECK(n->nkids <= max_load(n->kcap));
            if (n->kcap == 0)
                CHECK(n->kids.tab == NULL);
            if (n->kcap >= 2) { /* kcap 1 is the inline slot, no block */
                CHECK(n->kids.tab != NULL);
                CHECK(n->nkids >= 2);
                bytes += (size_t)n->kcap * sizeof *n->kids.tab;
                blocks++;
            }
            for (used = 0, i = 0; i < n->kcap; i++) {
                c = slots((struct xsd_node *)n)[i];
                if (c == NULL)
                    continue;
                used++;
                CHECK(c->parent == n);
                CHECK(c->slot == i);
            }
            CHECK(used == n->nkids);
            if (n->w != NULL) {
                const struct xsd_watch *w = n->w;

                if (records < t->icount)
                    recs[records] = w;
                records++;
                entries += w->nids;
                bytes += sizeof *w + w->len;
                blocks++;
                CHECK(w->nids >= 1);
                klen = full_key(n, r == 1, buf, sizeof buf);
                CHECK(klen == w->len && memcmp(buf, w->key, klen) == 0);
                check_reachable(t, w);
                if (w->idcap == 0) {
                    CHECK(w->nids == 1);
                } else {
                    CHECK(w->nids >= 2 && w->nids <= w->idcap);
                    bytes += (size_t)w->idcap * sizeof *w->ids.many;
                    blocks++;
                    for (i = 1; i < w->nids; i++)
                        CHECK(w->ids.many[i - 1] < w->ids.many[i]);
                }
            }
        }
    }
    if (t->icap != 0) {
        CHECK((t->icap & (t->icap - 1)) == 0);
        CHECK(t->icount * 2 <= t->icap);
        bytes += t->icap * sizeof *t->index;
        blocks++;
        for (i = 0; i < t->icap; i++)
            used_slots += t->index[i].w != NULL;
    } else {
        CHECK(t->index == NULL);
    }
    {   /* at_depth agrees with a recount of the records */
        uint32_t want[DEPTHS] = {0};
        size_t d;

        for (i = 0; i < t->icap; i++)
            if (t->index[i].w != NULL && t->index[i].w->key[0] == '/')
                want[depth_slot(t->index[i].w->key, t->index[i].w->len)]++;
        for (d = 0; d < DEPTHS; d++)
            CHECK_EQ(t->at_depth[d], want[d]);
    }
    CHECK_EQ(used_slots, t->icount);
    CHECK_EQ(records, t->icount);
    if (records == t->icount)
        check_index_holds(t, recs, records);
    free(recs);
    CHECK_EQ(nodes, t->nodes);
    CHECK_EQ(entries, t->entries);
    CHECK_EQ(bytes, t->bytes);
    CHECK_EQ(blocks, t->blocks);
}

/* Many siblings with frequent removals: exercises table growth, probe runs
 * that wrap around the end of the table and backward-shift deletion. */
static void test_invariants_random(void)
{
    static const char *comps[] = {"a", "b", "c", "d", "e", "f", "g", "h",
                                  "i", "j", "k", "l", "m", "n", "o", "p",
                                  "@s", "@t"};
    xsd_trie *t = xsd_trie_new();
    struct model m;
    char k[64];
    size_t len, i;
    int step, depth, d, rc;
    uint64_t id;

    model_init(&m);
    for (step = 0; step < 20000; step++) {
        const char *c = comps[check_below(sizeof comps / sizeof comps[0])];

        if (c[0] == '@') {
            len = strlen(c);
            memcpy(k, c, len);
        } else {
            depth = 1 + (int)check_below(3);
            for (len = 0, d = 0; d < depth; d++) {
                c = comps[check_below(16)];
                k[len++] = '/';
                memcpy(k + len, c, strlen(c));
                len += strlen(c);
            }
        }
        id = check_below(5);
        if (check_below(2) == 0) {
            rc = xsd_trie_add(t, k, len, id);
            CHECK_EQ(rc, model_add(&m, k, len, id) ? -EEXIST : 0);
        } else {
            rc = xsd_trie_remove(t, k, len, id);
            CHECK_EQ(rc, model_remove(&m, k, len, id) ? -ENOENT : 0);
        }
        if (step % 50 == 0)
            check_invariants(t);
    }
    check_invariants(t);
    for (i = m.n; i > 0; i--)
        CHECK_EQ(xsd_trie_remove(t, m.v[i - 1].key, m.v[i - 1].len,
                                 m.v[i - 1].id), 0);
    check_invariants(t);
    CHECK_EQ(t->nodes, 2);
    model_clear(&m);
    xsd_trie_free(t);
}

/* Siblings added and removed in shifting orders, tables kept near their 3/4
 * load: long probe runs, runs that wrap past the end of the table, and
 * deletions from their middle, with the invariants checked after each. */
static void test_backward_shift_wraps(void)
{
    xsd_trie *t = xsd_trie_new();
    char k[16];
    int i, len, round;

    for (round = 0; round < 50; round++) {
        for (i = 0; i < 40; i++) {
            len = snprintf(k, sizeof k, "/%d", (i * 7 + round) % 40);
            (void)xsd_trie_add(t, k, (size_t)len, 1);
        }
        for (i = 0; i < 40; i += 1 + round % 3) {
            len = snprintf(k, sizeof k, "/%d", (i * 13 + round) % 40);
            (void)xsd_trie_remove(t, k, (size_t)len, 1);
            check_invariants(t);
        }
    }
    xsd_trie_free(t);
}

/* The globset's 32-bit mark stamp wraps after 2^32 steps; start just below
 * the wrap and check the answers stay right across it. */
static void test_globset_stamp_wrap(void)
{
    xsd_globset *g = xsd_globset_new();
    uint64_t out[16];
    int i;

    CHECK_EQ(xsd_globset_add(g, "/a/**", 5, 1), 0);
    CHECK_EQ(xsd_globset_add(g, "/*/b", 4, 2), 0);
    CHECK_EQ(xsd_globset_add(g, "/**/b", 5, 3), 0);
    g->stamp = UINT32_MAX - 5;
    for (i = 0; i < 20; i++) {
        CHECK_EQ(xsd_globset_match(g, "/a/b", 4, out, 16), 3);
        CHECK_EQ(xsd_globset_match(g, "/x/y", 4, out, 16), 0);
        CHECK_EQ(xsd_globset_match(g, "/x/y/b", 6, out, 16), 1);
    }
    CHECK(g->stamp < 1000); /* it did wrap */
    xsd_globset_free(g);
}

int main(void)
{
    RUN(test_invariants_random);
    RUN(test_backward_shift_wraps);
    RUN(test_globset_stamp_wrap);
    return check_report();
}
