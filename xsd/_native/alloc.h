/*
 * alloc.h: the one place where the native core reaches the allocator.
 *
 * Every allocation in trie.c goes through these four macros, so a test can
 * build trie.c with -DXSD_ALLOC_HOOKS and supply its own functions (see
 * tests/native/c/alloc_hooks.c) to make the N-th allocation fail and to count
 * what is still live. The same habit as antirez/rax (rax_malloc.h).
 *
 * Contract the callers keep: XSD_REALLOC is only used where a NULL return
 * leaves the old block valid (standard realloc semantics), and every
 * XSD_MALLOC / XSD_CALLOC / XSD_REALLOC result is checked for NULL.
 */
#ifndef XSD_ALLOC_H
#define XSD_ALLOC_H

#include <stddef.h>

#ifdef XSD_ALLOC_HOOKS

void *xsd_hook_malloc(size_t size);
void *xsd_hook_calloc(size_t nmemb, size_t size);
void *xsd_hook_realloc(void *ptr, size_t size);
void xsd_hook_free(void *ptr);

#define XSD_MALLOC(size)         xsd_hook_malloc(size)
#define XSD_CALLOC(nmemb, size)  xsd_hook_calloc((nmemb), (size))
#define XSD_REALLOC(ptr, size)   xsd_hook_realloc((ptr), (size))
#define XSD_FREE(ptr)            xsd_hook_free(ptr)

#else

#include <stdlib.h>

#define XSD_MALLOC(size)         malloc(size)
#define XSD_CALLOC(nmemb, size)  calloc((nmemb), (size))
#define XSD_REALLOC(ptr, size)   realloc((ptr), (size))
#define XSD_FREE(ptr)            free(ptr)

#endif /* XSD_ALLOC_HOOKS */

#endif /* XSD_ALLOC_H */
