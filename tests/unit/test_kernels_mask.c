/* Unit tests of the brain-mask and noise kernels: mean b0, median filter,
 * Otsu, binarisation/dilation and sigma (PIPELINE.md Steps 3-5), against
 * hand-computed values and brute force. Parity with dipy itself is in
 * tests/parity/test_mask_kernels.py. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"
#include "dmri_err.h"
#include "mask.h"
#include "meanb0.h"
#include "median.h"
#include "otsu.h"
#include "sigma.h"

static int failures;

#define CHECK(cond, fmt, ...)                                                        \
    do {                                                                             \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: " fmt "\n", __FILE__, __LINE__, \
                    #cond, __VA_ARGS__);                                             \
        }                                                                            \
    } while (0)
#define CHECK_EQ_INT(a, b) CHECK((a) == (b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_EQ_DBL(a, b) CHECK((a) == (b), "%.17g != %.17g", (double)(a), (double)(b))

/* Deterministic generator (splitmix64), so failures reproduce. */
static uint64_t rng_state = 0x1234567887654321ull;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unif(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

/* ---------------------------------------------------------------- mean b0 */

static void test_meanb0(void) {
    /* Three volumes of two voxels; voxel 0 is the case where the f32 running
     * sum and a double sum rounded once disagree: 1 + 2^-24 rounds back to 1
     * in f32 (twice), while the exact sum 1 + 2^-23 is representable. */
    const float e = 0x1.0p-24f;
    float data[6] = {1.0f, 3.0f, e, 5.0f, e, 10.0f};
    int b0[3] = {0, 1, 2};
    float out[2];
    dmri_meanb0_f32(data, 2, b0, 3, out);
    volatile float acc = 0.0f;
    acc = acc + 1.0f;
    acc = acc + e;
    acc = acc + e;
    float want0 = acc / 3.0f;
    float dbl0 = (float)((1.0 + (double)e + (double)e) / 3.0);
    CHECK_EQ_DBL(out[0], want0);
    CHECK(want0 != dbl0, "test case should separate f32 and f64 sums (%.9g)", (double)want0);
    CHECK(out[0] != dbl0, "f32 mean b0 equals the double-sum value %.9g", (double)dbl0);
    CHECK_EQ_DBL(out[1], 6.0f);

    /* Subset and order of volumes: only the listed ones, ascending. */
    int b0b[2] = {0, 2};
    dmri_meanb0_f32(data, 2, b0b, 2, out);
    CHECK_EQ_DBL(out[1], 6.5f);

    double o64[2];
    dmri_meanb0_f32_to_f64(data, 2, b0, 3, o64);
    CHECK_EQ_DBL(o64[0], (1.0 + (double)e + (double)e) / 3.0);
    CHECK_EQ_DBL(o64[1], 6.0);
    double d64[6] = {1.0, 3.0, 0x1.0p-53, 5.0, 0x1.0p-53, 7.0};
    dmri_meanb0_f64(d64, 2, b0, 3, o64);
    volatile double a64 = 0.0;
    a64 = a64 + 1.0;
    a64 = a64 + 0x1.0p-53;
    a64 = a64 + 0x1.0p-53;
    CHECK_EQ_DBL(o64[0], a64 / 3.0);
    CHECK_EQ_DBL(o64[1], 5.0);

    /* No b0 volume: NaN everywhere, as numpy's mean of an empty slice. */
    dmri_meanb0_f32(data, 2, b0, 0, out);
    CHECK(isnan(out[0]) && isnan(out[1]), "%g %g", (double)out[0], (double)out[1]);
    dmri_meanb0_f64(d64, 2, b0, 0, o64);
    CHECK(isnan(o64[0]) && isnan(o64[1]), "%g %g", o64[0], o64[1]);
}

/* ------------------------------------------------------------ median */

/* Reflection written differently from the kernel: fold until inside. */
static int fold(int i, int n) {
    while (i < 0 || i >= n) {
        if (i < 0)
            i = -i - 1;
        if (i >= n)
            i = 2 * n - 1 - i;
    }
    return i;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double brute_median(const double *in, int nx, int ny, int nz, int r, int x, int y,
                           int z, double *buf) {
    int k = 0;
    for (int a = -r; a <= r; a++)
        for (int b = -r; b <= r; b++)
            for (int c = -r; c <= r; c++)
                buf[k++] = in[fold(x + a, nx) + (size_t)nx * (fold(y + b, ny) +
                                                              (size_t)ny * fold(z + c, nz))];
    qsort(buf, (size_t)k, sizeof *buf, cmp_double);
    return buf[k / 2];
}

/* Value patterns of the median tests. The fast path predicts each median
 * from its neighbours and brackets it; the patterns make the prediction
 * right (plateaus, zero background), slightly wrong (smooth ramps with
 * noise, like a mean b0), badly wrong (edges, white noise) or meaningless
 * (infinities and values near FLT_MAX, where bracket arithmetic overflows;
 * denormals). */
enum {
    PAT_UNIFORM, PAT_TIES, PAT_RAMP, PAT_BLOBS, PAT_EXTREME, PAT_TINY, PAT_COUNT
};

static double pattern_value(int pat, int x, int y, int z) {
    double u = rng_unif();
    switch (pat) {
    case PAT_TIES:
        return (double)(rng_next() % 3);
    case PAT_RAMP: /* smooth gradient, small noise */
        return 1000.0 + 13.0 * x - 7.5 * y + 3.25 * z + 0.01 * x * y + (u - 0.5) * 4.0;
    case PAT_BLOBS: { /* zero background, two tissue levels, a sharp edge */
        double r2 = (x - 9.0) * (x - 9.0) + (y - 8.0) * (y - 8.0) + 2.0 * (z - 4.0) * (z - 4.0);
        if (r2 > 60.0)
            return 0.0;
        return (r2 < 20.0 ? 1600.0 : 1200.0) + (float)((u - 0.5) * 10.0);
    }
    case PAT_EXTREME: { /* +-inf and +-FLT_MAX-scale values among ordinary ones */
        unsigned c = (unsigned)(rng_next() % 8);
        if (c == 0)
            return INFINITY;
        if (c == 1)
            return -INFINITY;
        if (c == 2)
            return (u < 0.5 ? -1.0 : 1.0) * FLT_MAX * (0.5 + u / 2.0);
        return (float)(u * 100.0 + x);
    }
    case PAT_TINY: /* denormal floats around a zero background */
        return (x + y) % 5 == 0 ? 0.0 : (double)(float)(u * 1e-40);
    default:
        return (float)(u * 1000.0 - 300.0);
    }
}

/* negzero: put a -0.0 in the volume, which switches the kernel to scipy's
 * own selection algorithm (values must not change). Every instruction set
 * this CPU has is tried. */
static void test_median_case(int nx, int ny, int nz, int r, int pat, int negzero) {
    static const char *const isas[] = {"scalar", "avx512"};
    size_t n = (size_t)nx * ny * nz;
    double *in = dmri_malloc(n * sizeof *in), *out = dmri_malloc(n * sizeof *out);
    double *out2 = dmri_malloc(n * sizeof *out2), *want = dmri_malloc(n * sizeof *want);
    float *inf = dmri_malloc(n * sizeof *inf), *outf = dmri_malloc(n * sizeof *outf);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                size_t i = x + (size_t)nx * (y + (size_t)ny * z);
                in[i] = (float)pattern_value(pat, x, y, z);
                inf[i] = (float)in[i];
            }
    if (negzero) {
        in[n / 2] = -0.0;
        inf[n / 2] = -0.0f;
    }
    size_t w = 2 * (size_t)r + 1;
    CHECK(dmri_median3d_workspace_len(r) >= w * w * w, "%zu", dmri_median3d_workspace_len(r));
    double *ws = dmri_malloc(dmri_median3d_workspace_len(r) * sizeof *ws);
    float *wsf = dmri_malloc(dmri_median3d_workspace_len(r) * sizeof *wsf);
    double *buf = dmri_malloc(w * w * w * sizeof *buf);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++)
                want[x + (size_t)nx * (y + (size_t)ny * z)] =
                    brute_median(in, nx, ny, nz, r, x, y, z, buf);
    for (int isa = 0; isa < 2; isa++) {
        if (dmri_median3d_set_isa(isas[isa]) != 0)
            continue; /* not on this CPU */
        memset(out, 0, n * sizeof *out);
        memset(outf, 0, n * sizeof *outf);
        dmri_median3d_f64(in, nx, ny, nz, r, 0, nz, out, ws);
        dmri_median3d_f32(inf, nx, ny, nz, r, 0, nz, outf, wsf);
        /* Slabs filtered separately must give the same volume. */
        for (int z = 0; z < nz; z += 2)
            dmri_median3d_f64(in, nx, ny, nz, r, z, z + 2, out2, ws);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            /* Bits, not values (0.0 vs -0.0), except where a -0.0 is in the
             * data: which of the equal elements scipy returns is checked by
             * the parity test, not by this sort-based brute force. */
            double fo = (double)outf[i];
            int ok = negzero ? out[i] == want[i] && fo == want[i] && out2[i] == want[i]
                             : !memcmp(&out[i], &want[i], sizeof want[i]) &&
                                   !memcmp(&fo, &want[i], sizeof want[i]) &&
                                   !memcmp(&out2[i], &want[i], sizeof want[i]);
            if (bad < 3 && !ok) {
                bad++;
                CHECK(0, "%s %dx%dx%d r=%d pattern %d -0=%d at %zu: f64 %.9g f32 %.9g slab "
                      "%.9g, want %.9g", isas[isa], nx, ny, nz, r, pat, negzero, i, out[i], fo,
                      out2[i], want[i]);
            }
        }
    }
    CHECK_EQ_INT(dmri_median3d_set_isa("auto"), 0);
    dmri_free(in);
    dmri_free(out);
    dmri_free(out2);
    dmri_free(want);
    dmri_free(inf);
    dmri_free(outf);
    dmri_free(ws);
    dmri_free(wsf);
    dmri_free(buf);
}

static void test_median(void) {
    static const int cases[][4] = {
        {1, 1, 1, 4}, {2, 1, 1, 4}, {1, 2, 3, 4}, {2, 2, 2, 4}, {3, 4, 1, 4}, {5, 1, 2, 4},
        {10, 8, 2, 4}, {7, 6, 5, 4}, {13, 11, 9, 4}, {6, 10, 10, 3}, {9, 5, 7, 1},
        {4, 4, 4, 0}, {11, 3, 2, 2}, {19, 17, 9, 4}, {23, 5, 4, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int pat = 0; pat < PAT_COUNT; pat++)
            test_median_case(cases[c][0], cases[c][1], cases[c][2], cases[c][3], pat, 0);
        test_median_case(cases[c][0], cases[c][1], cases[c][2], cases[c][3], PAT_UNIFORM, 1);
        test_median_case(cases[c][0], cases[c][1], cases[c][2], cases[c][3], PAT_TIES, 1);
    }
    /* A 2-voxel axis [a b] extends as ... b a | a b | b a a b ...: the
     * radius-4 window of x=0 holds a five times and b four times, that of
     * x=1 the reverse, so each voxel keeps its own value. */
    double in[2] = {1.0, 2.0}, out[2];
    double *ws = dmri_malloc(dmri_median3d_workspace_len(4) * sizeof *ws);
    dmri_median3d_f64(in, 2, 1, 1, 4, 0, 1, out, ws);
    dmri_free(ws);
    CHECK_EQ_DBL(out[0], 1.0);
    CHECK_EQ_DBL(out[1], 2.0);
    /* Instruction-set names. */
    CHECK_EQ_INT(dmri_median3d_set_isa("sse9"), DMRI_EINVAL);
    CHECK_EQ_INT(dmri_median3d_set_isa(NULL), 0);
    CHECK(!strcmp(dmri_median3d_isa(), "avx512") || !strcmp(dmri_median3d_isa(), "scalar"), "%s",
          dmri_median3d_isa());
    CHECK_EQ_INT(dmri_median3d_set_isa("scalar"), 0);
    CHECK(!strcmp(dmri_median3d_isa(), "scalar"), "%s", dmri_median3d_isa());
    CHECK_EQ_INT(dmri_median3d_set_isa(""), 0);
}

/* ------------------------------------------------------------ Otsu */

static void test_otsu(void) {
    dmri_err_t err = {0};
    float t = 0;
    double td = 0;

    /* Constant image: range widened to v +- 0.5, first bin empty -> NaN wins
     * the argmax at bin 0 -> t = v - 0.5, mask all true. */
    float c[17];
    for (int i = 0; i < 17; i++)
        c[i] = 42.25f;
    CHECK_EQ_INT(dmri_otsu_threshold_f32(c, 17, &t, &err), 0);
    CHECK_EQ_DBL(t, 41.75f);
    uint8_t m[17];
    dmri_mask_threshold_f32(c, 17, t, m);
    CHECK_EQ_INT(dmri_mask_count(m, 17), 17);
    double cd[5] = {-3, -3, -3, -3, -3};
    CHECK_EQ_INT(dmri_otsu_threshold_f64(cd, 5, &td, &err), 0);
    CHECK_EQ_DBL(td, -3.5);

    /* Two clusters 0 and 10: all between-class variances are equal, the
     * first maximum wins -> threshold is the left edge of bin 0 = 0. */
    double two[200];
    for (int i = 0; i < 200; i++)
        two[i] = i % 2 ? 10.0 : 0.0;
    CHECK_EQ_INT(dmri_otsu_threshold_f64(two, 200, &td, &err), 0);
    CHECK_EQ_DBL(td, 0.0);
    uint8_t m2[200];
    dmri_mask_threshold_f64(two, 200, td, m2);
    CHECK_EQ_INT(dmri_mask_count(m2, 200), 100);

    /* Background of 900 zeros + 100 at 256: bins are 1 wide. Class means use
     * right edges (c = e[i+1]); the variance is maximal at bin 0 -> t = 0. */
    float bg[1000];
    for (int i = 0; i < 1000; i++)
        bg[i] = i < 900 ? 0.0f : 256.0f;
    CHECK_EQ_INT(dmri_otsu_threshold_f32(bg, 1000, &t, &err), 0);
    CHECK_EQ_DBL(t, 0.0f);

    /* Threshold is always one of the f32 edges i*(hi-lo)/256 + lo and below
     * the maximum, so the brightest value stays in the mask. */
    float r[4096];
    for (int i = 0; i < 4096; i++)
        r[i] = (float)(rng_unif() < 0.7 ? rng_unif() * 100.0 : 600.0 + rng_unif() * 400.0);
    float lo = r[0], hi = r[0];
    for (int i = 0; i < 4096; i++) {
        lo = fminf(lo, r[i]);
        hi = fmaxf(hi, r[i]);
    }
    CHECK_EQ_INT(dmri_otsu_threshold_f32(r, 4096, &t, &err), 0);
    int k_found = -1;
    double step = ((double)hi - (double)lo) / 256.0;
    for (int k = 0; k < 256; k++)
        if ((float)(k * step + (double)lo) == t)
            k_found = k;
    CHECK(k_found >= 0 && k_found < 255, "threshold %.9g is not an f32 bin edge (k=%d)",
          (double)t, k_found);
    CHECK(t > 90.0f && t < 610.0f, "threshold %.9g does not separate the two classes",
          (double)t);

    /* Errors: NaN, infinity, empty input. */
    float bad[3] = {1.0f, NAN, 2.0f};
    dmri_err_clear(&err);
    CHECK_EQ_INT(dmri_otsu_threshold_f32(bad, 3, &t, &err), DMRI_ENUMERIC);
    CHECK(err.code == DMRI_ENUMERIC && strlen(err.msg) > 0, "code %d msg '%s'", err.code,
          err.msg);
    double badd[3] = {1.0, 2.0, INFINITY};
    CHECK_EQ_INT(dmri_otsu_threshold_f64(badd, 3, &td, &err), DMRI_ENUMERIC);
    badd[2] = NAN;
    CHECK_EQ_INT(dmri_otsu_threshold_f64(badd, 3, &td, NULL), DMRI_ENUMERIC);
    CHECK_EQ_INT(dmri_otsu_threshold_f32(bad, 0, &t, &err), DMRI_EINVAL);
    CHECK(strlen(err.msg) > 0, "%s", "empty message");
}

/* ------------------------------------------------------- binarise, dilate */

static void test_mask(void) {
    /* Strict comparison. */
    float v[4] = {1.0f, 2.0f, 2.0f, 3.0f};
    uint8_t m[4];
    dmri_mask_threshold_f32(v, 4, 2.0f, m);
    CHECK(m[0] == 0 && m[1] == 0 && m[2] == 0 && m[3] == 1, "%d%d%d%d", m[0], m[1], m[2], m[3]);

    /* A corner voxel grows into 3 neighbours, never wraps to the far side. */
    enum { NX = 5, NY = 4, NZ = 3, N = NX * NY * NZ };
    uint8_t in[N] = {0}, out[N];
    in[0] = 1;
    dmri_mask_dilate_cross(in, NX, NY, NZ, out);
    CHECK_EQ_INT(dmri_mask_count(out, N), 4);
    CHECK(out[0] && out[1] && out[NX] && out[NX * NY], "%d %d %d %d", out[0], out[1], out[NX],
          out[NX * NY]);
    CHECK(!out[NX - 1] && !out[NX * (NY - 1)] && !out[NX * NY * (NZ - 1)], "%s", "wrapped");
    /* Opposite corner. */
    memset(in, 0, sizeof in);
    in[N - 1] = 1;
    dmri_mask_dilate_cross(in, NX, NY, NZ, out);
    CHECK_EQ_INT(dmri_mask_count(out, N), 4);
    CHECK(out[N - 2] && out[N - 1 - NX] && out[N - 1 - NX * NY], "%s", "missing neighbour");
    /* Interior voxel -> 7. */
    memset(in, 0, sizeof in);
    in[2 + NX * (1 + NY * 1)] = 1;
    dmri_mask_dilate_cross(in, NX, NY, NZ, out);
    CHECK_EQ_INT(dmri_mask_count(out, N), 7);

    /* Brute force on random sparse masks, including size-1 and size-2 axes. */
    static const int shapes[][3] = {{7, 6, 5}, {1, 4, 3}, {2, 1, 5}, {1, 1, 1}, {9, 2, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int nx = shapes[s][0], ny = shapes[s][1], nz = shapes[s][2];
        size_t n = (size_t)nx * ny * nz;
        uint8_t *a = dmri_malloc(n), *b = dmri_malloc(n);
        for (size_t i = 0; i < n; i++)
            a[i] = rng_unif() < 0.15;
        dmri_mask_dilate_cross(a, nx, ny, nz, b);
        for (int z = 0; z < nz; z++)
            for (int y = 0; y < ny; y++)
                for (int x = 0; x < nx; x++) {
                    static const int d[7][3] = {{0, 0, 0},  {1, 0, 0},  {-1, 0, 0}, {0, 1, 0},
                                                {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
                    int want = 0;
                    for (int k = 0; k < 7; k++) {
                        int xx = x + d[k][0], yy = y + d[k][1], zz = z + d[k][2];
                        if (xx >= 0 && xx < nx && yy >= 0 && yy < ny && zz >= 0 && zz < nz)
                            want |= a[xx + (size_t)nx * (yy + (size_t)ny * zz)];
                    }
                    int got = b[x + (size_t)nx * (y + (size_t)ny * z)];
                    CHECK(got == want, "%dx%dx%d at (%d,%d,%d): %d != %d", nx, ny, nz, x, y, z,
                          got, want);
                }
        dmri_free(a);
        dmri_free(b);
    }
}

/* ------------------------------------------------------------ sigma */

/* Straightforward estimate (clamped neighbours = half-sample reflection). */
static double brute_sigma(const double *v, int nx, int ny, int nz) {
    double sum = 0;
#define AT(x, y, z) v[(x) + (size_t)nx * ((y) + (size_t)ny * (z))]
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double s = AT(x > 0 ? x - 1 : 0, y, z) + AT(x < nx - 1 ? x + 1 : x, y, z) +
                           AT(x, y > 0 ? y - 1 : 0, z) + AT(x, y < ny - 1 ? y + 1 : y, z) +
                           AT(x, y, z > 0 ? z - 1 : 0) + AT(x, y, z < nz - 1 ? z + 1 : z);
                double r = sqrt(6.0 / 7.0) * (AT(x, y, z) - s / 6.0);
                sum += r * r;
            }
#undef AT
    return sqrt(sum / ((double)nx * ny * nz));
}

static int within_ulp(float got, double want) {
    float w = (float)want;
    return got == w || got == nextafterf(w, INFINITY) || got == nextafterf(w, -INFINITY);
}

static void test_sigma(void) {
    /* Constant volume and single voxel: the residual vanishes. */
    double cst[24];
    for (int i = 0; i < 24; i++)
        cst[i] = 17.0;
    CHECK_EQ_DBL(dmri_sigma_volume_f64(cst, 2, 3, 4), 0.0f);
    float one = 123.0f;
    CHECK_EQ_DBL(dmri_sigma_volume_f32(&one, 1, 1, 1), 0.0f);

    /* A spike h in the interior: r = sqrt(6/7) h at the spike and
     * -sqrt(6/7) h/6 at its 6 neighbours, so sum r^2 = h^2 and
     * sigma = h / sqrt(N). */
    double sp[125] = {0};
    sp[2 + 5 * (2 + 5 * 2)] = 4.0;
    float s = dmri_sigma_volume_f64(sp, 5, 5, 5);
    CHECK(within_ulp(s, 4.0 / sqrt(125.0)), "%.9g vs %.9g", (double)s, 4.0 / sqrt(125.0));
    /* The same spike on a border voxel: its missing neighbour is itself. */
    memset(sp, 0, sizeof sp);
    sp[0] = 6.0; /* corner: 3 missing neighbours -> s = 18, r = sqrt(6/7)*3 */
    s = dmri_sigma_volume_f64(sp, 5, 5, 5);
    double want = sqrt((6.0 / 7.0) * (9.0 + 3.0 * 1.0) / 125.0);
    CHECK(within_ulp(s, want), "%.9g vs %.9g", (double)s, want);

    /* Random volumes of odd shapes against the brute force. */
    static const int shapes[][3] = {{7, 6, 5}, {1, 4, 3}, {2, 1, 5}, {10, 8, 2}, {3, 4, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int nx = shapes[k][0], ny = shapes[k][1], nz = shapes[k][2];
        size_t n = (size_t)nx * ny * nz;
        double *d = dmri_malloc(n * sizeof *d);
        float *f = dmri_malloc(n * sizeof *f);
        for (size_t i = 0; i < n; i++) {
            f[i] = (float)(rng_unif() * 500.0);
            d[i] = f[i];
        }
        double ref = brute_sigma(d, nx, ny, nz);
        float s64 = dmri_sigma_volume_f64(d, nx, ny, nz);
        float s32 = dmri_sigma_volume_f32(f, nx, ny, nz);
        CHECK(within_ulp(s64, ref), "%dx%dx%d f64 %.9g vs %.9g", nx, ny, nz, (double)s64, ref);
        CHECK_EQ_DBL(s32, s64);
        dmri_free(d);
        dmri_free(f);
    }
    /* Large enough to exercise the streaming pairwise sum (many blocks). */
    {
        int nx = 37, ny = 29, nz = 23;
        size_t n = (size_t)nx * ny * nz;
        double *d = dmri_malloc(n * sizeof *d);
        for (size_t i = 0; i < n; i++)
            d[i] = 1000.0 + rng_unif() * 50.0;
        double ref = brute_sigma(d, nx, ny, nz);
        float got = dmri_sigma_volume_f64(d, nx, ny, nz);
        CHECK(within_ulp(got, ref), "%.9g vs %.9g", (double)got, ref);
        dmri_free(d);
    }
}

int main(void) {
    test_meanb0();
    test_median();
    test_otsu();
    test_mask();
    test_sigma();
    if (failures) {
        fprintf(stderr, "test_kernels_mask: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_kernels_mask: all checks passed\n");
    return 0;
}
