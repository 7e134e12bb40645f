/*
 * journal_enc.h: a batch's journal record, built in C from the node store's
 * change log: one call per batch, whatever the number of changed nodes.
 *
 * The format is xsd/durability/journal.py's (its docstring defines it; its
 * encode_changes, _encode_created and frame are the oracle, and
 * tests/durability/test_journal_encoder.py holds this file to them byte for
 * byte). Little-endian:
 *
 *   record   "XSDR" | length u32 | crc32 u32 | payload
 *            (the CRC covers the length field, then the payload: zlib's crc32)
 *   payload  seq u64 | next_gen u64 | entries of the change log | tail
 *   CREATE (1) / UPDATE (2)
 *            kind u8 | path u16 | value u32 | perms u16 | gen u64 | path | value | perms
 *   DELETE (3)  kind u8 | path u16 | path
 *   ORDER (4)   kind u8 | path u16 | names u32 | path | names ("a\0b\0")
 *
 * What the change log (store.h, "Change tracking") becomes, in its
 * first-change order: a path that no longer exists, DELETE; an UPDATED one,
 * UPDATE with the node as it is now; a REMOVED one that exists again cannot
 * be (a create makes it CREATED) and gives nothing. The CREATED ones follow
 * all of those, as CREATE entries in the order replay must append them:
 *
 *   parents of created nodes that were not created themselves go on a stack
 *   (in the order the log first names them as a parent); pop one, list its
 *   last k children (k: how many the batch created under it), CREATE each,
 *   pushing those that are parents of created nodes; until the stack is
 *   empty. Should the last k children not all be created ones (replay would
 *   append them out of order), the created children are listed in the
 *   parent's full order instead and an ORDER entry with every child's name
 *   follows them (counted: xsd_journal_orders).
 *
 * The tail (the caller's entries: guests' watches, META) is copied after
 * the store's. The record stays in the encoder until its next call.
 *
 * Memory: the encoder keeps its buffers between batches (output, a copy of
 * the log, listings, a path, a table of the created paths and their
 * parents); a buffer grown past XSD_JOURNAL_KEEP bytes is freed at the start
 * of the next call. Every allocation through alloc.h.
 *
 * Threads: none of its own; the caller serialises calls with the store's
 * mutations.
 */
#ifndef XSD_JOURNAL_ENC_H
#define XSD_JOURNAL_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xsd_journal xsd_journal;    /* opaque */

#define XSD_JOURNAL_KEEP (256u * 1024u)

/* A new encoder, or NULL when out of memory. */
xsd_journal *xsd_journal_new(void);

/* Free j and its buffers. NULL is allowed and does nothing. */
void xsd_journal_free(xsd_journal *j);

/* Encode record number seq: the batch header (seq, the store's next
 * generation), the entries of s's change log, then tail[0..tail_len); frame
 * it; empty the change log. Returns the record's length n (the record is
 * xsd_journal_data(j)[0..n)), or 0 when the log is empty and tail_len is 0
 * (nothing to record; nothing is built). Errors leave the change log as it
 * was: -ENOMEM; -E2BIG (a path over 65535 bytes, a record over 4 GiB);
 * -EPROTO (a created node the walk above does not reach: a broken change
 * log). O(changes + their paths' components + the children listed). */
int64_t xsd_journal_record(xsd_journal *j, xsd_store *s, uint64_t seq,
                           const char *tail, size_t tail_len);

/* The last record built (valid until the next xsd_journal_record). */
const char *xsd_journal_data(const xsd_journal *j);

/* ORDER entries in the last record built (each one a parent whose created
 * children were not the tail of its children list). */
size_t xsd_journal_orders(const xsd_journal *j);

/* zlib's crc32 of p[0..len) continued from crc (0 to start), through j's
 * table. */
uint32_t xsd_journal_crc32(const xsd_journal *j, uint32_t crc, const char *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* XSD_JOURNAL_ENC_H */
