/* test_gtab: dipy's gradient-table rules (PIPELINE.md Step 2) on hand-made
 * tables whose answers are known: b0 detection, NaN handling, the unit
 * test, the effective values and the error paths. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gtab.h"

static int failures;

#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long va_ = (long long)(a), vb_ = (long long)(b);                              \
        if (va_ != vb_) {                                                                  \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                     \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* Exact comparison of doubles (NaN equals NaN). */
#define CHECK_DBL(a, b)                                                                      \
    do {                                                                                     \
        double va_ = (a), vb_ = (b);                                                         \
        if (!(va_ == vb_ || (isnan(va_) && isnan(vb_)))) {                                  \
            fprintf(stderr, "%s:%d: %s == %s failed: %.17g vs %.17g\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                       \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                           \
        }                                                                         \
    } while (0)

static void test_mixed_table(void) {
    /* 0: FSL b0 with a NaN vector; 1: HCP b0 at b = 5 with a unit vector;
     * 2: DWI; 3: DWI with norm 1.009 (kept, not renormalised); 4: NaN b-value
     * with a unit vector (counts as b0); 5: b exactly at the threshold;
     * 6: just above it; 7: b0 with a non-unit vector; 8: DWI whose NaN
     * component is zeroed and is then unit. */
    const double n = 1.009 / sqrt(3.0);
    double bvals[9] = {0, 5, 1000, 2000, NAN, 10, 10.0001, 0, 3000};
    double bvecs[27] = {NAN, NAN, NAN, 1, 0, 0,   0, 1,   0, n, n, n, 0, 0, 1,
                        0,   1,   0,   0, 0, -1, 0.5, 0, 0, NAN, 0, 1};
    dmri_gtab_t gt;
    dmri_err_t err = {0};
    int rc = dmri_gtab_init(&gt, bvals, bvecs, 9, 10.0, &err);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "unexpected error: %s\n", err.msg);
        return;
    }
    const int want_mask[9] = {1, 1, 0, 0, 1, 1, 0, 1, 0};
    for (int i = 0; i < 9; i++)
        CHECK_INT(gt.b0s_mask[i], want_mask[i]);
    CHECK_INT(gt.n, 9);
    CHECK_INT(gt.nb0, 5);
    const int want_idx[5] = {0, 1, 4, 5, 7};
    for (int k = 0; k < 5 && k < gt.nb0; k++)
        CHECK_INT(gt.b0_idx[k], want_idx[k]);

    /* NaN vector -> 0 -> not unit -> b_eff 0. */
    CHECK_DBL(gt.b_eff[0], 0.0);
    for (int c = 0; c < 3; c++)
        CHECK_DBL(gt.g_eff[c], 0.0);
    /* b0 with a unit vector keeps b = 5 and its vector. */
    CHECK_DBL(gt.b_eff[1], 5.0);
    CHECK_DBL(gt.g_eff[3], 1.0);
    CHECK_DBL(gt.b_eff[2], 1000.0);
    /* Not renormalised. */
    CHECK_DBL(gt.b_eff[3], 2000.0);
    for (int c = 0; c < 3; c++)
        CHECK_DBL(gt.g_eff[9 + c], n);
    /* NaN b with a unit vector: dipy keeps NaN * 1. */
    CHECK(isnan(gt.b_eff[4]));
    CHECK_DBL(gt.b_eff[5], 10.0);
    CHECK_DBL(gt.b_eff[6], 10.0001);
    CHECK_DBL(gt.g_eff[6 * 3 + 2], -1.0);
    /* Non-unit b0 vector zeroed. */
    CHECK_DBL(gt.b_eff[7], 0.0);
    CHECK_DBL(gt.g_eff[7 * 3], 0.0);
    CHECK_DBL(gt.b_eff[8], 3000.0);
    CHECK_DBL(gt.g_eff[8 * 3], 0.0);
    CHECK_DBL(gt.g_eff[8 * 3 + 2], 1.0);

    dmri_gtab_close(&gt);
    CHECK(gt.b0s_mask == NULL && gt.b_eff == NULL && gt.g_eff == NULL && gt.b0_idx == NULL);
    dmri_gtab_close(&gt); /* safe twice */
}

static void test_nan_b_nonunit(void) {
    /* NaN b-value with a zero vector: b0, and b_eff = NaN * 0 = NaN as in dipy. */
    double bvals[2] = {NAN, 1000};
    double bvecs[6] = {0, 0, 0, 0, 0, 1};
    dmri_gtab_t gt;
    CHECK_INT(dmri_gtab_init(&gt, bvals, bvecs, 2, 10.0, NULL), 0);
    CHECK_INT(gt.b0s_mask[0], 1);
    CHECK(isnan(gt.b_eff[0]));
    CHECK_INT(gt.nb0, 1);
    dmri_gtab_close(&gt);
}

static void test_unit_tolerance(void) {
    /* |n - 1| <= 0.01 is unit (0.99 itself is not: 1 - 0.99 > 0.01 in binary); 1.0101 is not. */
    double bvals[2] = {0, 1000};
    double ok[6] = {0, 0, 0, 0.991, 0, 0};
    double bad[6] = {0, 0, 0, 0, 1.0101, 0};
    dmri_gtab_t gt;
    dmri_err_t err = {0};
    CHECK_INT(dmri_gtab_init(&gt, bvals, ok, 2, 10.0, &err), 0);
    CHECK_DBL(gt.g_eff[3], 0.991);
    dmri_gtab_close(&gt);

    int rc = dmri_gtab_init(&gt, bvals, bad, 2, 10.0, &err);
    CHECK_INT(rc, DMRI_EFORMAT);
    CHECK_INT(err.code, DMRI_EFORMAT);
    CHECK(strstr(err.msg, "volume 1") != NULL);
    CHECK(strstr(err.msg, "1.0101") != NULL);
    CHECK(gt.b0s_mask == NULL && gt.b_eff == NULL);
    dmri_gtab_close(&gt);

    /* A DWI with a NaN vector (-> 0 -> norm 0) is an error naming norm 0. */
    double nanvec[6] = {0, 0, 0, NAN, NAN, NAN};
    dmri_err_clear(&err);
    rc = dmri_gtab_init(&gt, bvals, nanvec, 2, 10.0, &err);
    CHECK_INT(rc, DMRI_EFORMAT);
    CHECK(strstr(err.msg, "volume 1") != NULL && strstr(err.msg, "= 0") != NULL);
    fprintf(stderr, "(expected) %s\n", err.msg);
}

static void test_no_b0_and_args(void) {
    /* No b0 is not an error here (the pipeline decides). */
    double bvals[3] = {15, 1000, 1000};
    double bvecs[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    dmri_gtab_t gt;
    dmri_err_t err = {0};
    CHECK_INT(dmri_gtab_init(&gt, bvals, bvecs, 3, 10.0, &err), 0);
    CHECK_INT(gt.nb0, 0);
    dmri_gtab_close(&gt);
    /* With a higher threshold the b = 15 volume is a b0. */
    CHECK_INT(dmri_gtab_init(&gt, bvals, bvecs, 3, 50.0, &err), 0);
    CHECK_INT(gt.nb0, 1);
    CHECK_INT(gt.b0_idx[0], 0);
    CHECK_DBL(gt.b_eff[0], 15.0);
    dmri_gtab_close(&gt);

    CHECK_INT(dmri_gtab_init(&gt, bvals, bvecs, 0, 10.0, &err), DMRI_EINVAL);
    CHECK_INT(dmri_gtab_init(&gt, bvals, bvecs, 3, -1.0, &err), DMRI_EINVAL);
    CHECK_INT(dmri_gtab_init(&gt, bvals, bvecs, 3, NAN, &err), DMRI_EINVAL);
    CHECK_INT(dmri_gtab_init(&gt, NULL, bvecs, 3, 10.0, &err), DMRI_EINVAL);
    CHECK_INT(dmri_gtab_init(NULL, bvals, bvecs, 3, 10.0, &err), DMRI_EINVAL);
}

int main(void) {
    test_mixed_table();
    test_nan_b_nonunit();
    test_unit_tolerance();
    test_no_b0_and_args();
    if (failures) {
        fprintf(stderr, "test_gtab: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_gtab: all passed\n");
    return 0;
}
