/* test_dti_logf: the builds of dti's numpy-compatible float32 log — the
 * FMA-instruction one that runs on this machine, the software-FMA one for
 * CPUs without FMA, and the 16-lane AVX-512 one of dmri_dti_fit_block —
 * must give the same bits. The software path never
 * runs otherwise, so this file compiles dti.c itself to reach its static
 * helpers (the library's dti.o is then not linked in). numpy parity of the
 * log itself is checked by tests/parity/test_dti.py. */
#include "../../kernels/dti.c"

#include <stdio.h>
#include <stdlib.h>

static int failures;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int same_bits(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Software FMA against glibc's correctly rounded fmaf, including operands
 * chosen so the sum nearly cancels (where a double-rounding bug would show). */
static void test_soft_fma(void) {
    long bad = 0;
    for (long i = 0; i < 2000000; i++) {
        uint32_t ea = 100 + rnd32() % 50, eb = 100 + rnd32() % 50, ec = 100 + rnd32() % 50;
        float a = bits_to_float((rnd32() & 0x807fffffu) | (ea << 23));
        float b = bits_to_float((rnd32() & 0x807fffffu) | (eb << 23));
        float c = bits_to_float((rnd32() & 0x807fffffu) | (ec << 23));
        if (i & 1) /* near-cancelling c */
            c = -(float)((double)a * (double)b) * (1.0f + (float)((int)(rnd32() % 5) - 2) * 6e-8f);
        float want = fmaf(a, b, c), got = dti_fmaf_soft(a, b, c);
        if (!same_bits(want, got)) {
            if (bad < 5)
                fprintf(stderr, "fma(%a, %a, %a): soft %a, fmaf %a\n", a, b, c, got, want);
            bad++;
        }
    }
    /* Double-rounding traps: a * b exactly halfway between two floats (odd
     * 25-bit product) plus a tiny c that the double sum drops; only the
     * round-to-odd step gets these right. */
    long tried = 0;
    for (long i = 0; tried < 200000 && i < 10000000; i++) {
        uint32_t ia = (rnd32() & 0x1fffu) | 0x1001u, ib = (rnd32() & 0x1fffu) | 0x1001u;
        uint64_t prod = (uint64_t)ia * ib;
        if (prod < (1u << 24) || prod >= (1u << 25))
            continue;
        tried++;
        float a = ldexpf((float)ia, -12), b = ldexpf((float)ib, -12);
        float c = ldexpf((rnd32() & 1) ? 1.0f : -1.0f, -(int)(40 + rnd32() % 60));
        float want = fmaf(a, b, c), got = dti_fmaf_soft(a, b, c);
        if (!same_bits(want, got)) {
            if (bad < 5)
                fprintf(stderr, "fma(%a, %a, %a): soft %a, fmaf %a\n", a, b, c, got, want);
            bad++;
        }
    }
    if (bad || tried < 200000) {
        fprintf(stderr, "soft FMA differs from fmaf in %ld cases (%ld halfway cases)\n", bad,
                tried);
        failures++;
    }
}

static void test_log_paths(void) {
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x);
    double *y_soft = malloc(N * sizeof *y_soft);
    double *y_hw = malloc(N * sizeof *y_hw);
    const float special[] = {0.0f, -0.0f, -1.0f, 1e-4f, 1e-5f, 1.0f, 2.0f, 0.70710677f,
                             0.70710683f, 65535.0f, 3.0e38f, 1e-40f, INFINITY, NAN};
    size_t ns = sizeof special / sizeof special[0];
    for (size_t i = 0; i < N; i++)
        x[i] = i < ns ? special[i]
                      : bits_to_float((rnd32() & 0x007fffffu) | ((100u + rnd32() % 60) << 23));
    dti_logsig_f32_soft(x, 1, N, y_soft);
    dmri_dti_logsig_f32(x, 1, N, y_hw);
    long bad = 0;
    for (size_t i = 0; i < N; i++) {
        int both_nan = isnan(y_soft[i]) && isnan(y_hw[i]);
        if (!both_nan && memcmp(&y_soft[i], &y_hw[i], sizeof(double)) != 0) {
            if (bad < 5)
                fprintf(stderr, "log(%a): soft %a, dispatched %a\n", x[i], y_soft[i], y_hw[i]);
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "log paths differ in %ld of %d values\n", bad, N);
        failures++;
    }
    /* Known values: the floor, exact zero at 1, NaN kept, and accuracy. */
    if (y_soft[0] != (double)dti_numpy_logf(1e-4f, 0) || y_soft[2] != y_soft[0]) {
        fprintf(stderr, "floor: log(0) %.9g, log(-1) %.9g\n", y_soft[0], y_soft[2]);
        failures++;
    }
    if (y_soft[5] != 0.0 || !isnan(y_soft[13]) || !isinf(y_soft[12])) {
        fprintf(stderr, "log(1) %.9g, log(NaN) %.9g, log(inf) %.9g\n", y_soft[5], y_soft[13],
                y_soft[12]);
        failures++;
    }
    double maxrel = 0.0;
    for (size_t i = ns; i < N; i++) {
        double ref = log((double)x[i]);
        if (x[i] >= 1e-4f && fabs(ref) > 1e-3) {
            double rel = fabs(y_soft[i] - ref) / fabs(ref);
            if (rel > maxrel)
                maxrel = rel;
        }
    }
    if (!(maxrel < 5e-7)) {
        fprintf(stderr, "log relative error %.3g (numpy's kernel is within ~2.4e-7)\n", maxrel);
        failures++;
    }
    printf("log: max rel error vs double log %.3g\n", maxrel);
    free(x);
    free(y_soft);
    free(y_hw);
}

#if DTI_HAVE_SIMD
DTI_AVX512 static void log_vector_array(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i += 16)
        _mm512_storeu_ps(y + i, dti_logsig16_avx512(_mm512_loadu_ps(x + i)));
}
#endif

/* The AVX-512 log of dmri_dti_fit_block (16 lanes, floor included) against
 * the scalar one, bit for bit, on random floats of every exponent, values
 * below the floor, and the specials. */
static void test_log_vector(void) {
#if DTI_HAVE_SIMD
    if (!dti_cpu_avx512()) {
        printf("log: no AVX-512 on this CPU, vector path not tested\n");
        return;
    }
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x);
    double *y = malloc(N * sizeof *y);
    float *yv = malloc(N * sizeof *yv);
    const float special[] = {0.0f, -0.0f, -1.0f, 1e-4f, 1e-5f, 9.9999997e-05f, 1.0f, 2.0f,
                             0.70710677f, 0.70710683f, 65535.0f, 3.0e38f, 1e-40f, INFINITY,
                             -INFINITY, NAN, -NAN, 0x1.fffffep127f};
    size_t ns = sizeof special / sizeof special[0];
    for (size_t i = 0; i < N; i++)
        x[i] = i < ns ? special[i] : bits_to_float(rnd32());
    dti_logsig_f32_soft(x, 1, N, y);
    log_vector_array(x, yv, N);
    long bad = 0;
    for (size_t i = 0; i < N; i++) {
        float want = (float)y[i];
        int both_nan = isnan(want) && isnan(yv[i]);
        if (!both_nan && !same_bits(want, yv[i])) {
            if (bad < 5)
                fprintf(stderr, "vector log(%a): %a, scalar %a\n", x[i], yv[i], want);
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "vector log differs from the scalar one in %ld of %d values\n", bad, N);
        failures++;
    }
    free(x);
    free(y);
    free(yv);
#endif
}

int main(void) {
    test_soft_fma();
    test_log_paths();
    test_log_vector();
    if (failures) {
        fprintf(stderr, "test_dti_logf: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_dti_logf: all passed\n");
    return 0;
}
