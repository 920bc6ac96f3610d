/* nlmeans: dipy 1.6's classic non-local means (PIPELINE.md Step 6) on a padded
 * z-slab: the mirror padding, a fast offset-major box-filter kernel for a
 * per-volume scalar sigma, and a voxel-by-voxel reference in dipy's order.
 *
 * Memory layout everywhere: x fastest. dipy runs over C-ordered [x, y, z]
 * arrays, so its outermost search and patch loops are over x and its innermost
 * over z; the reference below keeps that order, which is what makes it
 * bit-identical. */
#include "nlmeans.h"

#include "dmri_err.h"

#include <assert.h>
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

/* With one sigma per volume, w(x, x+d) = w(x+d, x): the patch distance is the
 * same sum of the same squares. So only the 364 "positive" offsets d (dz > 0,
 * or dz == 0 and dy > 0, or dz == dy == 0 and dx > 0) are computed, and each
 * weight is added to both voxels of its pair: W[x] += w, A[x] += w u[x+d]^2
 * and W[x+d] += w, A[x+d] += w u[x]^2; d = 0 contributes w = 1 and u[x]^2.
 * The output is sqrt(max(A/W - 2 sigma^2, 0)).
 *
 * A pair is needed when either of its voxels is a masked output voxel, so the
 * first voxel x runs over the slab grown by 4 in x and y and by 4 downwards in
 * z (x+d is then at most 4 voxels further up). Accumulators cover that grown
 * grid, as a ring of z planes: the slab is swept in layers of TILE_Z planes
 * from z = -4 upwards, a layer adds to its own planes and the 4 above, and
 * once a layer is done its planes are final, are written out and recycled.
 *
 * Within a layer the x-y plane is cut into TILE_X x TILE_Y tiles. For each
 * tile and offset, the first voxels that can pair with a masked voxel lie in
 * the bounding box of (MB u (MB - d)) clipped to the tile, MB being the
 * bounding box of the mask voxels the tile can reach. On that box:
 *   E = (u[v] - u[v+d])^2 on the box and a 1-voxel rim,
 *   D = E summed over 3 along x, then y, then z (flat loops over the rim
 *       layout; rim columns hold junk that is never read back),
 *   w = exp(-(D/27)/denom), then the scatter to both voxels of each pair.
 *
 * Against dipy: D is summed in another order (~1 ulp), the vectorised exp
 * is within 1 ulp of glibc's, W and A are summed in another order and A is
 * divided by W once. The result differs from dipy's float64 by ~1e-16
 * relative (more in the output next to the Rician clip); after the cast to
 * float32 no value differed in any of our tests (tests/parity/test_nlmeans.py).
 *
 * Everything is written as plain loops inlined into one copy per instruction
 * set (scalar with glibc exp, AVX2+FMA, AVX-512), chosen at run time, so that
 * the default build runs on any x86-64 and the loops vectorise per ISA. */

#define NHALF 364    /* (NOFF - 1) / 2 positive offsets */
#define REACH SEARCH /* how far a pair partner can be */

/* Tile of first voxels: TILE_X x TILE_Y in x-y, TILE_Z planes per layer. The
 * -D override is for benchmarking only. */
#ifndef TILE_X
#define TILE_X 32
#endif
#ifndef TILE_Y
#define TILE_Y 8
#endif
#ifndef TILE_Z
#define TILE_Z 4
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define NLM_INLINE static inline __attribute__((always_inline))
#else
#define NLM_INLINE static inline
#endif

double nlm_stat_w, nlm_stat_e, nlm_stat_n;
static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* Everything one slab needs; ring planes and scratch point into the caller's
 * workspace. */
typedef struct {
    const double *u;     /* padded block */
    const uint8_t *mask; /* nx*ny*nzs */
    double *out;
    int nx, ny, nzs;
    ptrdiff_t sy, sz; /* padded strides (x stride 1) */
    double sigma, denom;
    int rician;
    ptrdiff_t ax, aplane; /* accumulator row length (nx+8) and plane size */
    int ring;             /* accumulator planes: TILE_Z + 4 */
    double *accw, *acca;  /* ring * aplane each: sums of w and of w u^2 */
    double *bufa, *bufb;  /* scratch: E then S2; S1 then D then w */
    int hd[NHALF][3];     /* the positive offsets (dx, dy, dz) */
} nlm_ctx_t;

static size_t scratch_len(void) {
    return (size_t)(TILE_X + 2) * (TILE_Y + 2) * (TILE_Z + 2);
}

static int ring_planes(int nzs) { return imin(TILE_Z, nzs) + REACH; }

size_t dmri_nlmeans_workspace_len(int nx, int ny, int nzs) {
    const size_t aplane = (size_t)(nx + 2 * REACH) * (size_t)(ny + 2 * REACH);
    return 2 * (size_t)ring_planes(nzs) * aplane + 2 * scratch_len();
}

/* Positive offsets, in dipy's order restricted to the positive half. */
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

/* Accumulator index of grid voxel (x, y, z), z >= -REACH. */
static ptrdiff_t aidx(const nlm_ctx_t *c, int x, int y, int z) {
    return (x + REACH) + (y + REACH) * c->ax + (ptrdiff_t)((z + REACH) % c->ring) * c->aplane;
}

/* exp(-(D/27)/denom) over n values, in place. One per instruction set. */
typedef void (*nlm_weights_fn)(double *d, ptrdiff_t n, double denom);

static void weights_scalar(double *d, ptrdiff_t n, double denom) {
    for (ptrdiff_t k = 0; k < n; k++)
        d[k] = exp(-(d[k] / PATCH_VOL) / denom);
}

/* aw[i] += w[i], aa[i] += (w[i] * v[i]) * v[i]: the same product as dipy's
 * (w/W * u) * u, without the division, which is done once at the end. */
NLM_INLINE void scatter_row(double *restrict aw, double *restrict aa, const double *restrict w,
                            const double *restrict v, int n) {
    for (int i = 0; i < n; i++) {
        aw[i] += w[i];
        aa[i] += (w[i] * v[i]) * v[i];
    }
}

/* One offset on the box [b0, b1) (first voxels), E and sums as described at
 * the top of this section. */
NLM_INLINE void nlm_offset(const nlm_ctx_t *c, const int *d, const int *b0, const int *b1,
                           nlm_weights_fn weights) {
    const int bw = b1[0] - b0[0], bh = b1[1] - b0[1], bd = b1[2] - b0[2];
    const ptrdiff_t ew = bw + 2, eh = bh + 2, ed = bd + 2, pl = ew * eh, ne = pl * ed;
    const ptrdiff_t off = d[0] + d[1] * c->sy + d[2] * c->sz;
    double *restrict e = c->bufa, *restrict s1 = c->bufb;

    for (ptrdiff_t l = 0; l < ed; l++)
        for (ptrdiff_t j = 0; j < eh; j++) {
            const double *restrict p = c->u + pidx(c, b0[0] - 1, b0[1] - 1 + (int)j,
                                                    b0[2] - 1 + (int)l);
            const double *restrict q = p + off;
            double *restrict er = e + (l * eh + j) * ew;
            for (ptrdiff_t i = 0; i < ew; i++) {
                const double t = p[i] - q[i];
                er[i] = t * t;
            }
        }
    /* along x; the last two columns of each row get junk */
    for (ptrdiff_t k = 0; k < ne - 2; k++)
        s1[k] = e[k] + e[k + 1] + e[k + 2];
    /* along y, into e (no longer needed); the last two rows get junk */
    double *restrict s2 = c->bufa;
    for (ptrdiff_t k = 0; k < ne - 2 - 2 * ew; k++)
        s2[k] = s1[k] + s1[k + ew] + s1[k + 2 * ew];
    /* along z, into s1, compacted to bw x bh x bd */
    double *restrict dd = c->bufb;
    for (ptrdiff_t l = 0; l < bd; l++)
        for (ptrdiff_t j = 0; j < bh; j++) {
            const double *restrict a = s2 + l * pl + j * ew;
            double *restrict o = dd + (l * bh + j) * bw;
            for (ptrdiff_t i = 0; i < bw; i++)
                o[i] = a[i] + a[i + pl] + a[i + 2 * pl];
        }
    weights(dd, (ptrdiff_t)bw * bh * bd, c->denom);

    for (int l = 0; l < bd; l++)
        for (int j = 0; j < bh; j++) {
            const int x = b0[0], y = b0[1] + j, z = b0[2] + l;
            const double *w = dd + ((ptrdiff_t)l * bh + j) * bw;
            const double *u1 = c->u + pidx(c, x, y, z);
            const ptrdiff_t a1 = aidx(c, x, y, z);
            const ptrdiff_t a2 = aidx(c, x + d[0], y + d[1], z + d[2]);
            scatter_row(c->accw + a1, c->acca + a1, w, u1 + off, bw);
            scatter_row(c->accw + a2, c->acca + a2, w, u1, bw);
        }
}

/* All offsets for the tile [t0, t1) of first voxels (z = the layer). */
NLM_INLINE void nlm_tile(const nlm_ctx_t *c, const int *t0, const int *t1,
                         nlm_weights_fn weights) {
    /* Bounding box of the masked voxels any pair of the tile can reach. */
    int m0[3] = {c->nx, c->ny, c->nzs}, m1[3] = {0, 0, 0};
    const int lo[3] = {imax(t0[0] - REACH, 0), imax(t0[1] - REACH, 0), imax(t0[2], 0)};
    const int hi[3] = {imin(t1[0] + REACH, c->nx), imin(t1[1] + REACH, c->ny),
                       imin(t1[2] + REACH, c->nzs)};
    for (int z = lo[2]; z < hi[2]; z++)
        for (int y = lo[1]; y < hi[1]; y++) {
            const uint8_t *m = c->mask + ((size_t)z * c->ny + y) * (size_t)c->nx;
            for (int x = lo[0]; x < hi[0]; x++)
                if (m[x]) {
                    m0[0] = imin(m0[0], x);
                    m1[0] = imax(m1[0], x + 1);
                    m0[1] = imin(m0[1], y);
                    m1[1] = imax(m1[1], y + 1);
                    m0[2] = imin(m0[2], z);
                    m1[2] = z + 1;
                }
        }
    if (m0[0] >= m1[0])
        return;
    for (int k = 0; k < NHALF; k++) {
        const int *d = c->hd[k];
        int b0[3], b1[3], empty = 0;
        for (int a = 0; a < 3; a++) {
            b0[a] = imax(t0[a], imin(m0[a], m0[a] - d[a]));
            b1[a] = imin(t1[a], imax(m1[a], m1[a] - d[a]));
            empty |= b0[a] >= b1[a];
        }
        if (!empty) {
            nlm_offset(c, d, b0, b1, weights);
            nlm_stat_w += (double)(b1[0]-b0[0])*(b1[1]-b0[1])*(b1[2]-b0[2]);
            nlm_stat_e += (double)(b1[0]-b0[0]+2)*(b1[1]-b0[1]+2)*(b1[2]-b0[2]+2);
            nlm_stat_n += 1;
        }
    }
}

/* The whole slab: layers of TILE_Z planes from z = -REACH. */
NLM_INLINE void nlm_slab(nlm_ctx_t *c, nlm_weights_fn weights) {
    const ptrdiff_t aplane = c->aplane;
    memset(c->accw, 0, sizeof(double) * (size_t)(c->ring * aplane));
    memset(c->acca, 0, sizeof(double) * (size_t)(c->ring * aplane));
    for (int z0 = -REACH; z0 < c->nzs;) {
        const int z1 = imin(z0 + TILE_Z, c->nzs);
        for (int y0 = -REACH; y0 < c->ny + REACH; y0 += TILE_Y)
            for (int x0 = -REACH; x0 < c->nx + REACH; x0 += TILE_X) {
                const int t0[3] = {x0, y0, z0};
                const int t1[3] = {imin(x0 + TILE_X, c->nx + REACH),
                                   imin(y0 + TILE_Y, c->ny + REACH), z1};
                nlm_tile(c, t0, t1, weights);
            }
        /* planes [z0, z1) are complete: write them out and recycle them */
        for (int z = z0; z < z1; z++) {
            double *aw = c->accw + aidx(c, 0, -REACH, z) - REACH;
            double *aa = c->acca + aidx(c, 0, -REACH, z) - REACH;
            if (z >= 0)
                for (int y = 0; y < c->ny; y++) {
                    const size_t row = ((size_t)z * c->ny + y) * (size_t)c->nx;
                    const ptrdiff_t a = aidx(c, 0, y, z);
                    const double *u = c->u + pidx(c, 0, y, z);
                    for (int x = 0; x < c->nx; x++) {
                        if (!c->mask[row + x])
                            continue;
                        /* d = 0: w = 1, w u^2 = u^2 */
                        const double sw = c->accw[a + x] + 1.0;
                        const double sa = c->acca[a + x] + u[x] * u[x];
                        c->out[row + x] = nlmeans_finish(sw > 0 ? sa / sw : 0.0, c->sigma,
                                                         c->rician);
                    }
                }
            memset(aw, 0, sizeof(double) * (size_t)aplane);
            memset(aa, 0, sizeof(double) * (size_t)aplane);
        }
        z0 = z1;
    }
}

static void slab_scalar(nlm_ctx_t *c) { nlm_slab(c, weights_scalar); }

/* ---- vectorised exp and the SIMD variants (x86-64, gcc/clang) ---------- */

#if defined(__x86_64__) && defined(__GNUC__)
#define NLM_HAVE_SIMD 1
#include <immintrin.h>

/* exp(x) for x <= 0 (or NaN), within 1 ulp: x = n ln2 + r, |r| <= ln2/2,
 * with ln2 split Cody-Waite style (n * LN2_HI is exact, so is x - n*LN2_HI)
 * and the rounding error of r kept in rlo; exp(r) = 1 + (r + r^2 q(r)),
 * q a degree-10 near-minimax fit of (exp(r) - 1 - r)/r^2 (Chebyshev
 * interpolation, error 1.4e-18). 2^n is applied as 2^(n+512) * 2^-512 so
 * that results down to the subnormals are rounded once; x < -745.2 gives 0.
 * The same operation sequence in every variant: AVX2 and AVX-512 results are
 * bit-identical. */
#define EXP_LOG2E 0x1.71547652b82fep0
#define EXP_SHIFT 0x1.8p52
#define EXP_LN2_HI 0x1.62e42feep-1 /* 0x3fe62e42fee00000: 32 significant bits */
#define EXP_LN2_LO 0x1.a39ef35793c76p-33
#define EXP_MIN (-745.2)
#define EXP_Q0 0x1.0000000000000p-1
#define EXP_Q1 0x1.5555555555557p-3
#define EXP_Q2 0x1.5555555555556p-5
#define EXP_Q3 0x1.11111111100cep-7
#define EXP_Q4 0x1.6c16c16c162ccp-10
#define EXP_Q5 0x1.a01a01abef415p-13
#define EXP_Q6 0x1.a01a01a6dcaffp-16
#define EXP_Q7 0x1.71de021a90822p-19
#define EXP_Q8 0x1.27e4db57442fbp-22
#define EXP_Q9 0x1.af4e196027428p-26
#define EXP_Q10 0x1.1f731ea5352cap-29

#define NLM_AVX2 __attribute__((target("avx2,fma")))
#define NLM_AVX512                                                                          \
    __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,"                  \
                          "prefer-vector-width=512")))

NLM_AVX2 static inline __m256d exp_neg_avx2(__m256d x) {
    const __m256d t = _mm256_fmadd_pd(x, _mm256_set1_pd(EXP_LOG2E), _mm256_set1_pd(EXP_SHIFT));
    const __m256d n = _mm256_sub_pd(t, _mm256_set1_pd(EXP_SHIFT));
    const __m256d r1 = _mm256_fnmadd_pd(n, _mm256_set1_pd(EXP_LN2_HI), x);
    const __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(EXP_LN2_LO), r1);
    const __m256d rlo =
        _mm256_fnmadd_pd(n, _mm256_set1_pd(EXP_LN2_LO), _mm256_sub_pd(r1, r));
    __m256d q = _mm256_set1_pd(EXP_Q10);
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q9));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q8));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q7));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q6));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q5));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q4));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q3));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q2));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q1));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(EXP_Q0));
    const __m256d s = _mm256_fmadd_pd(_mm256_mul_pd(r, r), q, rlo);
    const __m256d y = _mm256_add_pd(_mm256_set1_pd(1.0), _mm256_add_pd(r, s));
    const __m256i k = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023 + 512)), 52);
    const __m256d v =
        _mm256_mul_pd(_mm256_mul_pd(y, _mm256_castsi256_pd(k)), _mm256_set1_pd(0x1p-512));
    /* below EXP_MIN: 0 (also -inf); NaN compares false and stays NaN */
    return _mm256_andnot_pd(_mm256_cmp_pd(x, _mm256_set1_pd(EXP_MIN), _CMP_LT_OQ), v);
}

NLM_AVX512 static inline __m512d exp_neg_avx512(__m512d x) {
    const __m512d t = _mm512_fmadd_pd(x, _mm512_set1_pd(EXP_LOG2E), _mm512_set1_pd(EXP_SHIFT));
    const __m512d n = _mm512_sub_pd(t, _mm512_set1_pd(EXP_SHIFT));
    const __m512d r1 = _mm512_fnmadd_pd(n, _mm512_set1_pd(EXP_LN2_HI), x);
    const __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(EXP_LN2_LO), r1);
    const __m512d rlo =
        _mm512_fnmadd_pd(n, _mm512_set1_pd(EXP_LN2_LO), _mm512_sub_pd(r1, r));
    __m512d q = _mm512_set1_pd(EXP_Q10);
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q9));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q8));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q7));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q6));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q5));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q4));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q3));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q2));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q1));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(EXP_Q0));
    const __m512d s = _mm512_fmadd_pd(_mm512_mul_pd(r, r), q, rlo);
    const __m512d y = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_add_pd(r, s));
    const __m512i k = _mm512_slli_epi64(
        _mm512_add_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(1023 + 512)), 52);
    const __m512d v =
        _mm512_mul_pd(_mm512_mul_pd(y, _mm512_castsi512_pd(k)), _mm512_set1_pd(0x1p-512));
    const __mmask8 under = _mm512_cmp_pd_mask(x, _mm512_set1_pd(EXP_MIN), _CMP_LT_OQ);
    return _mm512_maskz_mov_pd((__mmask8)~under, v);
}

/* The argument exactly as dipy forms it: -(D / 27) / denom. */
NLM_AVX2 static void weights_avx2(double *d, ptrdiff_t n, double denom) {
    const __m256d c27 = _mm256_set1_pd(PATCH_VOL), den = _mm256_set1_pd(denom);
    const __m256d neg = _mm256_set1_pd(-0.0);
    ptrdiff_t k = 0;
    for (; k + 4 <= n; k += 4) {
        const __m256d a = _mm256_div_pd(_mm256_div_pd(_mm256_loadu_pd(d + k), c27), den);
        _mm256_storeu_pd(d + k, exp_neg_avx2(_mm256_xor_pd(a, neg)));
    }
    if (k < n) {
        double tmp[4] = {0, 0, 0, 0};
        memcpy(tmp, d + k, sizeof(double) * (size_t)(n - k));
        const __m256d a = _mm256_div_pd(_mm256_div_pd(_mm256_loadu_pd(tmp), c27), den);
        _mm256_storeu_pd(tmp, exp_neg_avx2(_mm256_xor_pd(a, neg)));
        memcpy(d + k, tmp, sizeof(double) * (size_t)(n - k));
    }
}

NLM_AVX512 static void weights_avx512(double *d, ptrdiff_t n, double denom) {
    const __m512d c27 = _mm512_set1_pd(PATCH_VOL), den = _mm512_set1_pd(denom);
    const __m512d neg = _mm512_set1_pd(-0.0);
    ptrdiff_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m512d a = _mm512_div_pd(_mm512_div_pd(_mm512_loadu_pd(d + k), c27), den);
        _mm512_storeu_pd(d + k, exp_neg_avx512(_mm512_xor_pd(a, neg)));
    }
    if (k < n) {
        const __mmask8 m = (__mmask8)((1u << (n - k)) - 1);
        const __m512d a =
            _mm512_div_pd(_mm512_div_pd(_mm512_maskz_loadu_pd(m, d + k), c27), den);
        _mm512_mask_storeu_pd(d + k, m, exp_neg_avx512(_mm512_xor_pd(a, neg)));
    }
}

NLM_AVX2 static void slab_avx2(nlm_ctx_t *c) { nlm_slab(c, weights_avx2); }
NLM_AVX512 static void slab_avx512(nlm_ctx_t *c) { nlm_slab(c, weights_avx512); }

static int cpu_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static int cpu_avx512(void) {
    return cpu_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw");
}
#else
#define NLM_HAVE_SIMD 0
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

void dmri_nlmeans_block(const double *padded, int nx, int ny, int nzs, const uint8_t *mask,
                        double sigma, int rician, double *out, double *workspace) {
    memset(out, 0, (size_t)nx * (size_t)ny * (size_t)nzs * sizeof *out);
    const double denom = nlmeans_denom(sigma);
    if (!(denom > 0 && denom < INFINITY)) {
        /* sigma 0 (every weight sum NaN: all outputs 0), huge or NaN: rare
         * enough for the plain dipy loop */
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
    c.sy = nx + 2 * HALO;
    c.sz = c.sy * (ny + 2 * HALO);
    c.sigma = sigma;
    c.denom = denom;
    c.rician = rician;
    c.ax = nx + 2 * REACH;
    c.aplane = c.ax * (ny + 2 * REACH);
    c.ring = ring_planes(nzs);
    c.accw = workspace;
    c.acca = c.accw + (size_t)c.ring * (size_t)c.aplane;
    c.bufa = c.acca + (size_t)c.ring * (size_t)c.aplane;
    c.bufb = c.bufa + scratch_len();
    half_offsets(c.hd);
    switch (isa_current()) {
#if NLM_HAVE_SIMD
    case ISA_AVX512: slab_avx512(&c); break;
    case ISA_AVX2: slab_avx2(&c); break;
#endif
    default: slab_scalar(&c); break;
    }
}
