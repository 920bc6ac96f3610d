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

/* ---- many voxels at once ------------------------------------------------ */

/* How the signal of dmri_dti_fit_block is stored and logged (PIPELINE 7b). */
typedef enum {
    DMRI_DTI_IN_F32,        /* float32 data: floor and log in float32 (numpy's) */
    DMRI_DTI_IN_F32_AS_F64, /* integer data held as float32: numpy works in float64 */
    DMRI_DTI_IN_F64         /* float64 data */
} dmri_dti_input_t;

/* Where dmri_dti_fit_block writes; every pointer may be NULL (not written).
 * Voxel v of the block (0 <= v < n):
 *   evals[v * 3 + j], evecs[v * 9 + c * 3 + j]        (double, as fit_voxel)
 *   fa[v], md[v], ad[v], rd[v]                         (float32 maps)
 *   color_fa[c * stride + v], evecs_map[(c + 3 j) * stride + v]
 * (c = x, y, z component; j = eigenvector). Voxels outside the mask get 0 in
 * every output (PIPELINE 7g). */
typedef struct {
    double *evals;
    double *evecs;
    float *fa, *md, *ad, *rd;
    float *color_fa;
    float *evecs_map;
    size_t stride; /* between components of color_fa and evecs_map */
} dmri_dti_out_t;

/* Fit the n voxels of a block: sample g of voxel v is
 * ((const T *)vols[g])[v * vstride] with T float or double as `kind` says
 * (vols: m->nvol pointers, e.g. one per volume, or one per volume of a
 * chunk). Only voxels with mask[v] != 0 are fitted (mask NULL: all).
 * Same model, log, OLS weights and WLS solve as dmri_dti_fit_voxel (whose
 * per-voxel route also handles singular systems and non-finite signals here),
 * vectorised across voxels; the 3x3 eigen-decomposition is a Jacobi solver
 * instead of LAPACK's dsyevd (~20x cheaper per call): same eigenvalues and
 * eigenvectors within PIPELINE's tolerances, but each eigenvector's sign is
 * normalised (its largest-magnitude component positive) where LAPACK's sign
 * is arbitrary. Allocates its own scratch; thread-safe. */
void dmri_dti_fit_block(const dmri_dti_model_t *m, dmri_dti_input_t kind,
                        const void *const *vols, size_t vstride, size_t n,
                        const unsigned char *mask, const dmri_dti_out_t *out);

/* Instruction set of dmri_dti_fit_block: "auto" (default: AVX-512 if the CPU
 * has it, else "scalar"), "scalar" or "avx512". Process-wide; call before
 * starting threads (tests and benchmarks use it to exercise every path).
 * NULL or "" means "auto". Returns 0, DMRI_EINVAL for an unknown name or
 * DMRI_EUNSUP if this CPU lacks the instruction set. */
int dmri_dti_set_isa(const char *name);

/* Name of the instruction set dmri_dti_fit_block uses now. */
const char *dmri_dti_isa(void);

#endif
