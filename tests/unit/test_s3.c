/* test_s3: the network-free half of the S3 client — where credentials come
 * from (environment before profile file, HCP upper-case and AWS lower-case
 * names, the source reported), RFC 3986 encoding, and ListObjectsV2 parsing
 * (keys, sizes, common prefixes, truncation, entity-decoded tokens). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3.h"

static int failures;
#define CHECK_STR(a, b)                                                                  \
    do {                                                                                 \
        if (strcmp((a), (b)) != 0) {                                                     \
            fprintf(stderr, "%s:%d: '%s' != '%s'\n", __FILE__, __LINE__, (a), (b));      \
            failures++;                                                                  \
        }                                                                                \
    } while (0)
#define CHECK_INT(a, b)                                                                  \
    do {                                                                                 \
        long long _a = (long long)(a), _b = (long long)(b);                              \
        if (_a != _b) {                                                                  \
            fprintf(stderr, "%s:%d: %s = %lld != %lld\n", __FILE__, __LINE__, #a, _a, _b); \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static char seen[4096];
static int on_key(void *ctx, const char *key, uint64_t size)
{
    (void)ctx;
    char b[600];
    snprintf(b, sizeof(b), "K%s=%llu;", key, (unsigned long long)size);
    strncat(seen, b, sizeof(seen) - strlen(seen) - 1);
    return 0;
}
static int on_prefix(void *ctx, const char *p)
{
    (void)ctx;
    strncat(seen, "P", sizeof(seen) - strlen(seen) - 1);
    strncat(seen, p, sizeof(seen) - strlen(seen) - 1);
    strncat(seen, ";", sizeof(seen) - strlen(seen) - 1);
    return 0;
}

int main(void)
{
    dmri_s3_creds_t c;
    dmri_err_t err = {0};
    char path[] = "/tmp/dmri-test-s3-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "[default]\naws_access_key_id = lowid\naws_secret_access_key = lowsecret\n"
               "aws_session_token = tok\n\n# comment\n[hcp]\nAWS_ACCESS_KEY_ID=HCPID\n"
               "AWS_SECRET_ACCESS_KEY=hcpsecret\n[broken]\nAWS_ACCESS_KEY_ID=X\n");
    fclose(f);

    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    CHECK_INT(dmri_s3_creds_load(&c, "hcp", &err), 0);
    CHECK_STR(c.key_id, "HCPID");
    CHECK_STR(c.secret, "hcpsecret");
    CHECK_STR(c.token, "");
    char src[1200];
    snprintf(src, sizeof(src), "profile [hcp] in %s", path);
    CHECK_STR(c.source, src);
    CHECK_INT(dmri_s3_creds_load(&c, NULL, &err), 0);
    CHECK_STR(c.key_id, "lowid");
    CHECK_STR(c.token, "tok");
    CHECK_INT(dmri_s3_creds_load(&c, "nosuch", &err), DMRI_ENOENT);
    CHECK_INT(strstr(err.msg, "no profile [nosuch]") != NULL, 1);
    CHECK_INT(dmri_s3_creds_load(&c, "broken", &err), DMRI_EFORMAT);
    CHECK_INT(strstr(err.msg, "secret access key") != NULL, 1);
    /* the environment wins over the file */
    setenv("AWS_ACCESS_KEY_ID", "ENVID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    CHECK_INT(dmri_s3_creds_load(&c, "hcp", &err), 0);
    CHECK_STR(c.key_id, "ENVID");
    CHECK_STR(c.source, "environment (AWS_ACCESS_KEY_ID)");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    CHECK_INT(dmri_s3_creds_load(&c, "hcp", &err), DMRI_EINVAL);
    unsetenv("AWS_ACCESS_KEY_ID");
    unlink(path);

    char enc[128];
    CHECK_INT(dmri_s3_uri_encode(enc, sizeof(enc), "HCP/a b+c~_.-", 0), 0);
    CHECK_STR(enc, "HCP%2Fa%20b%2Bc~_.-");
    CHECK_INT(dmri_s3_uri_encode(enc, sizeof(enc), "HCP/x=y", 1), 0);
    CHECK_STR(enc, "HCP/x%3Dy");
    CHECK_INT(dmri_s3_uri_encode(enc, 4, "abcd", 1), DMRI_ERANGE);

    const char *xml =
        "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated>"
        "<Contents><Key>HCP/1/a&amp;b</Key><ETag>&quot;x&quot;</ETag><Size>42</Size></Contents>"
        "<Contents><Key>HCP/2</Key><Size>7</Size></Contents>"
        "<CommonPrefixes><Prefix>HCP/100307/</Prefix></CommonPrefixes>"
        "<CommonPrefixes><Prefix>HCP/100408/</Prefix></CommonPrefixes>"
        "<NextContinuationToken>1a+b/c&lt;=</NextContinuationToken></ListBucketResult>";
    int trunc = 0;
    char tok[64];
    seen[0] = '\0';
    CHECK_INT(dmri_s3_parse_list(xml, on_key, on_prefix, NULL, &trunc, tok, sizeof(tok), &err), 0);
    CHECK_STR(seen, "KHCP/1/a&b=42;KHCP/2=7;PHCP/100307/;PHCP/100408/;");
    CHECK_INT(trunc, 1);
    CHECK_STR(tok, "1a+b/c<=");
    const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
    seen[0] = '\0';
    CHECK_INT(dmri_s3_parse_list(last, on_key, on_prefix, NULL, &trunc, tok, sizeof(tok), &err), 0);
    CHECK_INT(trunc, 0);
    CHECK_STR(tok, "");
    CHECK_STR(seen, "");
    CHECK_INT(dmri_s3_parse_list("<Error><Code>x</Code></Error>", on_key, NULL, NULL, &trunc, tok,
                                 sizeof(tok), &err),
              DMRI_EFORMAT);

    if (failures)
        fprintf(stderr, "test_s3: %d failure(s)\n", failures);
    else
        printf("test_s3: all checks passed\n");
    return failures ? 1 : 0;
}
