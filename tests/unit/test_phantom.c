/* test_phantom: the synthetic subject generator (common/phantom.c) read back
 * byte by byte with zlib and plain text parsing, independent of the project's
 * own readers: header, determinism, crisp zero background, gradient scheme,
 * noise level, int16/scaling paths and every error path. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti1.h>
#include <zlib.h>

#include "dmri_alloc.h"
#include "dmri_err.h"
#include "phantom.h"

static int failures = 0;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
            failures++;                                                   \
        }                                                                 \
    } while (0)
#define CHECK_INT(a, b) CHECK((long long)(a) == (long long)(b), "%s = %lld, %s = %lld", #a, \
                              (long long)(a), #b, (long long)(b))
#define CHECK_NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol), \
                                    "%s = %.9g, %s = %.9g, tol %g", #a, (double)(a), #b, \
                                    (double)(b), (double)(tol))

/* ---- helpers ---- */

typedef struct {
    nifti_1_header h;
    unsigned char *raw; /* data after the 352-byte prefix */
    size_t nbytes;
} nii_t;

static void path_in(char *out, size_t n, const char *dir, const char *name) {
    int len = snprintf(out, n, "%s/%s", dir, name);
    if (len < 0 || (size_t)len >= n) {
        fprintf(stderr, "test_phantom: path too long: %s/%s\n", dir, name);
        exit(1);
    }
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        path_in(p, sizeof p, dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = dmri_malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    *len = got;
    return buf;
}

/* Reads the whole gzip file; expects exactly 352 + nbytes bytes. */
static int read_nii(const char *dir, nii_t *n) {
    char p[4096];
    path_in(p, sizeof p, dir, "data.nii.gz");
    gzFile gz = gzopen(p, "rb");
    if (!gz)
        return -1;
    unsigned char ext[4];
    if (gzread(gz, &n->h, sizeof n->h) != (int)sizeof n->h || gzread(gz, ext, 4) != 4) {
        gzclose(gz);
        return -1;
    }
    size_t vsz = n->h.bitpix / 8;
    n->nbytes = (size_t)n->h.dim[1] * n->h.dim[2] * n->h.dim[3] * n->h.dim[4] * vsz;
    n->raw = dmri_malloc(n->nbytes + 1);
    int got = gzread(gz, n->raw, (unsigned)n->nbytes);
    unsigned char extra;
    int more = gzread(gz, &extra, 1);
    gzclose(gz);
    if (got != (int)n->nbytes || more != 0) {
        dmri_free(n->raw);
        return -1;
    }
    return 0;
}

/* Whitespace-separated numbers of a text file; *rows gets the line count. */
static double *read_numbers(const char *dir, const char *name, int *count, int *rows) {
    char p[4096];
    path_in(p, sizeof p, dir, name);
    size_t len;
    char *text = (char *)read_all(p, &len);
    if (!text)
        return NULL;
    double *v = dmri_malloc(sizeof(double) * (len / 2 + 1));
    int n = 0, r = 0;
    for (size_t i = 0; i < len; i++)
        r += text[i] == '\n';
    char *s = text, *end;
    for (;;) {
        double x = strtod(s, &end);
        if (end == s)
            break;
        v[n++] = x;
        s = end;
    }
    dmri_free(text);
    *count = n;
    *rows = r;
    return v;
}

static int files_equal(const char *d1, const char *d2, const char *name) {
    char p1[4096], p2[4096];
    path_in(p1, sizeof p1, d1, name);
    path_in(p2, sizeof p2, d2, name);
    size_t l1, l2;
    unsigned char *a = read_all(p1, &l1), *b = read_all(p2, &l2);
    int eq = a && b && l1 == l2 && memcmp(a, b, l1) == 0;
    dmri_free(a);
    dmri_free(b);
    return eq;
}

static void small_opts(dmri_phantom_opts_t *o) {
    dmri_phantom_opts_default(o);
    o->nx = 23;
    o->ny = 29;
    o->nz = 17;
    o->nb0 = 3;
    o->nshells = 2;
    o->shells[0] = 1000;
    o->shells[1] = 2000;
    o->ndirs = 15;
    o->seed = 7;
}

static void make(const char *dir, const dmri_phantom_opts_t *o) {
    dmri_err_t err = {0};
    int rc = dmri_phantom_write(dir, o, &err);
    CHECK(rc == 0, "dmri_phantom_write(%s) = %d: %s", dir, rc, err.msg);
}

static float f32_at(const nii_t *n, size_t i) {
    float v;
    memcpy(&v, n->raw + 4 * i, 4);
    return v;
}

static int16_t i16_at(const nii_t *n, size_t i) {
    int16_t v;
    memcpy(&v, n->raw + 2 * i, 2);
    return v;
}

/* ---- tests ---- */

static void test_defaults(void) {
    dmri_phantom_opts_t o;
    dmri_phantom_opts_default(&o);
    CHECK_INT(o.nx, 145);
    CHECK_INT(o.ny, 174);
    CHECK_INT(o.nz, 145);
    CHECK_INT(o.nb0, 18);
    CHECK_INT(o.nshells, 3);
    CHECK_NEAR(o.shells[0], 1000, 0);
    CHECK_NEAR(o.shells[1], 2000, 0);
    CHECK_NEAR(o.shells[2], 3000, 0);
    CHECK_INT(o.ndirs, 90);
    CHECK_INT(o.nb0 + o.nshells * o.ndirs, 288);
    CHECK_INT(o.datatype, DT_FLOAT32);
    CHECK_NEAR(o.snr, 30, 0);
}

static void test_header_and_background(const char *dir) {
    dmri_phantom_opts_t o;
    small_opts(&o);
    make(dir, &o);
    CHECK_INT(count_entries(dir), 3); /* no temporary files left behind */
    nii_t n;
    if (read_nii(dir, &n) != 0) {
        CHECK(0, "%s/data.nii.gz: cannot read back 352 + %d voxels x 33 x 4 bytes", dir,
              23 * 29 * 17);
        return;
    }
    const nifti_1_header *h = &n.h;
    CHECK_INT(h->sizeof_hdr, 348);
    CHECK(!memcmp(h->magic, "n+1", 4), "magic '%.3s'", h->magic);
    CHECK_INT(h->dim[0], 4);
    CHECK_INT(h->dim[1], 23);
    CHECK_INT(h->dim[2], 29);
    CHECK_INT(h->dim[3], 17);
    CHECK_INT(h->dim[4], 33);
    CHECK_INT(h->datatype, DT_FLOAT32);
    CHECK_INT(h->bitpix, 32);
    CHECK_NEAR(h->vox_offset, 352, 0);
    for (int k = 1; k <= 3; k++)
        CHECK_NEAR(h->pixdim[k], 1.25, 0);
    CHECK_INT(h->qform_code, NIFTI_XFORM_SCANNER_ANAT);
    CHECK_INT(h->sform_code, NIFTI_XFORM_SCANNER_ANAT);
    CHECK_NEAR(h->srow_x[0], -1.25, 0);
    CHECK_NEAR(h->srow_y[1], 1.25, 0);
    CHECK_NEAR(h->srow_z[2], 1.25, 0);
    CHECK_INT(h->xyzt_units, NIFTI_UNITS_MM | NIFTI_UNITS_SEC);
    /* The sform maps the grid centre to HCP's centre (0, -17.875, 18). */
    CHECK_NEAR(h->srow_x[0] * 11 + h->srow_x[3], 0.0, 1e-5);
    CHECK_NEAR(h->srow_y[1] * 14 + h->srow_y[3], -17.875, 1e-5);
    CHECK_NEAR(h->srow_z[2] * 8 + h->srow_z[3], 18.0, 1e-5);

    /* Crisp background: a voxel is exactly 0 in every volume or in none (Rician
     * magnitudes are never exactly 0), corners are background, centre is head. */
    size_t nvox = 23 * 29 * 17;
    size_t nzero = 0, inconsistent = 0, negative = 0, nonfinite = 0;
    for (size_t i = 0; i < nvox; i++) {
        int z0 = f32_at(&n, i) == 0.0f;
        nzero += z0;
        for (int g = 0; g < 33; g++) {
            float v = f32_at(&n, (size_t)g * nvox + i);
            inconsistent += (v == 0.0f) != z0;
            negative += v < 0.0f;
            nonfinite += !isfinite(v);
        }
    }
    CHECK_INT(inconsistent, 0);
    CHECK_INT(negative, 0);
    CHECK_INT(nonfinite, 0);
    double frac = (double)nzero / nvox;
    CHECK(frac > 0.5 && frac < 0.85, "background fraction %.3f, expected 0.5..0.85", frac);
    CHECK(f32_at(&n, 0) == 0.0f && f32_at(&n, nvox - 1) == 0.0f, "corners %g %g",
          f32_at(&n, 0), f32_at(&n, nvox - 1));
    size_t centre = 11 + 23 * (14 + 29 * 8);
    CHECK(f32_at(&n, centre) > 500.0f, "centre b0 = %g", f32_at(&n, centre));
    /* HCP-like intensities: b0 values in the head of order 1000..3000. */
    float mx = 0.0f;
    for (size_t i = 0; i < nvox; i++)
        mx = fmaxf(mx, f32_at(&n, i));
    CHECK(mx > 2500.0f && mx < 4000.0f, "max b0 %g", mx);
    dmri_free(n.raw);
}

static void test_gradients(const char *dir) {
    /* Uses the files of test_header_and_background: G = 3 + 2 x 15. */
    int nb, rb, nv, rv;
    double *b = read_numbers(dir, "bvals", &nb, &rb);
    double *v = read_numbers(dir, "bvecs", &nv, &rv);
    CHECK(b && v, "cannot read %s/bvals or bvecs", dir);
    if (!b || !v)
        return;
    CHECK_INT(nb, 33);
    CHECK_INT(rb, 1);
    CHECK_INT(nv, 3 * 33);
    CHECK_INT(rv, 3);
    int nb0 = 0, n1000 = 0, n2000 = 0, jittered = 0, last_b0 = -1, max_gap = 0;
    for (int g = 0; g < nb && g < 33; g++) {
        if (b[g] <= 10) {
            nb0++;
            CHECK_NEAR(b[g], 5.0, 0);
            if (g - last_b0 > max_gap)
                max_gap = g - last_b0;
            last_b0 = g;
        } else {
            double shell = fabs(b[g] - 1000) <= 15 ? 1000 : 2000;
            n1000 += shell == 1000;
            n2000 += shell == 2000;
            CHECK_NEAR(b[g], shell, 15);
            CHECK_NEAR(fmod(b[g], 5.0), 0.0, 0);
            jittered += b[g] != shell;
        }
        double x = v[g], y = v[33 + g], z = v[66 + g];
        CHECK_NEAR(sqrt(x * x + y * y + z * z), 1.0, 1e-6);
    }
    CHECK(b[0] <= 10, "first volume b = %g, expected a b0", b[0]);
    CHECK_INT(nb0, 3);
    CHECK_INT(n1000, 15);
    CHECK_INT(n2000, 15);
    CHECK(jittered >= 10, "only %d of 30 b-values jittered", jittered);
    CHECK(max_gap <= 11 && 33 - 1 - last_b0 < 11, "b0s not spread: gap %d, last at %d", max_gap,
          last_b0);
    /* Directions of a shell are well spread (no two closer than 15 degrees,
     * antipodes counting as the same direction). */
    double worst = 0.0;
    for (int i = 0; i < 33; i++)
        for (int j = i + 1; j < 33; j++) {
            if (b[i] <= 10 || b[j] <= 10 || fabs(b[i] - b[j]) > 100)
                continue;
            double c = fabs(v[i] * v[j] + v[33 + i] * v[33 + j] + v[66 + i] * v[66 + j]);
            worst = fmax(worst, c);
        }
    CHECK(worst < cos(15.0 * M_PI / 180.0), "closest pair in a shell: cos = %.4f", worst);
    dmri_free(b);
    dmri_free(v);
}

static void test_determinism(const char *d1, const char *d2, const char *d3) {
    dmri_phantom_opts_t o;
    small_opts(&o);
    make(d2, &o); /* d1 already holds seed 7 */
    CHECK(files_equal(d1, d2, "data.nii.gz"), "same seed: data.nii.gz differs");
    CHECK(files_equal(d1, d2, "bvals"), "same seed: bvals differ");
    CHECK(files_equal(d1, d2, "bvecs"), "same seed: bvecs differ");
    o.seed = 8;
    make(d3, &o);
    CHECK(!files_equal(d1, d3, "data.nii.gz"), "seeds 7 and 8: same data.nii.gz");
    CHECK(!files_equal(d1, d3, "bvecs"), "seeds 7 and 8: same bvecs");
    rm_dir(d2);
    rm_dir(d3);
}

/* Noiseless vs noisy with the same seed: where the signal is high the Rician
 * magnitude is ~ S + sigma n1, so the residual std is sigma = 1200 / snr. */
static void test_noise_level(const char *dnoisy, const char *dclean) {
    dmri_phantom_opts_t o;
    small_opts(&o);
    o.nx = 40;
    o.ny = 48;
    o.nz = 40;
    o.snr = 20.0;
    make(dnoisy, &o);
    o.snr = 0.0;
    make(dclean, &o);
    nii_t a, c;
    if (read_nii(dnoisy, &a) != 0 || read_nii(dclean, &c) != 0) {
        CHECK(0, "cannot read back the noise-level phantoms%s", "");
        return;
    }
    size_t total = a.nbytes / 4, m = 0;
    double s1 = 0.0, s2 = 0.0, cmax = 0.0;
    for (size_t i = 0; i < total; i++) {
        double clean = f32_at(&c, i), noisy = f32_at(&a, i);
        cmax = fmax(cmax, clean);
        if (clean == 0.0)
            CHECK(noisy == 0.0, "background voxel %zu noisy %g", i, noisy);
        if (clean > 600.0) {
            double r = noisy - clean;
            s1 += r;
            s2 += r * r;
            m++;
        }
    }
    double mean = s1 / m, sd = sqrt(s2 / m - mean * mean);
    printf("noise: %zu values, residual mean %.3f sd %.3f (expected 0, %.1f)\n", m, mean, sd,
           1200.0 / 20.0);
    CHECK(m > 10000, "only %zu high-signal values", m);
    CHECK_NEAR(sd, 60.0, 60.0 * 0.03);
    CHECK_NEAR(mean, 0.0, 60.0 * 0.05); /* Rician bias sigma^2/(2S) <= 3 here */
    CHECK(cmax <= 3000.0 + 1e-3, "noiseless max %g exceeds S0 max 3000", cmax);
    dmri_free(a.raw);
    dmri_free(c.raw);
    rm_dir(dclean);
}

static void test_int16(const char *dfloat, const char *d16) {
    /* dfloat: the noisy 40x48x40 float32 phantom of test_noise_level. */
    nii_t f;
    if (read_nii(dfloat, &f) != 0) {
        CHECK(0, "cannot read %s", dfloat);
        return;
    }
    size_t total = f.nbytes / 4;
    const struct {
        double slope, inter;
    } cases[] = {{0.0, 0.0}, {0.25, 0.0}, {2.0, 100.0}};
    for (int c = 0; c < 3; c++) {
        dmri_phantom_opts_t o;
        small_opts(&o);
        o.nx = 40;
        o.ny = 48;
        o.nz = 40;
        o.snr = 20.0;
        o.datatype = DT_INT16;
        o.scl_slope = cases[c].slope;
        o.scl_inter = cases[c].inter;
        make(d16, &o);
        nii_t n;
        if (read_nii(d16, &n) != 0) {
            CHECK(0, "cannot read %s (int16 case %d)", d16, c);
            continue;
        }
        CHECK_INT(n.h.datatype, DT_INT16);
        CHECK_INT(n.h.bitpix, 16);
        double slope = cases[c].slope != 0.0 ? cases[c].slope : 1.0;
        CHECK_NEAR(n.h.scl_slope, slope, 0);
        CHECK_NEAR(n.h.scl_inter, cases[c].inter, 0);
        CHECK_INT(n.nbytes / 2, total);
        double maxerr = 0.0;
        size_t bg_bad = 0;
        for (size_t i = 0; i < total && i < n.nbytes / 2; i++) {
            double want = f32_at(&f, i);
            double got = i16_at(&n, i) * slope + cases[c].inter;
            /* f32 rounding of the reference adds at most ~2e-4 at 3000. */
            maxerr = fmax(maxerr, fabs(got - want));
            bg_bad += want == 0.0 && got != 0.0;
        }
        printf("int16 slope %g inter %g: max |raw*slope+inter - float32| = %.4f\n", slope,
               cases[c].inter, maxerr);
        CHECK(maxerr <= 0.5 * slope + 1e-3, "case %d: max error %g > slope/2", c, maxerr);
        CHECK_INT(bg_bad, 0);
        dmri_free(n.raw);
    }
    /* A slope that makes raw values overflow int16 is clipped, not wrapped. */
    dmri_phantom_opts_t o;
    small_opts(&o);
    o.datatype = DT_INT16;
    o.scl_slope = 0.05;
    make(d16, &o);
    nii_t n;
    if (read_nii(d16, &n) == 0) {
        int16_t mx = 0, mn = 0;
        for (size_t i = 0; i < n.nbytes / 2; i++) {
            int16_t v = i16_at(&n, i);
            mx = v > mx ? v : mx;
            mn = v < mn ? v : mn;
        }
        CHECK_INT(mx, 32767);
        CHECK_INT(mn, 0);
        dmri_free(n.raw);
    } else {
        CHECK(0, "cannot read the clipped int16 phantom%s", "");
    }
    dmri_free(f.raw);
    rm_dir(d16);
}

static void expect_einval(dmri_phantom_opts_t *o, const char *dir, const char *word) {
    dmri_err_t err = {0};
    int rc = dmri_phantom_write(dir, o, &err);
    CHECK_INT(rc, DMRI_EINVAL);
    CHECK(strstr(err.msg, word) != NULL, "message '%s' should name '%s'", err.msg, word);
    CHECK(access(dir, F_OK) != 0, "%s: created despite invalid options", dir);
}

static void test_errors(const char *base) {
    char dir[4096];
    path_in(dir, sizeof dir, base, "never");
    dmri_phantom_opts_t o;
    small_opts(&o);
    o.nx = 0;
    expect_einval(&o, dir, "shape");
    small_opts(&o);
    o.nz = 40000;
    expect_einval(&o, dir, "shape");
    small_opts(&o);
    o.shells[1] = 5.0;
    expect_einval(&o, dir, "shells");
    small_opts(&o);
    o.nshells = 9;
    expect_einval(&o, dir, "shells");
    small_opts(&o);
    o.nb0 = -1;
    expect_einval(&o, dir, "b0");
    small_opts(&o);
    o.nb0 = 0;
    o.ndirs = 0;
    expect_einval(&o, dir, "volumes");
    small_opts(&o);
    o.snr = -1.0;
    expect_einval(&o, dir, "snr");
    small_opts(&o);
    o.snr = NAN;
    expect_einval(&o, dir, "snr");
    small_opts(&o);
    o.datatype = DT_UINT8;
    expect_einval(&o, dir, "dtype");
    small_opts(&o);
    o.scl_inter = 3.0;
    expect_einval(&o, dir, "scl-inter");
    small_opts(&o);
    o.scl_slope = INFINITY;
    expect_einval(&o, dir, "scl-slope");
    small_opts(&o);
    expect_einval(&o, "", "out");

    /* An output folder that cannot be created: under a regular file. */
    char file[4096], under[4096];
    path_in(file, sizeof file, base, "plainfile");
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    path_in(under, sizeof under, file, "sub");
    dmri_err_t err = {0};
    small_opts(&o);
    int rc = dmri_phantom_write(under, &o, &err);
    CHECK_INT(rc, DMRI_EIO);
    CHECK(strstr(err.msg, "plainfile") != NULL, "message '%s' should name the folder", err.msg);
    unlink(file);
}

static void test_edge_shapes(const char *dir) {
    /* Only b0s, a 1-voxel-thick slab and a single shell still give valid files. */
    dmri_phantom_opts_t o;
    small_opts(&o);
    o.nz = 1;
    o.nb0 = 2;
    o.nshells = 0;
    make(dir, &o);
    nii_t n;
    if (read_nii(dir, &n) == 0) {
        CHECK_INT(n.h.dim[3], 1);
        CHECK_INT(n.h.dim[4], 2);
        dmri_free(n.raw);
    } else {
        CHECK(0, "cannot read the b0-only slab%s", "");
    }
    small_opts(&o);
    o.nb0 = 0;
    o.nshells = 1;
    o.ndirs = 7;
    make(dir, &o);
    int nb, rb;
    double *b = read_numbers(dir, "bvals", &nb, &rb);
    CHECK_INT(nb, 7);
    dmri_free(b);
    rm_dir(dir);
}

int main(void) {
    char base[] = "/tmp/test_phantom.XXXXXX";
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    char d1[4096], d2[4096], d3[4096], d4[4096], d5[4096];
    path_in(d1, sizeof d1, base, "seed7");
    path_in(d2, sizeof d2, base, "seed7b");
    path_in(d3, sizeof d3, base, "seed8");
    path_in(d4, sizeof d4, base, "noisy");
    path_in(d5, sizeof d5, base, "clean");

    test_defaults();
    test_header_and_background(d1);
    test_gradients(d1);
    test_determinism(d1, d2, d3);
    test_noise_level(d4, d5);
    test_int16(d4, d2);
    test_errors(base);
    test_edge_shapes(d3);

    rm_dir(d1);
    rm_dir(d4);
    rmdir(base);
    if (failures) {
        fprintf(stderr, "test_phantom: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_phantom: all checks passed\n");
    return 0;
}
