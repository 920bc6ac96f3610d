/* subject_s3: subjects read straight from an S3 bucket (HCP's
 * hcp-openaccess layout, KEY = PREFIX<id>/T1w/Diffusion/{bvals,bvecs,
 * data.nii.gz}) when they are not on local disk: bvals/bvecs into memory,
 * data.nii.gz inflated while it downloads (no temporary file), optionally
 * kept in a size-limited local cache (common/s3_cache.h). */
#ifndef DMRI_SUBJECT_S3_H
#define DMRI_SUBJECT_S3_H

#include <stdint.h>

#include "dmri_err.h"

typedef struct dmri_s3_source {
    const char *bucket;    /* NULL: hcp-openaccess */
    const char *prefix;    /* NULL: "HCP/" */
    const char *profile;   /* credentials profile; NULL: hcp */
    const char *region;    /* NULL: us-east-1 */
    const char *endpoint;  /* NULL: AWS; else path-style http(s)://HOST:PORT */
    const char *cache_dir; /* NULL: no cache */
    uint64_t cache_limit;  /* bytes; 0 with a cache_dir: DMRI_S3_DEFAULT_CACHE */
    int retries;           /* transient failures retried, resuming; <0: default 5 */
} dmri_s3_source_t;

#define DMRI_S3_DEFAULT_BUCKET "hcp-openaccess"
#define DMRI_S3_DEFAULT_PREFIX "HCP/"
#define DMRI_S3_DEFAULT_PROFILE "hcp"
#define DMRI_S3_DEFAULT_CACHE (50ull << 30)

/* The command-line options dmri-run and dmri-worker share; in a getopt_long
 * table: DMRI_S3_LONGOPTS(code), then for `code` call dmri_s3_source_option
 * with the option's name. */
#define DMRI_S3_LONGOPTS(code)                                                           \
    {"s3", no_argument, 0, code}, {"bucket", required_argument, 0, code},               \
        {"s3-prefix", required_argument, 0, code}, {"profile", required_argument, 0, code}, \
        {"region", required_argument, 0, code}, {"endpoint", required_argument, 0, code},   \
        {"s3-cache", required_argument, 0, code},                                       \
        {"s3-cache-size", required_argument, 0, code},                                  \
        {"s3-retries", required_argument, 0, code}

#define DMRI_S3_OPTIONS_HELP                                                              \
    "  --s3                 read subjects not found on local disk from S3 (streamed,\n"  \
    "                       no temporary file); credentials as dmri-download\n"          \
    "  --bucket B           (default hcp-openaccess)\n"                                  \
    "  --s3-prefix P        keys P<id>/T1w/Diffusion/... (default HCP/)\n"                \
    "  --profile NAME       credentials profile (default hcp)\n"                         \
    "  --region R           (default us-east-1)\n"                                       \
    "  --endpoint URL       an S3-compatible server (path-style URLs)\n"                 \
    "  --s3-cache DIR       keep downloaded data.nii.gz in DIR (least recently used\n"   \
    "                       removed first)\n"                                            \
    "  --s3-cache-size SIZE size limit of the cache, e.g. 20G (default 50G)\n"           \
    "  --s3-retries N       transient failures retried, resuming (default 5)\n"

/* Applies option `name` (without "--") of DMRI_S3_LONGOPTS; any of them
 * but --s3 itself also implies --s3 (*enabled = 1). Bad values:
 * DMRI_EINVAL with a message naming the option. */
int dmri_s3_source_option(dmri_s3_source_t *src, int *enabled, const char *name,
                          const char *value, dmri_err_t *err);

struct dmri_subject;
struct dmri_subject_paths;

/* 1 if `arg` can be an HCP-style id to look up in the bucket (letters,
 * digits, '_', '-', '.', not starting with '.'), 0 otherwise. */
int dmri_s3_is_subject_id(const char *arg);

/* Fill paths with s3://BUCKET/PREFIX<id>/T1w/Diffusion/... names and mark
 * them remote (nothing is contacted yet). */
int dmri_s3_subject_paths(const dmri_s3_source_t *src, const char *id,
                          struct dmri_subject_paths *paths, dmri_err_t *err);

/* Read a remote subject's bvals (*nb values), bvecs (*ng directions) and
 * image into s, as dmri_subject_load does before its checks;
 * s->source_note says where the image came from (streamed or the cache). */
int dmri_s3_subject_read(const dmri_s3_source_t *src, struct dmri_subject *s, int *nb, int *ng,
                         dmri_err_t *err);

#endif
