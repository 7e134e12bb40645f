/* fuzz_input.h: reading a libFuzzer input as a program, for fuzz_trie.c and
 * fuzz_store.c: one byte at a time, runs of raw bytes, and paths built from
 * a dictionary of components. Every reader stops cleanly where the input
 * runs out. */
#ifndef XSD_TEST_FUZZ_INPUT_H
#define XSD_TEST_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct input {
    const uint8_t *p;
    size_t n;
};

/* The next byte into *b; 0 when the input ran out. */
static int take(struct input *in, uint8_t *b)
{
    if (in->n == 0)
        return 0;
    *b = *in->p++;
    in->n--;
    return 1;
}

/* Up to count bytes into dst (fewer where the input runs out); how many. */
static size_t take_raw(struct input *in, char *dst, size_t count)
{
    size_t n = 0;
    uint8_t t;

    while (n < count && take(in, &t))
        dst[n++] = (char)t;
    return n;
}

/* Append up to count components "/tok" to k[0..n), each token picked by
 * the next byte from tokens[0..ntokens); the new length. */
static size_t take_components(struct input *in, char *k, size_t n, size_t count,
                              const char *const *tokens, size_t ntokens)
{
    uint8_t t;

    for (size_t i = 0; i < count && take(in, &t); i++) {
        const char *tok = tokens[t % ntokens];
        size_t tl = strlen(tok);

        k[n++] = '/';
        memcpy(k + n, tok, tl);
        n += tl;
    }
    return n;
}

#endif /* XSD_TEST_FUZZ_INPUT_H */
