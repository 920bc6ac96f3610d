/* meanb0: the mean of the b0 volumes (PIPELINE.md Step 3), with numpy's
 * precision rules: float32 data is summed in float32, volume after volume in
 * ascending order; everything else is summed in float64. */
#ifndef DMRI_MEANB0_H
#define DMRI_MEANB0_H

#include <stddef.h>

/* data: nvol volumes of nvox values each, volume-contiguous. b0_idx: nb0
 * ascending volume indices. out: nvox values. nb0 == 0 gives NaN everywhere
 * (as numpy does); callers are expected to refuse that case earlier. */
void dmri_meanb0_f32(const float *data, size_t nvox, const int *b0_idx, int nb0, float *out);
/* Integer data held in float32 storage (exact): summed in float64. */
void dmri_meanb0_f32_to_f64(const float *data, size_t nvox, const int *b0_idx, int nb0,
                            double *out);
void dmri_meanb0_f64(const double *data, size_t nvox, const int *b0_idx, int nb0, double *out);

#endif
