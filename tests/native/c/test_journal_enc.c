/*
 * test_journal_enc.c: the journal record of journal_enc.h through its public
 * interface, under ASan + UBSan (ctest, see CMakeLists.txt). Byte-for-byte
 * agreement with the Python encoder on random batches is
 * tests/durability/test_journal_encoder.py's; here: a record checked byte by
 * byte against one written out by hand, the CRC against zlib's check value,
 * deletions, the ORDER fallback, a tail, a wide and a deep batch walked
 * entry by entry (parents before children, every created node once), and the
 * errors that must leave the change log as it was.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "journal_enc.h"
#include "store.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define N0 "n0\0"

static uint64_t le(const char *p, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = bytes; i-- > 0;)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

static int64_t write_path(xsd_store *s, const char *path, const char *value)
{
    return xsd_store_write(s, path, strlen(path), value, strlen(value), S(N0));
}

/* The change log's length (0: empty), read without taking it. */
static int64_t log_len(const xsd_store *s)
{
    return xsd_store_changes(s, NULL, 0);
}

/* A record's frame: magic, length matching n, CRC over length and payload. */
static void check_frame(const xsd_journal *j, const char *rec, int64_t n)
{
    uint32_t crc;
    CHECK(n >= 28);
    CHECK(memcmp(rec, "XSDR", 4) == 0);
    CHECK_EQ(le(rec + 4, 4), n - 12);
    crc = xsd_journal_crc32(j, 0, rec + 4, 4);
    crc = xsd_journal_crc32(j, crc, rec + 12, (size_t)n - 12);
    CHECK_EQ(le(rec + 8, 4), crc);
}

static void test_crc_is_zlibs(void)
{
    xsd_journal *j = xsd_journal_new();
    CHECK(j != NULL);
    /* The CRC-32 check value (zlib.crc32(b"123456789")), and continuing a CRC
     * across two pieces gives the CRC of the whole. */
    CHECK_EQ(xsd_journal_crc32(j, 0, S("123456789")), 0xCBF43926u);
    CHECK_EQ(xsd_journal_crc32(j, xsd_journal_crc32(j, 0, S("1234")), S("56789")), 0xCBF43926u);
    CHECK_EQ(xsd_journal_crc32(j, 0, "", 0), 0);
    {
        /* Eight bytes a step equals a byte at a time, at every length and start. */
        char buf[1000];
        uint32_t bytewise = 0;
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (char)(unsigned char)(i * 131u + 7u);
        for (size_t start = 0; start < 9; start++) {
            bytewise = 0;
            for (size_t i = start; i < sizeof buf; i++)
                bytewise = xsd_journal_crc32(j, bytewise, buf + i, 1);
            CHECK_EQ(xsd_journal_crc32(j, 0, buf + start, sizeof buf - start), bytewise);
        }
    }
    xsd_journal_free(j);
    xsd_journal_free(NULL);
}

static void test_an_empty_log_records_nothing(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    CHECK_EQ(xsd_journal_record(j, s, 1, NULL, 0), 0);      /* not tracking */
    xsd_store_track(s, 1);
    CHECK_EQ(xsd_journal_record(j, s, 1, NULL, 0), 0);
    CHECK_EQ(write_path(s, "/a", "v"), 1);
    xsd_store_track(s, 0);                                  /* the log dropped */
    CHECK_EQ(xsd_journal_record(j, s, 1, NULL, 0), 0);
    xsd_journal_free(j);
    xsd_store_free(s);
}

static void test_a_create_is_the_bytes_journal_py_writes(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    static const char want[] =
        "XSDR" "\x3c\0\0\0" "CRC!"                       /* length 60 */
        "\x07\0\0\0\0\0\0\0" "\x03\0\0\0\0\0\0\0"       /* seq 7, next_gen 3 */
        "\x02" "\x01\0" "\0\0\0\0" "\x03\0" "\x01\0\0\0\0\0\0\0" "/" "" N0   /* UPDATE "/" */
        "\x01" "\x02\0" "\x01\0\0\0" "\x03\0" "\x02\0\0\0\0\0\0\0" "/a" "v" N0; /* CREATE */
    const char *rec;
    int64_t n;

    xsd_store_track(s, 1);
    CHECK_EQ(write_path(s, "/a", "v"), 1);
    n = xsd_journal_record(j, s, 7, NULL, 0);
    CHECK_EQ(n, sizeof want - 1);
    rec = xsd_journal_data(j);
    check_frame(j, rec, n);
    CHECK(memcmp(rec, want, 8) == 0);
    CHECK(memcmp(rec + 12, want + 12, sizeof want - 1 - 12) == 0);
    CHECK_EQ(xsd_journal_orders(j), 0);
    CHECK_EQ(log_len(s), 0);                                /* taken */
    CHECK_EQ(xsd_journal_record(j, s, 8, NULL, 0), 0);
    xsd_journal_free(j);
    xsd_store_free(s);
}

static void test_a_removal_deletes_in_removal_order_after_the_parent(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    static const char want[] =
        "\x02" "\x02\0" "\0\0\0\0" "\x03\0" "\x08\0\0\0\0\0\0\0" "/p" "" N0   /* UPDATE /p */
        "\x03" "\x04\0" "/p/x"                                               /* then DELETEs */
        "\x03" "\x06\0" "/p/y/z"
        "\x03" "\x04\0" "/p/y";
    const char *rec;
    int64_t n;

    CHECK_EQ(write_path(s, "/p/x", "1"), 2);
    CHECK_EQ(write_path(s, "/p/y/z", "2"), 2);
    xsd_store_track(s, 1);
    CHECK_EQ(xsd_store_rm(s, S("/p/x")), 1);
    CHECK_EQ(xsd_store_rm(s, S("/p/y")), 2);
    n = xsd_journal_record(j, s, 1, NULL, 0);
    rec = xsd_journal_data(j);
    CHECK_EQ(n, 28 + sizeof want - 1);
    check_frame(j, rec, n);
    CHECK(memcmp(rec + 28, want, sizeof want - 1) == 0);
    xsd_journal_free(j);
    xsd_store_free(s);
}

static void test_new_children_not_last_get_an_order_entry(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    static const char want[] =
        "\x02" "\x02\0" "\0\0\0\0" "\x03\0" "\x06\0\0\0\0\0\0\0" "/p" "" N0     /* UPDATE /p */
        "\x01" "\x06\0" "\x01\0\0\0" "\x03\0" "\x07\0\0\0\0\0\0\0" "/p/new" "3" N0
        "\x04" "\x02\0" "\x0c\0\0\0" "/p" "mid\0new\0old\0";
    const char *rec;
    int64_t n;

    CHECK_EQ(write_path(s, "/p/old", "1"), 2);
    CHECK_EQ(write_path(s, "/p/mid", "2"), 1);
    xsd_store_track(s, 1);
    CHECK_EQ(write_path(s, "/p/new", "3"), 1);
    CHECK_EQ(xsd_store_move_last(s, S("/p/old")), 0);       /* no longer the new one's tail */
    n = xsd_journal_record(j, s, 1, NULL, 0);
    rec = xsd_journal_data(j);
    CHECK_EQ(n, 28 + sizeof want - 1);
    check_frame(j, rec, n);
    CHECK(memcmp(rec + 28, want, sizeof want - 1) == 0);
    CHECK_EQ(xsd_journal_orders(j), 1);
    xsd_journal_free(j);
    xsd_store_free(s);
}

static void test_a_tail_alone_is_framed_and_follows_the_entries(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    const char *rec;
    int64_t n;

    xsd_store_track(s, 1);
    n = xsd_journal_record(j, s, 3, S("TAIL"));
    rec = xsd_journal_data(j);
    CHECK_EQ(n, 28 + 4);
    check_frame(j, rec, n);
    CHECK_EQ(le(rec + 12, 8), 3);
    CHECK_EQ(le(rec + 20, 8), 1);                           /* the next generation */
    CHECK(memcmp(rec + 28, "TAIL", 4) == 0);
    CHECK_EQ(write_path(s, "/a", ""), 1);
    n = xsd_journal_record(j, s, 4, S("TAIL"));
    rec = xsd_journal_data(j);
    CHECK(n > 32);
    CHECK(memcmp(rec + n - 4, "TAIL", 4) == 0);
    xsd_journal_free(j);
    xsd_store_free(s);
}

/* Walk a record's entries: each whole, CREATEs parents first (a parent
 * existed before the batch, in existed[], or was created earlier in the
 * record). Returns the number of CREATE entries, -1 on a malformed record. */
static long walk_creates(const char *rec, int64_t n, const char *const *existed, size_t nexisted)
{
    const char **created = malloc((size_t)n * sizeof *created);
    size_t *created_len = malloc((size_t)n * sizeof *created_len), ncreated = 0;
    int64_t at = 28;
    long result = 0;

    if (!created || !created_len)
        abort();
    while (at < n && result >= 0) {
        unsigned kind = (unsigned char)rec[at];
        if (kind == 1 || kind == 2) {
            size_t plen = (size_t)le(rec + at + 1, 2), vlen = (size_t)le(rec + at + 3, 4);
            size_t perms = (size_t)le(rec + at + 7, 2), up = plen;
            const char *path = rec + at + 17;
            int found = 0;
            if (kind == 1) {
                while (up > 1 && path[up - 1] != '/')
                    up--;
                up = up > 1 ? up - 1 : 1;
                for (size_t i = 0; i < nexisted && !found; i++)
                    found = strlen(existed[i]) == up && memcmp(existed[i], path, up) == 0;
                for (size_t i = 0; i < ncreated && !found; i++)
                    found = created_len[i] == up && memcmp(created[i], path, up) == 0;
                if (!found)
                    result = -1;
                created[ncreated] = path;
                created_len[ncreated++] = plen;
                result++;
            }
            at += 17 + (int64_t)(plen + vlen + perms);
        } else if (kind == 3) {
            at += 3 + (int64_t)le(rec + at + 1, 2);
        } else {
            result = -1;
        }
    }
    free(created);
    free(created_len);
    return at == n ? result : -1;
}

static void test_a_wide_and_a_deep_batch_create_every_node_parents_first(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    static const char *const existed[] = {"/", "/wide"};
    char path[4096];
    size_t at = 0;
    int64_t n;

    xsd_store_track(s, 1);
    for (int i = 0; i < 3000; i++) {            /* wide: past XSD_JOURNAL_KEEP of record */
        snprintf(path, sizeof path, "/wide/%d", i);
        CHECK(xsd_store_write(s, path, strlen(path), S("a value of some forty bytes, say: 0123"),
                              S(N0)) >= 1);
    }
    for (int d = 0; d < 1000; d++) {            /* deep: one write makes the whole chain */
        path[at++] = '/';
        path[at++] = (char)('a' + d % 26);
    }
    CHECK_EQ(xsd_store_write(s, path, at, "", 0, S(N0)), 1000);
    n = xsd_journal_record(j, s, 1, NULL, 0);
    CHECK((uint64_t)n > XSD_JOURNAL_KEEP);
    check_frame(j, xsd_journal_data(j), n);
    CHECK_EQ(walk_creates(xsd_journal_data(j), n, existed, 1), 3001 + 1000);
    CHECK_EQ(log_len(s), 0);
    /* The big buffers go; the next record is built in new ones. */
    CHECK_EQ(write_path(s, "/wide/x", "1"), 1);
    n = xsd_journal_record(j, s, 2, NULL, 0);
    check_frame(j, xsd_journal_data(j), n);
    CHECK_EQ(walk_creates(xsd_journal_data(j), n, existed, 2), 1);
    xsd_journal_free(j);
    xsd_store_free(s);
}

/* created_index's table, grown for a batch of 2000 creations and kept (under
 * XSD_JOURNAL_KEEP), is replaced by a small one for the one creation after it,
 * and grown again: every record still whole. */
static void test_the_created_table_shrinks_after_a_big_batch_and_grows_again(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    static const char *const existed[] = {"/", "/t"};
    char path[64];
    int64_t n;

    CHECK_EQ(write_path(s, "/t", ""), 1);
    xsd_store_track(s, 1);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2000; i++) {
            snprintf(path, sizeof path, "/t/r%d-%d", round, i);
            CHECK_EQ(write_path(s, path, "v"), 1);
        }
        n = xsd_journal_record(j, s, (uint64_t)(2 * round + 1), NULL, 0);
        CHECK(n > 0 && (uint64_t)n < XSD_JOURNAL_KEEP);
        check_frame(j, xsd_journal_data(j), n);
        CHECK_EQ(walk_creates(xsd_journal_data(j), n, existed, 2), 2000);
        snprintf(path, sizeof path, "/t/one%d", round);
        CHECK_EQ(write_path(s, path, "v"), 1);
        n = xsd_journal_record(j, s, (uint64_t)(2 * round + 2), NULL, 0);
        check_frame(j, xsd_journal_data(j), n);
        CHECK_EQ(walk_creates(xsd_journal_data(j), n, existed, 2), 1);
    }
    xsd_journal_free(j);
    xsd_store_free(s);
}

static void test_a_path_too_long_for_its_field_leaves_the_log(void)
{
    xsd_store *s = xsd_store_new();
    xsd_journal *j = xsd_journal_new();
    size_t len = 1 + 40000 + 1 + 40000;
    char *path = malloc(len);
    int64_t before;

    if (!path)
        abort();
    memset(path, 'x', len);
    path[0] = '/';
    path[40001] = '/';
    xsd_store_track(s, 1);
    CHECK_EQ(xsd_store_write(s, path, len, "", 0, S(N0)), 2);
    before = log_len(s);
    CHECK(before > 0);
    CHECK_EQ(xsd_journal_record(j, s, 1, NULL, 0), -E2BIG);
    CHECK_EQ(log_len(s), before);
    CHECK_EQ(xsd_store_rm(s, path, 40001), 2);              /* gone again: DELETE entries */
    CHECK_EQ(xsd_journal_record(j, s, 1, NULL, 0), -E2BIG); /* still a path too long */
    free(path);
    xsd_journal_free(j);
    xsd_store_free(s);
}

int main(void)
{
    RUN(test_crc_is_zlibs);
    RUN(test_an_empty_log_records_nothing);
    RUN(test_a_create_is_the_bytes_journal_py_writes);
    RUN(test_a_removal_deletes_in_removal_order_after_the_parent);
    RUN(test_new_children_not_last_get_an_order_entry);
    RUN(test_a_tail_alone_is_framed_and_follows_the_entries);
    RUN(test_a_wide_and_a_deep_batch_create_every_node_parents_first);
    RUN(test_the_created_table_shrinks_after_a_big_batch_and_grows_again);
    RUN(test_a_path_too_long_for_its_field_leaves_the_log);
    return check_report();
}
