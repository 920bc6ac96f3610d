/* s3: the HTTP half of the S3 client — libcurl easy handles signing every
 * request with AWS SigV4 (CURLOPT_AWS_SIGV4), HEAD, ranged GET and
 * ListObjectsV2 paging, and turning HTTP answers into dmri error codes.
 *
 * libcurl 7.88 leaves two things to us (both required by real S3):
 * it does not add x-amz-content-sha256 (we send the SHA-256 of the empty
 * body; curl then signs that header), and it does not canonicalise the query
 * string (we build it with parameters sorted and RFC 3986-encoded). */
#define _POSIX_C_SOURCE 200809L
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmri_alloc.h"

#if defined(__has_include)
#if __has_include(<curl/curl.h>)
#define DMRI_S3_HAVE_CURL 1
#endif
#endif

#ifdef DMRI_S3_HAVE_CURL
#include <curl/curl.h>

/* SHA-256 of an empty payload: every request we send is bodiless. */
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct dmri_s3 {
    CURL *curl;
    dmri_s3_opts_t opts;
    char bucket[256];
    char region[64];
    char endpoint[512];
    dmri_s3_creds_t creds;
};

int dmri_s3_global_init(dmri_err_t *err)
{
    CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (c != CURLE_OK)
        return dmri_err_set(err, DMRI_EIO, "libcurl: %s", curl_easy_strerror(c));
    return 0;
}

void dmri_s3_global_cleanup(void)
{
    curl_global_cleanup();
}

int dmri_s3_open(dmri_s3_t **out, const dmri_s3_opts_t *opts, const dmri_s3_creds_t *creds,
                 dmri_err_t *err)
{
    *out = NULL;
    if (!opts->bucket || !*opts->bucket)
        return dmri_err_set(err, DMRI_EINVAL, "S3: no bucket given");
    dmri_s3_t *s3 = dmri_calloc(1, sizeof(*s3));
    if (!s3)
        return dmri_err_set(err, DMRI_EIO, "S3: out of memory");
    s3->opts = *opts;
    snprintf(s3->bucket, sizeof(s3->bucket), "%s", opts->bucket);
    snprintf(s3->region, sizeof(s3->region), "%s",
             opts->region && *opts->region ? opts->region : "us-east-1");
    if (opts->endpoint && *opts->endpoint) {
        snprintf(s3->endpoint, sizeof(s3->endpoint), "%s", opts->endpoint);
        size_t n = strlen(s3->endpoint);
        while (n > 0 && s3->endpoint[n - 1] == '/')
            s3->endpoint[--n] = '\0';
    }
    s3->creds = *creds;
    s3->curl = curl_easy_init();
    if (!s3->curl) {
        dmri_free(s3);
        return dmri_err_set(err, DMRI_EIO, "S3: curl_easy_init failed");
    }
    *out = s3;
    return 0;
}

void dmri_s3_close(dmri_s3_t *s3)
{
    if (!s3)
        return;
    curl_easy_cleanup(s3->curl);
    /* The secret should not linger in freed memory. */
    memset(&s3->creds, 0, sizeof(s3->creds));
    dmri_free(s3);
}

/* URL of an object (key != NULL) or of the bucket, plus an optional query. */
static int make_url(const dmri_s3_t *s3, const char *key, const char *query, char *out,
                    size_t outsz, dmri_err_t *err)
{
    char enc[4096] = "";
    if (key && dmri_s3_uri_encode(enc, sizeof(enc), key, 1))
        return dmri_err_set(err, DMRI_ERANGE, "S3: key too long: %.200s", key);
    int n;
    /* Path-style bucket URLs have no trailing slash: servers canonicalise
     * "/bucket" and "/bucket/" differently and the signature then fails. */
    if (s3->endpoint[0])
        n = snprintf(out, outsz, "%s/%s%s%s%s%s", s3->endpoint, s3->bucket, key ? "/" : "", enc,
                     query ? "?" : "", query ? query : "");
    else
        n = snprintf(out, outsz, "https://%s.s3.amazonaws.com/%s%s%s", s3->bucket, enc,
                     query ? "?" : "", query ? query : "");
    if (n < 0 || (size_t)n >= outsz)
        return dmri_err_set(err, DMRI_ERANGE, "S3: URL too long");
    return 0;
}

typedef struct {
    dmri_s3_t *s3;
    long status;
    int status_checked;
    uint64_t offset; /* absolute position of the next body byte */
    dmri_s3_sink_fn sink;
    void *sink_ctx;
    int sink_rc;
    /* error bodies, and listing bodies */
    char *body;
    size_t body_len, body_cap;
    int collect_body;
    char etag[128];
} xfer_t;

static int body_append(xfer_t *x, const char *data, size_t len)
{
    if (x->body_len + len + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap * 2 : 8192;
        while (cap < x->body_len + len + 1)
            cap *= 2;
        char *nb = dmri_malloc(cap);
        if (!nb)
            return -1;
        if (x->body)
            memcpy(nb, x->body, x->body_len);
        dmri_free(x->body);
        x->body = nb;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, len);
    x->body_len += len;
    x->body[x->body_len] = '\0';
    return 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer_t *x = ud;
    size_t len = size * nitems;
    /* A new status line (redirect or 100-continue) resets what we saw. */
    if (len > 5 && strncmp(buf, "HTTP/", 5) == 0) {
        x->etag[0] = '\0';
        return len;
    }
    if (len > 5 && strncasecmp(buf, "ETag:", 5) == 0) {
        const char *v = buf + 5;
        while (*v == ' ' || *v == '\t' || *v == '"')
            v++;
        size_t n = 0;
        while (v[n] && v[n] != '"' && v[n] != '\r' && v[n] != '\n' && n + 1 < sizeof(x->etag)) {
            x->etag[n] = v[n];
            n++;
        }
        x->etag[n] = '\0';
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    xfer_t *x = ud;
    size_t len = size * nmemb;
    if (!x->status_checked) {
        curl_easy_getinfo(x->s3->curl, CURLINFO_RESPONSE_CODE, &x->status);
        x->status_checked = 1;
        /* A server ignoring our Range sends the whole object from byte 0. */
        if (x->status == 200)
            x->offset = 0;
    }
    if (x->status >= 300 || x->collect_body || !x->sink) {
        if (x->body_len < (1u << 26) && body_append(x, data, len))
            return 0;
        return len;
    }
    int rc = x->sink(x->sink_ctx, x->offset, data, len);
    if (rc) {
        x->sink_rc = rc;
        return 0; /* makes curl abort with CURLE_WRITE_ERROR */
    }
    x->offset += len;
    return len;
}

/* <Code> of an S3 error body, "" if none. */
static void error_code(const char *body, char *out, size_t outsz)
{
    out[0] = '\0';
    if (!body)
        return;
    const char *a = strstr(body, "<Code>");
    if (!a)
        return;
    a += 6;
    const char *b = strstr(a, "</Code>");
    if (!b)
        return;
    size_t n = (size_t)(b - a);
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, a, n);
    out[n] = '\0';
}

/* Runs one prepared request; maps curl and HTTP failures to error codes
 * naming the object (what) and, on 403, the key id and where it came from. */
static int perform(dmri_s3_t *s3, const char *url, const char *what, xfer_t *x,
                   struct curl_slist *extra, int nobody, dmri_err_t *err)
{
    CURL *c = s3->curl;
    curl_easy_reset(c);
    char sigv4[128];
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", s3->region);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "x-amz-content-sha256: " EMPTY_SHA256);
    if (s3->creds.token[0]) {
        char tok[4200];
        snprintf(tok, sizeof(tok), "x-amz-security-token: %s", s3->creds.token);
        h = curl_slist_append(h, tok);
    }
    for (struct curl_slist *e = extra; e; e = e->next)
        h = curl_slist_append(h, e->data);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(c, CURLOPT_USERNAME, s3->creds.key_id);
    curl_easy_setopt(c, CURLOPT_PASSWORD, s3->creds.secret);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
                     s3->opts.connect_timeout_s > 0 ? s3->opts.connect_timeout_s : 15L);
    /* A stalled transfer (under 1 byte/s for this long) is a timeout. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                     s3->opts.stall_timeout_s > 0 ? s3->opts.stall_timeout_s : 60L);
    if (s3->opts.max_recv_bytes_s > 0)
        curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)s3->opts.max_recv_bytes_s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    if (nobody)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    if (x->sink_rc)
        return x->sink_rc < 0 ? x->sink_rc : DMRI_ECANCEL;
    if (cc != CURLE_OK && !(x->status >= 300 && cc == CURLE_WRITE_ERROR))
        return dmri_err_set(err, DMRI_EIO, "%s: %s", what, curl_easy_strerror(cc));
    if (x->status >= 200 && x->status < 300)
        return 0;
    char code[128];
    error_code(x->body, code, sizeof(code));
    if (x->status == 403)
        return dmri_err_set(err, DMRI_EINVAL,
                            "%s: access denied (HTTP 403%s%s) for access key id %s from %s",
                            what, code[0] ? " " : "", code, s3->creds.key_id, s3->creds.source);
    if (x->status == 404)
        return dmri_err_set(err, DMRI_ENOENT, "%s: not found (HTTP 404%s%s)", what,
                            code[0] ? " " : "", code);
    if (x->status >= 500 || x->status == 429 || x->status == 408)
        return dmri_err_set(err, DMRI_EIO, "%s: server error (HTTP %ld%s%s)", what, x->status,
                            code[0] ? " " : "", code);
    return dmri_err_set(err, DMRI_EINVAL, "%s: HTTP %ld%s%s", what, x->status,
                        code[0] ? " " : "", code);
}

int dmri_s3_head(dmri_s3_t *s3, const char *key, dmri_s3_object_t *obj, dmri_err_t *err)
{
    char url[4800], what[2400];
    snprintf(what, sizeof(what), "s3://%s/%s", s3->bucket, key);
    int rc = make_url(s3, key, NULL, url, sizeof(url), err);
    if (rc)
        return rc;
    xfer_t x = {.s3 = s3};
    rc = perform(s3, url, what, &x, NULL, 1, err);
    dmri_free(x.body);
    if (rc)
        return rc;
    curl_off_t len = -1;
    curl_easy_getinfo(s3->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    if (len < 0)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: the server gave no Content-Length", what);
    obj->size = (uint64_t)len;
    snprintf(obj->etag, sizeof(obj->etag), "%s", x.etag);
    return 0;
}

int dmri_s3_get(dmri_s3_t *s3, const char *key, uint64_t offset, dmri_s3_sink_fn sink,
                void *ctx, dmri_err_t *err)
{
    char url[4800], what[2400], range[64];
    snprintf(what, sizeof(what), "s3://%s/%s", s3->bucket, key);
    int rc = make_url(s3, key, NULL, url, sizeof(url), err);
    if (rc)
        return rc;
    struct curl_slist *extra = NULL;
    if (offset > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)offset);
        extra = curl_slist_append(extra, range);
    }
    xfer_t x = {.s3 = s3, .offset = offset, .sink = sink, .sink_ctx = ctx};
    rc = perform(s3, url, what, &x, extra, 0, err);
    curl_slist_free_all(extra);
    dmri_free(x.body);
    return rc;
}

int dmri_s3_list(dmri_s3_t *s3, const char *prefix, const char *delimiter, int max_keys,
                 dmri_s3_key_fn on_key, dmri_s3_prefix_fn on_prefix, void *ctx,
                 dmri_err_t *err)
{
    char token[2048] = "";
    char what[600];
    snprintf(what, sizeof(what), "s3://%s/%s", s3->bucket, prefix ? prefix : "");
    for (;;) {
        /* Parameters in byte order of their names, values RFC 3986-encoded:
         * curl 7.88 signs the query string as given. */
        char query[6000], etok[6200] = "", epre[2200] = "", edel[64] = "";
        if (dmri_s3_uri_encode(etok, sizeof(etok), token, 0) ||
            dmri_s3_uri_encode(epre, sizeof(epre), prefix ? prefix : "", 0) ||
            dmri_s3_uri_encode(edel, sizeof(edel), delimiter ? delimiter : "", 0))
            return dmri_err_set(err, DMRI_ERANGE, "%s: listing parameters too long", what);
        size_t q = 0;
        query[0] = '\0';
        if (token[0])
            q += (size_t)snprintf(query + q, sizeof(query) - q, "continuation-token=%s&", etok);
        if (delimiter && *delimiter)
            q += (size_t)snprintf(query + q, sizeof(query) - q, "delimiter=%s&", edel);
        q += (size_t)snprintf(query + q, sizeof(query) - q, "list-type=2");
        if (max_keys > 0)
            q += (size_t)snprintf(query + q, sizeof(query) - q, "&max-keys=%d", max_keys);
        if (prefix && *prefix)
            q += (size_t)snprintf(query + q, sizeof(query) - q, "&prefix=%s", epre);
        char url[7000];
        int rc = make_url(s3, NULL, query, url, sizeof(url), err);
        if (rc)
            return rc;
        xfer_t x = {.s3 = s3, .collect_body = 1};
        rc = perform(s3, url, what, &x, NULL, 0, err);
        int truncated = 0;
        if (rc == 0)
            rc = x.body ? dmri_s3_parse_list(x.body, on_key, on_prefix, ctx, &truncated, token,
                                             sizeof(token), err)
                        : dmri_err_set(err, DMRI_EFORMAT, "%s: empty listing answer", what);
        dmri_free(x.body);
        if (rc)
            return rc;
        if (!truncated)
            return 0;
        if (!token[0])
            return dmri_err_set(err, DMRI_EFORMAT,
                                "%s: listing truncated without a continuation token", what);
    }
}

#else /* no libcurl at build time */

int dmri_s3_global_init(dmri_err_t *err)
{
    return dmri_err_set(err, DMRI_EUNSUP, "dmri was built without libcurl: no S3 access");
}

void dmri_s3_global_cleanup(void) {}

int dmri_s3_open(dmri_s3_t **out, const dmri_s3_opts_t *opts, const dmri_s3_creds_t *creds,
                 dmri_err_t *err)
{
    (void)opts;
    (void)creds;
    *out = NULL;
    return dmri_err_set(err, DMRI_EUNSUP, "dmri was built without libcurl: no S3 access");
}

void dmri_s3_close(dmri_s3_t *s3)
{
    (void)s3;
}

int dmri_s3_head(dmri_s3_t *s3, const char *key, dmri_s3_object_t *obj, dmri_err_t *err)
{
    (void)s3;
    (void)key;
    (void)obj;
    return dmri_err_set(err, DMRI_EUNSUP, "dmri was built without libcurl: no S3 access");
}

int dmri_s3_get(dmri_s3_t *s3, const char *key, uint64_t offset, dmri_s3_sink_fn sink,
                void *ctx, dmri_err_t *err)
{
    (void)s3;
    (void)key;
    (void)offset;
    (void)sink;
    (void)ctx;
    return dmri_err_set(err, DMRI_EUNSUP, "dmri was built without libcurl: no S3 access");
}

int dmri_s3_list(dmri_s3_t *s3, const char *prefix, const char *delimiter, int max_keys,
                 dmri_s3_key_fn on_key, dmri_s3_prefix_fn on_prefix, void *ctx,
                 dmri_err_t *err)
{
    (void)s3;
    (void)prefix;
    (void)delimiter;
    (void)max_keys;
    (void)on_key;
    (void)on_prefix;
    (void)ctx;
    return dmri_err_set(err, DMRI_EUNSUP, "dmri was built without libcurl: no S3 access");
}

#endif
