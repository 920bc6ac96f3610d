/* dmri_alloc: allocation that aborts on exhaustion (see dmri_alloc.h). */
#include "dmri_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dmri_oom(size_t size) {
    fprintf(stderr, "dmri: out of memory (asked for %zu bytes)\n", size);
    abort();
}

void *dmri_malloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p)
        dmri_oom(size);
    return p;
}

void *dmri_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        dmri_oom(count * size);
    return p;
}

void *dmri_realloc(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        dmri_oom(size);
    return p;
}

char *dmri_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = dmri_malloc(n);
    memcpy(p, s, n);
    return p;
}

void *dmri_aligned_alloc(size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 64) != 0)
        dmri_oom(size);
    return p;
}

void dmri_free(void *ptr) { free(ptr); }
