/* nlmeans: dipy 1.6's classic non-local means with Rician correction
 * (PIPELINE.md Step 6; patch radius 1, block radius 5, search radius 4),
 * on a z-slab of one volume so that a subject can be cut into chunks.
 *
 * A slab of output slices [z0, z1) needs the input slices [z0-5, z1+5]; where
 * those fall outside the volume they are mirrored (whole-sample symmetric, the
 * edge voxel not repeated), exactly like dipy's padding. Every spatial size
 * must be >= 6 (DMRI_NLMEANS_MIN_SIZE). Arithmetic is float64. */
#ifndef DMRI_NLMEANS_H
#define DMRI_NLMEANS_H

#include <stddef.h>
#include <stdint.h>

#define DMRI_NLMEANS_HALO 5
#define DMRI_NLMEANS_MIN_SIZE 6

/* Doubles in the padded block for a slab of nzs slices: (nx+10)(ny+10)(nzs+10). */
size_t dmri_nlmeans_padded_len(int nx, int ny, int nzs);

/* Build the padded float64 block for output slices [z0, z1) of a volume of
 * size nx*ny*nz. `src` holds the volume's slices [sz0, sz1) (x, y complete,
 * x fastest); it must cover [max(0, z0-5), min(nz, z1+5)). */
void dmri_nlmeans_pad_f32(const float *src, int nx, int ny, int nz, int sz0, int sz1, int z0,
                          int z1, double *padded);
void dmri_nlmeans_pad_f64(const double *src, int nx, int ny, int nz, int sz0, int sz1, int z0,
                          int z1, double *padded);

/* Doubles of workspace dmri_nlmeans_block needs for a slab of nzs slices. */
size_t dmri_nlmeans_workspace_len(int nx, int ny, int nzs);

/* Denoise one padded slab: output slices [z0, z0 + nzs) of the volume (z0 is
 * the slab's global position; 0 for a whole volume). mask: nx*ny*nzs values
 * of the slab (nonzero = compute). sigma: the volume's noise level. out:
 * nx*ny*nzs float64 values, 0 outside the mask; with rician != 0,
 * out = sqrt(max(A - 2 sigma^2, 0)). Not dipy's exact summation order: A
 * within ~1e-14 relative of dipy's float64 (identical after the cast to
 * float32 in all tests). The result of a voxel depends only on the volume, the
 * mask, sigma and its global position, never on the slab cut: any split of a
 * volume into slabs gives the very bits of the whole-volume call (for a given
 * instruction set; see nlmeans.c). Thread-safe with separate workspaces. */
void dmri_nlmeans_block(const double *padded, int nx, int ny, int z0, int nzs,
                        const uint8_t *mask, double sigma, int rician, double *out,
                        double *workspace);

/* Instruction set of dmri_nlmeans_block: "auto" (default: AVX-512 if the CPU
 * has it, else AVX2+FMA, else "scalar"), "scalar" (portable loops, glibc exp),
 * "avx2" or "avx512". Process-wide; call before starting threads (tests and
 * benchmarks use it to exercise every path). NULL or "" means "auto".
 * Returns 0, DMRI_EINVAL for an unknown name or DMRI_EUNSUP if this CPU
 * lacks the instruction set. */
int dmri_nlmeans_set_isa(const char *name);

/* Name of the instruction set dmri_nlmeans_block uses now ("avx512", ...). */
const char *dmri_nlmeans_isa(void);

/* y[i] = exp(x[i]) as the weights of dmri_nlmeans_block compute it with the
 * current instruction set (glibc's exp for "scalar"; a vectorised exp within
 * 1 ulp of it otherwise), for x <= 0 (x < -745.2 and -inf give 0, NaN stays
 * NaN). For tests. */
void dmri_nlmeans_exp(const double *x, double *y, size_t n);

/* Same contract as dmri_nlmeans_block, computed voxel by voxel in dipy's exact
 * loop and summation order (bit-identical to dipy in float64 with glibc exp);
 * ~25x slower than dmri_nlmeans_block. For tests and as the reference. */
void dmri_nlmeans_block_reference(const double *padded, int nx, int ny, int nzs,
                                  const uint8_t *mask, double sigma, int rician, double *out);

#endif
