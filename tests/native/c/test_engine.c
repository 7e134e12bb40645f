/*
 * test_engine.c: the request path through engine.h, under ASan/UBSan.
 *
 * Replies byte for byte for each request type the engine answers, the
 * cases it leaves to Python (and that they change nothing), every stop
 * reason, and a seeded random stream from several conns with
 * xsd_store_check after every run. The exhaustive comparison with the
 * Python core is tests/native/test_engine.py; this covers the C contract
 * where the sanitizers watch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine.h"
#include "engine_packets.h"
#include "store_dump.h"
#include "watchreg.h"

static xsd_store *store;
static xsd_trie *trie;
static xsd_engine *engine;
static xsd_conn *dom0, *guest1, *guest2, *ro;
static char out[8 * XSD_REPLY_MAX];
static struct stream in;
static struct xsd_run last;     /* one()'s run: its event, when it stopped EVENTS */

static void setup(void)
{
    store = xsd_store_new();
    trie = xsd_trie_new();
    engine = xsd_engine_new(store, trie);
    dom0 = xsd_conn_new(engine);
    guest1 = xsd_conn_new(engine);
    guest2 = xsd_conn_new(engine);
    ro = xsd_conn_new(engine);
    if (!store || !trie || !engine || !dom0 || !guest1 || !guest2 || !ro)
        abort();
    xsd_conn_configure(dom0, 0, -1, 1, 0, 2048);
    xsd_conn_configure(guest1, 1, -1, 0, 0, 2048);
    xsd_conn_configure(guest2, 2, 1, 0, 0, 2048);     /* acts for domain 1 */
    xsd_conn_configure(ro, 0, -1, 1, 1, 2048);
}

static void teardown(void)
{
    xsd_conn_free(dom0);
    xsd_conn_free(guest1);
    xsd_conn_free(guest2);
    xsd_conn_free(ro);
    xsd_engine_free(engine);
    xsd_trie_free(trie);
    xsd_store_free(store);
}

/* Run one packet on conn; the reply payload in *reply (into out) or NULL when
 * the engine left it to Python, which must then have changed nothing. */
static int64_t one(xsd_conn *c, uint32_t type, uint32_t tx_id, const char *payload, size_t plen,
                   const char **reply)
{
    struct xsd_run r;
    size_t before_len, after_len;
    char *before = store_dump(store, &before_len), *after;

    in.len = 0;
    put_packet(&in, type, 77, tx_id, payload, plen);
    xsd_engine_run(engine, c, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r);
    CHECK_EQ(xsd_store_check(store), 0);
    *reply = NULL;
    if (r.stop == XSD_RUN_PYTHON) {
        CHECK_EQ(r.consumed, 0);
        after = store_dump(store, &after_len);
        CHECK(before_len == after_len && memcmp(before, after, after_len) == 0);
        free(after);
        free(before);
        return -1;
    }
    free(before);
    last = r;
    CHECK(r.stop == XSD_RUN_DONE || r.stop == XSD_RUN_EVENTS);
    CHECK_EQ(r.reply_at, 0);
    CHECK((r.stop == XSD_RUN_EVENTS) == (r.event != NULL && r.event_len > 0));
    CHECK_EQ(r.consumed, in.len);
    CHECK_EQ(r.handled, 1);
    CHECK_EQ(field(out, 0), type);
    CHECK_EQ(field(out, 1), 77);
    CHECK_EQ(field(out, 3) + XSD_HEADER_SIZE, r.out_len);
    *reply = out + XSD_HEADER_SIZE;
    return field(out, 3);
}

static int answers(xsd_conn *c, uint32_t type, const char *payload, size_t plen,
                   const char *want, size_t want_len)
{
    const char *reply;
    int64_t n = one(c, type, 0, payload, plen, &reply);

    return n == (int64_t)want_len && memcmp(reply, want, want_len) == 0;
}

static int punts(xsd_conn *c, uint32_t type, const char *payload, size_t plen)
{
    const char *reply;

    return one(c, type, 0, payload, plen, &reply) < 0;
}

/* The request was answered "OK" and stopped EVENTS with exactly this event. */
static int fires(xsd_conn *c, uint32_t type, const char *payload, size_t plen,
                 const char *event, size_t event_len)
{
    return answers(c, type, payload, plen, "OK", 3) && last.stop == XSD_RUN_EVENTS &&
           last.event_len == event_len && memcmp(last.event, event, event_len) == 0;
}

/* The request was answered "OK" without firing anything. */
static int quiet(xsd_conn *c, uint32_t type, const char *payload, size_t plen)
{
    return answers(c, type, payload, plen, "OK", 3) && last.stop == XSD_RUN_DONE;
}

static void test_requests_answered_in_c(void)
{
    setup();
    CHECK(answers(dom0, T_WRITE, P("/a/b\0hello"), P("OK\0")));
    CHECK(answers(dom0, T_READ, P("/a/b\0"), P("hello")));
    CHECK(answers(dom0, T_READ, P("/a\0"), P("")));              /* created, empty */
    CHECK(answers(dom0, T_DIRECTORY, P("/a\0"), P("b\0")));
    CHECK(answers(dom0, T_DIRECTORY, P("/a/b\0"), P("")));
    CHECK(answers(dom0, T_GET_PERMS, P("/a/b\0"), P("n0\0")));
    CHECK(answers(dom0, T_MKDIR, P("/a\0"), P("OK\0")));         /* existing */
    CHECK(answers(dom0, T_MKDIR, P("/a/c\0"), P("OK\0")));
    CHECK(answers(dom0, T_DIRECTORY, P("/a\0"), P("b\0c\0")));
    /* Permissions re-encoded in canonical decimal (perms.parse). */
    CHECK(answers(dom0, T_SET_PERMS, P("/a/b\0n0\0r01\0"), P("OK\0")));
    CHECK(answers(dom0, T_GET_PERMS, P("/a/b\0"), P("n0\0r1\0")));
    /* Relative to /local/domain/<domid>. */
    CHECK(answers(dom0, T_WRITE, P("rel\0x"), P("OK\0")));
    CHECK(answers(dom0, T_READ, P("/local/domain/0/rel\0"), P("x")));
    /* New nodes inherit the closest ancestor's permissions. */
    CHECK(answers(dom0, T_WRITE, P("/a/b/deep/er\0v"), P("OK\0")));
    CHECK(answers(dom0, T_GET_PERMS, P("/a/b/deep\0"), P("n0\0r1\0")));
    CHECK(answers(dom0, T_RM, P("/a/b\0"), P("OK\0")));
    CHECK(answers(dom0, T_DIRECTORY, P("/a\0"), P("c\0")));
    /* DIRECTORY_PART: gen, the children, one more NUL on the last chunk. */
    {
        char want[32];
        struct xsd_node_view v;
        int n;
        xsd_store_get(store, "/a", 2, &v);
        n = snprintf(want, sizeof want, "%llu%cc%c%c", (unsigned long long)v.gen, 0, 0, 0);
        CHECK(answers(dom0, T_DIRECTORY_PART, P("/a\0" "0\0"), want, (size_t)n));
        n = snprintf(want, sizeof want, "%llu%c%c", (unsigned long long)v.gen, 0, 0);
        CHECK(answers(dom0, T_DIRECTORY_PART, P("/a\0" "9\0"), want, (size_t)n));
    }
    CHECK_EQ(xsd_conn_requests(dom0, T_WRITE), 3);
    CHECK_EQ(xsd_conn_requests(dom0, T_READ), 3);
    CHECK_EQ(xsd_conn_requests(guest1, T_READ), 0);
    CHECK_EQ(xsd_conn_requests(dom0, 1000), 0);
    teardown();
}

static void test_unprivileged_reads_follow_permissions(void)
{
    setup();
    CHECK(answers(dom0, T_WRITE, P("/p\0v"), P("OK\0")));
    CHECK(punts(guest1, T_READ, P("/p\0")));                     /* n0: EACCES */
    CHECK(answers(dom0, T_SET_PERMS, P("/p\0n0\0r1\0"), P("OK\0")));
    CHECK(answers(guest1, T_READ, P("/p\0"), P("v")));
    CHECK(answers(guest2, T_READ, P("/p\0"), P("v")));          /* through its target */
    CHECK(answers(dom0, T_SET_PERMS, P("/p\0r0\0n2\0r1\0"), P("OK\0")));
    CHECK(punts(guest2, T_READ, P("/p\0")));                     /* first entry naming it: n */
    CHECK(answers(guest1, T_GET_PERMS, P("/p\0"), P("r0\0n2\0r1\0")));
    CHECK(answers(dom0, T_SET_PERMS, P("/p\0n1\0"), P("OK\0")) == 0);   /* owner 1 unknown */
    CHECK_EQ(xsd_engine_domain_known(engine, 1, 1), 0);
    CHECK(answers(dom0, T_SET_PERMS, P("/p\0w1\0"), P("OK\0")));
    CHECK(answers(guest1, T_READ, P("/p\0"), P("v")));          /* the owner */
    CHECK(answers(guest2, T_READ, P("/p\0"), P("v")));          /* its target owns it */
    /* Changes by unprivileged callers need quotas: Python's. */
    CHECK(punts(guest1, T_WRITE, P("/p\0w")));
    CHECK(punts(guest1, T_RM, P("/p\0")));
    CHECK(answers(guest1, T_MKDIR, P("/p\0"), P("OK\0")));      /* existing, writable */
    CHECK(punts(guest1, T_READ, P("/missing\0")));
    CHECK_EQ(xsd_engine_domain_known(engine, 0x7FF0, 1), -EINVAL);
    /* With its quotas pushed, a guest's changes within them run here. */
    {
        struct xsd_quotas q = { .node_size = 4, .permissions = 2 };

        q.memory = (uint32_t)xsd_store_bytes_of(store, 1);      /* all it has */
        xsd_conn_quotas(guest1, &q);
        CHECK(answers(guest1, T_WRITE, P("/p\0w"), P("OK\0")));    /* same length */
        CHECK(punts(guest1, T_WRITE, P("/p\0ww")));             /* grows its own node: ENOMEM */
        q.memory++;
        xsd_conn_quotas(guest1, &q);
        CHECK(answers(guest1, T_WRITE, P("/p\0ww"), P("OK\0")));   /* one byte more fits */
        /* Creating: quota.memory_of_node, 40 + path + value + 8 per entry. */
        q.memory = (uint32_t)xsd_store_bytes_of(store, 1) + 40 + 6 + 2 + 8 - 1;
        q.nodes = (uint32_t)xsd_store_owned_by(store, 1) + 1;
        xsd_conn_quotas(guest1, &q);
        CHECK(punts(guest1, T_WRITE, P("/p/new\0ab")));         /* a byte short: ENOMEM */
        q.memory++;
        xsd_conn_quotas(guest1, &q);
        CHECK(punts(guest1, T_WRITE, P("/p/new/er\0ab")));      /* two nodes: ENOSPC */
        CHECK(answers(guest1, T_WRITE, P("/p/new\0ab"), P("OK\0")));
        CHECK(answers(guest1, T_GET_PERMS, P("/p/new\0"), P("w1\0")));   /* its own */
        CHECK(punts(guest1, T_MKDIR, P("/p/new2\0")));          /* the nodes quota */
        q.nodes = 0;
        q.memory = 0;
        /* The soft memory quota: crossing it, or coming back under it, is logged or
         * reset by Python; past it and warned already, no word: here. */
        q.memory_soft = (uint32_t)xsd_store_bytes_of(store, 1) + 40 + 7 + 8;
        xsd_conn_quotas(guest1, &q);
        CHECK(answers(guest1, T_MKDIR, P("/p/new2\0"), P("OK\0")));     /* at it */
        CHECK(punts(guest1, T_MKDIR, P("/p/new3\0")));          /* crosses it */
        q.soft_warned = 1;
        xsd_conn_quotas(guest1, &q);
        CHECK(answers(guest1, T_MKDIR, P("/p/new3\0"), P("OK\0")));
        q.watch_bytes = 1u << 20;                                /* its watches count too */
        q.soft_warned = 0;
        q.memory_soft = 0;
        q.memory = (uint32_t)xsd_store_bytes_of(store, 1) + (1u << 20) + 60;
        xsd_conn_quotas(guest1, &q);
        CHECK(answers(guest1, T_WRITE, P("/p/new3\0x"), P("OK\0")));
        CHECK(punts(guest1, T_MKDIR, P("/p/new4/deeper\0")));   /* 2 * 40 + ...: ENOMEM */
        q.watch_bytes = 0;
        xsd_conn_quotas(guest1, &q);
        CHECK(answers(guest1, T_MKDIR, P("/p/new4/deeper\0"), P("OK\0")));
        CHECK(answers(guest1, T_GET_PERMS, P("/p/new4\0"), P("w1\0")));
        CHECK(answers(dom0, T_RM, P("/p/new\0"), P("OK\0")));
        CHECK(answers(dom0, T_RM, P("/p/new2\0"), P("OK\0")));
        CHECK(answers(dom0, T_RM, P("/p/new3\0"), P("OK\0")));
        CHECK(answers(dom0, T_RM, P("/p/new4\0"), P("OK\0")));
        /* Through its target: guest2 acts for domain 1 and owns what it creates. */
        q = (struct xsd_quotas){ .node_size = 4 };
        xsd_conn_quotas(guest2, &q);
        CHECK(answers(guest2, T_WRITE, P("/p/t\0v"), P("OK\0")));
        CHECK(answers(guest2, T_GET_PERMS, P("/p/t\0"), P("w2\0")));
        CHECK(answers(dom0, T_RM, P("/p/t\0"), P("OK\0")));
        q = (struct xsd_quotas){ .node_size = 4, .permissions = 2 };
        xsd_conn_quotas(guest1, &q);
    }
    CHECK(answers(guest1, T_SET_PERMS, P("/p\0w1\0r2\0"), P("OK\0")));
    CHECK(punts(guest1, T_SET_PERMS, P("/p\0w1\0r2\0r3\0")));    /* permissions quota */
    CHECK(punts(guest1, T_SET_PERMS, P("/p\0w0\0")));          /* EPERM: a new owner */
    CHECK(answers(dom0, T_WRITE, P("/p\0longer"), P("OK\0")));
    CHECK(punts(guest1, T_WRITE, P("/p\0abcde")));              /* node-size */
    CHECK(answers(guest1, T_WRITE, P("/p\0abcd"), P("OK\0")));
    CHECK(answers(dom0, T_WRITE, P("/q\0v"), P("OK\0")));
    CHECK(punts(guest1, T_RM, P("/q\0")));                      /* n0: EACCES */
    CHECK(answers(guest1, T_RM, P("/p\0"), P("OK\0")));
    teardown();
}

static void test_python_takes_what_is_unusual(void)
{
    static const struct { uint32_t type; const char *p; size_t len; } cases[] = {
        { T_READ, P("/a/\0") }, { T_READ, P("//a\0") }, { T_READ, P("/a//b\0") },
        { T_READ, P("@introduceDomain\0") }, { T_READ, P("/a b\0") }, { T_READ, P("/a") },
        { T_READ, P("") }, { T_READ, P("\0") }, { T_READ, P("/a\0/b\0") },
        { T_READ, P("/a\xff\0") }, { T_GET_PERMS, P("@releaseDomain\0") },
        { T_WRITE, P("/a") }, { T_WRITE, P("/a/\0v") }, { T_MKDIR, P("/a/b") },
        { T_RM, P("/\0") }, { T_RM, P("/missing\0") }, { T_SET_PERMS, P("/a\0") },
        { T_SET_PERMS, P("/a\0x1\0") }, { T_SET_PERMS, P("/a\0r\0") },
        { T_SET_PERMS, P("/a\0r0\0\0") }, { T_SET_PERMS, P("/a\0r70000\0") },
        { T_SET_PERMS, P("/missing\0r0\0") }, { T_SET_PERMS, P("@releaseDomain\0r0\0") },
        { T_DIRECTORY_PART, P("/a\0") }, { T_DIRECTORY_PART, P("/a\0x\0") },
        { T_DIRECTORY_PART, P("/a\0" "1\0" "2\0") }, { T_DIRECTORY_PART, P("/a\0" "99999999999\0") },
        { T_WATCH, P("/a\0tok\0") }, { 99, P("") },
    };
    char long_path[2100];

    setup();
    CHECK(answers(dom0, T_WRITE, P("/a\0v"), P("OK\0")));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int punted = punts(dom0, cases[i].type, cases[i].p, cases[i].len);
        if (!punted)
            fprintf(stderr, "  case %zu answered\n", i);
        CHECK(punted);
    }
    /* Over path-max (its /local/domain/N/ prefix is Python's to discount). */
    long_path[0] = '/';
    memset(long_path + 1, 'x', sizeof long_path - 2);
    long_path[sizeof long_path - 1] = '\0';
    CHECK(punts(dom0, T_WRITE, long_path, sizeof long_path));
    /* A transaction, a read-only socket, no XSD_RUN_MUTATE. */
    {
        const char *reply;
        struct xsd_run r;
        CHECK(one(dom0, T_READ, 5, P("/a\0"), &reply) < 0);
        CHECK(punts(ro, T_WRITE, P("/a\0w")));
        CHECK(punts(ro, T_MKDIR, P("/a\0")));
        CHECK(answers(ro, T_READ, P("/a\0"), P("v")));
        in.len = 0;
        put_packet(&in, T_WRITE, 1, 0, P("/a\0w"));
        CHECK_EQ(xsd_engine_run(engine, dom0, in.buf, in.len, out, sizeof out, 0, &r),
                 XSD_RUN_PYTHON);
    }
    teardown();
}

static void test_a_watched_change_is_made_and_described(void)
{
    struct xsd_run r;

    setup();
    CHECK(answers(dom0, T_WRITE, P("/w/x/y\0v"), P("OK\0")));
    CHECK_EQ(xsd_trie_add(trie, "/w/x", 4, 1), 0);
    CHECK(fires(dom0, T_WRITE, P("/w/x\0v"), P("C/w/x\0n0\0\0\0")));         /* on it */
    CHECK(fires(dom0, T_WRITE, P("/w/x/y/z\0v"), P("C/w/x/y/z\0n0\0\0\0"))); /* below */
    CHECK(fires(dom0, T_SET_PERMS, P("/w/x/y\0n0\0r1\0"),
                P("C/w/x/y\0n0\0r1\0\0n0\0\0")));            /* new perms, old perms */
    CHECK(fires(dom0, T_MKDIR, P("/w/x/y/new\0"), P("C/w/x/y/new\0n0\0r1\0\0\0")));
    CHECK(answers(dom0, T_READ, P("/w/x/y/z\0"), P("v")));     /* the change was made */
    /* A guest's write of a node it may write: the node's own perms. */
    {
        static const struct xsd_quotas none;
        xsd_conn_quotas(guest1, &none);
    }
    CHECK(punts(guest1, T_WRITE, P("/w/x/y\0g")));              /* it may only read: EACCES */
    CHECK(answers(dom0, T_SET_PERMS, P("/w/x/y\0n0\0b1\0"), P("OK\0")));
    CHECK(fires(guest1, T_WRITE, P("/w/x/y\0g"), P("C/w/x/y\0n0\0b1\0\0\0")));
    /* RM: the root then every removed node, children first, the root last. */
    CHECK(fires(dom0, T_RM, P("/w\0"),
                P("R/w\0/w/x/y/z\0n0\0\0/w/x/y/new\0n0\0r1\0\0/w/x/y\0n0\0b1\0\0"
                  "/w/x\0n0\0\0/w\0n0\0\0")));
    CHECK(punts(dom0, T_READ, P("/w/x/y\0")));                  /* removed: Python's ENOENT */
    CHECK(quiet(dom0, T_WRITE, P("/w/other\0v")));               /* no watch on it now */
    CHECK(quiet(dom0, T_MKDIR, P("/w\0")));                      /* existing: no event */
    CHECK_EQ(xsd_trie_add(trie, "/w/other", 8, 3), 0);
    CHECK(quiet(dom0, T_MKDIR, P("/w/other\0")));                /* existing, watched */
    CHECK(quiet(dom0, T_WRITE, P("/u\0v")));
    CHECK_EQ(xsd_trie_add(trie, "@introduceDomain", 16, 2), 0);  /* specials fire nothing here */
    CHECK(quiet(dom0, T_RM, P("/u\0")));
    /* In a batch: the replies before it, then its reply from reply_at; the rest waits. */
    in.len = 0;
    put_packet(&in, T_READ, 1, 0, P("/w/other\0"));
    put_packet(&in, T_WRITE, 2, 0, P("/w/other\0longer"));
    put_packet(&in, T_READ, 3, 0, P("/w/other\0"));
    CHECK_EQ(xsd_engine_run(engine, dom0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_EVENTS);
    CHECK_EQ(r.handled, 2);
    CHECK_EQ(r.consumed, 2 * 16 + 9 + 15);
    CHECK_EQ(r.reply_at, 16 + 1);
    CHECK_EQ(r.out_len, r.reply_at + 16 + 3);
    CHECK_EQ(field(out + r.reply_at, 1), 2);
    CHECK(r.event_len == sizeof "C/w/other\0n0\0\0" &&
          memcmp(r.event, "C/w/other\0n0\0\0", r.event_len) == 0);
    CHECK_EQ(xsd_engine_run(engine, dom0, in.buf + r.consumed, in.len - r.consumed, out,
                            sizeof out, XSD_RUN_MUTATE, &r), XSD_RUN_DONE);
    CHECK(r.handled == 1 && r.event == NULL && r.event_len == 0);
    CHECK(memcmp(out + 16, "longer", 6) == 0);
    teardown();
}

static void test_stop_reasons(void)
{
    struct xsd_run r;
    char small[XSD_REPLY_MAX + 8];

    setup();
    in.len = 0;
    put_packet(&in, T_WRITE, 1, 0, P("/s\0v"));
    put_packet(&in, T_READ, 2, 0, P("/s\0"));
    put_packet(&in, T_READ, 3, 0, P("/s\0"));
    /* Every split point: DONE with consumed at a packet boundary. */
    for (size_t cut = 0; cut <= in.len; cut++) {
        xsd_engine_run(engine, dom0, in.buf, cut, out, sizeof out, XSD_RUN_MUTATE, &r);
        CHECK_EQ(r.stop, XSD_RUN_DONE);
        CHECK(r.consumed <= cut && cut - r.consumed < 16 + 5);
    }
    CHECK_EQ(xsd_engine_run(engine, dom0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    CHECK_EQ(r.handled, 3);
    CHECK_EQ(r.journaled, 4);
    CHECK_EQ(r.out_len, 3 * 16 + 3 + 1 + 1);
    /* FULL: room for one maximal reply only. */
    CHECK_EQ(xsd_engine_run(engine, dom0, in.buf, in.len, small, sizeof small, XSD_RUN_MUTATE, &r),
             XSD_RUN_FULL);
    CHECK_EQ(r.handled, 1);
    CHECK_EQ(r.consumed, 16 + 4);
    CHECK_EQ(xsd_engine_run(engine, dom0, in.buf, in.len, small, 100, XSD_RUN_MUTATE, &r),
             XSD_RUN_FULL);
    CHECK_EQ(r.consumed, 0);
    /* BAD: a length over 4096 stops at its header. */
    {
        uint32_t h[4] = { T_READ, 9, 0, XSD_PAYLOAD_MAX + 1 };
        size_t at = in.len;
        memcpy(in.buf + in.len, h, sizeof h);
        in.len += sizeof h;
        CHECK_EQ(xsd_engine_run(engine, dom0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
                 XSD_RUN_BAD);
        CHECK_EQ(r.consumed, at);
        CHECK_EQ(r.handled, 3);
    }
    teardown();
}

static void test_directory_part_pages_a_wide_node(void)
{
    char payload[64], *all = NULL;
    size_t all_len = 0, offset = 0;
    int pages = 0;
    struct xsd_run r;

    setup();
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(payload, sizeof payload, "/wide/child-%04d-xxxxxxxx%c", i, 0);
        in.len = 0;
        put_packet(&in, T_MKDIR, 1, 0, payload, (size_t)n);
        CHECK_EQ(xsd_engine_run(engine, dom0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
                 XSD_RUN_DONE);
    }
    for (;;) {
        int n = snprintf(payload, sizeof payload, "/wide%c%zu%c", 0, offset, 0);
        const char *reply, *chunk;
        int64_t len = one(dom0, T_DIRECTORY_PART, 0, payload, (size_t)n, &reply);
        size_t clen;
        CHECK(len > 0 && len <= (int64_t)XSD_PAYLOAD_MAX);
        if (len <= 0)
            break;
        pages++;
        chunk = (const char *)memchr(reply, '\0', (size_t)len) + 1;
        clen = (size_t)len - (size_t)(chunk - reply);
        all = realloc(all, all_len + clen);
        if (!all)
            abort();
        memcpy(all + all_len, chunk, clen);
        all_len += clen;
        if (clen >= 2 && chunk[clen - 1] == '\0' && chunk[clen - 2] == '\0')
            break;
        offset += clen;
    }
    CHECK(pages >= 4);
    /* The pages put together: the whole listing and the final NUL. */
    {
        int64_t n = xsd_store_children(store, "/wide", 5, NULL, 0);
        char *want = malloc((size_t)n + 1);
        if (!want)
            abort();
        xsd_store_children(store, "/wide", 5, want, (size_t)n);
        want[n] = '\0';
        CHECK_EQ(all_len, n + 1);
        CHECK(all_len == (size_t)n + 1 && memcmp(all, want, all_len) == 0);
        free(want);
    }
    /* DIRECTORY itself is over 4096 bytes: E2BIG is Python's. */
    CHECK(punts(dom0, T_DIRECTORY, P("/wide\0")));
    free(all);
    teardown();
}

/* A seeded generator (rand_r is not C11). */
static unsigned rand_r_(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) & 0x7fff;
}

/* Random requests from a small dictionary, batches from every conn: every
 * reply matches its request's header, the store stays sound. */
static void test_random_streams_keep_the_store_sound(void)
{
    static const char *const paths[] = { "/a", "/a/b", "/a/b/c", "/b", "/w", "/w/x", "a",
                                         "a/b", "/", "/a/", "@x", "/local/domain/1" };
    static const char *const perms[] = { "n0", "r1", "b2", "w0", "n1", "r9", "x" };
    static const uint32_t types[] = { T_READ, T_DIRECTORY, T_DIRECTORY_PART, T_GET_PERMS,
                                      T_WRITE, T_MKDIR, T_RM, T_SET_PERMS, T_WATCH };
    xsd_conn *conns[4];
    unsigned seed = 12345, events = 0;

    setup();
    conns[0] = dom0, conns[1] = guest1, conns[2] = guest2, conns[3] = ro;
    xsd_engine_domain_known(engine, 1, 1);
    xsd_trie_add(trie, "/w/x", 4, 1);
    for (int batch = 0; batch < 3000; batch++) {
        char payload[128];
        size_t pos = 0;
        xsd_conn *c = conns[rand_r_(&seed) % 4];
        in.len = 0;
        for (int i = rand_r_(&seed) % 6; i >= 0; i--) {
            uint32_t type = types[rand_r_(&seed) % 9];
            const char *path = paths[rand_r_(&seed) % 12];
            int n = snprintf(payload, sizeof payload, "%s%c%s%c%s", path, 0,
                             type == T_DIRECTORY_PART ? "0" : perms[rand_r_(&seed) % 7], 0,
                             type == T_SET_PERMS ? perms[rand_r_(&seed) % 7] : "");
            size_t plen = type == T_WRITE || type == T_SET_PERMS || type == T_DIRECTORY_PART
                              ? (size_t)n : strlen(path) + 1;
            put_packet(&in, type, (uint32_t)i, rand_r_(&seed) % 20 == 0, payload, plen);
        }
        while (pos < in.len) {
            struct xsd_run r;
            size_t at = 0, last_at = 0;
            xsd_engine_run(engine, c, in.buf + pos, in.len - pos, out, sizeof out,
                           rand_r_(&seed) % 8 ? XSD_RUN_MUTATE : 0, &r);
            CHECK_EQ(xsd_store_check(store), 0);
            for (uint32_t k = 0; k < r.handled; k++) {     /* replies mirror requests */
                CHECK_EQ(field(out + at, 0), field(in.buf + pos, 0));
                CHECK_EQ(field(out + at, 1), field(in.buf + pos, 1));
                CHECK_EQ(field(out + at, 2), 0);
                last_at = at;
                at += XSD_HEADER_SIZE + field(out + at, 3);
                pos += XSD_HEADER_SIZE + field(in.buf + pos, 3);
            }
            CHECK_EQ(at, r.out_len);
            if (r.stop == XSD_RUN_DONE)
                break;
            if (r.stop == XSD_RUN_EVENTS) {     /* after the change, its reply last */
                CHECK(r.handled >= 1 && r.reply_at == last_at);
                CHECK(r.event_len > 2 && (r.event[0] == 'C' || r.event[0] == 'R'));
                CHECK_EQ(r.event[r.event_len - 1], '\0');
                events++;
                continue;
            }
            CHECK_EQ(r.stop, XSD_RUN_PYTHON);
            pos += XSD_HEADER_SIZE + field(in.buf + pos, 3);      /* Python's */
        }
    }
    CHECK(events > 30);         /* 54 with this seed: watched changes stopped EVENTS */
    teardown();
}

/* WATCH and UNWATCH through a C registry (engine.h): the reply, then the
 * initial event as a group flagged XSD_DELIVERY_AFTER at that reply; the
 * errors and the unusual left to Python with nothing registered. */
static unsigned le16(const char *p)
{
    return (unsigned)(unsigned char)p[0] | (unsigned)(unsigned char)p[1] << 8;
}

/* The run's one group: AFTER-flagged at reply_at, path, one delivery to
 * session s of token with event path ev ("": the group's path). */
static int initial_group(const struct xsd_run *r, size_t reply_at, const char *path,
                         uint32_t s, const char *ev, const char *token)
{
    const char *g = r->deliveries, *d;
    uint64_t at;
    uint32_t plen, rlen, ds;
    size_t evlen = strlen(ev), glen = strlen(path), tlen = strlen(token);

    if (!g || r->deliveries_len < XSD_DELIVERY_GROUP_HEADER)
        return 0;
    memcpy(&at, g, 8);
    memcpy(&plen, g + 8, 4);
    memcpy(&rlen, g + 12, 4);
    d = g + XSD_DELIVERY_GROUP_HEADER + plen;
    memcpy(&ds, d, 4);              /* little-endian: the host's here (x86, arm64) */
    return at == ((uint64_t)reply_at | XSD_DELIVERY_AFTER) && plen == glen &&
           memcmp(g + XSD_DELIVERY_GROUP_HEADER, path, glen) == 0 &&
           r->deliveries_len == XSD_DELIVERY_GROUP_HEADER + plen + rlen &&
           ds == s && le16(d + 4) == (evlen ? evlen : XSD_WREG_SAME_PATH) &&
           le16(d + 6) == glen && le16(d + 8) == tlen &&
           memcmp(d + 10, ev, evlen) == 0 && memcmp(d + 10 + evlen, path, glen) == 0 &&
           d[10 + evlen + glen] == '\0' && memcmp(d + 11 + evlen + glen, token, tlen) == 0 &&
           rlen == 10 + evlen + glen + 1 + tlen;
}

static int run_watch(xsd_engine *e, xsd_conn *c, uint32_t type, const char *payload,
                     size_t plen, struct xsd_run *r)
{
    in.len = 0;
    put_packet(&in, type, 5, 0, payload, plen);
    return xsd_engine_run(e, c, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, r);
}

/* The watch log entry at r->watch_log + at is (kind, relative, key[0..klen)):
 * where the next starts, or 0. */
static size_t logged(const struct xsd_run *r, size_t at, int kind, int relative,
                     const char *key, size_t klen)
{
    uint32_t len;

    if (r->watch_log == NULL || r->watch_log_len - at < XSD_WATCH_LOG_HEADER)
        return 0;
    memcpy(&len, r->watch_log + at, 4);
    if (len != klen || r->watch_log[at + 4] != kind || r->watch_log[at + 5] != relative ||
        r->watch_log_len - at - XSD_WATCH_LOG_HEADER < klen ||
        memcmp(r->watch_log + at + XSD_WATCH_LOG_HEADER, key, klen) != 0)
        return 0;
    return at + XSD_WATCH_LOG_HEADER + klen;
}

/* Two conns with watch sessions in a fresh store: 0 privileged (dom0), 1 a
 * guest (domain 1); neither has its registry handle yet (xsd_conn_watches). */
struct watch_world {
    xsd_trie *t;
    xsd_wreg *reg;
    xsd_engine *e;
    xsd_conn *c0, *c1;
    int64_t s0, s1;
};

static struct watch_world watch_world_open(void)
{
    struct watch_world w;

    setup();
    w.t = xsd_trie_new();
    w.reg = w.t ? xsd_wreg_new(w.t, store) : NULL;
    w.e = w.reg ? xsd_engine_new(store, w.t) : NULL;
    w.c0 = w.e ? xsd_conn_new(w.e) : NULL;
    w.c1 = w.e ? xsd_conn_new(w.e) : NULL;
    if (!w.c0 || !w.c1)
        abort();
    xsd_engine_watches(w.e, w.reg);
    w.s0 = xsd_wreg_session_new(w.reg);
    w.s1 = xsd_wreg_session_new(w.reg);
    CHECK(w.s0 >= 0 && w.s1 >= 0);
    CHECK_EQ(xsd_wreg_session_set(w.reg, (uint32_t)w.s0, 0, -1, 1), 0);
    CHECK_EQ(xsd_wreg_session_set(w.reg, (uint32_t)w.s1, 1, -1, 0), 0);
    xsd_conn_configure(w.c0, 0, -1, 1, 0, 2048);
    xsd_conn_configure(w.c1, 1, -1, 0, 0, 2048);
    return w;
}

static void watch_world_close(struct watch_world *w)
{
    xsd_conn_free(w->c0);
    xsd_conn_free(w->c1);
    xsd_engine_free(w->e);
    xsd_wreg_free(w->reg);
    xsd_trie_free(w->t);
    teardown();
}

static void test_watch_and_unwatch_through_the_registry(void)
{
    static const struct xsd_quotas guest_quotas = { .memory = 100 };
    struct watch_world w = watch_world_open();
    xsd_wreg *reg = w.reg;
    xsd_engine *e = w.e;
    xsd_conn *c0 = w.c0, *c1 = w.c1;
    struct xsd_run r;
    int64_t s0 = w.s0, s1 = w.s1;

    /* No handle yet (Python gives one when it configures the conn): Python's. */
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/w\0t\0"), &r), XSD_RUN_PYTHON);
    /* Journaled: answered here and logged, in order; refusals log nothing. */
    xsd_conn_watches(c0, s0, 0, 1);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("rel\0r\0"), &r), XSD_RUN_DONE);
    CHECK(logged(&r, 0, XSD_WATCH_LOG_ADDED, 1, P("/local/domain/0/rel\0r")));
    CHECK(r.watch_log_len == XSD_WATCH_LOG_HEADER + sizeof "/local/domain/0/rel\0r" - 1);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("rel\0r\0"), &r), XSD_RUN_PYTHON);    /* EEXIST */
    CHECK(r.watch_log_len == 0 && r.watch_log == NULL);
    in.len = 0;
    put_packet(&in, T_UNWATCH, 1, 0, P("/local/domain/0/rel\0r\0"));
    put_packet(&in, T_WATCH, 2, 0, P("/w\0t"));
    put_packet(&in, T_UNWATCH, 3, 0, P("/w\0t\0"));
    put_packet(&in, T_UNWATCH, 4, 0, P("/w\0t\0"));                        /* ENOENT */
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_PYTHON);
    CHECK_EQ(r.handled, 3);
    {
        size_t at = logged(&r, 0, XSD_WATCH_LOG_REMOVED, 0, P("/local/domain/0/rel\0r"));

        at = at ? logged(&r, at, XSD_WATCH_LOG_ADDED, 0, P("/w\0t")) : 0;
        at = at ? logged(&r, at, XSD_WATCH_LOG_REMOVED, 0, P("/w\0t")) : 0;
        CHECK(at == r.watch_log_len);
    }
    CHECK_EQ(xsd_wreg_session_count(reg, (uint32_t)s0), 0);
    xsd_conn_watches(c0, s0, 0, 0);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/w\0t\0"), &r), XSD_RUN_DONE);
    CHECK(r.watch_log_len == 0);
    CHECK(r.out_len == 16 + 3 && memcmp(out + 16, "OK", 3) == 0);
    CHECK(initial_group(&r, 0, "/w", (uint32_t)s0, "", "t"));
    CHECK_EQ(xsd_wreg_session_count(reg, (uint32_t)s0), 1);
    /* relative (its event relative too), a last field without NUL, an empty token */
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("rel/x\0u"), &r), XSD_RUN_DONE);
    CHECK(initial_group(&r, 0, "/local/domain/0/rel/x", (uint32_t)s0, "rel/x", "u"));
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("@releaseDomain\0\0"), &r), XSD_RUN_DONE);
    CHECK(initial_group(&r, 0, "@releaseDomain", (uint32_t)s0, "", ""));
    /* EEXIST, EINVAL (one field, three, bad paths), ENOENT: Python's, nothing changed */
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/w\0t\0"), &r), XSD_RUN_PYTHON);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/w\0"), &r), XSD_RUN_PYTHON);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/w\0t\0x\0"), &r), XSD_RUN_PYTHON);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/w/\0t\0"), &r), XSD_RUN_PYTHON);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("@a/b\0t\0"), &r), XSD_RUN_PYTHON);
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("\0t\0"), &r), XSD_RUN_PYTHON);
    CHECK_EQ(run_watch(e, c0, T_UNWATCH, P("/w\0nope\0"), &r), XSD_RUN_PYTHON);
    CHECK_EQ(xsd_wreg_session_count(reg, (uint32_t)s0), 3);
    CHECK_EQ(run_watch(e, c0, T_UNWATCH, P("/local/domain/0/rel/x\0u\0"), &r), XSD_RUN_DONE);
    CHECK(r.out_len == 16 + 3 && r.deliveries_len == 0);
    CHECK_EQ(xsd_wreg_session_count(reg, (uint32_t)s0), 2);
    /* Registered, then fired by a write in the same run: after the WATCH's
     * reply its initial event, before the WRITE's reply the change's. */
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/n\0k\0"));
    put_packet(&in, T_WRITE, 2, 0, P("/n/m\0v"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    CHECK_EQ(r.handled, 2);
    {
        uint64_t first, second;
        uint32_t plen, rlen;

        CHECK(r.deliveries_len > 2 * XSD_DELIVERY_GROUP_HEADER);
        memcpy(&first, r.deliveries, 8);
        memcpy(&plen, r.deliveries + 8, 4);
        memcpy(&rlen, r.deliveries + 12, 4);
        memcpy(&second, r.deliveries + XSD_DELIVERY_GROUP_HEADER + plen + rlen, 8);
        CHECK(first == (0 | XSD_DELIVERY_AFTER) && second == 16 + 3);
    }
    /* A guest: its quotas first; then the watches quota (E2BIG) and the
     * memory quota (40 + path + token each) bind it. */
    xsd_conn_watches(c1, s1, 2, 0);
    CHECK_EQ(run_watch(e, c1, T_WATCH, P("/a\0tok\0"), &r), XSD_RUN_PYTHON);
    xsd_conn_quotas(c1, &guest_quotas);
    CHECK_EQ(run_watch(e, c1, T_WATCH, P("/a\0tok\0"), &r), XSD_RUN_DONE);
    CHECK_EQ(run_watch(e, c1, T_WATCH, P("/b\0tok\0"), &r), XSD_RUN_DONE);
    CHECK_EQ(run_watch(e, c1, T_WATCH, P("/c\0tok\0"), &r), XSD_RUN_PYTHON);    /* E2BIG */
    xsd_conn_watches(c1, s1, 5, 0);
    CHECK_EQ(run_watch(e, c1, T_WATCH, P("/c\0tok\0"), &r), XSD_RUN_PYTHON);    /* ENOMEM */
    CHECK_EQ(run_watch(e, c1, T_UNWATCH, P("/a\0tok\0"), &r), XSD_RUN_DONE);
    CHECK_EQ(run_watch(e, c1, T_WATCH, P("/c\0tok\0"), &r), XSD_RUN_DONE);      /* room again */
    CHECK_EQ(xsd_wreg_session_count(reg, (uint32_t)s1), 2);
    CHECK_EQ(xsd_conn_requests(c1, T_WATCH), 3);
    CHECK_EQ(xsd_conn_requests(c1, T_UNWATCH), 1);
    watch_world_close(&w);
}

/* out[*at..) holds a frame of type, req_id and payload: 1 and *at past it, or 0. */
static int frame_at(size_t *at, const struct xsd_run *r, uint32_t type, uint32_t req_id,
                    const char *payload, size_t plen)
{
    const char *f = out + *at;

    if (r->out_len - *at < XSD_HEADER_SIZE + plen || field(f, 0) != type ||
        field(f, 1) != req_id || field(f, 2) != 0 || field(f, 3) != plen ||
        memcmp(f + XSD_HEADER_SIZE, payload, plen) != 0)
        return 0;
    *at += XSD_HEADER_SIZE + plen;
    return 1;
}

/* The number of delivery groups of a run (all of them a WATCH's here). */
static size_t groups(const struct xsd_run *r)
{
    size_t at = 0, n = 0;

    while (at < r->deliveries_len) {
        uint32_t plen, rlen;

        memcpy(&plen, r->deliveries + at + 8, 4);
        memcpy(&rlen, r->deliveries + at + 12, 4);
        at += XSD_DELIVERY_GROUP_HEADER + plen + rlen;
        n++;
    }
    return n;
}

static void test_initial_events_written_among_the_replies(void)
{
    static const struct xsd_quotas guest_quotas = { .memory = 1000 };
    static char big[XSD_PAYLOAD_MAX];
    struct watch_world w = watch_world_open();
    xsd_engine *e = w.e;
    xsd_conn *c0 = w.c0, *c1 = w.c1;
    struct xsd_run r;
    int64_t s0 = w.s0, s1 = w.s1;
    size_t at = 0;

    xsd_conn_watches(c0, s0, 0, 0);
    xsd_conn_watches(c1, s1, 0, 0);
    xsd_conn_quotas(c1, &guest_quotas);
    xsd_conn_inline_events(c0, 2, sizeof out);
    xsd_conn_inline_events(c1, 1, sizeof out);

    /* Each event right after its WATCH's reply, as Python's event_frame makes it
     * (req_id 0, tx_id 0; a relative path as given; a token without its NUL
     * gets one); a reply between them moves along. */
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/w\0t\0"));
    put_packet(&in, T_READ, 2, 0, P("/\0"));
    put_packet(&in, T_WATCH, 3, 0, P("rel\0u"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    CHECK(r.events_inlined == 2 && r.deliveries_len == 0 && r.deliveries == NULL);
    CHECK(frame_at(&at, &r, T_WATCH, 1, P("OK\0")));
    CHECK(frame_at(&at, &r, T_WATCH_EVENT, 0, P("/w\0t\0")));
    CHECK(frame_at(&at, &r, T_READ, 2, "", 0));
    CHECK(frame_at(&at, &r, T_WATCH, 3, P("OK\0")));
    CHECK(frame_at(&at, &r, T_WATCH_EVENT, 0, P("rel\0u\0")));
    CHECK(at == r.out_len);
    /* An UNWATCH in the run with one WATCH: no two events can be the same. */
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/v\0t\0"));
    put_packet(&in, T_UNWATCH, 2, 0, P("/v\0t\0"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    at = 0;
    CHECK(r.events_inlined == 1 && frame_at(&at, &r, T_WATCH, 1, P("OK\0")) &&
          frame_at(&at, &r, T_WATCH_EVENT, 0, P("/v\0t\0")) &&
          frame_at(&at, &r, T_UNWATCH, 2, P("OK\0")) && at == r.out_len);
    /* A guest's relative watch: its own home. */
    CHECK_EQ(run_watch(e, c1, T_WATCH, P("data\0g\0"), &r), XSD_RUN_DONE);
    at = 0;
    CHECK(r.events_inlined == 1 && frame_at(&at, &r, T_WATCH, 5, P("OK\0")) &&
          frame_at(&at, &r, T_WATCH_EVENT, 0, P("data\0g\0")) && at == r.out_len);

    /* All or none: past the room, groups as before (Python queues them). */
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/a\0t\0"));
    put_packet(&in, T_WATCH, 2, 0, P("/b\0t\0"));
    put_packet(&in, T_WATCH, 3, 0, P("/c\0t\0"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    CHECK(r.events_inlined == 0 && groups(&r) == 3 && r.out_len == 3 * 19);
    xsd_conn_inline_events(c0, 2, 2 * 19 + 16 + 5);      /* two replies and one event */
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/d\0t\0"), &r), XSD_RUN_DONE);
    CHECK(r.events_inlined == 1 && r.out_len == 19 + 16 + 5);
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/e\0t\0"));
    put_packet(&in, T_WATCH, 2, 0, P("/f\0t\0"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    CHECK(r.events_inlined == 0 && groups(&r) == 2);
    xsd_conn_inline_events(c0, 0, sizeof out);            /* none */
    CHECK_EQ(run_watch(e, c0, T_WATCH, P("/g\0t\0"), &r), XSD_RUN_DONE);
    CHECK(r.events_inlined == 0 && groups(&r) == 1);
    xsd_conn_inline_events(c0, 8, sizeof out);

    /* A key dropped and added again in one run: two identical events, the
     * second Python's to coalesce: groups. */
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/h\0t\0"));
    put_packet(&in, T_UNWATCH, 2, 0, P("/h\0t\0"));
    put_packet(&in, T_WATCH, 3, 0, P("/h\0t\0"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    CHECK(r.events_inlined == 0 && groups(&r) == 2);
    /* A change that fires in the same run (its event may be the WATCH's own),
     * a run that stops before the end of its input (a punt, a partial
     * packet): groups. */
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/n\0k\0"));
    put_packet(&in, T_WRITE, 2, 0, P("/n\0v"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);
    CHECK(r.events_inlined == 0 && groups(&r) == 2);
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/o\0k\0"));
    put_packet(&in, T_WATCH, 2, 0, P("/o\0k\0"));                      /* EEXIST */
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_PYTHON);
    CHECK(r.events_inlined == 0 && groups(&r) == 1);
    in.len = 0;
    put_packet(&in, T_WATCH, 1, 0, P("/p\0k\0"));
    CHECK_EQ(xsd_engine_run(e, c0, in.buf, in.len + 3, out, sizeof out, XSD_RUN_MUTATE, &r),
             XSD_RUN_DONE);                 /* + 3 bytes of the next header */
    CHECK(r.events_inlined == 0 && groups(&r) == 1);
    /* A frame over XENSTORE_PAYLOAD_MAX (the WATCH's payload full, its last
     * NUL missing): Python drops it (XSA-324): a group. */
    memcpy(big, "/q", 3);
    memset(big + 3, 'k', sizeof big - 3);
    CHECK_EQ(run_watch(e, c0, T_WATCH, big, sizeof big, &r), XSD_RUN_DONE);
    CHECK(r.events_inlined == 0 && groups(&r) == 1);
    watch_world_close(&w);
}

int main(void)
{
    RUN(test_requests_answered_in_c);
    RUN(test_unprivileged_reads_follow_permissions);
    RUN(test_python_takes_what_is_unusual);
    RUN(test_a_watched_change_is_made_and_described);
    RUN(test_stop_reasons);
    RUN(test_directory_part_pages_a_wide_node);
    RUN(test_random_streams_keep_the_store_sound);
    RUN(test_watch_and_unwatch_through_the_registry);
    RUN(test_initial_events_written_among_the_replies);
    return check_report();
}
