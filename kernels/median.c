/* median: the exact 3-D median filter of median_otsu (PIPELINE.md Step 4a),
 * bit-identical to scipy.ndimage.median_filter(mode="reflect").
 *
 * The window of voxel x is the concatenation of 2r+1 "planes" (the (y, z)
 * cross-sections at the reflected x coordinates), in scipy's order: x offset
 * slowest, z offset fastest. Planes are cached in a ring of 2r+1 slots keyed
 * by x coordinate: the coordinates a window needs lie in a run of at most
 * 2r+1 consecutive values, so slot = coordinate mod (2r+1) never collides,
 * and moving one voxel along x loads at most one new plane.
 *
 * Two selections, both exact:
 * - fast (the normal case): branch-free three-way partitions whose first
 *   pivots are the medians already computed at x-1, y-1 and z-1 -- windows
 *   that share most of their values, so the first split usually lands close
 *   to the wanted rank -- then median-of-3 pivots. ~5x faster than scipy.
 * - scipy's own NI_Select (Hoare partition, first element as pivot) on the
 *   same buffer, used when the slab holds a NaN or a -0.0: only there does
 *   the returned element (not just its value) depend on the algorithm, and
 *   copying scipy's keeps even those outputs bit-identical.
 * Without NaN and -0.0, equal values have equal bits and any exact
 * selection of rank (2r+1)^3/2 returns scipy's bits. */
#include "median.h"

#include <math.h>
#include <string.h>

#include "dmri_alloc.h"

size_t dmri_median3d_workspace_len(int radius) {
    size_t w = 2 * (size_t)radius + 1;
    return 3 * w * w * w; /* plane ring + selection buffer + partition buffer */
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

/* Index tables shared by both element types. */
typedef struct {
    int *rx, *ry, *rz; /* reflected coordinate of (i - radius), i in [0, n + 2r) */
    size_t *off;       /* (y, z) offset of each plane element, w*w entries */
    int *tag;          /* x coordinate held by each ring slot, -1 if none */
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

/* Exact selection for NaN-free data. Each round counts (branch-free, so it
 * vectorises) how many values are below / equal to the pivot, returns the
 * pivot when it has the wanted rank, else compacts the side holding it into
 * the other buffer. A guess is used only strictly inside the open interval
 * (lo_b, hi_b) known to contain the remaining values, so every round either
 * shrinks the candidates or tightens the interval: it always terminates. */
#define DMRI_MEDIAN_SELECT_FAST(T, SUF)                                                 \
    static T median_select_fast_##SUF(T *cur, ptrdiff_t n, ptrdiff_t k, const T *guess, \
                                      int ng, T *oth) {                                 \
        int lo_set = 0, hi_set = 0;                                                     \
        T lo_b = 0, hi_b = 0;                                                           \
        int gi = 0;                                                                     \
        for (;;) {                                                                      \
            if (n <= 8) {                                                               \
                for (ptrdiff_t i = 1; i < n; i++) {                                     \
                    T v = cur[i];                                                       \
                    ptrdiff_t j = i;                                                    \
                    for (; j > 0 && cur[j - 1] > v; j--)                                \
                        cur[j] = cur[j - 1];                                            \
                    cur[j] = v;                                                         \
                }                                                                       \
                return cur[k];                                                          \
            }                                                                           \
            while (gi < ng && !((!lo_set || guess[gi] > lo_b) && (!hi_set || guess[gi] < hi_b))) \
                gi++;                                                                   \
            T p;                                                                        \
            if (gi < ng) {                                                              \
                p = guess[gi++];                                                        \
            } else {                                                                    \
                T a = cur[0], c = cur[n / 2], d = cur[n - 1];                           \
                p = a < c ? (c < d ? c : (a < d ? d : a)) : (a < d ? a : (c < d ? d : c)); \
            }                                                                           \
            ptrdiff_t lt = 0, eq = 0;                                                   \
            for (ptrdiff_t i = 0; i < n; i++) {                                         \
                lt += cur[i] < p;                                                       \
                eq += cur[i] == p;                                                      \
            }                                                                           \
            if (lt <= k && k < lt + eq)                                                 \
                return p;                                                               \
            ptrdiff_t m = 0;                                                            \
            if (k < lt) {                                                               \
                for (ptrdiff_t i = 0; i < n; i++) {                                     \
                    oth[m] = cur[i];                                                    \
                    m += cur[i] < p;                                                    \
                }                                                                       \
                hi_b = p;                                                               \
                hi_set = 1;                                                             \
            } else {                                                                    \
                for (ptrdiff_t i = 0; i < n; i++) {                                     \
                    oth[m] = cur[i];                                                    \
                    m += cur[i] > p;                                                    \
                }                                                                       \
                k -= lt + eq;                                                           \
                lo_b = p;                                                               \
                lo_set = 1;                                                             \
            }                                                                           \
            n = m;                                                                      \
            T *t = cur;                                                                 \
            cur = oth;                                                                  \
            oth = t;                                                                    \
        }                                                                               \
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

DMRI_MEDIAN_SELECT_SCIPY(float, f32)
DMRI_MEDIAN_SELECT_SCIPY(double, f64)
DMRI_MEDIAN_SELECT_FAST(float, f32)
DMRI_MEDIAN_SELECT_FAST(double, f64)
DMRI_MEDIAN_NEEDS_SCIPY(float, f32)
DMRI_MEDIAN_NEEDS_SCIPY(double, f64)

#define DMRI_MEDIAN_FILTER(T, SUF)                                                          \
    void dmri_median3d_##SUF(const T *in, int nx, int ny, int nz, int radius, int z0,      \
                             int z1, T *out, T *workspace) {                               \
        if (z0 < 0)                                                                         \
            z0 = 0;                                                                         \
        if (z1 > nz)                                                                        \
            z1 = nz;                                                                        \
        if (nx <= 0 || ny <= 0 || radius < 0 || z0 >= z1)                                 \
            return;                                                                         \
        const int w = 2 * radius + 1;                                                       \
        const size_t plane = (size_t)w * (size_t)w;                                         \
        const size_t win = plane * (size_t)w;                                               \
        const ptrdiff_t rank = (ptrdiff_t)(win / 2);                                        \
        T *ring = workspace;                                                                \
        T *buf = workspace + win;                                                           \
        T *oth = workspace + 2 * win;                                                       \
        const size_t nxny = (size_t)nx * (size_t)ny;                                        \
        const int scipy_select = median_needs_scipy_##SUF(in, nx, ny, nz, radius, z0, z1); \
        median_tables_t t;                                                                  \
        median_tables_init(&t, nx, ny, nz, radius);                                         \
        for (int z = z0; z < z1; z++) {                                                     \
            for (int y = 0; y < ny; y++) {                                                  \
                median_row_offsets(&t, nx, ny, y, z, w);                                    \
                T *orow = out + (size_t)z * nxny + (size_t)y * (size_t)nx;                  \
                for (int x = 0; x < nx; x++) {                                              \
                    for (int a = 0; a < w; a++) {                                           \
                        int xx = t.rx[x + a];                                               \
                        int s = xx % w;                                                     \
                        T *slot = ring + (size_t)s * plane;                                 \
                        if (t.tag[s] != xx) {                                               \
                            const T *src = in + xx;                                         \
                            for (size_t k = 0; k < plane; k++)                              \
                                slot[k] = src[t.off[k]];                                    \
                            t.tag[s] = xx;                                                  \
                        }                                                                   \
                        memcpy(buf + (size_t)a * plane, slot, plane * sizeof(T));           \
                    }                                                                       \
                    if (scipy_select) {                                                     \
                        orow[x] = median_select_scipy_##SUF(buf, (ptrdiff_t)win, rank);     \
                        continue;                                                           \
                    }                                                                       \
                    /* Medians of the neighbouring windows already written by this call. */ \
                    T g[3];                                                                 \
                    int ng = 0;                                                             \
                    if (x > 0)                                                              \
                        g[ng++] = orow[x - 1];                                              \
                    if (y > 0)                                                              \
                        g[ng++] = orow[x - nx];                                             \
                    if (z > z0)                                                             \
                        g[ng++] = orow[(ptrdiff_t)x - (ptrdiff_t)nxny];                     \
                    orow[x] = median_select_fast_##SUF(buf, (ptrdiff_t)win, rank, g, ng, oth); \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        median_tables_free(&t);                                                             \
    }

DMRI_MEDIAN_FILTER(float, f32)
DMRI_MEDIAN_FILTER(double, f64)
