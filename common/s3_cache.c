/* s3_cache: the size-limited local folder of S3 objects (see s3_cache.h). */
#include "s3_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dmri_alloc.h"
#include "fsutil.h"

#define TMP_PREFIX ".tmp-"
#define ETAG_SUFFIX ".etag"
#define LOCK_NAME ".lock"

int dmri_parse_size(const char *s, uint64_t *out) {
    if (!s || !*s)
        return DMRI_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0) || !isfinite(v))
        return DMRI_EINVAL;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v * mult > 1.8e19)
        return DMRI_EINVAL;
    *out = (uint64_t)(v * mult);
    return 0;
}

int dmri_s3_cache_init(dmri_s3_cache_t *c, const char *dir, uint64_t limit, dmri_err_t *err) {
    memset(c, 0, sizeof *c);
    if (limit == 0)
        return dmri_err_set(err, DMRI_EINVAL, "S3 cache %s: the size limit must be > 0", dir);
    if (snprintf(c->dir, sizeof c->dir, "%s", dir) >= (int)sizeof c->dir)
        return dmri_err_set(err, DMRI_ERANGE, "S3 cache folder name too long");
    c->limit = limit;
    int rc = dmri_mkdir_p(dir, err);
    if (rc != 0)
        dmri_err_prefix(err, "S3 cache: ");
    return rc;
}

static int entry_path(const dmri_s3_cache_t *c, const char *bucket, const char *key, char *out,
                      size_t outsz) {
    /* Keys come from our own code, but never let one climb out of the folder. */
    if (!bucket[0] || !key[0] || strstr(key, "..") || key[0] == '/' || strchr(bucket, '/'))
        return DMRI_EINVAL;
    int n = snprintf(out, outsz, "%s/%s/%s", c->dir, bucket, key);
    return n > 0 && (size_t)n < outsz - 16 ? 0 : DMRI_ERANGE;
}

static int read_small(const char *path, char *buf, size_t bufsz) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, bufsz - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 0;
}

int dmri_s3_cache_lookup(const dmri_s3_cache_t *c, const char *bucket, const char *key,
                         uint64_t size, const char *etag, char *path, size_t pathsz) {
    char p[DMRI_S3_CACHE_PATH_MAX], ep[DMRI_S3_CACHE_PATH_MAX + 8], stored[256];
    if (entry_path(c, bucket, key, p, sizeof p) != 0)
        return 0;
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size)
        return 0;
    snprintf(ep, sizeof ep, "%s%s", p, ETAG_SUFFIX);
    if (read_small(ep, stored, sizeof stored) != 0 || strcmp(stored, etag ? etag : "") != 0)
        return 0;
    if (snprintf(path, pathsz, "%s", p) >= (int)pathsz)
        return 0;
    utimensat(AT_FDCWD, p, NULL, 0); /* now: recently used */
    return 1;
}

/* ---- eviction: every file under the folder, oldest first ---- */

typedef struct {
    char *path;
    uint64_t size;
    struct timespec mtime;
} cfile_t;

static struct {
    cfile_t *v;
    size_t n, cap;
    uint64_t total;
} g_walk; /* nftw has no context pointer; the walk runs under the lock */

static int is_dead_tmp(const char *base) {
    /* ".tmp-<pid>-name": a temporary file of a process that no longer runs. */
    long pid = strtol(base + strlen(TMP_PREFIX), NULL, 10);
    return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static int walk_fn(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    if (type != FTW_F || !S_ISREG(st->st_mode))
        return 0;
    const char *base = path + ftw->base;
    size_t bl = strlen(base), sl = strlen(ETAG_SUFFIX);
    if (strcmp(base, LOCK_NAME) == 0 || (bl > sl && strcmp(base + bl - sl, ETAG_SUFFIX) == 0))
        return 0;
    if (strncmp(base, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
        if (is_dead_tmp(base)) {
            unlink(path);
            return 0;
        }
        g_walk.total += (uint64_t)st->st_size; /* space being filled right now */
        return 0;
    }
    if (g_walk.n == g_walk.cap) {
        g_walk.cap = g_walk.cap ? g_walk.cap * 2 : 64;
        g_walk.v = dmri_realloc(g_walk.v, g_walk.cap * sizeof *g_walk.v);
    }
    cfile_t *f = &g_walk.v[g_walk.n++];
    f->path = strdup(path);
    f->size = (uint64_t)st->st_size;
    f->mtime = st->st_mtim;
    g_walk.total += f->size;
    return 0;
}

static int older_first(const void *a, const void *b) {
    const cfile_t *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->path, y->path);
}

static void walk_free(void) {
    for (size_t i = 0; i < g_walk.n; i++)
        free(g_walk.v[i].path);
    dmri_free(g_walk.v);
    memset(&g_walk, 0, sizeof g_walk);
}

static int lock_dir(const dmri_s3_cache_t *c) {
    char p[DMRI_S3_CACHE_PATH_MAX + 8];
    snprintf(p, sizeof p, "%s/%s", c->dir, LOCK_NAME);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
        }
    return fd;
}

static void unlock_dir(int fd) {
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static pthread_mutex_t g_walk_mutex = PTHREAD_MUTEX_INITIALIZER;

/* Removes least recently used entries until `need` more bytes fit. */
static uint64_t evict_for(const dmri_s3_cache_t *c, uint64_t need) {
    pthread_mutex_lock(&g_walk_mutex);
    nftw(c->dir, walk_fn, 16, FTW_PHYS);
    if (g_walk.n > 1)
        qsort(g_walk.v, g_walk.n, sizeof *g_walk.v, older_first);
    for (size_t i = 0; i < g_walk.n && g_walk.total + need > c->limit; i++) {
        char ep[DMRI_S3_CACHE_PATH_MAX + 8];
        snprintf(ep, sizeof ep, "%s%s", g_walk.v[i].path, ETAG_SUFFIX);
        if (unlink(g_walk.v[i].path) == 0)
            g_walk.total -= g_walk.v[i].size;
        unlink(ep);
    }
    uint64_t total = g_walk.total;
    walk_free();
    pthread_mutex_unlock(&g_walk_mutex);
    return total;
}

uint64_t dmri_s3_cache_used(const dmri_s3_cache_t *c) {
    pthread_mutex_lock(&g_walk_mutex);
    nftw(c->dir, walk_fn, 16, FTW_PHYS);
    uint64_t total = g_walk.total;
    walk_free();
    pthread_mutex_unlock(&g_walk_mutex);
    return total;
}

int dmri_s3_cache_begin(const dmri_s3_cache_t *c, const char *bucket, const char *key,
                        uint64_t size, dmri_s3_cache_entry_t *e, dmri_err_t *err) {
    memset(e, 0, sizeof *e);
    e->fd = -1;
    if (size > c->limit)
        return 0;
    if (entry_path(c, bucket, key, e->path, sizeof e->path) != 0)
        return dmri_err_set(err, DMRI_EINVAL, "S3 cache: unusable key '%s'", key);
    char folder[DMRI_S3_CACHE_PATH_MAX];
    snprintf(folder, sizeof folder, "%s", e->path);
    char *slash = strrchr(folder, '/');
    *slash = '\0';
    int rc = dmri_mkdir_p(folder, err);
    if (rc != 0)
        return dmri_err_prefix(err, "S3 cache: ");
    int n = snprintf(e->tmp, sizeof e->tmp, "%s/%s%ld-%s", folder, TMP_PREFIX, (long)getpid(),
                     slash + 1);
    if (n < 0 || (size_t)n >= sizeof e->tmp)
        return dmri_err_set(err, DMRI_ERANGE, "S3 cache: path too long for '%s'", key);
    int lk = lock_dir(c);
    uint64_t used = evict_for(c, size);
    if (used + size > c->limit) {
        unlock_dir(lk); /* the rest is being written by others right now */
        return 0;
    }
    e->fd = open(e->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int saved = errno;
    /* Reserve the space now so concurrent writers count it. */
    if (e->fd >= 0 && posix_fallocate(e->fd, 0, (off_t)size) != 0) {
        close(e->fd);
        unlink(e->tmp);
        e->fd = -1;
        unlock_dir(lk);
        return 0; /* no room on the disk: simply do not cache */
    }
    unlock_dir(lk);
    if (e->fd < 0)
        return dmri_err_set(err, DMRI_EIO, "S3 cache: cannot create %s: %s", e->tmp,
                            strerror(saved));
    return 0;
}

int dmri_s3_cache_commit(const dmri_s3_cache_t *c, dmri_s3_cache_entry_t *e, const char *etag,
                         dmri_err_t *err) {
    if (e->fd < 0)
        return 0;
    int rc = 0;
    if (fsync(e->fd) != 0)
        rc = dmri_err_set(err, DMRI_EIO, "S3 cache: %s: %s", e->tmp, strerror(errno));
    close(e->fd);
    e->fd = -1;
    if (rc != 0) {
        unlink(e->tmp);
        return rc;
    }
    char ep[DMRI_S3_CACHE_PATH_MAX + 8];
    snprintf(ep, sizeof ep, "%s%s", e->path, ETAG_SUFFIX);
    int lk = lock_dir(c);
    /* Data first: a crash before the ETag file leaves an entry that never
     * matches (a miss), never a wrong ETag on new data. */
    unlink(ep);
    if (rename(e->tmp, e->path) != 0) {
        rc = dmri_err_set(err, DMRI_EIO, "S3 cache: rename %s: %s", e->tmp, strerror(errno));
        unlink(e->tmp);
    } else {
        rc = dmri_write_file_atomic(ep, etag ? etag : "", strlen(etag ? etag : ""), err);
    }
    unlock_dir(lk);
    return rc;
}

void dmri_s3_cache_abort(dmri_s3_cache_entry_t *e) {
    if (e->fd >= 0) {
        close(e->fd);
        unlink(e->tmp);
    }
    e->fd = -1;
}
