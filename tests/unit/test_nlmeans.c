/* test_nlmeans: padding (whole-volume mirror and slab halos from real
 * neighbours), sigma = 0, the mask, a constant volume's known value, the fast
 * kernel against the dipy-order reference on random data with irregular masks,
 * odd sizes and slab cuts, on every instruction set this CPU has (scalar,
 * AVX2, AVX-512; the two SIMD ones must agree bit for bit), bitwise identity
 * of every slab cut of a 17-slice volume with the whole volume, and the
 * vectorised exp against glibc's (max ulp printed). Parity with dipy itself
 * is tests/parity/test_nlmeans.py. */
#include "dmri_alloc.h"
#include "dmri_err.h"
#include "nlmeans.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

/* Instruction sets of the fast kernel; those this CPU lacks are skipped. */
static const char *const isas[] = {"scalar", "avx2", "avx512"};
#define NISA (int)(sizeof isas / sizeof isas[0])

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

/* Deterministic uniform [0, 1) (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

/* dipy's correspond_indices: [p..1], [0..n-1], [n-2..n-1-p]: the source index
 * of each padded position, built the way dipy builds it (not via a formula). */
static void dipy_indices(int n, int p, int *idx) {
    int k = 0;
    for (int i = p; i >= 1; i--)
        idx[k++] = i;
    for (int i = 0; i < n; i++)
        idx[k++] = i;
    for (int i = n - 2; i >= n - 1 - p; i--)
        idx[k++] = i;
}

static double value_at(int x, int y, int z) { return x + 100.0 * y + 10000.0 * z + 0.25; }

static void test_pad_whole_volume(void) {
    const int nx = 7, ny = 6, nz = 9, H = DMRI_NLMEANS_HALO;
    const int px = nx + 2 * H, py = ny + 2 * H, pz = nz + 2 * H;
    double *v64 = dmri_malloc(sizeof(double) * nx * ny * nz);
    float *v32 = dmri_malloc(sizeof(float) * nx * ny * nz);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                v64[x + nx * (y + ny * z)] = value_at(x, y, z);
                v32[x + nx * (y + ny * z)] = (float)value_at(x, y, z);
            }
    CHECK(dmri_nlmeans_padded_len(nx, ny, nz) == (size_t)px * py * pz, "%zu vs %d",
          dmri_nlmeans_padded_len(nx, ny, nz), px * py * pz);
    double *p64 = dmri_malloc(sizeof(double) * px * py * pz);
    double *p32 = dmri_malloc(sizeof(double) * px * py * pz);
    dmri_nlmeans_pad_f64(v64, nx, ny, nz, 0, nz, 0, nz, p64);
    dmri_nlmeans_pad_f32(v32, nx, ny, nz, 0, nz, 0, nz, p32);
    int ix[32], iy[32], iz[32];
    dipy_indices(nx, H, ix);
    dipy_indices(ny, H, iy);
    dipy_indices(nz, H, iz);
    int bad = 0;
    for (int k = 0; k < pz; k++)
        for (int j = 0; j < py; j++)
            for (int i = 0; i < px; i++) {
                const double want = value_at(ix[i], iy[j], iz[k]);
                const size_t o = (size_t)i + (size_t)px * (j + (size_t)py * k);
                if (p64[o] != want || p32[o] != (double)(float)want) {
                    if (bad++ < 5)
                        CHECK(0, "padded (%d,%d,%d): f64 %g f32 %g, want %g", i, j, k, p64[o],
                              p32[o], want);
                }
            }
    CHECK(bad == 0, "%d padded values wrong", bad);
    /* Spot values written out by hand: index -1 -> 1, -5 -> 5, n -> n-2. */
    CHECK(p64[0] == value_at(5, 5, 5), "corner %g", p64[0]);
    CHECK(p64[(size_t)(H - 1) + (size_t)px * (H + (size_t)py * H)] == value_at(1, 0, 0), "%g",
          p64[(size_t)(H - 1) + (size_t)px * (H + (size_t)py * H)]);
    CHECK(p64[(size_t)(nx + H) + (size_t)px * (H + (size_t)py * H)] == value_at(nx - 2, 0, 0),
          "%g", p64[(size_t)(nx + H) + (size_t)px * (H + (size_t)py * H)]);
    dmri_free(p32);
    dmri_free(p64);
    dmri_free(v32);
    dmri_free(v64);
}

/* Every slab [z0, z1) padded from a buffer holding only the slices it may read
 * equals the matching z-range of the whole-volume padded block. */
static void test_pad_slabs(void) {
    const int nx = 6, ny = 8, nz = 17, H = DMRI_NLMEANS_HALO;
    const size_t plane = (size_t)nx * ny;
    const size_t pplane = (size_t)(nx + 2 * H) * (ny + 2 * H);
    double *v = dmri_malloc(sizeof(double) * plane * nz);
    float *vf = dmri_malloc(sizeof(float) * plane * nz);
    for (size_t i = 0; i < plane * nz; i++) {
        v[i] = urand() * 1000.0;
        vf[i] = (float)v[i];
    }
    double *whole = dmri_malloc(sizeof(double) * dmri_nlmeans_padded_len(nx, ny, nz));
    double *wholef = dmri_malloc(sizeof(double) * dmri_nlmeans_padded_len(nx, ny, nz));
    dmri_nlmeans_pad_f64(v, nx, ny, nz, 0, nz, 0, nz, whole);
    dmri_nlmeans_pad_f32(vf, nx, ny, nz, 0, nz, 0, nz, wholef);
    int bad = 0, slabs = 0;
    for (int z0 = 0; z0 < nz; z0++)
        for (int z1 = z0 + 1; z1 <= nz; z1++) {
            const int sz0 = z0 - H > 0 ? z0 - H : 0, sz1 = z1 + H < nz ? z1 + H : nz;
            const size_t ns = (size_t)(sz1 - sz0) * plane;
            /* exact-size copies: ASan flags any read outside [sz0, sz1) */
            double *src = dmri_malloc(sizeof(double) * ns);
            float *srcf = dmri_malloc(sizeof(float) * ns);
            memcpy(src, v + (size_t)sz0 * plane, sizeof(double) * ns);
            memcpy(srcf, vf + (size_t)sz0 * plane, sizeof(float) * ns);
            const size_t plen = dmri_nlmeans_padded_len(nx, ny, z1 - z0);
            double *p = dmri_malloc(sizeof(double) * plen);
            double *pf = dmri_malloc(sizeof(double) * plen);
            dmri_nlmeans_pad_f64(src, nx, ny, nz, sz0, sz1, z0, z1, p);
            dmri_nlmeans_pad_f32(srcf, nx, ny, nz, sz0, sz1, z0, z1, pf);
            if (memcmp(p, whole + (size_t)z0 * pplane, sizeof(double) * plen) ||
                memcmp(pf, wholef + (size_t)z0 * pplane, sizeof(double) * plen)) {
                if (bad++ < 5)
                    CHECK(0, "slab [%d,%d) from slices [%d,%d) differs from whole volume", z0,
                          z1, sz0, sz1);
            }
            slabs++;
            dmri_free(pf);
            dmri_free(p);
            dmri_free(srcf);
            dmri_free(src);
        }
    CHECK(bad == 0, "%d of %d slabs wrong", bad, slabs);
    dmri_free(wholef);
    dmri_free(whole);
    dmri_free(vf);
    dmri_free(v);
}

typedef void (*denoise_fn)(const double *vol, int nx, int ny, int nz, const uint8_t *mask,
                           double sigma, int rician, int slab, double *out);

/* Denoise a whole volume slab by slab with the fast kernel; the workspace is
 * allocated at exactly the advertised length plus a guard checked after. */
static void run_fast(const double *vol, int nx, int ny, int nz, const uint8_t *mask,
                     double sigma, int rician, int slab, double *out) {
    const int H = DMRI_NLMEANS_HALO, guard = 16;
    const size_t plane = (size_t)nx * ny;
    if (slab <= 0 || slab > nz)
        slab = nz;
    const size_t wlen = dmri_nlmeans_workspace_len(nx, ny, slab);
    double *ws = dmri_malloc(sizeof(double) * (wlen + guard));
    for (int g = 0; g < guard; g++)
        ws[wlen + g] = -12345.0;
    double *p = dmri_malloc(sizeof(double) * dmri_nlmeans_padded_len(nx, ny, slab));
    for (int z0 = 0; z0 < nz; z0 += slab) {
        const int z1 = z0 + slab < nz ? z0 + slab : nz;
        const int sz0 = z0 - H > 0 ? z0 - H : 0, sz1 = z1 + H < nz ? z1 + H : nz;
        dmri_nlmeans_pad_f64(vol + (size_t)sz0 * plane, nx, ny, nz, sz0, sz1, z0, z1, p);
        /* the workspace length for the full slab must also serve a shorter last slab */
        dmri_nlmeans_block(p, nx, ny, z0, z1 - z0, mask + (size_t)z0 * plane, sigma, rician,
                           out + (size_t)z0 * plane, ws);
    }
    for (int g = 0; g < guard; g++)
        CHECK(ws[wlen + g] == -12345.0, "workspace overrun at +%d", g);
    dmri_free(p);
    dmri_free(ws);
}

static void run_reference(const double *vol, int nx, int ny, int nz, const uint8_t *mask,
                          double sigma, int rician, int slab, double *out) {
    const int H = DMRI_NLMEANS_HALO;
    const size_t plane = (size_t)nx * ny;
    if (slab <= 0 || slab > nz)
        slab = nz;
    double *p = dmri_malloc(sizeof(double) * dmri_nlmeans_padded_len(nx, ny, slab));
    for (int z0 = 0; z0 < nz; z0 += slab) {
        const int z1 = z0 + slab < nz ? z0 + slab : nz;
        const int sz0 = z0 - H > 0 ? z0 - H : 0, sz1 = z1 + H < nz ? z1 + H : nz;
        dmri_nlmeans_pad_f64(vol + (size_t)sz0 * plane, nx, ny, nz, sz0, sz1, z0, z1, p);
        dmri_nlmeans_block_reference(p, nx, ny, z1 - z0, mask + (size_t)z0 * plane, sigma,
                                     rician, out + (size_t)z0 * plane);
    }
    dmri_free(p);
}

static void fill_nan(double *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        a[i] = NAN;
}

/* Largest relative difference of the Rician-corrected A = out^2 + 2 sigma^2
 * (the quantity the kernels compute; out itself loses relative accuracy next
 * to the clip at A = 2 sigma^2) over voxels with b != 0; *rel_out gets the
 * plain |a-b|/|b|. a must be 0 exactly where b is 0 unless b sits at the
 * Rician clip (then |a| tiny). */
static double max_rel(const double *a, const double *b, size_t n, double sigma, int rician,
                      double *rel_out, int *zero_bad) {
    const double c = rician ? 2.0 * sigma * sigma : 0.0;
    double m = 0, mo = 0;
    *zero_bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] == 0) {
            if (a[i] != 0 && !(fabs(a[i]) < 1e-5 * (sigma + 1)))
                (*zero_bad)++;
            continue;
        }
        const double r = fabs(a[i] * a[i] - b[i] * b[i]) / (b[i] * b[i] + c);
        if (!(r <= m))
            m = r; /* also catches NaN */
        const double ro = fabs(a[i] - b[i]) / fabs(b[i]);
        if (!(ro <= mo))
            mo = ro;
    }
    *rel_out = mo;
    return m;
}

enum { MASK_FULL, MASK_RANDOM, MASK_SPARSE, MASK_ONE, MASK_BALL, MASK_NONE };

static void make_mask(uint8_t *m, int nx, int ny, int nz, int kind) {
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                const size_t o = (size_t)x + (size_t)nx * (y + (size_t)ny * z);
                const double dx = (x - 0.4 * nx) / (0.45 * nx), dy = (y - 0.6 * ny) / (0.4 * ny),
                             dz = (z - 0.5 * nz) / (0.5 * nz);
                switch (kind) {
                case MASK_FULL: m[o] = 1; break;
                case MASK_RANDOM: m[o] = urand() < 0.6 ? 255 : 0; break;
                case MASK_SPARSE: m[o] = urand() < 0.03; break;
                case MASK_ONE: m[o] = (x == nx - 1 && y == 0 && z == nz - 1); break;
                case MASK_BALL: m[o] = dx * dx + dy * dy + dz * dz < 1.0; break;
                default: m[o] = 0; break;
                }
            }
}

static void test_fast_vs_reference(void) {
    static const int shapes[][4] = {
        /* nx ny nz slab: odd sizes, tile remainders, minimum size 6 */
        {6, 6, 6, 0}, {6, 7, 8, 3}, {17, 9, 11, 2}, {12, 11, 10, 4}, {33, 10, 7, 5},
        {6, 30, 13, 5},
    };
    static const double sigmas[] = {5.0, 40.0};
    double worst = 0, worst_out = 0, worst_slab = 0;
    int simd_compared = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int nx = shapes[s][0], ny = shapes[s][1], nz = shapes[s][2], slab = shapes[s][3];
        const size_t n = (size_t)nx * ny * nz;
        double *vol = dmri_malloc(sizeof(double) * n);
        uint8_t *mask = dmri_malloc(n);
        double *ref = dmri_malloc(sizeof(double) * n);
        double *fast = dmri_malloc(sizeof(double) * n);
        double *fast_whole = dmri_malloc(sizeof(double) * n);
        double *simd = dmri_malloc(sizeof(double) * n);
        for (size_t i = 0; i < n; i++)
            vol[i] = 100.0 * urand();
        for (int kind = MASK_FULL; kind <= MASK_BALL; kind++) {
            make_mask(mask, nx, ny, nz, kind);
            for (size_t si = 0; si < sizeof sigmas / sizeof sigmas[0]; si++)
                for (int rician = 0; rician <= 1; rician++) {
                    const double sigma = sigmas[si];
                    fill_nan(ref, n);
                    run_reference(vol, nx, ny, nz, mask, sigma, rician, 0, ref);
                    int have_simd = 0;
                    for (int is = 0; is < NISA; is++) {
                        if (dmri_nlmeans_set_isa(isas[is]) != 0)
                            continue;
                        fill_nan(fast, n);
                        fill_nan(fast_whole, n);
                        run_fast(vol, nx, ny, nz, mask, sigma, rician, slab, fast);
                        run_fast(vol, nx, ny, nz, mask, sigma, rician, 0, fast_whole);
                        int zero_bad, nonzero = 0, outside_bad = 0;
                        double rel_out, rel_out2, zb2;
                        int zero_bad2;
                        const double r =
                            max_rel(fast, ref, n, sigma, rician, &rel_out, &zero_bad);
                        const double r2 =
                            max_rel(fast_whole, ref, n, sigma, rician, &rel_out2, &zero_bad2);
                        /* slab cuts change nothing (rs: to print if they did) */
                        const double rs =
                            max_rel(fast, fast_whole, n, sigma, rician, &zb2, &zero_bad2);
                        const int slab_same = !memcmp(fast, fast_whole, sizeof(double) * n);
                        for (size_t i = 0; i < n; i++) {
                            nonzero += ref[i] != 0;
                            if (!mask[i] && (fast[i] != 0 || ref[i] != 0))
                                outside_bad++;
                        }
                        worst = fmax(worst, fmax(r, r2));
                        worst_out = fmax(worst_out, fmax(rel_out, rel_out2));
                        worst_slab = fmax(worst_slab, rs);
                        CHECK(r <= 1e-12 && r2 <= 1e-12,
                              "%s shape %dx%dx%d slab %d mask %d sigma %g rician %d: max rel A "
                              "%.3g (slabs) %.3g (whole)",
                              isas[is], nx, ny, nz, slab, kind, sigma, rician, r, r2);
                        CHECK(zero_bad == 0 && zero_bad2 == 0,
                              "%s shape %dx%dx%d mask %d: %d voxels zero in reference only",
                              isas[is], nx, ny, nz, kind, zero_bad + zero_bad2);
                        CHECK(outside_bad == 0, "%s mask %d: %d masked-out voxels not 0",
                              isas[is], kind, outside_bad);
                        CHECK(nonzero > 0 || kind == MASK_ONE, "mask %d sigma %g: all-zero output",
                              kind, sigma);
                        CHECK(slab_same,
                              "%s shape %dx%dx%d slab %d: slabs vs whole not bitwise equal "
                              "(max rel A %.3g)",
                              isas[is], nx, ny, nz, slab, rs);
                        /* the SIMD variants run the same operations */
                        if (strcmp(isas[is], "scalar")) {
                            if (have_simd) {
                                CHECK(!memcmp(simd, fast, sizeof(double) * n),
                                      "%s differs from the other SIMD variant: shape %dx%dx%d "
                                      "mask %d sigma %g",
                                      isas[is], nx, ny, nz, kind, sigma);
                                simd_compared++;
                            }
                            memcpy(simd, fast, sizeof(double) * n);
                            have_simd = 1;
                        }
                    }
                    dmri_nlmeans_set_isa("auto");
                }
        }
        /* the reference is independent of the slab cut */
        make_mask(mask, nx, ny, nz, MASK_RANDOM);
        run_reference(vol, nx, ny, nz, mask, 9.0, 1, 0, ref);
        run_reference(vol, nx, ny, nz, mask, 9.0, 1, 2, fast);
        CHECK(!memcmp(ref, fast, sizeof(double) * n), "reference: slabs of 2 != whole volume");
        dmri_free(simd);
        dmri_free(fast_whole);
        dmri_free(fast);
        dmri_free(ref);
        dmri_free(mask);
        dmri_free(vol);
    }
    printf("fast vs reference (all instruction sets): max rel of A %.3g, of the output %.3g; "
           "slabs vs whole max rel %.3g (want 0); %d SIMD-vs-SIMD bitwise comparisons\n",
           worst, worst_out, worst_slab, simd_compared);
}

/* The promise dmri-run and the cluster rely on: every slab [z0, z1) of a
 * 17-slice volume (all 153 of them), padded from only the slices it may read,
 * gives the very float64 bits of the whole-volume call on its slices, on
 * every instruction set, for several masks and sizes (odd segment lengths
 * give vector tails, 10 rows two tiles of rows; slabs start at every offset
 * from the kernel's layer boundaries, which the old kernel counted from the
 * slab start: it failed here). The AVX2 and AVX-512 whole-volume results
 * must also agree. */
static void test_slab_identity(void) {
    /* nx, ny and two mask kinds; 10 rows make two tiles of rows */
    static const int shapes[][4] = {{8, 10, MASK_RANDOM, MASK_BALL},
                                    {6, 6, MASK_FULL, MASK_SPARSE}};
    const int nz = 17, H = DMRI_NLMEANS_HALO;
    int compared = 0, bad_slabs = 0, simd_bad = 0, simd_compared = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int nx = shapes[s][0], ny = shapes[s][1];
        const size_t plane = (size_t)nx * ny, n = plane * nz;
        double *vol = dmri_malloc(sizeof(double) * n);
        uint8_t *mask = dmri_malloc(n);
        double *whole = dmri_malloc(sizeof(double) * n);
        double *simd = dmri_malloc(sizeof(double) * n);
        double *pw = dmri_malloc(sizeof(double) * dmri_nlmeans_padded_len(nx, ny, nz));
        double *ws = dmri_malloc(sizeof(double) * dmri_nlmeans_workspace_len(nx, ny, nz));
        double *out = dmri_malloc(sizeof(double) * n);
        double *p = dmri_malloc(sizeof(double) * dmri_nlmeans_padded_len(nx, ny, nz));
        for (size_t i = 0; i < n; i++)
            vol[i] = 200.0 * urand();
        dmri_nlmeans_pad_f64(vol, nx, ny, nz, 0, nz, 0, nz, pw);
        for (int k = 2; k < 4; k++) {
            const int kind = shapes[s][k];
            make_mask(mask, nx, ny, nz, kind);
            const double sigma = 6.0 + 20.0 * urand();
            int have_simd = 0;
            for (int is = 0; is < NISA; is++) {
                if (dmri_nlmeans_set_isa(isas[is]) != 0)
                    continue;
                dmri_nlmeans_block(pw, nx, ny, 0, nz, mask, sigma, 1, whole, ws);
                if (strcmp(isas[is], "scalar")) {
                    if (have_simd) {
                        simd_bad += memcmp(simd, whole, sizeof(double) * n) != 0;
                        simd_compared++;
                    }
                    memcpy(simd, whole, sizeof(double) * n);
                    have_simd = 1;
                }
                for (int z0 = 0; z0 < nz; z0++)
                    for (int z1 = z0 + 1; z1 <= nz; z1++) {
                        const int sz0 = z0 - H > 0 ? z0 - H : 0, sz1 = z1 + H < nz ? z1 + H : nz;
                        const size_t ns = plane * (size_t)(z1 - z0);
                        dmri_nlmeans_pad_f64(vol + (size_t)sz0 * plane, nx, ny, nz, sz0, sz1, z0,
                                             z1, p);
                        fill_nan(out, ns);
                        dmri_nlmeans_block(p, nx, ny, z0, z1 - z0, mask + (size_t)z0 * plane,
                                           sigma, 1, out, ws);
                        const double *w = whole + (size_t)z0 * plane;
                        compared++;
                        if (memcmp(out, w, sizeof(double) * ns)) {
                            size_t nd = 0, first = 0;
                            double md = 0;
                            for (size_t i = 0; i < ns; i++)
                                if (memcmp(out + i, w + i, sizeof(double))) {
                                    if (!nd++)
                                        first = i;
                                    md = fmax(md, fabs(out[i] - w[i]) / fabs(w[i]));
                                }
                            if (bad_slabs++ < 8)
                                CHECK(0,
                                      "%s %dx%dx%d mask %d: slab [%d,%d) differs from the whole "
                                      "volume in %zu voxels (first z %zu y %zu x %zu: %.17g vs "
                                      "%.17g; max rel %.3g)",
                                      isas[is], nx, ny, nz, kind, z0, z1, nd,
                                      z0 + first / plane, first % plane / (size_t)nx,
                                      first % (size_t)nx, out[first], w[first], md);
                        }
                    }
            }
            dmri_nlmeans_set_isa("auto");
        }
        dmri_free(p);
        dmri_free(out);
        dmri_free(ws);
        dmri_free(pw);
        dmri_free(simd);
        dmri_free(whole);
        dmri_free(mask);
        dmri_free(vol);
    }
    CHECK(bad_slabs == 0, "%d of %d slabs not bitwise equal to the whole volume", bad_slabs,
          compared);
    CHECK(simd_bad == 0, "%d of %d whole volumes differ between AVX2 and AVX-512", simd_bad,
          simd_compared);
    CHECK(compared > 0, "no slab compared");
    printf("slab identity: %d slabs (every [z0,z1) of 17 slices, all masks and instruction "
           "sets) vs whole volume: %d differ; %d SIMD-vs-SIMD whole volumes: %d differ\n",
           compared, bad_slabs, simd_compared, simd_bad);
}

/* The vectorised exp against glibc's over the arguments the weights see:
 * at most 1 ulp, exactly 0 below -745.2 (and for -inf), NaN kept, exp(-0) = 1. */
static void test_exp(void) {
    enum { N = 1 << 16 };
    double *x = dmri_malloc(sizeof(double) * N), *y = dmri_malloc(sizeof(double) * N);
    for (int is = 0; is < NISA; is++) {
        if (dmri_nlmeans_set_isa(isas[is]) != 0)
            continue;
        long long maxu = 0, n1 = 0, total = 0;
        double worst_x = 0;
        /* ranges: all, typical weights, tiny arguments, subnormal results */
        static const double lo[] = {-745.2, -40.0, -1e-6, -745.13, -709.0};
        static const double hi[] = {0.0, 0.0, 0.0, -708.0, -700.0};
        for (int r = 0; r < 5; r++)
            for (int rep = 0; rep < 8; rep++) {
                for (int i = 0; i < N; i++)
                    x[i] = lo[r] + (hi[r] - lo[r]) * urand();
                dmri_nlmeans_exp(x, y, N - rep); /* odd lengths: the tail path */
                for (int i = 0; i < N - rep; i++) {
                    const double g = exp(x[i]);
                    int64_t a, b;
                    memcpy(&a, &y[i], 8);
                    memcpy(&b, &g, 8);
                    const long long u = llabs((long long)(a - b));
                    if (u > maxu) {
                        maxu = u;
                        worst_x = x[i];
                    }
                    n1 += u != 0;
                    total++;
                }
            }
        static const double sx[] = {0.0, -0.0, -745.3, -1000.0, -INFINITY, -1e-300, -745.13};
        const int ns = (int)(sizeof sx / sizeof sx[0]);
        double sy[8];
        dmri_nlmeans_exp(sx, sy, (size_t)ns);
        CHECK(sy[0] == 1.0 && sy[1] == 1.0, "%s: exp(0) = %g, exp(-0) = %g", isas[is], sy[0],
              sy[1]);
        CHECK(sy[2] == 0.0 && sy[3] == 0.0 && sy[4] == 0.0,
              "%s: exp below -745.2 not 0: %g %g %g", isas[is], sy[2], sy[3], sy[4]);
        CHECK(sy[5] == 1.0, "%s: exp(-1e-300) = %.17g", isas[is], sy[5]);
        CHECK(sy[6] == exp(-745.13), "%s: exp(-745.13) = %g, glibc %g", isas[is], sy[6],
              exp(-745.13));
        const double nanx = NAN;
        double nany = 0;
        dmri_nlmeans_exp(&nanx, &nany, 1);
        CHECK(isnan(nany), "%s: exp(NaN) = %g", isas[is], nany);
        CHECK(maxu <= 1, "%s: exp differs from glibc by %lld ulp at x = %.17g", isas[is], maxu,
              worst_x);
        printf("exp %s vs glibc: max %lld ulp (at %.6g), %.3f%% of %lld values differ\n", isas[is],
               maxu, worst_x, 100.0 * (double)n1 / (double)total, total);
    }
    dmri_nlmeans_set_isa("auto");
    dmri_free(y);
    dmri_free(x);
}

static void test_set_isa(void) {
    CHECK(dmri_nlmeans_set_isa("auto") == 0, "auto refused");
    const char *auto_isa = dmri_nlmeans_isa();
    CHECK(strcmp(auto_isa, "auto") != 0, "auto reported as %s", auto_isa);
    CHECK(dmri_nlmeans_set_isa("scalar") == 0, "scalar refused");
    CHECK(!strcmp(dmri_nlmeans_isa(), "scalar"), "isa %s after set scalar", dmri_nlmeans_isa());
    CHECK(dmri_nlmeans_set_isa("sse9") == DMRI_EINVAL, "unknown name accepted");
    CHECK(!strcmp(dmri_nlmeans_isa(), "scalar"), "failed set changed the isa");
    int ok = 0;
    for (int is = 0; is < NISA; is++) {
        const int r = dmri_nlmeans_set_isa(isas[is]);
        CHECK(r == 0 || r == DMRI_EUNSUP, "%s: %d", isas[is], r);
        ok += r == 0;
    }
    CHECK(dmri_nlmeans_set_isa(NULL) == 0 && !strcmp(dmri_nlmeans_isa(), auto_isa),
          "NULL does not restore auto (%s)", dmri_nlmeans_isa());
    printf("instruction sets: %d of %d available, auto = %s\n", ok, NISA, auto_isa);
}

/* sigma = 0: the centre offset gives 0/0 = NaN, the weight sum is NaN, every
 * weight becomes 0 and so does the output (dipy's behaviour). No mask: all 0. */
static void test_zero_sigma_and_empty_mask(void) {
    const int nx = 9, ny = 7, nz = 8;
    const size_t n = (size_t)nx * ny * nz;
    double *vol = dmri_malloc(sizeof(double) * n);
    uint8_t *mask = dmri_malloc(n);
    double *out = dmri_malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++)
        vol[i] = 50.0 + 100.0 * urand();
    denoise_fn fns[2] = {run_fast, run_reference};
    for (int f = 0; f < 2; f++)
        for (int rician = 0; rician <= 1; rician++) {
            make_mask(mask, nx, ny, nz, MASK_FULL);
            fill_nan(out, n);
            fns[f](vol, nx, ny, nz, mask, 0.0, rician, 3, out);
            int nz_count = 0;
            for (size_t i = 0; i < n; i++)
                nz_count += out[i] != 0; /* NaN counts as non-zero */
            CHECK(nz_count == 0, "sigma 0, %s, rician %d: %d non-zero outputs",
                  f ? "reference" : "fast", rician, nz_count);
            make_mask(mask, nx, ny, nz, MASK_NONE);
            fill_nan(out, n);
            fns[f](vol, nx, ny, nz, mask, 10.0, rician, 0, out);
            nz_count = 0;
            for (size_t i = 0; i < n; i++)
                nz_count += out[i] != 0;
            CHECK(nz_count == 0, "empty mask, %s: %d non-zero outputs", f ? "reference" : "fast",
                  nz_count);
        }
    /* sigma so small that 1/(27 denom) overflows (1e-160) or nearly (1e-154):
     * every weight but the centre's is 0, the output is the voxel itself */
    double *ref = dmri_malloc(sizeof(double) * n);
    make_mask(mask, nx, ny, nz, MASK_RANDOM);
    static const double tiny[] = {1e-160, 1e-154};
    for (int t = 0; t < 2; t++) {
        run_reference(vol, nx, ny, nz, mask, tiny[t], 1, 0, ref);
        run_fast(vol, nx, ny, nz, mask, tiny[t], 1, 0, out);
        int bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += !(fabs(out[i] - ref[i]) <= 1e-12 * fabs(ref[i])) ||
                   (mask[i] && !(fabs(ref[i] - vol[i]) <= 1e-12 * vol[i]));
        CHECK(bad == 0, "sigma %g: %d voxels differ from the reference or the input", tiny[t],
              bad);
    }
    dmri_free(ref);
    dmri_free(out);
    dmri_free(mask);
    dmri_free(vol);
}

/* A constant volume c: every patch distance is 0, every weight 1, so
 * A = c^2 and out = sqrt(c^2 - 2 sigma^2) (or c without the correction). */
static void test_constant_volume(void) {
    const int nx = 8, ny = 6, nz = 7;
    const size_t n = (size_t)nx * ny * nz;
    const double c = 37.5, sigma = 6.0;
    double *vol = dmri_malloc(sizeof(double) * n);
    uint8_t *mask = dmri_malloc(n);
    double *out = dmri_malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++)
        vol[i] = c;
    make_mask(mask, nx, ny, nz, MASK_FULL);
    denoise_fn fns[2] = {run_fast, run_reference};
    for (int f = 0; f < 2; f++)
        for (int rician = 0; rician <= 1; rician++) {
            fns[f](vol, nx, ny, nz, mask, sigma, rician, 0, out);
            const double want = rician ? sqrt(c * c - 2 * sigma * sigma) : c;
            double m = 0;
            for (size_t i = 0; i < n; i++)
                m = fmax(m, fabs(out[i] - want) / want);
            CHECK(m <= 1e-13, "constant volume, %s, rician %d: rel error %.3g (want %.17g)",
                  f ? "reference" : "fast", rician, m, want);
        }
    /* and a clipped one: sigma large enough that c^2 < 2 sigma^2 -> 0 */
    for (int f = 0; f < 2; f++) {
        fns[f](vol, nx, ny, nz, mask, c, 1, 0, out);
        int nz_count = 0;
        for (size_t i = 0; i < n; i++)
            nz_count += out[i] != 0;
        CHECK(nz_count == 0, "Rician clip, %s: %d non-zero", f ? "reference" : "fast", nz_count);
    }
    dmri_free(out);
    dmri_free(mask);
    dmri_free(vol);
}

/* A step edge with little noise: voxels far from the edge only average with
 * their own side (weights across the edge underflow), so each side keeps its
 * level. Checks the search is non-local but weights really depend on patches. */
static void test_step_edge(void) {
    const int nx = 14, ny = 8, nz = 8;
    const size_t n = (size_t)nx * ny * nz;
    double *vol = dmri_malloc(sizeof(double) * n);
    uint8_t *mask = dmri_malloc(n);
    double *out = dmri_malloc(sizeof(double) * n);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++)
                vol[x + nx * (y + ny * z)] = (x < nx / 2 ? 100.0 : 300.0) + urand() - 0.5;
    make_mask(mask, nx, ny, nz, MASK_FULL);
    run_fast(vol, nx, ny, nz, mask, 1.0, 0, 0, out);
    for (int x = 0; x < nx; x++) {
        const double o = out[x + nx * (3 + ny * 4)], want = x < nx / 2 ? 100.0 : 300.0;
        CHECK(fabs(o - want) < 1.0, "step edge x=%d: %g, want ~%g", x, o, want);
    }
    dmri_free(out);
    dmri_free(mask);
    dmri_free(vol);
}

int main(void) {
    test_pad_whole_volume();
    test_pad_slabs();
    test_zero_sigma_and_empty_mask();
    test_constant_volume();
    test_step_edge();
    test_set_isa();
    test_exp();
    test_fast_vs_reference();
    test_slab_identity();
    if (failures) {
        fprintf(stderr, "test_nlmeans: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_nlmeans: ok\n");
    return 0;
}
