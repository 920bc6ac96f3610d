/* s3_util: the parts of the S3 client that need no network — where the
 * credentials come from, RFC 3986 key encoding, and the ListObjectsV2 XML
 * parser — kept apart from s3.c so they build and test without libcurl. */
#define _POSIX_C_SOURCE 200809L
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int copy_field(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz)
        return DMRI_ERANGE;
    memcpy(dst, src, n + 1);
    return 0;
}

int dmri_s3_creds_from_file(dmri_s3_creds_t *creds, const char *path, const char *profile,
                            dmri_err_t *err)
{
    if (!profile || !*profile)
        profile = "default";
    memset(creds, 0, sizeof(*creds));
    FILE *f = fopen(path, "r");
    if (!f)
        return dmri_err_set(err, DMRI_ENOENT, "%s: cannot open credentials file: %s", path,
                            strerror(errno));
    char line[8192];
    int in_section = 0, found_section = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        char *s = trim(line);
        if (*s == '#' || *s == ';' || *s == '\0')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end)
                continue;
            *end = '\0';
            char *name = trim(s + 1);
            /* ~/.aws/config spells sections "profile NAME"; accept it too. */
            if (strncmp(name, "profile ", 8) == 0)
                name = trim(name + 8);
            in_section = strcmp(name, profile) == 0;
            found_section |= in_section;
            continue;
        }
        if (!in_section)
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        if (strcasecmp(k, "aws_access_key_id") == 0)
            rc |= copy_field(creds->key_id, sizeof(creds->key_id), v);
        else if (strcasecmp(k, "aws_secret_access_key") == 0)
            rc |= copy_field(creds->secret, sizeof(creds->secret), v);
        else if (strcasecmp(k, "aws_session_token") == 0)
            rc |= copy_field(creds->token, sizeof(creds->token), v);
    }
    fclose(f);
    if (rc)
        return dmri_err_set(err, DMRI_ERANGE, "%s: [%s]: a credential value is too long",
                            path, profile);
    if (!found_section)
        return dmri_err_set(err, DMRI_ENOENT, "%s: no profile [%s]", path, profile);
    if (!creds->key_id[0] || !creds->secret[0])
        return dmri_err_set(err, DMRI_EFORMAT,
                            "%s: profile [%s] lacks %s (expected AWS_ACCESS_KEY_ID= and "
                            "AWS_SECRET_ACCESS_KEY=, any case)",
                            path, profile,
                            !creds->key_id[0] ? "the access key id" : "the secret access key");
    snprintf(creds->source, sizeof(creds->source), "profile [%s] in %s", profile, path);
    return 0;
}

int dmri_s3_creds_load(dmri_s3_creds_t *creds, const char *profile, dmri_err_t *err)
{
    memset(creds, 0, sizeof(*creds));
    const char *id = getenv("AWS_ACCESS_KEY_ID");
    const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
    if (id && *id) {
        if (!secret || !*secret)
            return dmri_err_set(err, DMRI_EINVAL,
                                "AWS_ACCESS_KEY_ID is set in the environment but "
                                "AWS_SECRET_ACCESS_KEY is not");
        const char *tok = getenv("AWS_SESSION_TOKEN");
        if (copy_field(creds->key_id, sizeof(creds->key_id), id) ||
            copy_field(creds->secret, sizeof(creds->secret), secret) ||
            copy_field(creds->token, sizeof(creds->token), tok ? tok : ""))
            return dmri_err_set(err, DMRI_ERANGE, "AWS credentials in the environment are too long");
        snprintf(creds->source, sizeof(creds->source), "environment (AWS_ACCESS_KEY_ID)");
        return 0;
    }
    char path[1024];
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
    if (file && *file) {
        snprintf(path, sizeof(path), "%s", file);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home)
            return dmri_err_set(err, DMRI_ENOENT,
                                "no AWS credentials: AWS_ACCESS_KEY_ID is not set and HOME is "
                                "unknown");
        snprintf(path, sizeof(path), "%s/.aws/credentials", home);
    }
    int rc = dmri_s3_creds_from_file(creds, path, profile, err);
    if (rc == DMRI_ENOENT)
        dmri_err_prefix(err, "no AWS credentials (AWS_ACCESS_KEY_ID not set in the environment; "
                             "put the HCP keys in that file): ");
    return rc;
}

int dmri_s3_uri_encode(char *out, size_t outsz, const char *in, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int keep = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
                   (keep_slash && *p == '/');
        if (keep) {
            if (o + 1 >= outsz)
                return DMRI_ERANGE;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= outsz)
                return DMRI_ERANGE;
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= outsz)
        return DMRI_ERANGE;
    out[o] = '\0';
    return 0;
}

/* Copy the text of <tag>...</tag> found in [p, end) into out, decoding the
 * five XML entities and numeric references. Returns a pointer past the
 * closing tag, or NULL if absent. */
static const char *xml_text(const char *p, const char *end, const char *tag, char *out,
                            size_t outsz)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = strstr(p, open);
    if (!a || a >= end)
        return NULL;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b || b > end)
        return NULL;
    size_t o = 0;
    for (const char *q = a; q < b && o + 1 < outsz;) {
        if (*q == '&') {
            static const struct { const char *e; char c; } ents[] = {
                {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
            size_t i, n = sizeof(ents) / sizeof(ents[0]);
            for (i = 0; i < n; i++) {
                size_t l = strlen(ents[i].e);
                if ((size_t)(b - q) >= l && strncmp(q, ents[i].e, l) == 0) {
                    out[o++] = ents[i].c;
                    q += l;
                    break;
                }
            }
            if (i < n)
                continue;
            if (q[1] == '#') {
                char *e;
                long v = (q[2] == 'x') ? strtol(q + 3, &e, 16) : strtol(q + 2, &e, 10);
                if (*e == ';' && v > 0 && v < 128) {
                    out[o++] = (char)v;
                    q = e + 1;
                    continue;
                }
            }
        }
        out[o++] = *q++;
    }
    out[o] = '\0';
    return b + strlen(close);
}

int dmri_s3_parse_list(const char *xml, dmri_s3_key_fn on_key, dmri_s3_prefix_fn on_prefix,
                       void *ctx, int *truncated, char *next_token, size_t tokensz,
                       dmri_err_t *err)
{
    if (!strstr(xml, "<ListBucketResult"))
        return dmri_err_set(err, DMRI_EFORMAT, "S3 listing: not a ListBucketResult answer");
    const char *end = xml + strlen(xml);
    char val[2048], key[2048];
    if (truncated)
        *truncated = xml_text(xml, end, "IsTruncated", val, sizeof(val)) &&
                     strcasecmp(val, "true") == 0;
    if (next_token) {
        next_token[0] = '\0';
        if (!xml_text(xml, end, "NextContinuationToken", next_token, tokensz))
            next_token[0] = '\0';
    }
    for (const char *p = xml; (p = strstr(p, "<Contents>")) != NULL;) {
        const char *ce = strstr(p, "</Contents>");
        if (!ce)
            return dmri_err_set(err, DMRI_EFORMAT, "S3 listing: unterminated <Contents>");
        if (!xml_text(p, ce, "Key", key, sizeof(key)))
            return dmri_err_set(err, DMRI_EFORMAT, "S3 listing: <Contents> without <Key>");
        uint64_t size = 0;
        if (xml_text(p, ce, "Size", val, sizeof(val)))
            size = strtoull(val, NULL, 10);
        if (on_key) {
            int rc = on_key(ctx, key, size);
            if (rc)
                return rc;
        }
        p = ce;
    }
    for (const char *p = xml; (p = strstr(p, "<CommonPrefixes>")) != NULL;) {
        const char *ce = strstr(p, "</CommonPrefixes>");
        if (!ce)
            return dmri_err_set(err, DMRI_EFORMAT, "S3 listing: unterminated <CommonPrefixes>");
        if (xml_text(p, ce, "Prefix", key, sizeof(key)) && on_prefix) {
            int rc = on_prefix(ctx, key);
            if (rc)
                return rc;
        }
        p = ce;
    }
    return 0;
}
