/* median: the cubic median filter of median_otsu (PIPELINE.md Step 4a):
 * window (2r+1)^3, half-sample-symmetric reflection at the borders
 * (scipy mode "reflect"), exact order statistic (rank (2r+1)^3 / 2). */
#ifndef DMRI_MEDIAN_H
#define DMRI_MEDIAN_H

#include <stddef.h>

/* Number of elements (of the data type) the caller's workspace must hold. */
size_t dmri_median3d_workspace_len(int radius);

/* Filter output slices z in [z0, z1) of a whole nx*ny*nz volume `in` (x
 * fastest) into `out` (the same nx*ny*nz layout; only those slices are
 * written). Any size >= 1 works (reflection is periodic). Thread-safe for
 * disjoint [z0, z1) ranges with separate workspaces. Besides the workspace
 * (used where the slab holds a NaN or a -0.0) each call allocates
 * ~(nx + 2r) (2r+1)^2 elements of scratch. Bit-identical to scipy for every
 * instruction set (see dmri_median3d_set_isa). */
void dmri_median3d_f32(const float *in, int nx, int ny, int nz, int radius, int z0, int z1,
                       float *out, float *workspace);
void dmri_median3d_f64(const double *in, int nx, int ny, int nz, int radius, int z0, int z1,
                       double *out, double *workspace);

/* Instruction set of dmri_median3d_*: "auto" (default: AVX-512 if the CPU has
 * it, else "scalar"), "scalar" (portable loops) or "avx512". Every choice
 * gives the same bits. Process-wide; call before starting threads (tests and
 * benchmarks use it to exercise every path). NULL or "" means "auto".
 * Returns 0, DMRI_EINVAL for an unknown name or DMRI_EUNSUP if this CPU
 * lacks the instruction set. */
int dmri_median3d_set_isa(const char *name);

/* Name of the instruction set dmri_median3d_* uses now ("avx512", ...). */
const char *dmri_median3d_isa(void);

#endif
