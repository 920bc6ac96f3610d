/* sigma: dipy.denoise.noise_estimate.estimate_sigma with its defaults, one
 * volume at a time (PIPELINE.md Step 5).
 *
 * Per voxel, in f64 like scipy.ndimage.convolve + numpy: the 6 face
 * neighbours are summed in the order scipy visits the footprint
 * (x-1, y-1, z-1, z+1, y+1, x+1, starting from 0.0), a missing neighbour is
 * the voxel itself (half-sample reflection), r = sqrt(6/7) * (u - (1/6)*s).
 * sigma = sqrt(mean r^2) over every voxel, rounded to f32.
 *
 * The one deliberate difference: numpy sums r^2 pairwise in C order (z
 * fastest, via boolean indexing); here the same 8-lane/128-block pairwise
 * scheme runs in memory order (x fastest) so the volume streams through the
 * cache. Both sums carry ~1e-16 relative error; the f32 rounding hides it
 * (PIPELINE.md cost model, "identical in all tests"). */
#include "sigma.h"

#include <math.h>
#include <stddef.h>

#define SIGMA_BLOCK 128 /* numpy's PW_BLOCKSIZE */
#define SIGMA_LEVELS 64

/* numpy's pairwise_sum leaf: 8 accumulators, combined as a tree. */
static double sigma_leaf(const double *a, int n) {
    if (n < 8) {
        double res = 0.0;
        for (int i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    double r[8];
    for (int j = 0; j < 8; j++)
        r[j] = a[j];
    int i;
    for (i = 8; i < n - (n % 8); i += 8)
        for (int j = 0; j < 8; j++)
            r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++)
        res += a[i];
    return res;
}

/* Streaming pairwise sum: full blocks are merged like a binary counter, so
 * the error grows with log(n) without holding the volume's r^2 in memory. */
typedef struct {
    double blk[SIGMA_BLOCK];
    int nblk;
    double part[SIGMA_LEVELS];
    int npart;
    unsigned long long nleaves;
} sigma_acc_t;

static void sigma_acc_push(sigma_acc_t *s, double v) {
    s->blk[s->nblk++] = v;
    if (s->nblk < SIGMA_BLOCK)
        return;
    double leaf = sigma_leaf(s->blk, SIGMA_BLOCK);
    s->nblk = 0;
    s->nleaves++;
    /* One merge per trailing 1-bit of the leaf count. */
    for (unsigned long long c = s->nleaves; (c & 1u) == 0 && s->npart > 0; c >>= 1)
        leaf = s->part[--s->npart] + leaf;
    s->part[s->npart++] = leaf;
}

static double sigma_acc_total(const sigma_acc_t *s) {
    double tail = sigma_leaf(s->blk, s->nblk);
    double total = 0.0;
    for (int i = 0; i < s->npart; i++)
        total = i == 0 ? s->part[0] : total + s->part[i];
    return s->npart > 0 ? total + tail : tail;
}

#define DMRI_SIGMA_VOLUME(T, SUF)                                                        \
    float dmri_sigma_volume_##SUF(const T *vol, int nx, int ny, int nz) {               \
        if (nx <= 0 || ny <= 0 || nz <= 0)                                               \
            return NAN;                                                                  \
        const double c67 = sqrt(6.0 / 7.0), c16 = 1.0 / 6.0;                             \
        const ptrdiff_t sy = nx, sz = (ptrdiff_t)nx * ny;                                \
        sigma_acc_t acc;                                                                 \
        acc.nblk = 0;                                                                    \
        acc.npart = 0;                                                                   \
        acc.nleaves = 0;                                                                 \
        for (int z = 0; z < nz; z++) {                                                   \
            const ptrdiff_t dzm = z > 0 ? -sz : 0, dzp = z + 1 < nz ? sz : 0;             \
            for (int y = 0; y < ny; y++) {                                               \
                const ptrdiff_t dym = y > 0 ? -sy : 0, dyp = y + 1 < ny ? sy : 0;         \
                const T *row = vol + (ptrdiff_t)z * sz + (ptrdiff_t)y * sy;              \
                for (int x = 0; x < nx; x++) {                                           \
                    const T *p = row + x;                                                \
                    const ptrdiff_t dxm = x > 0 ? -1 : 0, dxp = x + 1 < nx ? 1 : 0;      \
                    double s = 0.0;                                                      \
                    s += (double)p[dxm];                                                 \
                    s += (double)p[dym];                                                 \
                    s += (double)p[dzm];                                                 \
                    s += (double)p[dzp];                                                 \
                    s += (double)p[dyp];                                                 \
                    s += (double)p[dxp];                                                 \
                    double r = c67 * ((double)p[0] - c16 * s);                           \
                    sigma_acc_push(&acc, r * r);                                         \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        double total = sigma_acc_total(&acc);                                            \
        double n = (double)nx * (double)ny * (double)nz;                                 \
        return (float)sqrt(total / n);                                                   \
    }

DMRI_SIGMA_VOLUME(float, f32)
DMRI_SIGMA_VOLUME(double, f64)
