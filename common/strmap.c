/* strmap: string -> int hash map with linear probing (see strmap.h). */
#include "strmap.h"

#include <stdint.h>
#include <string.h>

#include "dmri_alloc.h"

static char tombstone_mark;
#define TOMBSTONE (&tombstone_mark)

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void dmri_strmap_init(dmri_strmap_t *m) { memset(m, 0, sizeof *m); }

void dmri_strmap_close(dmri_strmap_t *m) {
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->keys[i] != TOMBSTONE)
            dmri_free(m->keys[i]);
    dmri_free(m->keys);
    dmri_free(m->vals);
    memset(m, 0, sizeof *m);
}

static void grow(dmri_strmap_t *m) {
    size_t ocap = m->cap;
    char **okeys = m->keys;
    int *ovals = m->vals;
    m->cap = ocap ? ocap * 2 : 64;
    while (m->count * 2 >= m->cap)
        m->cap *= 2;
    m->keys = dmri_calloc(m->cap, sizeof(char *));
    m->vals = dmri_calloc(m->cap, sizeof(int));
    m->used = m->count;
    for (size_t i = 0; i < ocap; i++) {
        if (!okeys[i] || okeys[i] == TOMBSTONE)
            continue;
        size_t j = hash_str(okeys[i]) & (m->cap - 1);
        while (m->keys[j])
            j = (j + 1) & (m->cap - 1);
        m->keys[j] = okeys[i];
        m->vals[j] = ovals[i];
    }
    dmri_free(okeys);
    dmri_free(ovals);
}

static long find(const dmri_strmap_t *m, const char *key) {
    if (!m->cap)
        return -1;
    size_t j = hash_str(key) & (m->cap - 1);
    for (size_t n = 0; n < m->cap; n++) {
        char *k = m->keys[j];
        if (!k)
            return -1;
        if (k != TOMBSTONE && strcmp(k, key) == 0)
            return (long)j;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void dmri_strmap_put(dmri_strmap_t *m, const char *key, int val) {
    long at = find(m, key);
    if (at >= 0) {
        m->vals[at] = val;
        return;
    }
    if ((m->used + 1) * 2 >= m->cap)
        grow(m);
    size_t j = hash_str(key) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != TOMBSTONE)
        j = (j + 1) & (m->cap - 1);
    if (!m->keys[j])
        m->used++;
    m->keys[j] = dmri_strdup(key);
    m->vals[j] = val;
    m->count++;
}

int dmri_strmap_get(const dmri_strmap_t *m, const char *key, int *val) {
    long at = find(m, key);
    if (at < 0)
        return 0;
    if (val)
        *val = m->vals[at];
    return 1;
}

int dmri_strmap_del(dmri_strmap_t *m, const char *key) {
    long at = find(m, key);
    if (at < 0)
        return 0;
    dmri_free(m->keys[at]);
    m->keys[at] = TOMBSTONE;
    m->count--;
    return 1;
}
