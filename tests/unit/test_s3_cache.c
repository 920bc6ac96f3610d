/* Unit test of common/s3_cache.c: entries found only with the right size and
 * ETag, least recently used entries evicted to stay under the limit, objects
 * above the limit not cached, temporary files of dead processes removed,
 * sizes parsed. No network: the cache is plain files. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "s3_cache.h"

static char root[256];

static void put(dmri_s3_cache_t *c, const char *key, size_t size, const char *etag,
                int expect_cached) {
    dmri_s3_cache_entry_t e;
    dmri_err_t err = {0};
    CHECK_INT(dmri_s3_cache_begin(c, "bkt", key, size, &e, &err), 0);
    CHECK_INT(e.fd >= 0, expect_cached);
    if (e.fd < 0)
        return;
    char *buf = calloc(1, size ? size : 1);
    memset(buf, 'x', size);
    CHECK_INT(write(e.fd, buf, size), (long long)size);
    free(buf);
    CHECK_INT(dmri_s3_cache_commit(c, &e, etag, &err), 0);
    CHECK_INT(e.fd, -1);
}

static void set_age(const char *key, int seconds_ago) {
    char p[512];
    snprintf(p, sizeof p, "%s/bkt/%s", root, key);
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= seconds_ago;
    ts[1] = ts[0];
    CHECK_INT(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int has(dmri_s3_cache_t *c, const char *key, uint64_t size, const char *etag) {
    char path[4096];
    return dmri_s3_cache_lookup(c, "bkt", key, size, etag, path, sizeof path);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/dmri-test-s3cache-%ld", (long)getpid());
    dmri_s3_cache_t c;
    dmri_err_t err = {0};
    CHECK(dmri_s3_cache_init(&c, root, 0, &err) != 0); /* a limit is required */
    CHECK_INT(dmri_s3_cache_init(&c, root, 1000, &err), 0);

    /* hit only with the same size and ETag */
    put(&c, "HCP/1/data.nii.gz", 300, "etag-1", 1);
    CHECK(has(&c, "HCP/1/data.nii.gz", 300, "etag-1"));
    CHECK(!has(&c, "HCP/1/data.nii.gz", 301, "etag-1"));
    CHECK(!has(&c, "HCP/1/data.nii.gz", 300, "etag-2"));
    CHECK(!has(&c, "HCP/2/data.nii.gz", 300, "etag-1"));
    CHECK_INT(dmri_s3_cache_used(&c), 300);

    /* a key climbing out of the folder is never used */
    dmri_s3_cache_entry_t e;
    CHECK(dmri_s3_cache_begin(&c, "bkt", "../escape", 10, &e, &err) != 0);
    CHECK(!has(&c, "../escape", 10, ""));

    /* larger than the limit: not cached, nothing evicted */
    put(&c, "HCP/big/data.nii.gz", 1001, "etag-big", 0);
    CHECK(has(&c, "HCP/1/data.nii.gz", 300, "etag-1"));

    /* fill, then the least recently used goes first */
    put(&c, "HCP/2/data.nii.gz", 300, "etag-2", 1);
    put(&c, "HCP/3/data.nii.gz", 300, "etag-3", 1);
    set_age("HCP/1/data.nii.gz", 30);
    set_age("HCP/2/data.nii.gz", 10);
    set_age("HCP/3/data.nii.gz", 20);
    CHECK(has(&c, "HCP/1/data.nii.gz", 300, "etag-1")); /* used now: youngest */
    put(&c, "HCP/4/data.nii.gz", 300, "etag-4", 1);     /* 1200 > 1000: evict 3 */
    CHECK(!has(&c, "HCP/3/data.nii.gz", 300, "etag-3"));
    CHECK(has(&c, "HCP/1/data.nii.gz", 300, "etag-1"));
    CHECK(has(&c, "HCP/2/data.nii.gz", 300, "etag-2"));
    CHECK(has(&c, "HCP/4/data.nii.gz", 300, "etag-4"));
    CHECK_INT(dmri_s3_cache_used(&c), 900);
    char etagfile[512];
    snprintf(etagfile, sizeof etagfile, "%s/bkt/HCP/3/data.nii.gz.etag", root);
    CHECK(access(etagfile, F_OK) != 0); /* removed with its entry */

    /* an aborted entry leaves nothing */
    CHECK_INT(dmri_s3_cache_begin(&c, "bkt", "HCP/5/data.nii.gz", 50, &e, &err), 0);
    CHECK(e.fd >= 0);
    dmri_s3_cache_abort(&e);
    CHECK(!has(&c, "HCP/5/data.nii.gz", 50, ""));
    CHECK_INT(dmri_s3_cache_used(&c), 900);

    /* a temporary file of a process that is gone is removed, and does not count */
    char stale[512];
    snprintf(stale, sizeof stale, "%s/bkt/HCP/1/.tmp-999999999-data.nii.gz", root);
    FILE *f = fopen(stale, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("partial", f);
        fclose(f);
    }
    CHECK_INT(dmri_s3_cache_used(&c), 900);
    CHECK(access(stale, F_OK) != 0);

    /* sizes */
    uint64_t v;
    CHECK(dmri_parse_size("20G", &v) == 0 && v == 20ull << 30);
    CHECK(dmri_parse_size("500M", &v) == 0 && v == 500ull << 20);
    CHECK(dmri_parse_size("1.5k", &v) == 0 && v == 1536);
    CHECK(dmri_parse_size("123", &v) == 0 && v == 123);
    CHECK(dmri_parse_size("10GB", &v) == 0 && v == 10ull << 30);
    CHECK(dmri_parse_size("", &v) != 0);
    CHECK(dmri_parse_size("x", &v) != 0);
    CHECK(dmri_parse_size("-1G", &v) != 0);
    CHECK(dmri_parse_size("5Q", &v) != 0);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK_INT(system(cmd), 0);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures != 0;
}
