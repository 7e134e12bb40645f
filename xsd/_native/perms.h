/*
 * perms.h: who may do what to a node, in C (permissions.access): the one
 * copy the request path (engine.c) and the watch registry (watchreg.c) use.
 *
 * A permission list is store.h's: entries "<kind><decimal domid>\0", the
 * first naming the owner, e.g. "n1\0r0\0b5\0". A caller is its domid, the
 * domid it acts for (SET_TARGET; -1: none) and whether it is privileged.
 *
 *   privileged caller                           -> XSD_ACCESS_ALL
 *   empty list (NULL, 0)                        -> 0
 *   the owner is the caller or its target       -> XSD_ACCESS_ALL
 *   else the first later entry naming either    -> that entry's kind
 *   else                                        -> the owner entry's kind
 *
 * Kinds: 'r' READ, 'w' WRITE, 'b' READ | WRITE, 'n' (and anything else) none.
 * A domid's digits saturate past 2^40 (no list the store keeps has one above
 * 2^32 - 1; a saturated one names no caller). Header only: static inline.
 */
#ifndef XSD_PERMS_H
#define XSD_PERMS_H

#include <stddef.h>
#include <stdint.h>

#define XSD_ACCESS_READ  1u
#define XSD_ACCESS_WRITE 2u
#define XSD_ACCESS_ALL   7u     /* READ | WRITE | OWNER (permissions.ALL) */

/* What an entry of kind grants (permissions._KIND_MASK); 0 for 'n' or any
 * other byte. */
static inline unsigned xsd_perm_kind_access(char kind)
{
    switch (kind) {
    case 'r': return XSD_ACCESS_READ;
    case 'w': return XSD_ACCESS_WRITE;
    case 'b': return XSD_ACCESS_READ | XSD_ACCESS_WRITE;
    default: return 0;
    }
}

/* The entry at *p (before end): its kind (at end: 'n') and domid; *p moves
 * past the entry's NUL (or to end). */
static inline char xsd_perm_next(const char **p, const char *end, uint64_t *domid)
{
    const char *q = *p;
    char kind = q < end ? *q++ : 'n';
    uint64_t v = 0;

    while (q < end && *q != '\0') {
        if (v < UINT64_C(1) << 40)
            v = v * 10 + (uint64_t)(unsigned char)(*q - '0');
        q++;
    }
    *domid = v;
    *p = q < end ? q + 1 : end;
    return kind;
}

static inline int xsd_perm_names(uint64_t domid, uint32_t caller, int64_t target)
{
    return domid == caller || (target >= 0 && domid == (uint64_t)target);
}

/* permissions.access: the XSD_ACCESS_* bits the caller has under
 * perms[0..len) (above). */
static inline unsigned xsd_perms_access(uint32_t caller, int64_t target, int privileged,
                                        const char *perms, size_t len)
{
    const char *p = perms, *end;
    uint64_t owner, domid;
    char owner_kind, kind;

    if (privileged)
        return XSD_ACCESS_ALL;
    if (perms == NULL || len == 0)
        return 0;
    end = perms + len;          /* not before: NULL + 0 is undefined */
    owner_kind = xsd_perm_next(&p, end, &owner);
    if (xsd_perm_names(owner, caller, target))
        return XSD_ACCESS_ALL;
    while (p < end) {
        kind = xsd_perm_next(&p, end, &domid);
        if (xsd_perm_names(domid, caller, target))
            return xsd_perm_kind_access(kind);
    }
    return xsd_perm_kind_access(owner_kind);
}

#endif /* XSD_PERMS_H */
