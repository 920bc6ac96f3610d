/* subject_s3: reading a subject from an S3 bucket (see subject_s3.h). */
#include "subject_s3.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmri_alloc.h"
#include "fsl_gradients.h"
#include "s3.h"
#include "s3_cache.h"
#include "s3_read.h"
#include "subject.h"

#define GRADIENT_FILE_MAX (1u << 20)

static const char *bucket_of(const dmri_s3_source_t *src) {
    return src->bucket && src->bucket[0] ? src->bucket : DMRI_S3_DEFAULT_BUCKET;
}

static const char *prefix_of(const dmri_s3_source_t *src) {
    return src->prefix ? src->prefix : DMRI_S3_DEFAULT_PREFIX;
}

int dmri_s3_is_subject_id(const char *arg) {
    if (!arg || !arg[0] || arg[0] == '.' || strlen(arg) > 128)
        return 0;
    for (const char *c = arg; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || *c == '.'))
            return 0;
    return 1;
}

int dmri_s3_subject_paths(const dmri_s3_source_t *src, const char *id, dmri_subject_paths_t *p,
                          dmri_err_t *err) {
    memset(p, 0, sizeof *p);
    if (!dmri_s3_is_subject_id(id))
        return dmri_err_set(err, DMRI_EINVAL, "'%s' is not a subject id to look up in S3", id);
    snprintf(p->name, sizeof p->name, "%s", id);
    p->remote = 1;
    snprintf(p->dir, sizeof p->dir, "s3://%.255s/%.1024s%.128s/T1w/Diffusion", bucket_of(src), prefix_of(src),
             id);
    snprintf(p->data_path, sizeof p->data_path, "%.2048s/data.nii.gz", p->dir);
    snprintf(p->bvals_path, sizeof p->bvals_path, "%.2048s/bvals", p->dir);
    snprintf(p->bvecs_path, sizeof p->bvecs_path, "%.2048s/bvecs", p->dir);
    return 0;
}

int dmri_s3_source_option(dmri_s3_source_t *src, int *enabled, const char *name,
                          const char *value, dmri_err_t *err) {
    *enabled = 1;
    if (strcmp(name, "s3") == 0)
        return 0;
    if (!value || !value[0])
        return dmri_err_set(err, DMRI_EINVAL, "--%s: missing value", name);
    if (strcmp(name, "bucket") == 0)
        src->bucket = value;
    else if (strcmp(name, "s3-prefix") == 0)
        src->prefix = value;
    else if (strcmp(name, "profile") == 0)
        src->profile = value;
    else if (strcmp(name, "region") == 0)
        src->region = value;
    else if (strcmp(name, "endpoint") == 0) {
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
            return dmri_err_set(err, DMRI_EINVAL,
                                "--endpoint: expected http://HOST:PORT or https://..., got '%s'",
                                value);
        src->endpoint = value;
    } else if (strcmp(name, "s3-cache") == 0)
        src->cache_dir = value;
    else if (strcmp(name, "s3-cache-size") == 0) {
        if (dmri_parse_size(value, &src->cache_limit) != 0 || src->cache_limit == 0)
            return dmri_err_set(err, DMRI_EINVAL,
                                "--s3-cache-size: expected a size like 20G or 500M, got '%s'",
                                value);
    } else if (strcmp(name, "s3-retries") == 0) {
        char *end;
        long v = strtol(value, &end, 10);
        if (*end || v < 0 || v > 100)
            return dmri_err_set(err, DMRI_EINVAL, "--s3-retries: expected 0..100, got '%s'",
                                value);
        src->retries = (int)v;
    } else
        return dmri_err_set(err, DMRI_EINVAL, "--%s: not an S3 option", name);
    return 0;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static int g_curl_rc;
static dmri_err_t g_curl_err;

static void curl_init_once(void) {
    g_curl_rc = dmri_s3_global_init(&g_curl_err);
}

static int read_gradients(dmri_s3_t *s3, const char *key, const char *name, int bvecs,
                          double **out, int *n, dmri_err_t *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = dmri_s3_get_mem(s3, key, GRADIENT_FILE_MAX, &text, &len, err);
    if (rc != 0)
        return rc;
    rc = bvecs ? dmri_parse_bvecs(name, text, len, out, n, err)
               : dmri_parse_bvals(name, text, len, out, n, err);
    dmri_free(text);
    return rc;
}

static int read_image(const dmri_s3_source_t *src, dmri_s3_t *s3, const char *key,
                      dmri_subject_t *s, dmri_err_t *err) {
    const char *name = s->paths.data_path;
    dmri_s3_object_t obj;
    int rc = dmri_s3_head(s3, key, &obj, err);
    if (rc != 0)
        return rc;
    dmri_s3_cache_t cache;
    int use_cache = src->cache_dir && src->cache_dir[0];
    if (use_cache) {
        uint64_t limit = src->cache_limit ? src->cache_limit : DMRI_S3_DEFAULT_CACHE;
        if ((rc = dmri_s3_cache_init(&cache, src->cache_dir, limit, err)) != 0)
            return rc;
        char cached[DMRI_S3_CACHE_PATH_MAX];
        if (dmri_s3_cache_lookup(&cache, bucket_of(src), key, obj.size, obj.etag, cached,
                                 sizeof cached)) {
            rc = dmri_image_read(cached, &s->img, err);
            if (rc == 0) {
                snprintf(s->source_note, sizeof s->source_note, "%.250s from the S3 cache (%.300s)",
                         name, cached);
                return 0;
            }
            /* A damaged cache entry: drop it and stream instead. */
            unlink(cached);
            dmri_err_clear(err);
        }
    }
    dmri_s3_cache_entry_t entry = {.fd = -1};
    if (use_cache && (rc = dmri_s3_cache_begin(&cache, bucket_of(src), key, obj.size, &entry,
                                               err)) != 0)
        return rc;
    dmri_s3_stream_opts_t so = {.retries = src->retries < 0 ? 5 : src->retries,
                                .backoff_ms = 1000, .tee_fd = entry.fd};
    dmri_s3_stream_stats_t stats;
    rc = dmri_s3_read_image_ex(s3, key, name, &so, &s->img, &stats, err);
    const char *cache_state = "";
    if (entry.fd >= 0) {
        if (rc == 0 && stats.tee_complete && stats.bytes == obj.size) {
            dmri_err_t cerr;
            cache_state = dmri_s3_cache_commit(&cache, &entry, obj.etag, &cerr) == 0
                              ? ", kept in the cache"
                              : ", NOT cached (cache write failed)";
        } else {
            dmri_s3_cache_abort(&entry);
            cache_state = ", not cached";
        }
    } else if (use_cache) {
        cache_state = ", not cached (larger than the cache limit or no room)";
    }
    if (rc != 0)
        return rc;
    snprintf(s->source_note, sizeof s->source_note,
             "%.300s streamed (%.1f MB, %d request%s%s)", name, (double)stats.bytes / 1e6,
             stats.attempts, stats.attempts == 1 ? "" : "s", cache_state);
    return 0;
}

int dmri_s3_subject_read(const dmri_s3_source_t *src, dmri_subject_t *s, int *nb, int *ng,
                         dmri_err_t *err) {
    const char *profile = src->profile ? src->profile : DMRI_S3_DEFAULT_PROFILE;
    dmri_s3_creds_t creds;
    int rc = dmri_s3_creds_load(&creds, profile, err);
    if (rc != 0)
        return dmri_err_prefix(err, "subject %s: ", s->paths.name);
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_rc != 0) {
        if (err)
            *err = g_curl_err;
        return g_curl_rc;
    }
    dmri_s3_opts_t o = {.bucket = bucket_of(src), .region = src->region,
                        .endpoint = src->endpoint};
    /* Test hook: a slow transfer, so a test can cut it half way. */
    const char *rate = getenv("DMRI_TEST_S3_RATE_LIMIT");
    if (rate && *rate)
        o.max_recv_bytes_s = strtoll(rate, NULL, 10);
    dmri_s3_t *s3 = NULL;
    if ((rc = dmri_s3_open(&s3, &o, &creds, err)) != 0)
        return rc;
    char base[1024], key[1100];
    snprintf(base, sizeof base, "%s%s/T1w/Diffusion/", prefix_of(src), s->paths.name);
    snprintf(key, sizeof key, "%sbvals", base);
    rc = read_gradients(s3, key, s->paths.bvals_path, 0, &s->bvals, nb, err);
    if (rc == DMRI_ENOENT)
        dmri_err_prefix(err, "subject %s is neither on local disk nor in the bucket: ",
                        s->paths.name);
    if (rc == 0) {
        snprintf(key, sizeof key, "%sbvecs", base);
        rc = read_gradients(s3, key, s->paths.bvecs_path, 1, &s->bvecs, ng, err);
    }
    if (rc == 0) {
        snprintf(key, sizeof key, "%sdata.nii.gz", base);
        rc = read_image(src, s3, key, s, err);
    }
    dmri_s3_close(s3);
    return rc;
}
