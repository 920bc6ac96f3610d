/* s3: a small S3 client for reading HCP data (credentials, HEAD, ranged GET,
 * ListObjectsV2 paging), signed with AWS Signature V4 by libcurl.
 *
 * The pure parts (credentials, XML listing parser, key encoding) live in
 * s3_util.c and need nothing but libc; the HTTP part lives in s3.c and needs
 * libcurl (without it at build time every request fails with DMRI_EUNSUP).
 *
 * Error codes of the requests tell the caller what to do next:
 *   DMRI_EIO     transient (timeout, connection refused/reset, HTTP 5xx, 429):
 *                worth retrying after a pause;
 *   DMRI_ENOENT  HTTP 404 (the message names the bucket and key);
 *   DMRI_EINVAL  refused (403: the message names the access key id and where
 *                it came from, never the secret) or another 4xx;
 *   DMRI_ECANCEL the caller's sink asked to stop. */
#ifndef DMRI_S3_H
#define DMRI_S3_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"

typedef struct {
    char key_id[256];
    char secret[256];
    char token[4096];  /* session token, "" if none */
    char source[1200]; /* "environment (AWS_ACCESS_KEY_ID)" or "profile [hcp] in FILE" */
} dmri_s3_creds_t;

/* Credentials, in order: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 * (/ AWS_SESSION_TOKEN) from the environment, then section [profile] of
 * AWS_SHARED_CREDENTIALS_FILE or else ~/.aws/credentials. Key names are
 * case-insensitive (HCP writes AWS_ACCESS_KEY_ID=..., the AWS tools
 * aws_access_key_id = ...). profile NULL means "default". */
int dmri_s3_creds_load(dmri_s3_creds_t *creds, const char *profile, dmri_err_t *err);

/* Same as above but from an explicit file only (no environment). */
int dmri_s3_creds_from_file(dmri_s3_creds_t *creds, const char *path, const char *profile,
                            dmri_err_t *err);

/* Percent-encode per RFC 3986 (unreserved kept); '/' kept when keep_slash.
 * Returns DMRI_ERANGE if it does not fit. */
int dmri_s3_uri_encode(char *out, size_t outsz, const char *in, int keep_slash);

/* One page of a ListObjectsV2 answer. For each <Contents> calls
 * on_key(ctx, key, size) and for each <CommonPrefixes> on_prefix(ctx, prefix)
 * (either callback may be NULL; a non-zero return stops and is returned).
 * *truncated and next_token (NextContinuationToken, XML entities decoded)
 * say whether another page follows. */
typedef int (*dmri_s3_key_fn)(void *ctx, const char *key, uint64_t size);
typedef int (*dmri_s3_prefix_fn)(void *ctx, const char *prefix);
int dmri_s3_parse_list(const char *xml, dmri_s3_key_fn on_key, dmri_s3_prefix_fn on_prefix,
                       void *ctx, int *truncated, char *next_token, size_t tokensz,
                       dmri_err_t *err);

/* ---- requests (s3.c, libcurl) ---- */

typedef struct {
    const char *bucket;   /* required */
    const char *region;   /* NULL: us-east-1 */
    const char *endpoint; /* NULL: https://BUCKET.s3.amazonaws.com/KEY; else
                           * path-style ENDPOINT/BUCKET/KEY (e.g. http://127.0.0.1:4568) */
    long connect_timeout_s;   /* 0: 15 s */
    long stall_timeout_s;     /* abort a transfer idle this long; 0: 60 s */
    int64_t max_recv_bytes_s; /* throttle downloads (tests); 0: none */
} dmri_s3_opts_t;

typedef struct dmri_s3 dmri_s3_t;

typedef struct {
    uint64_t size;
    char etag[128]; /* without the quotes */
} dmri_s3_object_t;

/* Once per process, before any thread opens a client. */
int dmri_s3_global_init(dmri_err_t *err);
void dmri_s3_global_cleanup(void);

/* One client per thread (a libcurl easy handle, reused for keep-alive). */
int dmri_s3_open(dmri_s3_t **out, const dmri_s3_opts_t *opts, const dmri_s3_creds_t *creds,
                 dmri_err_t *err);
void dmri_s3_close(dmri_s3_t *s3);

int dmri_s3_head(dmri_s3_t *s3, const char *key, dmri_s3_object_t *obj, dmri_err_t *err);

/* GET key from byte `offset` on (Range: bytes=offset-, none when 0). The
 * sink gets each piece with its absolute offset in the object, so a server
 * that ignores the Range (200 instead of 206) restarts the offsets at 0 and a
 * sink writing with pwrite stays correct. A non-zero sink return aborts. */
typedef int (*dmri_s3_sink_fn)(void *ctx, uint64_t offset, const void *data, size_t len);
int dmri_s3_get(dmri_s3_t *s3, const char *key, uint64_t offset, dmri_s3_sink_fn sink,
                void *ctx, dmri_err_t *err);

/* ListObjectsV2 over every page (continuation tokens). delimiter NULL for a
 * flat listing; max_keys 0 for the server's default page size (1000). */
int dmri_s3_list(dmri_s3_t *s3, const char *prefix, const char *delimiter, int max_keys,
                 dmri_s3_key_fn on_key, dmri_s3_prefix_fn on_prefix, void *ctx,
                 dmri_err_t *err);

#endif
