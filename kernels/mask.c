/* mask: strict binarisation and the 6-neighbour dilation of median_otsu
 * (PIPELINE.md Steps 4c, 4d). */
#include "mask.h"

void dmri_mask_threshold_f32(const float *v, size_t n, float t, uint8_t *mask0) {
    for (size_t i = 0; i < n; i++)
        mask0[i] = (uint8_t)(v[i] > t);
}

void dmri_mask_threshold_f64(const double *v, size_t n, double t, uint8_t *mask0) {
    for (size_t i = 0; i < n; i++)
        mask0[i] = (uint8_t)(v[i] > t);
}

void dmri_mask_dilate_cross(const uint8_t *in, int nx, int ny, int nz, uint8_t *out) {
    /* scipy's binary_dilation with border_value 0: neighbours outside the
     * volume contribute nothing (no reflection, unlike the median). */
    const size_t sx = 1, sy = (size_t)nx, sz = (size_t)nx * (size_t)ny;
    for (int z = 0; z < nz; z++) {
        for (int y = 0; y < ny; y++) {
            size_t i = (size_t)z * sz + (size_t)y * sy;
            for (int x = 0; x < nx; x++, i++) {
                uint8_t m = in[i];
                if (x > 0) m |= in[i - sx];
                if (x + 1 < nx) m |= in[i + sx];
                if (y > 0) m |= in[i - sy];
                if (y + 1 < ny) m |= in[i + sy];
                if (z > 0) m |= in[i - sz];
                if (z + 1 < nz) m |= in[i + sz];
                out[i] = (uint8_t)(m != 0);
            }
        }
    }
}

size_t dmri_mask_count(const uint8_t *mask, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += mask[i] != 0;
    return c;
}
