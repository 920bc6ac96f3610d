/* dti: dipy 1.6's weighted-least-squares tensor fit (PIPELINE.md Step 7):
 * design matrix and its pseudo-inverse, log signal, OLS weights, WLS solve,
 * eigen-decomposition with dipy's ordering and clip, and the scalar maps.
 *
 * Two routes: dmri_dti_fit_voxel (one voxel, LAPACK dsyevd, dipy's
 * eigenvector signs) and dmri_dti_fit_block (many voxels: the log, the OLS
 * pass, the weights and the 28 + 7 sums of the weighted normal equations
 * vectorised across 8 voxels with AVX-512, then per voxel the same Cholesky
 * solve and a Jacobi eigen-solver; singular or non-finite voxels take the
 * per-voxel route's solve). */
#include "dti.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "dmri_alloc.h"

#define NP 7 /* tensor parameters: Dxx Dxy Dyy Dxz Dyz Dzz, -ln S0 */

/* numpy.linalg.pinv's default rcond. */
#define DMRI_DTI_RCOND 1e-15
/* Smallest pivot (squared, of the unit-diagonal normal matrix) the Cholesky
 * path accepts; below it cond(normal matrix) > ~1e10, the squared condition
 * costs too many digits, and the SVD minimum-norm solve takes over. */
#define DMRI_DTI_MIN_PIVOT 1e-10

static size_t dti_ls_lwork(int nvol) {
    /* dgelss minimum: 3 min(m,n) + max(2 min(m,n), max(m,n), nrhs); padded so
     * LAPACK can use a little blocking. */
    int big = nvol > NP ? nvol : NP;
    return (size_t)(3 * NP + 2 * big + 64);
}

int dmri_dti_model_init(dmri_dti_model_t *m, const double *b_eff, const double *g_eff, int nvol,
                        dmri_err_t *err) {
    if (m == NULL)
        return dmri_err_set(err, DMRI_EINVAL, "tensor model: no output struct");
    m->nvol = 0;
    m->X = NULL;
    m->X_pinv = NULL;
    m->min_eval = 0.0;
    if (b_eff == NULL || g_eff == NULL || nvol <= 0)
        return dmri_err_set(err, DMRI_EINVAL, "tensor model: %d volumes (need at least 1)", nvol);

    size_t G = (size_t)nvol;
    double *X = dmri_malloc(G * NP * sizeof(double));
    /* Un-negated B-matrix maximum, starting at 1 for the -1 column. */
    double bmax = 1.0;
    for (size_t i = 0; i < G; i++) {
        double gx = g_eff[i * 3], gy = g_eff[i * 3 + 1], gz = g_eff[i * 3 + 2], b = b_eff[i];
        double *row = X + i * NP;
        /* dipy's association: ((gi * gj) * k) * b, then negated. */
        row[0] = -(((gx * gx) * 1.0) * b);
        row[1] = -(((gx * gy) * 2.0) * b);
        row[2] = -(((gy * gy) * 1.0) * b);
        row[3] = -(((gx * gz) * 2.0) * b);
        row[4] = -(((gy * gz) * 2.0) * b);
        row[5] = -(((gz * gz) * 1.0) * b);
        row[6] = -1.0;
        for (int c = 0; c < NP; c++) {
            if (!isfinite(row[c])) {
                dmri_free(X);
                /* dipy itself dies here in the SVD ("did not converge"). */
                return dmri_err_set(err, DMRI_EFORMAT,
                                    "tensor model: volume %zu has a non-finite b-value or "
                                    "b-vector (b = %g, g = %g %g %g)",
                                    i, b, gx, gy, gz);
            }
            if (-row[c] > bmax)
                bmax = -row[c];
        }
    }

    /* Pseudo-inverse as numpy.linalg.pinv: thin SVD (gesdd), drop singular
     * values <= 1e-15 * s_max, X+ = V diag(1/s) U^T. */
    int mn = nvol < NP ? nvol : NP;
    double *a = dmri_malloc(G * NP * sizeof(double));
    double *u = dmri_malloc(G * (size_t)mn * sizeof(double));
    double s[NP];
    double vt[NP * NP];
    memcpy(a, X, G * NP * sizeof(double));
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', nvol, NP, a, NP, s, u, mn, vt, NP);
    dmri_free(a);
    if (info != 0) {
        dmri_free(u);
        dmri_free(X);
        return dmri_err_set(err, DMRI_ENUMERIC,
                            "tensor model: SVD of the %d x 7 design matrix failed (info %d)",
                            nvol, (int)info);
    }
    double smax = 0.0;
    for (int j = 0; j < mn; j++)
        if (s[j] > smax)
            smax = s[j];
    double sinv[NP];
    for (int j = 0; j < mn; j++)
        sinv[j] = s[j] > DMRI_DTI_RCOND * smax ? 1.0 / s[j] : 0.0;
    double *Xp = dmri_malloc((size_t)NP * G * sizeof(double));
    for (int k = 0; k < NP; k++)
        for (size_t i = 0; i < G; i++) {
            double acc = 0.0;
            for (int j = 0; j < mn; j++)
                acc += vt[j * NP + k] * (sinv[j] * u[i * (size_t)mn + j]);
            Xp[(size_t)k * G + i] = acc;
        }
    dmri_free(u);

    m->nvol = nvol;
    m->X = X;
    m->X_pinv = Xp;
    m->min_eval = 1e-6 / bmax;
    return 0;
}

void dmri_dti_model_close(dmri_dti_model_t *m) {
    if (m == NULL)
        return;
    dmri_free(m->X);
    dmri_free(m->X_pinv);
    m->X = NULL;
    m->X_pinv = NULL;
    m->nvol = 0;
}

/* fmaf without a libm call: the float product is exact in double, and
 * rounding the double sum to odd before the final rounding to float makes
 * the result correctly rounded (double has more than 24 + 2 bits), i.e.
 * bit-identical to a hardware FMA. Used where the CPU has no FMA. */
static inline float dti_fmaf_soft(float a, float b, float c) {
    double p = (double)a * (double)b;
    double s = p + (double)c;
    double bb = s - p;
    double err = (p - (s - bb)) + ((double)c - bb); /* TwoSum: s + err == p + c */
    /* Inexact and even: step to the odd neighbour on the side of the exact
     * sum. Branch-free: the condition is data-dependent noise. */
    uint64_t u;
    memcpy(&u, &s, sizeof u);
    uint64_t adj = (uint64_t)((err != 0.0) & ((u & 1) == 0));
    uint64_t up = (uint64_t)((err > 0.0) == (s > 0.0));
    u += adj * (2 * up - 1);
    memcpy(&s, &u, sizeof u);
    return (float)s;
}

/* numpy 1.24's float32 log on AVX2/AVX-512 machines (simd_log_FLOAT in
 * loops_exponent_log.dispatch.c.src), reproduced operation by operation so
 * the log signal is bit-identical to dipy's: x = m 2^k with m in [0.5, 1),
 * m moved to (sqrt(1/2), sqrt(2)], then k ln2 + P(m-1)/Q(m-1), a 5/5
 * rational minimax fit evaluated by Horner with fused multiply-adds. It is
 * within ~4 ulp of the true log and differs from glibc's logf in ~7% of the
 * values, enough to move near-degenerate eigenvectors by 1e-5.
 * hw selects the FMA instruction (the caller must be compiled for it) or the
 * exact software FMA; both give the same bits. */
static inline __attribute__((always_inline)) float dti_numpy_logf(float x, int hw) {
#define DTI_FMA(a, b, c) (hw ? fmaf((a), (b), (c)) : dti_fmaf_soft((a), (b), (c)))
    static const float p[6] = {0.000000000000000000000e+00f, 9.999999999999998702752e-01f,
                               2.112677543073053063722e+00f, 1.480000633576506585156e+00f,
                               3.808837741388407920751e-01f, 2.589979117907922693523e-02f};
    static const float q[6] = {1.000000000000000000000e+00f, 2.612677543073109236779e+00f,
                               2.453006071784736363091e+00f, 9.864942958519418960339e-01f,
                               1.546476374983906719538e-01f, 5.875095403124574342950e-03f};
    const float ln2 = 0.693147180559945309417232121458176568f;
    const float sqrt1_2 = 0.707106781186547524400844362104849039f;
    if (isnan(x))
        return x;
    if (x < 0.0f)
        return -NAN;
    if (x == 0.0f)
        return -INFINITY;
    if (isinf(x))
        return x;
    /* x = m 2^e, m in [0.5, 1): exact, as AVX-512 getmant/getexp. */
    int e;
    float m;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u >> 23) != 0) {
        e = (int)(u >> 23) - 126;
        u = (u & 0x007fffffu) | (126u << 23);
        memcpy(&m, &u, sizeof m);
    } else {
        m = frexpf(x, &e); /* denormal */
    }
    float k = (float)e;
    if (m <= sqrt1_2) {
        m = m + m;
        k = k - 1.0f;
    }
    m = m - 1.0f;
    float num = DTI_FMA(p[5], m, p[4]);
    num = DTI_FMA(num, m, p[3]);
    num = DTI_FMA(num, m, p[2]);
    num = DTI_FMA(num, m, p[1]);
    num = DTI_FMA(num, m, p[0]);
    float den = DTI_FMA(q[5], m, q[4]);
    den = DTI_FMA(den, m, q[3]);
    den = DTI_FMA(den, m, q[2]);
    den = DTI_FMA(den, m, q[1]);
    den = DTI_FMA(den, m, q[0]);
    return DTI_FMA(k, ln2, num / den);
#undef DTI_FMA
}

/* The floor and the log in float32, as np.log(np.maximum(s, 1e-4)) on f32. */
static inline __attribute__((always_inline)) void dti_logsig_f32(const float *s, size_t stride,
                                                                 int nvol, double *y, int hw) {
    const float flo = 1e-4f;
    for (int g = 0; g < nvol; g++) {
        float v = s[(size_t)g * stride];
        /* np.maximum keeps NaN, unlike fmaxf. */
        if (!(v >= flo) && !isnan(v))
            v = flo;
        y[g] = (double)dti_numpy_logf(v, hw);
    }
}

static void dti_logsig_f32_soft(const float *s, size_t stride, int nvol, double *y) {
    dti_logsig_f32(s, stride, nvol, y, 0);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* Compiled for FMA so fmaf() becomes one instruction (glibc's fmaf call, or
 * the software version, costs 4-8x more per log). */
__attribute__((target("fma"))) static void dti_logsig_f32_fma(const float *s, size_t stride,
                                                              int nvol, double *y) {
    dti_logsig_f32(s, stride, nvol, y, 1);
}
#endif

void dmri_dti_logsig_f32(const float *s, size_t stride, int nvol, double *y) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("fma")) {
        dti_logsig_f32_fma(s, stride, nvol, y);
        return;
    }
#endif
    dti_logsig_f32_soft(s, stride, nvol, y);
}

void dmri_dti_logsig_f64(const double *s, size_t stride, int nvol, double *y) {
    for (int g = 0; g < nvol; g++) {
        double v = s[(size_t)g * stride];
        if (!(v >= 1e-4) && !isnan(v))
            v = 1e-4;
        y[g] = log(v);
    }
}

size_t dmri_dti_workspace_len(const dmri_dti_model_t *m) {
    size_t G = (size_t)m->nvol;
    size_t big = G > NP ? G : NP;
    /* weights | weighted X (column-major) | weighted y | singular values | dgelss work */
    return G + G * NP + big + NP + dti_ls_lwork(m->nvol);
}

/* Minimum-norm least squares of diag(w) X beta = w * y by SVD (dgelss),
 * the pseudo-inverse solution dipy computes. Returns 0 on success. */
static int dti_wls_svd(const dmri_dti_model_t *m, const double *y, const double *w, double *ws,
                       double beta[NP]) {
    int G = m->nvol;
    size_t big = (size_t)(G > NP ? G : NP);
    double *A = ws;
    double *bw = A + (size_t)G * NP;
    double *s = bw + big;
    double *work = s + NP;
    for (int c = 0; c < NP; c++)
        for (int i = 0; i < G; i++)
            A[(size_t)c * G + i] = w[i] * m->X[(size_t)i * NP + c];
    for (size_t i = 0; i < big; i++)
        bw[i] = (int)i < G ? w[i] * y[i] : 0.0;
    lapack_int rank;
    lapack_int info =
        LAPACKE_dgelss_work(LAPACK_COL_MAJOR, G, NP, 1, A, G, bw, (lapack_int)big, s,
                            DMRI_DTI_RCOND, &rank, work, (lapack_int)dti_ls_lwork(G));
    if (info != 0)
        return -1;
    for (int k = 0; k < NP; k++)
        beta[k] = bw[k];
    return 0;
}

/* Solve the normal equations A beta = r (A: lower triangle filled) by a
 * Cholesky factorisation of the unit-diagonal (Jacobi-scaled) matrix; A and
 * r are overwritten. Returns -1 when A is singular or too ill-conditioned
 * (or not finite). */
static int dti_chol_solve(double A[NP][NP], double r[NP], double beta[NP]) {
    double d[NP];
    for (int j = 0; j < NP; j++) {
        if (!(A[j][j] > 0.0) || !isfinite(A[j][j]))
            return -1;
        d[j] = 1.0 / sqrt(A[j][j]);
    }
    for (int j = 0; j < NP; j++) {
        for (int k = 0; k <= j; k++)
            A[j][k] *= d[j] * d[k];
        r[j] *= d[j];
    }
    /* In-place lower Cholesky. */
    for (int j = 0; j < NP; j++) {
        double p = A[j][j];
        for (int k = 0; k < j; k++)
            p -= A[j][k] * A[j][k];
        if (!(p > DMRI_DTI_MIN_PIVOT))
            return -1;
        double l = sqrt(p);
        A[j][j] = l;
        for (int i = j + 1; i < NP; i++) {
            double v = A[i][j];
            for (int k = 0; k < j; k++)
                v -= A[i][k] * A[j][k];
            A[i][j] = v / l;
        }
    }
    double z[NP];
    for (int j = 0; j < NP; j++) {
        double v = r[j];
        for (int k = 0; k < j; k++)
            v -= A[j][k] * z[k];
        z[j] = v / A[j][j];
    }
    for (int j = NP - 1; j >= 0; j--) {
        double v = z[j];
        for (int k = j + 1; k < NP; k++)
            v -= A[k][j] * z[k];
        z[j] = v / A[j][j];
    }
    for (int j = 0; j < NP; j++) {
        beta[j] = z[j] * d[j];
        if (!isfinite(beta[j]))
            return -1;
    }
    return 0;
}

/* Solve the weighted normal equations (X^T W^2 X) beta = X^T W^2 y. */
static int dti_wls_cholesky(const dmri_dti_model_t *m, const double *y, const double *w,
                            double beta[NP]) {
    double A[NP][NP] = {{0}};
    double r[NP] = {0};
    const double *X = m->X;
    for (int i = 0; i < m->nvol; i++) {
        const double *xi = X + (size_t)i * NP;
        double w2 = w[i] * w[i];
        double t[NP];
        for (int j = 0; j < NP; j++)
            t[j] = w2 * xi[j];
        for (int j = 0; j < NP; j++) {
            for (int k = 0; k <= j; k++)
                A[j][k] += t[j] * xi[k];
            r[j] += t[j] * y[i];
        }
    }
    return dti_chol_solve(A, r, beta);
}

static void dti_nan(double evals[3], double evecs[9]) {
    for (int j = 0; j < 3; j++)
        evals[j] = NAN;
    for (int j = 0; j < 9; j++)
        evecs[j] = NAN;
}

/* OLS weights and the WLS solve of one voxel: beta, or -1 when the signal
 * is not finite or LAPACK fails (dipy raises there; the caller reports NaN). */
static int dti_solve(const dmri_dti_model_t *m, const double *y, double *workspace,
                     double beta[NP]) {
    int G = m->nvol;
    double *w = workspace;
    double beta0[NP];

    /* OLS through the precomputed pseudo-inverse: only the weights use it. */
    for (int k = 0; k < NP; k++) {
        const double *pk = m->X_pinv + (size_t)k * G;
        double acc = 0.0;
        for (int i = 0; i < G; i++)
            acc += pk[i] * y[i];
        beta0[k] = acc;
    }
    int finite = 1;
    for (int i = 0; i < G; i++) {
        const double *xi = m->X + (size_t)i * NP;
        double acc = 0.0;
        for (int k = 0; k < NP; k++)
            acc += xi[k] * beta0[k];
        w[i] = exp(acc);
        finite &= isfinite(w[i]) && isfinite(y[i]);
    }
    /* NaN/inf signal: dipy's SVD would raise; report NaN rather than hand
     * LAPACK non-finite input. */
    if (!finite)
        return -1;
    if (dti_wls_cholesky(m, y, w, beta) != 0 && dti_wls_svd(m, y, w, w + G, beta) != 0)
        return -1;
    return 0;
}

/* Descending order of three eigenvalues as dipy gets it from eigh's
 * ascending output: argsort (stable for 3 items in numpy), then reversed. */
static void dti_order_desc(const double ev[3], int ord[3]) {
    ord[0] = 0;
    ord[1] = 1;
    ord[2] = 2;
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && ev[ord[j]] < ev[ord[j - 1]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    int t = ord[0];
    ord[0] = ord[2];
    ord[2] = t;
}

void dmri_dti_fit_voxel(const dmri_dti_model_t *m, const double *y, double *workspace,
                        double evals[3], double evecs[9]) {
    double beta[NP];
    if (dti_solve(m, y, workspace, beta) != 0) {
        dti_nan(evals, evecs);
        return;
    }

    /* numpy's eigh: dsyevd, lower triangle, ascending eigenvalues, eigenvectors
     * in the columns (column-major a[c + 3 j]). */
    double a[9] = {beta[0], beta[1], beta[3], beta[1], beta[2], beta[4], beta[3], beta[4], beta[5]};
    double ev[3];
    double work[64];
    lapack_int iwork[32];
    lapack_int info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', 3, a, 3, ev, work, 64,
                                          iwork, 32);
    if (info != 0) {
        dti_nan(evals, evecs);
        return;
    }
    int ord[3];
    dti_order_desc(ev, ord);
    for (int j = 0; j < 3; j++) {
        int o = ord[j];
        double l = ev[o];
        evals[j] = l < m->min_eval ? m->min_eval : l;
        for (int c = 0; c < 3; c++)
            evecs[c * 3 + j] = a[c + 3 * o];
    }
}

/* Eigen-decomposition of the tensor in beta[0..5] by cyclic Jacobi
 * rotations (Numerical Recipes' stable update), instead of dsyevd: the
 * same eigenpairs to rounding (absolute error ~1e-16 |D|), without LAPACK's
 * per-call overhead. Order and clip as fit_voxel; each eigenvector's sign is
 * set so its largest-magnitude component is positive (a stable choice;
 * LAPACK's is arbitrary). */
static void dti_eig_jacobi(const double beta[NP], double min_eval, double evals[3],
                           double evecs[9]) {
    double a[3][3] = {{beta[0], beta[1], beta[3]}, {beta[1], beta[2], beta[4]},
                      {beta[3], beta[4], beta[5]}};
    double v[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    for (int sweep = 0; sweep < 64; sweep++) {
        if (a[0][1] == 0.0 && a[0][2] == 0.0 && a[1][2] == 0.0)
            break;
        for (int p = 0; p < 2; p++)
            for (int q = p + 1; q < 3; q++) {
                const double apq = a[p][q];
                /* Negligible against both diagonal entries: drop it (it would
                 * change them by less than half an ulp). */
                if (fabs(apq) <= 0x1p-60 * (fabs(a[p][p]) + fabs(a[q][q]))) {
                    a[p][q] = a[q][p] = 0.0;
                    continue;
                }
                const double theta = (a[q][q] - a[p][p]) / (2.0 * apq);
                double t;
                if (fabs(theta) > 0x1p500)
                    t = 0.5 / theta;
                else
                    t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double c = 1.0 / sqrt(t * t + 1.0), s = t * c, tau = s / (1.0 + c);
                const int r = 3 - p - q;
                a[p][p] -= t * apq;
                a[q][q] += t * apq;
                a[p][q] = a[q][p] = 0.0;
                const double arp = a[r][p], arq = a[r][q];
                a[r][p] = a[p][r] = arp - s * (arq + arp * tau);
                a[r][q] = a[q][r] = arq + s * (arp - arq * tau);
                for (int i = 0; i < 3; i++) {
                    const double vp = v[i][p], vq = v[i][q];
                    v[i][p] = vp - s * (vq + vp * tau);
                    v[i][q] = vq + s * (vp - vq * tau);
                }
            }
    }
    const double ev[3] = {a[0][0], a[1][1], a[2][2]};
    /* Jacobi's order is not eigh's: sort ascending first (stable), then
     * take dipy's reversal. */
    int ord[3];
    dti_order_desc(ev, ord);
    for (int j = 0; j < 3; j++) {
        const int o = ord[j];
        evals[j] = ev[o] < min_eval ? min_eval : ev[o];
        int big = 0;
        for (int c = 1; c < 3; c++)
            if (fabs(v[c][o]) > fabs(v[big][o]))
                big = c;
        const double sg = v[big][o] < 0.0 ? -1.0 : 1.0;
        for (int c = 0; c < 3; c++)
            evecs[c * 3 + j] = sg * v[c][o];
    }
}

void dmri_dti_maps(const double evals[3], const double evecs[9], double *fa, double *md,
                   double *ad, double *rd, double color_fa[3]) {
    double l1 = evals[0], l2 = evals[1], l3 = evals[2];
    /* numpy's association throughout, so results match to the last bit. */
    double all_zero = (l1 == 0.0 && l2 == 0.0 && l3 == 0.0) ? 1.0 : 0.0;
    double num = ((l1 - l2) * (l1 - l2) + (l2 - l3) * (l2 - l3)) + (l3 - l1) * (l3 - l1);
    double den = ((l1 * l1 + l2 * l2) + l3 * l3) + all_zero;
    double f = sqrt((0.5 * num) / den);
    *fa = f;
    *md = ((l1 + l2) + l3) / 3.0;
    *ad = l1;
    *rd = (l2 + l3) / 2.0;
    double fc = f < 0.0 ? 0.0 : (f > 1.0 ? 1.0 : f);
    for (int c = 0; c < 3; c++)
        color_fa[c] = fabs(evecs[c * 3]) * fc;
}

/* ------------------------------------------------------------------------
 * Many voxels at once (dmri_dti_fit_block) */

static void dti_out_voxel(const dmri_dti_out_t *o, size_t v, const double evals[3],
                          const double evecs[9]) {
    if (o->evals)
        memcpy(o->evals + v * 3, evals, 3 * sizeof(double));
    if (o->evecs)
        memcpy(o->evecs + v * 9, evecs, 9 * sizeof(double));
    if (o->fa || o->md || o->ad || o->rd || o->color_fa) {
        double fa, md, ad, rd, cfa[3];
        dmri_dti_maps(evals, evecs, &fa, &md, &ad, &rd, cfa);
        if (o->fa)
            o->fa[v] = (float)fa;
        if (o->md)
            o->md[v] = (float)md;
        if (o->ad)
            o->ad[v] = (float)ad;
        if (o->rd)
            o->rd[v] = (float)rd;
        if (o->color_fa)
            for (int c = 0; c < 3; c++)
                o->color_fa[(size_t)c * o->stride + v] = (float)cfa[c];
    }
    if (o->evecs_map)
        for (int c = 0; c < 3; c++)
            for (int j = 0; j < 3; j++)
                o->evecs_map[(size_t)(c + 3 * j) * o->stride + v] = (float)evecs[c * 3 + j];
}

static void dti_out_zero(const dmri_dti_out_t *o, size_t v) {
    if (o->evals)
        memset(o->evals + v * 3, 0, 3 * sizeof(double));
    if (o->evecs)
        memset(o->evecs + v * 9, 0, 9 * sizeof(double));
    if (o->fa)
        o->fa[v] = 0.0f;
    if (o->md)
        o->md[v] = 0.0f;
    if (o->ad)
        o->ad[v] = 0.0f;
    if (o->rd)
        o->rd[v] = 0.0f;
    if (o->color_fa)
        for (int c = 0; c < 3; c++)
            o->color_fa[(size_t)c * o->stride + v] = 0.0f;
    if (o->evecs_map)
        for (int c = 0; c < 9; c++)
            o->evecs_map[(size_t)c * o->stride + v] = 0.0f;
}

/* From beta (or a failed solve) to the outputs of voxel v. */
static void dti_finish_voxel(const dmri_dti_model_t *m, const dmri_dti_out_t *o, size_t v,
                             int ok, const double beta[NP]) {
    double evals[3], evecs[9];
    if (ok)
        dti_eig_jacobi(beta, m->min_eval, evals, evecs);
    else
        dti_nan(evals, evecs);
    dti_out_voxel(o, v, evals, evecs);
}

/* Log signal of voxel v as the pipeline computes it for `kind`. */
static void dti_voxel_logsig(dmri_dti_input_t kind, const void *const *vols, size_t off, int G,
                             float *sf, double *sd, double *y) {
    if (kind == DMRI_DTI_IN_F32) {
        for (int g = 0; g < G; g++)
            sf[g] = ((const float *)vols[g])[off];
        dmri_dti_logsig_f32(sf, 1, G, y);
    } else {
        for (int g = 0; g < G; g++)
            sd[g] = kind == DMRI_DTI_IN_F64 ? ((const double *)vols[g])[off]
                                            : (double)((const float *)vols[g])[off];
        dmri_dti_logsig_f64(sd, 1, G, y);
    }
}

/* Portable path: voxel by voxel, fit_voxel's solve then the Jacobi eigen. */
static void dti_block_scalar(const dmri_dti_model_t *m, dmri_dti_input_t kind,
                             const void *const *vols, size_t vstride, size_t n,
                             const unsigned char *mask, const dmri_dti_out_t *out) {
    const int G = m->nvol;
    float *sf = dmri_malloc((size_t)G * sizeof(float));
    double *sd = dmri_malloc((size_t)G * sizeof(double));
    double *y = dmri_malloc((size_t)G * sizeof(double));
    double *ws = dmri_malloc(dmri_dti_workspace_len(m) * sizeof(double));
    for (size_t v = 0; v < n; v++) {
        if (mask && !mask[v]) {
            dti_out_zero(out, v);
            continue;
        }
        dti_voxel_logsig(kind, vols, v * vstride, G, sf, sd, y);
        double beta[NP];
        int ok = dti_solve(m, y, ws, beta) == 0;
        dti_finish_voxel(m, out, v, ok, beta);
    }
    dmri_free(sf);
    dmri_free(sd);
    dmri_free(y);
    dmri_free(ws);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define DTI_HAVE_SIMD 1
#include <immintrin.h>
#define DTI_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))

/* numpy's float32 log (dti_numpy_logf) on 16 lanes, operation by operation
 * the same, after the 1e-4 floor: bit-identical. After the floor the only
 * special inputs are NaN and +inf, which log returns unchanged. */
DTI_AVX512 static inline __m512 dti_logsig16_avx512(__m512 x) {
    const __m512 flo = _mm512_set1_ps(1e-4f);
    /* np.maximum(x, 1e-4) keeps NaN. */
    const __mmask16 keep = _mm512_cmp_ps_mask(x, flo, _CMP_GE_OQ) |
                           _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    x = _mm512_mask_blend_ps(keep, flo, x);
    const __mmask16 special = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) |
                              _mm512_cmp_ps_mask(x, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ);
    const __m512i u = _mm512_castps_si512(x);
    const __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(u, 23), _mm512_set1_epi32(126));
    __m512 mm = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(u, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(126 << 23)));
    __m512 k = _mm512_cvtepi32_ps(e);
    const __mmask16 low =
        _mm512_cmp_ps_mask(mm, _mm512_set1_ps(0.707106781186547524400844362104849039f),
                           _CMP_LE_OQ);
    mm = _mm512_mask_add_ps(mm, low, mm, mm);
    k = _mm512_mask_sub_ps(k, low, k, _mm512_set1_ps(1.0f));
    mm = _mm512_sub_ps(mm, _mm512_set1_ps(1.0f));
    __m512 num = _mm512_fmadd_ps(_mm512_set1_ps(2.589979117907922693523e-02f), mm,
                                 _mm512_set1_ps(3.808837741388407920751e-01f));
    num = _mm512_fmadd_ps(num, mm, _mm512_set1_ps(1.480000633576506585156e+00f));
    num = _mm512_fmadd_ps(num, mm, _mm512_set1_ps(2.112677543073053063722e+00f));
    num = _mm512_fmadd_ps(num, mm, _mm512_set1_ps(9.999999999999998702752e-01f));
    num = _mm512_fmadd_ps(num, mm, _mm512_set1_ps(0.0f));
    __m512 den = _mm512_fmadd_ps(_mm512_set1_ps(5.875095403124574342950e-03f), mm,
                                 _mm512_set1_ps(1.546476374983906719538e-01f));
    den = _mm512_fmadd_ps(den, mm, _mm512_set1_ps(9.864942958519418960339e-01f));
    den = _mm512_fmadd_ps(den, mm, _mm512_set1_ps(2.453006071784736363091e+00f));
    den = _mm512_fmadd_ps(den, mm, _mm512_set1_ps(2.612677543073109236779e+00f));
    den = _mm512_fmadd_ps(den, mm, _mm512_set1_ps(1.0f));
    const __m512 res = _mm512_fmadd_ps(k, _mm512_set1_ps(0.693147180559945309417232121458176568f),
                                       _mm512_div_ps(num, den));
    return _mm512_mask_blend_ps(special, res, x);
}

/* exp on 8 lanes within ~1 ulp: x = k ln2 + r, |r| <= ln2/2, degree-13
 * Taylor polynomial, scaled by 2^k with scalef (which also gives inf and
 * gradual underflow). Only the OLS weights use it. */
DTI_AVX512 static inline __m512d dti_exp8_avx512(__m512d x) {
    x = _mm512_max_pd(_mm512_set1_pd(-760.0), x); /* NaN passes (2nd operand) */
    x = _mm512_min_pd(_mm512_set1_pd(720.0), x);
    const __m512d kd = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(0x1.71547652b82fep0)),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(kd, _mm512_set1_pd(0x1.62e42fefa3800p-1), x);
    r = _mm512_fnmadd_pd(kd, _mm512_set1_pd(0x1.ef35793c76730p-45), r);
    static const double c[14] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
        1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5,
        1.0,                1.0};
    __m512d p = _mm512_set1_pd(c[0]);
    for (int i = 1; i < 14; i++)
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[i]));
    return _mm512_scalef_pd(p, kd);
}

/* Lower-triangle index of (j, k), k <= j. */
#define DTI_TRI(j, k) ((j) * ((j) + 1) / 2 + (k))

/* Fit 8 voxels whose log signals are Y[g * 8 + l] (l = lane): OLS weights,
 * then the weighted normal equations, all vectorised across the lanes.
 * P[g * 28 + DTI_TRI(j, k)] = X[g][j] X[g][k]. Writes the 28 + 7 sums to
 * acc[i * 8 + l] (A entries first, then r). */
DTI_AVX512 static void dti_normal8_avx512(const dmri_dti_model_t *m, const double *P,
                                          const double *Y, double *W2, double *WY,
                                          double *acc) {
    const int G = m->nvol;
    const double *X = m->X, *Xp = m->X_pinv;
    __m512d b[NP];
    for (int k = 0; k < NP; k++)
        b[k] = _mm512_setzero_pd();
    for (int g = 0; g < G; g++) {
        const __m512d y = _mm512_load_pd(Y + (size_t)g * 8);
#pragma GCC unroll 8
        for (int k = 0; k < NP; k++)
            b[k] = _mm512_fmadd_pd(_mm512_set1_pd(Xp[(size_t)k * G + g]), y, b[k]);
    }
    for (int g = 0; g < G; g++) {
        const double *xg = X + (size_t)g * NP;
        __m512d eta = _mm512_mul_pd(_mm512_set1_pd(xg[0]), b[0]);
#pragma GCC unroll 8
        for (int k = 1; k < NP; k++)
            eta = _mm512_fmadd_pd(_mm512_set1_pd(xg[k]), b[k], eta);
        const __m512d w = dti_exp8_avx512(eta);
        const __m512d w2 = _mm512_mul_pd(w, w);
        _mm512_store_pd(W2 + (size_t)g * 8, w2);
        _mm512_store_pd(WY + (size_t)g * 8, _mm512_mul_pd(w2, _mm512_load_pd(Y + (size_t)g * 8)));
    }
    /* 28 + 7 accumulators do not fit the 32 registers: two passes over g,
     * A rows 0..3 with r, then A rows 4..6. */
    {
        __m512d s[17];
        for (int i = 0; i < 17; i++)
            s[i] = _mm512_setzero_pd();
        for (int g = 0; g < G; g++) {
            const __m512d w2 = _mm512_load_pd(W2 + (size_t)g * 8);
            const __m512d wy = _mm512_load_pd(WY + (size_t)g * 8);
            const double *pg = P + (size_t)g * 28, *xg = X + (size_t)g * NP;
#pragma GCC unroll 16
            for (int i = 0; i < 10; i++)
                s[i] = _mm512_fmadd_pd(_mm512_set1_pd(pg[i]), w2, s[i]);
#pragma GCC unroll 16
            for (int j = 0; j < NP; j++)
                s[10 + j] = _mm512_fmadd_pd(_mm512_set1_pd(xg[j]), wy, s[10 + j]);
        }
        for (int i = 0; i < 10; i++)
            _mm512_store_pd(acc + (size_t)i * 8, s[i]);
        for (int j = 0; j < NP; j++)
            _mm512_store_pd(acc + (size_t)(28 + j) * 8, s[10 + j]);
    }
    {
        __m512d s[18];
        for (int i = 0; i < 18; i++)
            s[i] = _mm512_setzero_pd();
        for (int g = 0; g < G; g++) {
            const __m512d w2 = _mm512_load_pd(W2 + (size_t)g * 8);
            const double *pg = P + (size_t)g * 28 + 10;
#pragma GCC unroll 32
            for (int i = 0; i < 18; i++)
                s[i] = _mm512_fmadd_pd(_mm512_set1_pd(pg[i]), w2, s[i]);
        }
        for (int i = 0; i < 18; i++)
            _mm512_store_pd(acc + (size_t)(10 + i) * 8, s[i]);
    }
}

/* Vectorised path: voxels of the mask in groups of 8 (the last group
 * padded by repeating its last voxel). */
DTI_AVX512 static void dti_block_avx512(const dmri_dti_model_t *m, dmri_dti_input_t kind,
                                        const void *const *vols, size_t vstride, size_t n,
                                        const unsigned char *mask, const dmri_dti_out_t *out) {
    const int G = m->nvol;
    const size_t G8 = (size_t)(G + 2) * 8; /* +2 rows: the 16-lane log overruns one */
    double *P = dmri_malloc((size_t)G * 28 * sizeof(double));
    double *Y = dmri_aligned_alloc(G8 * sizeof(double));
    double *W2 = dmri_aligned_alloc(G8 * sizeof(double));
    double *WY = dmri_aligned_alloc(G8 * sizeof(double));
    double *acc = dmri_aligned_alloc(35 * 8 * sizeof(double));
    float *F = dmri_aligned_alloc(G8 * sizeof(float));
    double *y1 = dmri_malloc((size_t)G * sizeof(double));
    double *ws = dmri_malloc(dmri_dti_workspace_len(m) * sizeof(double));
    for (int g = 0; g < G; g++) {
        const double *xg = m->X + (size_t)g * NP;
        for (int j = 0; j < NP; j++)
            for (int k = 0; k <= j; k++)
                P[(size_t)g * 28 + DTI_TRI(j, k)] = xg[j] * xg[k];
    }
    for (int i = G * 8; i < (int)G8; i++)
        F[i] = 1.0f;
    size_t v = 0;
    while (v < n) {
        size_t idx[8];
        int cnt = 0;
        for (; v < n && cnt < 8; v++) {
            if (mask && !mask[v])
                dti_out_zero(out, v);
            else
                idx[cnt++] = v;
        }
        if (cnt == 0)
            break;
        for (int l = cnt; l < 8; l++)
            idx[l] = idx[cnt - 1];
        /* Gather sample g of the 8 voxels to Y[g * 8 + l] and take the log. */
        /* Eight distinct increasing indices spanning 8: consecutive. */
        const int contiguous = vstride == 1 && cnt == 8 && idx[7] == idx[0] + 7;
        if (kind == DMRI_DTI_IN_F32) {
            for (int g = 0; g < G; g++) {
                const float *src = vols[g];
                if (contiguous) {
                    _mm256_store_ps(F + (size_t)g * 8, _mm256_loadu_ps(src + idx[0]));
                } else {
                    for (int l = 0; l < 8; l++)
                        F[(size_t)g * 8 + l] = src[idx[l] * vstride];
                }
            }
            for (size_t i = 0; i < (size_t)G * 8; i += 16) {
                const __m512 lg = dti_logsig16_avx512(_mm512_load_ps(F + i));
                _mm512_store_pd(Y + i, _mm512_cvtps_pd(_mm512_castps512_ps256(lg)));
                _mm512_store_pd(Y + i + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(lg, 1)));
            }
        } else {
            for (int g = 0; g < G; g++)
                for (int l = 0; l < 8; l++) {
                    const size_t off = idx[l] * vstride;
                    double s = kind == DMRI_DTI_IN_F64 ? ((const double *)vols[g])[off]
                                                       : (double)((const float *)vols[g])[off];
                    dmri_dti_logsig_f64(&s, 1, 1, Y + (size_t)g * 8 + l);
                }
        }
        dti_normal8_avx512(m, P, Y, W2, WY, acc);
        for (int l = 0; l < cnt; l++) {
            double A[NP][NP], r[NP], beta[NP];
            for (int j = 0; j < NP; j++) {
                for (int k = 0; k <= j; k++)
                    A[j][k] = acc[(size_t)DTI_TRI(j, k) * 8 + l];
                r[j] = acc[(size_t)(28 + j) * 8 + l];
            }
            int ok = dti_chol_solve(A, r, beta) == 0;
            if (!ok) {
                /* Singular, ill-conditioned or non-finite: fit_voxel's route
                 * (SVD minimum-norm solution, NaN for non-finite signal). */
                for (int g = 0; g < G; g++)
                    y1[g] = Y[(size_t)g * 8 + l];
                ok = dti_solve(m, y1, ws, beta) == 0;
            }
            dti_finish_voxel(m, out, idx[l], ok, beta);
        }
    }
    dmri_free(P);
    dmri_free(Y);
    dmri_free(W2);
    dmri_free(WY);
    dmri_free(acc);
    dmri_free(F);
    dmri_free(y1);
    dmri_free(ws);
}

static int dti_cpu_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define DTI_HAVE_SIMD 0
#endif

enum { DTI_ISA_AUTO, DTI_ISA_SCALAR, DTI_ISA_AVX512 };
static const char *const dti_isa_names[] = {"auto", "scalar", "avx512"};

/* Process-wide choice; set once before the workers start (tests, benches). */
static _Atomic int dti_isa_forced = DTI_ISA_AUTO;

static int dti_isa_supported(int isa) {
#if DTI_HAVE_SIMD
    if (isa == DTI_ISA_AVX512)
        return dti_cpu_avx512();
#endif
    return isa == DTI_ISA_SCALAR || isa == DTI_ISA_AUTO;
}

static int dti_isa_current(void) {
    const int f = atomic_load(&dti_isa_forced);
    if (f != DTI_ISA_AUTO)
        return f;
    return dti_isa_supported(DTI_ISA_AVX512) ? DTI_ISA_AVX512 : DTI_ISA_SCALAR;
}

int dmri_dti_set_isa(const char *name) {
    int isa = -1;
    if (!name || !*name)
        isa = DTI_ISA_AUTO;
    for (int i = 0; i < 3 && isa < 0; i++)
        if (!strcmp(name, dti_isa_names[i]))
            isa = i;
    if (isa < 0)
        return DMRI_EINVAL;
    if (!dti_isa_supported(isa))
        return DMRI_EUNSUP;
    atomic_store(&dti_isa_forced, isa);
    return 0;
}

const char *dmri_dti_isa(void) { return dti_isa_names[dti_isa_current()]; }

void dmri_dti_fit_block(const dmri_dti_model_t *m, dmri_dti_input_t kind,
                        const void *const *vols, size_t vstride, size_t n,
                        const unsigned char *mask, const dmri_dti_out_t *out) {
    if (n == 0)
        return;
#if DTI_HAVE_SIMD
    if (dti_isa_current() == DTI_ISA_AVX512) {
        dti_block_avx512(m, kind, vols, vstride, n, mask, out);
        return;
    }
#endif
    dti_block_scalar(m, kind, vols, vstride, n, mask, out);
}
