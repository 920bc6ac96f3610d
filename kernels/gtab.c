/* gtab: dipy 1.6's gradient_table_from_bvals_bvecs rules (PIPELINE.md Step 2)
 * — b0 mask, unit test of the b-vectors, effective b-values and vectors. */
#include "gtab.h"

#include <math.h>
#include <stddef.h>

#include "dmri_alloc.h"

/* dipy's atol: |norm - 1| <= 0.01 counts as unit. */
#define DMRI_GTAB_ATOL 0.01

int dmri_gtab_init(dmri_gtab_t *gt, const double *bvals, const double *bvecs, int n,
                   double b0_threshold, dmri_err_t *err) {
    if (gt == NULL)
        return dmri_err_set(err, DMRI_EINVAL, "gradient table: no output struct");
    gt->n = 0;
    gt->b0s_mask = NULL;
    gt->b_eff = NULL;
    gt->g_eff = NULL;
    gt->nb0 = 0;
    gt->b0_idx = NULL;
    if (bvals == NULL || bvecs == NULL || n <= 0)
        return dmri_err_set(err, DMRI_EINVAL, "gradient table: %d volumes (need at least 1)", n);
    /* dipy raises for a negative threshold; a NaN one would make every
     * volume a DWI silently. */
    if (!(b0_threshold >= 0.0))
        return dmri_err_set(err, DMRI_EINVAL,
                            "gradient table: b0 threshold %g must be a number >= 0", b0_threshold);

    uint8_t *mask = dmri_malloc((size_t)n);
    double *b_eff = dmri_malloc((size_t)n * sizeof(double));
    double *g_eff = dmri_malloc((size_t)n * 3 * sizeof(double));
    int nb0 = 0;

    for (int i = 0; i < n; i++) {
        double b = bvals[i];
        /* !(b > thr) rather than b <= thr: a NaN b-value is not a DWI. */
        int is_dwi = b > b0_threshold;
        mask[i] = (uint8_t)!is_dwi;
        nb0 += !is_dwi;

        double g[3];
        for (int c = 0; c < 3; c++) {
            double v = bvecs[(size_t)i * 3 + c];
            g[c] = isnan(v) ? 0.0 : v;
        }
        /* Same association as numpy's (v * v).sum(-1) over 3 values. */
        double norm = sqrt((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2]);
        int unit = fabs(norm - 1.0) <= DMRI_GTAB_ATOL;
        if (is_dwi && !unit) {
            dmri_free(mask);
            dmri_free(b_eff);
            dmri_free(g_eff);
            return dmri_err_set(err, DMRI_EFORMAT,
                                "b-vectors should be unit: volume %d (b = %g) has |g| = %.6g", i,
                                b, norm);
        }
        for (int c = 0; c < 3; c++)
            g_eff[(size_t)i * 3 + c] = unit ? g[c] : 0.0;
        /* A multiply, as dipy does, so a NaN b-value stays NaN. */
        b_eff[i] = b * (unit ? 1.0 : 0.0);
    }

    int *idx = dmri_malloc((size_t)(nb0 > 0 ? nb0 : 1) * sizeof(int));
    for (int i = 0, k = 0; i < n; i++)
        if (mask[i])
            idx[k++] = i;

    gt->n = n;
    gt->b0s_mask = mask;
    gt->b_eff = b_eff;
    gt->g_eff = g_eff;
    gt->nb0 = nb0;
    gt->b0_idx = idx;
    return 0;
}

void dmri_gtab_close(dmri_gtab_t *gt) {
    if (gt == NULL)
        return;
    dmri_free(gt->b0s_mask);
    dmri_free(gt->b_eff);
    dmri_free(gt->g_eff);
    dmri_free(gt->b0_idx);
    gt->b0s_mask = NULL;
    gt->b_eff = NULL;
    gt->g_eff = NULL;
    gt->b0_idx = NULL;
    gt->n = 0;
    gt->nb0 = 0;
}
