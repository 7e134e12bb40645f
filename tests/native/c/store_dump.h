/* store_dump.h: the whole of a store as one string, through store.h's public
 * calls that never allocate (get, last_children of every child: a walk,
 * where children may keep a copy; owned_by, bytes_of, count,
 * next_gen, changes: the change log read without taking it), so a test can
 * compare a store with itself before and after an operation even while
 * allocations are made to fail. Breadth-first from "/"; one line per node:
 * "path gen owner value-length perms-length\n" then the raw value and perms.
 * The caller frees the result (plain malloc: this is the test's memory). */
#ifndef XSD_TEST_STORE_DUMP_H
#define XSD_TEST_STORE_DUMP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

struct dump {
    char *s;
    size_t len, cap;
};

static void dump_put(struct dump *d, const void *bytes, size_t len)
{
    if (d->len + len + 1 > d->cap) {
        d->cap = (d->len + len + 1) * 2;
        d->s = realloc(d->s, d->cap);
        if (!d->s)
            abort();
    }
    memcpy(d->s + d->len, bytes, len);
    d->len += len;
    d->s[d->len] = '\0';
}

static char *store_dump(const xsd_store *s, size_t *out_len)
{
    struct dump d = { NULL, 0, 0 };
    size_t qcap = 64, qhead = 0, qtail = 0;
    char **queue = malloc(qcap * sizeof *queue);
    char line[160];
    static const uint32_t domids[] = { 0, 1, 2, 3, 5, 7, 65535 };

    if (!queue)
        abort();
    queue[qtail] = malloc(2);
    if (!queue[qtail])
        abort();
    memcpy(queue[qtail++], "/", 2);
    for (size_t i = 0; i < sizeof domids / sizeof domids[0]; i++) {
        snprintf(line, sizeof line, "owned %u %zu %llu\n", domids[i],
                 xsd_store_owned_by(s, domids[i]),
                 (unsigned long long)xsd_store_bytes_of(s, domids[i]));
        dump_put(&d, line, strlen(line));
    }
    snprintf(line, sizeof line, "count %zu next %llu\n", xsd_store_count(s),
             (unsigned long long)xsd_store_next_gen(s));
    dump_put(&d, line, strlen(line));
    {
        int64_t n = xsd_store_changes(s, NULL, 0);
        char *log = malloc((size_t)n + 1);
        if (n < 0 || !log || xsd_store_changes(s, log, (size_t)n) != n)
            abort();
        snprintf(line, sizeof line, "changes %lld\n", (long long)n);
        dump_put(&d, line, strlen(line));
        dump_put(&d, log, (size_t)n);
        free(log);
    }
    while (qhead < qtail) {
        char *path = queue[qhead++];
        size_t plen = strlen(path);
        struct xsd_node_view v;
        int64_t n;
        char *names;

        if (xsd_store_get(s, path, plen, &v) != 0)
            abort();
        snprintf(line, sizeof line, " %llu %u %zu %zu\n", (unsigned long long)v.gen, v.owner,
                 v.value_len, v.perms_len);
        dump_put(&d, path, plen);
        dump_put(&d, line, strlen(line));
        dump_put(&d, v.value, v.value_len);
        dump_put(&d, v.perms, v.perms_len);
        n = xsd_store_last_children(s, path, plen, SIZE_MAX, NULL, 0);
        if (n < 0)
            abort();
        names = malloc((size_t)n + 1);
        if (!names || xsd_store_last_children(s, path, plen, SIZE_MAX, names, (size_t)n) != n)
            abort();
        for (size_t at = 0; at < (size_t)n;) {
            size_t nl = strlen(names + at);
            char *child = malloc(plen + nl + 2);
            if (!child)
                abort();
            snprintf(child, plen + nl + 2, "%s/%s", plen == 1 ? "" : path, names + at);
            if (qtail == qcap) {
                qcap *= 2;
                queue = realloc(queue, qcap * sizeof *queue);
                if (!queue)
                    abort();
            }
            queue[qtail++] = child;
            at += nl + 1;
        }
        free(names);
    }
    for (size_t i = 0; i < qtail; i++)
        free(queue[i]);
    free(queue);
    if (out_len)
        *out_len = d.len;
    return d.s;
}

#endif /* XSD_TEST_STORE_DUMP_H */
