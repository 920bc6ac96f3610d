/* median: the exact 3-D median filter of median_otsu (PIPELINE.md Step 4a),
 * bit-identical to scipy.ndimage.median_filter(mode="reflect").
 *
 * Normal path (no NaN, no -0.0 near the slab). For one output row (y, z) the
 * (2r+1)^2 input rows of its windows are transposed into a buffer whose
 * element [xi][c][s] is input (x = xi - r, row slot s, z offset c), so the
 * window of voxel x is the contiguous run of (2r+1)^3 values starting at
 * [x]. Row slots are a ring keyed by y (slot = padded y mod 2r+1): moving to
 * the next row reloads one slot. A window is a set -- selection does not
 * care about order -- so any slot order is fine.
 *
 * Selection: medians of neighbouring voxels are close, so each voxel first
 * predicts its median from those already written and brackets it with
 * three values lo <= q <= hi (q the prediction). One vector pass counts the
 * window values below lo, below and equal to q, and up to hi; if rank k is
 * among q's ties the answer is q (plateaus and the zero background cost one
 * pass), else, if it lies in [lo, hi], the few values there are packed and
 * ranked. A miss moves the bracket; after two misses an exact quickselect on
 * the values beyond the failed bound finishes. The answer is always a value
 * of the window found by exact counting, and without NaN and -0.0 equal
 * values have equal bits, so any exact selection of rank k returns scipy's
 * bits; the prediction only decides the speed.
 *
 * With a NaN or a -0.0 in the part of the volume the slab reads, the element
 * returned (not only its value) depends on the algorithm: then the window is
 * gathered in scipy's order (x offset slowest, z offset fastest) and scipy's
 * own NI_Select runs on it.
 *
 * ISAs: AVX-512 (mask-register counting, compress packing, all-pairs ranking
 * in registers) and portable scalar loops; both exact, so the same bits. */
#include "median.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"
#include "dmri_err.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define MED_HAVE_SIMD 1
#include <immintrin.h>
#define MED_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,popcnt")))
#else
#define MED_HAVE_SIMD 0
#endif

/* Target number of window values either side of the prediction: the
 * bracket half-width is set from the density of values the last bracket
 * found. Larger brackets miss less often but pack and rank more values. */
#define MED_K 16
/* Largest packed set ranked with vector compares (4 AVX-512 registers of f32). */
#define MED_SMALL 64
/* Bracket moves after a miss before an exact selection takes over. */
#define MED_GALLOP 2
/* Slack after each buffer: full-vector stores past the last packed value. */
#define MED_PAD 64

size_t dmri_median3d_workspace_len(int radius) {
    size_t w = 2 * (size_t)radius + 1;
    return 3 * w * w * w; /* used by the scipy-order path: plane ring + two buffers */
}

/* scipy "reflect" (half-sample symmetric), periodic with period 2n so that
 * windows larger than the axis stay valid. */
static int reflect_index(int i, int n) {
    int p = 2 * n;
    int j = i % p;
    if (j < 0)
        j += p;
    return j >= n ? p - 1 - j : j;
}

/* Index tables shared by both element types and both paths. */
typedef struct {
    int *rx, *ry, *rz; /* reflected coordinate of (i - radius), i in [0, n + 2r) */
    size_t *off;       /* scipy path: (y, z) offset of each plane element, w*w entries */
    int *tag;          /* scipy path: x coordinate held by each ring slot, -1 if none */
} median_tables_t;

static void median_tables_init(median_tables_t *t, int nx, int ny, int nz, int r) {
    int w = 2 * r + 1;
    t->rx = dmri_malloc(sizeof(int) * (size_t)(nx + 2 * r));
    t->ry = dmri_malloc(sizeof(int) * (size_t)(ny + 2 * r));
    t->rz = dmri_malloc(sizeof(int) * (size_t)(nz + 2 * r));
    t->off = dmri_malloc(sizeof(size_t) * (size_t)w * (size_t)w);
    t->tag = dmri_malloc(sizeof(int) * (size_t)w);
    for (int i = 0; i < nx + 2 * r; i++)
        t->rx[i] = reflect_index(i - r, nx);
    for (int i = 0; i < ny + 2 * r; i++)
        t->ry[i] = reflect_index(i - r, ny);
    for (int i = 0; i < nz + 2 * r; i++)
        t->rz[i] = reflect_index(i - r, nz);
}

static void median_tables_free(median_tables_t *t) {
    dmri_free(t->rx);
    dmri_free(t->ry);
    dmri_free(t->rz);
    dmri_free(t->off);
    dmri_free(t->tag);
}

/* Plane offsets for output row (y, z): element (b, c) reads (ry, rz). */
static void median_row_offsets(median_tables_t *t, int nx, int ny, int y, int z, int w) {
    size_t nxny = (size_t)nx * (size_t)ny;
    for (int b = 0; b < w; b++) {
        size_t oy = (size_t)t->ry[y + b] * (size_t)nx;
        for (int c = 0; c < w; c++)
            t->off[b * w + c] = oy + (size_t)t->rz[z + c] * nxny;
    }
    for (int s = 0; s < w; s++)
        t->tag[s] = -1;
}

/* ------------------------------------------------------------------------
 * scipy-order path (NaN or -0.0 present) */

/* NI_Select of scipy (ni_filters.c), made iterative: same pivots, same swaps,
 * so the same element is returned. NaNs make every comparison false, which
 * keeps both scans in bounds exactly as in scipy. Selecting on float instead
 * of scipy's double buffer changes nothing: widening is exact and preserves
 * every comparison. */
#define DMRI_MEDIAN_SELECT_SCIPY(T, SUF)                                      \
    static T median_select_scipy_##SUF(T *buf, ptrdiff_t n, ptrdiff_t rank) { \
        ptrdiff_t lo = 0, hi = n - 1;                                         \
        while (lo != hi) {                                                    \
            T x = buf[lo];                                                    \
            ptrdiff_t i = lo - 1, j = hi + 1;                                 \
            for (;;) {                                                        \
                do                                                            \
                    j--;                                                      \
                while (buf[j] > x);                                           \
                do                                                            \
                    i++;                                                      \
                while (buf[i] < x);                                           \
                if (i < j) {                                                  \
                    T tmp = buf[i];                                           \
                    buf[i] = buf[j];                                          \
                    buf[j] = tmp;                                             \
                } else {                                                      \
                    break;                                                    \
                }                                                             \
            }                                                                 \
            ptrdiff_t left = j - lo + 1;                                      \
            if (rank < left) {                                                \
                hi = j;                                                       \
            } else {                                                          \
                lo = j + 1;                                                   \
                rank -= left;                                                 \
            }                                                                 \
        }                                                                     \
        return buf[lo];                                                       \
    }

/* Does the part of the volume a slab's windows read hold a NaN or a -0.0?
 * Reflection maps the window rows of [z0, z1) into [z0 - r, z1 + r). */
#define DMRI_MEDIAN_NEEDS_SCIPY(T, SUF)                                              \
    static int median_needs_scipy_##SUF(const T *in, int nx, int ny, int nz, int r, \
                                        int z0, int z1) {                           \
        size_t nxny = (size_t)nx * (size_t)ny;                                       \
        size_t a = (size_t)(z0 - r > 0 ? z0 - r : 0) * nxny;                         \
        size_t b = (size_t)(z1 + r < nz ? z1 + r : nz) * nxny;                       \
        int bad = 0;                                                                 \
        for (size_t i = a; i < b; i++)                                               \
            bad |= (in[i] != in[i]) | ((in[i] == 0) & (signbit(in[i]) != 0));        \
        return bad;                                                                  \
    }

/* The window of each voxel gathered in scipy's order through a ring of
 * 2r+1 (y, z) planes keyed by x coordinate (slot = x mod 2r+1 never collides
 * inside one window), then NI_Select. */
#define DMRI_MEDIAN_SCIPY_PATH(T, SUF)                                                    \
    static void median_scipy_path_##SUF(const T *in, int nx, int ny, int radius, int z0,  \
                                        int z1, T *out, T *workspace, median_tables_t *t) { \
        const int w = 2 * radius + 1;                                                     \
        const size_t plane = (size_t)w * (size_t)w;                                       \
        const size_t win = plane * (size_t)w;                                             \
        T *ring = workspace;                                                              \
        T *buf = workspace + win;                                                         \
        const size_t nxny = (size_t)nx * (size_t)ny;                                      \
        for (int z = z0; z < z1; z++) {                                                   \
            for (int y = 0; y < ny; y++) {                                                \
                median_row_offsets(t, nx, ny, y, z, w);                                   \
                T *orow = out + (size_t)z * nxny + (size_t)y * (size_t)nx;                \
                for (int x = 0; x < nx; x++) {                                            \
                    for (int a = 0; a < w; a++) {                                         \
                        int xx = t->rx[x + a];                                            \
                        int s = xx % w;                                                   \
                        T *slot = ring + (size_t)s * plane;                               \
                        if (t->tag[s] != xx) {                                            \
                            const T *src = in + xx;                                       \
                            for (size_t k = 0; k < plane; k++)                            \
                                slot[k] = src[t->off[k]];                                 \
                            t->tag[s] = xx;                                               \
                        }                                                                 \
                        memcpy(buf + (size_t)a * plane, slot, plane * sizeof(T));         \
                    }                                                                     \
                    orow[x] = median_select_scipy_##SUF(buf, (ptrdiff_t)win,              \
                                                        (ptrdiff_t)(win / 2));            \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

DMRI_MEDIAN_SELECT_SCIPY(float, f32)
DMRI_MEDIAN_SELECT_SCIPY(double, f64)
DMRI_MEDIAN_NEEDS_SCIPY(float, f32)
DMRI_MEDIAN_NEEDS_SCIPY(double, f64)
DMRI_MEDIAN_SCIPY_PATH(float, f32)
DMRI_MEDIAN_SCIPY_PATH(double, f64)

/* ------------------------------------------------------------------------
 * Normal path, portable scalar version */

/* Exact selection of rank k for NaN-free data; src is not modified. Each
 * round counts how many values are below / equal to the pivot (median of
 * three), returns the pivot when it has the wanted rank, else packs the side
 * holding it into the other buffer: the candidates strictly shrink. */
#define MED_SELECT_SCALAR(T, SUF)                                                       \
    static T med_select_##SUF##_scalar(const T *src, int n, int k, T *a, T *b) {        \
        const T *cur = src;                                                             \
        T *dst = a;                                                                     \
        for (;;) {                                                                      \
            if (n <= 8) {                                                               \
                T s[8];                                                                 \
                for (int i = 0; i < n; i++) {                                           \
                    T v = cur[i];                                                       \
                    int j = i;                                                          \
                    for (; j > 0 && s[j - 1] > v; j--)                                  \
                        s[j] = s[j - 1];                                                \
                    s[j] = v;                                                           \
                }                                                                       \
                return s[k];                                                            \
            }                                                                           \
            const T x0 = cur[0], x1 = cur[n / 2], x2 = cur[n - 1];                      \
            const T p = x0 < x1 ? (x1 < x2 ? x1 : (x0 < x2 ? x2 : x0))                  \
                                : (x0 < x2 ? x0 : (x1 < x2 ? x2 : x1));                 \
            int lt = 0, eq = 0;                                                         \
            for (int i = 0; i < n; i++) {                                               \
                lt += cur[i] < p;                                                       \
                eq += cur[i] == p;                                                      \
            }                                                                           \
            if (lt <= k && k < lt + eq)                                                 \
                return p;                                                               \
            int m = 0;                                                                  \
            if (k < lt) {                                                               \
                for (int i = 0; i < n; i++) {                                           \
                    dst[m] = cur[i];                                                    \
                    m += cur[i] < p;                                                    \
                }                                                                       \
            } else {                                                                    \
                for (int i = 0; i < n; i++) {                                           \
                    dst[m] = cur[i];                                                    \
                    m += cur[i] > p;                                                    \
                }                                                                       \
                k -= lt + eq;                                                           \
            }                                                                           \
            n = m;                                                                      \
            cur = dst;                                                                  \
            dst = dst == a ? b : a;                                                     \
        }                                                                               \
    }

/* Pack the values below (side < 0) or above (side > 0) pivot into dst;
 * returns how many. */
#define MED_PACK_SCALAR(T, SUF)                                                         \
    static int med_pack_##SUF##_scalar(const T *v, int n, T pivot, int side, T *dst) {  \
        int m = 0;                                                                      \
        for (int i = 0; i < n; i++) {                                                   \
            dst[m] = v[i];                                                              \
            m += side < 0 ? v[i] < pivot : v[i] > pivot;                                \
        }                                                                               \
        return m;                                                                       \
    }

/* Value at sorted position q of v[0..n). */
#define MED_QUERY_SCALAR(T, SUF)                                                        \
    static void med_query_##SUF##_scalar(const T *v, int n, int q, T *res, T *a, T *b) { \
        *res = med_select_##SUF##_scalar(v, n, q, a, b);                                \
    }

/* The part of a bracket pass after counting, shared by the ISAs. The pass
 * had three pivots lo <= q <= hi and counted c0 = #(v < lo), cq = #(v < q),
 * eq = #(v == q), c2 = #(v <= hi); the m values of [lo, hi] other than q
 * are packed in ib. The median is q when rank k falls in q's ties (so a
 * plateau costs no packing), else a packed value. Returns 0 with *med, or -1
 * (the median is below lo) or +1 (above hi). */
#define MED_BRACKET_FINISH(SUF, ISA)                                                    \
    do {                                                                                \
        if (k < c0)                                                                     \
            return -1;                                                                  \
        if (k >= c2)                                                                    \
            return 1;                                                                   \
        if (k >= cq && k < cq + eq) {                                                   \
            *med = q;                                                                   \
        } else {                                                                        \
            med_query_##SUF##_##ISA(ib, m, k - c0 - (k >= cq ? eq : 0), med, sa, sb);    \
        }                                                                               \
        return 0;                                                                       \
    } while (0)

/* One bracket pass over the window: counts and packing, then the finish.
 * cnt receives c0 and c2 for the caller's fallback. Counting (which the
 * compiler vectorises) and packing are separate loops; the packing loop
 * branches, which predicts well because few values are inside. */
#define MED_BRACKET_SCALAR(T, SUF)                                                        \
    static int med_bracket_##SUF##_scalar(const T *win, int n, int k, T lo, T q, T hi,    \
                                          T *med, int cnt[2], T *ib, T *sa, T *sb) {      \
        int c0 = 0, cq = 0, eq = 0, c2 = 0, m = 0;                                        \
        for (int j = 0; j < n; j++) {                                                     \
            T v = win[j];                                                                 \
            c0 += v < lo;                                                                 \
            cq += v < q;                                                                  \
            eq += v == q;                                                                 \
            c2 += v <= hi;                                                                \
        }                                                                                 \
        cnt[0] = c0;                                                                      \
        cnt[1] = c2;                                                                      \
        if (k >= c0 && k < c2 && (k < cq || k >= cq + eq)) {                              \
            for (int j = 0; j < n; j++) {                                                 \
                T v = win[j];                                                             \
                if (v >= lo && v <= hi && v != q)                                         \
                    ib[m++] = v;                                                          \
            }                                                                             \
        }                                                                                 \
        MED_BRACKET_FINISH(SUF, scalar);                                                  \
    }

MED_SELECT_SCALAR(float, f32)
MED_SELECT_SCALAR(double, f64)
MED_PACK_SCALAR(float, f32)
MED_PACK_SCALAR(double, f64)
MED_QUERY_SCALAR(float, f32)
MED_QUERY_SCALAR(double, f64)
MED_BRACKET_SCALAR(float, f32)
MED_BRACKET_SCALAR(double, f64)

/* ------------------------------------------------------------------------
 * Normal path, AVX-512 version */

#if MED_HAVE_SIMD

static inline __mmask16 med_mask16(int rem) {
    return rem >= 16 ? (__mmask16)0xFFFF
                     : (rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1));
}
static inline __mmask8 med_mask8(int rem) {
    return rem >= 8 ? (__mmask8)0xFF : (rem <= 0 ? (__mmask8)0 : (__mmask8)((1u << rem) - 1));
}

/* Values at sorted positions q[0..nq) of v[0..n), n <= 16 * NV (f32) or
 * 8 * NV (f64): rank each value by how many are smaller (all pairs, in
 * registers); the value at position p is the largest value of rank <= p. */
#define MED_RANKQ(T, SUF, NV, VT, S, L, MASKF, EPI)                                        \
    MED_AVX512 static inline void med_rankq_##SUF##_##NV(const T *v, int n, const int *q,  \
                                                         int nq, T *res) {                 \
        VT V[NV];                                                                          \
        __m512i R[NV];                                                                     \
        __typeof__(MASKF(0)) M[NV];                                                        \
        const __m512i one = _mm512_set1_##EPI(1);                                          \
        for (int j = 0; j < NV; j++) {                                                     \
            M[j] = MASKF(n - L * j);                                                       \
            V[j] = _mm512_maskz_loadu_##S(M[j], v + L * j);                                \
            R[j] = _mm512_setzero_si512();                                                 \
        }                                                                                  \
        for (int i = 0; i < n; i++) {                                                      \
            const VT b = _mm512_set1_##S(v[i]);                                            \
            for (int j = 0; j < NV; j++)                                                   \
                R[j] = _mm512_mask_add_##EPI(R[j], _mm512_cmp_##S##_mask(V[j], b, _CMP_GT_OQ), \
                                             R[j], one);                                   \
        }                                                                                  \
        for (int t = 0; t < nq; t++) {                                                     \
            const __m512i p = _mm512_set1_##EPI(q[t]);                                     \
            VT acc = _mm512_set1_##S(-INFINITY);                                           \
            for (int j = 0; j < NV; j++)                                                   \
                acc = _mm512_mask_max_##S(acc, M[j] & _mm512_cmple_##EPI##_mask(R[j], p),  \
                                          acc, V[j]);                                      \
            res[t] = _mm512_reduce_max_##S(acc);                                           \
        }                                                                                  \
    }
MED_RANKQ(float, f32, 1, __m512, ps, 16, med_mask16, epi32)
MED_RANKQ(float, f32, 2, __m512, ps, 16, med_mask16, epi32)
MED_RANKQ(float, f32, 3, __m512, ps, 16, med_mask16, epi32)
MED_RANKQ(float, f32, 4, __m512, ps, 16, med_mask16, epi32)
MED_RANKQ(double, f64, 2, __m512d, pd, 8, med_mask8, epi64)
MED_RANKQ(double, f64, 4, __m512d, pd, 8, med_mask8, epi64)
MED_RANKQ(double, f64, 6, __m512d, pd, 8, med_mask8, epi64)
MED_RANKQ(double, f64, 8, __m512d, pd, 8, med_mask8, epi64)

/* Pack (see MED_PACK_SCALAR) and exact selection (see MED_SELECT_SCALAR)
 * with vector compares and compress; the last <= MED_SMALL candidates of a
 * selection are ranked in registers. */
#define MED_SIMD_SELECT(T, SUF, VT, S, L, MASKF, Q1, Q2, Q3, Q4)                          \
    MED_AVX512 static inline int med_pack_##SUF##_avx512(const T *v, int n, T pivot,      \
                                                         int side, T *dst) {              \
        const VT vp = _mm512_set1_##S(pivot);                                             \
        int m = 0;                                                                        \
        for (int j = 0; j < n; j += L) {                                                  \
            const __typeof__(MASKF(0)) valid = MASKF(n - j);                              \
            const VT x = _mm512_maskz_loadu_##S(valid, v + j);                            \
            const __typeof__(valid) keep =                                                \
                side < 0 ? _mm512_mask_cmp_##S##_mask(valid, x, vp, _CMP_LT_OQ)           \
                         : _mm512_mask_cmp_##S##_mask(valid, x, vp, _CMP_GT_OQ);          \
            _mm512_storeu_##S(dst + m, _mm512_maskz_compress_##S(keep, x));               \
            m += __builtin_popcount((unsigned)keep);                                      \
        }                                                                                 \
        return m;                                                                         \
    }                                                                                     \
    MED_AVX512 static inline void med_rankq_##SUF(const T *v, int n, const int *q, int nq, \
                                                  T *res) {                               \
        if (n <= L)                                                                       \
            Q1(v, n, q, nq, res);                                                         \
        else if (n <= 2 * L)                                                              \
            Q2(v, n, q, nq, res);                                                         \
        else if (n <= 3 * L)                                                              \
            Q3(v, n, q, nq, res);                                                         \
        else                                                                              \
            Q4(v, n, q, nq, res);                                                         \
    }                                                                                     \
    MED_AVX512 static T med_select_##SUF##_avx512(const T *src, int n, int k, T *a, T *b) { \
        const T *cur = src;                                                               \
        T *dst = a;                                                                       \
        for (;;) {                                                                        \
            if (n <= MED_SMALL) {                                                         \
                T res;                                                                    \
                med_rankq_##SUF(cur, n, &k, 1, &res);                                     \
                return res;                                                               \
            }                                                                             \
            const T x0 = cur[0], x1 = cur[n / 2], x2 = cur[n - 1];                        \
            const T p = x0 < x1 ? (x1 < x2 ? x1 : (x0 < x2 ? x2 : x0))                    \
                                : (x0 < x2 ? x0 : (x1 < x2 ? x2 : x1));                   \
            const VT vp = _mm512_set1_##S(p);                                             \
            int lt = 0, eq = 0;                                                           \
            for (int j = 0; j < n; j += L) {                                              \
                const __typeof__(MASKF(0)) valid = MASKF(n - j);                          \
                const VT x = _mm512_maskz_loadu_##S(valid, cur + j);                      \
                lt += __builtin_popcount(                                                 \
                    (unsigned)_mm512_mask_cmp_##S##_mask(valid, x, vp, _CMP_LT_OQ));      \
                eq += __builtin_popcount(                                                 \
                    (unsigned)_mm512_mask_cmp_##S##_mask(valid, x, vp, _CMP_EQ_OQ));      \
            }                                                                             \
            if (lt <= k && k < lt + eq)                                                   \
                return p;                                                                 \
            if (k < lt) {                                                                 \
                n = med_pack_##SUF##_avx512(cur, n, p, -1, dst);                          \
            } else {                                                                      \
                n = med_pack_##SUF##_avx512(cur, n, p, 1, dst);                           \
                k -= lt + eq;                                                             \
            }                                                                             \
            cur = dst;                                                                    \
            dst = dst == a ? b : a;                                                       \
        }                                                                                 \
    }                                                                                     \
    MED_AVX512 static void med_query_##SUF##_avx512(const T *v, int n, int q, T *res, T *a, \
                                                    T *b) {                               \
        if (n <= MED_SMALL)                                                               \
            med_rankq_##SUF(v, n, &q, 1, res);                                            \
        else                                                                              \
            *res = med_select_##SUF##_avx512(v, n, q, a, b);                              \
    }

MED_SIMD_SELECT(float, f32, __m512, ps, 16, med_mask16, med_rankq_f32_1, med_rankq_f32_2,
                med_rankq_f32_3, med_rankq_f32_4)
MED_SIMD_SELECT(double, f64, __m512d, pd, 8, med_mask8, med_rankq_f64_2, med_rankq_f64_4,
                med_rankq_f64_6, med_rankq_f64_8)

/* One bracket pass (see MED_BRACKET_SCALAR): four compares per vector,
 * counts accumulated per lane; when a packed value is needed, a second pass
 * writes the values inside with compress. */
#define MED_COUNT_STEP(VT, S, EPI, MASKF, rem)                                            \
    do {                                                                                  \
        const __typeof__(MASKF(0)) valid = MASKF(rem);                                    \
        const VT x = _mm512_maskz_loadu_##S(valid, win + j);                              \
        a0 = _mm512_mask_add_##EPI(a0, _mm512_mask_cmp_##S##_mask(valid, x, vlo, _CMP_LT_OQ), \
                                   a0, one);                                              \
        aq = _mm512_mask_add_##EPI(aq, _mm512_mask_cmp_##S##_mask(valid, x, vq, _CMP_LT_OQ),  \
                                   aq, one);                                              \
        ae = _mm512_mask_add_##EPI(ae, _mm512_mask_cmp_##S##_mask(valid, x, vq, _CMP_EQ_OQ),  \
                                   ae, one);                                              \
        a2 = _mm512_mask_add_##EPI(a2, _mm512_mask_cmp_##S##_mask(valid, x, vhi, _CMP_LE_OQ), \
                                   a2, one);                                              \
    } while (0)

#define MED_PACK_STEP(VT, S, MASKF, rem)                                                  \
    do {                                                                                  \
        const __typeof__(MASKF(0)) valid = MASKF(rem);                                    \
        const VT x = _mm512_maskz_loadu_##S(valid, win + j);                              \
        const __typeof__(valid) keep =                                                    \
            _mm512_mask_cmp_##S##_mask(_mm512_mask_cmp_##S##_mask(valid, x, vlo, _CMP_GE_OQ), \
                                       x, vhi, _CMP_LE_OQ) &                              \
            (__typeof__(valid))~_mm512_cmp_##S##_mask(x, vq, _CMP_EQ_OQ);                 \
        _mm512_storeu_##S(ib + m, _mm512_maskz_compress_##S(keep, x));                    \
        m += __builtin_popcount((unsigned)keep);                                          \
    } while (0)

#define MED_BRACKET_AVX512(T, SUF, VT, S, EPI, L, MASKF)                                   \
    MED_AVX512 static inline int med_bracket_##SUF##_avx512(const T *win, int n, int k,    \
                                                            T lo, T q, T hi, T *med,       \
                                                            int cnt[2], T *ib, T *sa,      \
                                                            T *sb) {                       \
        const VT vlo = _mm512_set1_##S(lo), vq = _mm512_set1_##S(q);                       \
        const VT vhi = _mm512_set1_##S(hi);                                                \
        const __m512i one = _mm512_set1_##EPI(1);                                          \
        __m512i a0 = _mm512_setzero_si512(), aq = a0, ae = a0, a2 = a0;                    \
        int m = 0, j = 0;                                                                  \
        for (; j + L <= n; j += L)                                                         \
            MED_COUNT_STEP(VT, S, EPI, MASKF, L);                                          \
        if (j < n)                                                                         \
            MED_COUNT_STEP(VT, S, EPI, MASKF, n - j);                                      \
        const int c0 = (int)_mm512_reduce_add_##EPI(a0), cq = (int)_mm512_reduce_add_##EPI(aq); \
        const int eq = (int)_mm512_reduce_add_##EPI(ae), c2 = (int)_mm512_reduce_add_##EPI(a2); \
        cnt[0] = c0;                                                                       \
        cnt[1] = c2;                                                                       \
        if (k >= c0 && k < c2 && (k < cq || k >= cq + eq)) {                               \
            for (j = 0; j + L <= n; j += L)                                                \
                MED_PACK_STEP(VT, S, MASKF, L);                                            \
            if (j < n)                                                                     \
                MED_PACK_STEP(VT, S, MASKF, n - j);                                        \
        }                                                                                  \
        MED_BRACKET_FINISH(SUF, avx512);                                                   \
    }

MED_BRACKET_AVX512(float, f32, __m512, ps, epi32, 16, med_mask16)
MED_BRACKET_AVX512(double, f64, __m512d, pd, epi64, 8, med_mask8)

#endif /* MED_HAVE_SIMD */

/* ------------------------------------------------------------------------
 * Normal path driver */

/* Fill ring slot (py mod w) of the transposed buffer with input row py
 * (padded y) for the w z offsets of output slice z. */
#define MED_LOAD_SLOT(T, SUF)                                                           \
    static inline void med_load_slot_##SUF(const T *in, int nx, int ny, int w, int z,   \
                                           int py, const median_tables_t *t, T *tb) {   \
        const size_t nxny = (size_t)nx * (size_t)ny, w2 = (size_t)w * (size_t)w;        \
        const size_t npx = (size_t)nx + (size_t)(w - 1);                                \
        const int s = py % w;                                                           \
        const T *rowbase = in + (size_t)t->ry[py] * (size_t)nx;                         \
        for (int c = 0; c < w; c++) {                                                   \
            const T *src = rowbase + (size_t)t->rz[z + c] * nxny;                       \
            T *dst = tb + (size_t)c * (size_t)w + (size_t)s;                            \
            for (size_t xi = 0; xi < npx; xi++)                                         \
                dst[xi * w2] = src[t->rx[xi]];                                          \
        }                                                                               \
    }
MED_LOAD_SLOT(float, f32)
MED_LOAD_SLOT(double, f64)

/* A bracket bound: -0.0 becomes +0.0, so that a tie with a bound returns the
 * data's bits (the data hold no -0.0 on this path). */
#define MED_CANON(v) ((v) == 0 ? 0 : (v))

/* Filter slices [z0, z1) with the bracket selection of one ISA.
 *
 * Bracket of a voxel: q = the median predicted from the medians already
 * written (planar: left + (above - above-left); in slice z0 of the slab the
 * slice below stands in for the row above; at the start of a row, the voxel
 * above), lo/hi = q -+ h. After a hit, h is set so that the next bracket
 * should hold about MED_K values either side (from the density of values
 * this bracket held); after a miss, to the prediction error just seen. A
 * miss moves the bracket past the side that failed with a doubling width
 * (MED_GALLOP times); then the values beyond the failed bound are packed and
 * an exact selection finishes (as it does when there is no prediction). */
#define MED_FAST_PATH(T, SUF, ISA, ATTR)                                                    \
    ATTR static void med_fast_##SUF##_##ISA(const T *in, int nx, int ny, int radius, int z0, \
                                            int z1, T *out, const median_tables_t *t) {     \
        const int w = 2 * radius + 1;                                                       \
        const size_t w2 = (size_t)w * (size_t)w, nxny = (size_t)nx * (size_t)ny;            \
        const int n = (int)(w2 * (size_t)w), k = n / 2;                                     \
        const size_t npx = (size_t)nx + 2 * (size_t)radius, blen = (size_t)n + MED_PAD;     \
        T *tb = dmri_malloc(npx * w2 * sizeof(T));                                          \
        T *ib = dmri_malloc(3 * blen * sizeof(T));                                          \
        T *sa = ib + blen, *sb = sa + blen;                                                 \
        T h = 0; /* bracket half-width */                                                   \
        for (int z = z0; z < z1; z++) {                                                     \
            for (int y = 0; y < ny; y++) {                                                  \
                for (int b = y == 0 ? 0 : w - 1; b < w; b++)                                \
                    med_load_slot_##SUF(in, nx, ny, w, z, y + b, t, tb);                    \
                T *orow = out + (size_t)z * nxny + (size_t)y * (size_t)nx;                  \
                const T *up = y > 0 ? orow - nx : (z > z0 ? orow - nxny : NULL);            \
                for (int x = 0; x < nx; x++) {                                              \
                    const T *win = tb + (size_t)x * w2;                                     \
                    int st = 2, cnt[2] = {0, 0};                                            \
                    T lo = 0, hi = 0, med = 0, p = 0;                                       \
                    if (x > 0 || up) {                                                      \
                        p = x == 0 ? up[0]                                                  \
                                   : (up ? orow[x - 1] + (up[x] - up[x - 1]) : orow[x - 1]); \
                        p = MED_CANON(p);                                                   \
                        const T e = h;                                                      \
                        T a = MED_CANON(p - e), b = MED_CANON(p + e), q = p;                \
                        for (int g = 0; a <= q && q <= b; g++) { /* false for NaN */        \
                            lo = a;                                                         \
                            hi = b;                                                         \
                            st = med_bracket_##SUF##_##ISA(win, n, k, lo, q, hi, &med, cnt, \
                                                           ib, sa, sb);                     \
                            if (st == 0 || g == MED_GALLOP || !(e > 0))                     \
                                break;                                                      \
                            const T step = e * (T)(2 << g);                                 \
                            a = st < 0 ? MED_CANON(lo - step) : hi;                         \
                            b = st < 0 ? lo : MED_CANON(hi + step);                         \
                            q = st < 0 ? b : a;                                             \
                        }                                                                   \
                    }                                                                       \
                    if (st < 0) {                                                           \
                        int m = med_pack_##SUF##_##ISA(win, n, lo, -1, ib);                 \
                        med = med_select_##SUF##_##ISA(ib, m, k, sa, sb);                   \
                    } else if (st == 1) {                                                   \
                        int m = med_pack_##SUF##_##ISA(win, n, hi, 1, ib);                  \
                        med = med_select_##SUF##_##ISA(ib, m, k - cnt[1], sa, sb);          \
                    } else if (st == 2) {                                                   \
                        med = med_select_##SUF##_##ISA(win, n, k, sa, sb);                  \
                    }                                                                       \
                    if (st == 0) {                                                          \
                        /* K values either side at this window's density. */                \
                        const int held = cnt[1] - cnt[0];                                   \
                        if (hi > lo && held > 0)                                            \
                            h = (hi - lo) * ((T)MED_K / (T)held);                           \
                    } else if (x > 0 || up) {                                               \
                        /* Missed: next time reach at least this far. */                    \
                        h = med > p ? med - p : p - med;                                    \
                    }                                                                       \
                    if (!(h < (T)INFINITY)) /* NaN or inf from infinite data */             \
                        h = 0;                                                              \
                    orow[x] = med;                                                          \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        dmri_free(tb);                                                                      \
        dmri_free(ib);                                                                      \
    }

MED_FAST_PATH(float, f32, scalar, )
MED_FAST_PATH(double, f64, scalar, )
#if MED_HAVE_SIMD
MED_FAST_PATH(float, f32, avx512, MED_AVX512)
MED_FAST_PATH(double, f64, avx512, MED_AVX512)
#endif

/* ------------------------------------------------------------------------
 * dispatch */

enum { ISA_AUTO, ISA_SCALAR, ISA_AVX512 };
static const char *const isa_names[] = {"auto", "scalar", "avx512"};

/* Process-wide choice; set once before the workers start (tests, benches). */
static _Atomic int isa_forced = ISA_AUTO;

static int isa_supported(int isa) {
#if MED_HAVE_SIMD
    if (isa == ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("popcnt");
#endif
    return isa == ISA_SCALAR || isa == ISA_AUTO;
}

static int isa_current(void) {
    const int f = atomic_load(&isa_forced);
    if (f != ISA_AUTO)
        return f;
    return isa_supported(ISA_AVX512) ? ISA_AVX512 : ISA_SCALAR;
}

int dmri_median3d_set_isa(const char *name) {
    int isa = -1;
    if (!name || !*name)
        isa = ISA_AUTO;
    for (int i = 0; i < 3 && isa < 0; i++)
        if (!strcmp(name, isa_names[i]))
            isa = i;
    if (isa < 0)
        return DMRI_EINVAL;
    if (!isa_supported(isa))
        return DMRI_EUNSUP;
    atomic_store(&isa_forced, isa);
    return 0;
}

const char *dmri_median3d_isa(void) { return isa_names[isa_current()]; }

#define DMRI_MEDIAN_FILTER(T, SUF)                                                          \
    void dmri_median3d_##SUF(const T *in, int nx, int ny, int nz, int radius, int z0,      \
                             int z1, T *out, T *workspace) {                               \
        if (z0 < 0)                                                                         \
            z0 = 0;                                                                         \
        if (z1 > nz)                                                                        \
            z1 = nz;                                                                        \
        if (nx <= 0 || ny <= 0 || radius < 0 || z0 >= z1)                                 \
            return;                                                                         \
        median_tables_t t;                                                                  \
        median_tables_init(&t, nx, ny, nz, radius);                                         \
        if (median_needs_scipy_##SUF(in, nx, ny, nz, radius, z0, z1))                       \
            median_scipy_path_##SUF(in, nx, ny, radius, z0, z1, out, workspace, &t);        \
        else if (isa_current() == ISA_SCALAR)                                               \
            med_fast_##SUF##_scalar(in, nx, ny, radius, z0, z1, out, &t);                   \
        else                                                                                \
            MED_DISPATCH_SIMD(SUF, in, nx, ny, radius, z0, z1, out, &t);                    \
        median_tables_free(&t);                                                             \
    }

#if MED_HAVE_SIMD
#define MED_DISPATCH_SIMD(SUF, ...) med_fast_##SUF##_avx512(__VA_ARGS__)
#else
#define MED_DISPATCH_SIMD(SUF, ...) med_fast_##SUF##_scalar(__VA_ARGS__)
#endif

DMRI_MEDIAN_FILTER(float, f32)
DMRI_MEDIAN_FILTER(double, f64)
