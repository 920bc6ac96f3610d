/* nlmeans: dipy 1.6's classic non-local means (PIPELINE.md Step 6) on a padded
 * z-slab: the mirror padding, a fast kernel for a per-volume scalar sigma
 * (symmetric weights, separable patch sums, a vectorised exp, runtime choice
 * of scalar / AVX2 / AVX-512 code), and a voxel-by-voxel reference in dipy's
 * order.
 *
 * Memory layout everywhere: x fastest. dipy runs over C-ordered [x, y, z]
 * arrays, so its outermost search and patch loops are over x and its innermost
 * over z; the reference below keeps that order, which is what makes it
 * bit-identical. */
#include "nlmeans.h"

#include "dmri_err.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#define HALO DMRI_NLMEANS_HALO
#define SEARCH 4                     /* block radius - patch radius */
#define NOFF 729                     /* (2 * SEARCH + 1)^3 search offsets */
#define PATCH_VOL 27.0               /* (2 * 1 + 1)^3 patch voxels */

size_t dmri_nlmeans_padded_len(int nx, int ny, int nzs) {
    return (size_t)(nx + 2 * HALO) * (size_t)(ny + 2 * HALO) * (size_t)(nzs + 2 * HALO);
}

/* numpy 'reflect' (whole-sample mirror, edge not repeated), one level deep. */
static int mirror(int i, int n) {
    if (i < 0)
        return -i;
    if (i >= n)
        return 2 * (n - 1) - i;
    return i;
}

/* One body for both input types: exactly one of s32 / s64 is non-NULL. */
static void pad_slab(const float *s32, const double *s64, int nx, int ny, int nz, int sz0,
                     int sz1, int z0, int z1, double *padded) {
    assert(nx >= DMRI_NLMEANS_MIN_SIZE && ny >= DMRI_NLMEANS_MIN_SIZE &&
           nz >= DMRI_NLMEANS_MIN_SIZE);
    assert(0 <= z0 && z0 < z1 && z1 <= nz);
    assert(sz0 <= (z0 - HALO > 0 ? z0 - HALO : 0));
    assert(sz1 >= (z1 + HALO < nz ? z1 + HALO : nz));
    (void)sz1;
    const int px = nx + 2 * HALO, py = ny + 2 * HALO, pz = z1 - z0 + 2 * HALO;
    const size_t plane = (size_t)nx * (size_t)ny;
    for (int k = 0; k < pz; k++) {
        const int gz = mirror(z0 - HALO + k, nz);
        assert(gz >= sz0 && gz < sz1);
        for (int j = 0; j < py; j++) {
            const int gy = mirror(j - HALO, ny);
            const size_t row = (size_t)(gz - sz0) * plane + (size_t)gy * (size_t)nx;
            double *dst = padded + ((size_t)k * (size_t)py + (size_t)j) * (size_t)px;
            if (s32) {
                const float *s = s32 + row;
                for (int i = 0; i < px; i++)
                    dst[i] = (double)s[mirror(i - HALO, nx)];
            } else {
                const double *s = s64 + row;
                for (int i = 0; i < px; i++)
                    dst[i] = s[mirror(i - HALO, nx)];
            }
        }
    }
}

void dmri_nlmeans_pad_f32(const float *src, int nx, int ny, int nz, int sz0, int sz1, int z0,
                          int z1, double *padded) {
    pad_slab(src, NULL, nx, ny, nz, sz0, sz1, z0, z1, padded);
}

void dmri_nlmeans_pad_f64(const double *src, int nx, int ny, int nz, int sz0, int sz1, int z0,
                          int z1, double *padded) {
    pad_slab(NULL, src, nx, ny, nz, sz0, sz1, z0, z1, padded);
}

/* dipy's h^2 for a constant sigma: the moving patch's sigma sum is 27 copies
 * of sigma added one by one, then /27, squared, times sqrt(2). Formed in that
 * order so that it is the very same double as dipy's per-offset value. */
static double nlmeans_denom(double sigma) {
    double s = 0.0;
    for (int p = 0; p < 27; p++)
        s += sigma;
    const double sbar = s / PATCH_VOL;
    return sqrt(2.0) * (sbar * sbar);
}

/* numpy: new -= 2 * sigma**2; new[new < 0] = 0; sqrt(new). NaN passes through
 * as in numpy. */
static double nlmeans_finish(double a, double sigma, int rician) {
    if (rician) {
        a -= 2.0 * (sigma * sigma);
        if (a < 0)
            a = 0;
    }
    return sqrt(a);
}

/* Linear offsets (in the padded block) of the 729 search offsets, dipy's
 * order: x outermost, z innermost. */
static void search_offsets(ptrdiff_t sx, ptrdiff_t sy, ptrdiff_t sz, ptrdiff_t *off) {
    int k = 0;
    for (int dm = -SEARCH; dm <= SEARCH; dm++)
        for (int dn = -SEARCH; dn <= SEARCH; dn++)
            for (int dz = -SEARCH; dz <= SEARCH; dz++)
                off[k++] = dm * sx + dn * sy + dz * sz;
}

void dmri_nlmeans_block_reference(const double *padded, int nx, int ny, int nzs,
                                  const uint8_t *mask, double sigma, int rician, double *out) {
    const ptrdiff_t sx = 1, sy = nx + 2 * HALO, sz = sy * (ny + 2 * HALO);
    const double denom = nlmeans_denom(sigma);
    ptrdiff_t off[NOFF], poff[27];
    double w[NOFF];
    search_offsets(sx, sy, sz, off);
    int q = 0;
    for (int a = -1; a <= 1; a++)
        for (int b = -1; b <= 1; b++)
            for (int c = -1; c <= 1; c++)
                poff[q++] = a * sx + b * sy + c * sz;

    for (int z = 0; z < nzs; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                const size_t o = (size_t)x + (size_t)nx * ((size_t)y + (size_t)ny * (size_t)z);
                if (!mask[o]) {
                    out[o] = 0.0;
                    continue;
                }
                const double *u = padded + (x + HALO) * sx + (y + HALO) * sy + (z + HALO) * sz;
                double sumw = 0.0;
                for (int k = 0; k < NOFF; k++) {
                    const double *v = u + off[k];
                    double summ = 0.0;
                    for (int p = 0; p < 27; p++) {
                        const double d = u[poff[p]] - v[poff[p]];
                        summ += d * d;
                    }
                    w[k] = exp(-(summ / PATCH_VOL) / denom);
                    sumw += w[k];
                }
                double acc = 0.0;
                for (int k = 0; k < NOFF; k++) {
                    const double wk = sumw > 0 ? w[k] / sumw : 0.0;
                    const double xv = u[off[k]];
                    acc += wk * xv * xv;
                }
                out[o] = nlmeans_finish(acc, sigma, rician);
            }
}

/* ---- fast kernel ------------------------------------------------------- */

/* With one sigma per volume, w(x, x+d) = w(x+d, x): both patch distances are
 * the same sum of the same squares. So only the 364 "positive" offsets d
 * (dz > 0, or dz == 0 and dy > 0, or dz == dy == 0 and dx > 0) are computed
 * and each weight goes to both voxels of its pair: W[x] += w, A[x] += w u[x+d]^2
 * and W[x+d] += w, A[x+d] += w u[x]^2; d = 0 adds w = 1 and u[x]^2. The
 * output is sqrt(max(A/W - 2 sigma^2, 0)).
 *
 * A pair is needed when either voxel is a masked voxel of the slab, so first
 * voxels x run over the slab grown by 4 in x and y and by 4 downwards in z
 * (the partner x+d may be in the halo, where nothing is output). For a row
 * (y, z) of first voxels and an offset d, the x that matter are the hull of
 * the row's own mask extent and of the extent of row (y+dy, z+dz) shifted by
 * -dx; segments are padded to whole vectors inside the tile's box. Every pair
 * computed is a real pair with its true weight and is added exactly once, so
 * the extra ones only feed accumulators of voxels outside the mask.
 *
 * The accumulators W, A cover the grown grid as a ring of TILE_Z + 4 z planes:
 * the slab is swept in layers of up to TILE_Z planes from z = -4 up; a layer
 * adds to its own planes and the 4 above, after which its planes are final,
 * written out and recycled. A layer is cut into tiles of TILE_Y rows (all of
 * x). For each tile and offset, on the bounding box of the rows' segments,
 * plane by plane of the box and its 1-voxel rim:
 *   E = (u[v] - u[v+d])^2, summed over 3 along x then along y (plane
 *   kernel: strips of columns down the rows, x-sums of two rows kept in
 *   registers), the y-sums kept for 3 planes;
 *   then per segment one fused loop (row kernel): D = the z-sum,
 *   w = exp(-D/(27 denom)), and the scatter to both voxels of each pair.
 *
 * Against dipy's float64: D is summed in another order (~1 ulp), the argument
 * is D * (-1/(27 denom)) rather than -(D/27)/denom (~1 ulp), the vectorised
 * exp is within 1 ulp of glibc's, and W and A are summed in another order with
 * one division A/W at the end. A differs by ~1e-14 relative at most (the output
 * more next to the Rician clip); after the cast to float32 no value differed
 * in any of our tests (tests/parity/test_nlmeans.py: dipy's sample data, a
 * blob, the HCP-like phantom).
 *
 * Slab cuts do not change a single bit (dmri-run's whole volumes and the
 * cluster's z-slabs must write identical files). A voxel v gets its 728
 * shares from the pairs computed at first voxels f = v (as first voxel) and
 * f = v - d (as partner), added in the order of (layer of f, tile of f, offset
 * index, f.z, f.y, first voxel before partner), and both shares are computed
 * whatever the slab, since v's row is in the hull of both rows' segments.
 * Tiles are counted in y from -4, which is global. Layers are aligned to the
 * global z grid, not to the slab: a layer boundary is where the global z + 4
 * is a multiple of TILE_Z (the first layer of a slab is shorter when its
 * start is not aligned), so that key, and so the order of the additions, is a
 * function of global positions only. D and w are computed element by element
 * (every lane of the vectorised exp depends on its own argument only) and
 * the segment padding only adds pairs of unmasked voxels, so which lanes or
 * segments a pair lands in changes nothing. A whole volume (z0 = 0), or a
 * slab starting at a multiple of TILE_Z, is swept exactly as when layers were
 * counted from the slab start: same bits as before. The AVX2 and AVX-512
 * variants agree bitwise with each other (not with the scalar one: glibc exp).
 *
 * The loops are inlined into one copy per instruction set (scalar with glibc
 * exp and dipy's argument, AVX2+FMA, AVX-512), chosen at run time: the default
 * build runs on any x86-64 (and elsewhere, scalar only). */

#define NHALF 364    /* (NOFF - 1) / 2 positive offsets */
#define REACH SEARCH /* how far a pair partner can be */

/* Rows per tile and planes per layer. The -D override is for benchmarking. */
#ifndef TILE_Y
#define TILE_Y 16
#endif
#ifndef TILE_Z
#define TILE_Z 8
#endif
#define RING (TILE_Z + REACH)
#define EXT_NONE (1 << 28) /* empty row extent: [EXT_NONE, -EXT_NONE) */

/* Mask extents [lo, hi) of the rows a tile can reach (tile_ext). */
typedef struct {
    int lo[TILE_Z + REACH][TILE_Y + 2 * REACH], hi[TILE_Z + REACH][TILE_Y + 2 * REACH];
} nlm_tile_ext_t;

#if defined(__GNUC__) && !defined(__clang__)
#define NLM_INLINE static inline __attribute__((always_inline))
#else
#define NLM_INLINE static inline
#endif

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* Everything one slab needs; accumulators and scratch are in the caller's
 * workspace. */
typedef struct {
    const double *u;     /* padded block */
    const uint8_t *mask; /* nx*ny*nzs */
    double *out;
    int nx, ny, nzs;
    int zg;              /* global z of the slab's first plane: aligns the layers */
    ptrdiff_t sy, sz;    /* padded strides (x stride 1) */
    double sigma, denom;
    double kneg;         /* -1 / (27 denom): the weight is exp(D * kneg) */
    int rician;
    ptrdiff_t ax, aplane; /* accumulator row length nx+8 and plane size */
    double *accw, *acca;  /* RING planes each: sums of w and of w u^2 */
    int *ext;             /* per slab row (y, z): first masked x, last + 1 */
    double *scratch;      /* 3 planes of y-sums */
    double *rows;         /* 3 rows: x-sums (scalar plane kernel), weights */
    int hd[NHALF][3];     /* the positive offsets (dx, dy, dz) */
} nlm_ctx_t;

/* One plane of y-sums: TILE_Y rows of the widest box, rounded up to 8. */
static size_t sum_plane_len(int nx) { return (size_t)((nx + 2 * REACH + 7) / 8 * 8) * TILE_Y; }

size_t dmri_nlmeans_workspace_len(int nx, int ny, int nzs) {
    const size_t aplane = (size_t)(nx + 2 * REACH) * (size_t)(ny + 2 * REACH);
    const size_t ext = ((size_t)ny * (size_t)nzs * 2 * sizeof(int) + sizeof(double) - 1) /
                       sizeof(double);
    return 2 * RING * aplane + 3 * sum_plane_len(nx) +
           3 * (size_t)(nx + 2 * REACH) + ext;
}

/* Positive offsets in dipy's order (dz fastest: consecutive offsets touch
 * mostly the same memory). */
static void half_offsets(int hd[NHALF][3]) {
    int k = 0;
    for (int dx = -SEARCH; dx <= SEARCH; dx++)
        for (int dy = -SEARCH; dy <= SEARCH; dy++)
            for (int dz = -SEARCH; dz <= SEARCH; dz++)
                if (dz > 0 || (dz == 0 && (dy > 0 || (dy == 0 && dx > 0)))) {
                    hd[k][0] = dx;
                    hd[k][1] = dy;
                    hd[k][2] = dz;
                    k++;
                }
    assert(k == NHALF);
}

static ptrdiff_t pidx(const nlm_ctx_t *c, int x, int y, int z) {
    return (x + HALO) + (y + HALO) * c->sy + (z + HALO) * c->sz;
}

/* One segment of n first voxels: D = za + zb + zc (the z-sum of the y-sums),
 * w = exp(-D/(27 denom)), then W1 += w, A1 += w u2^2 at the first voxels
 * (u1 their values, u2 their partners') and W2 += w, A2 += w u1^2 at the
 * partners. For dy = dz = 0 the partners are in the same row (W2 = W1 + dx):
 * then wb (n doubles) is given and all first voxels are done before all
 * partners, so that every voxel gets its sums in the same order whatever the
 * vector width (the instruction sets agree bit for bit). */
typedef void (*nlm_row_fn)(const nlm_ctx_t *c, const double *za, const double *zb,
                           const double *zc, const double *u1, const double *u2, double *w1,
                           double *a1, double *w2, double *a2, double *wb, ptrdiff_t n);

/* Portable: glibc exp and dipy's own argument -(D/27)/denom. */
static void row_scalar(const nlm_ctx_t *c, const double *za, const double *zb, const double *zc,
                       const double *u1, const double *u2, double *w1, double *a1, double *w2,
                       double *a2, double *wb, ptrdiff_t n) {
    const double denom = c->denom;
    for (ptrdiff_t i = 0; i < n; i++) {
        const double w = exp(-((za[i] + zb[i] + zc[i]) / PATCH_VOL) / denom);
        w1[i] += w;
        a1[i] += w * (u2[i] * u2[i]);
        if (wb) {
            wb[i] = w;
        } else {
            w2[i] += w;
            a2[i] += w * (u1[i] * u1[i]);
        }
    }
    for (ptrdiff_t i = 0; wb && i < n; i++) {
        w2[i] += wb[i];
        a2[i] += wb[i] * (u1[i] * u1[i]);
    }
}

/* The y-sums of the x-sums of E = (u[v] - u[v+off])^2 for bh rows of one
 * plane: p0 is the padded position of the rim's first voxel (x = bx0-1,
 * y = by0-1), rows are sy apart; s2 gets bh rows of bw values, sw apart (sw
 * a multiple of 8). Summation order: x-sum (E0 + E1) + E2, y-sum likewise,
 * the same in every variant. */
typedef void (*nlm_plane_fn)(const nlm_ctx_t *c, const double *p0, ptrdiff_t off,
                             ptrdiff_t bw, ptrdiff_t bh, double *s2, ptrdiff_t sw);

static void plane_scalar(const nlm_ctx_t *c, const double *p0, ptrdiff_t off, ptrdiff_t bw,
                         ptrdiff_t bh, double *s2, ptrdiff_t sw) {
    double *ring[3] = {c->rows, c->rows + bw, c->rows + 2 * bw};
    for (ptrdiff_t j = 0; j < bh + 2; j++) {
        const double *p = p0 + j * c->sy, *q = p + off;
        double *s1 = ring[j % 3];
        for (ptrdiff_t i = 0; i < bw; i++) {
            const double e0 = (p[i] - q[i]) * (p[i] - q[i]);
            const double e1 = (p[i + 1] - q[i + 1]) * (p[i + 1] - q[i + 1]);
            const double e2 = (p[i + 2] - q[i + 2]) * (p[i + 2] - q[i + 2]);
            s1[i] = e0 + e1 + e2;
        }
        if (j < 2)
            continue;
        const double *a = ring[(j - 2) % 3], *b = ring[(j - 1) % 3];
        double *o = s2 + (j - 2) * sw;
        for (ptrdiff_t i = 0; i < bw; i++)
            o[i] = a[i] + b[i] + s1[i];
    }
}

/* ---- vectorised exp and row kernels (x86-64, gcc/clang) ---------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#define NLM_HAVE_SIMD 1
#include <immintrin.h>

/* exp(x) for x <= 0 (or NaN), within 1 ulp of glibc (tests/unit/test_nlmeans.c
 * prints the measured maximum): x = (8e + j) ln2/8 + r, m = 8e + j, j = 0..7,
 * |r| <= ln2/16; ln2/8 is split Cody-Waite style (m * EXP_LN2_HI is exact, so
 * is x - m*EXP_LN2_HI), and with |r| that small its one rounding costs < 0.03
 * ulp. exp(x) = 2^e * T[j] * (1 + p), p = r + r^2 q(r) in one fma, q a
 * degree-5 fit of (exp(r) - 1 - r)/r^2 (Chebyshev interpolation in 200-bit
 * arithmetic, 0.09 ulp), T[j] = 2^(j/8) as a double plus its rounding error
 * Tl[j]: T + (T p + Tl). The 8-entry tables are one register (a permute), and 2^e
 * goes into the exponent bits with an integer add while the result is normal
 * (x >= EXP_NORMAL in all lanes). Otherwise, rarely, it is applied as
 * 2^(e+512) * 2^-512 so that subnormal results are rounded once, and
 * x < EXP_MIN gives 0 (also -inf). NaN stays NaN. AVX2 and AVX-512 run the
 * same operations: identical results. */
#define EXP_8LOG2E 0x1.71547652b82fep3
#define EXP_SHIFT 0x1.8p52
#define EXP_LN2_HI 0x1.62e42feep-4 /* ln2/8, 32 significant bits */
#define EXP_LN2_LO 0x1.a39ef35793c76p-36
#define EXP_MIN (-745.2)  /* below: exp rounds to 0 */
#define EXP_NORMAL (-707.0) /* above: e >= -1021, the result is normal */
#define EXP_Q0 0x1.000000000002ep-1
#define EXP_Q1 0x1.555555555556ap-3
#define EXP_Q2 0x1.5555554e8d709p-5
#define EXP_Q3 0x1.1111110e0d900p-7
#define EXP_Q4 0x1.6c1b735ab0459p-10
#define EXP_Q5 0x1.a01e2e013e538p-13
#define EXP_T_HI                                                                           \
    0x1.0000000000000p+0, 0x1.172b83c7d517bp+0, 0x1.306fe0a31b715p+0, 0x1.4bfdad5362a27p+0, \
        0x1.6a09e667f3bcdp+0, 0x1.8ace5422aa0dbp+0, 0x1.ae89f995ad3adp+0, 0x1.d5818dcfba487p+0
#define EXP_T_LO                                                                           \
    0.0, -0x1.19041b9d78a76p-55, 0x1.6f46ad23182e4p-55, 0x1.d4397afec42e2p-56,             \
        -0x1.bdd3413b26456p-54, 0x1.6e9f156864b27p-54, 0x1.7a1cd345dcc81p-54,              \
        0x1.2ed02d75b3707p-55

static const double exp_thi[8] __attribute__((aligned(64))) = {EXP_T_HI};
static const double exp_tlo[8] __attribute__((aligned(64))) = {EXP_T_LO};

#define NLM_AVX2 __attribute__((target("avx2,fma")))
#define NLM_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))

/* The shared part, V vector type, P intrinsic prefix: t = m + 1.5 * 2^52 (m
 * in its low bits) and p = exp(r) - 1. */
#define EXP_NEG_CORE(V, P)                                                                 \
    const V t = P##_fmadd_pd(x, P##_set1_pd(EXP_8LOG2E), P##_set1_pd(EXP_SHIFT));          \
    const V m = P##_sub_pd(t, P##_set1_pd(EXP_SHIFT));                                    \
    const V r1 = P##_fnmadd_pd(m, P##_set1_pd(EXP_LN2_HI), x);                            \
    const V r = P##_fnmadd_pd(m, P##_set1_pd(EXP_LN2_LO), r1);                            \
    V q = P##_fmadd_pd(P##_set1_pd(EXP_Q5), r, P##_set1_pd(EXP_Q4));                      \
    q = P##_fmadd_pd(q, r, P##_set1_pd(EXP_Q3));                                          \
    q = P##_fmadd_pd(q, r, P##_set1_pd(EXP_Q2));                                          \
    q = P##_fmadd_pd(q, r, P##_set1_pd(EXP_Q1));                                          \
    q = P##_fmadd_pd(q, r, P##_set1_pd(EXP_Q0));                                          \
    const V p = P##_fmadd_pd(P##_mul_pd(r, r), q, r)

NLM_AVX2 static inline __m256d exp_neg_avx2(__m256d x) {
    EXP_NEG_CORE(__m256d, _mm256);
    /* table lookup: 8 doubles in two registers, permuted as 32-bit halves */
    const __m256i j = _mm256_and_si256(_mm256_castpd_si256(t), _mm256_set1_epi64x(3));
    const __m256i idx = _mm256_or_si256(_mm256_slli_epi64(j, 1),
                                        _mm256_slli_epi64(_mm256_add_epi64(
                                                              _mm256_slli_epi64(j, 1),
                                                              _mm256_set1_epi64x(1)),
                                                          32));
    const __m256d upper = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), 61));
#define LOOKUP(tab)                                                                        \
    _mm256_blendv_pd(                                                                      \
        _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(_mm256_loadu_pd(tab)), idx)), \
        _mm256_castps_pd(                                                                  \
            _mm256_permutevar8x32_ps(_mm256_castpd_ps(_mm256_loadu_pd(tab + 4)), idx)),      \
        upper)
    const __m256d thi = LOOKUP(exp_thi), tlo = LOOKUP(exp_tlo);
#undef LOOKUP
    const __m256d y = _mm256_add_pd(thi, _mm256_fmadd_pd(thi, p, tlo));
    if (__builtin_expect(
            _mm256_movemask_pd(_mm256_cmp_pd(x, _mm256_set1_pd(EXP_NORMAL), _CMP_LT_OQ)), 0)) {
        /* AVX2 has no 64-bit arithmetic shift: e from m as a double */
        const __m256d e = _mm256_floor_pd(_mm256_mul_pd(m, _mm256_set1_pd(0.125)));
        const __m256d sc = _mm256_castsi256_pd(_mm256_slli_epi64(
            _mm256_add_epi64(_mm256_castpd_si256(_mm256_add_pd(e, _mm256_set1_pd(EXP_SHIFT))),
                             _mm256_set1_epi64x(1023 + 512)),
            52));
        const __m256d v = _mm256_mul_pd(_mm256_mul_pd(y, sc), _mm256_set1_pd(0x1p-512));
        return _mm256_andnot_pd(_mm256_cmp_pd(x, _mm256_set1_pd(EXP_MIN), _CMP_LT_OQ), v);
    }
    const __m256i e52 = _mm256_slli_epi64(_mm256_srli_epi64(_mm256_castpd_si256(t), 3), 52);
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(y), e52));
}

NLM_AVX512 static inline __m512d exp_neg_avx512(__m512d x) {
    EXP_NEG_CORE(__m512d, _mm512);
    /* the permute uses the low 3 bits of each index: j */
    const __m512i ti = _mm512_castpd_si512(t);
    const __m512d thi = _mm512_permutexvar_pd(ti, _mm512_load_pd(exp_thi));
    const __m512d tlo = _mm512_permutexvar_pd(ti, _mm512_load_pd(exp_tlo));
    const __m512d y = _mm512_add_pd(thi, _mm512_fmadd_pd(thi, p, tlo));
    if (__builtin_expect(_mm512_cmp_pd_mask(x, _mm512_set1_pd(EXP_NORMAL), _CMP_LT_OQ), 0)) {
        /* e = m >> 3: m sits in the low bits of t */
        const __m512i e = _mm512_srai_epi64(_mm512_slli_epi64(ti, 12), 15);
        const __m512d sc = _mm512_castsi512_pd(
            _mm512_slli_epi64(_mm512_add_epi64(e, _mm512_set1_epi64(1023 + 512)), 52));
        const __m512d v = _mm512_mul_pd(_mm512_mul_pd(y, sc), _mm512_set1_pd(0x1p-512));
        return _mm512_maskz_mov_pd(
            (__mmask8)~_mm512_cmp_pd_mask(x, _mm512_set1_pd(EXP_MIN), _CMP_LT_OQ), v);
    }
    return _mm512_castsi512_pd(
        _mm512_add_epi64(_mm512_castpd_si512(y), _mm512_slli_epi64(_mm512_srli_epi64(ti, 3), 52)));
}

/* Vector bodies of the row kernels: lanes past n (masked tails only) load 0
 * (w = 1) and are not stored. */
/* Vector bodies of the row kernels: lanes past n (tails only) load 0 (w = 1)
 * and are not stored. With wb the partners' share waits in wb for a second
 * pass (see nlm_row_fn). */
#define ROW_BODY(V, P, LOAD, STORE)                                                        \
    do {                                                                                   \
        const V d = P##_add_pd(P##_add_pd(LOAD(za + i), LOAD(zb + i)), LOAD(zc + i));      \
        const V w = EXP(P##_mul_pd(d, k));                                                 \
        const V v1 = LOAD(u1 + i), v2 = LOAD(u2 + i);                                      \
        STORE(w1 + i, P##_add_pd(LOAD(w1 + i), w));                                        \
        STORE(a1 + i, P##_fmadd_pd(w, P##_mul_pd(v2, v2), LOAD(a1 + i)));                  \
        if (wb) {                                                                          \
            STORE(wb + i, w);                                                              \
        } else {                                                                           \
            STORE(w2 + i, P##_add_pd(LOAD(w2 + i), w));                                    \
            STORE(a2 + i, P##_fmadd_pd(w, P##_mul_pd(v1, v1), LOAD(a2 + i)));              \
        }                                                                                  \
    } while (0)
#define PARTNER_BODY(V, P, LOAD, STORE)                                                    \
    do {                                                                                   \
        const V w = LOAD(wb + i), v1 = LOAD(u1 + i);                                       \
        STORE(w2 + i, P##_add_pd(LOAD(w2 + i), w));                                        \
        STORE(a2 + i, P##_fmadd_pd(w, P##_mul_pd(v1, v1), LOAD(a2 + i)));                  \
    } while (0)

/* The loop over n: whole vectors, then a masked tail (rare: segments are
 * padded to whole vectors where the box allows). */
#define ROW_LOOP(BODY, V, P, W, LDU, STU, LDM, STM)                                        \
    do {                                                                                   \
        ptrdiff_t i = 0;                                                                   \
        for (; i + W <= n; i += W)                                                         \
            BODY(V, P, LDU, STU);                                                          \
        if (i < n) {                                                                       \
            MASK_DECL;                                                                     \
            BODY(V, P, LDM, STM);                                                          \
        }                                                                                  \
    } while (0)

NLM_AVX2 static void row_avx2(const nlm_ctx_t *c, const double *za, const double *zb,
                              const double *zc, const double *u1, const double *u2, double *w1,
                              double *a1, double *w2, double *a2, double *wb, ptrdiff_t n) {
    const __m256d k = _mm256_set1_pd(c->kneg);
#define EXP exp_neg_avx2
#define LDU(p) _mm256_loadu_pd(p)
#define STU(p, v) _mm256_storeu_pd(p, v)
#define MASK_DECL                                                                          \
    const __m256i m =                                                                      \
        _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - i), _mm256_setr_epi64x(0, 1, 2, 3))
#define LDM(p) _mm256_maskload_pd(p, m)
#define STM(p, v) _mm256_maskstore_pd(p, m, v)
    ROW_LOOP(ROW_BODY, __m256d, _mm256, 4, LDU, STU, LDM, STM);
    if (wb)
        ROW_LOOP(PARTNER_BODY, __m256d, _mm256, 4, LDU, STU, LDM, STM);
#undef EXP
#undef LDU
#undef STU
#undef MASK_DECL
#undef LDM
#undef STM
}

NLM_AVX512 static void row_avx512(const nlm_ctx_t *c, const double *za, const double *zb,
                                  const double *zc, const double *u1, const double *u2,
                                  double *w1, double *a1, double *w2, double *a2, double *wb,
                                  ptrdiff_t n) {
    const __m512d k = _mm512_set1_pd(c->kneg);
#define EXP exp_neg_avx512
#define LDU(p) _mm512_loadu_pd(p)
#define STU(p, v) _mm512_storeu_pd(p, v)
#define MASK_DECL const __mmask8 m = (__mmask8)((1u << (n - i)) - 1)
#define LDM(p) _mm512_maskz_loadu_pd(m, p)
#define STM(p, v) _mm512_mask_storeu_pd(p, m, v)
    ROW_LOOP(ROW_BODY, __m512d, _mm512, 8, LDU, STU, LDM, STM);
    if (wb)
        ROW_LOOP(PARTNER_BODY, __m512d, _mm512, 8, LDU, STU, LDM, STM);
#undef EXP
#undef LDU
#undef STU
#undef MASK_DECL
#undef LDM
#undef STM
}

/* Plane kernels: a strip of columns at a time, down the rows, the x-sums of
 * the last two rows kept in registers. Loads are masked in the last strip
 * (so nothing past the rim box is read); stores are whole vectors (sw is a
 * multiple of 8). */
#define PLANE_BODY(V, P, LOAD)                                                             \
    do {                                                                                   \
        V sa = P##_setzero_pd(), sb = P##_setzero_pd();                                   \
        const double *p = p0 + i;                                                          \
        for (ptrdiff_t j = 0; j < bh + 2; j++, p += sy) {                                  \
            const V d0 = P##_sub_pd(LOAD(p), LOAD(p + off));                               \
            const V d1 = P##_sub_pd(LOAD(p + 1), LOAD(p + off + 1));                       \
            const V d2 = P##_sub_pd(LOAD(p + 2), LOAD(p + off + 2));                       \
            const V s1 = P##_add_pd(P##_add_pd(P##_mul_pd(d0, d0), P##_mul_pd(d1, d1)),    \
                                    P##_mul_pd(d2, d2));                                   \
            if (j >= 2)                                                                    \
                P##_storeu_pd(s2 + (j - 2) * sw + i, P##_add_pd(P##_add_pd(sa, sb), s1));  \
            sa = sb;                                                                       \
            sb = s1;                                                                       \
        }                                                                                  \
    } while (0)

NLM_AVX2 static void plane_avx2(const nlm_ctx_t *c, const double *p0, ptrdiff_t off,
                                ptrdiff_t bw, ptrdiff_t bh, double *s2, ptrdiff_t sw) {
    const ptrdiff_t sy = c->sy;
    ptrdiff_t i = 0;
    for (; i + 4 <= bw; i += 4)
        PLANE_BODY(__m256d, _mm256, _mm256_loadu_pd);
    if (i < bw) {
        const __m256i m = _mm256_cmpgt_epi64(_mm256_set1_epi64x(bw - i),
                                             _mm256_setr_epi64x(0, 1, 2, 3));
#define LD(a) _mm256_maskload_pd(a, m)
        PLANE_BODY(__m256d, _mm256, LD);
#undef LD
    }
}

/* AVX-512: E for 16 columns from two loads of p and q each; the x+1 and x+2
 * neighbours come from register shifts (valignq), not from more loads. */
NLM_AVX512 static void plane_avx512(const nlm_ctx_t *c, const double *p0, ptrdiff_t off,
                                    ptrdiff_t bw, ptrdiff_t bh, double *s2, ptrdiff_t sw) {
    const ptrdiff_t sy = c->sy, ew = bw + 2;
    for (ptrdiff_t i = 0; i < bw; i += 8) {
        /* columns i .. i+15 of the rim, clipped to the ew it has */
        const ptrdiff_t left = ew - i;
        const __mmask8 ma = left >= 8 ? (__mmask8)0xff : (__mmask8)((1u << left) - 1);
        const __mmask8 mb = left >= 16  ? (__mmask8)0xff
                            : left <= 8 ? (__mmask8)0
                                        : (__mmask8)((1u << (left - 8)) - 1);
        __m512d sa = _mm512_setzero_pd(), sb = _mm512_setzero_pd();
        const double *p = p0 + i;
        for (ptrdiff_t j = 0; j < bh + 2; j++, p += sy) {
            const __m512d da =
                _mm512_sub_pd(_mm512_maskz_loadu_pd(ma, p), _mm512_maskz_loadu_pd(ma, p + off));
            const __m512d db = _mm512_sub_pd(_mm512_maskz_loadu_pd(mb, p + 8),
                                             _mm512_maskz_loadu_pd(mb, p + off + 8));
            const __m512i ea = _mm512_castpd_si512(_mm512_mul_pd(da, da));
            const __m512i eb = _mm512_castpd_si512(_mm512_mul_pd(db, db));
            const __m512d s1 = _mm512_add_pd(
                _mm512_add_pd(_mm512_castsi512_pd(ea),
                              _mm512_castsi512_pd(_mm512_alignr_epi64(eb, ea, 1))),
                _mm512_castsi512_pd(_mm512_alignr_epi64(eb, ea, 2)));
            if (j >= 2)
                _mm512_storeu_pd(s2 + (j - 2) * sw + i, _mm512_add_pd(_mm512_add_pd(sa, sb), s1));
            sa = sb;
            sb = s1;
        }
    }
}
/* The exp alone on an array (dmri_nlmeans_exp, for tests); the tail goes
 * through a zero-padded vector. */
#define EXP_ARRAY(V, P, W, EXPF)                                                           \
    do {                                                                                   \
        size_t i = 0;                                                                      \
        for (; i + W <= n; i += W)                                                         \
            P##_storeu_pd(y + i, EXPF(P##_loadu_pd(x + i)));                               \
        if (i < n) {                                                                       \
            double tmp[W] = {0};                                                           \
            memcpy(tmp, x + i, (n - i) * sizeof(double));                                  \
            P##_storeu_pd(tmp, EXPF(P##_loadu_pd(tmp)));                                   \
            memcpy(y + i, tmp, (n - i) * sizeof(double));                                  \
        }                                                                                  \
    } while (0)

NLM_AVX2 static void exp_array_avx2(const double *x, double *y, size_t n) {
    EXP_ARRAY(__m256d, _mm256, 4, exp_neg_avx2);
}

NLM_AVX512 static void exp_array_avx512(const double *x, double *y, size_t n) {
    EXP_ARRAY(__m512d, _mm512, 8, exp_neg_avx512);
}
#else
#define NLM_HAVE_SIMD 0
#endif

/* ---- the slab sweep, inlined into each instruction-set variant ---------- */

/* One offset on the tile rows [y0, y1) x [z0, z1) (acc: the accumulator
 * planes of z0 .. z0+RING-1, W then A). */
NLM_INLINE void nlm_offset(const nlm_ctx_t *c, const nlm_tile_ext_t *t, const int *d, int y0,
                           int y1, int z0, int z1, double *const *accw, double *const *acca,
                           nlm_plane_fn plane, nlm_row_fn row, int vlen) {
    /* each row's segment: hull of its own extent and its partner row's - dx */
    int xa[TILE_Z][TILE_Y], xb[TILE_Z][TILE_Y];
    const int nyt = y1 - y0, nzt = z1 - z0;
    int bx0 = EXT_NONE, bx1 = -EXT_NONE;
    for (int l = 0; l < nzt; l++) {
        const int *lo1 = t->lo[l] + REACH, *hi1 = t->hi[l] + REACH;
        const int *lo2 = t->lo[l + d[2]] + REACH + d[1], *hi2 = t->hi[l + d[2]] + REACH + d[1];
        for (int j = 0; j < nyt; j++) {
            xa[l][j] = imin(lo1[j], lo2[j] - d[0]);
            xb[l][j] = imax(hi1[j], hi2[j] - d[0]);
            bx0 = imin(bx0, xa[l][j]);
            bx1 = imax(bx1, xb[l][j]);
        }
    }
    if (bx0 >= bx1)
        return;
    int by0 = y1, by1 = y0, bz0 = z1, bz1 = z0;
    for (int l = 0; l < nzt; l++)
        for (int j = 0; j < nyt; j++)
            if (xa[l][j] < xb[l][j]) {
                by0 = imin(by0, y0 + j);
                by1 = imax(by1, y0 + j + 1);
                bz0 = imin(bz0, z0 + l);
                bz1 = z0 + l + 1;
            }

    const ptrdiff_t bw = bx1 - bx0, bh = by1 - by0, bd = bz1 - bz0;
    const ptrdiff_t sw = (bw + 7) / 8 * 8, pl = sw * bh;
    const ptrdiff_t off = d[0] + d[1] * c->sy + d[2] * c->sz;
    double *s2[3] = {c->scratch, c->scratch + pl, c->scratch + 2 * pl};

    for (ptrdiff_t l = 0; l < bd + 2; l++) {
        double *sy = s2[l % 3];
        plane(c, c->u + pidx(c, bx0 - 1, by0 - 1, bz0 - 1 + (int)l), off, bw, bh, sy, sw);
        if (l < 2)
            continue;
        /* plane z of first voxels: z-sums, weights, scatter */
        const int z = bz0 + (int)l - 2;
        const double *za = s2[(l - 2) % 3], *zb = s2[(l - 1) % 3];
        double *w1p = accw[z - z0], *a1p = acca[z - z0];
        double *w2p = accw[z + d[2] - z0], *a2p = acca[z + d[2] - z0];
        for (int y = by0; y < by1; y++) {
            const int xa0 = xa[z - z0][y - y0], xb0 = xb[z - z0][y - y0];
            if (xa0 >= xb0)
                continue;
            /* Pad the segment to whole vectors inside the box: the extra
             * first voxels pair with no masked voxel, so their (correct)
             * weights only reach accumulators that are never read. */
            int xs = xa0, n = xb0 - xa0;
            const int nv = (n + vlen - 1) / vlen * vlen;
            if (nv <= bw) {
                xs = imin(xs, bx1 - nv);
                n = nv;
            }
            const ptrdiff_t col = (y - by0) * sw + (xs - bx0);
            const double *u1 = c->u + pidx(c, xs, y, z);
            const ptrdiff_t o1 = (xs + REACH) + (y + REACH) * c->ax;
            const ptrdiff_t o2 = o1 + d[0] + d[1] * c->ax;
            row(c, za + col, zb + col, sy + col, u1, u1 + off, w1p + o1, a1p + o1, w2p + o2,
                a2p + o2, d[1] == 0 && d[2] == 0 ? c->rows : NULL, n);
        }
    }
}

/* The tile's table of row extents, for its rows and the partner rows they
 * reach: rows y0-4 .. y0+TILE_Y+3 of planes z0 .. z0+TILE_Z+3. Rows outside
 * the slab are empty (EXT_NONE, -EXT_NONE). Returns whether any is not. */
static int tile_ext(const nlm_ctx_t *c, int y0, int z0, nlm_tile_ext_t *t) {
    int any = 0;
    for (int l = 0; l < TILE_Z + REACH; l++)
        for (int j = 0; j < TILE_Y + 2 * REACH; j++) {
            const int y = y0 - REACH + j, z = z0 + l;
            t->lo[l][j] = EXT_NONE;
            t->hi[l][j] = -EXT_NONE;
            if (y >= 0 && y < c->ny && z >= 0 && z < c->nzs) {
                const int *e = c->ext + 2 * ((ptrdiff_t)z * c->ny + y);
                if (e[0] < e[1]) {
                    t->lo[l][j] = e[0];
                    t->hi[l][j] = e[1];
                    any = 1;
                }
            }
        }
    return any;
}

NLM_INLINE void nlm_slab(const nlm_ctx_t *c, nlm_plane_fn plane, nlm_row_fn row, int vlen) {
    const ptrdiff_t aplane = c->aplane;
    memset(c->accw, 0, sizeof(double) * (size_t)(RING * aplane));
    memset(c->acca, 0, sizeof(double) * (size_t)(RING * aplane));
    for (int z0 = -REACH; z0 < c->nzs;) {
        /* the layer ends at the next global boundary (zg + z0 + REACH >= 0) */
        const int z1 = imin(z0 + TILE_Z - (c->zg + z0 + REACH) % TILE_Z, c->nzs);
        double *accw[RING], *acca[RING];
        for (int k = 0; k < RING; k++) {
            const ptrdiff_t slot = (ptrdiff_t)((z0 + REACH + k) % RING) * aplane;
            accw[k] = c->accw + slot;
            acca[k] = c->acca + slot;
        }
        for (int y0 = -REACH; y0 < c->ny + REACH; y0 += TILE_Y) {
            const int y1 = imin(y0 + TILE_Y, c->ny + REACH);
            nlm_tile_ext_t t;
            if (tile_ext(c, y0, z0, &t))
                for (int k = 0; k < NHALF; k++)
                    nlm_offset(c, &t, c->hd[k], y0, y1, z0, z1, accw, acca, plane, row, vlen);
        }
        /* planes [z0, z1) are complete: write them out and recycle them */
        for (int z = z0; z < z1; z++) {
            const double *aw = accw[z - z0], *aa = acca[z - z0];
            for (int y = 0; z >= 0 && y < c->ny; y++) {
                const size_t orow = ((size_t)z * c->ny + y) * (size_t)c->nx;
                const ptrdiff_t arow = REACH + (y + REACH) * c->ax;
                const double *u = c->u + pidx(c, 0, y, z);
                for (int x = 0; x < c->nx; x++) {
                    if (!c->mask[orow + x])
                        continue;
                    /* d = 0: w = 1 and w u^2 = u^2 */
                    const double sw = aw[arow + x] + 1.0;
                    const double sa = aa[arow + x] + u[x] * u[x];
                    c->out[orow + x] =
                        nlmeans_finish(sw > 0 ? sa / sw : 0.0, c->sigma, c->rician);
                }
            }
            memset(accw[z - z0], 0, sizeof(double) * (size_t)aplane);
            memset(acca[z - z0], 0, sizeof(double) * (size_t)aplane);
        }
        z0 = z1;
    }
}

static void slab_scalar(const nlm_ctx_t *c) { nlm_slab(c, plane_scalar, row_scalar, 1); }
#if NLM_HAVE_SIMD
NLM_AVX2 static void slab_avx2(const nlm_ctx_t *c) { nlm_slab(c, plane_avx2, row_avx2, 4); }
NLM_AVX512 static void slab_avx512(const nlm_ctx_t *c) { nlm_slab(c, plane_avx512, row_avx512, 8); }

static int cpu_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static int cpu_avx512(void) {
    return cpu_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw");
}
#endif
/* ---- dispatch ---------------------------------------------------------- */

enum { ISA_AUTO, ISA_SCALAR, ISA_AVX2, ISA_AVX512 };
static const char *const isa_names[] = {"auto", "scalar", "avx2", "avx512"};

/* Process-wide choice; set once before the workers start (tests, benches). */
static _Atomic int isa_forced = ISA_AUTO;

static int isa_supported(int isa) {
#if NLM_HAVE_SIMD
    if (isa == ISA_AVX512)
        return cpu_avx512();
    if (isa == ISA_AVX2)
        return cpu_avx2();
#endif
    return isa == ISA_SCALAR || isa == ISA_AUTO;
}

static int isa_current(void) {
    const int f = atomic_load(&isa_forced);
    if (f != ISA_AUTO)
        return f;
    if (isa_supported(ISA_AVX512))
        return ISA_AVX512;
    if (isa_supported(ISA_AVX2))
        return ISA_AVX2;
    return ISA_SCALAR;
}

int dmri_nlmeans_set_isa(const char *name) {
    int isa = -1;
    if (!name || !*name)
        isa = ISA_AUTO;
    for (int i = 0; i < 4 && isa < 0; i++)
        if (!strcmp(name, isa_names[i]))
            isa = i;
    if (isa < 0)
        return DMRI_EINVAL;
    if (!isa_supported(isa))
        return DMRI_EUNSUP;
    atomic_store(&isa_forced, isa);
    return 0;
}

const char *dmri_nlmeans_isa(void) { return isa_names[isa_current()]; }

void dmri_nlmeans_exp(const double *x, double *y, size_t n) {
    switch (isa_current()) {
#if NLM_HAVE_SIMD
    case ISA_AVX512: exp_array_avx512(x, y, n); return;
    case ISA_AVX2: exp_array_avx2(x, y, n); return;
#endif
    default:
        for (size_t i = 0; i < n; i++)
            y[i] = exp(x[i]);
    }
}

void dmri_nlmeans_block(const double *padded, int nx, int ny, int z0, int nzs,
                        const uint8_t *mask, double sigma, int rician, double *out,
                        double *workspace) {
    assert(z0 >= 0 && nzs >= 1);
    memset(out, 0, (size_t)nx * (size_t)ny * (size_t)nzs * sizeof *out);
    const double denom = nlmeans_denom(sigma);
    const double kneg = -1.0 / (PATCH_VOL * denom);
    if (!(denom > 0 && denom < INFINITY && kneg > -INFINITY)) {
        /* sigma 0 (every weight sum NaN: all outputs 0), NaN, infinite or so
         * small that 1/(27 denom) overflows: rare enough for the dipy loop */
        dmri_nlmeans_block_reference(padded, nx, ny, nzs, mask, sigma, rician, out);
        return;
    }
    nlm_ctx_t c;
    c.u = padded;
    c.mask = mask;
    c.out = out;
    c.nx = nx;
    c.ny = ny;
    c.nzs = nzs;
    c.zg = z0;
    c.sy = nx + 2 * HALO;
    c.sz = c.sy * (ny + 2 * HALO);
    c.sigma = sigma;
    c.denom = denom;
    c.rician = rician;
    c.kneg = kneg;
    c.ax = nx + 2 * REACH;
    c.aplane = c.ax * (ny + 2 * REACH);
    c.accw = workspace;
    c.acca = c.accw + RING * c.aplane;
    c.scratch = c.acca + RING * c.aplane;
    c.rows = c.scratch + 3 * sum_plane_len(nx);
    c.ext = (int *)(void *)(c.rows + 3 * (nx + 2 * REACH));
    /* each slab row's mask extent: first masked x, last + 1 (empty: nx, 0) */
    for (int z = 0; z < nzs; z++)
        for (int y = 0; y < ny; y++) {
            const uint8_t *m = mask + ((size_t)z * ny + y) * (size_t)nx;
            int *e = c.ext + 2 * ((ptrdiff_t)z * ny + y);
            e[0] = nx;
            e[1] = 0;
            for (int x = 0; x < nx; x++)
                if (m[x]) {
                    e[0] = imin(e[0], x);
                    e[1] = x + 1;
                }
        }
    half_offsets(c.hd);
    switch (isa_current()) {
#if NLM_HAVE_SIMD
    case ISA_AVX512: slab_avx512(&c); break;
    case ISA_AVX2: slab_avx2(&c); break;
#endif
    default: slab_scalar(&c); break;
    }
}
