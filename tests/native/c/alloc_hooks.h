/* alloc_hooks.h: the allocator trie.c uses when built with -DXSD_ALLOC_HOOKS
 * (see xsd/_native/alloc.h). Counts live blocks and can make allocations
 * fail on demand. */
#ifndef XSD_TEST_ALLOC_HOOKS_H
#define XSD_TEST_ALLOC_HOOKS_H

/* Let n allocations succeed, then fail the next one; if sticky, fail every
 * one after it too. n < 0 disarms. */
void hooks_fail_after(long n, int sticky);

/* Allocations attempted since the last hooks_fail_after. */
long hooks_attempts(void);

/* Did an injected failure happen since the last hooks_fail_after? */
int hooks_failed(void);

/* Blocks currently allocated through the hooks. */
long hooks_live_blocks(void);

#endif /* XSD_TEST_ALLOC_HOOKS_H */
