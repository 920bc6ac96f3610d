/* phantom: the synthetic HCP-like subject (see phantom.h). Owns the head
 * model, the gradient scheme and the streaming NIfTI-1 writer behind
 * dmri-phantom.
 *
 * Head model, in head-normalised coordinates p = (u, v, w) with
 * u = (x - (nx-1)/2) / (0.40 nx), v = (y - (ny-1)/2) / (0.41 ny),
 * w = (z - (nz-1)/2) / (0.39 nz), r = |p| (x: voxel axis i; z up):
 *   r > 1                     background, exactly 0 (no noise: masks stay crisp)
 *   0.92 < r <= 1             scalp/skull: S0 900, isotropic D 2.5e-3 (dark DWIs)
 *   0.86 < r <= 0.92          outer CSF: S0 3000, D 3e-3
 *   rb < r <= 0.86            cortex (GM): S0 1600, D 0.8e-3; rb = 0.68 +- 0.05 folds
 *   r <= rb                   white matter, S0 1200, in priority order:
 *     ventricles              CSF ellipsoids at (+-0.11, 0.02, -0.05), semi-axes (0.07, 0.30, 0.10)
 *     bundles                 lambda = (1.7, 0.35, 0.35)e-3, e1 along the curve:
 *       corpus callosum       U-shaped sheet |v| <= 0.35, circle in (u,w) centred w = 0.60,
 *                             radius 0.45, half-thickness 0.10 (midline centre (0, *, 0.15): e1 = x)
 *       corticospinal (x2)    tubes radius 0.09 through u = +-(0.25 + 0.2 a^2), a = (w+0.7)/1.3,
 *                             v = -0.05, bowing outwards as they rise (e1 ~ z)
 *       cingulum (x2)         arches at u = +-0.13, circle in (v,w) centred (0, 0.10), radius 0.40,
 *                             tube 0.07, w >= 0.15 (top (+-0.13, 0, 0.50): e1 = y)
 *       arcuate (x2)          arches at u = +-0.50, circle in (v,w) centred (0.05, 0), radius 0.25,
 *                             tube 0.07, w >= -0.10
 *     deep GM                 ellipsoids at (+-0.14, -0.12, -0.22), semi-axes (0.09, 0.13, 0.09)
 *     other WM                lambda = (1.4, 0.55, 0.55)e-3, e1 radial (corona-radiata-like)
 * Signal S = S0 exp(-b g'Dg) with the jittered b and the unit vector of every volume
 * (b0s included, as HCP's b = 5 volumes), then Rician noise inside the head:
 * |S + sigma (n1 + i n2)|, sigma = 1200 / snr (snr 0: noiseless).
 *
 * Determinism: two xoshiro256** streams seeded through splitmix64 from the seed,
 * one for the gradient scheme and one for the noise, consumed in file order; no
 * libc random numbers. The 4-D array is never held: the per-voxel S0/tensor is
 * computed once, then each volume is evaluated and streamed through zlib. */
#include "phantom.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nifti1.h>
#include <zlib.h>

#include "dmri_alloc.h"
#include "fsutil.h"

_Static_assert(sizeof(nifti_1_header) == 348, "nifti_1_header must be 348 bytes");

#define PH_B0_VALUE 5.0
#define PH_S0_WM 1200.0
#define PH_VOXEL_MM 1.25
#define PH_MAX_DIM 32767 /* NIfTI-1 dims are shorts */
#define PH_CHUNK (1u << 26)

void dmri_phantom_opts_default(dmri_phantom_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->nx = 145;
    o->ny = 174;
    o->nz = 145;
    o->nb0 = 18;
    o->nshells = 3;
    o->shells[0] = 1000.0;
    o->shells[1] = 2000.0;
    o->shells[2] = 3000.0;
    o->ndirs = 90;
    o->snr = 30.0;
    o->seed = 1;
    o->datatype = DT_FLOAT32;
    o->scl_slope = 0.0;
    o->scl_inter = 0.0;
}

/* ---- random numbers: splitmix64 seeding, xoshiro256**, polar Gaussians ---- */

typedef struct {
    uint64_t s[4];
} ph_rng_t;

static uint64_t ph_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void ph_rng_seed(ph_rng_t *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed;
    /* Mix the stream id in through a second splitmix step so that streams of
     * neighbouring seeds do not overlap trivially. */
    x ^= ph_splitmix64(&stream);
    for (int i = 0; i < 4; i++)
        r->s[i] = ph_splitmix64(&x);
}

static inline uint64_t ph_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t ph_rng_next(ph_rng_t *r) {
    uint64_t *s = r->s;
    uint64_t result = ph_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ph_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static inline double ph_rng_uniform(ph_rng_t *r) {
    return (double)(ph_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Two independent standard normals (Marsaglia polar: one log, no sin/cos,
 * and Rician noise needs exactly a pair per value). */
static inline void ph_rng_normal2(ph_rng_t *r, double *a, double *b) {
    double x, y, s;
    do {
        x = 2.0 * ph_rng_uniform(r) - 1.0;
        y = 2.0 * ph_rng_uniform(r) - 1.0;
        s = x * x + y * y;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    *a = x * f;
    *b = y * f;
}

/* ---- validation ---- */

static int ph_validate(const dmri_phantom_opts_t *o, dmri_err_t *err) {
    if (o->nx < 1 || o->ny < 1 || o->nz < 1 || o->nx > PH_MAX_DIM || o->ny > PH_MAX_DIM ||
        o->nz > PH_MAX_DIM)
        return dmri_err_set(err, DMRI_EINVAL, "shape: %d x %d x %d, each must be 1..%d", o->nx,
                            o->ny, o->nz, PH_MAX_DIM);
    if (o->nb0 < 0)
        return dmri_err_set(err, DMRI_EINVAL, "b0: %d volumes, must be >= 0", o->nb0);
    if (o->nshells < 0 || o->nshells > 8)
        return dmri_err_set(err, DMRI_EINVAL, "shells: %d shells, must be 0..8", o->nshells);
    if (o->ndirs < 0)
        return dmri_err_set(err, DMRI_EINVAL, "dirs: %d directions, must be >= 0", o->ndirs);
    for (int s = 0; s < o->nshells; s++)
        if (!isfinite(o->shells[s]) || o->shells[s] <= 10.0 || o->shells[s] > 100000.0)
            return dmri_err_set(err, DMRI_EINVAL,
                                "shells: b = %g, must be in (10, 100000] (b <= 10 counts as b0)",
                                o->shells[s]);
    long long g = (long long)o->nb0 + (long long)o->nshells * o->ndirs;
    if (g < 1 || g > PH_MAX_DIM)
        return dmri_err_set(err, DMRI_EINVAL, "dirs: %lld volumes in all, must be 1..%d", g,
                            PH_MAX_DIM);
    if (!isfinite(o->snr) || o->snr < 0.0)
        return dmri_err_set(err, DMRI_EINVAL, "snr: %g, must be >= 0 (0 = noiseless)", o->snr);
    if (o->datatype != DT_FLOAT32 && o->datatype != DT_INT16)
        return dmri_err_set(err, DMRI_EINVAL, "dtype: NIfTI datatype %d, must be float32 or int16",
                            o->datatype);
    if (!isfinite(o->scl_slope) || !isfinite(o->scl_inter) ||
        fabs(o->scl_slope) > 3.0e38 || fabs(o->scl_inter) > 3.0e38)
        return dmri_err_set(err, DMRI_EINVAL, "scl-slope/scl-inter: must be finite floats");
    if (o->scl_slope == 0.0 && o->scl_inter != 0.0)
        return dmri_err_set(err, DMRI_EINVAL, "scl-inter: %g given without a scl-slope",
                            o->scl_inter);
    return 0;
}

/* ---- gradient scheme ---- */

/* Fills bval[G], bvec[G][3]: nb0 b0s at b = 5 spread through the series (the
 * first volume is one), the DWIs interleaving the shells, each shell a
 * generalised spiral over the hemisphere, randomly rotated and sign-flipped. */
static void ph_gradients(const dmri_phantom_opts_t *o, int G, double *bval, double (*bvec)[3]) {
    ph_rng_t rng;
    ph_rng_seed(&rng, o->seed, 1);
    int ndwi = o->nshells * o->ndirs;
    double *sb = dmri_malloc(sizeof(double) * (size_t)(ndwi > 0 ? ndwi : 1));
    double (*sv)[3] = dmri_malloc(sizeof(double[3]) * (size_t)(ndwi > 0 ? ndwi : 1));
    const double golden = M_PI * (3.0 - sqrt(5.0));
    for (int s = 0; s < o->nshells; s++) {
        /* Uniform random rotation from a random unit quaternion. */
        double q[4], n2 = 0.0;
        ph_rng_normal2(&rng, &q[0], &q[1]);
        ph_rng_normal2(&rng, &q[2], &q[3]);
        for (int i = 0; i < 4; i++)
            n2 += q[i] * q[i];
        double qn = sqrt(n2);
        double a = q[0] / qn, b = q[1] / qn, c = q[2] / qn, d = q[3] / qn;
        double R[3][3] = {
            {a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
            {2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)},
            {2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c},
        };
        /* HCP's b-values scatter by up to ~15 around the nominal shell in
         * steps of 5; small shells get no jitter so they stay well above b0. */
        int jsteps = (int)floor(o->shells[s] * 0.015 / 5.0);
        if (jsteps > 3)
            jsteps = 3;
        for (int i = 0; i < o->ndirs; i++) {
            double z = 1.0 - (i + 0.5) / o->ndirs;
            double rho = sqrt(fmax(0.0, 1.0 - z * z));
            double phi = golden * i;
            double p[3] = {rho * cos(phi), rho * sin(phi), z};
            double v[3];
            for (int k = 0; k < 3; k++)
                v[k] = R[k][0] * p[0] + R[k][1] * p[1] + R[k][2] * p[2];
            double sign = ph_rng_uniform(&rng) < 0.5 ? -1.0 : 1.0;
            double nv = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
            int j = s * o->ndirs + i;
            for (int k = 0; k < 3; k++)
                sv[j][k] = sign * v[k] / nv;
            int step = (int)floor(ph_rng_uniform(&rng) * (2 * jsteps + 1)) - jsteps;
            sb[j] = o->shells[s] + 5.0 * step;
        }
    }
    unsigned char *isb0 = dmri_calloc((size_t)G, 1);
    for (int k = 0; k < o->nb0; k++)
        isb0[(long long)k * G / o->nb0] = 1;
    int dwi = 0;
    for (int g = 0; g < G; g++) {
        if (isb0[g]) {
            /* HCP's b0 volumes carry unit vectors too. */
            double v[3], n2 = 0.0, extra;
            do {
                ph_rng_normal2(&rng, &v[0], &v[1]);
                ph_rng_normal2(&rng, &v[2], &extra);
                n2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
            } while (n2 < 1e-12);
            double nv = sqrt(n2);
            for (int k = 0; k < 3; k++)
                bvec[g][k] = v[k] / nv;
            bval[g] = PH_B0_VALUE;
        } else {
            int s = dwi % o->nshells, i = dwi / o->nshells;
            int j = s * o->ndirs + i;
            memcpy(bvec[g], sv[j], sizeof bvec[g]);
            bval[g] = sb[j];
            dwi++;
        }
    }
    dmri_free(isb0);
    dmri_free(sv);
    dmri_free(sb);
}

/* ---- head model ---- */

typedef struct {
    size_t idx;  /* linear voxel index, x fastest */
    float s0;    /* signal without diffusion weighting */
    float d[6];  /* tensor in voxel axes: xx yy zz xy xz yz (mm^2/s) */
} ph_vox_t;

typedef struct {
    double hx, hy, hz; /* voxels per normalised unit along each axis */
} ph_geom_t;

static int ph_in_ellipsoid(double u, double v, double w, double cu, double cv, double cw,
                           double au, double av, double aw) {
    double a = (u - cu) / au, b = (v - cv) / av, c = (w - cw) / aw;
    return a * a + b * b + c * c <= 1.0;
}

/* 1 if p lies in a fibre bundle; t gets the bundle's tangent (normalised coords). */
static int ph_bundle(double u, double v, double w, double t[3]) {
    /* Corpus callosum: a U-shaped sheet crossing the midline left-right. */
    if (fabs(v) <= 0.35 && fabs(u) <= 0.55 && w < 0.60) {
        double du = u, dw = w - 0.60, d = sqrt(du * du + dw * dw);
        if (d > 0.0 && fabs(d - 0.45) <= 0.10) {
            t[0] = -dw;
            t[1] = 0.0;
            t[2] = du;
            return 1;
        }
    }
    /* Corticospinal tracts: near-vertical, bowing outwards as they rise. */
    if (w >= -0.75 && w <= 0.60) {
        double a = (w + 0.7) / 1.3;
        for (int side = -1; side <= 1; side += 2) {
            double cu = side * (0.25 + 0.2 * a * a), cv = -0.05;
            if ((u - cu) * (u - cu) + (v - cv) * (v - cv) <= 0.09 * 0.09) {
                t[0] = side * 0.4 * a / 1.3;
                t[1] = 0.0;
                t[2] = 1.0;
                return 1;
            }
        }
    }
    /* Cingulum: front-to-back arches above the callosum. */
    if (w >= 0.15) {
        for (int side = -1; side <= 1; side += 2) {
            double du = u - side * 0.13, dv = v, dw = w - 0.10, d = sqrt(dv * dv + dw * dw);
            if (d > 0.0 && du * du + (d - 0.40) * (d - 0.40) <= 0.07 * 0.07) {
                t[0] = 0.0;
                t[1] = dw;
                t[2] = -dv;
                return 1;
            }
        }
    }
    /* Arcuate-like lateral arches. */
    if (w >= -0.10) {
        for (int side = -1; side <= 1; side += 2) {
            double du = u - side * 0.50, dv = v - 0.05, dw = w, d = sqrt(dv * dv + dw * dw);
            if (d > 0.0 && du * du + (d - 0.25) * (d - 0.25) <= 0.07 * 0.07) {
                t[0] = 0.0;
                t[1] = dw;
                t[2] = -dv;
                return 1;
            }
        }
    }
    return 0;
}

static void ph_iso(ph_vox_t *vx, double s0, double d) {
    vx->s0 = (float)s0;
    vx->d[0] = vx->d[1] = vx->d[2] = (float)d;
    vx->d[3] = vx->d[4] = vx->d[5] = 0.0f;
}

/* D = l2 I + (l1 - l2) e e', e the unit vector of t taken to voxel axes. */
static void ph_aniso(ph_vox_t *vx, const ph_geom_t *gm, double s0, double l1, double l2,
                     const double t[3]) {
    double e[3] = {t[0] * gm->hx, t[1] * gm->hy, t[2] * gm->hz};
    double n = sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]);
    if (!(n > 0.0)) {
        e[0] = e[1] = 0.0;
        e[2] = n = 1.0;
    }
    for (int k = 0; k < 3; k++)
        e[k] /= n;
    double dl = l1 - l2;
    vx->s0 = (float)s0;
    vx->d[0] = (float)(l2 + dl * e[0] * e[0]);
    vx->d[1] = (float)(l2 + dl * e[1] * e[1]);
    vx->d[2] = (float)(l2 + dl * e[2] * e[2]);
    vx->d[3] = (float)(dl * e[0] * e[1]);
    vx->d[4] = (float)(dl * e[0] * e[2]);
    vx->d[5] = (float)(dl * e[1] * e[2]);
}

static void ph_tissue(ph_vox_t *vx, const ph_geom_t *gm, double u, double v, double w) {
    double r = sqrt(u * u + v * v + w * w);
    if (r > 0.92) {
        ph_iso(vx, 900.0, 2.5e-3);
        return;
    }
    if (r > 0.86) {
        ph_iso(vx, 3000.0, 3.0e-3);
        return;
    }
    /* Cortical folding: the grey/white boundary wanders with direction. */
    double rb = 0.68;
    if (r > 0.0) {
        double nu = u / r, nv = v / r, nw = w / r;
        rb += 0.05 * sin(9.0 * nu + 4.0 * nw) * cos(8.0 * nv - 3.0 * nw);
    }
    if (r > rb) {
        ph_iso(vx, 1600.0, 0.8e-3);
        return;
    }
    for (int side = -1; side <= 1; side += 2)
        if (ph_in_ellipsoid(u, v, w, side * 0.11, 0.02, -0.05, 0.07, 0.30, 0.10)) {
            ph_iso(vx, 3000.0, 3.0e-3);
            return;
        }
    double t[3];
    if (ph_bundle(u, v, w, t)) {
        ph_aniso(vx, gm, PH_S0_WM, 1.7e-3, 0.35e-3, t);
        return;
    }
    for (int side = -1; side <= 1; side += 2)
        if (ph_in_ellipsoid(u, v, w, side * 0.14, -0.12, -0.22, 0.09, 0.13, 0.09)) {
            ph_iso(vx, 1600.0, 0.8e-3);
            return;
        }
    double rad[3] = {u, v, w};
    if (r == 0.0)
        rad[2] = 1.0;
    ph_aniso(vx, gm, PH_S0_WM, 1.4e-3, 0.55e-3, rad);
}

/* Head voxels in index order; *n gets their count (caller frees). */
static ph_vox_t *ph_model(const dmri_phantom_opts_t *o, size_t *n) {
    ph_geom_t gm = {0.40 * o->nx, 0.41 * o->ny, 0.39 * o->nz};
    double cx = 0.5 * (o->nx - 1), cy = 0.5 * (o->ny - 1), cz = 0.5 * (o->nz - 1);
    size_t count = 0;
    for (int z = 0; z < o->nz; z++)
        for (int y = 0; y < o->ny; y++)
            for (int x = 0; x < o->nx; x++) {
                double u = (x - cx) / gm.hx, v = (y - cy) / gm.hy, w = (z - cz) / gm.hz;
                count += (u * u + v * v + w * w <= 1.0);
            }
    ph_vox_t *vox = dmri_malloc(sizeof(ph_vox_t) * (count ? count : 1));
    size_t k = 0, idx = 0;
    for (int z = 0; z < o->nz; z++)
        for (int y = 0; y < o->ny; y++)
            for (int x = 0; x < o->nx; x++, idx++) {
                double u = (x - cx) / gm.hx, v = (y - cy) / gm.hy, w = (z - cz) / gm.hz;
                if (u * u + v * v + w * w <= 1.0) {
                    vox[k].idx = idx;
                    ph_tissue(&vox[k], &gm, u, v, w);
                    k++;
                }
            }
    *n = count;
    return vox;
}

/* ---- NIfTI-1 output ---- */

static void ph_header(nifti_1_header *h, const dmri_phantom_opts_t *o, int G) {
    memset(h, 0, sizeof *h);
    h->sizeof_hdr = 348;
    h->regular = 'r';
    h->dim[0] = 4;
    h->dim[1] = (short)o->nx;
    h->dim[2] = (short)o->ny;
    h->dim[3] = (short)o->nz;
    h->dim[4] = (short)G;
    h->dim[5] = h->dim[6] = h->dim[7] = 1;
    h->datatype = (short)o->datatype;
    h->bitpix = o->datatype == DT_INT16 ? 16 : 32;
    h->pixdim[0] = -1.0f; /* qfac: the LAS-like grid has det < 0, as HCP's */
    h->pixdim[1] = h->pixdim[2] = h->pixdim[3] = (float)PH_VOXEL_MM;
    h->pixdim[4] = 1.0f;
    h->pixdim[5] = h->pixdim[6] = h->pixdim[7] = 1.0f;
    h->vox_offset = 352.0f;
    /* HCP writes (1, 0) for unscaled data; readers treat it as no scaling. */
    h->scl_slope = o->scl_slope != 0.0 ? (float)o->scl_slope : 1.0f;
    h->scl_inter = o->scl_slope != 0.0 ? (float)o->scl_inter : 0.0f;
    h->xyzt_units = NIFTI_UNITS_MM | NIFTI_UNITS_SEC;
    snprintf(h->descrip, sizeof h->descrip, "dmri-phantom seed %llu snr %g", o->seed, o->snr);
    h->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    h->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    /* The grid centre sits where HCP's does, so 145x174x145 gets HCP's exact
     * offsets (90, -126, -72). */
    double ox = 0.5 * PH_VOXEL_MM * (o->nx - 1);
    double oy = -17.875 - 0.5 * PH_VOXEL_MM * (o->ny - 1);
    double oz = 18.0 - 0.5 * PH_VOXEL_MM * (o->nz - 1);
    h->srow_x[0] = (float)-PH_VOXEL_MM;
    h->srow_x[3] = (float)ox;
    h->srow_y[1] = (float)PH_VOXEL_MM;
    h->srow_y[3] = (float)oy;
    h->srow_z[2] = (float)PH_VOXEL_MM;
    h->srow_z[3] = (float)oz;
    /* diag(-1, 1, 1) = rotation by pi about y (quaternion (0, 0, 1, 0)) with qfac -1. */
    h->quatern_b = 0.0f;
    h->quatern_c = 1.0f;
    h->quatern_d = 0.0f;
    h->qoffset_x = (float)ox;
    h->qoffset_y = (float)oy;
    h->qoffset_z = (float)oz;
    memcpy(h->magic, "n+1", 4);
}

static int ph_gz_fail(gzFile gz, const char *path, const char *what, dmri_err_t *err) {
    int zerr = 0;
    const char *msg = gz ? gzerror(gz, &zerr) : "cannot open";
    if (zerr == Z_ERRNO || !gz)
        msg = strerror(errno);
    return dmri_err_set(err, DMRI_EIO, "%s: %s failed: %s", path, what, msg);
}

static int ph_gz_write(gzFile gz, const void *buf, size_t len, const char *path, dmri_err_t *err) {
    const char *p = buf;
    while (len > 0) {
        unsigned n = len > PH_CHUNK ? PH_CHUNK : (unsigned)len;
        int w = gzwrite(gz, p, n);
        if (w <= 0 || (unsigned)w != n)
            return ph_gz_fail(gz, path, "write", err);
        p += n;
        len -= n;
    }
    return 0;
}

/* Stored raw value for a (physical) value, as the header's scaling inverts it. */
static inline double ph_raw(double val, double slope, double inter) {
    return slope != 0.0 ? (val - inter) / slope : val;
}

static inline int16_t ph_to_i16(double raw) {
    double r = floor(raw + 0.5);
    if (r > 32767.0)
        return 32767;
    if (r < -32768.0)
        return -32768;
    return (int16_t)r;
}

static int ph_write_data(const char *path, const dmri_phantom_opts_t *o, int G,
                         const double *bval, const double (*bvec)[3], const ph_vox_t *vox,
                         size_t nhead, dmri_err_t *err) {
    char tmp[4096];
    if (dmri_tmp_name_for(tmp, sizeof tmp, path) != 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return dmri_err_set(err, DMRI_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    /* The fd stays ours for fsync after gzclose. Run-length deflate ("R"):
     * the zero background is most of the bytes and noise defeats LZ matches,
     * so it is ~1.7x faster than level 1 and slightly smaller. */
    int gfd = dup(fd);
    gzFile gz = gfd >= 0 ? gzdopen(gfd, "wb1R") : NULL;
    if (!gz) {
        int rc = dmri_err_set(err, DMRI_EIO, "%s: cannot start gzip stream: %s", tmp,
                              strerror(errno));
        if (gfd >= 0)
            close(gfd);
        close(fd);
        unlink(tmp);
        return rc;
    }
    int rc = 0;
    if (gzbuffer(gz, 1u << 20) != 0)
        rc = ph_gz_fail(gz, tmp, "gzbuffer", err);

    nifti_1_header h;
    ph_header(&h, o, G);
    static const char ext[4] = {0, 0, 0, 0};
    if (rc == 0)
        rc = ph_gz_write(gz, &h, sizeof h, tmp, err);
    if (rc == 0)
        rc = ph_gz_write(gz, ext, sizeof ext, tmp, err);

    size_t nvox = (size_t)o->nx * o->ny * o->nz;
    size_t vsz = o->datatype == DT_INT16 ? 2 : 4;
    void *buf = dmri_malloc(nvox * vsz);
    float *bf = buf;
    int16_t *bi = buf;
    double sigma = o->snr > 0.0 ? PH_S0_WM / o->snr : 0.0;
    double slope = o->scl_slope, inter = o->scl_inter;
    /* The background holds the raw value that reads back as 0 (exactly 0
     * unless an intercept is not a multiple of the slope). */
    float bg_f = (float)ph_raw(0.0, slope, inter);
    int16_t bg_i = ph_to_i16(ph_raw(0.0, slope, inter));
    ph_rng_t rng;
    ph_rng_seed(&rng, o->seed, 2);

    for (int g = 0; g < G && rc == 0; g++) {
        const double *gv = bvec[g];
        double b = bval[g];
        double c[6] = {b * gv[0] * gv[0],       b * gv[1] * gv[1],       b * gv[2] * gv[2],
                       2.0 * b * gv[0] * gv[1], 2.0 * b * gv[0] * gv[2], 2.0 * b * gv[1] * gv[2]};
        if (o->datatype == DT_INT16) {
            for (size_t i = 0; i < nvox; i++)
                bi[i] = bg_i;
        } else {
            for (size_t i = 0; i < nvox; i++)
                bf[i] = bg_f;
        }
        for (size_t k = 0; k < nhead; k++) {
            const ph_vox_t *vx = &vox[k];
            double q = c[0] * vx->d[0] + c[1] * vx->d[1] + c[2] * vx->d[2] + c[3] * vx->d[3] +
                       c[4] * vx->d[4] + c[5] * vx->d[5];
            double s = vx->s0 * exp(-q);
            if (sigma > 0.0) {
                double n1, n2;
                ph_rng_normal2(&rng, &n1, &n2);
                double re = s + sigma * n1, im = sigma * n2;
                s = sqrt(re * re + im * im);
            }
            double raw = ph_raw(s, slope, inter);
            if (o->datatype == DT_INT16)
                bi[vx->idx] = ph_to_i16(raw);
            else
                bf[vx->idx] = (float)raw;
        }
        rc = ph_gz_write(gz, buf, nvox * vsz, tmp, err);
    }
    dmri_free(buf);

    int zc = gzclose(gz);
    if (rc == 0 && zc != Z_OK)
        rc = dmri_err_set(err, DMRI_EIO, "%s: closing the gzip stream failed (zlib error %d)",
                          tmp, zc);
    if (rc == 0 && fsync(fd) != 0)
        rc = dmri_err_set(err, DMRI_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = dmri_err_set(err, DMRI_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = dmri_err_set(err, DMRI_EIO, "%s: cannot rename into place: %s", path,
                          strerror(errno));
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* ---- FSL text files ---- */

static int ph_write_text(const char *out, const char *name, int G, const double *bval,
                         const double (*bvec)[3], dmri_err_t *err) {
    char path[4096];
    if (dmri_path_join(path, sizeof path, out, name) != 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: path too long", out);
    int vecs = bvec != NULL;
    size_t cap = (size_t)G * (vecs ? 3 * 24 : 24) + 16;
    char *text = dmri_malloc(cap);
    size_t len = 0;
    for (int row = 0; row < (vecs ? 3 : 1); row++) {
        for (int g = 0; g < G; g++) {
            int n = vecs ? snprintf(text + len, cap - len, "%s%.10f", g ? " " : "", bvec[g][row])
                         : snprintf(text + len, cap - len, "%s%.15g", g ? " " : "", bval[g]);
            len += (size_t)n;
        }
        len += (size_t)snprintf(text + len, cap - len, "\n");
    }
    int rc = dmri_write_file_atomic(path, text, len, err);
    dmri_free(text);
    return rc;
}

int dmri_phantom_write(const char *out, const dmri_phantom_opts_t *o, dmri_err_t *err) {
    int rc = ph_validate(o, err);
    if (rc != 0)
        return rc;
    if (!out || !*out)
        return dmri_err_set(err, DMRI_EINVAL, "out: no output folder given");
    rc = dmri_mkdir_p(out, err);
    if (rc != 0)
        return rc;
    char data[4096];
    if (dmri_path_join(data, sizeof data, out, "data.nii.gz") != 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: path too long", out);

    int G = o->nb0 + o->nshells * o->ndirs;
    double *bval = dmri_malloc(sizeof(double) * (size_t)G);
    double (*bvec)[3] = dmri_malloc(sizeof(double[3]) * (size_t)G);
    ph_gradients(o, G, bval, bvec);
    size_t nhead = 0;
    ph_vox_t *vox = ph_model(o, &nhead);

    rc = ph_write_data(data, o, G, bval, (const double (*)[3])bvec, vox, nhead, err);
    dmri_free(vox);
    if (rc == 0)
        rc = ph_write_text(out, "bvals", G, bval, NULL, err);
    if (rc == 0)
        rc = ph_write_text(out, "bvecs", G, NULL, (const double (*)[3])bvec, err);
    dmri_free(bvec);
    dmri_free(bval);
    return rc;
}
