/* dti: dipy 1.6's weighted-least-squares tensor fit (PIPELINE.md Step 7):
 * design matrix and its pseudo-inverse, log signal, OLS weights, WLS solve,
 * eigen-decomposition with dipy's ordering and clip, and the scalar maps. */
#include "dti.h"

#include <math.h>
#include <stdint.h>
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

/* Solve the weighted normal equations (X^T W^2 X) beta = X^T W^2 y by a
 * Cholesky factorisation of the unit-diagonal (Jacobi-scaled) matrix.
 * Returns -1 when the matrix is singular or too ill-conditioned. */
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
    for (int j = 0; j < NP; j++)
        beta[j] = z[j] * d[j];
    return 0;
}

static void dti_nan(double evals[3], double evecs[9]) {
    for (int j = 0; j < 3; j++)
        evals[j] = NAN;
    for (int j = 0; j < 9; j++)
        evecs[j] = NAN;
}

void dmri_dti_fit_voxel(const dmri_dti_model_t *m, const double *y, double *workspace,
                        double evals[3], double evecs[9]) {
    int G = m->nvol;
    double *w = workspace;
    double beta0[NP], beta[NP];

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
    if (!finite) {
        dti_nan(evals, evecs);
        return;
    }
    if (dti_wls_cholesky(m, y, w, beta) != 0 && dti_wls_svd(m, y, w, w + G, beta) != 0) {
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
    /* argsort (stable for 3 items in numpy) then reversed. */
    int ord[3] = {0, 1, 2};
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && ev[ord[j]] < ev[ord[j - 1]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    for (int j = 0; j < 3; j++) {
        int o = ord[2 - j];
        double l = ev[o];
        evals[j] = l < m->min_eval ? m->min_eval : l;
        for (int c = 0; c < 3; c++)
            evecs[c * 3 + j] = a[c + 3 * o];
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
