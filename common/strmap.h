/* strmap: a small open-addressing hash map from strings to int values (the
 * scheduler's key and peer tables). Keys are copied; values are ints. */
#ifndef DMRI_STRMAP_H
#define DMRI_STRMAP_H

#include <stddef.h>

typedef struct {
    char **keys;      /* cap slots, NULL = empty, TOMBSTONE = deleted */
    int *vals;
    size_t cap, count, used;  /* used = live + tombstones */
} dmri_strmap_t;

void dmri_strmap_init(dmri_strmap_t *m);
void dmri_strmap_close(dmri_strmap_t *m);
/* Insert or replace. */
void dmri_strmap_put(dmri_strmap_t *m, const char *key, int val);
/* 1 and *val if present, else 0. */
int dmri_strmap_get(const dmri_strmap_t *m, const char *key, int *val);
/* 1 if it was present. */
int dmri_strmap_del(dmri_strmap_t *m, const char *key);

#endif
