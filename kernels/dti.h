/* dti: the weighted-least-squares diffusion tensor fit of dipy 1.6
 * (PIPELINE.md Step 7): design matrix, log signal with the 1e-4 floor,
 * OLS pass for weights, WLS solve, eigen-decomposition, eigenvalue clip,
 * and the scalar maps. */
#ifndef DMRI_DTI_H
#define DMRI_DTI_H

#include <stddef.h>

#include "dmri_err.h"

typedef struct {
    int nvol;          /* G */
    double *X;         /* G x 7 design matrix, row-major */
    double *X_pinv;    /* 7 x G pseudo-inverse of X, row-major */
    double min_eval;   /* 1e-6 / max(1, max(-X[:, 0..5])) */
} dmri_dti_model_t;

/* b_eff, g_eff (G x 3 row-major) from dmri_gtab_t. */
int dmri_dti_model_init(dmri_dti_model_t *m, const double *b_eff, const double *g_eff, int nvol,
                        dmri_err_t *err);
void dmri_dti_model_close(dmri_dti_model_t *m);

/* Log signal y[g] = ln(max(s[g * stride], 1e-4)): for float32 data the floor
 * and the log are taken in float32 (as numpy does), then widened. */
void dmri_dti_logsig_f32(const float *s, size_t stride, int nvol, double *y);
void dmri_dti_logsig_f64(const double *s, size_t stride, int nvol, double *y);

/* Doubles of workspace one dmri_dti_fit_voxel call needs. */
size_t dmri_dti_workspace_len(const dmri_dti_model_t *m);

/* Fit one voxel from its log signal y (G values). evals: descending, clipped
 * at min_eval. evecs[c * 3 + j] = component c of eigenvector j (dipy's
 * evecs[..., c, j]). Thread-safe with separate workspaces. */
void dmri_dti_fit_voxel(const dmri_dti_model_t *m, const double *y, double *workspace,
                        double evals[3], double evecs[9]);

/* FA, MD, AD, RD and colour FA (|principal eigenvector| * clip(FA, 0, 1)). */
void dmri_dti_maps(const double evals[3], const double evecs[9], double *fa, double *md,
                   double *ad, double *rd, double color_fa[3]);

#endif
