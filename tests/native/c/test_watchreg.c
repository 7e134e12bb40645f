/*
 * test_watchreg.c: the watch registry (watchreg.h) through its API, over a
 * real trie and node store. Delivery order and filtering are checked in
 * depth against the Python registry by tests/native/test_watchreg.py; here:
 * the contracts of each call, bad input, the retry rule for output that does
 * not fit, and random registrations against a trivial model of who holds
 * which key (counts, text bytes, the trie's entries), under ASan/UBSan.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "store.h"
#include "trie.h"
#include "watchreg.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static char out[1 << 16];

struct delivery {
    uint32_t session;
    char ev[256];
    char key[256];
    size_t klen;
};

static uint32_t rd16(const char *p)
{
    const unsigned char *q = (const unsigned char *)p;

    return (uint32_t)q[0] | (uint32_t)q[1] << 8;
}

static uint32_t rd32(const char *p)
{
    return rd16(p) | rd16(p + 2) << 16;
}

/* Parse n bytes of deliveries from a fire call given path into d (at most
 * max); returns their number. */
static size_t parse(const char *buf, int64_t n, struct delivery *d, size_t max,
                    const char *path)
{
    size_t k = 0, at = 0, evlen, plen, tlen;

    CHECK(n >= 0);
    while (n > 0 && at < (size_t)n && k < max) {
        d[k].session = rd32(buf + at);
        evlen = rd16(buf + at + 4);
        plen = rd16(buf + at + 6);
        tlen = rd16(buf + at + 8);
        at += XSD_WREG_DELIVERY_HEADER;
        if (evlen == XSD_WREG_SAME_PATH) {
            snprintf(d[k].ev, sizeof d[k].ev, "%s", path);
        } else {
            memcpy(d[k].ev, buf + at, evlen);
            d[k].ev[evlen] = '\0';
            at += evlen;
        }
        d[k].klen = plen + 1 + tlen;
        memcpy(d[k].key, buf + at, d[k].klen);
        at += d[k].klen;
        k++;
    }
    CHECK_EQ(at, n);
    return k;
}

struct fixture {
    xsd_trie *t;
    xsd_store *st;
    xsd_wreg *r;
};

static void setup(struct fixture *f)
{
    f->t = xsd_trie_new();
    f->st = xsd_store_new();
    f->r = xsd_wreg_new(f->t, f->st);
    CHECK(f->t != NULL && f->st != NULL && f->r != NULL);
}

static void teardown(struct fixture *f)
{
    xsd_wreg_free(f->r);
    xsd_trie_free(f->t);
    xsd_store_free(f->st);
}

static void mk(struct fixture *f, const char *path, const char *perms, size_t plen)
{
    CHECK(xsd_store_write(f->st, path, strlen(path), "", 0, perms, plen) >= 0);
}

static void test_add_find_remove_and_counts(void)
{
    struct fixture f;
    uint64_t order = 0, o2 = 0;
    int64_t s, s2;

    setup(&f);
    s = xsd_wreg_session_new(f.r);
    s2 = xsd_wreg_session_new(f.r);
    CHECK(s >= 0 && s2 >= 0 && s != s2);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/a/b"), S("tok"), 0, &order), 0);
    CHECK_EQ(order & 3, 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/a/b"), S("tok"), 1, NULL), -EEXIST);
    /* the same key on another session is another watch */
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s2, S("/a/b"), S("tok"), 1, &o2), 0);
    CHECK(o2 >> 2 > order >> 2);
    CHECK_EQ(o2 & 1, 1);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/a"), "", 0, 0, NULL), 0); /* empty token */
    CHECK_EQ(xsd_wreg_session_count(f.r, (uint32_t)s), 2);
    CHECK_EQ(xsd_wreg_session_text_bytes(f.r, (uint32_t)s), 4 + 3 + 2);
    CHECK_EQ(xsd_wreg_count(f.r), 3);
    CHECK_EQ(xsd_trie_count(f.t), 3);
    CHECK_EQ(xsd_wreg_find(f.r, (uint32_t)s, S("/a/b\0tok"), &o2), 1);
    CHECK_EQ(o2, order);
    CHECK_EQ(xsd_wreg_find(f.r, (uint32_t)s, S("/a/b\0to"), NULL), 0);
    CHECK_EQ(xsd_wreg_find(f.r, (uint32_t)s, S("/a\0"), NULL), 1);
    CHECK_EQ(xsd_wreg_remove(f.r, (uint32_t)s, S("/a/b\0tok")), 0);
    CHECK_EQ(xsd_wreg_remove(f.r, (uint32_t)s, S("/a/b\0tok")), -ENOENT);
    CHECK_EQ(xsd_wreg_find(f.r, (uint32_t)s2, S("/a/b\0tok"), NULL), 1);
    CHECK_EQ(xsd_wreg_session_count(f.r, (uint32_t)s), 1);
    CHECK_EQ(xsd_trie_count(f.t), 2);
    /* freeing a session drops its watches; its handle is given out again */
    CHECK_EQ(xsd_wreg_session_free(f.r, (uint32_t)s2), 0);
    CHECK_EQ(xsd_wreg_session_free(f.r, (uint32_t)s2), -EINVAL);
    CHECK_EQ(xsd_trie_count(f.t), 1);
    CHECK_EQ(xsd_wreg_session_new(f.r), s2);
    CHECK_EQ(xsd_wreg_session_count(f.r, (uint32_t)s2), 0);
    CHECK_EQ(xsd_wreg_session_clear(f.r, (uint32_t)s), 0);
    CHECK_EQ(xsd_wreg_count(f.r), 0);
    CHECK_EQ(xsd_trie_count(f.t), 0);
    teardown(&f);
}

static void test_bad_input_is_refused(void)
{
    struct fixture f;
    static char big[70000];
    int64_t s;
    int asks;

    setup(&f);
    s = xsd_wreg_session_new(f.r);
    CHECK_EQ(xsd_wreg_add(f.r, 99, S("/a"), S("t"), 0, NULL), -EINVAL);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("a/rel"), S("t"), 0, NULL), -EINVAL);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/a//b"), S("t"), 0, NULL), -EINVAL);
    memset(big, 'x', sizeof big);
    big[0] = '/';
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, big, sizeof big, S("t"), 0, NULL), -E2BIG);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/a"), big, sizeof big, 0, NULL), -E2BIG);
    CHECK_EQ(xsd_wreg_count(f.r), 0);
    CHECK_EQ(xsd_wreg_session_set(f.r, 99, 1, -1, 0), -EINVAL);
    CHECK_EQ(xsd_wreg_remove(f.r, 99, S("/a\0t")), -EINVAL);
    CHECK_EQ(xsd_wreg_session_watches(f.r, 99, out, sizeof out), -EINVAL);
    /* a below list that ends inside an entry */
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/r/x"), S("t"), 0, NULL), 0);
    CHECK_EQ(xsd_wreg_fire_remove(f.r, S("/r"), S("n0\0"), "\x05\0\0\0/r", 6, &asks,
                                  out, sizeof out), -EINVAL);
    teardown(&f);
}

static void test_change_order_permissions_and_relative_paths(void)
{
    struct fixture f;
    struct delivery d[8];
    int64_t priv, guest, rel, n;
    size_t k;

    setup(&f);
    priv = xsd_wreg_session_new(f.r);
    guest = xsd_wreg_session_new(f.r);
    rel = xsd_wreg_session_new(f.r);
    CHECK_EQ(xsd_wreg_session_set(f.r, (uint32_t)priv, 0, -1, 1), 0);
    CHECK_EQ(xsd_wreg_session_set(f.r, (uint32_t)guest, 5, -1, 0), 0);
    CHECK_EQ(xsd_wreg_session_set(f.r, (uint32_t)rel, 3, -1, 0), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)guest, S("/"), S("g"), 0, NULL), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)priv, S("/local/domain/3/x"), S("p"), 0, NULL), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)rel, S("/local/domain/3"), S("r"), 1, NULL), 0);
    mk(&f, "/local/domain/3", S("n3\0"));
    mk(&f, "/local/domain/3/x", S("n3\0"));
    /* the guest (dom5) may read neither the node nor its parent */
    n = xsd_wreg_fire_change(f.r, S("/local/domain/3/x"), S("n3\0"), NULL, 0, out, sizeof out);
    k = parse(out, n, d, 8, "/local/domain/3/x");
    CHECK_EQ(k, 2);
    CHECK_EQ(d[0].session, priv);
    CHECK(strcmp(d[0].ev, "/local/domain/3/x") == 0);
    CHECK_EQ(d[1].session, rel);
    CHECK(strcmp(d[1].ev, "x") == 0); /* relative to dom3's home */
    CHECK(d[1].klen == sizeof "/local/domain/3\0r" - 1 &&
          memcmp(d[1].key, "/local/domain/3\0r", d[1].klen) == 0);
    /* it could read the old permissions: told (SET_PERMS) */
    n = xsd_wreg_fire_change(f.r, S("/local/domain/3/x"), S("n3\0"), S("n3\0r5\0"), out,
                             sizeof out);
    k = parse(out, n, d, 8, "/local/domain/3/x");
    CHECK_EQ(k, 3);
    CHECK_EQ(d[0].session, guest);
    /* a target reads what its target reads */
    CHECK_EQ(xsd_wreg_session_set(f.r, (uint32_t)guest, 5, 3, 0), 0);
    n = xsd_wreg_fire_change(f.r, S("/local/domain/3/x"), S("n3\0"), NULL, 0, out, sizeof out);
    CHECK_EQ(parse(out, n, d, 8, "/local/domain/3/x"), 3);
    /* too small a buffer: the size needed, and the same answer at that size */
    n = xsd_wreg_fire_change(f.r, S("/local/domain/3/x"), S("n3\0"), NULL, 0, out, 5);
    CHECK(n > 5);
    CHECK_EQ(xsd_wreg_fire_change(f.r, S("/local/domain/3/x"), S("n3\0"), NULL, 0, out,
                                  (size_t)n), n);
    teardown(&f);
}

static void test_remove_asks_for_the_nodes_below(void)
{
    struct fixture f;
    struct delivery d[8];
    int64_t s, n;
    int asks = -1;
    /* /r/b (perms n0) then /r; the parent of /r/b is /r (n0 r7 lets dom7 read) */
    static const char below[] = "\x04\0\0\0/r/b\x03\0\0\0n0\0\x06\0\0\0n0\0r7\0";

    setup(&f);
    s = xsd_wreg_session_new(f.r);
    CHECK_EQ(xsd_wreg_session_set(f.r, (uint32_t)s, 7, -1, 0), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/r/b"), S("below"), 0, NULL), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/r/nothere"), S("gone"), 0, NULL), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)s, S("/"), S("above"), 0, NULL), 0);
    n = xsd_wreg_fire_remove(f.r, S("/r"), S("n0\0r7\0"), NULL, 0, &asks, out, sizeof out);
    CHECK_EQ(asks, 1);
    CHECK_EQ(n, sizeof "/r/b\0/r/nothere\0" - 1);
    CHECK(memcmp(out, "/r/b\0/r/nothere\0", (size_t)n) == 0);
    n = xsd_wreg_fire_remove(f.r, S("/r"), S("n0\0r7\0"), below, sizeof below - 1, &asks,
                             out, sizeof out);
    CHECK_EQ(asks, 0);
    CHECK_EQ(parse(out, n, d, 8, "/r"), 2);
    CHECK(strcmp(d[0].ev, "/r/b") == 0 && memcmp(d[0].key, "/r/b\0below", 10) == 0);
    CHECK(strcmp(d[1].ev, "/r") == 0 && memcmp(d[1].key, "/\0above", 7) == 0);
    /* the root's perms refuse dom7 and the root's parent ("/", n0) too */
    n = xsd_wreg_fire_remove(f.r, S("/r"), S("n0\0"), "", 0, &asks, out, sizeof out);
    CHECK_EQ(parse(out, n, d, 8, "/r"), 0);
    teardown(&f);
}

static void test_special_needs_privilege_or_perms(void)
{
    struct fixture f;
    struct delivery d[4];
    int64_t p, g, n;

    setup(&f);
    p = xsd_wreg_session_new(f.r);
    g = xsd_wreg_session_new(f.r);
    CHECK_EQ(xsd_wreg_session_set(f.r, (uint32_t)p, 0, -1, 1), 0);
    CHECK_EQ(xsd_wreg_session_set(f.r, (uint32_t)g, 4, -1, 0), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)g, S("@releaseDomain"), S("g"), 1, NULL), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)p, S("@releaseDomain"), S("p"), 0, NULL), 0);
    CHECK_EQ(xsd_wreg_add(f.r, (uint32_t)p, S("/"), S("tree"), 0, NULL), 0);
    n = xsd_wreg_fire_special(f.r, S("@releaseDomain"), NULL, 0, out, sizeof out);
    CHECK_EQ(parse(out, n, d, 4, "@releaseDomain"), 1);
    CHECK_EQ(d[0].session, p);
    n = xsd_wreg_fire_special(f.r, S("@releaseDomain"), S("n0\0r4\0"), out, sizeof out);
    CHECK_EQ(parse(out, n, d, 4, "@releaseDomain"), 2);
    CHECK_EQ(d[0].session, g); /* registered first */
    CHECK(strcmp(d[0].ev, "@releaseDomain") == 0); /* never rewritten */
    teardown(&f);
}

/* Random adds and removes over a few sessions against a model of which keys
 * each holds; after each step the counts agree, and at the end the listing
 * of each session is exactly its model. */
#define NS 4
#define NK 48

static void test_random_operations_against_a_model(void)
{
    struct fixture f;
    static char keys[NK][80];
    static size_t plens[NK], tlens[NK];
    int held[NS][NK];
    size_t text[NS], count[NS], total, i, j, at;
    int64_t s[NS], n;
    int rc, step;

    setup(&f);
    memset(held, 0, sizeof held);
    memset(text, 0, sizeof text);
    memset(count, 0, sizeof count);
    for (i = 0; i < NK; i++) {
        int len = snprintf(keys[i], 64, "/k/%u/%u", (unsigned)(i % 5), (unsigned)i);
        plens[i] = (size_t)len;
        keys[i][len] = '\0';
        tlens[i] = i % 3;
        memcpy(keys[i] + len + 1, "ttt", tlens[i]);
    }
    for (i = 0; i < NS; i++)
        s[i] = xsd_wreg_session_new(f.r);
    for (step = 0; step < 4000; step++) {
        i = check_below(NS);
        j = check_below(NK);
        if (check_below(3) != 0) {
            rc = xsd_wreg_add(f.r, (uint32_t)s[i], keys[j], plens[j], keys[j] + plens[j] + 1,
                              tlens[j], 0, NULL);
            CHECK_EQ(rc, held[i][j] ? -EEXIST : 0);
            if (!held[i][j]) {
                held[i][j] = 1;
                count[i]++;
                text[i] += plens[j] + tlens[j];
            }
        } else {
            rc = xsd_wreg_remove(f.r, (uint32_t)s[i], keys[j], plens[j] + 1 + tlens[j]);
            CHECK_EQ(rc, held[i][j] ? 0 : -ENOENT);
            if (held[i][j]) {
                held[i][j] = 0;
                count[i]--;
                text[i] -= plens[j] + tlens[j];
            }
        }
        CHECK_EQ(xsd_wreg_session_count(f.r, (uint32_t)s[i]), count[i]);
        CHECK_EQ(xsd_wreg_session_text_bytes(f.r, (uint32_t)s[i]), text[i]);
    }
    for (total = i = 0; i < NS; i++) {
        total += count[i];
        n = xsd_wreg_session_watches(f.r, (uint32_t)s[i], out, sizeof out);
        CHECK(n >= 0);
        for (at = 0, j = 0; n > 0 && at < (size_t)n; j++) {
            size_t pl = rd16(out + at + 8), tl = rd16(out + at + 10), k2, found = 0;

            for (k2 = 0; k2 < NK; k2++)
                if (held[i][k2] && plens[k2] == pl && tlens[k2] == tl &&
                    memcmp(keys[k2], out + at + 12, pl + 1 + tl) == 0)
                    found++;
            CHECK_EQ(found, 1);
            at += 12 + pl + 1 + tl;
        }
        CHECK_EQ(j, count[i]);
    }
    CHECK_EQ(xsd_wreg_count(f.r), total);
    CHECK_EQ(xsd_trie_count(f.t), total);
    teardown(&f);
}

int main(void)
{
    RUN(test_add_find_remove_and_counts);
    RUN(test_bad_input_is_refused);
    RUN(test_change_order_permissions_and_relative_paths);
    RUN(test_remove_asks_for_the_nodes_below);
    RUN(test_special_needs_privilege_or_perms);
    RUN(test_random_operations_against_a_model);
    return check_report();
}
