/* alloc_hooks.c: see alloc_hooks.h. Single-threaded by design. */
#include "alloc_hooks.h"
#include "alloc.h" /* the xsd_hook_* prototypes (built with XSD_ALLOC_HOOKS) */

#include <stdlib.h>

static long budget = -1; /* allocations left before the injected failure */
static int sticky_mode;
static int failed;
static long attempts;
static long live;

void hooks_fail_after(long n, int sticky)
{
    budget = n;
    sticky_mode = sticky;
    failed = 0;
    attempts = 0;
}

long hooks_attempts(void)
{
    return attempts;
}

int hooks_failed(void)
{
    return failed;
}

long hooks_live_blocks(void)
{
    return live;
}

static int should_fail(void)
{
    attempts++;
    if (budget < 0)
        return 0;
    if (budget == 0) {
        failed = 1;
        if (!sticky_mode)
            budget = -1;
        return 1;
    }
    budget--;
    return 0;
}

void *xsd_hook_malloc(size_t size)
{
    void *p;

    if (should_fail())
        return NULL;
    p = malloc(size);
    if (p != NULL)
        live++;
    return p;
}

void *xsd_hook_calloc(size_t nmemb, size_t size)
{
    void *p;

    if (should_fail())
        return NULL;
    p = calloc(nmemb, size);
    if (p != NULL)
        live++;
    return p;
}

void *xsd_hook_realloc(void *ptr, size_t size)
{
    void *p;

    if (should_fail())
        return NULL;
    p = realloc(ptr, size);
    if (p != NULL && ptr == NULL)
        live++;
    return p;
}

void xsd_hook_free(void *ptr)
{
    if (ptr != NULL)
        live--;
    free(ptr);
}
