/* nlmeans: dipy 1.6's classic non-local means (PIPELINE.md Step 6) on a padded
 * z-slab: the mirror padding, a fast offset-major box-filter kernel for a
 * per-volume scalar sigma, and a voxel-by-voxel reference in dipy's order.
 *
 * Memory layout everywhere: x fastest. dipy runs over C-ordered [x, y, z]
 * arrays, so its outermost search and patch loops are over x and its innermost
 * over z; the reference below keeps that order, which is what makes it
 * bit-identical. */
#include "nlmeans.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#define HALO DMRI_NLMEANS_HALO
#define SEARCH 4                     /* block radius - patch radius */
#define NOFF 729                     /* (2 * SEARCH + 1)^3 search offsets */
#define PATCH_VOL 27.0               /* (2 * 1 + 1)^3 patch voxels */

/* Output tile of the fast kernel. The per-tile weight store holds NOFF doubles
 * per masked voxel (512 voxels -> 3 MB), so that the weights can be normalised
 * and accumulated afterwards in dipy's order. Tiles from 8x8x4 to 32x16x4 ran
 * within 5% of each other on a 48x56x48 phantom (the 729 exps dominate). The
 * -D override is for benchmarking only. */
#ifndef TILE_X
#define TILE_X 16
#endif
#ifndef TILE_Y
#define TILE_Y 8
#endif
#ifndef TILE_Z
#define TILE_Z 4
#endif

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

static int imin(int a, int b) { return a < b ? a : b; }

/* Workspace carve-up for one tile of at most tx*ty*tz voxels. */
typedef struct {
    double *e;       /* (bx+2)(by+2)(bz+2) squared differences E_delta */
    double *sx;      /* bx(by+2)(bz+2): E summed over 3 along x */
    double *sy;      /* bx*by*(bz+2): then over 3 along y */
    double *sumw;    /* per masked voxel: running sum of weights (dipy order) */
    double *acc;     /* per masked voxel: sum of normalised w * u^2 */
    double *wstore;  /* NOFF * nm weights, offset-major, for the 2nd pass */
    ptrdiff_t *lidx; /* per masked voxel: index into sy of its (x, y, z) */
    ptrdiff_t *cidx; /* per masked voxel: padded index of its centre */
    ptrdiff_t *oidx; /* per masked voxel: index into out */
    ptrdiff_t *off;  /* NOFF search offsets in the padded block */
} nlm_ws_t;

static size_t ws_len_tile(int tx, int ty, int tz) {
    const size_t t = (size_t)tx * ty * tz;
    return (size_t)(tx + 2) * (ty + 2) * (tz + 2) + (size_t)tx * (ty + 2) * (tz + 2) +
           (size_t)tx * ty * (tz + 2) + 2 * t + (size_t)NOFF * t +
           /* ptrdiff_t arrays, one double each */
           3 * t + NOFF;
}

size_t dmri_nlmeans_workspace_len(int nx, int ny, int nzs) {
    return ws_len_tile(imin(TILE_X, nx), imin(TILE_Y, ny), imin(TILE_Z, nzs));
}

static nlm_ws_t ws_carve(double *w, int tx, int ty, int tz) {
    _Static_assert(sizeof(ptrdiff_t) == sizeof(double), "index arrays share double slots");
    const size_t t = (size_t)tx * ty * tz;
    nlm_ws_t s;
    s.e = w;
    w += (size_t)(tx + 2) * (ty + 2) * (tz + 2);
    s.sx = w;
    w += (size_t)tx * (ty + 2) * (tz + 2);
    s.sy = w;
    w += (size_t)tx * ty * (tz + 2);
    s.sumw = w;
    w += t;
    s.acc = w;
    w += t;
    s.wstore = w;
    w += (size_t)NOFF * t;
    s.lidx = (ptrdiff_t *)(void *)w;
    w += t;
    s.cidx = (ptrdiff_t *)(void *)w;
    w += t;
    s.oidx = (ptrdiff_t *)(void *)w;
    w += t;
    s.off = (ptrdiff_t *)(void *)w;
    return s;
}

/* Denoise the masked voxels of the tile [x0,x1) x [y0,y1) x [z0,z1).
 * For each search offset delta: E = (u[v] - u[v+delta])^2 over the tile's
 * bounding box of masked voxels plus a 1-voxel rim, the 27-voxel patch sum D
 * as three separable 3-tap sums (x, then y, then z only at masked voxels),
 * w = exp(-(D/27)/denom). The sums differ from dipy's sequential 27-term sum
 * by rounding only (~1 ulp of D). Weights are kept so that they are
 * normalised and accumulated exactly in dipy's order. */
static void nlm_tile(const double *padded, int nx, int ny, const uint8_t *mask, double sigma,
                     int rician, double denom, int x0, int x1, int y0, int y1, int z0, int z1,
                     double *out, const nlm_ws_t *ws) {
    const ptrdiff_t sy = nx + 2 * HALO, sz = sy * (ny + 2 * HALO);

    /* Bounding box of the masked voxels: partially masked tiles shrink. */
    int bx0 = x1, bx1 = x0, by0 = y1, by1 = y0, bz0 = z1, bz1 = z0;
    for (int z = z0; z < z1; z++)
        for (int y = y0; y < y1; y++) {
            const uint8_t *m = mask + ((size_t)z * ny + y) * (size_t)nx;
            for (int x = x0; x < x1; x++)
                if (m[x]) {
                    bx0 = imin(bx0, x);
                    bx1 = x + 1 > bx1 ? x + 1 : bx1;
                    by0 = imin(by0, y);
                    by1 = y + 1 > by1 ? y + 1 : by1;
                    bz0 = imin(bz0, z);
                    bz1 = z + 1;
                }
        }
    if (bx0 >= bx1)
        return;
    const int bw = bx1 - bx0, bh = by1 - by0, bd = bz1 - bz0;
    const ptrdiff_t ew = bw + 2, eh = bh + 2, ed = bd + 2;

    int nm = 0;
    for (int z = bz0; z < bz1; z++)
        for (int y = by0; y < by1; y++) {
            const size_t row = ((size_t)z * ny + y) * (size_t)nx;
            for (int x = bx0; x < bx1; x++)
                if (mask[row + x]) {
                    /* sy layout: bw * bh * ed, z index shifted by the rim */
                    ws->lidx[nm] = (x - bx0) + (ptrdiff_t)bw * ((y - by0) + bh * (z - bz0));
                    ws->cidx[nm] = (x + HALO) + (y + HALO) * sy + (z + HALO) * sz;
                    ws->oidx[nm] = (ptrdiff_t)(row + x);
                    ws->sumw[nm] = 0.0;
                    ws->acc[nm] = 0.0;
                    nm++;
                }
        }

    /* Padded index of E's origin: the voxel (bx0-1, by0-1, bz0-1). */
    const double *ebase = padded + (bx0 - 1 + HALO) + (by0 - 1 + HALO) * sy + (bz0 - 1 + HALO) * sz;
    const ptrdiff_t sxy = (ptrdiff_t)bw * bh; /* one z plane of sy */
    double *restrict e = ws->e, *restrict sxb = ws->sx, *restrict syb = ws->sy;

    for (int k = 0; k < NOFF; k++) {
        const ptrdiff_t off = ws->off[k];
        for (ptrdiff_t z = 0; z < ed; z++)
            for (ptrdiff_t y = 0; y < eh; y++) {
                const double *p = ebase + y * sy + z * sz;
                const double *q = p + off;
                double *er = e + (z * eh + y) * ew;
                for (ptrdiff_t x = 0; x < ew; x++) {
                    const double d = p[x] - q[x];
                    er[x] = d * d;
                }
            }
        for (ptrdiff_t r = 0; r < eh * ed; r++) {
            const double *er = e + r * ew;
            double *s = sxb + r * bw;
            for (ptrdiff_t x = 0; x < bw; x++)
                s[x] = er[x] + er[x + 1] + er[x + 2];
        }
        for (ptrdiff_t z = 0; z < ed; z++)
            for (ptrdiff_t y = 0; y < bh; y++) {
                const double *a = sxb + (z * eh + y) * bw;
                double *s = syb + (z * bh + y) * bw;
                for (ptrdiff_t x = 0; x < bw; x++)
                    s[x] = a[x] + a[x + bw] + a[x + 2 * bw];
            }
        double *wk = ws->wstore + (size_t)k * (size_t)nm;
        for (int j = 0; j < nm; j++) {
            const double *s = syb + ws->lidx[j];
            const double dist = s[0] + s[sxy] + s[2 * sxy];
            const double w = exp(-(dist / PATCH_VOL) / denom);
            ws->sumw[j] += w;
            wk[j] = w;
        }
    }

    for (int k = 0; k < NOFF; k++) {
        const ptrdiff_t off = ws->off[k];
        const double *wk = ws->wstore + (size_t)k * (size_t)nm;
        for (int j = 0; j < nm; j++) {
            const double w = ws->sumw[j] > 0 ? wk[j] / ws->sumw[j] : 0.0;
            const double xv = padded[ws->cidx[j] + off];
            ws->acc[j] += w * xv * xv;
        }
    }
    for (int j = 0; j < nm; j++)
        out[ws->oidx[j]] = nlmeans_finish(ws->acc[j], sigma, rician);
}

void dmri_nlmeans_block(const double *padded, int nx, int ny, int nzs, const uint8_t *mask,
                        double sigma, int rician, double *out, double *workspace) {
    const int tx = imin(TILE_X, nx), ty = imin(TILE_Y, ny), tz = imin(TILE_Z, nzs);
    const nlm_ws_t ws = ws_carve(workspace, tx, ty, tz);
    const ptrdiff_t sy = nx + 2 * HALO, sz = sy * (ny + 2 * HALO);
    search_offsets(1, sy, sz, ws.off);
    const double denom = nlmeans_denom(sigma);

    memset(out, 0, (size_t)nx * (size_t)ny * (size_t)nzs * sizeof *out);
    for (int z0 = 0; z0 < nzs; z0 += tz)
        for (int y0 = 0; y0 < ny; y0 += ty)
            for (int x0 = 0; x0 < nx; x0 += tx)
                nlm_tile(padded, nx, ny, mask, sigma, rician, denom, x0, imin(x0 + tx, nx), y0,
                         imin(y0 + ty, ny), z0, imin(z0 + tz, nzs), out, &ws);
}
