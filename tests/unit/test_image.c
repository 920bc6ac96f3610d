/* Unit tests of common/image: NIfTI round trips of every datatype, 3-D to
 * 5-D writes, scaling as nibabel applies it, big-endian and NIfTI-2 input,
 * and every error path (missing, garbage, truncated or corrupt gzip,
 * unsupported datatype, bad dims, unwritable folder, failing write); gzip
 * members, header fields, trailing bytes and damage anywhere in the stream,
 * through ISA-L and through the zlib fallback. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <nifti2_io.h>

#include "dmri_alloc.h"
#include "image.h"

static int failures = 0;

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            failures++;                                                         \
        }                                                                       \
    } while (0)

#define CHECK_INT(a, b)                                                              \
    do {                                                                             \
        long long va_ = (long long)(a), vb_ = (long long)(b);                        \
        if (va_ != vb_) {                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                               \
            failures++;                                                              \
        }                                                                            \
    } while (0)

#define CHECK_DBL(a, b)                                                                  \
    do {                                                                                 \
        double va_ = (a), vb_ = (b);                                                     \
        if (memcmp(&va_, &vb_, sizeof va_) != 0) {                                       \
            fprintf(stderr, "%s:%d: %s == %s failed: %.17g vs %.17g\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                   \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

#define CHECK_HAS(hay, needle)                                                          \
    do {                                                                                \
        if (!strstr((hay), (needle))) {                                                 \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                    (hay), (needle));                                                   \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static char tmpdir[256];

static void path_in(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Number of leftover temporary files (".tmp-*") in `dir`. */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, ".tmp-", 5) == 0)
            n++;
    closedir(d);
    return n;
}

static void make_geom(dmri_image_t *g) {
    memset(g, 0, sizeof *g);
    g->ndim = 4;
    g->nv = 2;
    g->pixdim[0] = 1.5;
    g->pixdim[1] = 2.0;
    g->pixdim[2] = 2.5;
    g->pixdim[3] = 0.75;
    g->qform_code = 1;
    g->sform_code = 2;
    double q[6] = {0.125, -0.25, 0.375, 10.5, -20.25, 30.0};
    memcpy(g->quatern, q, sizeof q);
    g->qfac = -1.0;
    double s[3][4] = {{-1.5, 0.25, 0, 90.5}, {0.125, 2.0, -0.5, -126.75}, {0, 0.5, 2.5, -72}};
    memcpy(g->srow, s, sizeof s);
    g->xyz_units = NIFTI_UNITS_MM;
    g->time_units = NIFTI_UNITS_SEC;
}

static void check_geom(const dmri_image_t *a, const dmri_image_t *b, int with_tr) {
    for (int i = 0; i < (with_tr ? 4 : 3); i++)
        CHECK_DBL(a->pixdim[i], b->pixdim[i]);
    CHECK_INT(a->qform_code, b->qform_code);
    CHECK_INT(a->sform_code, b->sform_code);
    for (int i = 0; i < 6; i++)
        CHECK_DBL(a->quatern[i], b->quatern[i]);
    CHECK_DBL(a->qfac, b->qfac);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            CHECK_DBL(a->srow[r][c], b->srow[r][c]);
    CHECK_INT(a->xyz_units, b->xyz_units);
    CHECK_INT(a->time_units, b->time_units);
}

/* Value i of a typed buffer, as double. */
static double typed_get(const void *buf, int dt, size_t i) {
    switch (dt) {
    case DT_UINT8: return ((const uint8_t *)buf)[i];
    case DT_INT8: return ((const int8_t *)buf)[i];
    case DT_INT16: return ((const int16_t *)buf)[i];
    case DT_UINT16: return ((const uint16_t *)buf)[i];
    case DT_INT32: return ((const int32_t *)buf)[i];
    case DT_UINT32: return ((const uint32_t *)buf)[i];
    case DT_FLOAT32: return ((const float *)buf)[i];
    case DT_FLOAT64: return ((const double *)buf)[i];
    default: return NAN;
    }
}

/* Fill with a pattern that reaches the type's extremes. */
static void typed_fill(void *buf, int dt, size_t n) {
    for (size_t i = 0; i < n; i++) {
        long long k = (long long)(i * 2654435761u % 1000003u);
        switch (dt) {
        case DT_UINT8: ((uint8_t *)buf)[i] = (uint8_t)(i == 0 ? 255 : k % 256); break;
        case DT_INT8: ((int8_t *)buf)[i] = (int8_t)(i == 0 ? -128 : i == 1 ? 127 : k % 256 - 128); break;
        case DT_INT16: ((int16_t *)buf)[i] = (int16_t)(i == 0 ? -32768 : i == 1 ? 32767 : k % 65536 - 32768); break;
        case DT_UINT16: ((uint16_t *)buf)[i] = (uint16_t)(i == 0 ? 65535 : k % 65536); break;
        case DT_INT32: ((int32_t *)buf)[i] = i == 0 ? INT32_MIN : i == 1 ? INT32_MAX : (int32_t)(k * 2147 - 1073741824LL); break;
        case DT_UINT32: ((uint32_t *)buf)[i] = i == 0 ? UINT32_MAX : (uint32_t)(k * 4294u); break;
        case DT_FLOAT32: {
            float v = (float)((double)k / 7.0 - 70000.0);
            if (i == 0) v = NAN;
            if (i == 1) v = -INFINITY;
            if (i == 2) v = -0.0f;
            if (i == 3) v = 1e-45f; /* subnormal */
            ((float *)buf)[i] = v;
            break;
        }
        case DT_FLOAT64: {
            double v = (double)k / 3.0 - 1e5;
            if (i == 0) v = NAN;
            if (i == 1) v = INFINITY;
            if (i == 2) v = -0.0;
            if (i == 3) v = 4.9e-324;
            ((double *)buf)[i] = v;
            break;
        }
        default: break;
        }
    }
}

static double stored_get(const dmri_image_t *img, size_t i) {
    return img->store == DMRI_STORE_F32 ? (double)((const float *)img->data)[i]
                                        : ((const double *)img->data)[i];
}

static const int all_types[] = {DT_UINT8, DT_INT8,   DT_INT16,  DT_UINT16,
                                DT_INT32, DT_UINT32, DT_FLOAT32, DT_FLOAT64};

static void test_roundtrip_all_types(void) {
    dmri_image_t geom;
    make_geom(&geom);
    const int dims[4] = {5, 4, 3, 2};
    const size_t n = 5 * 4 * 3 * 2;
    for (size_t t = 0; t < sizeof all_types / sizeof *all_types; t++) {
        int dt = all_types[t];
        size_t bpv = dmri_image_datatype_size(dt);
        CHECK(bpv > 0);
        void *buf = dmri_malloc(n * bpv);
        typed_fill(buf, dt, n);
        for (int gz = 0; gz < 2; gz++) {
            char p[512], name[64];
            snprintf(name, sizeof name, "rt_%d.nii%s", dt, gz ? ".gz" : "");
            path_in(p, sizeof p, name);
            dmri_err_t err = {0};
            int rc = dmri_image_write(p, &geom, 4, dims, dt, buf, &err);
            CHECK_INT(rc, 0);
            if (rc != 0) {
                fprintf(stderr, "  %s\n", err.msg);
                continue;
            }
            dmri_image_t img;
            rc = dmri_image_read(p, &img, &err);
            CHECK_INT(rc, 0);
            if (rc != 0) {
                fprintf(stderr, "  %s\n", err.msg);
                continue;
            }
            CHECK_INT(img.ndim, 4);
            CHECK_INT(img.nx, 5);
            CHECK_INT(img.ny, 4);
            CHECK_INT(img.nz, 3);
            CHECK_INT(img.nv, 2);
            CHECK_INT(img.datatype, dt);
            CHECK_INT(img.scaled, 0);
            int want_f32 = dt == DT_FLOAT32 || bpv <= 2;
            CHECK_INT(img.store, want_f32 ? DMRI_STORE_F32 : DMRI_STORE_F64);
            CHECK_INT(dmri_image_is_f32_semantics(&img), dt == DT_FLOAT32);
            CHECK_INT(dmri_image_is_integer(&img), dt != DT_FLOAT32 && dt != DT_FLOAT64);
            CHECK_INT(dmri_image_nvox(&img), 60);
            int bad = 0;
            for (size_t i = 0; i < n && !bad; i++) {
                double a = typed_get(buf, dt, i), b = stored_get(&img, i);
                if (memcmp(&a, &b, sizeof a) != 0 && !(isnan(a) && isnan(b))) {
                    fprintf(stderr, "  dt %d value %zu: wrote %.17g read %.17g\n", dt, i, a, b);
                    bad = 1;
                }
            }
            CHECK_INT(bad, 0);
            check_geom(&geom, &img, 1);
            dmri_image_close(&img);
            dmri_image_close(&img); /* safe twice */
            CHECK(img.data == NULL);
        }
        dmri_free(buf);
    }
    CHECK_INT(count_tmp_files(tmpdir), 0);
}

static void test_3d_5d(void) {
    dmri_image_t geom;
    make_geom(&geom);
    dmri_err_t err = {0};
    char p[512];
    float v3[4 * 3 * 2];
    for (int i = 0; i < 24; i++)
        v3[i] = (float)i * 0.5f - 3.0f;
    path_in(p, sizeof p, "three.nii.gz");
    CHECK_INT(dmri_image_write(p, &geom, 3, (const int[]){4, 3, 2}, DT_FLOAT32, v3, &err), 0);
    dmri_image_t img;
    CHECK_INT(dmri_image_read(p, &img, &err), 0);
    CHECK_INT(img.ndim, 3);
    CHECK_INT(img.nv, 1);
    CHECK_INT(img.nz, 2);
    if (img.data)
        CHECK(memcmp(img.data, v3, sizeof v3) == 0);
    check_geom(&geom, &img, 0);
    dmri_image_close(&img);

    /* 5-D (evecs-like x,y,z,3,3): our reader takes only 3-D/4-D, so check
     * the file with niftilib itself. */
    const int d5[5] = {4, 3, 2, 3, 3};
    const size_t n5 = 4 * 3 * 2 * 3 * 3;
    double *v5 = dmri_malloc(n5 * sizeof *v5);
    for (size_t i = 0; i < n5; i++)
        v5[i] = (double)i / 9.0 - 2.0;
    path_in(p, sizeof p, "five.nii.gz");
    CHECK_INT(dmri_image_write(p, &geom, 5, d5, DT_FLOAT64, v5, &err), 0);
    nifti_image *nim = nifti_image_read(p, 1);
    CHECK(nim != NULL);
    if (nim) {
        CHECK_INT(nim->dim[0], 5);
        for (int i = 0; i < 5; i++)
            CHECK_INT(nim->dim[i + 1], d5[i]);
        CHECK_INT(nim->datatype, DT_FLOAT64);
        CHECK_INT(nim->nifti_type, NIFTI_FTYPE_NIFTI1_1);
        CHECK(nim->data && memcmp(nim->data, v5, n5 * sizeof *v5) == 0);
        CHECK_INT(nim->sform_code, 2);
        CHECK_DBL(nim->sto_xyz.m[1][3], -126.75);
        nifti_image_free(nim);
    }
    int rc = dmri_image_read(p, &img, &err);
    CHECK_INT(rc, DMRI_EUNSUP);
    CHECK_HAS(err.msg, p);
    CHECK_HAS(err.msg, "only 3-D or 4-D");
    CHECK(img.data == NULL);
    dmri_free(v5);

    /* 5-D whose extra axis is 1 reads as 4-D. */
    path_in(p, sizeof p, "five_one.nii");
    CHECK_INT(dmri_image_write(p, &geom, 5, (const int[]){4, 3, 1, 2, 1}, DT_FLOAT32, v3, &err),
              0);
    CHECK_INT(dmri_image_read(p, &img, &err), 0);
    CHECK_INT(img.ndim, 4);
    CHECK_INT(img.nv, 2);
    CHECK_INT(img.nz, 1);
    dmri_image_close(&img);
}

/* Overwrite `len` bytes at `off` of an uncompressed file. */
static void patch_file(const char *p, long off, const void *bytes, size_t len) {
    FILE *f = fopen(p, "r+b");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fseek(f, off, SEEK_SET) == 0);
    CHECK(fwrite(bytes, 1, len, f) == len);
    fclose(f);
}

static void set_scl(const char *p, float slope, float inter) {
    patch_file(p, 112, &slope, 4);
    patch_file(p, 116, &inter, 4);
}

static void test_scaling(void) {
    dmri_image_t geom, img;
    make_geom(&geom);
    dmri_err_t err = {0};
    char p[512];
    int16_t v[8] = {-32768, -3, -1, 0, 1, 2, 1000, 32767};
    path_in(p, sizeof p, "scaled.nii");

    struct {
        float slope, inter;
        int scaled, fails;
    } cases[] = {
        {2.5f, -3.25f, 1, 0}, {0.0f, 7.0f, 0, 0},  {NAN, 7.0f, 0, 0},    {INFINITY, 1.0f, 0, 0},
        {1.0f, 0.0f, 0, 0},   {1.0f, 2.0f, 1, 0},  {0.3f, 0.0f, 1, 0},   {2.0f, NAN, 0, 1},
        {1.0f, -INFINITY, 0, 1}, {1.0f, -0.0f, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        CHECK_INT(dmri_image_write(p, &geom, 4, (const int[]){2, 2, 1, 2}, DT_INT16, v, &err),
                  0);
        set_scl(p, cases[c].slope, cases[c].inter);
        int rc = dmri_image_read(p, &img, &err);
        if (cases[c].fails) {
            CHECK_INT(rc, DMRI_EFORMAT);
            CHECK_HAS(err.msg, "scl_inter");
            CHECK_HAS(err.msg, p);
            continue;
        }
        CHECK_INT(rc, 0);
        if (rc != 0)
            continue;
        CHECK_INT(img.scaled, cases[c].scaled);
        CHECK_INT(img.datatype, DT_INT16);
        CHECK_INT(img.store, cases[c].scaled ? DMRI_STORE_F64 : DMRI_STORE_F32);
        CHECK_INT(dmri_image_is_integer(&img), !cases[c].scaled);
        for (int i = 0; i < 8; i++) {
            double want = v[i];
            if (cases[c].scaled) {
                /* nibabel: multiply only if slope != 1, add only if inter != 0 */
                if ((double)cases[c].slope != 1.0)
                    want *= (double)cases[c].slope;
                if ((double)cases[c].inter != 0.0)
                    want += (double)cases[c].inter;
            }
            CHECK_DBL(stored_get(&img, (size_t)i), want);
        }
        dmri_image_close(&img);
    }

    /* float32 with a slope becomes float64; -0.0 * 0.5 stays -0.0 because
     * nibabel skips the + 0 intercept. */
    float f[4] = {-0.0f, 1.5f, -2.25f, 3.0e38f};
    path_in(p, sizeof p, "scaled_f32.nii");
    CHECK_INT(dmri_image_write(p, &geom, 3, (const int[]){2, 2, 1}, DT_FLOAT32, f, &err), 0);
    set_scl(p, 0.5f, 0.0f);
    CHECK_INT(dmri_image_read(p, &img, &err), 0);
    CHECK_INT(img.scaled, 1);
    CHECK_INT(img.store, DMRI_STORE_F64);
    CHECK_INT(dmri_image_is_f32_semantics(&img), 0);
    if (img.data) {
        CHECK_DBL(stored_get(&img, 0), -0.0);
        CHECK_DBL(stored_get(&img, 3), (double)3.0e38f * 0.5);
    }
    dmri_image_close(&img);
}

/* Byte-swap an uncompressed NIfTI-1 file we wrote (352-byte offset). */
static void make_big_endian(const char *src, const char *dst, size_t bpv) {
    FILE *f = fopen(src, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = dmri_malloc((size_t)len);
    CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    nifti_1_header h;
    memcpy(&h, buf, sizeof h);
    nifti_swap_as_nifti1(&h);
    memcpy(buf, &h, sizeof h);
    nifti_swap_Nbytes((int64_t)(((size_t)len - 352) / bpv), (int)bpv, buf + 352);
    f = fopen(dst, "wb");
    CHECK(f && fwrite(buf, 1, (size_t)len, f) == (size_t)len);
    if (f)
        fclose(f);
    dmri_free(buf);
}

static void test_big_endian(void) {
    dmri_image_t geom, img;
    make_geom(&geom);
    dmri_err_t err = {0};
    const int types[] = {DT_INT16, DT_UINT16, DT_INT32, DT_FLOAT32, DT_FLOAT64};
    const size_t n = 4 * 3 * 2 * 2;
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        int dt = types[t];
        size_t bpv = dmri_image_datatype_size(dt);
        void *buf = dmri_malloc(n * bpv);
        typed_fill(buf, dt, n);
        char le[512], be[512];
        path_in(le, sizeof le, "le.nii");
        path_in(be, sizeof be, "be.nii");
        CHECK_INT(dmri_image_write(le, &geom, 4, (const int[]){4, 3, 2, 2}, dt, buf, &err), 0);
        make_big_endian(le, be, bpv);
        int rc = dmri_image_read(be, &img, &err);
        CHECK_INT(rc, 0);
        if (rc == 0) {
            CHECK_INT(img.datatype, dt);
            CHECK_INT(img.nv, 2);
            int bad = 0;
            for (size_t i = 0; i < n; i++) {
                double a = typed_get(buf, dt, i), b = stored_get(&img, i);
                if (memcmp(&a, &b, sizeof a) != 0 && !(isnan(a) && isnan(b)))
                    bad++;
            }
            CHECK_INT(bad, 0);
            check_geom(&geom, &img, 1);
            dmri_image_close(&img);
        }
        dmri_free(buf);
    }
}

static void test_nifti2(void) {
    /* A NIfTI-2 file built with niftilib's header conversion, written by hand. */
    int64_t d[8] = {4, 3, 2, 2, 3, 1, 1, 1};
    nifti_image *nim = nifti_make_new_nim(d, DT_UINT16, 0);
    CHECK(nim != NULL);
    if (!nim)
        return;
    nim->sform_code = 1;
    nim->sto_xyz.m[0][0] = 0.1; /* not a float: NIfTI-2 keeps doubles */
    nim->sto_xyz.m[1][1] = 2;
    nim->sto_xyz.m[2][2] = 3;
    nim->sto_xyz.m[0][3] = -10.3;
    nifti_2_header h;
    CHECK_INT(nifti_convert_nim2n2hdr(nim, &h), 0);
    nifti_image_free(nim);
    h.vox_offset = 544;
    memcpy(h.magic, "n+2\0\r\n\032\n", 8);
    uint16_t v[36];
    for (int i = 0; i < 36; i++)
        v[i] = (uint16_t)(i * 1800);
    char p[512];
    path_in(p, sizeof p, "n2.nii.gz");
    gzFile gz = gzopen(p, "wb");
    CHECK(gz != NULL);
    char ext[4] = {0};
    CHECK_INT(gzwrite(gz, &h, sizeof h), (int)sizeof h);
    CHECK_INT(gzwrite(gz, ext, 4), 4);
    CHECK_INT(gzwrite(gz, v, sizeof v), (int)sizeof v);
    CHECK_INT(gzclose(gz), Z_OK);
    dmri_image_t img;
    dmri_err_t err = {0};
    int rc = dmri_image_read(p, &img, &err);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_INT(img.datatype, DT_UINT16);
    CHECK_INT(img.store, DMRI_STORE_F32);
    CHECK_INT(img.nv, 3);
    CHECK_DBL(img.srow[0][0], 0.1);
    CHECK_DBL(img.srow[0][3], -10.3);
    for (int i = 0; i < 36; i++)
        CHECK_DBL(stored_get(&img, (size_t)i), (double)v[i]);
    dmri_image_close(&img);
}

static void write_bytes(const char *p, const void *b, size_t n) {
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n);
    if (f)
        fclose(f);
}

static unsigned char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) {
        *n = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = dmri_malloc(*n ? *n : 1);
    if (fread(b, 1, *n, f) != *n)
        *n = 0;
    fclose(f);
    return b;
}

static void expect_read_error(const char *p, int code, const char *needle) {
    dmri_image_t img;
    dmri_err_t err = {0};
    int rc = dmri_image_read(p, &img, &err);
    if (getenv("DMRI_TEST_VERBOSE"))
        printf("expected error: %s\n", err.msg);
    CHECK_INT(rc, code);
    CHECK_HAS(err.msg, p);
    CHECK_HAS(err.msg, needle);
    CHECK(img.data == NULL);
}

static void test_read_errors(void) {
    dmri_image_t geom;
    make_geom(&geom);
    dmri_err_t err = {0};
    char p[512], q[512];

    path_in(p, sizeof p, "missing.nii.gz");
    expect_read_error(p, DMRI_ENOENT, "no such file");
    path_in(p, sizeof p, "nofolder/x.nii");
    expect_read_error(p, DMRI_ENOENT, "no such file");
    expect_read_error(tmpdir, DMRI_EFORMAT, "folder");

    path_in(p, sizeof p, "garbage.nii");
    char text[2000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)("lorem ipsum dolor sit amet\n"[i % 27]);
    write_bytes(p, text, sizeof text);
    expect_read_error(p, DMRI_EFORMAT, "not a NIfTI file");
    path_in(p, sizeof p, "empty.nii");
    write_bytes(p, "", 0);
    expect_read_error(p, DMRI_EFORMAT, "not a NIfTI file");
    path_in(p, sizeof p, "garbage.nii.gz");
    gzFile gz = gzopen(p, "wb");
    gzwrite(gz, text, sizeof text);
    gzclose(gz);
    expect_read_error(p, DMRI_EFORMAT, "not a NIfTI file");

    /* A valid .nii.gz of pseudo-random floats (poorly compressible), then
     * damaged copies of it. */
    const int dims[4] = {20, 20, 20, 4};
    const size_t n = 20 * 20 * 20 * 4;
    float *v = dmri_malloc(n * sizeof *v);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = (float)(s >> 8) / 65536.0f;
    }
    char good[512];
    path_in(good, sizeof good, "good.nii.gz");
    CHECK_INT(dmri_image_write(good, &geom, 4, dims, DT_FLOAT32, v, &err), 0);
    size_t len;
    unsigned char *blob = slurp(good, &len);
    CHECK(len > 1000);

    path_in(p, sizeof p, "half.nii.gz");
    write_bytes(p, blob, len / 2);
    expect_read_error(p, DMRI_EFORMAT, "truncated or corrupt gzip stream (read ");
    path_in(p, sizeof p, "no_trailer.nii.gz");
    write_bytes(p, blob, len - 5);
    expect_read_error(p, DMRI_EFORMAT, "truncated or corrupt gzip stream");
    path_in(p, sizeof p, "tiny.nii.gz");
    write_bytes(p, blob, 40);
    expect_read_error(p, DMRI_EFORMAT, "truncated or corrupt gzip stream");
    path_in(p, sizeof p, "flipped.nii.gz");
    blob[len * 3 / 4] ^= 0x5a;
    write_bytes(p, blob, len);
    expect_read_error(p, DMRI_EFORMAT, "corrupt gzip stream");
    blob[len * 3 / 4] ^= 0x5a;
    blob[len - 6] ^= 0x01; /* inside the CRC-32 of the trailer */
    path_in(p, sizeof p, "bad_crc.nii.gz");
    write_bytes(p, blob, len);
    expect_read_error(p, DMRI_EFORMAT, "corrupt gzip stream");
    path_in(p, sizeof p, "compressed_named.nii");
    blob[len - 6] ^= 0x01;
    write_bytes(p, blob, len);
    expect_read_error(p, DMRI_EFORMAT, "gzip-compressed");
    dmri_free(blob);

    /* Uncompressed: cut short, bad datatype, bad dims, no magic. */
    path_in(q, sizeof q, "plain.nii");
    CHECK_INT(dmri_image_write(q, &geom, 4, dims, DT_FLOAT32, v, &err), 0);
    blob = slurp(q, &len);
    path_in(p, sizeof p, "short.nii");
    write_bytes(p, blob, len - 100);
    expect_read_error(p, DMRI_EFORMAT, "truncated (read ");
    path_in(p, sizeof p, "complex.nii");
    write_bytes(p, blob, len);
    int16_t dt = DT_COMPLEX64, bitpix = 64;
    patch_file(p, 70, &dt, 2);
    patch_file(p, 72, &bitpix, 2);
    expect_read_error(p, DMRI_EUNSUP, "unsupported datatype");
    path_in(p, sizeof p, "rgb.nii");
    write_bytes(p, blob, len);
    dt = DT_RGB24;
    bitpix = 24;
    patch_file(p, 70, &dt, 2);
    patch_file(p, 72, &bitpix, 2);
    expect_read_error(p, DMRI_EUNSUP, "unsupported datatype");
    path_in(p, sizeof p, "zero_dim.nii");
    write_bytes(p, blob, len);
    int16_t zero = 0;
    patch_file(p, 40 + 2 * 2, &zero, 2);
    expect_read_error(p, DMRI_EFORMAT, "dimension 2 has size 0");
    path_in(p, sizeof p, "neg_dim.nii");
    write_bytes(p, blob, len);
    int16_t neg = -4;
    patch_file(p, 40 + 2 * 3, &neg, 2);
    expect_read_error(p, DMRI_EFORMAT, "dimension 3 has size -4");
    /* A header claiming far more data than the file holds fails before
     * anything that size is allocated. */
    path_in(p, sizeof p, "huge_dims.nii");
    write_bytes(p, blob, len);
    int16_t huge[4] = {32767, 32767, 32767, 32767};
    patch_file(p, 42, huge, sizeof huge);
    expect_read_error(p, DMRI_EFORMAT, "truncated (read ");
    {
        size_t hl;
        unsigned char *hb = slurp(p, &hl);
        path_in(p, sizeof p, "huge_dims.nii.gz");
        gzFile hz = gzopen(p, "wb");
        CHECK_INT(gzwrite(hz, hb, (unsigned)hl), (int)hl);
        CHECK_INT(gzclose(hz), Z_OK);
        dmri_free(hb);
        expect_read_error(p, DMRI_EFORMAT, "more than a");
    }
    /* The reader's cap (the only bound for a stream) refuses a valid image
     * over it on every path, and the default comes back with 0. */
    dmri_image_set_max_bytes(100000); /* plain.nii holds 128000 bytes of float32 */
    expect_read_error(q, DMRI_ERANGE, "more than the reader's limit");
    expect_read_error(good, DMRI_ERANGE, "more than the reader's limit");
    {
        int sfd = open(good, O_RDONLY);
        dmri_image_t simg;
        CHECK_INT(dmri_image_read_fd("s.nii.gz", sfd, &simg, &err), DMRI_ERANGE);
        CHECK_HAS(err.msg, "more than the reader's limit");
        close(sfd);
    }
    dmri_image_set_max_bytes(0);
    {
        dmri_image_t ok;
        CHECK_INT(dmri_image_read(q, &ok, &err), 0);
        dmri_image_close(&ok);
    }
    path_in(p, sizeof p, "analyze.nii");
    write_bytes(p, blob, len);
    patch_file(p, 344, "\0\0\0\0", 4);
    expect_read_error(p, DMRI_EFORMAT, "not a NIfTI file");
    path_in(p, sizeof p, "two_d.nii");
    write_bytes(p, blob, len);
    int16_t two = 2;
    patch_file(p, 40, &two, 2);
    expect_read_error(p, DMRI_EUNSUP, "2-D image");
    dmri_free(blob);
    dmri_free(v);
}

/* ------------------------------------------------------- gzip streams
 * The gzip reading of image.c (ISA-L when built with it, zlib otherwise or
 * with DMRI_INFLATE=zlib; main() runs these under both): members, header
 * fields, trailing bytes, truncation and corruption anywhere. The oracle is
 * the same image read from a plain .nii, which never inflates. */

/* One gzip member of `raw` (zlib's own gzip wrapper) appended at out+*n. */
static void gz_append(unsigned char *out, size_t cap, size_t *n, const void *raw, size_t len,
                      int level) {
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK_INT(deflateInit2(&z, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)(uintptr_t)raw;
    z.avail_in = (uInt)len;
    z.next_out = out + *n;
    z.avail_out = (uInt)(cap - *n);
    CHECK_INT(deflate(&z, Z_FINISH), Z_STREAM_END);
    *n += z.total_out;
    deflateEnd(&z);
}

/* A member whose header carries FEXTRA, FNAME, FCOMMENT and FHCRC, which
 * both inflaters must parse and check. */
static void gz_append_fancy(unsigned char *out, size_t cap, size_t *n, const void *raw,
                            size_t len) {
    static const unsigned char hdr[] = {
        0x1f, 0x8b, 8, 0x02 | 0x04 | 0x08 | 0x10, 1, 2, 3, 4, 0, 3,
        5, 0, 'A', 'B', 1, 0, 'x',                       /* FEXTRA: 5 bytes */
        'd', 'a', 't', 'a', '.', 'n', 'i', 'i', 0,       /* FNAME */
        'a', ' ', 'c', 'o', 'm', 'm', 'e', 'n', 't', 0}; /* FCOMMENT */
    memcpy(out + *n, hdr, sizeof hdr);
    uLong hc = crc32(0L, hdr, sizeof hdr);
    size_t at = *n + sizeof hdr;
    out[at] = (unsigned char)(hc & 0xff);
    out[at + 1] = (unsigned char)((hc >> 8) & 0xff);
    at += 2;
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK_INT(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)(uintptr_t)raw;
    z.avail_in = (uInt)len;
    z.next_out = out + at;
    z.avail_out = (uInt)(cap - at);
    CHECK_INT(deflate(&z, Z_FINISH), Z_STREAM_END);
    at += z.total_out;
    deflateEnd(&z);
    uLong c = crc32(0L, raw, (uInt)len);
    for (int i = 0; i < 4; i++)
        out[at++] = (unsigned char)((c >> (8 * i)) & 0xff);
    for (int i = 0; i < 4; i++)
        out[at++] = (unsigned char)(((uint32_t)len >> (8 * i)) & 0xff);
    *n = at;
}

/* Read `p` and require the same values (bit for bit) as `want`. */
static void expect_same_image(const char *p, const dmri_image_t *want, const char *what) {
    dmri_image_t img;
    dmri_err_t err = {0};
    int rc = dmri_image_read(p, &img, &err);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s: %s\n", what, err.msg);
        return;
    }
    size_t n = dmri_image_nvox(want) * (size_t)want->nv;
    size_t sz = want->store == DMRI_STORE_F32 ? 4 : 8;
    CHECK_INT(img.store, want->store);
    CHECK_INT(img.scaled, want->scaled);
    CHECK_INT(dmri_image_nvox(&img) * (size_t)img.nv, n);
    if (img.data && img.store == want->store && dmri_image_nvox(&img) * (size_t)img.nv == n &&
        memcmp(img.data, want->data, n * sz) != 0) {
        fprintf(stderr, "  %s: values differ from the plain file's\n", what);
        failures++;
    }
    dmri_image_close(&img);
}

static void test_gzip_streams(void) {
    dmri_image_t geom;
    make_geom(&geom);
    dmri_err_t err = {0};
    char plain[512], p[512];
    /* 2 volumes of 61x53x23: 148718 values, more than one conversion chunk. */
    const int dims[4] = {61, 53, 23, 2};
    const size_t n = 61 * 53 * 23 * 2;
    const int types[] = {DT_FLOAT32, DT_INT16};
    for (int t = 0; t < 2; t++) {
        int dt = types[t];
        size_t bpv = dmri_image_datatype_size(dt);
        void *v = dmri_malloc(n * bpv);
        typed_fill(v, dt, n);
        path_in(plain, sizeof plain, "members_src.nii");
        CHECK_INT(dmri_image_write(plain, &geom, 4, dims, dt, v, &err), 0);
        if (dt == DT_INT16)
            set_scl(plain, 0.5f, -7.0f); /* scaled: the f64 conversion path */
        dmri_image_t want;
        CHECK_INT(dmri_image_read(plain, &want, &err), 0);
        size_t rlen;
        unsigned char *raw = slurp(plain, &rlen);
        size_t cap = rlen * 2 + 4096, len = 0;
        unsigned char *gz = dmri_malloc(cap);

        /* Four members, cut inside the header and at odd data bytes. */
        size_t cut1 = 100, cut2 = 352 + 5001, cut3 = 352 + 12345;
        gz_append(gz, cap, &len, raw, cut1, 6);
        gz_append(gz, cap, &len, raw + cut1, cut2 - cut1, 1);
        size_t first_end = len;
        gz_append(gz, cap, &len, raw + cut2, cut3 - cut2, 0);
        gz_append(gz, cap, &len, raw + cut3, rlen - cut3, 9);
        path_in(p, sizeof p, "members.nii.gz");
        write_bytes(p, gz, len);
        expect_same_image(p, &want, "four members");

        /* Trailing zeros after the last member: ignored, as zlib's gzread does. */
        memset(gz + len, 0, 1000);
        path_in(p, sizeof p, "trailing_zeros.nii.gz");
        write_bytes(p, gz, len + 1000);
        expect_same_image(p, &want, "trailing zeros");
        /* One stray byte of the magic is still garbage, not a member. */
        gz[len] = 0x1f;
        path_in(p, sizeof p, "trailing_1f.nii.gz");
        write_bytes(p, gz, len + 1);
        expect_same_image(p, &want, "trailing 0x1f");
        /* Bytes that start like a member must be one. */
        static const unsigned char bad_member[] = {0x1f, 0x8b, 0, 0, 0, 0, 0, 0, 0, 3};
        memcpy(gz + len, bad_member, sizeof bad_member);
        path_in(p, sizeof p, "trailing_bad_member.nii.gz");
        write_bytes(p, gz, len + sizeof bad_member);
        expect_read_error(p, DMRI_EFORMAT, "corrupt gzip stream");
        /* A next member cut after its first 3 bytes. */
        path_in(p, sizeof p, "trailing_cut_member.nii.gz");
        write_bytes(p, gz, len + 3);
        expect_read_error(p, DMRI_EFORMAT, "gzip stream");
        /* Only the first two members: the stream ends cleanly, short of data. */
        path_in(p, sizeof p, "first_member_only.nii.gz");
        write_bytes(p, gz, first_end);
        expect_read_error(p, DMRI_EFORMAT, "truncated or corrupt gzip stream (read ");

        /* Header with every optional field. */
        len = 0;
        gz_append_fancy(gz, cap, &len, raw, rlen);
        path_in(p, sizeof p, "fancy_header.nii.gz");
        write_bytes(p, gz, len);
        expect_same_image(p, &want, "FEXTRA/FNAME/FCOMMENT/FHCRC header");
        gz[36] ^= 0x01; /* inside FCOMMENT: the header CRC-16 no longer matches */
        path_in(p, sizeof p, "fancy_header_bad_hcrc.nii.gz");
        write_bytes(p, gz, len);
        expect_read_error(p, DMRI_EFORMAT, "gzip");

        /* Stored blocks (level 0): a flipped data byte decodes without
         * complaint, so only the CRC-32 can catch it. */
        len = 0;
        gz_append(gz, cap, &len, raw, rlen, 0);
        gz[len / 2] ^= 0x20;
        path_in(p, sizeof p, "stored_flipped.nii.gz");
        write_bytes(p, gz, len);
        expect_read_error(p, DMRI_EFORMAT, "CRC-32");
        gz[len / 2] ^= 0x20;
        gz[len - 2] ^= 0x01; /* ISIZE, the length in the trailer */
        path_in(p, sizeof p, "stored_bad_isize.nii.gz");
        write_bytes(p, gz, len);
        expect_read_error(p, DMRI_EFORMAT, "length in the gzip trailer");
        gz[len - 2] ^= 0x01;
        path_in(p, sizeof p, "stored_ok.nii.gz");
        write_bytes(p, gz, len);
        expect_same_image(p, &want, "stored blocks");

        /* Cut anywhere: in the header, the data, the trailer. */
        len = 0;
        gz_append(gz, cap, &len, raw, rlen, 6);
        const size_t cuts[] = {1,       2,       9,       10,      11,      200,
                               len / 3, len / 2, len - 9, len - 8, len - 7, len - 5,
                               len - 4, len - 3, len - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
            path_in(p, sizeof p, "cut.nii.gz");
            write_bytes(p, gz, cuts[i]);
            dmri_image_t img;
            int rc = dmri_image_read(p, &img, &err);
            if (rc == 0) {
                fprintf(stderr, "  cut at %zu of %zu: read succeeded\n", cuts[i], len);
                failures++;
                dmri_image_close(&img);
                continue;
            }
            CHECK_INT(rc, DMRI_EFORMAT);
            CHECK_HAS(err.msg, p);
            /* Under 2 bytes zlib sees no gzip magic: "not a NIfTI file". */
            CHECK_HAS(err.msg, cuts[i] < 2 ? "not a NIfTI" : "gzip stream");
        }

        /* Single flipped bytes anywhere in the deflate data: the read fails
         * (or, if the flip is harmless, gives the same values). */
        uint32_t s = 777u + (uint32_t)t;
        for (int k = 0; k < 24; k++) {
            s = s * 1664525u + 1013904223u;
            size_t at = 10 + (size_t)(s >> 8) % (len - 10);
            unsigned char bit = (unsigned char)(1u << (s & 7));
            gz[at] ^= bit;
            path_in(p, sizeof p, "fuzz.nii.gz");
            write_bytes(p, gz, len);
            gz[at] ^= bit;
            dmri_image_t img;
            int rc = dmri_image_read(p, &img, &err);
            if (rc == 0) {
                size_t sz = want.store == DMRI_STORE_F32 ? 4 : 8;
                if (memcmp(img.data, want.data, n * sz) != 0) {
                    fprintf(stderr, "  flip at %zu: read succeeded with other values\n", at);
                    failures++;
                }
                dmri_image_close(&img);
                continue;
            }
            if (getenv("DMRI_TEST_VERBOSE"))
                printf("expected error (flip at %zu): %s\n", at, err.msg);
            CHECK_INT(rc, DMRI_EFORMAT);
            CHECK_HAS(err.msg, p);
            CHECK_HAS(err.msg, "gzip stream");
            CHECK(img.data == NULL);
        }

        /* Big-endian data, gzipped: swapped chunk by chunk. */
        path_in(p, sizeof p, "be_src.nii");
        CHECK_INT(dmri_image_write(p, &geom, 4, dims, dt, v, &err), 0);
        char be[512];
        path_in(be, sizeof be, "be_plain.nii");
        make_big_endian(p, be, bpv);
        dmri_image_t want_be;
        CHECK_INT(dmri_image_read(be, &want_be, &err), 0);
        dmri_free(raw);
        raw = slurp(be, &rlen);
        len = 0;
        gz_append(gz, cap, &len, raw, rlen, 6);
        path_in(p, sizeof p, "be.nii.gz");
        write_bytes(p, gz, len);
        expect_same_image(p, &want_be, "big-endian gzip");
        if (want_be.data && want.data && !want.scaled)
            CHECK(memcmp(want_be.data, want.data, n * 4) == 0);
        dmri_image_close(&want_be);

        dmri_image_close(&want);
        dmri_free(raw);
        dmri_free(gz);
        dmri_free(v);
    }
}

/* An image over 64 MB, where the reader prefaults its buffer from a helper
 * thread: good, cut short, and damaged at the end. */
static void test_gzip_large(void) {
    dmri_image_t geom;
    make_geom(&geom);
    dmri_err_t err = {0};
    const int dims[4] = {128, 128, 96, 12}; /* 18.9 M floats, 75.5 MB */
    const size_t n = (size_t)128 * 128 * 96 * 12;
    float *v = dmri_malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(i % 4099) * 0.25f - (float)(i / 1000003);
    char p[512];
    path_in(p, sizeof p, "large.nii.gz");
    CHECK_INT(dmri_image_write(p, &geom, 4, dims, DT_FLOAT32, v, &err), 0);
    dmri_image_t img;
    int rc = dmri_image_read(p, &img, &err);
    CHECK_INT(rc, 0);
    if (rc == 0) {
        CHECK_INT(img.nv, 12);
        CHECK(memcmp(img.data, v, n * sizeof *v) == 0);
        dmri_image_close(&img);
    } else {
        fprintf(stderr, "  %s\n", err.msg);
    }
    size_t len;
    unsigned char *blob = slurp(p, &len);
    char q[512];
    path_in(q, sizeof q, "large_cut.nii.gz");
    write_bytes(q, blob, len * 3 / 5);
    expect_read_error(q, DMRI_EFORMAT, "truncated or corrupt gzip stream (read ");
    blob[len - 7] ^= 0x10; /* CRC-32 */
    path_in(q, sizeof q, "large_bad_crc.nii.gz");
    write_bytes(q, blob, len);
    expect_read_error(q, DMRI_EFORMAT, "CRC-32");
    dmri_free(blob);
    dmri_free(v);
}

static void test_write_errors(void) {
    dmri_image_t geom, img;
    make_geom(&geom);
    dmri_err_t err = {0};
    char p[512], dir[512];
    float v[24] = {0};
    const int dims[3] = {4, 3, 2};

    path_in(p, sizeof p, "no/such/folder/out.nii.gz");
    int rc = dmri_image_write(p, &geom, 3, dims, DT_FLOAT32, v, &err);
    CHECK_INT(rc, DMRI_EIO);
    CHECK_HAS(err.msg, p);
    CHECK_HAS(err.msg, "No such file or directory");

    path_in(dir, sizeof dir, "a_file");
    write_bytes(dir, "x", 1);
    path_in(p, sizeof p, "a_file/out.nii.gz");
    CHECK_INT(dmri_image_write(p, &geom, 3, dims, DT_FLOAT32, v, &err), DMRI_EIO);
    CHECK_HAS(err.msg, p);

    /* Permission bits do not stop root, so only test them as a normal user. */
    if (geteuid() != 0) {
        path_in(dir, sizeof dir, "readonly");
        CHECK(mkdir(dir, 0555) == 0);
        path_in(p, sizeof p, "readonly/out.nii.gz");
        CHECK_INT(dmri_image_write(p, &geom, 3, dims, DT_FLOAT32, v, &err), DMRI_EIO);
        CHECK_HAS(err.msg, p);
        CHECK_HAS(err.msg, "Permission denied");
        chmod(dir, 0755);
    }

    CHECK_INT(dmri_image_write("x.nii", &geom, 2, dims, DT_FLOAT32, v, &err), DMRI_EINVAL);
    CHECK_INT(dmri_image_write("x.nii", &geom, 3, dims, DT_COMPLEX64, v, &err), DMRI_EINVAL);
    CHECK_INT(dmri_image_write("x.nii", &geom, 3, (const int[]){4, 0, 2}, DT_FLOAT32, v, &err),
              DMRI_EINVAL);
    CHECK(access("x.nii", F_OK) != 0);

    /* A write that fails midway (file size limit, as a full disk would):
     * error names the final path, the temporary file is gone, and an older
     * file under the final name is left as it was. */
    const size_t n = 64 * 64 * 16;
    float *big = dmri_malloc(n * sizeof *big);
    uint32_t s = 99;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        big[i] = (float)s;
    }
    const int bdims[3] = {64, 64, 16};
    for (int gz = 0; gz < 2; gz++) {
        path_in(p, sizeof p, gz ? "limited.nii.gz" : "limited.nii");
        CHECK_INT(dmri_image_write(p, &geom, 3, dims, DT_FLOAT32, v, &err), 0);
        struct rlimit old, lim;
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = 20000;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        rc = dmri_image_write(p, &geom, 3, bdims, DT_FLOAT32, big, &err);
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, prev);
        if (getenv("DMRI_TEST_VERBOSE"))
            printf("expected error: %s\n", err.msg);
        CHECK_INT(rc, DMRI_EIO);
        CHECK_HAS(err.msg, p);
        CHECK_HAS(err.msg, "write failed");
        CHECK_INT(count_tmp_files(tmpdir), 0);
        CHECK_INT(dmri_image_read(p, &img, &err), 0);
        CHECK_INT(img.nx, 4); /* the old, small file */
        dmri_image_close(&img);
    }

    /* Overwriting works and leaves nothing behind. */
    path_in(p, sizeof p, "again.nii.gz");
    CHECK_INT(dmri_image_write(p, &geom, 3, dims, DT_FLOAT32, v, &err), 0);
    CHECK_INT(dmri_image_write(p, &geom, 3, bdims, DT_FLOAT32, big, &err), 0);
    CHECK_INT(dmri_image_read(p, &img, &err), 0);
    CHECK_INT(img.nx, 64);
    if (img.data)
        CHECK(memcmp(img.data, big, n * sizeof *big) == 0);
    dmri_image_close(&img);
    CHECK_INT(count_tmp_files(tmpdir), 0);
    dmri_free(big);
}

static void test_helpers(void) {
    CHECK_INT(dmri_image_datatype_size(DT_UINT8), 1);
    CHECK_INT(dmri_image_datatype_size(DT_INT16), 2);
    CHECK_INT(dmri_image_datatype_size(DT_UINT32), 4);
    CHECK_INT(dmri_image_datatype_size(DT_FLOAT64), 8);
    CHECK_INT(dmri_image_datatype_size(DT_COMPLEX64), 0);
    CHECK_INT(dmri_image_datatype_size(DT_INT64), 0);
    CHECK_INT(dmri_image_datatype_size(DT_RGB24), 0);
    dmri_image_close(NULL);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dmri_test_image_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_helpers();
    /* Reading runs twice when ISA-L is built in: through it, then through
     * the zlib fallback. */
#ifdef DMRI_HAVE_ISAL
    const int passes = 2;
#else
    const int passes = 1;
#endif
    for (int pass = 0; pass < passes; pass++) {
        if (pass == 1)
            setenv("DMRI_INFLATE", "zlib", 1);
        printf("test_image: gzip data read with %s\n",
               passes == 2 && pass == 0 ? "ISA-L" : "zlib");
        test_roundtrip_all_types();
        test_3d_5d();
        test_scaling();
        test_big_endian();
        test_nifti2();
        test_read_errors();
        test_gzip_streams();
        test_gzip_large();
    }
    unsetenv("DMRI_INFLATE");
    test_write_errors();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (failures) {
        fprintf(stderr, "test_image: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_image: all checks passed\n");
    return 0;
}
