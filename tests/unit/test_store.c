/* test_store: the worker's chunk store (worker/store.h) — reference counts
 * and RELEASE while referenced, memory accounting, spilling in LRU order to
 * a private folder and transparent reload, transient chunks, generations,
 * spill failures, abandon, and concurrent use from several threads. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmri_alloc.h"
#include "store.h"

static int failures;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
            failures++;                                                      \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                                    \
    do {                                                                                  \
        unsigned long long va_ = (unsigned long long)(a), vb_ = (unsigned long long)(b); \
        if (va_ != vb_) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %llu, %s = %llu\n", __FILE__,  \
                    __LINE__, #a, va_, #b, vb_);                                          \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

static void *filled(size_t n, int byte) {
    void *p = dmri_malloc(n);
    memset(p, byte, n);
    return p;
}

/* 1 if the chunk under key is held and every byte equals `byte`. */
static int holds_bytes(dmri_wstore_t *s, const char *key, size_t n, int byte) {
    dmri_wstore_entry_t *e = dmri_wstore_acquire(s, key);
    if (!e)
        return 0;
    const void *d;
    size_t sz;
    int ok = dmri_wstore_entry_data(e, &d, &sz, NULL) == 0 && sz == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = ((const unsigned char *)d)[i] == (unsigned char)byte;
    dmri_wstore_unref(e);
    return ok;
}

static dmri_wstore_stats_t stats(dmri_wstore_t *s) {
    dmri_wstore_stats_t st;
    dmri_wstore_stats(s, &st);
    return st;
}

static void make_tmpdir(char *out, size_t outsz) {
    snprintf(out, outsz, "/tmp/test_store-XXXXXX");
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        exit(1);
    }
}

/* Bytes of each spill file in dir, as the fill byte of its first byte;
 * returns the number of files. */
static int spill_files(const char *dir, int *first_bytes, int max) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unsigned char b = 0;
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            if (read(fd, &b, 1) != 1)
                b = 0;
            close(fd);
        }
        if (n < max)
            first_bytes[n] = b;
        n++;
    }
    closedir(d);
    return n;
}

static int contains(const int *v, int n, int x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

static void test_refcounts(void) {
    dmri_wstore_t *s = dmri_wstore_new(0, NULL);
    uint64_t gen = dmri_wstore_generation(s);
    CHECK_EQ(dmri_wstore_put(s, "J1/raw/g0/s0", filled(100, 1), 100, 0, gen, NULL), 0);
    CHECK_EQ(dmri_wstore_put(s, "J1/raw/g0/s1", filled(50, 2), 50, 0, gen, NULL), 0);
    CHECK(dmri_wstore_has(s, "J1/raw/g0/s0"));
    CHECK(!dmri_wstore_has(s, "J1/raw/g0/s2"));
    CHECK(dmri_wstore_acquire(s, "J1/nothing") == NULL);
    CHECK_EQ(stats(s).memory, 150);
    CHECK_EQ(stats(s).count, 2);

    /* RELEASE while a reader (or a zero-copy send) holds the chunk: the key
     * is gone at once, the bytes stay valid and counted until the last unref. */
    dmri_wstore_entry_t *e = dmri_wstore_acquire(s, "J1/raw/g0/s0");
    CHECK(e != NULL);
    dmri_wstore_ref(e); /* a second holder */
    CHECK_EQ(dmri_wstore_remove(s, "J1/raw/g0/s0"), 1);
    CHECK_EQ(dmri_wstore_remove(s, "J1/raw/g0/s0"), 0);
    CHECK(!dmri_wstore_has(s, "J1/raw/g0/s0"));
    CHECK_EQ(stats(s).count, 1);
    CHECK_EQ(stats(s).memory, 150);
    const void *d;
    size_t n;
    CHECK_EQ(dmri_wstore_entry_data(e, &d, &n, NULL), 0);
    CHECK_EQ(n, 100);
    CHECK_EQ(((const unsigned char *)d)[99], 1);
    CHECK(strcmp(dmri_wstore_entry_key(e), "J1/raw/g0/s0") == 0);
    dmri_wstore_unref(e);
    CHECK_EQ(stats(s).memory, 150);
    dmri_wstore_unref(e);
    CHECK_EQ(stats(s).memory, 50);
    dmri_wstore_unref(NULL);

    /* Replacing a key: the old reader keeps the old bytes. */
    dmri_wstore_entry_t *old = dmri_wstore_acquire(s, "J1/raw/g0/s1");
    CHECK_EQ(dmri_wstore_put(s, "J1/raw/g0/s1", filled(70, 3), 70, 0, gen, NULL), 0);
    CHECK_EQ(stats(s).memory, 120);
    CHECK(holds_bytes(s, "J1/raw/g0/s1", 70, 3));
    CHECK_EQ(dmri_wstore_entry_data(old, &d, &n, NULL), 0);
    CHECK_EQ(n, 50);
    CHECK_EQ(((const unsigned char *)d)[0], 2);
    dmri_wstore_unref(old);
    CHECK_EQ(stats(s).memory, 70);

    /* A zero-byte chunk is a chunk. */
    CHECK_EQ(dmri_wstore_put(s, "J1/empty", NULL, 0, 0, gen, NULL), 0);
    CHECK(holds_bytes(s, "J1/empty", 0, 0));
    dmri_wstore_destroy(&s);
    CHECK(s == NULL);
    dmri_wstore_destroy(&s);
}

static void test_transient_and_generation(void) {
    dmri_wstore_t *s = dmri_wstore_new(0, NULL);
    uint64_t gen = dmri_wstore_generation(s);
    dmri_wstore_entry_t *t1 = NULL, *t2 = NULL;
    /* A fetched copy lives while some task uses it. */
    CHECK_EQ(dmri_wstore_put(s, "J2/mask", filled(10, 7), 10, DMRI_WSTORE_TRANSIENT, gen, &t1), 0);
    CHECK(t1 != NULL);
    CHECK(dmri_wstore_has(s, "J2/mask"));
    t2 = dmri_wstore_acquire(s, "J2/mask");
    CHECK(t2 == t1);
    dmri_wstore_unref(t1);
    CHECK(dmri_wstore_has(s, "J2/mask"));
    dmri_wstore_unref(t2);
    CHECK(!dmri_wstore_has(s, "J2/mask"));
    CHECK_EQ(stats(s).memory, 0);

    /* A transient copy of a chunk held for good does not replace it. */
    CHECK_EQ(dmri_wstore_put(s, "J2/info", filled(20, 8), 20, 0, gen, NULL), 0);
    CHECK_EQ(dmri_wstore_put(s, "J2/info", filled(20, 9), 20, DMRI_WSTORE_TRANSIENT, gen, &t1), 0);
    dmri_wstore_unref(t1);
    CHECK(holds_bytes(s, "J2/info", 20, 8));
    CHECK_EQ(stats(s).memory, 20);

    /* clear (a re-registration) drops everything; results of work started
     * before it are refused. */
    dmri_wstore_entry_t *r = dmri_wstore_acquire(s, "J2/info");
    CHECK_EQ(dmri_wstore_clear(s), 1);
    CHECK(!dmri_wstore_has(s, "J2/info"));
    uint64_t gen2 = dmri_wstore_generation(s);
    CHECK(gen2 != gen);
    CHECK_EQ(dmri_wstore_put(s, "J2/late", filled(30, 1), 30, 0, gen, NULL), DMRI_ECANCEL);
    CHECK(!dmri_wstore_has(s, "J2/late"));
    CHECK_EQ(stats(s).memory, 20); /* r still holds J2/info's bytes */
    dmri_wstore_unref(r);
    CHECK_EQ(stats(s).memory, 0);
    CHECK_EQ(dmri_wstore_put(s, "J2/new", filled(30, 1), 30, 0, gen2, NULL), 0);
    dmri_wstore_destroy(&s);
}

static void test_spill_lru(void) {
    char parent[64];
    make_tmpdir(parent, sizeof parent);
    const size_t K = 1000;
    dmri_wstore_t *s = dmri_wstore_new(3 * K, parent);
    uint64_t gen = dmri_wstore_generation(s);
    char dir[4096];
    dmri_wstore_spill_dir(s, dir, sizeof dir);
    CHECK(dir[0] == '\0'); /* created on the first spill only */
    CHECK_EQ(dmri_wstore_put(s, "A", filled(K, 'A'), K, 0, gen, NULL), 0);
    CHECK_EQ(dmri_wstore_put(s, "B", filled(K, 'B'), K, 0, gen, NULL), 0);
    CHECK_EQ(dmri_wstore_put(s, "C", filled(K, 'C'), K, 0, gen, NULL), 0);
    CHECK_EQ(stats(s).spills, 0);
    CHECK_EQ(dmri_wstore_put(s, "D", filled(K, 'D'), K, 0, gen, NULL), 0);
    dmri_wstore_stats_t st = stats(s);
    CHECK_EQ(st.spills, 1);
    CHECK_EQ(st.memory, 3 * K);
    CHECK_EQ(st.spilled, K);
    CHECK_EQ(st.disk, K);
    CHECK_EQ(st.count, 4);
    dmri_wstore_spill_dir(s, dir, sizeof dir);
    CHECK(strncmp(dir, parent, strlen(parent)) == 0 && strstr(dir, "dmri-spill-") != NULL);
    int fb[16];
    CHECK_EQ(spill_files(dir, fb, 16), 1);
    CHECK_EQ(fb[0], 'A'); /* the least recently used went first */

    /* Using B makes C the least recently used. */
    CHECK(holds_bytes(s, "B", K, 'B'));
    CHECK_EQ(dmri_wstore_put(s, "E", filled(K, 'E'), K, 0, gen, NULL), 0);
    CHECK_EQ(spill_files(dir, fb, 16), 2);
    CHECK(contains(fb, 2, 'A') && contains(fb, 2, 'C'));
    CHECK_EQ(stats(s).memory, 3 * K);

    /* Reading a spilled chunk brings it back transparently; while referenced
     * it is never spilled: the least recently used other chunk (D) goes. */
    dmri_wstore_entry_t *a = dmri_wstore_acquire(s, "A");
    CHECK(a != NULL);
    const void *d;
    size_t n;
    CHECK_EQ(dmri_wstore_entry_data(a, &d, &n, NULL), 0);
    CHECK_EQ(n, K);
    CHECK(((const unsigned char *)d)[0] == 'A' && ((const unsigned char *)d)[K - 1] == 'A');
    st = stats(s);
    CHECK_EQ(st.reloads, 1);
    CHECK_EQ(st.memory, 3 * K);
    CHECK_EQ(spill_files(dir, fb, 16), 3);
    CHECK(contains(fb, 3, 'D'));
    CHECK(!contains(fb, 3, 'B') && !contains(fb, 3, 'E'));
    /* In memory now: A (held), E, B. Hold E; F pushes out B, the only
     * unreferenced one. */
    dmri_wstore_entry_t *e = dmri_wstore_acquire(s, "E");
    CHECK_EQ(dmri_wstore_put(s, "F", filled(K, 'F'), K, 0, gen, NULL), 0);
    CHECK_EQ(stats(s).spills, 4);
    CHECK_EQ(spill_files(dir, fb, 16), 4);
    CHECK(contains(fb, 4, 'B'));
    /* Hold F as well: a new chunk G is then the only candidate. */
    dmri_wstore_entry_t *f = dmri_wstore_acquire(s, "F");
    CHECK_EQ(dmri_wstore_put(s, "G", filled(K, 'G'), K, 0, gen, NULL), 0);
    CHECK_EQ(stats(s).spills, 5);
    CHECK_EQ(stats(s).memory, 3 * K);
    /* Reading C back with everything else held: memory goes over the limit
     * (a soft limit: referenced chunks must stay). */
    dmri_wstore_entry_t *c = dmri_wstore_acquire(s, "C");
    CHECK_EQ(dmri_wstore_entry_data(c, &d, &n, NULL), 0);
    CHECK(((const unsigned char *)d)[0] == 'C');
    CHECK_EQ(stats(s).memory, 4 * K);
    CHECK_EQ(stats(s).spills, 5);
    dmri_wstore_unref(a);
    dmri_wstore_unref(e);
    dmri_wstore_unref(f);
    dmri_wstore_unref(c);
    /* unref never writes; trim does, and A (least recent, already on disk)
     * is dropped from memory without a second write. */
    CHECK_EQ(stats(s).memory, 4 * K);
    dmri_wstore_trim(s);
    CHECK_EQ(stats(s).memory, 3 * K);
    CHECK_EQ(stats(s).spills, 5);
    CHECK_EQ(spill_files(dir, fb, 16), 5);

    /* Every chunk still reads back intact, memory staying at the limit. */
    const char *names = "ABCDEFG";
    for (int i = 0; names[i]; i++) {
        char k[2] = {names[i], 0};
        CHECK(holds_bytes(s, k, K, names[i]));
        CHECK(stats(s).memory <= 3 * K);
    }

    /* RELEASE of a chunk on disk deletes its file. */
    int before = spill_files(dir, fb, 16);
    dmri_wstore_trim(s);
    st = stats(s);
    CHECK_EQ(st.memory + st.spilled, 7 * K);
    CHECK(dmri_wstore_remove(s, "B"));
    CHECK(dmri_wstore_remove(s, "A"));
    CHECK_EQ(spill_files(dir, fb, 16), before - 2);
    st = stats(s);
    CHECK_EQ(st.memory + st.spilled, 5 * K);
    CHECK_EQ(st.count, 5);

    /* destroy removes the folder. */
    dmri_wstore_destroy(&s);
    struct stat sb;
    CHECK(stat(dir, &sb) != 0 && errno == ENOENT);
    CHECK_EQ(rmdir(parent), 0);
}

static void test_spill_errors(void) {
    /* A spill folder that cannot be created: chunks stay in memory. */
    dmri_wstore_t *s = dmri_wstore_new(100, "/nonexistent-dmri-dir/x");
    uint64_t gen = dmri_wstore_generation(s);
    CHECK_EQ(dmri_wstore_put(s, "X", filled(80, 'X'), 80, 0, gen, NULL), 0);
    CHECK_EQ(dmri_wstore_put(s, "Y", filled(80, 'Y'), 80, 0, gen, NULL), 0);
    dmri_wstore_stats_t st = stats(s);
    CHECK(st.spill_errors >= 1);
    CHECK_EQ(st.memory, 160);
    char msg[600];
    dmri_wstore_last_error(s, msg, sizeof msg);
    CHECK(strstr(msg, "/nonexistent-dmri-dir/x") != NULL);
    CHECK(holds_bytes(s, "X", 80, 'X'));
    dmri_wstore_destroy(&s);

    /* A spill file that vanished: the reader gets an error naming it. */
    char parent[64];
    make_tmpdir(parent, sizeof parent);
    s = dmri_wstore_new(100, parent);
    gen = dmri_wstore_generation(s);
    CHECK_EQ(dmri_wstore_put(s, "P", filled(80, 'P'), 80, 0, gen, NULL), 0);
    CHECK_EQ(dmri_wstore_put(s, "Q", filled(80, 'Q'), 80, 0, gen, NULL), 0);
    char dir[4096];
    dmri_wstore_spill_dir(s, dir, sizeof dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/1.chunk", dir);
    CHECK_EQ(unlink(path), 0);
    dmri_wstore_entry_t *e = dmri_wstore_acquire(s, "P");
    const void *d;
    size_t n;
    dmri_err_t err = {0};
    CHECK_EQ(dmri_wstore_entry_data(e, &d, &n, &err), DMRI_EIO);
    CHECK(strstr(err.msg, "P") != NULL && strstr(err.msg, dir) != NULL);
    dmri_wstore_unref(e);
    CHECK(holds_bytes(s, "Q", 80, 'Q'));
    dmri_wstore_destroy(&s);
    CHECK_EQ(rmdir(parent), 0);
}

static void test_abandon(void) {
    char parent[64];
    make_tmpdir(parent, sizeof parent);
    pid_t pid = fork();
    if (pid == 0) {
        dmri_wstore_t *s = dmri_wstore_new(10, parent);
        uint64_t gen = dmri_wstore_generation(s);
        dmri_wstore_put(s, "a", filled(100, 1), 100, 0, gen, NULL);
        dmri_wstore_put(s, "b", filled(100, 2), 100, 0, gen, NULL);
        dmri_wstore_entry_t *e = dmri_wstore_acquire(s, "a");
        dmri_wstore_remove(s, "a"); /* a released chunk whose file only the folder knows */
        (void)e;
        dmri_wstore_abandon(s);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int fb[4];
    CHECK_EQ(spill_files(parent, fb, 4), 0); /* the private folder is gone */
    CHECK_EQ(rmdir(parent), 0);
}

/* ---- threads: compute threads put and read, an "I/O thread" drops
 * references others took, the main thread releases; spilling all along. */

#define NT 4
#define NOPS 3000
#define NKEYS 40

typedef struct {
    dmri_wstore_t *s;
    int id;
    unsigned seed;
    int bad;
    pthread_mutex_t *qmu;
    dmri_wstore_entry_t **queue; /* references handed to the unref thread */
    int *qn;
    volatile int *done;
} targ_t;

static unsigned rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

static uint32_t key_hash(const char *k) {
    uint32_t h = 2166136261u;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h;
}

/* A chunk names its key in its first 4 bytes; the rest is one byte. */
static int chunk_ok(const char *key, const void *d, size_t n) {
    if (n < 5)
        return 0;
    uint32_t h;
    memcpy(&h, d, 4);
    if (h != key_hash(key))
        return 0;
    const unsigned char *p = d;
    for (size_t i = 5; i < n; i++)
        if (p[i] != p[4])
            return 0;
    return 1;
}

static void *worker_thread(void *arg) {
    targ_t *a = arg;
    char key[32];
    for (int i = 0; i < NOPS; i++) {
        snprintf(key, sizeof key, "J9/k%u", rnd(&a->seed) % NKEYS);
        unsigned op = rnd(&a->seed) % 10;
        if (op < 4) {
            size_t n = 64 + rnd(&a->seed) % 2000;
            unsigned char *d = dmri_malloc(n);
            uint32_t h = key_hash(key);
            memcpy(d, &h, 4);
            memset(d + 4, (int)(rnd(&a->seed) & 0xff), n - 4);
            dmri_wstore_put(a->s, key, d, n, (op == 0) ? DMRI_WSTORE_TRANSIENT : 0,
                            dmri_wstore_generation(a->s), NULL);
        } else {
            dmri_wstore_entry_t *e = dmri_wstore_acquire(a->s, key);
            if (!e)
                continue;
            const void *d;
            size_t n;
            if (dmri_wstore_entry_data(e, &d, &n, NULL) != 0 || !chunk_ok(key, d, n))
                a->bad++;
            if (op < 7) {
                dmri_wstore_unref(e);
            } else {
                pthread_mutex_lock(a->qmu);
                a->queue[(*a->qn)++] = e;
                pthread_mutex_unlock(a->qmu);
            }
        }
    }
    return NULL;
}

static void *unref_thread(void *arg) {
    targ_t *a = arg;
    for (;;) {
        pthread_mutex_lock(a->qmu);
        int n = *a->qn;
        dmri_wstore_entry_t *e = n ? a->queue[--(*a->qn)] : NULL;
        int finished = *a->done;
        pthread_mutex_unlock(a->qmu);
        if (e) {
            const void *d;
            size_t sz;
            /* still readable while referenced, whatever happened since */
            if (dmri_wstore_entry_data(e, &d, &sz, NULL) != 0 ||
                !chunk_ok(dmri_wstore_entry_key(e), d, sz))
                a->bad++;
            dmri_wstore_unref(e);
        } else if (finished) {
            break;
        } else {
            usleep(100);
        }
    }
    return NULL;
}

/* Accounting adds up: what is held is exactly in memory or on disk. The
 * references are kept until the stats are read: an unreferenced transient
 * chunk leaves the store with the last reference to it (store.h), so
 * acquiring and dropping one key at a time would free chunks after their
 * size was summed and the books would look short by exactly those. */
static void check_books(dmri_wstore_t *s) {
    dmri_wstore_entry_t *held[NKEYS];
    uint64_t total = 0;
    size_t n = 0;
    char key[32];
    for (int k = 0; k < NKEYS; k++) {
        snprintf(key, sizeof key, "J9/k%d", k);
        held[k] = dmri_wstore_acquire(s, key);
        if (held[k]) {
            total += dmri_wstore_entry_size(held[k]);
            n++;
        }
    }
    dmri_wstore_stats_t st = stats(s);
    CHECK_EQ(st.memory + st.spilled, total);
    CHECK_EQ(st.count, n);
    for (int k = 0; k < NKEYS; k++)
        dmri_wstore_unref(held[k]);
}

static void test_threads(void) {
    char parent[64];
    make_tmpdir(parent, sizeof parent);
    dmri_wstore_t *s = dmri_wstore_new(20000, parent);
    pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
    dmri_wstore_entry_t **queue = dmri_calloc(NT * NOPS, sizeof *queue);
    int qn = 0;
    volatile int done = 0;
    targ_t args[NT + 1];
    pthread_t th[NT + 1];
    for (int i = 0; i <= NT; i++) {
        args[i] = (targ_t){s, i, 12345u + 977u * (unsigned)i, 0, &qmu, queue, &qn, &done};
    }
    for (int i = 0; i < NT; i++)
        pthread_create(&th[i], NULL, worker_thread, &args[i]);
    pthread_create(&th[NT], NULL, unref_thread, &args[NT]);
    /* The main thread plays the scheduler: releases and trims meanwhile. */
    char key[32];
    unsigned seed = 99;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "J9/k%u", rnd(&seed) % NKEYS);
        dmri_wstore_remove(s, key);
        if (i % 20 == 0)
            dmri_wstore_trim(s);
        usleep(100);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_lock(&qmu);
    done = 1;
    pthread_mutex_unlock(&qmu);
    pthread_join(th[NT], NULL);
    int bad = 0;
    for (int i = 0; i <= NT; i++)
        bad += args[i].bad;
    CHECK_EQ(bad, 0);
    CHECK_EQ(qn, 0);
    dmri_wstore_trim(s);
    dmri_wstore_stats_t st = stats(s);
    printf("threads: %zu keys held, %llu B in memory, %llu B spilled, %llu spills, %llu reloads\n",
           st.count, (unsigned long long)st.memory, (unsigned long long)st.spilled,
           (unsigned long long)st.spills, (unsigned long long)st.reloads);
    /* The main thread's removals race with the puts: any count up to NKEYS
     * (even 0) is a valid end state. */
    CHECK(st.count <= NKEYS);
    CHECK(st.memory <= 20000);
    CHECK(st.spills > 0 && st.reloads > 0);
    /* Twice: the first pass drops the last reference to the transient
     * chunks put without one, which must leave the books balanced too. */
    check_books(s);
    check_books(s);
    dmri_wstore_clear(s);
    st = stats(s);
    CHECK_EQ(st.memory, 0);
    CHECK_EQ(st.spilled, 0);
    CHECK_EQ(st.disk, 0);
    dmri_wstore_destroy(&s);
    dmri_free(queue);
    CHECK_EQ(rmdir(parent), 0);
}

int main(void) {
    test_refcounts();
    test_transient_and_generation();
    test_spill_lru();
    test_spill_errors();
    test_abandon();
    test_threads();
    if (failures) {
        fprintf(stderr, "test_store: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_store: all checks passed\n");
    return 0;
}
