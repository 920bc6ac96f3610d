/* meanb0: mean of the b0 volumes with numpy's precision rules (PIPELINE.md
 * Step 3). Owns nothing but the arithmetic order. */
#include "meanb0.h"

void dmri_meanb0_f32(const float *data, size_t nvox, const int *b0_idx, int nb0, float *out) {
    /* numpy reduces an F-ordered (volume-slowest) array along the last axis
     * one volume at a time, starting from the add identity 0, rounding to f32
     * after every add; a double sum would differ in ~10% of voxels. */
    for (size_t v = 0; v < nvox; v++)
        out[v] = 0.0f;
    for (int k = 0; k < nb0; k++) {
        const float *vol = data + (size_t)b0_idx[k] * nvox;
        for (size_t v = 0; v < nvox; v++)
            out[v] = out[v] + vol[v];
    }
    /* The count is converted to f32 (exact) and the division done in f32;
     * nb0 == 0 gives 0/0 = NaN, as numpy does. */
    const float kf = (float)nb0;
    for (size_t v = 0; v < nvox; v++)
        out[v] = out[v] / kf;
}

void dmri_meanb0_f32_to_f64(const float *data, size_t nvox, const int *b0_idx, int nb0,
                            double *out) {
    for (size_t v = 0; v < nvox; v++)
        out[v] = 0.0;
    for (int k = 0; k < nb0; k++) {
        const float *vol = data + (size_t)b0_idx[k] * nvox;
        for (size_t v = 0; v < nvox; v++)
            out[v] = out[v] + (double)vol[v];
    }
    const double kd = (double)nb0;
    for (size_t v = 0; v < nvox; v++)
        out[v] = out[v] / kd;
}

void dmri_meanb0_f64(const double *data, size_t nvox, const int *b0_idx, int nb0, double *out) {
    for (size_t v = 0; v < nvox; v++)
        out[v] = 0.0;
    for (int k = 0; k < nb0; k++) {
        const double *vol = data + (size_t)b0_idx[k] * nvox;
        for (size_t v = 0; v < nvox; v++)
            out[v] = out[v] + vol[v];
    }
    const double kd = (double)nb0;
    for (size_t v = 0; v < nvox; v++)
        out[v] = out[v] / kd;
}
