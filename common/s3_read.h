/* s3_read: S3 objects read into memory (s3_read.c): small objects into a
 * buffer, a .nii.gz inflated while it downloads (no temporary file). */
#ifndef DMRI_S3_READ_H
#define DMRI_S3_READ_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"
#include "image.h"
#include "s3.h"

/* *out gets the object, NUL-terminated (free with dmri_free); more than
 * `max` bytes fails with DMRI_EFORMAT. */
int dmri_s3_get_mem(dmri_s3_t *s3, const char *key, size_t max, char **out, size_t *len,
                    dmri_err_t *err);

/* GET `key` (a .nii.gz) and read it as dmri_image_read_fd does; `name`
 * (e.g. "s3://bucket/key") is used in messages. A failed download reports
 * the download's error (DMRI_EIO retryable, DMRI_ENOENT...), not "truncated". */
int dmri_s3_read_image(dmri_s3_t *s3, const char *key, const char *name, dmri_image_t *img,
                       dmri_err_t *err);

/* Streaming options: retries resume the transfer where it stopped (Range),
 * so a cut connection costs nothing already inflated; tee_fd (or -1) gets
 * a copy of every byte (a cache entry being written). */
typedef struct {
    int retries;     /* extra attempts after a transient failure (DMRI_EIO) */
    int backoff_ms;  /* first pause, doubled each attempt; 0: 1000 */
    int tee_fd;
} dmri_s3_stream_opts_t;

typedef struct {
    uint64_t bytes;   /* bytes of the object received */
    int attempts;     /* GET requests made */
    int tee_complete; /* the tee got every byte of a successful read */
} dmri_s3_stream_stats_t;

int dmri_s3_read_image_ex(dmri_s3_t *s3, const char *key, const char *name,
                          const dmri_s3_stream_opts_t *opts, dmri_image_t *img,
                          dmri_s3_stream_stats_t *stats, dmri_err_t *err);

#endif
