/* Unit test of pipeline/subject_s3.c without a server: the shared S3
 * options, subject ids, the s3:// names of a remote subject, and the local
 * disk still winning over the bucket in dmri_subject_resolve_s3. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "subject.h"
#include "subject_s3.h"

int main(void) {
    dmri_s3_source_t src = {.retries = -1};
    int on = 0;
    dmri_err_t err = {0};
    CHECK_INT(dmri_s3_source_option(&src, &on, "s3", NULL, &err), 0);
    CHECK_INT(on, 1);
    on = 0;
    CHECK_INT(dmri_s3_source_option(&src, &on, "bucket", "my-bucket", &err), 0);
    CHECK_INT(on, 1); /* any S3 option implies --s3 */
    CHECK_INT(dmri_s3_source_option(&src, &on, "s3-prefix", "HCP_1200/", &err), 0);
    CHECK_INT(dmri_s3_source_option(&src, &on, "endpoint", "http://127.0.0.1:9000", &err), 0);
    CHECK(dmri_s3_source_option(&src, &on, "endpoint", "127.0.0.1:9000", &err) != 0);
    CHECK_HAS(err, "--endpoint");
    CHECK_INT(dmri_s3_source_option(&src, &on, "s3-cache-size", "2G", &err), 0);
    CHECK(src.cache_limit == 2ull << 30);
    CHECK(dmri_s3_source_option(&src, &on, "s3-cache-size", "0", &err) != 0);
    CHECK(dmri_s3_source_option(&src, &on, "s3-cache-size", "lots", &err) != 0);
    CHECK_HAS(err, "lots");
    CHECK_INT(dmri_s3_source_option(&src, &on, "s3-retries", "3", &err), 0);
    CHECK_INT(src.retries, 3);
    CHECK(dmri_s3_source_option(&src, &on, "s3-retries", "-2", &err) != 0);
    CHECK(dmri_s3_source_option(&src, &on, "bucket", "", &err) != 0);

    /* every name of DMRI_S3_LONGOPTS is understood */
    struct option opts[] = {DMRI_S3_LONGOPTS(1), {0, 0, 0, 0}};
    for (int i = 0; opts[i].name; i++) {
        dmri_s3_source_t s = {0};
        const char *val = strcmp(opts[i].name, "endpoint") == 0 ? "http://h:1"
                          : strcmp(opts[i].name, "s3-cache-size") == 0 ? "1M"
                          : strcmp(opts[i].name, "s3-retries") == 0 ? "2" : "v";
        CHECK_INT(dmri_s3_source_option(&s, &on, opts[i].name,
                                        opts[i].has_arg ? val : NULL, &err), 0);
    }

    CHECK(dmri_s3_is_subject_id("100307"));
    CHECK(dmri_s3_is_subject_id("sub-01_a.b"));
    CHECK(!dmri_s3_is_subject_id(""));
    CHECK(!dmri_s3_is_subject_id(".."));
    CHECK(!dmri_s3_is_subject_id("a/b"));
    CHECK(!dmri_s3_is_subject_id("a b"));

    dmri_subject_paths_t p;
    CHECK_INT(dmri_s3_subject_paths(&src, "100307", &p, &err), 0);
    CHECK_INT(p.remote, 1);
    CHECK(strcmp(p.name, "100307") == 0);
    CHECK(strcmp(p.data_path, "s3://my-bucket/HCP_1200/100307/T1w/Diffusion/data.nii.gz") == 0);
    CHECK(strcmp(p.bvecs_path, "s3://my-bucket/HCP_1200/100307/T1w/Diffusion/bvecs") == 0);
    dmri_s3_source_t def = {0};
    CHECK_INT(dmri_s3_subject_paths(&def, "100307", &p, &err), 0);
    CHECK(strcmp(p.bvals_path, "s3://hcp-openaccess/HCP/100307/T1w/Diffusion/bvals") == 0);

    /* not on disk: remote with S3, an error without; a path is never remote */
    CHECK_INT(dmri_subject_resolve_s3("424242", "/nonexistent-dir", &def, &p, &err), 0);
    CHECK_INT(p.remote, 1);
    CHECK(dmri_subject_resolve_s3("424242", "/nonexistent-dir", NULL, &p, &err) == DMRI_ENOENT);
    CHECK(dmri_subject_resolve_s3("/no/such/folder", NULL, &def, &p, &err) == DMRI_ENOENT);

    /* a remote subject without S3 settings is refused, not crashed on */
    dmri_subject_t s;
    dmri_subject_opts_t so = {.b0_threshold = 10};
    CHECK_INT(dmri_s3_subject_paths(&def, "100307", &p, &err), 0);
    CHECK(dmri_subject_load(&s, &p, &so, &err) == DMRI_EINVAL);
    CHECK_HAS(err, "S3");

    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures != 0;
}
