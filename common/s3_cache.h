/* s3_cache: a local folder of S3 objects kept with a size limit, so a worker
 * that processes the same subject again (or restarts) does not download
 * 1.3 GB again. Entries mirror the bucket: DIR/<bucket>/<key>, with the
 * object's ETag beside it (<key>.etag) to notice a changed object. Least
 * recently used entries are removed to stay under the limit; an object
 * larger than the limit is not cached. Several processes may share one
 * folder: eviction and publication are serialised by a lock file. */
#ifndef DMRI_S3_CACHE_H
#define DMRI_S3_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"

#define DMRI_S3_CACHE_PATH_MAX 4096

typedef struct {
    char dir[DMRI_S3_CACHE_PATH_MAX];
    uint64_t limit; /* bytes of entries (ETag files not counted) */
} dmri_s3_cache_t;

/* An entry being written: a temporary file in the entry's folder. */
typedef struct {
    int fd;                               /* -1 when none */
    char tmp[DMRI_S3_CACHE_PATH_MAX];
    char path[DMRI_S3_CACHE_PATH_MAX];
} dmri_s3_cache_entry_t;

/* Creates `dir` if needed. limit 0 is refused (DMRI_EINVAL). */
int dmri_s3_cache_init(dmri_s3_cache_t *c, const char *dir, uint64_t limit, dmri_err_t *err);

/* 1 and the entry's path when a complete entry for bucket/key has this size
 * and ETag (its time is refreshed: recently used); 0 otherwise. */
int dmri_s3_cache_lookup(const dmri_s3_cache_t *c, const char *bucket, const char *key,
                         uint64_t size, const char *etag, char *path, size_t pathsz);

/* Makes room for `size` bytes (removing least recently used entries) and
 * opens a temporary file for the entry. Returns 0 with e->fd >= 0, 0 with
 * e->fd = -1 when the object cannot be cached (larger than the limit), or an
 * error (folder not writable...). */
int dmri_s3_cache_begin(const dmri_s3_cache_t *c, const char *bucket, const char *key,
                        uint64_t size, dmri_s3_cache_entry_t *e, dmri_err_t *err);

/* Publishes a completely written entry (fsync, ETag file, rename) and closes
 * it; abort removes the temporary file. Both leave e->fd = -1. */
int dmri_s3_cache_commit(const dmri_s3_cache_t *c, dmri_s3_cache_entry_t *e, const char *etag,
                         dmri_err_t *err);
void dmri_s3_cache_abort(dmri_s3_cache_entry_t *e);

/* Bytes held by complete entries (for tests and logs). */
uint64_t dmri_s3_cache_used(const dmri_s3_cache_t *c);

/* "20G", "500M", "1.5T", "123" (bytes) -> bytes; DMRI_EINVAL otherwise. */
int dmri_parse_size(const char *s, uint64_t *out);

#endif
