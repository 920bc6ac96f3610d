/* median: the exact 3-D median filter of median_otsu (PIPELINE.md Step 4a),
 * bit-identical to scipy.ndimage.median_filter(mode="reflect") including
 * NaN and signed-zero inputs.
 *
 * Why it looks the way it does: scipy fills a buffer with the window in the
 * C order of the footprint over numpy axes (x, y, z) -- x offset slowest,
 * z offset fastest -- and runs a Hoare-partition quickselect with the first
 * element as pivot (NI_Select). For finite, distinct-up-to-sign data any
 * exact selection returns the same value, but which of -0/+0 (or what a NaN
 * does) depends on the buffer order and the algorithm, so both are copied.
 *
 * The window of voxel x is the concatenation of 2r+1 "planes" (the (y, z)
 * cross-sections at the reflected x coordinates). Planes are cached in a ring
 * of 2r+1 slots keyed by x coordinate: the coordinates a window needs lie in
 * a run of at most 2r+1 consecutive values, so slot = coordinate mod (2r+1)
 * never collides, and moving one voxel along x loads at most one new plane. */
#include "median.h"

#include <stdint.h>
#include <string.h>

#include "dmri_alloc.h"

size_t dmri_median3d_workspace_len(int radius) {
    size_t w = 2 * (size_t)radius + 1;
    return 2 * w * w * w; /* plane ring + selection buffer */
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
 * keeps both scans in bounds exactly as in scipy. */
#define DMRI_MEDIAN_SELECT(T, SUF)                                       \
    static T median_select_##SUF(T *buf, ptrdiff_t n, ptrdiff_t rank) {  \
        ptrdiff_t lo = 0, hi = n - 1;                                    \
        while (lo != hi) {                                               \
            T x = buf[lo];                                               \
            ptrdiff_t i = lo - 1, j = hi + 1;                            \
            for (;;) {                                                   \
                do                                                       \
                    j--;                                                 \
                while (buf[j] > x);                                      \
                do                                                       \
                    i++;                                                 \
                while (buf[i] < x);                                      \
                if (i < j) {                                             \
                    T tmp = buf[i];                                      \
                    buf[i] = buf[j];                                     \
                    buf[j] = tmp;                                        \
                } else {                                                 \
                    break;                                               \
                }                                                        \
            }                                                            \
            ptrdiff_t left = j - lo + 1;                                 \
            if (rank < left) {                                           \
                hi = j;                                                  \
            } else {                                                     \
                lo = j + 1;                                              \
                rank -= left;                                            \
            }                                                            \
        }                                                                \
        return buf[lo];                                                  \
    }

DMRI_MEDIAN_SELECT(float, f32)
DMRI_MEDIAN_SELECT(double, f64)

/* Selection on float instead of scipy's double buffer gives the same result:
 * the widening is exact and preserves every comparison (NaN included). */
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
        T *ring = workspace;                                                                \
        T *buf = workspace + win;                                                           \
        const size_t nxny = (size_t)nx * (size_t)ny;                                        \
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
                    orow[x] = median_select_##SUF(buf, (ptrdiff_t)win, (ptrdiff_t)(win / 2)); \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        median_tables_free(&t);                                                             \
    }

DMRI_MEDIAN_FILTER(float, f32)
DMRI_MEDIAN_FILTER(double, f64)
