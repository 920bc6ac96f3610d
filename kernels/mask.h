/* mask: binarisation and the one-iteration 6-neighbour dilation that end
 * median_otsu (PIPELINE.md Steps 4c and 4d). */
#ifndef DMRI_MASK_H
#define DMRI_MASK_H

#include <stddef.h>
#include <stdint.h>

/* mask0[i] = v[i] > t (strict, in the data type). */
void dmri_mask_threshold_f32(const float *v, size_t n, float t, uint8_t *mask0);
void dmri_mask_threshold_f64(const double *v, size_t n, double t, uint8_t *mask0);

/* out = in dilated by the 3-D cross; outside the volume counts as 0.
 * in and out must not overlap. Values are 0/1. */
void dmri_mask_dilate_cross(const uint8_t *in, int nx, int ny, int nz, uint8_t *out);

size_t dmri_mask_count(const uint8_t *mask, size_t n);

#endif
