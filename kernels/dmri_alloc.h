/* dmri_alloc: the one allocator wrapper. Out of memory is the only condition
 * that aborts the process (loudly, with the size asked for). */
#ifndef DMRI_ALLOC_H
#define DMRI_ALLOC_H

#include <stddef.h>

void *dmri_malloc(size_t size);
void *dmri_calloc(size_t count, size_t size);
void *dmri_realloc(void *ptr, size_t size);
char *dmri_strdup(const char *s);
/* 64-byte aligned memory (for SIMD-friendly kernels); release with dmri_free. */
void *dmri_aligned_alloc(size_t size);
void dmri_free(void *ptr);

#endif
