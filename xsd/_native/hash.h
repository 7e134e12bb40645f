/*
 * hash.h: the one string hash of the native core, shared by trie.c (child
 * tables and the watch index), store.c (the node index, the change log),
 * txn.c, journal_enc.c and watchreg.c.
 *
 * FNV-1a over the bytes, then the murmur3 64-bit finaliser (fmix64) so that
 * the low bits used as a table slot depend on every byte. The FNV state can
 * be finalised at any byte, which is how trie.c hashes every prefix of a path
 * in one pass. Not a defence against chosen collisions: per-domain quotas are.
 * Internal: static inline, no symbols; alloc.h-style, included by the .c only.
 */
#ifndef XSD_HASH_H
#define XSD_HASH_H

#include <stddef.h>
#include <stdint.h>

#define XSD_FNV_OFFSET 0xcbf29ce484222325ULL
#define XSD_FNV_PRIME  0x100000001b3ULL

/* One FNV-1a step per byte of p[0..len), from state h. */
static inline uint64_t xsd_fnv1a(uint64_t h, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * XSD_FNV_PRIME;
    return h;
}

/* murmur3's fmix64: every input bit reaches every output bit. */
static inline uint64_t xsd_fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* A whole path's hash: the key of store.c's change log, txn.c's table and
 * journal_enc.c's index. */
static inline uint64_t xsd_hash_path(const char *path, size_t len)
{
    return xsd_fmix64(xsd_fnv1a(XSD_FNV_OFFSET, path, len));
}

#endif /* XSD_HASH_H */
