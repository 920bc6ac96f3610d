/* otsu: dipy's Otsu threshold (PIPELINE.md Step 4b, 256 bins, right-edge class
 * means, threshold = left edge of the winning bin, edges in the data type). */
#ifndef DMRI_OTSU_H
#define DMRI_OTSU_H

#include <stddef.h>

#include "dmri_err.h"

/* Threshold of n values. Returns DMRI_ENUMERIC (with a message) when the
 * minimum or maximum is NaN or infinite, DMRI_EINVAL when n == 0. */
int dmri_otsu_threshold_f32(const float *v, size_t n, float *threshold, dmri_err_t *err);
int dmri_otsu_threshold_f64(const double *v, size_t n, double *threshold, dmri_err_t *err);

#endif
