/* gtab: dipy's gradient table rules (PIPELINE.md Step 2): which volumes are
 * b0, which vectors are unit, and the effective b-values and vectors the
 * tensor model uses. */
#ifndef DMRI_GTAB_H
#define DMRI_GTAB_H

#include <stdint.h>

#include "dmri_err.h"

typedef struct {
    int n;              /* number of volumes */
    uint8_t *b0s_mask;  /* n: 1 where b <= threshold (NaN b counts as b0) */
    double *b_eff;      /* n: b * [vector is unit] */
    double *g_eff;      /* n x 3 row-major: vector if unit, else 0 */
    int nb0;            /* number of b0 volumes */
    int *b0_idx;        /* nb0 ascending indices */
} dmri_gtab_t;

/* bvals: n values, bvecs: n x 3 row-major (NaN components allowed). Fails with
 * DMRI_EFORMAT "b-vectors should be unit: volume 12 has |g| = 0.73" when a
 * diffusion-weighted volume's vector is not unit (|n - 1| > 0.01). It does not
 * fail for nb0 == 0: the caller decides (the pipeline refuses it). */
int dmri_gtab_init(dmri_gtab_t *gt, const double *bvals, const double *bvecs, int n,
                   double b0_threshold, dmri_err_t *err);
void dmri_gtab_close(dmri_gtab_t *gt);

#endif
