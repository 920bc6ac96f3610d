/* sigma: dipy's estimate_sigma for one volume (PIPELINE.md Step 5): RMS of the
 * 6-neighbour Laplacian residual over all voxels, half-sample reflection at
 * the borders, arithmetic in float64, result rounded to float32. */
#ifndef DMRI_SIGMA_H
#define DMRI_SIGMA_H

/* vol: nx*ny*nz values, x fastest. Any size >= 1. */
float dmri_sigma_volume_f32(const float *vol, int nx, int ny, int nz);
float dmri_sigma_volume_f64(const double *vol, int nx, int ny, int nz);

#endif
