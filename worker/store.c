/* store: the worker's chunk store — a hash map of reference-counted chunks,
 * an LRU list of the unpinned ones in memory, and a spill folder (see
 * store.h). Disk I/O happens under the store's one mutex: spilling is the
 * degraded mode of an overloaded worker, and a simple lock keeps the states
 * of a chunk (in memory / on disk / both) easy to reason about. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmri_alloc.h"

struct dmri_wstore_entry {
    dmri_wstore_t *store;        /* owner (unref needs it) */
    char *key;                  /* dmri_malloc'd */
    void *data;                 /* chunk bytes, NULL while only on disk */
    size_t size;                /* bytes */
    int refs;                   /* readers and zero-copy sends in flight */
    int transient;              /* DMRI_WSTORE_TRANSIENT: leaves with its last reference */
    int in_map;                 /* reachable by key (0 after remove/clear/replace) */
    uint64_t spill_id;          /* name of its spill file, 0 if none */
    dmri_wstore_entry_t *hnext;  /* hash chain */
    dmri_wstore_entry_t *prev;   /* LRU list (in map, in memory): head = most recent */
    dmri_wstore_entry_t *next;
    int in_lru;                 /* linked in the LRU list */
};

struct dmri_wstore {
    pthread_mutex_t mu;           /* guards everything below */
    dmri_wstore_entry_t **buckets; /* hash map of the entries in_map */
    size_t nbuckets;              /* power of two */
    size_t count;                 /* entries in the map */
    dmri_wstore_entry_t *lru_head; /* most recently used */
    dmri_wstore_entry_t *lru_tail; /* spill candidates start here */
    uint64_t limit;               /* bytes in memory before spilling; 0 = never */
    uint64_t generation;          /* bumped by clear */
    uint64_t next_spill_id;       /* spill file names */
    char parent[4096];            /* where the spill folder goes */
    char dir[4096];               /* the spill folder, "" until created */
    char last_error[512];         /* last spill/reload problem, "" if none */
    dmri_wstore_stats_t st;        /* accounting (count mirrors the map) */
};

static uint64_t hash_key(const char *k) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *k; k++) {
        h ^= (unsigned char)*k;
        h *= 1099511628211ull;
    }
    return h;
}

dmri_wstore_t *dmri_wstore_new(uint64_t memory_limit, const char *spill_parent) {
    dmri_wstore_t *s = dmri_calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->nbuckets = 64;
    s->buckets = dmri_calloc(s->nbuckets, sizeof *s->buckets);
    s->limit = memory_limit;
    s->generation = 1;
    s->next_spill_id = 1;
    snprintf(s->parent, sizeof s->parent, "%s",
             spill_parent && *spill_parent ? spill_parent : "/tmp");
    return s;
}

/* ---- LRU list (lock held) ---- */

static void lru_unlink(dmri_wstore_t *s, dmri_wstore_entry_t *e) {
    if (!e->in_lru)
        return;
    if (e->prev)
        e->prev->next = e->next;
    else
        s->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->lru_tail = e->prev;
    e->prev = e->next = NULL;
    e->in_lru = 0;
}

static void lru_push_head(dmri_wstore_t *s, dmri_wstore_entry_t *e) {
    e->prev = NULL;
    e->next = s->lru_head;
    if (s->lru_head)
        s->lru_head->prev = e;
    else
        s->lru_tail = e;
    s->lru_head = e;
    e->in_lru = 1;
}

/* Most recently used now (only entries in the map and in memory are listed). */
static void lru_touch(dmri_wstore_t *s, dmri_wstore_entry_t *e) {
    lru_unlink(s, e);
    if (e->in_map && e->data)
        lru_push_head(s, e);
}

/* ---- hash map (lock held) ---- */

static dmri_wstore_entry_t *map_find(dmri_wstore_t *s, const char *key) {
    dmri_wstore_entry_t *e = s->buckets[hash_key(key) & (s->nbuckets - 1)];
    while (e && strcmp(e->key, key) != 0)
        e = e->hnext;
    return e;
}

static void map_grow(dmri_wstore_t *s) {
    size_t n = s->nbuckets * 2;
    dmri_wstore_entry_t **b = dmri_calloc(n, sizeof *b);
    for (size_t i = 0; i < s->nbuckets; i++) {
        dmri_wstore_entry_t *e = s->buckets[i];
        while (e) {
            dmri_wstore_entry_t *nx = e->hnext;
            size_t j = hash_key(e->key) & (n - 1);
            e->hnext = b[j];
            b[j] = e;
            e = nx;
        }
    }
    dmri_free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

static void map_insert(dmri_wstore_t *s, dmri_wstore_entry_t *e) {
    if (s->count >= s->nbuckets)
        map_grow(s);
    size_t j = hash_key(e->key) & (s->nbuckets - 1);
    e->hnext = s->buckets[j];
    s->buckets[j] = e;
    e->in_map = 1;
    s->count++;
}

static void map_unlink(dmri_wstore_t *s, dmri_wstore_entry_t *e) {
    if (!e->in_map)
        return;
    dmri_wstore_entry_t **pp = &s->buckets[hash_key(e->key) & (s->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    e->hnext = NULL;
    e->in_map = 0;
    s->count--;
    lru_unlink(s, e);
    if (!e->data)
        s->st.spilled -= e->size;
}

/* ---- spill files (lock held) ---- */

static void spill_path(const dmri_wstore_t *s, uint64_t id, char *out, size_t outsz) {
    snprintf(out, outsz, "%s/%llu.chunk", s->dir, (unsigned long long)id);
}

static int ensure_spill_dir(dmri_wstore_t *s) {
    if (s->dir[0])
        return 0;
    char tmpl[4096];
    int n = snprintf(tmpl, sizeof tmpl, "%s/dmri-spill-XXXXXX", s->parent);
    if (n < 0 || (size_t)n >= sizeof tmpl || !mkdtemp(tmpl)) {
        snprintf(s->last_error, sizeof s->last_error, "cannot create a spill folder in %.300s: %s",
                 s->parent, strerror(errno));
        return -1;
    }
    snprintf(s->dir, sizeof s->dir, "%s", tmpl);
    return 0;
}

static int write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size) {
        ssize_t w = write(fd, p, size > (1u << 30) ? (1u << 30) : size);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        size -= (size_t)w;
    }
    return 0;
}

/* Write e's bytes to a new spill file (if it has none yet) and free them. */
static int spill_entry(dmri_wstore_t *s, dmri_wstore_entry_t *e) {
    if (!e->spill_id) {
        if (ensure_spill_dir(s) != 0)
            return -1;
        uint64_t id = s->next_spill_id++;
        char path[4200];
        spill_path(s, id, path, sizeof path);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int ok = fd >= 0 && write_all(fd, e->data, e->size) == 0;
        int saved = errno;
        if (fd >= 0 && close(fd) != 0 && ok) {
            ok = 0;
            saved = errno;
        }
        if (!ok) {
            snprintf(s->last_error, sizeof s->last_error, "spilling %.150s to %.300s: %s",
                     e->key, path, strerror(saved));
            if (fd >= 0)
                unlink(path);
            return -1;
        }
        e->spill_id = id;
        s->st.disk += e->size;
        s->st.spills++;
    }
    lru_unlink(s, e);
    dmri_free(e->data);
    e->data = NULL;
    s->st.memory -= e->size;
    s->st.spilled += e->size;
    return 0;
}

static void spill_over_limit(dmri_wstore_t *s) {
    if (!s->limit)
        return;
    dmri_wstore_entry_t *e = s->lru_tail;
    while (e && s->st.memory > s->limit) {
        dmri_wstore_entry_t *prev = e->prev;
        if (e->refs == 0 && e->size > 0 && !e->transient) {
            if (spill_entry(s, e) != 0) {
                s->st.spill_errors++;
                return; /* the disk is the problem: stop trying for now */
            }
        }
        e = prev;
    }
}

static void entry_free(dmri_wstore_t *s, dmri_wstore_entry_t *e) {
    map_unlink(s, e);
    lru_unlink(s, e);
    if (e->data) {
        s->st.memory -= e->size;
        dmri_free(e->data);
    }
    if (e->spill_id) {
        char path[4200];
        spill_path(s, e->spill_id, path, sizeof path);
        unlink(path);
        s->st.disk -= e->size;
    }
    dmri_free(e->key);
    dmri_free(e);
}

/* ---- public ---- */

void dmri_wstore_destroy(dmri_wstore_t **sp) {
    if (!sp || !*sp)
        return;
    dmri_wstore_t *s = *sp;
    for (size_t i = 0; i < s->nbuckets; i++) {
        while (s->buckets[i])
            entry_free(s, s->buckets[i]);
    }
    /* Entries still referenced but out of the map are leaked on purpose:
     * freeing them under a reader would be worse. destroy's contract says
     * there are none. */
    if (s->dir[0])
        rmdir(s->dir);
    dmri_free(s->buckets);
    pthread_mutex_destroy(&s->mu);
    dmri_free(s);
    *sp = NULL;
}

void dmri_wstore_abandon(dmri_wstore_t *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (dmri_wstore_entry_t *e = s->buckets[i]; e; e = e->hnext) {
            if (e->spill_id) {
                char path[4200];
                spill_path(s, e->spill_id, path, sizeof path);
                unlink(path);
            }
        }
    }
    /* Files of released-but-referenced chunks are not reachable from the
     * map: sweep the folder itself. */
    if (s->dir[0]) {
        for (uint64_t id = 1; id < s->next_spill_id; id++) {
            char path[4200];
            spill_path(s, id, path, sizeof path);
            unlink(path);
        }
        rmdir(s->dir);
    }
    /* The mutex stays locked: the process is about to _exit. */
}

int dmri_wstore_put(dmri_wstore_t *s, const char *key, void *data, size_t size, int flags,
                   uint64_t generation, dmri_wstore_entry_t **ref) {
    if (ref)
        *ref = NULL;
    pthread_mutex_lock(&s->mu);
    if (generation != s->generation) {
        pthread_mutex_unlock(&s->mu);
        dmri_free(data);
        return DMRI_ECANCEL;
    }
    dmri_wstore_entry_t *old = map_find(s, key);
    if (old && (flags & DMRI_WSTORE_TRANSIENT)) {
        dmri_free(data);
        if (ref) {
            old->refs++;
            *ref = old;
        }
        lru_touch(s, old);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (old) {
        map_unlink(s, old);
        if (old->refs == 0)
            entry_free(s, old);
    }
    dmri_wstore_entry_t *e = dmri_calloc(1, sizeof *e);
    e->store = s;
    e->key = dmri_strdup(key);
    e->data = data ? data : dmri_malloc(1);
    e->size = size;
    e->transient = (flags & DMRI_WSTORE_TRANSIENT) != 0;
    map_insert(s, e);
    lru_push_head(s, e);
    s->st.memory += size;
    if (ref) {
        e->refs++;
        *ref = e;
    }
    spill_over_limit(s);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

dmri_wstore_entry_t *dmri_wstore_acquire(dmri_wstore_t *s, const char *key) {
    pthread_mutex_lock(&s->mu);
    dmri_wstore_entry_t *e = map_find(s, key);
    if (e) {
        e->refs++;
        lru_touch(s, e);
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

static int read_all(int fd, void *data, size_t size) {
    char *p = data;
    while (size) {
        ssize_t r = read(fd, p, size > (1u << 30) ? (1u << 30) : size);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = EIO; /* the file is shorter than the chunk */
            return -1;
        }
        p += r;
        size -= (size_t)r;
    }
    return 0;
}

int dmri_wstore_entry_data(dmri_wstore_entry_t *e, const void **data, size_t *size,
                          dmri_err_t *err) {
    dmri_wstore_t *s = e->store;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (!e->data) {
        char path[4200];
        spill_path(s, e->spill_id, path, sizeof path);
        void *buf = dmri_malloc(e->size);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read_all(fd, buf, e->size) != 0) {
            int saved = errno;
            dmri_free(buf);
            snprintf(s->last_error, sizeof s->last_error, "reading %.200s back from %.250s: %s",
                     e->key, path, strerror(saved));
            rc = dmri_err_set(err, DMRI_EIO, "%s", s->last_error);
        } else {
            e->data = buf;
            s->st.memory += e->size;
            if (e->in_map)
                s->st.spilled -= e->size;
            s->st.reloads++;
            lru_touch(s, e);
            spill_over_limit(s);
        }
        if (fd >= 0)
            close(fd);
    }
    if (rc == 0) {
        *data = e->data;
        *size = e->size;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t dmri_wstore_entry_size(const dmri_wstore_entry_t *e) { return e->size; }

const char *dmri_wstore_entry_key(const dmri_wstore_entry_t *e) { return e->key; }

void dmri_wstore_ref(dmri_wstore_entry_t *e) {
    pthread_mutex_lock(&e->store->mu);
    e->refs++;
    pthread_mutex_unlock(&e->store->mu);
}

void dmri_wstore_unref(dmri_wstore_entry_t *e) {
    if (!e)
        return;
    dmri_wstore_t *s = e->store;
    pthread_mutex_lock(&s->mu);
    if (--e->refs == 0 && (!e->in_map || e->transient))
        entry_free(s, e);
    pthread_mutex_unlock(&s->mu);
}

int dmri_wstore_has(dmri_wstore_t *s, const char *key) {
    pthread_mutex_lock(&s->mu);
    int r = map_find(s, key) != NULL;
    pthread_mutex_unlock(&s->mu);
    return r;
}

int dmri_wstore_remove(dmri_wstore_t *s, const char *key) {
    pthread_mutex_lock(&s->mu);
    dmri_wstore_entry_t *e = map_find(s, key);
    if (e) {
        map_unlink(s, e);
        if (e->refs == 0)
            entry_free(s, e);
    }
    pthread_mutex_unlock(&s->mu);
    return e != NULL;
}

size_t dmri_wstore_clear(dmri_wstore_t *s) {
    pthread_mutex_lock(&s->mu);
    size_t n = s->count;
    for (size_t i = 0; i < s->nbuckets; i++) {
        while (s->buckets[i]) {
            dmri_wstore_entry_t *e = s->buckets[i];
            map_unlink(s, e);
            if (e->refs == 0)
                entry_free(s, e);
        }
    }
    s->generation++;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t dmri_wstore_generation(dmri_wstore_t *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t g = s->generation;
    pthread_mutex_unlock(&s->mu);
    return g;
}

void dmri_wstore_trim(dmri_wstore_t *s) {
    pthread_mutex_lock(&s->mu);
    spill_over_limit(s);
    pthread_mutex_unlock(&s->mu);
}

void dmri_wstore_stats(dmri_wstore_t *s, dmri_wstore_stats_t *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    st->count = s->count;
    pthread_mutex_unlock(&s->mu);
}

void dmri_wstore_spill_dir(dmri_wstore_t *s, char *out, size_t outsz) {
    pthread_mutex_lock(&s->mu);
    snprintf(out, outsz, "%s", s->dir);
    pthread_mutex_unlock(&s->mu);
}

void dmri_wstore_last_error(dmri_wstore_t *s, char *out, size_t outsz) {
    pthread_mutex_lock(&s->mu);
    snprintf(out, outsz, "%s", s->last_error);
    pthread_mutex_unlock(&s->mu);
}
