/* test_dti: the tensor fit on noiseless synthetic signals whose tensor is
 * known, the scalar maps on tensors with known FA/MD, and the edge cases
 * (all-zero voxel, isotropic tensor, rank-deficient design, NaN signal). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"
#include "dti.h"
#include "gtab.h"

static int failures;

#define CHECK_NEAR(a, b, tol)                                                               \
    do {                                                                                    \
        double va_ = (a), vb_ = (b), t_ = (tol);                                            \
        if (!(fabs(va_ - vb_) <= t_)) {                                                     \
            fprintf(stderr, "%s:%d: |%s - %s| <= %g failed: %.17g vs %.17g (diff %.3g)\n", \
                    __FILE__, __LINE__, #a, #b, t_, va_, vb_, fabs(va_ - vb_));             \
            failures++;                                                                     \
        }                                                                                   \
    } while (0)

#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long va_ = (long long)(a), vb_ = (long long)(b);                              \
        if (va_ != vb_) {                                                                  \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                     \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                           \
        }                                                                         \
    } while (0)

/* A gradient scheme: nb0 b0s at b = 5 with unit vectors (HCP-like), then
 * `ndir` directions from a golden-spiral on each of the shells. */
typedef struct {
    int n;
    double b[400];
    double g[1200];
} scheme_t;

static void make_scheme(scheme_t *s, int nb0, int ndir, const double *shells, int nshell) {
    int k = 0;
    for (int i = 0; i < nb0; i++, k++) {
        s->b[k] = 5.0;
        s->g[k * 3] = 0.0;
        s->g[k * 3 + 1] = 0.0;
        s->g[k * 3 + 2] = 1.0;
    }
    for (int sh = 0; sh < nshell; sh++)
        for (int i = 0; i < ndir; i++, k++) {
            double z = 1.0 - (2.0 * i + 1.0) / ndir;
            double r = sqrt(1.0 - z * z);
            double phi = i * 2.399963229728653 + sh * 0.7;
            s->b[k] = shells[sh];
            s->g[k * 3] = r * cos(phi);
            s->g[k * 3 + 1] = r * sin(phi);
            s->g[k * 3 + 2] = z;
        }
    s->n = k;
}

/* Signal S0 exp(-b g^T D g) for a full 3x3 D (row-major). */
static void make_signal(const scheme_t *s, const double D[9], double S0, double *sig) {
    for (int i = 0; i < s->n; i++) {
        const double *g = s->g + i * 3;
        double q = 0.0;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++)
                q += g[r] * D[r * 3 + c] * g[c];
        sig[i] = S0 * exp(-s->b[i] * q);
    }
}

/* D = R diag(l) R^T with R a rotation about a fixed axis. */
static void rotated_tensor(const double l[3], double angle, double D[9], double R[9]) {
    double ax[3] = {1.0 / sqrt(3.0), -1.0 / sqrt(3.0), 1.0 / sqrt(3.0)};
    double c = cos(angle), sn = sin(angle), t = 1.0 - c;
    double x = ax[0], y = ax[1], z = ax[2];
    double Rm[9] = {t * x * x + c,     t * x * y - sn * z, t * x * z + sn * y,
                    t * x * y + sn * z, t * y * y + c,     t * y * z - sn * x,
                    t * x * z - sn * y, t * y * z + sn * x, t * z * z + c};
    memcpy(R, Rm, sizeof Rm);
    for (int r = 0; r < 3; r++)
        for (int cc = 0; cc < 3; cc++) {
            double v = 0.0;
            for (int k = 0; k < 3; k++)
                v += R[r * 3 + k] * l[k] * R[cc * 3 + k];
            D[r * 3 + cc] = v;
        }
}

typedef struct {
    dmri_gtab_t gt;
    dmri_dti_model_t m;
    double *ws;
} fixture_t;

static int fixture_init(fixture_t *f, const scheme_t *s) {
    dmri_err_t err = {0};
    if (dmri_gtab_init(&f->gt, s->b, s->g, s->n, 10.0, &err) != 0 ||
        dmri_dti_model_init(&f->m, f->gt.b_eff, f->gt.g_eff, s->n, &err) != 0) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        failures++;
        return -1;
    }
    f->ws = dmri_malloc(dmri_dti_workspace_len(&f->m) * sizeof(double));
    return 0;
}

static void fixture_close(fixture_t *f) {
    dmri_free(f->ws);
    dmri_dti_model_close(&f->m);
    dmri_gtab_close(&f->gt);
}

static void fit_f64(fixture_t *f, const double *sig, double evals[3], double evecs[9]) {
    double y[400];
    dmri_dti_logsig_f64(sig, 1, f->m.nvol, y);
    dmri_dti_fit_voxel(&f->m, y, f->ws, evals, evecs);
}

static void test_design_matrix(void) {
    /* Row values and column order of PIPELINE 7a, and the lambda_min rule. */
    double b[3] = {0, 1000, 3000};
    double g[9] = {0, 0, 0, 0.6, 0.8, 0, 0, 0.6, -0.8};
    dmri_dti_model_t m;
    dmri_err_t err = {0};
    CHECK_INT(dmri_dti_model_init(&m, b, g, 3, &err), 0);
    const double want1[7] = {-360, -960, -640, 0, 0, 0, -1};
    const double want2[7] = {0, 0, -1080, 0, 2880, -1920, -1};
    for (int c = 0; c < 7; c++) {
        CHECK_NEAR(m.X[c], c == 6 ? -1.0 : 0.0, 0.0);
        CHECK_NEAR(m.X[7 + c], want1[c], 1e-9);
        CHECK_NEAR(m.X[14 + c], want2[c], 1e-9);
    }
    /* max of the un-negated B-matrix is 1920 (the +2880 entry is negated). */
    CHECK_NEAR(m.min_eval, 1e-6 / 1920.0, 1e-24);
    dmri_dti_model_close(&m);
    dmri_dti_model_close(&m);

    /* Only b0s: lambda_min = 1e-6 / 1. */
    double g0[6] = {0};
    double b0[2] = {0, 0};
    CHECK_INT(dmri_dti_model_init(&m, b0, g0, 2, &err), 0);
    CHECK_NEAR(m.min_eval, 1e-6, 0.0);
    dmri_dti_model_close(&m);

    double bn[2] = {NAN, 1000};
    double gn[6] = {0, 0, 1, 0, 0, 1};
    CHECK_INT(dmri_dti_model_init(&m, bn, gn, 2, &err), DMRI_EFORMAT);
    CHECK(strstr(err.msg, "volume 0") != NULL);
    CHECK_INT(dmri_dti_model_init(&m, bn, gn, 0, &err), DMRI_EINVAL);
}

static void test_pinv(void) {
    /* X+ X = I for a full-rank design. */
    scheme_t s;
    const double shells[1] = {1000};
    make_scheme(&s, 2, 12, shells, 1);
    fixture_t f;
    if (fixture_init(&f, &s) != 0)
        return;
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 7; c++) {
            double v = 0.0;
            for (int i = 0; i < s.n; i++)
                v += f.m.X_pinv[r * s.n + i] * f.m.X[i * 7 + c];
            CHECK_NEAR(v, r == c ? 1.0 : 0.0, 1e-10);
        }
    fixture_close(&f);
}

static void test_known_tensor(void) {
    scheme_t s;
    const double shells[3] = {1000, 2000, 3000};
    make_scheme(&s, 6, 30, shells, 3);
    fixture_t f;
    if (fixture_init(&f, &s) != 0)
        return;
    const double l[3] = {1.7e-3, 0.4e-3, 0.2e-3};
    double D[9], R[9], sig[400], evals[3], evecs[9];
    rotated_tensor(l, 0.9, D, R);
    make_signal(&s, D, 1234.5, sig);
    fit_f64(&f, sig, evals, evecs);
    for (int j = 0; j < 3; j++)
        CHECK_NEAR(evals[j], l[j], 1e-12);
    /* Each eigenvector equals the rotation's column up to sign. */
    for (int j = 0; j < 3; j++) {
        double dot = 0.0;
        for (int c = 0; c < 3; c++)
            dot += evecs[c * 3 + j] * R[c * 3 + j];
        CHECK_NEAR(fabs(dot), 1.0, 1e-9);
    }
    /* Reassembled tensor equals D. */
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            double v = 0.0;
            for (int k = 0; k < 3; k++)
                v += evecs[r * 3 + k] * evals[k] * evecs[c * 3 + k];
            CHECK_NEAR(v, D[r * 3 + c], 1e-14);
        }
    double fa, md, ad, rd, cfa[3];
    dmri_dti_maps(evals, evecs, &fa, &md, &ad, &rd, cfa);
    /* FA by the other textbook form: sqrt(3/2) |l - mean| / |l|. */
    double mean = (l[0] + l[1] + l[2]) / 3.0;
    double dev = sqrt((l[0] - mean) * (l[0] - mean) + (l[1] - mean) * (l[1] - mean) +
                      (l[2] - mean) * (l[2] - mean));
    double nrm = sqrt(l[0] * l[0] + l[1] * l[1] + l[2] * l[2]);
    double fa_ref = sqrt(1.5) * dev / nrm;
    CHECK_NEAR(fa, fa_ref, 1e-9);
    CHECK_NEAR(md, 0.7666666666666666e-3, 1e-14);
    CHECK_NEAR(ad, 1.7e-3, 1e-14);
    CHECK_NEAR(rd, 0.3e-3, 1e-14);
    for (int c = 0; c < 3; c++)
        CHECK_NEAR(cfa[c], fabs(R[c * 3]) * fa_ref, 1e-9);

    /* The same signal through the float32 log path: within f32 rounding. */
    float sigf[400];
    double y[400], ev2[3], evec2[9];
    for (int i = 0; i < s.n; i++)
        sigf[i] = (float)sig[i];
    dmri_dti_logsig_f32(sigf, 1, s.n, y);
    dmri_dti_fit_voxel(&f.m, y, f.ws, ev2, evec2);
    for (int j = 0; j < 3; j++)
        CHECK_NEAR(ev2[j], l[j], 1e-6 * l[0]);
    fixture_close(&f);
}

static void test_diagonal_tensors(void) {
    scheme_t s;
    const double shells[2] = {1000, 2500};
    make_scheme(&s, 1, 40, shells, 2);
    fixture_t f;
    if (fixture_init(&f, &s) != 0)
        return;
    /* Eigenvalues given out of order on the diagonal: returned descending with
     * the matching axis as eigenvector. */
    const double diag[3] = {0.5e-3, 2.0e-3, 1.0e-3};
    double D[9] = {diag[0], 0, 0, 0, diag[1], 0, 0, 0, diag[2]};
    double sig[400], evals[3], evecs[9];
    make_signal(&s, D, 800.0, sig);
    fit_f64(&f, sig, evals, evecs);
    CHECK_NEAR(evals[0], 2.0e-3, 1e-13);
    CHECK_NEAR(evals[1], 1.0e-3, 1e-13);
    CHECK_NEAR(evals[2], 0.5e-3, 1e-13);
    CHECK_NEAR(fabs(evecs[1 * 3 + 0]), 1.0, 1e-9); /* e1 = y */
    CHECK_NEAR(fabs(evecs[2 * 3 + 1]), 1.0, 1e-9); /* e2 = z */
    CHECK_NEAR(fabs(evecs[0 * 3 + 2]), 1.0, 1e-9); /* e3 = x */
    double fa, md, ad, rd, cfa[3];
    dmri_dti_maps(evals, evecs, &fa, &md, &ad, &rd, cfa);
    /* (1.5^2 + 0.5^2 + 1^2) / 2 = 1.75; (4 + 1 + 0.25) = 5.25 -> FA = sqrt(1/3). */
    CHECK_NEAR(fa, sqrt(1.0 / 3.0), 1e-9);
    CHECK_NEAR(md, 3.5e-3 / 3.0, 1e-15);
    CHECK_NEAR(ad, 2.0e-3, 1e-15);
    CHECK_NEAR(rd, 0.75e-3, 1e-15);
    CHECK_NEAR(cfa[0], 0.0, 1e-9);
    CHECK_NEAR(cfa[1], sqrt(1.0 / 3.0), 1e-9);
    CHECK_NEAR(cfa[2], 0.0, 1e-9);

    /* Isotropic tensor: FA = 0 (up to rounding), all eigenvalues equal. */
    double Di[9] = {0.8e-3, 0, 0, 0, 0.8e-3, 0, 0, 0, 0.8e-3};
    make_signal(&s, Di, 500.0, sig);
    fit_f64(&f, sig, evals, evecs);
    for (int j = 0; j < 3; j++)
        CHECK_NEAR(evals[j], 0.8e-3, 1e-15);
    CHECK(evals[0] >= evals[1] && evals[1] >= evals[2]);
    dmri_dti_maps(evals, evecs, &fa, &md, &ad, &rd, cfa);
    CHECK_NEAR(fa, 0.0, 1e-9);
    CHECK_NEAR(md, 0.8e-3, 1e-15);
    /* Eigenvectors still orthonormal. */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double v = 0.0;
            for (int c = 0; c < 3; c++)
                v += evecs[c * 3 + a] * evecs[c * 3 + b];
            CHECK_NEAR(v, a == b ? 1.0 : 0.0, 1e-12);
        }

    /* Negative eigenvalue (non-physical signal rising with b) is clipped. */
    double Dn[9] = {1.5e-3, 0, 0, 0, -0.3e-3, 0, 0, 0, 0.4e-3};
    make_signal(&s, Dn, 500.0, sig);
    fit_f64(&f, sig, evals, evecs);
    CHECK_NEAR(evals[0], 1.5e-3, 1e-13);
    CHECK_NEAR(evals[1], 0.4e-3, 1e-13);
    CHECK_NEAR(evals[2], f.m.min_eval, 0.0);
    CHECK_NEAR(fabs(evecs[1 * 3 + 2]), 1.0, 1e-9);
    fixture_close(&f);
}

static void test_maps_edge(void) {
    /* Outside the mask: all zero -> FA 0, not NaN. */
    double z3[3] = {0, 0, 0}, z9[9] = {0};
    double fa = -1, md = -1, ad = -1, rd = -1, cfa[3] = {-1, -1, -1};
    dmri_dti_maps(z3, z9, &fa, &md, &ad, &rd, cfa);
    CHECK_NEAR(fa, 0.0, 0.0);
    CHECK_NEAR(md, 0.0, 0.0);
    CHECK_NEAR(ad, 0.0, 0.0);
    CHECK_NEAR(rd, 0.0, 0.0);
    for (int c = 0; c < 3; c++)
        CHECK_NEAR(cfa[c], 0.0, 0.0);
    /* One non-zero eigenvalue: FA = 1 exactly. */
    double e[3] = {1e-3, 0, 0};
    double v[9] = {0, 0, 0, -1, 0, 0, 0, 0, 0};
    dmri_dti_maps(e, v, &fa, &md, &ad, &rd, cfa);
    CHECK_NEAR(fa, 1.0, 0.0);
    CHECK_NEAR(cfa[1], 1.0, 0.0);
    CHECK_NEAR(rd, 0.0, 0.0);
}

static void test_zero_and_nan_voxel(void) {
    scheme_t s;
    const double shells[1] = {1000};
    make_scheme(&s, 3, 30, shells, 1);
    fixture_t f;
    if (fixture_init(&f, &s) != 0)
        return;
    float zf[400] = {0};
    double y[400], evals[3], evecs[9], fa, md, ad, rd, cfa[3];
    dmri_dti_logsig_f32(zf, 1, s.n, y);
    CHECK_NEAR(y[0], (double)logf(1e-4f), 0.0);
    dmri_dti_fit_voxel(&f.m, y, f.ws, evals, evecs);
    for (int j = 0; j < 3; j++) {
        CHECK(!isnan(evals[j]));
        CHECK_NEAR(evals[j], f.m.min_eval, 0.0);
    }
    for (int j = 0; j < 9; j++)
        CHECK(isfinite(evecs[j]));
    dmri_dti_maps(evals, evecs, &fa, &md, &ad, &rd, cfa);
    CHECK_NEAR(fa, 0.0, 0.0);
    CHECK(!isnan(cfa[0]) && !isnan(cfa[1]) && !isnan(cfa[2]));

    /* Negative values are floored too; the f64 floor is 1e-4 in f64. */
    double neg[400];
    for (int i = 0; i < s.n; i++)
        neg[i] = -3.0;
    dmri_dti_logsig_f64(neg, 1, s.n, y);
    CHECK_NEAR(y[5], log(1e-4), 0.0);

    /* A NaN sample stays NaN (np.maximum) and the fit reports NaN. */
    double sig[400];
    for (int i = 0; i < s.n; i++)
        sig[i] = 100.0;
    sig[7] = NAN;
    dmri_dti_logsig_f64(sig, 1, s.n, y);
    CHECK(isnan(y[7]));
    dmri_dti_fit_voxel(&f.m, y, f.ws, evals, evecs);
    CHECK(isnan(evals[0]));
    fixture_close(&f);
}

static void test_stride(void) {
    /* Volume-major layout: the log reads every stride-th value. */
    float s[12];
    for (int i = 0; i < 12; i++)
        s[i] = (float)(i + 1);
    double y[4];
    dmri_dti_logsig_f32(s + 1, 3, 4, y);
    for (int g = 0; g < 4; g++)
        CHECK_NEAR(y[g], (double)logf((float)(3 * g + 2)), 0.0);
}

static void test_rank_deficient(void) {
    /* Every direction in the xy-plane: the Dxz, Dyz, Dzz columns are zero, the
     * normal equations singular; the minimum-norm (pseudo-inverse) solution
     * sets those to 0 and recovers the in-plane tensor. */
    scheme_t s;
    s.n = 0;
    for (int i = 0; i < 2; i++, s.n++) {
        s.b[s.n] = 0;
        s.g[s.n * 3] = s.g[s.n * 3 + 1] = s.g[s.n * 3 + 2] = 0;
    }
    for (int i = 0; i < 16; i++, s.n++) {
        double phi = 3.14159265358979 * i / 16;
        s.b[s.n] = 1000;
        s.g[s.n * 3] = cos(phi);
        s.g[s.n * 3 + 1] = sin(phi);
        s.g[s.n * 3 + 2] = 0;
    }
    fixture_t f;
    if (fixture_init(&f, &s) != 0)
        return;
    /* In-plane eigenvalues 1.2e-3 and 0.3e-3 along (cos 30, sin 30). */
    double c = cos(0.5235987755982988), sn = sin(0.5235987755982988);
    double D[9] = {1.2e-3 * c * c + 0.3e-3 * sn * sn, 0.9e-3 * c * sn, 0,
                   0.9e-3 * c * sn, 1.2e-3 * sn * sn + 0.3e-3 * c * c, 0,
                   0, 0, 0.7e-3};
    double sig[400], evals[3], evecs[9];
    make_signal(&s, D, 1000.0, sig);
    fit_f64(&f, sig, evals, evecs);
    CHECK_NEAR(evals[0], 1.2e-3, 1e-12);
    CHECK_NEAR(evals[1], 0.3e-3, 1e-12);
    CHECK_NEAR(evals[2], f.m.min_eval, 0.0); /* Dzz unobservable -> 0 -> clipped */
    CHECK_NEAR(fabs(evecs[2 * 3 + 2]), 1.0, 1e-9);
    CHECK_NEAR(fabs(evecs[0 * 3 + 0]), c, 1e-9);
    fixture_close(&f);

    /* Fewer volumes than parameters (G = 5 < 7): underdetermined, the
     * normal equations are singular and the minimum-norm path must still
     * give finite, clipped output. */
    scheme_t u;
    const double sh[1] = {1000};
    make_scheme(&u, 1, 4, sh, 1);
    if (fixture_init(&f, &u) != 0)
        return;
    make_signal(&u, D, 1000.0, sig);
    fit_f64(&f, sig, evals, evecs);
    for (int j = 0; j < 3; j++)
        CHECK(isfinite(evals[j]) && evals[j] >= f.m.min_eval);
    for (int j = 0; j < 9; j++)
        CHECK(isfinite(evecs[j]));
    fixture_close(&f);
}

/* ------------------------------------------------------------ block API */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double rng_unif(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

/* Eigenvalues of a voxel as dmri_dti_fit_voxel gives them must equal the
 * block's within rounding of a different summation order; eigenvectors of
 * separated eigenvalues likewise up to sign. */
static int block_voxel_same(const double *ev_ref, const double *E_ref, const double *ev,
                            const double *E) {
    if (isnan(ev_ref[0]))
        return isnan(ev[0]) && isnan(E[0]);
    for (int j = 0; j < 3; j++)
        if (!(fabs(ev[j] - ev_ref[j]) <= 1e-9 * fabs(ev_ref[j]) + 1e-15))
            return 0;
    for (int j = 0; j < 3; j++) {
        double gap = 1e300;
        for (int k = 0; k < 3; k++)
            if (k != j && fabs(ev_ref[j] - ev_ref[k]) < gap)
                gap = fabs(ev_ref[j] - ev_ref[k]);
        if (!(gap > 1e-4 * ev_ref[0]))
            continue;
        double dp = 0.0, dm = 0.0;
        for (int c = 0; c < 3; c++) {
            dp = fmax(dp, fabs(E[c * 3 + j] - E_ref[c * 3 + j]));
            dm = fmax(dm, fabs(E[c * 3 + j] + E_ref[c * 3 + j]));
        }
        if (!(fmin(dp, dm) <= 1e-8))
            return 0;
    }
    return 1;
}

/* dmri_dti_fit_block against dmri_dti_fit_voxel on 45 voxels (not a multiple
 * of the 8-voxel groups) with a gappy mask, every input kind, both layouts
 * and every instruction set: noisy tensors, an all-zero voxel, NaN, inf and
 * negative samples, an isotropic and a cylindrical tensor. */
static void test_block(void) {
    scheme_t s;
    const double shells[3] = {1000, 2000, 3000};
    make_scheme(&s, 6, 30, shells, 3);
    fixture_t f;
    if (fixture_init(&f, &s) != 0)
        return;
    enum { NV = 45 };
    const int G = s.n;
    static double sig[NV][400];
    static float sigf[NV][400];
    unsigned char mask[NV];
    for (int v = 0; v < NV; v++) {
        double l[3] = {0.3e-3 + 2.5e-3 * rng_unif(), 0.2e-3 + 1e-3 * rng_unif(),
                       0.1e-3 + 0.5e-3 * rng_unif()};
        if (v == 3)
            l[0] = l[1] = l[2] = 0.8e-3; /* isotropic */
        if (v == 4)
            l[2] = l[1]; /* cylindrical */
        double D[9], R[9];
        rotated_tensor(l, 6.0 * rng_unif(), D, R);
        make_signal(&s, D, 300.0 + 2000.0 * rng_unif(), sig[v]);
        for (int g = 0; g < G; g++) /* noise, rounded as float32 data are */
            sig[v][g] = (float)fabs(sig[v][g] + 20.0 * (rng_unif() - 0.5));
        mask[v] = (v % 7) != 5;
    }
    for (int g = 0; g < G; g++) {
        sig[10][g] = 0.0;          /* all-zero voxel: every eigenvalue clipped */
        sig[11][g] = -5.0 + g % 3; /* negative samples floored to 1e-4 */
    }
    sig[12][7] = NAN;
    sig[13][9] = INFINITY;
    for (int v = 0; v < NV; v++)
        for (int g = 0; g < G; g++)
            sigf[v][g] = (float)sig[v][g];
    /* Reference: the per-voxel route, per kind. */
    static double ref_ev[3][NV][3], ref_E[3][NV][9];
    for (int kind = 0; kind < 3; kind++)
        for (int v = 0; v < NV; v++) {
            double y[400];
            if (kind == DMRI_DTI_IN_F32)
                dmri_dti_logsig_f32(sigf[v], 1, G, y);
            else
                dmri_dti_logsig_f64(sig[v], 1, G, y);
            dmri_dti_fit_voxel(&f.m, y, f.ws, ref_ev[kind][v], ref_E[kind][v]);
        }
    CHECK(isnan(ref_ev[0][12][0]) && isnan(ref_ev[2][13][0]));

    static const char *const isas[] = {"scalar", "avx512"};
    static float vm32[400][NV];
    static double vm64[400][NV];
    for (int g = 0; g < G; g++)
        for (int v = 0; v < NV; v++) {
            vm32[g][v] = sigf[v][g];
            vm64[g][v] = sig[v][g];
        }
    for (int isa = 0; isa < 2; isa++) {
        if (dmri_dti_set_isa(isas[isa]) != 0)
            continue;
        CHECK(!strcmp(dmri_dti_isa(), isas[isa]));
        for (int kind = 0; kind < 3; kind++)
            for (int layout = 0; layout < 2; layout++) {
                const void *vols[400];
                int f32 = kind != DMRI_DTI_IN_F64;
                for (int g = 0; g < G; g++) {
                    if (layout == 0)
                        vols[g] = f32 ? (const void *)&sigf[0][g] : (const void *)&sig[0][g];
                    else
                        vols[g] = f32 ? (const void *)vm32[g] : (const void *)vm64[g];
                }
                size_t vstride = layout == 0 ? 400 : 1;
                double ev[NV][3], E[NV][9];
                static float maps[16][NV];
                for (int v = 0; v < NV; v++)
                    for (int j = 0; j < 3; j++)
                        ev[v][j] = -1.0;
                for (int i = 0; i < 16; i++)
                    for (int v = 0; v < NV; v++)
                        maps[i][v] = -1.0f;
                dmri_dti_out_t o = {.evals = &ev[0][0], .evecs = &E[0][0], .fa = maps[0],
                                    .md = maps[1], .ad = maps[2], .rd = maps[3],
                                    .color_fa = maps[4], .evecs_map = maps[7], .stride = NV};
                dmri_dti_fit_block(&f.m, (dmri_dti_input_t)kind, vols, vstride, NV, mask, &o);
                int bad = 0;
                for (int v = 0; v < NV && bad < 3; v++) {
                    if (!mask[v]) {
                        int zero = 1;
                        for (int j = 0; j < 3; j++)
                            zero &= ev[v][j] == 0.0;
                        for (int j = 0; j < 9; j++)
                            zero &= E[v][j] == 0.0;
                        for (int i = 0; i < 16; i++)
                            zero &= maps[i][v] == 0.0f;
                        if (!zero) {
                            fprintf(stderr, "block %s kind %d layout %d: voxel %d outside the "
                                    "mask not zeroed\n", isas[isa], kind, layout, v);
                            failures++;
                            bad++;
                        }
                        continue;
                    }
                    if (!block_voxel_same(ref_ev[kind][v], ref_E[kind][v], ev[v], E[v])) {
                        fprintf(stderr, "block %s kind %d layout %d voxel %d: evals %.17g %.17g "
                                "%.17g vs fit_voxel %.17g %.17g %.17g\n", isas[isa], kind, layout,
                                v, ev[v][0], ev[v][1], ev[v][2], ref_ev[kind][v][0],
                                ref_ev[kind][v][1], ref_ev[kind][v][2]);
                        failures++;
                        bad++;
                        continue;
                    }
                    if (isnan(ev[v][0]))
                        continue;
                    /* Float maps are the double results rounded; eigenvector
                     * signs normalised (largest-magnitude component > 0). */
                    double fa, md, ad, rd, cfa[3];
                    dmri_dti_maps(ev[v], E[v], &fa, &md, &ad, &rd, cfa);
                    int ok = maps[0][v] == (float)fa && maps[1][v] == (float)md &&
                             maps[2][v] == (float)ad && maps[3][v] == (float)rd;
                    for (int c = 0; c < 3; c++) {
                        ok &= maps[4 + c][v] == (float)cfa[c];
                        int big = 0;
                        for (int r = 1; r < 3; r++)
                            if (fabs(E[v][r * 3 + c]) > fabs(E[v][big * 3 + c]))
                                big = r;
                        ok &= E[v][big * 3 + c] > 0.0;
                        for (int r = 0; r < 3; r++)
                            ok &= maps[7 + r + 3 * c][v] == (float)E[v][r * 3 + c];
                    }
                    if (!ok) {
                        fprintf(stderr, "block %s kind %d layout %d voxel %d: float maps or "
                                "eigenvector signs wrong\n", isas[isa], kind, layout, v);
                        failures++;
                        bad++;
                    }
                }
            }
        /* No mask: every voxel fitted; n = 0 writes nothing. */
        double ev1[NV][3];
        dmri_dti_out_t o1 = {.evals = &ev1[0][0]};
        const void *vols1[400];
        for (int g = 0; g < G; g++)
            vols1[g] = vm64[g];
        dmri_dti_fit_block(&f.m, DMRI_DTI_IN_F64, vols1, 1, NV, NULL, &o1);
        CHECK(block_voxel_same(ref_ev[2][5], ref_E[2][5], ev1[5], ref_E[2][5]));
        ev1[0][0] = 42.0;
        dmri_dti_fit_block(&f.m, DMRI_DTI_IN_F64, vols1, 1, 0, NULL, &o1);
        CHECK(ev1[0][0] == 42.0);
    }
    CHECK_INT(dmri_dti_set_isa("avx2048"), DMRI_EINVAL);
    CHECK_INT(dmri_dti_set_isa(NULL), 0);
    fixture_close(&f);
}

/* The block's Jacobi eigen-solver on noiseless known tensors: eigenvalues
 * to 1e-12 relative and each eigenvector the rotation's column (up to
 * sign), like test_known_tensor for fit_voxel; and the rank-deficient scheme
 * (every voxel through the SVD fallback). */
static void test_block_known(void) {
    scheme_t s;
    const double shells[3] = {1000, 2000, 3000};
    make_scheme(&s, 6, 30, shells, 3);
    fixture_t f;
    if (fixture_init(&f, &s) != 0)
        return;
    static const char *const isas[] = {"scalar", "avx512"};
    for (int isa = 0; isa < 2; isa++) {
        if (dmri_dti_set_isa(isas[isa]) != 0)
            continue;
        for (int t = 0; t < 20; t++) {
            const double l[3] = {1.0e-3 + 1e-4 * t, 0.5e-3 + 1e-5 * t, 0.1e-3 + 1e-6 * t};
            double D[9], R[9], sig[400];
            rotated_tensor(l, 0.31 * t, D, R);
            make_signal(&s, D, 1000.0, sig);
            const void *vols[400];
            for (int g = 0; g < s.n; g++)
                vols[g] = &sig[g];
            double ev[3], E[9];
            dmri_dti_out_t o = {.evals = ev, .evecs = E};
            dmri_dti_fit_block(&f.m, DMRI_DTI_IN_F64, vols, 1, 1, NULL, &o);
            for (int j = 0; j < 3; j++) {
                CHECK_NEAR(ev[j], l[j], 1e-12 * l[0]);
                double dot = 0.0;
                for (int c = 0; c < 3; c++)
                    dot += E[c * 3 + j] * R[c * 3 + j];
                CHECK_NEAR(fabs(dot), 1.0, 1e-9);
            }
        }
    }
    dmri_dti_set_isa(NULL);
    fixture_close(&f);
}

int main(void) {
    test_design_matrix();
    test_pinv();
    test_known_tensor();
    test_diagonal_tensors();
    test_maps_edge();
    test_zero_and_nan_voxel();
    test_stride();
    test_rank_deficient();
    test_block();
    test_block_known();
    if (failures) {
        fprintf(stderr, "test_dti: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_dti: all passed\n");
    return 0;
}
