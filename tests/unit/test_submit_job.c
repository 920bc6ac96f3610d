/* test_submit_job: dmri-submit's side of a subject. A small phantom is cut
 * and computed chunk by chunk exactly as workers would (chunks.h), the
 * result chunks are fed to a job as RESULTs, and the files it writes are
 * compared with dmri-run's on the same subject. Then everything a bad
 * scheduler can send: chunks before the info chunk, keys of another job,
 * wrong sizes, an unsafe subject name, JOB_DONE with chunks missing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../../client/submit_job.c"
#include "fsutil.h"
#include "phantom.h"
#include "run.h"
#include "subject.h"

static int failures;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
        }                                                                            \
    } while (0)
#define CHECK_INT(a, b) \
    CHECK((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_HAS(s, sub) CHECK(strstr((s), (sub)) != NULL, "'%s' lacks '%s'", (s), (sub))

#define JOB 7
#define MAXIN 4096

/* Every chunk computed so far, by key: a worker's store, for the test. */
typedef struct {
    char key[64];
    dmri_keyref_t ref;
    dmri_chunk_t c;
} stored_t;

static stored_t store[512];
static int nstore;

static void put(const dmri_keyref_t *ref, dmri_chunk_t c) {
    if (nstore == (int)(sizeof store / sizeof store[0])) {
        fprintf(stderr, "test store full\n");
        exit(1);
    }
    dmri_key_format(store[nstore].key, sizeof store[nstore].key, JOB, ref);
    store[nstore].ref = *ref;
    store[nstore].c = c;
    nstore++;
}

static const stored_t *get(const dmri_keyref_t *ref) {
    char key[64];
    dmri_key_format(key, sizeof key, JOB, ref);
    for (int i = 0; i < nstore; i++)
        if (strcmp(store[i].key, key) == 0)
            return &store[i];
    return NULL;
}

/* 1 if two .nii.gz files hold the same bytes once decompressed (both are
 * written by the same code, so header and data must agree exactly). */
static int same_nifti(const char *a, const char *b, size_t *nbytes) {
    gzFile x = gzopen(a, "rb"), y = gzopen(b, "rb");
    int same = x && y;
    *nbytes = 0;
    static unsigned char bx[1 << 16], by[1 << 16];
    while (same) {
        int nx = gzread(x, bx, sizeof bx), ny = gzread(y, by, sizeof by);
        if (nx != ny || nx < 0 || memcmp(bx, by, (size_t)nx) != 0)
            same = 0;
        if (nx <= 0)
            break;
        *nbytes += (size_t)nx;
    }
    if (x)
        gzclose(x);
    if (y)
        gzclose(y);
    return same && *nbytes > 0;
}

/* Feed the info chunk of `info` (maybe renamed) to a job. */
static int feed_info(dmri_submit_job_t *j, const dmri_info_t *info, dmri_err_t *err) {
    uint8_t *buf;
    size_t len;
    if (dmri_info_encode(info, &buf, &len) != 0) {
        fprintf(stderr, "dmri_info_encode failed\n");
        exit(1);
    }
    char key[64];
    snprintf(key, sizeof key, "J%d/info", JOB);
    int rc = dmri_submit_job_result(j, key, buf, len, err);
    dmri_free(buf);
    return rc;
}

int main(void) {
    char tmp[] = "/tmp/test_submit_job.XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char subj[512], out_run[512], out_root[512], path_a[600], path_b[600];
    snprintf(subj, sizeof subj, "%s/ph01", tmp);
    snprintf(out_run, sizeof out_run, "%s/run/ph01", tmp);
    snprintf(out_root, sizeof out_root, "%s/cluster", tmp);
    dmri_err_t err = {0};

    /* Pure helpers first. */
    CHECK_INT(dmri_submit_name_safe("100307"), 1);
    CHECK_INT(dmri_submit_name_safe("sub-01_ses.2"), 1);
    CHECK_INT(dmri_submit_name_safe(""), 0);
    CHECK_INT(dmri_submit_name_safe("."), 0);
    CHECK_INT(dmri_submit_name_safe(".."), 0);
    CHECK_INT(dmri_submit_name_safe("a/b"), 0);
    CHECK_INT(dmri_submit_name_safe("a\nb"), 0);
    {
        dmri_submit_job_t j;
        dmri_submit_job_init(&j, "100307", 0, 0);
        CHECK(strcmp(j.subject, "100307") == 0 && strcmp(j.name, "100307") == 0, "%s %s",
              j.subject, j.name);
        dmri_submit_job_init(&j, "/data/hcp/100307/T1w/Diffusion/", 0, 0);
        CHECK(strcmp(j.name, "100307") == 0, "HCP folder named '%s'", j.name);
        CHECK(strcmp(j.subject, "/data/hcp/100307/T1w/Diffusion/") == 0, "%s", j.subject);
        dmri_submit_job_init(&j, "/x/sub-3//", 0, 0);
        CHECK(strcmp(j.name, "sub-3") == 0, "'%s'", j.name);
    }

    /* A small phantom: 3 slabs x 3 volume groups. */
    dmri_phantom_opts_t po;
    dmri_phantom_opts_default(&po);
    po.nx = 12, po.ny = 11, po.nz = 8, po.nb0 = 2, po.nshells = 1, po.ndirs = 8;
    if (dmri_phantom_write(subj, &po, &err) != 0) {
        fprintf(stderr, "phantom: %s\n", err.msg);
        return 1;
    }
    const int slab = 3, vpt = 4;

    /* The reference: dmri-run on the same subject with the same chunking. */
    {
        dmri_subject_paths_t paths;
        dmri_run_opts_t ro;
        dmri_run_opts_default(&ro);
        ro.out_dir = out_run;
        ro.save_denoised = 1;
        ro.slab_slices = slab;
        ro.vols_per_task = vpt;
        if (dmri_subject_resolve(subj, NULL, &paths, &err) != 0 ||
            dmri_run_subject(&paths, &ro, &err) != 0) {
            fprintf(stderr, "dmri-run: %s\n", err.msg);
            return 1;
        }
    }

    /* The workers' part: LOAD, then every task of the graph in order. */
    dmri_info_t info;
    dmri_chunk_t *raw;
    int nraw;
    if (dmri_chunk_load(subj, NULL, NULL, 10.0, 0, slab, vpt, &info, &raw, &nraw, &err) != 0) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    dmri_graph_params_t gp;
    dmri_info_graph_params(&info, 1, &gp);
    dmri_graph_t g;
    if (dmri_graph_build(&g, &gp, &err) != 0) {
        fprintf(stderr, "graph: %s\n", err.msg);
        return 1;
    }
    int ngroups = (info.geom.nv + vpt - 1) / vpt;
    for (int gi = 0; gi < ngroups; gi++)
        for (int s = 0; s < g.nslabs; s++) {
            dmri_keyref_t r = {DMRI_KEY_RAW, gi, s};
            put(&r, raw[gi * g.nslabs + s]);
        }
    dmri_free(raw);
    static dmri_keyref_t refs[MAXIN];
    static dmri_chunk_t ins[MAXIN];
    for (int t = 0; t < g.ntasks; t++) {
        const dmri_task_t *task = &g.tasks[t];
        if (task->kind == DMRI_TASK_SAVE)
            continue;
        int k = dmri_task_inputs(&info, &g, task, refs, MAXIN);
        CHECK(k >= 1, "task %d: %d inputs", t, k);
        for (int i = 0; i < k; i++) {
            ins[i].data = NULL;
            ins[i].size = 0;
            if (refs[i].kind == DMRI_KEY_INFO)
                continue;
            const stored_t *st = get(&refs[i]);
            if (!st) {
                fprintf(stderr, "task %d: input %d not computed\n", t, i);
                return 1;
            }
            ins[i] = st->c;
        }
        dmri_keyref_t oref;
        dmri_chunk_t out;
        if (dmri_task_output(&g, task, &oref) != 1 ||
            dmri_chunk_run(&info, &g, task, refs, ins, k, &out, &err) != 0) {
            fprintf(stderr, "task %d: %s\n", t, err.msg);
            return 1;
        }
        put(&oref, out);
    }

    /* The client: RESULTs of what the SAVE tasks need, in reverse order
     * for good measure, then JOB_DONE. */
    dmri_submit_job_t j;
    dmri_submit_job_init(&j, subj, 0, 1);
    j.job = JOB;
    j.state = DMRI_SUBMIT_JOB_RUNNING;
    CHECK_INT(feed_info(&j, &info, &err), 0);
    CHECK_INT(feed_info(&j, &info, &err), 0); /* a duplicate is ignored */
    CHECK(strcmp(j.name, "ph01") == 0, "name '%s'", j.name);
    CHECK(j.nwant == (size_t)(1 + ngroups + g.nslabs + ngroups * g.nslabs),
          "%zu chunks wanted", j.nwant);
    int fed = 0;
    for (int i = nstore - 1; i >= 0; i--) {
        dmri_key_kind_t kd = store[i].ref.kind;
        if (kd != DMRI_KEY_MASK && kd != DMRI_KEY_SIGMA && kd != DMRI_KEY_MAPS &&
            kd != DMRI_KEY_DEN)
            continue;
        int rc = dmri_submit_job_result(&j, store[i].key, store[i].c.data, store[i].c.size, &err);
        CHECK(rc == 0, "%s: %s", store[i].key, err.msg);
        fed++;
    }
    CHECK_INT(fed, (int)j.nwant);
    CHECK_INT(dmri_submit_job_finish(&j, out_root, "{\"workers\": 2, \"seconds\": {\"dti\": 0.5}}",
                                     &err),
              0);
    CHECK(j.state == DMRI_SUBMIT_JOB_DONE, "state %d: %s", j.state, j.error);
    const char *files[] = {"mask.nii.gz",      "dti_fa.nii.gz",       "dti_md.nii.gz",
                           "dti_ad.nii.gz",    "dti_rd.nii.gz",       "dti_evecs.nii.gz",
                           "dti_color_fa.nii.gz", "denoised.nii.gz"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        snprintf(path_a, sizeof path_a, "%s/ph01/%s", out_root, files[f]);
        snprintf(path_b, sizeof path_b, "%s/%s", out_run, files[f]);
        size_t n;
        int same = same_nifti(path_a, path_b, &n);
        printf("%-20s %8zu bytes, identical to dmri-run's: %s\n", files[f], n, same ? "yes" : "NO");
        CHECK(same, "%s differs from dmri-run's", files[f]);
    }
    {
        snprintf(path_a, sizeof path_a, "%s/ph01/summary.json", out_root);
        FILE *f = fopen(path_a, "r");
        char text[16384] = "";
        if (f) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = '\0';
            fclose(f);
        }
        CHECK_HAS(text, "\"cluster\"");
        CHECK_HAS(text, "\"workers\": 2");
    }
    dmri_submit_job_close(&j);

    /* What a bad scheduler can do. Each call fails this job only. */
    const stored_t *mask = NULL, *maps1 = NULL;
    for (int i = 0; i < nstore; i++) {
        if (store[i].ref.kind == DMRI_KEY_MASK)
            mask = &store[i];
        if (store[i].ref.kind == DMRI_KEY_MAPS && store[i].ref.s == 1)
            maps1 = &store[i];
    }
    if (!mask || !maps1) {
        fprintf(stderr, "mask or maps/s1 not computed\n");
        return 1;
    }
    dmri_submit_job_init(&j, subj, 0, 0);
    j.job = JOB;
    j.state = DMRI_SUBMIT_JOB_RUNNING;
    dmri_err_clear(&err);
    CHECK(dmri_submit_job_result(&j, mask->key, mask->c.data, mask->c.size, &err) != 0, "early");
    CHECK_HAS(err.msg, "before the info chunk");
    dmri_err_clear(&err);
    CHECK(dmri_submit_job_result(&j, "J8/mask", mask->c.data, mask->c.size, &err) != 0, "job");
    CHECK_HAS(err.msg, "not a key of job 7");
    dmri_err_clear(&err);
    CHECK(dmri_submit_job_result(&j, "J7/mask/../../x", "", 0, &err) != 0, "bad key");
    CHECK_HAS(err.msg, "not a chunk key");
    dmri_err_clear(&err);
    CHECK(dmri_submit_job_result(&j, "J7/info", "\x01\x02garbage", 9, &err) != 0, "bad info");
    CHECK_HAS(err.msg, "info chunk");
    dmri_submit_job_close(&j);

    dmri_submit_job_init(&j, subj, 0, 0);
    j.job = JOB;
    j.state = DMRI_SUBMIT_JOB_RUNNING;
    dmri_info_t evil = info;
    snprintf(evil.name, sizeof evil.name, "..");
    dmri_err_clear(&err);
    CHECK(feed_info(&j, &evil, &err) != 0, "unsafe name accepted");
    CHECK_HAS(err.msg, "cannot be a folder name");
    dmri_submit_job_close(&j);

    /* Wrong sizes, then JOB_DONE with maps/s1 never sent: nothing written. */
    dmri_submit_job_init(&j, subj, 0, 0);
    j.job = JOB;
    j.state = DMRI_SUBMIT_JOB_RUNNING;
    CHECK_INT(feed_info(&j, &info, &err), 0);
    dmri_err_clear(&err);
    CHECK(dmri_submit_job_result(&j, mask->key, mask->c.data, mask->c.size - 1, &err) != 0,
          "short mask accepted");
    CHECK_HAS(err.msg, "bytes");
    dmri_err_clear(&err);
    CHECK(dmri_submit_job_result(&j, "J7/maps/s9", maps1->c.data, maps1->c.size, &err) != 0,
          "slab out of range accepted");
    for (int i = 0; i < nstore; i++) {
        if (store[i].ref.kind == DMRI_KEY_MAPS && store[i].ref.s == 1)
            continue;
        if (store[i].ref.kind == DMRI_KEY_MASK || store[i].ref.kind == DMRI_KEY_SIGMA ||
            store[i].ref.kind == DMRI_KEY_MAPS)
            CHECK_INT(dmri_submit_job_result(&j, store[i].key, store[i].c.data, store[i].c.size,
                                             &err),
                      0);
    }
    char out2[600];
    snprintf(out2, sizeof out2, "%s/incomplete", tmp);
    dmri_err_clear(&err);
    CHECK(dmri_submit_job_finish(&j, out2, "{}", &err) != 0, "incomplete job written");
    CHECK_HAS(err.msg, "scheduler reported done but chunks are missing: J7/maps/s1");
    CHECK_HAS(j.error, "J7/maps/s1");
    CHECK(j.state == DMRI_SUBMIT_JOB_FAILED, "state %d", j.state);
    CHECK(!dmri_is_dir(out2), "%s created for an incomplete job", out2);
    CHECK_INT(dmri_submit_job_fail(&j, "again"), 0); /* already ended */
    dmri_submit_job_close(&j);
    dmri_submit_job_close(&j); /* twice is safe */

    for (int i = 0; i < nstore; i++)
        dmri_free(store[i].c.data);
    dmri_graph_close(&g);
    dmri_info_close(&info);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    if (failures) {
        fprintf(stderr, "test_submit_job: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_submit_job: ok\n");
    return 0;
}
