/* Unit tests of pipeline/chunks.c without data: key names (round trips and
 * rejections), the info blob (round trip, every truncation, random
 * corruption), the inputs of every task against a brute-force derivation
 * from voxel and volume ranges, and chunk sizes. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nifti1.h>

#include "chunks.h"
#include "dmri_alloc.h"
#include "nlmeans.h"

static int failures = 0;
#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            failures++;                                                            \
        }                                                                          \
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
#define CHECK_STR(a, b)                                                                   \
    do {                                                                                  \
        const char *sa_ = (a), *sb_ = (b);                                                \
        if (strcmp(sa_, sb_) != 0) {                                                      \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,       \
                    __LINE__, #a, #b, sa_, sb_);                                          \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

/* ------------------------------------------------------------------ keys */

static void test_keys(void) {
    char buf[128];
    struct {
        dmri_keyref_t ref;
        uint64_t job;
        const char *text;
    } known[] = {
        {{DMRI_KEY_RAW, 3, 2}, 7, "J7/raw/g3/s2"},
        {{DMRI_KEY_INFO, -1, -1}, 7, "J7/info"},
        {{DMRI_KEY_MEANB0, -1, -1}, 7, "J7/meanb0"},
        {{DMRI_KEY_MEDIAN1, -1, 0}, 7, "J7/median1/s0"},
        {{DMRI_KEY_MEDIAN2, -1, 0}, 7, "J7/median2/s0"},
        {{DMRI_KEY_MASK, -1, -1}, 7, "J7/mask"},
        {{DMRI_KEY_SIGMA, 3, -1}, 7, "J7/sigma/g3"},
        {{DMRI_KEY_DEN, 3, 2}, 7, "J7/den/g3/s2"},
        {{DMRI_KEY_MAPS, -1, 2}, 7, "J7/maps/s2"},
        {{DMRI_KEY_RAW, INT_MAX, 0}, UINT64_MAX, "J18446744073709551615/raw/g2147483647/s0"},
        {{DMRI_KEY_DEN, 0, INT_MAX}, 0, "J0/den/g0/s2147483647"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        CHECK_EQ(dmri_key_format(buf, sizeof buf, known[i].job, &known[i].ref), 0);
        CHECK_STR(buf, known[i].text);
        uint64_t job = 1;
        dmri_keyref_t r = {DMRI_KEY_INFO, 99, 99};
        CHECK_EQ(dmri_key_parse(known[i].text, &job, &r), 0);
        CHECK(job == known[i].job);
        CHECK_EQ(r.kind, known[i].ref.kind);
        CHECK_EQ(r.g, known[i].ref.g);
        CHECK_EQ(r.s, known[i].ref.s);
    }
    /* Round trips over a grid of values. */
    const uint64_t jobs[] = {0, 1, 9, 10, 123456789012345ULL, UINT64_MAX - 1, UINT64_MAX};
    const int idx[] = {0, 1, 9, 10, 99, 100, 65535, INT_MAX};
    for (int k = 0; k <= DMRI_KEY_MAPS; k++)
        for (size_t a = 0; a < sizeof jobs / sizeof jobs[0]; a++)
            for (size_t b = 0; b < sizeof idx / sizeof idx[0]; b++) {
                dmri_keyref_t ref = {(dmri_key_kind_t)k, -1, -1};
                if (k == DMRI_KEY_RAW || k == DMRI_KEY_SIGMA || k == DMRI_KEY_DEN)
                    ref.g = idx[b];
                if (k == DMRI_KEY_RAW || k == DMRI_KEY_MEDIAN1 || k == DMRI_KEY_MEDIAN2 ||
                    k == DMRI_KEY_DEN || k == DMRI_KEY_MAPS)
                    ref.s = idx[(b + 3) % (sizeof idx / sizeof idx[0])];
                CHECK_EQ(dmri_key_format(buf, sizeof buf, jobs[a], &ref), 0);
                uint64_t job;
                dmri_keyref_t r;
                CHECK_EQ(dmri_key_parse(buf, &job, &r), 0);
                CHECK(job == jobs[a] && r.kind == ref.kind && r.g == ref.g && r.s == ref.s);
                /* Any proper prefix and any appended character is rejected. */
                size_t n = strlen(buf);
                for (size_t cut = 0; cut < n; cut++) {
                    char p[128];
                    memcpy(p, buf, cut);
                    p[cut] = '\0';
                    int rc = dmri_key_parse(p, &job, &r);
                    /* "J7/raw/g3/s2" cut to "J7/raw/g3/s" is bad, but a key
                     * cut inside its last number is another valid key. */
                    int valid_prefix = cut > 0 && buf[cut - 1] >= '0' && buf[cut - 1] <= '9' &&
                                       buf[cut] >= '0' && buf[cut] <= '9' &&
                                       strchr(buf + cut, '/') == NULL;
                    if (!valid_prefix && rc != DMRI_EFORMAT) {
                        fprintf(stderr, "prefix \"%s\" of \"%s\" accepted\n", p, buf);
                        failures++;
                    }
                }
                for (const char *x = "/ 0xg"; *x; x++) {
                    char p[130];
                    snprintf(p, sizeof p, "%s%c", buf, *x);
                    int ok_digit = *x == '0' && buf[n - 1] >= '0' && buf[n - 1] <= '9';
                    if (!ok_digit)
                        CHECK_EQ(dmri_key_parse(p, &job, &r), DMRI_EFORMAT);
                }
            }
    const char *bad[] = {
        "", "J", "J/info", "7/info", "j7/info", "J07/info", "J00/info", "J7", "J7/", "J7/info/",
        "J7/infox", "J7/INFO", "J7//info", " J7/info", "J7/info ", "J7/raw", "J7/raw/g3",
        "J7/raw/s2/g3", "J7/raw/g03/s2", "J7/raw/g3/s02", "J7/raw/g3/s2x", "J7/raw/g-1/s2",
        "J7/raw/g+1/s2", "J7/raw/g/s2", "J7/raw/3/2", "J7/raw/g3s2", "J-7/info", "J+7/info",
        "J18446744073709551616/info", "J99999999999999999999/info",
        "J7/raw/g2147483648/s0", "J7/raw/g0/s99999999999", "J7/mask/s0", "J7/sigma/g1/s1",
        "J7/sigma", "J7/maps/g1", "J7/maps/g1/s1", "J7/median1", "J7/median3/s0",
        "J7/meanb0/s0", "J7/den/g1", "J7/info\n", "J7/raw/g 3/s2", "J0x7/info", "J7.0/info",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t job;
        dmri_keyref_t r;
        int rc = dmri_key_parse(bad[i], &job, &r);
        if (rc != DMRI_EFORMAT) {
            fprintf(stderr, "bad key \"%s\" gave %d\n", bad[i], rc);
            failures++;
        }
    }
    /* No key at all. */
    CHECK_EQ(dmri_key_parse(NULL, &(uint64_t){0}, &(dmri_keyref_t){0}), DMRI_EFORMAT);

    /* Formatting: exact fit, one byte short, invalid refs. */
    dmri_keyref_t r = {DMRI_KEY_RAW, 3, 2};
    CHECK_EQ(dmri_key_format(buf, 13, 7, &r), 0); /* "J7/raw/g3/s2" + NUL */
    CHECK_EQ(dmri_key_format(buf, 12, 7, &r), DMRI_ERANGE);
    CHECK_STR(buf, "");
    dmri_keyref_t badrefs[] = {{DMRI_KEY_RAW, -1, 2}, {DMRI_KEY_RAW, 3, -1},
                               {DMRI_KEY_MASK, 0, -1}, {DMRI_KEY_MAPS, 2, 2},
                               {DMRI_KEY_SIGMA, 1, 0}, {(dmri_key_kind_t)42, -1, -1}};
    for (size_t i = 0; i < sizeof badrefs / sizeof badrefs[0]; i++)
        CHECK_EQ(dmri_key_format(buf, sizeof buf, 7, &badrefs[i]), DMRI_EINVAL);
}

/* ------------------------------------------------------------------ info */

static void make_info(dmri_info_t *in, int nx, int ny, int nz, int nv, int datatype, int scaled,
                      int skip) {
    memset(in, 0, sizeof *in);
    snprintf(in->name, sizeof in->name, "100307");
    snprintf(in->data_path, sizeof in->data_path, "/data/hcp/100307/T1w/Diffusion/data.nii.gz");
    dmri_image_t *g = &in->geom;
    g->ndim = 4;
    g->nx = nx;
    g->ny = ny;
    g->nz = nz;
    g->nv = nv;
    g->datatype = datatype;
    g->scaled = scaled;
    g->store = (scaled || !(datatype == DT_FLOAT32 || datatype == DT_INT16 ||
                            datatype == DT_UINT8 || datatype == DT_INT8 || datatype == DT_UINT16))
                   ? DMRI_STORE_F64
                   : DMRI_STORE_F32;
    for (int i = 0; i < 4; i++)
        g->pixdim[i] = 1.25 + i * 0.5;
    g->qform_code = 1;
    g->sform_code = 2;
    for (int i = 0; i < 6; i++)
        g->quatern[i] = -0.3 * i + 0.1;
    g->qfac = -1;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            g->srow[r][c] = r * 10 + c + 0.125;
    g->xyz_units = 2;
    g->time_units = 8;
    in->bvals = dmri_malloc((size_t)nv * sizeof(double));
    in->bvecs = dmri_malloc((size_t)nv * 3 * sizeof(double));
    /* b0 volumes at 0, 5, 10, ...; unit vectors elsewhere. */
    for (int v = 0; v < nv; v++) {
        int b0 = v % 5 == 0;
        in->bvals[v] = b0 ? 5 : 1000 + 1000 * (v % 2);
        double a = 0.7 * v, b = 0.3 * v + 0.2;
        in->bvecs[3 * v] = b0 ? 0 : cos(a) * sin(b);
        in->bvecs[3 * v + 1] = b0 ? 0 : sin(a) * sin(b);
        in->bvecs[3 * v + 2] = b0 ? 0 : cos(b);
    }
    in->b0_threshold = 10;
    in->skip_denoise = skip;
    in->slab_slices = 4;
    in->vols_per_task = 3;
}

static int same_bits(double a, double b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

static int info_equal(const dmri_info_t *a, const dmri_info_t *b) {
    const dmri_image_t *x = &a->geom, *y = &b->geom;
    int ok = strcmp(a->name, b->name) == 0 && strcmp(a->data_path, b->data_path) == 0 &&
             x->ndim == y->ndim && x->nx == y->nx && x->ny == y->ny && x->nz == y->nz &&
             x->nv == y->nv && x->datatype == y->datatype && x->scaled == y->scaled &&
             x->store == y->store && x->qform_code == y->qform_code &&
             x->sform_code == y->sform_code && x->xyz_units == y->xyz_units &&
             x->time_units == y->time_units && same_bits(x->qfac, y->qfac) &&
             same_bits(a->b0_threshold, b->b0_threshold) && a->skip_denoise == b->skip_denoise &&
             a->slab_slices == b->slab_slices && a->vols_per_task == b->vols_per_task &&
             y->data == NULL;
    for (int i = 0; i < 4; i++)
        ok = ok && same_bits(x->pixdim[i], y->pixdim[i]);
    for (int i = 0; i < 6; i++)
        ok = ok && same_bits(x->quatern[i], y->quatern[i]);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            ok = ok && same_bits(x->srow[r][c], y->srow[r][c]);
    for (int v = 0; ok && v < x->nv; v++)
        ok = same_bits(a->bvals[v], b->bvals[v]) && same_bits(a->bvecs[3 * v], b->bvecs[3 * v]) &&
             same_bits(a->bvecs[3 * v + 1], b->bvecs[3 * v + 1]) &&
             same_bits(a->bvecs[3 * v + 2], b->bvecs[3 * v + 2]);
    return ok;
}

/* Offsets of fields in the blob, for targeted corruption: after the magic
 * (8), version (4), name (4 + n), path (4 + n) come 12 int32s. */
static size_t ints_offset(const dmri_info_t *in) {
    return 8 + 4 + 4 + strlen(in->name) + 4 + strlen(in->data_path);
}

static void put32(uint8_t *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static int decode_mutated(const uint8_t *blob, size_t len, size_t at, int32_t v) {
    uint8_t *b = dmri_malloc(len);
    memcpy(b, blob, len);
    put32(b + at, v);
    dmri_info_t out;
    dmri_err_t err = {0};
    int rc = dmri_info_decode(b, len, &out, &err);
    if (rc == 0)
        dmri_info_close(&out);
    else if (!err.msg[0]) {
        fprintf(stderr, "decode failed without a message\n");
        failures++;
    }
    dmri_free(b);
    return rc;
}

static void test_info(void) {
    const int types[][2] = {{DT_FLOAT32, 0}, {DT_INT16, 0}, {DT_INT16, 1}, {DT_FLOAT64, 0},
                            {DT_INT32, 0},   {DT_UINT8, 0}};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        dmri_info_t in, out;
        make_info(&in, 21, 19, 17, 15, types[k][0], types[k][1], 0);
        in.bvals[3] = NAN; /* passes through untouched */
        uint8_t *blob;
        size_t len;
        CHECK_EQ(dmri_info_encode(&in, &blob, &len), 0);
        dmri_err_t err = {0};
        CHECK_EQ(dmri_info_decode(blob, len, &out, &err), 0);
        CHECK(info_equal(&in, &out));
        dmri_info_close(&out);

        /* Every truncation and one extra byte fail cleanly. */
        for (size_t n = 0; n < len; n++) {
            int rc = dmri_info_decode(blob, n, &out, &err);
            if (rc == 0) {
                fprintf(stderr, "truncated info (%zu of %zu bytes) accepted\n", n, len);
                failures++;
                dmri_info_close(&out);
            }
        }
        uint8_t *longer = dmri_malloc(len + 1);
        memcpy(longer, blob, len);
        longer[len] = 0;
        CHECK_EQ(dmri_info_decode(longer, len + 1, &out, &err), DMRI_EFORMAT);
        dmri_free(longer);

        /* Targeted field corruption. */
        size_t io = ints_offset(&in);
        CHECK_EQ(decode_mutated(blob, len, 8, 2), DMRI_EUNSUP);      /* version */
        CHECK_EQ(decode_mutated(blob, len, 0, 0x4d4d4d4d), DMRI_EFORMAT); /* magic */
        CHECK_EQ(decode_mutated(blob, len, 12, 300), DMRI_EFORMAT);  /* name length */
        CHECK_EQ(decode_mutated(blob, len, 12, -1), DMRI_EFORMAT);
        CHECK_EQ(decode_mutated(blob, len, io + 0, 3), DMRI_EFORMAT);  /* ndim */
        CHECK_EQ(decode_mutated(blob, len, io + 4, 0), DMRI_EFORMAT);  /* nx */
        CHECK_EQ(decode_mutated(blob, len, io + 4, -5), DMRI_EFORMAT);
        CHECK_EQ(decode_mutated(blob, len, io + 4, 5), DMRI_EFORMAT);  /* < 6 with NL-means */
        CHECK_EQ(decode_mutated(blob, len, io + 8, 40000), DMRI_EFORMAT);
        CHECK_EQ(decode_mutated(blob, len, io + 16, 16), DMRI_EFORMAT); /* nv vs gradients */
        CHECK_EQ(decode_mutated(blob, len, io + 16, 14), DMRI_EFORMAT);
        CHECK_EQ(decode_mutated(blob, len, io + 20, 1536), DMRI_EFORMAT); /* datatype */
        CHECK_EQ(decode_mutated(blob, len, io + 24, 2), DMRI_EFORMAT); /* scaled */
        CHECK_EQ(decode_mutated(blob, len, io + 28, !in.geom.store), DMRI_EFORMAT); /* store */
        CHECK_EQ(decode_mutated(blob, len, io + 28, 7), DMRI_EFORMAT);
        size_t opts = io + 12 * 4 + 23 * 8 + 8;
        CHECK_EQ(decode_mutated(blob, len, opts, 2), DMRI_EFORMAT);   /* skip_denoise */
        CHECK_EQ(decode_mutated(blob, len, opts + 4, -1), DMRI_EFORMAT); /* slab */
        CHECK_EQ(decode_mutated(blob, len, opts + 8, 0), DMRI_EFORMAT);  /* volumes/task */
        CHECK_EQ(decode_mutated(blob, len, opts + 4, 0), 0);
        CHECK_EQ(decode_mutated(blob, len, opts + 8, 15), 0);
        dmri_free(blob);
        dmri_info_close(&in);
    }
    /* Small volumes are fine without NL-means. */
    dmri_info_t in, out;
    dmri_err_t err = {0};
    make_info(&in, 3, 2, 1, 4, DT_FLOAT32, 0, 1);
    uint8_t *blob;
    size_t len;
    CHECK_EQ(dmri_info_encode(&in, &blob, &len), 0);
    CHECK_EQ(dmri_info_decode(blob, len, &out, &err), 0);
    CHECK(info_equal(&in, &out));
    dmri_info_close(&out);
    dmri_free(blob);
    in.skip_denoise = 0;
    CHECK_EQ(dmri_info_encode(&in, &blob, &len), 0);
    CHECK_EQ(dmri_info_decode(blob, len, &out, &err), DMRI_EFORMAT);
    dmri_free(blob);
    dmri_info_close(&in);

    /* Random mutations never crash (ASan watches), and whatever decodes
     * re-encodes to the same bytes (the format has one spelling). */
    make_info(&in, 8, 7, 6, 12, DT_FLOAT32, 0, 0);
    CHECK_EQ(dmri_info_encode(&in, &blob, &len), 0);
    uint64_t st = 0x9e3779b97f4a7c15ULL;
    int accepted = 0;
    uint8_t *m = dmri_malloc(len + 64);
    for (int it = 0; it < 20000; it++) {
        size_t n = len;
        memcpy(m, blob, len);
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        int nmut = 1 + (int)((st >> 33) % 4);
        for (int k = 0; k < nmut; k++) {
            st = st * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = st >> 16;
            switch (r % 5) {
            case 0: m[(r >> 8) % n] ^= (uint8_t)(1u << ((r >> 40) % 8)); break;
            case 1: m[(r >> 8) % n] = (uint8_t)(r >> 40); break;
            case 2: n = (r >> 8) % (n + 1); break;
            case 3:
                if (n < len + 60)
                    m[n++] = (uint8_t)(r >> 40);
                break;
            default: put32(m + ((r >> 8) % (n >= 4 ? n - 3 : 1)) * (n >= 4),
                           (int32_t)(r >> 32)); break;
            }
            if (n == 0)
                break;
        }
        int rc = dmri_info_decode(m, n, &out, &err);
        if (rc == 0) {
            accepted++;
            uint8_t *again;
            size_t alen;
            CHECK_EQ(dmri_info_encode(&out, &again, &alen), 0);
            if (alen != n || memcmp(again, m, n) != 0) {
                fprintf(stderr, "mutation %d: decoded blob re-encodes differently\n", it);
                failures++;
            }
            dmri_free(again);
            dmri_info_close(&out);
        } else {
            CHECK(out.bvals == NULL && out.bvecs == NULL);
        }
    }
    printf("info corruption loop: 20000 mutations, %d decoded (harmless changes)\n", accepted);
    dmri_free(m);
    dmri_free(blob);
    dmri_info_close(&in);
}

/* ----------------------------------------------------------- task inputs */

typedef struct {
    dmri_keyref_t v[4096];
    int n;
} keyset_t;

static void ks_add(keyset_t *k, dmri_key_kind_t kind, int g, int s) {
    k->v[k->n++] = (dmri_keyref_t){kind, g, s};
}

static int ref_cmp(const void *a, const void *b) {
    const dmri_keyref_t *x = a, *y = b;
    if (x->kind != y->kind)
        return (int)x->kind - (int)y->kind;
    if (x->g != y->g)
        return x->g - y->g;
    return x->s - y->s;
}

/* The chunks as ranges, found without the module's arithmetic: every
 * volume's group and every slice's slab, by scanning. */
typedef struct {
    int nv, nz, ngroups, nslabs;
    int group_of[512], slab_of[512];
} scan_t;

static void scan_layout(const dmri_graph_t *g, scan_t *sc) {
    memset(sc, 0, sizeof *sc);
    sc->nv = g->params.nv;
    sc->nz = g->params.nz;
    /* Groups and slabs from the NLMEANS (or SIGMA / DTI) tasks themselves. */
    for (int i = 0; i < g->ntasks; i++) {
        const dmri_task_t *t = &g->tasks[i];
        if (t->kind == DMRI_TASK_SIGMA) {
            for (int v = t->v0; v < t->v1; v++)
                sc->group_of[v] = sc->ngroups;
            sc->ngroups++;
        }
        if (t->kind == DMRI_TASK_DTI) {
            for (int z = t->z0; z < t->z1; z++)
                sc->slab_of[z] = sc->nslabs;
            sc->nslabs++;
        }
    }
}

static void expected_inputs(const dmri_info_t *info, const dmri_graph_t *g, const scan_t *sc,
                            const dmri_task_t *t, keyset_t *k) {
    int used_g[512] = {0}, used_s[512] = {0};
    k->n = 0;
    dmri_key_kind_t series = g->params.skip_denoise ? DMRI_KEY_RAW : DMRI_KEY_DEN;
    int gi = t->v1 > t->v0 ? sc->group_of[t->v0] : -1;
    int si = sc->slab_of[t->z0];
    switch (t->kind) {
    case DMRI_TASK_MEANB0:
        for (int v = 0; v < sc->nv; v++)
            if (info->bvals[v] <= info->b0_threshold)
                used_g[sc->group_of[v]] = 1;
        for (int a = 0; a < sc->ngroups; a++)
            for (int s = 0; used_g[a] && s < sc->nslabs; s++)
                ks_add(k, DMRI_KEY_RAW, a, s);
        break;
    case DMRI_TASK_MEDIAN1: ks_add(k, DMRI_KEY_MEANB0, -1, -1); break;
    case DMRI_TASK_MEDIAN2: ks_add(k, DMRI_KEY_MEDIAN1, -1, 0); break;
    case DMRI_TASK_MASK: ks_add(k, DMRI_KEY_MEDIAN2, -1, 0); break;
    case DMRI_TASK_SIGMA:
        for (int s = 0; s < sc->nslabs; s++)
            ks_add(k, DMRI_KEY_RAW, gi, s);
        break;
    case DMRI_TASK_NLMEANS:
        ks_add(k, DMRI_KEY_MASK, -1, -1);
        ks_add(k, DMRI_KEY_SIGMA, gi, -1);
        for (int z = t->z0 - DMRI_NLMEANS_HALO; z < t->z1 + DMRI_NLMEANS_HALO; z++)
            if (z >= 0 && z < sc->nz)
                used_s[sc->slab_of[z]] = 1;
        for (int s = 0; s < sc->nslabs; s++)
            if (used_s[s])
                ks_add(k, DMRI_KEY_RAW, gi, s);
        break;
    case DMRI_TASK_DTI:
        ks_add(k, DMRI_KEY_MASK, -1, -1);
        for (int v = 0; v < sc->nv; v++)
            used_g[sc->group_of[v]] = 1;
        for (int a = 0; a < sc->ngroups; a++)
            ks_add(k, series, a, si);
        break;
    case DMRI_TASK_SAVE:
        if (t->output == DMRI_OUTPUT_MASK) {
            ks_add(k, DMRI_KEY_MASK, -1, -1);
            for (int a = 0; a < sc->ngroups; a++)
                ks_add(k, DMRI_KEY_SIGMA, a, -1);
        } else if (t->output == DMRI_OUTPUT_DENOISED) {
            for (int a = 0; a < sc->ngroups; a++)
                for (int s = 0; s < sc->nslabs; s++)
                    ks_add(k, series, a, s);
        } else {
            for (int s = 0; s < sc->nslabs; s++)
                ks_add(k, DMRI_KEY_MAPS, -1, s);
        }
        break;
    default: break;
    }
    ks_add(k, DMRI_KEY_INFO, -1, -1);
}

/* 1 if task `from` is reachable from task `to` through dependencies. */
static int depends_on(const dmri_graph_t *g, int to, int from) {
    if (to == from)
        return 1;
    for (int k = 0; k < g->tasks[to].ndeps; k++)
        if (depends_on(g, g->tasks[to].deps[k], from))
            return 1;
    return 0;
}

static void check_graph_inputs(int nx, int ny, int nz, int nv, int slab, int vpt, int skip,
                               int save_den) {
    dmri_info_t info;
    make_info(&info, nx, ny, nz, nv, DT_FLOAT32, 0, skip);
    info.slab_slices = slab;
    info.vols_per_task = vpt;
    dmri_graph_params_t p;
    dmri_info_graph_params(&info, save_den, &p);
    CHECK_EQ(p.median_slabs, 1);
    dmri_graph_t g;
    dmri_err_t err = {0};
    CHECK_EQ(dmri_graph_build(&g, &p, &err), 0);
    scan_t sc;
    scan_layout(&g, &sc);
    /* Which task makes each key. */
    keyset_t *made = calloc(1, sizeof *made);
    int maker[4096];
    for (int i = 0; i < g.ntasks; i++) {
        dmri_keyref_t o;
        int n = dmri_task_output(&g, &g.tasks[i], &o);
        CHECK_EQ(n, g.tasks[i].kind == DMRI_TASK_SAVE ? 0 : 1);
        if (n == 1) {
            CHECK(dmri_chunk_size(&info, &g, &o) > 0);
            for (int k = 0; k < made->n; k++)
                CHECK(ref_cmp(&made->v[k], &o) != 0);
            maker[made->n] = i;
            made->v[made->n++] = o;
        }
    }
    keyset_t *want = calloc(1, sizeof *want);
    dmri_keyref_t got[4096];
    for (int i = 0; i < g.ntasks; i++) {
        const dmri_task_t *t = &g.tasks[i];
        int n = dmri_task_inputs(&info, &g, t, got, 4096);
        CHECK_EQ(n, dmri_task_inputs(&info, &g, t, NULL, 0));
        if (n < 1) {
            failures++;
            continue;
        }
        if (n > 1)
            CHECK_EQ(dmri_task_inputs(&info, &g, t, got, n - 1), DMRI_ERANGE);
        CHECK_EQ(got[0].kind, DMRI_KEY_INFO);
        expected_inputs(&info, &g, &sc, t, want);
        qsort(got, (size_t)n, sizeof got[0], ref_cmp);
        qsort(want->v, (size_t)want->n, sizeof want->v[0], ref_cmp);
        int same = n == want->n;
        for (int k = 0; same && k < n; k++)
            same = ref_cmp(&got[k], &want->v[k]) == 0;
        if (!same) {
            fprintf(stderr, "task %d (%s v %d..%d z %d..%d): %d inputs, expected %d\n", i,
                    dmri_task_kind_name(t->kind), t->v0, t->v1, t->z0, t->z1, n, want->n);
            failures++;
        }
        /* Every input is raw/info or made by a task this one waits for. */
        for (int k = 0; k < n; k++) {
            CHECK(dmri_chunk_size(&info, &g, &got[k]) > 0);
            if (got[k].kind == DMRI_KEY_INFO || got[k].kind == DMRI_KEY_RAW)
                continue;
            int found = -1;
            for (int m = 0; m < made->n; m++)
                if (ref_cmp(&made->v[m], &got[k]) == 0)
                    found = maker[m];
            /* SAVE mask lists the sigma chunks for summary.json; graph.c
             * does not make it wait for SIGMA (with skip_denoise nothing
             * does), so the scheduler must wait for a SAVE's inputs. */
            int exempt = t->kind == DMRI_TASK_SAVE && got[k].kind == DMRI_KEY_SIGMA;
            if (found < 0 || (!exempt && !depends_on(&g, i, found))) {
                fprintf(stderr, "task %d: input kind %d g %d s %d not made by a dependency\n",
                        i, got[k].kind, got[k].g, got[k].s);
                failures++;
            }
        }
    }
    /* A task whose ranges are not the graph's has no inputs. */
    dmri_task_t odd = {.kind = DMRI_TASK_NLMEANS, .v0 = 1, .v1 = 2, .z0 = 0, .z1 = 1,
                       .output = -1};
    if (!skip)
        CHECK(dmri_task_inputs(&info, &g, &odd, got, 4096) < 0);
    odd = (dmri_task_t){.kind = DMRI_TASK_DTI, .z0 = 1, .z1 = nz, .output = -1};
    CHECK(dmri_task_inputs(&info, &g, &odd, got, 4096) < 0);
    odd = (dmri_task_t){.kind = DMRI_TASK_SIGMA, .v0 = 0, .v1 = nv + 1, .z1 = nz, .output = -1};
    CHECK(dmri_task_inputs(&info, &g, &odd, got, 4096) < 0);
    odd = (dmri_task_t){.kind = DMRI_TASK_SAVE, .z1 = nz, .output = 99};
    CHECK(dmri_task_inputs(&info, &g, &odd, got, 4096) < 0);
    CHECK(dmri_task_output(&g, &odd, got) == 0);
    free(made);
    free(want);
    dmri_graph_close(&g);
    dmri_info_close(&info);
}

/* ------------------------------------------------------------ chunk sizes */

static void check_sizes(int datatype, int scaled, size_t ssz, size_t esz) {
    dmri_info_t info;
    make_info(&info, 21, 19, 17, 15, datatype, scaled, 0);
    dmri_graph_params_t p;
    dmri_info_graph_params(&info, 1, &p);
    dmri_graph_t g;
    CHECK_EQ(dmri_graph_build(&g, &p, NULL), 0);
    size_t nvox = 21 * 19 * 17, raw = 0, den = 0, maps = 0, sigma = 0;
    int ngroups = 5, nslabs = 5; /* 15 volumes by 3, 17 slices by 4 */
    CHECK_EQ(g.nslabs, nslabs);
    for (int a = 0; a < ngroups; a++) {
        for (int s = 0; s < nslabs; s++) {
            raw += dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_RAW, a, s});
            den += dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_DEN, a, s});
        }
        sigma += dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_SIGMA, a, -1});
    }
    for (int s = 0; s < nslabs; s++)
        maps += dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MAPS, -1, s});
    CHECK_EQ(raw, nvox * 15 * ssz);
    CHECK_EQ(den, raw);
    CHECK_EQ(sigma, 15 * 4);
    CHECK_EQ(maps, nvox * 16 * 4);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_RAW, 4, 4}),
             21 * 19 * 1 * 3 * ssz); /* last slab: slice 16 only */
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MEANB0, -1, -1}), nvox * esz);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MEDIAN1, -1, 0}), nvox * esz);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MEDIAN2, -1, 0}), nvox * esz);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MASK, -1, -1}), nvox + 8);
    uint8_t *blob;
    size_t len;
    CHECK_EQ(dmri_info_encode(&info, &blob, &len), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_INFO, -1, -1}), len);
    dmri_free(blob);
    /* Out of range. */
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_RAW, 5, 0}), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_RAW, 0, 5}), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_SIGMA, 5, -1}), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MAPS, -1, 5}), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MEDIAN1, -1, 1}), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_RAW, -1, 0}), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g, &(dmri_keyref_t){DMRI_KEY_MASK, 0, -1}), 0);
    /* A graph of another geometry does not match the info. */
    dmri_graph_t g2;
    p.nx = 20;
    CHECK_EQ(dmri_graph_build(&g2, &p, NULL), 0);
    CHECK_EQ(dmri_chunk_size(&info, &g2, &(dmri_keyref_t){DMRI_KEY_MASK, -1, -1}), 0);
    CHECK(dmri_task_inputs(&info, &g2, &g2.tasks[0], NULL, 0) < 0);
    dmri_graph_close(&g2);
    dmri_graph_close(&g);
    dmri_info_close(&info);
}

int main(void) {
    test_keys();
    test_info();
    /* nx, ny, nz, nv, slab, volumes per task, skip denoise, save denoised */
    check_graph_inputs(8, 7, 17, 15, 4, 3, 0, 1);
    check_graph_inputs(8, 7, 17, 15, 4, 3, 1, 0);
    check_graph_inputs(8, 7, 17, 15, 0, 1, 0, 1);
    check_graph_inputs(8, 7, 30, 16, 3, 5, 0, 0);   /* halo spans two slabs each way */
    check_graph_inputs(8, 7, 9, 7, 1, 7, 0, 1);     /* one-slice slabs, one group */
    check_graph_inputs(8, 7, 12, 11, 12, 4, 0, 1);  /* one slab */
    check_graph_inputs(8, 7, 6, 3, 5, 2, 0, 0);
    check_sizes(DT_FLOAT32, 0, 4, 4);
    check_sizes(DT_INT16, 0, 4, 8);
    check_sizes(DT_INT16, 1, 8, 8);
    check_sizes(DT_FLOAT64, 0, 8, 8);
    check_sizes(DT_INT32, 0, 8, 8);
    if (failures) {
        fprintf(stderr, "test_chunks: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_chunks: all passed\n");
    return 0;
}
