/* test_dti_eig: the Jacobi 3x3 eigen-solver of dmri_dti_fit_block against
 * LAPACK's dsyevd (what dmri_dti_fit_voxel and numpy use) on random,
 * degenerate, diagonal, zero, indefinite and badly scaled symmetric
 * matrices: eigenvalues, residuals, orthonormality, order, sign rule, clip.
 * It compiles dti.c itself to reach the static solver (as test_dti_logf). */
#include "../../kernels/dti.c"

#include <float.h>
#include <stdio.h>

static int failures;

static uint64_t rng_state = 0x853c49e6748fea9bull;
static double unif(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

/* beta[0..5] = Dxx Dxy Dyy Dxz Dyz Dzz from Q diag(l) Q^T, Q a random
 * rotation (normalised quaternion). */
static void make(const double l[3], double beta[NP]) {
    double q[4], n = 0.0;
    for (int i = 0; i < 4; i++) {
        q[i] = unif() - 0.5;
        n += q[i] * q[i];
    }
    n = sqrt(n);
    double w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
    double R[3][3] = {{1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)},
                      {2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)},
                      {2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)}};
    double D[3][3];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            D[r][c] = 0.0;
            for (int k = 0; k < 3; k++)
                D[r][c] += R[r][k] * l[k] * R[c][k];
        }
    double b[NP] = {D[0][0], D[0][1], D[1][1], D[0][2], D[1][2], D[2][2], 0.0};
    memcpy(beta, b, sizeof b);
}

static void check_case(const char *what, const double beta[NP], double min_eval) {
    double ev[3], E[9];
    dti_eig_jacobi(beta, min_eval, ev, E);
    double a[9] = {beta[0], beta[1], beta[3], beta[1], beta[2], beta[4], beta[3], beta[4], beta[5]};
    double A[3][3] = {{beta[0], beta[1], beta[3]}, {beta[1], beta[2], beta[4]},
                      {beta[3], beta[4], beta[5]}};
    double ref[3], work[64];
    lapack_int iwork[32];
    if (LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', 3, a, 3, ref, work, 64, iwork, 32)) {
        fprintf(stderr, "%s: dsyevd failed\n", what);
        failures++;
        return;
    }
    double norm = fmax(fmax(fabs(ref[0]), fabs(ref[2])), DBL_MIN);
    int bad = 0;
    for (int j = 0; j < 3; j++) {
        /* dsyevd is ascending; ours descending, clipped. */
        double want = ref[2 - j] < min_eval ? min_eval : ref[2 - j];
        bad |= !(fabs(ev[j] - want) <= 4e-15 * norm);
        bad |= j > 0 && !(ev[j] <= ev[j - 1]);
        double res = 0.0, len = 0.0, lam = ref[2 - j];
        int big = 0;
        for (int r = 0; r < 3; r++) {
            double av = 0.0;
            for (int c = 0; c < 3; c++)
                av += A[r][c] * E[c * 3 + j];
            res = fmax(res, fabs(av - lam * E[r * 3 + j]));
            len += E[r * 3 + j] * E[r * 3 + j];
            if (fabs(E[r * 3 + j]) > fabs(E[big * 3 + j]))
                big = r;
        }
        bad |= !(res <= 1e-14 * norm) || !(fabs(len - 1.0) <= 1e-14) || !(E[big * 3 + j] > 0.0);
        for (int k = 0; k < j; k++) {
            double dot = 0.0;
            for (int r = 0; r < 3; r++)
                dot += E[r * 3 + j] * E[r * 3 + k];
            bad |= !(fabs(dot) <= 1e-14);
        }
    }
    if (bad) {
        if (failures < 10)
            fprintf(stderr, "%s: jacobi %.17g %.17g %.17g, dsyevd %.17g %.17g %.17g\n", what,
                    ev[0], ev[1], ev[2], ref[2], ref[1], ref[0]);
        failures++;
    }
}

int main(void) {
    double beta[NP];
    long n = 0;
    for (int t = 0; t < 200000; t++, n++) {
        double l[3], scale = pow(10.0, -300.0 + 600.0 * unif());
        for (int j = 0; j < 3; j++)
            l[j] = (unif() - 0.2) * scale; /* some indefinite */
        switch (t % 5) {
        case 1:
            l[1] = l[0]; /* double */
            break;
        case 2:
            l[1] = l[2] = l[0]; /* triple */
            break;
        case 3:
            l[2] = l[1] * (1.0 + 1e-13); /* near-degenerate */
            break;
        case 4:
            l[2] = l[0] * 1e-17; /* widely spread */
            break;
        }
        make(l, beta);
        check_case("random", beta, -INFINITY);
    }
    /* Typical tensors with the clip. */
    for (int t = 0; t < 100000; t++, n++) {
        double l[3] = {3e-3 * unif(), 2e-3 * unif(), 1e-3 * (unif() - 0.5)};
        make(l, beta);
        check_case("tensor", beta, 3.3e-10);
    }
    /* Exact structures: zero, diagonal, one off-diagonal pair. */
    double fixed[][NP] = {{0, 0, 0, 0, 0, 0, 0},        {1e-3, 0, 2e-3, 0, 0, 3e-3, 0},
                          {1e-3, 0, 1e-3, 0, 0, 1e-3, 0}, {1e-3, 5e-4, 1e-3, 0, 0, 2e-4, 0},
                          {0, 0, 0, 0, 1e-3, 0, 0},       {-1, 1e-300, 1, 0, 0, 0, 0},
                          {1e300, 1e300, 1e300, 0, 0, 1e-300, 0}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++, n++)
        check_case("fixed", fixed[i], -INFINITY);
    /* All-zero tensor: every eigenvalue the clip; the axes in the reversed
     * order of a stable ascending sort (z, y, x), as fit_voxel gives. */
    double ev[3], E[9];
    dti_eig_jacobi(fixed[0], 3.3e-10, ev, E);
    if (ev[0] != 3.3e-10 || ev[2] != 3.3e-10 || E[6] != 1.0 || E[4] != 1.0 || E[2] != 1.0) {
        fprintf(stderr, "zero tensor: %g %g %g, E anti-diagonal %g %g %g\n", ev[0], ev[1], ev[2],
                E[6], E[4], E[2]);
        failures++;
    }
    if (failures) {
        fprintf(stderr, "test_dti_eig: %d of %ld cases failed\n", failures, n);
        return 1;
    }
    printf("test_dti_eig: all %ld cases passed\n", n);
    return 0;
}
