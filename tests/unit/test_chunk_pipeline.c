/* The cluster's form of the pipeline gives dmri-run's files, byte for byte:
 * a phantom subject is run by dmri_run_subject, and separately cut into
 * chunks (dmri_chunk_load), run task by task on chunks (dmri_chunk_run, an
 * in-memory key -> chunk table standing for the workers) and assembled
 * (dmri_assembly_*). Every output must be identical: header and voxel bytes
 * after decompression, and the gzip file itself. Also: inputs of the wrong
 * size or name are refused with a message naming the key. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti1.h>
#include <zlib.h>

#include "chunks.h"
#include "dmri_alloc.h"
#include "phantom.h"
#include "run.h"
#include "subject.h"

static int failures = 0;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)
#define CHECK_EQ(a, b)                                                                    \
    do {                                                                                  \
        long long va_ = (long long)(a), vb_ = (long long)(b);                             \
        if (va_ != vb_) {                                                                 \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                    \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)
#define CHECK_RC(expr, err)                                                               \
    do {                                                                                  \
        int rc_ = (expr);                                                                 \
        if (rc_ != 0) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %d %s\n", __FILE__, __LINE__, #expr, rc_,  \
                    (err)->msg);                                                          \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

/* ------------------------------------------------------------ file utils */

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

static unsigned char *gunzip_all(const char *path, size_t *len) {
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (n == cap)
            b = realloc(b, cap *= 2);
        int k = gzread(gz, b + n, (unsigned)(cap - n));
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    gzclose(gz);
    *len = n;
    return b;
}

/* Same NIfTI header (352 bytes with the extension flag) and same voxels
 * after decompression; and the same gzip stream. */
static void compare_nifti(const char *a, const char *b, const char *what) {
    size_t na = 0, nb = 0;
    unsigned char *da = gunzip_all(a, &na), *db = gunzip_all(b, &nb);
    if (!da || !db || na < 352 || nb < 352) {
        fprintf(stderr, "%s: cannot read %s or %s\n", what, a, b);
        failures++;
    } else {
        if (memcmp(da, db, 352) != 0) {
            fprintf(stderr, "%s: %s: headers differ\n", what, a);
            failures++;
        }
        if (na != nb || memcmp(da + 352, db + 352, na - 352) != 0) {
            size_t first = 352;
            while (first < na && first < nb && da[first] == db[first])
                first++;
            fprintf(stderr, "%s: %s: voxel bytes differ (%zu vs %zu bytes, first at %zu)\n",
                    what, a, na, nb, first);
            failures++;
        }
    }
    free(da);
    free(db);
    unsigned char *fa = read_all(a, &na), *fb = read_all(b, &nb);
    if (!fa || !fb || na != nb || memcmp(fa, fb, na) != 0) {
        fprintf(stderr, "%s: %s: gzip files differ\n", what, a);
        failures++;
    }
    free(fa);
    free(fb);
}

/* The keys of a JSON text, in order, with their nesting ("seconds.load"). */
static void json_keys(const char *s, char *out, size_t outsz) {
    char stack[8][64];
    int depth = 0;
    char last[64] = "";
    size_t o = 0;
    out[0] = '\0';
    for (const char *p = s; *p; p++) {
        if (*p == '"') {
            const char *q = strchr(p + 1, '"');
            if (!q)
                return;
            const char *c = q + 1;
            while (*c == ' ')
                c++;
            if (*c == ':') {
                snprintf(last, sizeof last, "%.*s", (int)(q - p - 1), p + 1);
                int n = snprintf(out + o, outsz - o, "%s%s%s ", depth > 1 ? stack[depth - 1] : "",
                                 depth > 1 ? "." : "", last);
                if (n > 0 && (size_t)n < outsz - o)
                    o += (size_t)n;
            }
            p = q;
        } else if (*p == '{' && depth < 7) {
            snprintf(stack[depth++], sizeof stack[0], "%s", last);
        } else if (*p == '}' && depth > 0) {
            depth--;
        }
    }
}

/* summary.json: the same keys, and the same lines but for timings and the
 * thread count (which the cluster client does not know). */
static void compare_summary(const char *a, const char *b, const char *what) {
    size_t na = 0, nb = 0;
    char *ta = (char *)read_all(a, &na), *tb = (char *)read_all(b, &nb);
    if (!ta || !tb) {
        fprintf(stderr, "%s: summary.json missing\n", what);
        failures++;
        free(ta);
        free(tb);
        return;
    }
    static char ka[8192], kb[8192];
    json_keys(ta, ka, sizeof ka);
    json_keys(tb, kb, sizeof kb);
    /* The assembly adds "cluster" at the end. */
    char *cl = strstr(kb, "cluster ");
    if (cl)
        *cl = '\0';
    if (strcmp(ka, kb) != 0) {
        fprintf(stderr, "%s: summary keys differ:\n  %s\n  %s\n", what, ka, kb);
        failures++;
    }
    CHECK(strstr(ka, "seconds.nlmeans") || strstr(what, "skip"));
    CHECK(strstr(ka, "sigma ") && strstr(ka, "otsu_threshold "));
    char *sa, *sb;
    char *la = strtok_r(ta, "\n", &sa), *lb = strtok_r(tb, "\n", &sb);
    int in_seconds = 0;
    for (; la && lb; la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb)) {
        if (strstr(lb, "\"cluster\"") && !strstr(la, "\"cluster\"")) {
            lb = strtok_r(NULL, "\n", &sb); /* the assembly's extra line */
            if (!lb)
                break;
        }
        if (strstr(la, "\"seconds\""))
            in_seconds = 1;
        int skip = in_seconds || strstr(la, "\"threads\"");
        if (in_seconds && strstr(la, "}"))
            in_seconds = 0;
        /* The line before "cluster" gains a comma. */
        size_t ll = strlen(la), lbl = strlen(lb);
        int same = strcmp(la, lb) == 0 ||
                   (lbl == ll + 1 && lb[ll] == ',' && strncmp(la, lb, ll) == 0);
        if (!skip && !same) {
            fprintf(stderr, "%s: summary line differs:\n  %s\n  %s\n", what, la, lb);
            failures++;
        }
    }
    if (la || lb) {
        fprintf(stderr, "%s: summary lengths differ\n", what);
        failures++;
    }
    free(ta);
    free(tb);
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* ------------------------------------------------------- the chunk table */

typedef struct {
    dmri_keyref_t ref;
    dmri_chunk_t c;
} entry_t;

typedef struct {
    entry_t *e;
    int n, cap;
} table_t;

static int same_ref(const dmri_keyref_t *a, const dmri_keyref_t *b) {
    return a->kind == b->kind && a->g == b->g && a->s == b->s;
}

static const dmri_chunk_t *table_get(const table_t *t, const dmri_keyref_t *r) {
    for (int i = 0; i < t->n; i++)
        if (same_ref(&t->e[i].ref, r))
            return &t->e[i].c;
    return NULL;
}

static void table_put(table_t *t, const dmri_keyref_t *r, dmri_chunk_t c) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->e = realloc(t->e, (size_t)t->cap * sizeof *t->e);
    }
    t->e[t->n].ref = *r;
    t->e[t->n].c = c;
    t->n++;
}

static void table_free(table_t *t) {
    for (int i = 0; i < t->n; i++)
        dmri_free(t->e[i].c.data);
    free(t->e);
    memset(t, 0, sizeof *t);
}

/* Gather the inputs of task t from the table; the info chunk is the blob. */
static int gather(const table_t *tab, const dmri_info_t *info, const dmri_graph_t *g,
                  const dmri_task_t *t, dmri_keyref_t *refs, dmri_chunk_t *in, int max) {
    int n = dmri_task_inputs(info, g, t, refs, max);
    if (n < 1)
        return n;
    for (int k = 0; k < n; k++) {
        const dmri_chunk_t *c = table_get(tab, &refs[k]);
        if (!c) {
            char key[64];
            dmri_key_format(key, sizeof key, 1, &refs[k]);
            fprintf(stderr, "task %s: input %s not in the table\n", dmri_task_kind_name(t->kind),
                    key);
            failures++;
            return -1;
        }
        in[k] = *c;
    }
    return n;
}

/* ----------------------------------------------------- the two pipelines */

typedef struct {
    const char *label;
    int datatype;
    double slope;
    int skip_denoise;
    int slab_slices, vols_per_task;
} variant_t;

/* Runs the chunk form of the pipeline into out_dir; returns the number of
 * chunk tasks run. With `probe`, also checks bad inputs on the way. */
static int run_chunked(const char *subj_dir, const variant_t *v, int save_den,
                       const char *out_dir, int probe) {
    dmri_err_t err = {0};
    dmri_info_t loaded, info;
    dmri_chunk_t *raw = NULL;
    int nraw = 0, ran = 0;
    if (dmri_chunk_load(subj_dir, NULL, NULL, 10.0, v->skip_denoise, v->slab_slices, v->vols_per_task,
                        &loaded, &raw, &nraw, &err) != 0) {
        fprintf(stderr, "%s: load: %s\n", v->label, err.msg);
        failures++;
        return 0;
    }
    /* The info travels as a blob, as on the wire. */
    uint8_t *blob;
    size_t blen;
    CHECK_EQ(dmri_info_encode(&loaded, &blob, &blen), 0);
    CHECK_RC(dmri_info_decode(blob, blen, &info, &err), &err);
    dmri_info_close(&loaded);

    dmri_graph_params_t p;
    dmri_info_graph_params(&info, save_den, &p);
    dmri_graph_t g;
    CHECK_RC(dmri_graph_build(&g, &p, &err), &err);
    CHECK_EQ(nraw, ((info.geom.nv + v->vols_per_task - 1) / v->vols_per_task) * g.nslabs);

    table_t tab = {0};
    dmri_keyref_t info_ref = {DMRI_KEY_INFO, -1, -1};
    table_put(&tab, &info_ref, (dmri_chunk_t){blob, blen});
    int ns = g.nslabs;
    for (int i = 0; i < nraw; i++) {
        dmri_keyref_t r = {DMRI_KEY_RAW, i / ns, i % ns};
        CHECK_EQ(raw[i].size, dmri_chunk_size(&info, &g, &r));
        table_put(&tab, &r, raw[i]);
    }
    dmri_free(raw);

    dmri_assembly_t *a = dmri_assembly_new(&info, save_den);
    CHECK(a != NULL);
    enum { MAXIN = 4096 };
    dmri_keyref_t *refs = malloc(MAXIN * sizeof *refs);
    dmri_chunk_t *in = malloc(MAXIN * sizeof *in);
    for (int i = 0; i < g.ntasks && a; i++) {
        const dmri_task_t *t = &g.tasks[i];
        int n = gather(&tab, &info, &g, t, refs, in, MAXIN);
        if (n < 1)
            break;
        if (t->kind == DMRI_TASK_SAVE) {
            for (int k = 0; k < n; k++)
                CHECK_RC(dmri_assembly_add(a, &refs[k], in[k].data, in[k].size, &err), &err);
            continue;
        }
        if (probe && t->kind == DMRI_TASK_NLMEANS && n > 3) {
            /* A raw chunk one byte short: refused, naming the key. */
            dmri_chunk_t saved = in[n - 1], out;
            in[n - 1].size--;
            int rc = dmri_chunk_run(&info, &g, t, refs, in, n, &out, &err);
            char key[64];
            snprintf(key, sizeof key, "raw/g%d/s%d", refs[n - 1].g, refs[n - 1].s);
            CHECK(rc != 0 && strstr(err.msg, key) && strstr(err.msg, "nlmeans g"));
            CHECK(out.data == NULL);
            printf("  wrong size: %s\n", err.msg);
            in[n - 1] = saved;
            /* Inputs in another order, or one missing: refused. */
            dmri_keyref_t r0 = refs[n - 1];
            refs[n - 1] = refs[n - 2];
            refs[n - 2] = r0;
            CHECK(dmri_chunk_run(&info, &g, t, refs, in, n, &out, &err) != 0);
            printf("  wrong order: %s\n", err.msg);
            refs[n - 2] = refs[n - 1];
            refs[n - 1] = r0;
            CHECK(dmri_chunk_run(&info, &g, t, refs, in, n - 1, &out, &err) != 0);
            /* A mask of the wrong size. */
            in[1].size = 7;
            CHECK(dmri_chunk_run(&info, &g, t, refs, in, n, &out, &err) != 0 &&
                  strstr(err.msg, "mask has 7 bytes"));
            in[1] = *table_get(&tab, &refs[1]);
            /* Task ranges that are not the graph's. */
            dmri_task_t odd = *t;
            odd.z1 = odd.z0 + 1;
            CHECK(dmri_chunk_run(&info, &g, &odd, refs, in, n, &out, &err) != 0);
            probe = 0;
        }
        dmri_chunk_t out = {0};
        int rc = dmri_chunk_run(&info, &g, t, refs, in, n, &out, &err);
        if (rc != 0) {
            fprintf(stderr, "%s: task %d (%s): %s\n", v->label, i, dmri_task_kind_name(t->kind),
                    err.msg);
            failures++;
            break;
        }
        dmri_keyref_t o;
        CHECK_EQ(dmri_task_output(&g, t, &o), 1);
        CHECK_EQ(out.size, dmri_chunk_size(&info, &g, &o));
        table_put(&tab, &o, out);
        ran++;
    }
    if (a) {
        CHECK(dmri_assembly_complete(a));
        /* A chunk of the wrong size is refused by the assembly too. */
        dmri_keyref_t mref = {DMRI_KEY_MASK, -1, -1};
        const dmri_chunk_t *m = table_get(&tab, &mref);
        if (m)
            CHECK(dmri_assembly_add(a, &mref, m->data, m->size - 1, &err) == DMRI_EFORMAT &&
                  strstr(err.msg, "mask"));
        CHECK_RC(dmri_assembly_write(a, out_dir, "{\"workers\": 1, \"seconds\": {\"total\": 1.5}}",
                                     &err),
                 &err);
        dmri_assembly_destroy(&a);
        CHECK(a == NULL);
        dmri_assembly_destroy(&a);
    }
    /* An incomplete assembly writes nothing. */
    dmri_assembly_t *empty = dmri_assembly_new(&info, 0);
    CHECK(!dmri_assembly_complete(empty));
    char none[4200];
    snprintf(none, sizeof none, "%s-none", out_dir);
    CHECK(dmri_assembly_write(empty, none, NULL, &err) != 0);
    CHECK(access(none, F_OK) != 0);
    dmri_assembly_destroy(&empty);

    free(refs);
    free(in);
    table_free(&tab);
    dmri_graph_close(&g);
    dmri_info_close(&info);
    return ran;
}

static void run_variant(const char *tmp, const variant_t *v, int probe) {
    char subj[4096], ref_out[4096], clu_out[4096];
    snprintf(subj, sizeof subj, "%s/%s", tmp, v->label);
    snprintf(ref_out, sizeof ref_out, "%s/out-run-%s", tmp, v->label);
    snprintf(clu_out, sizeof clu_out, "%s/out-chunks-%s", tmp, v->label);
    dmri_err_t err = {0};
    dmri_phantom_opts_t po;
    dmri_phantom_opts_default(&po);
    po.nx = 21;
    po.ny = 19;
    po.nz = 17;
    po.nb0 = 3;
    po.nshells = 2;
    po.shells[0] = 1000;
    po.shells[1] = 2000;
    po.ndirs = 6;
    po.seed = 7;
    po.datatype = v->datatype;
    po.scl_slope = v->slope;
    CHECK_RC(dmri_phantom_write(subj, &po, &err), &err);

    int save_den = !v->skip_denoise;
    dmri_subject_paths_t paths;
    CHECK_RC(dmri_subject_resolve(subj, NULL, &paths, &err), &err);
    dmri_run_opts_t o;
    dmri_run_opts_default(&o);
    o.out_dir = ref_out;
    o.nthreads = 2;
    o.skip_denoise = v->skip_denoise;
    o.save_denoised = save_den;
    CHECK_RC(dmri_run_subject(&paths, &o, &err), &err);

    int ran = run_chunked(subj, v, save_den, clu_out, probe);
    printf("%s: %d chunk tasks\n", v->label, ran);
    int nout = 0;
    for (int out = 0; out < DMRI_OUTPUT_COUNT; out++) {
        if (out == DMRI_OUTPUT_DENOISED && !save_den)
            continue;
        const char *name = dmri_output_file_name((dmri_output_t)out);
        char a[8300], b[8300];
        snprintf(a, sizeof a, "%s/%s", ref_out, name);
        snprintf(b, sizeof b, "%s/%s", clu_out, name);
        compare_nifti(a, b, v->label);
        nout++;
    }
    char a[8300], b[8300];
    snprintf(a, sizeof a, "%s/summary.json", ref_out);
    snprintf(b, sizeof b, "%s/summary.json", clu_out);
    compare_summary(a, b, v->label);
    /* Nothing else left behind (no stage folder). */
    int files = 0;
    DIR *d = opendir(clu_out);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        files += e->d_name[0] != '.';
    if (d)
        closedir(d);
    CHECK_EQ(files, nout + 1);
}

int main(void) {
    char tmp[] = "/tmp/dmri-chunkpipe-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    const variant_t variants[] = {
        {"float32", DT_FLOAT32, 0, 0, 4, 3},
        {"int16", DT_INT16, 0, 0, 4, 3},
        {"int16-scaled", DT_INT16, 0.5, 0, 4, 3},
        {"float32-skip", DT_FLOAT32, 0, 1, 4, 3},
        {"float32-slab7-vols4", DT_FLOAT32, 0, 0, 7, 4},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        run_variant(tmp, &variants[i], i == 0);
    if (failures == 0)
        remove_tree(tmp);
    else
        fprintf(stderr, "outputs kept in %s\n", tmp);
    if (failures) {
        fprintf(stderr, "test_chunk_pipeline: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_chunk_pipeline: all outputs byte-identical\n");
    return 0;
}
