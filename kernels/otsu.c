/* otsu: dipy.segment.threshold.otsu (dipy 1.6.0) on top of numpy 1.24's
 * np.histogram(image, 256), reproduced operation by operation (PIPELINE.md
 * Step 4b): bin edges from linspace in f64 rounded to the data type, numpy's
 * bin-index estimate with its one-step corrections, class means on the right
 * bin edges, the first maximum (or first NaN) of the between-class variance,
 * and the left edge of that bin as threshold. */
#include "otsu.h"

#include <math.h>

#define OTSU_NBINS 256

/* numpy's value-based casting: an f64 scalar multiplying an f32 array keeps
 * the array f32 while the scalar lies strictly within +-3.4e38
 * (min_scalar_type), else the product is f64. */
#define OTSU_F32_SCALAR_MAX 3.4e38

/* linspace(first, last, 257) in f64 (numpy converts both ends to f64), then
 * rounded to the data type by the caller. */
static void otsu_linspace(double first, double last, double y[OTSU_NBINS + 1]) {
    double delta = last - first;
    double step = delta / OTSU_NBINS;
    for (int i = 0; i <= OTSU_NBINS; i++) {
        double yi;
        if (step == 0) /* numpy's denormal path: y /= div; y *= delta */
            yi = ((double)i / OTSU_NBINS) * delta;
        else
            yi = (double)i * step;
        y[i] = yi + first;
    }
    y[OTSU_NBINS] = last;
}

/* The variance maximisation of dipy's otsu(); e are the (type-rounded) edges
 * widened to f64. Returns the winning bin. */
static int otsu_pick(const double h[OTSU_NBINS], const double e[OTSU_NBINS + 1]) {
    double w1[OTSU_NBINS], w2[OTSU_NBINS], m1[OTSU_NBINS], m2[OTSU_NBINS];
    /* cumsum starts from the first element (not from 0), which only matters
     * for the sign of a zero; kept for exactness. */
    double cw = h[0], cm = h[0] * e[1];
    w1[0] = cw;
    m1[0] = cm / cw;
    for (int i = 1; i < OTSU_NBINS; i++) {
        cw = cw + h[i];
        cm = cm + h[i] * e[i + 1];
        w1[i] = cw;
        m1[i] = cm / cw;
    }
    cw = h[OTSU_NBINS - 1];
    cm = h[OTSU_NBINS - 1] * e[OTSU_NBINS];
    w2[OTSU_NBINS - 1] = cw;
    m2[OTSU_NBINS - 1] = cm / cw;
    for (int i = OTSU_NBINS - 2; i >= 0; i--) {
        cw = cw + h[i];
        cm = cm + h[i] * e[i + 1];
        w2[i] = cw;
        m2[i] = cm / cw;
    }
    /* np.argmax: a NaN is the maximum and the first one wins (an empty first
     * bin gives 0/0 in m1[0], e.g. for a constant image -> bin 0). */
    int best = 0;
    double bestv = 0;
    for (int i = 0; i < OTSU_NBINS - 1; i++) {
        double d = m1[i] - m2[i + 1];
        double s = w1[i] * w2[i + 1] * (d * d);
        if (isnan(s))
            return i;
        if (i == 0 || s > bestv) {
            best = i;
            bestv = s;
        }
    }
    return best;
}

/* One value's bin, as numpy computes it: truncated estimate, the last edge
 * folded into the last bin, then one step down or up to satisfy
 * e[i] <= v < e[i+1]. Returns -1 when numpy would fail (unreachable for
 * finite data, kept so a bad value can never index out of bounds). */
static int otsu_bin_fix(double f, double v, const double e[OTSU_NBINS + 1]) {
    if (!(f > -2.0 && f < 2.0 * OTSU_NBINS))
        return -1;
    int ind = (int)f; /* astype(intp) truncates toward zero */
    if (ind == OTSU_NBINS)
        ind -= 1;
    if (ind < 0 || ind > OTSU_NBINS)
        return -1;
    if (v < e[ind])
        ind -= 1;
    if (ind != OTSU_NBINS - 1 && v >= e[ind + 1])
        ind += 1;
    return ind >= 0 && ind < OTSU_NBINS ? ind : -1;
}

int dmri_otsu_threshold_f32(const float *v, size_t n, float *threshold, dmri_err_t *err) {
    if (n == 0)
        return dmri_err_set(err, DMRI_EINVAL, "otsu: empty image");
    float lo = v[0], hi = v[0];
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i]))
            return dmri_err_set(err, DMRI_ENUMERIC,
                                "otsu: image contains NaN (value %zu of %zu): histogram range "
                                "is not finite",
                                i, n);
        if (v[i] < lo)
            lo = v[i];
        if (v[i] > hi)
            hi = v[i];
    }
    if (isinf(lo) || isinf(hi))
        return dmri_err_set(err, DMRI_ENUMERIC, "otsu: histogram range [%g, %g] is not finite",
                            (double)lo, (double)hi);
    /* numpy widens a constant image's range in f64 (f32 scalar - 0.5 is
     * f64); the differences below are then taken in f64, otherwise in f32. */
    double first, last, span;
    if (lo == hi) {
        first = (double)lo - 0.5;
        last = (double)hi + 0.5;
        span = last - first;
    } else {
        first = lo;
        last = hi;
        span = (double)(float)(hi - lo);
    }
    double norm = OTSU_NBINS / span;
    double y[OTSU_NBINS + 1], e[OTSU_NBINS + 1];
    float ef[OTSU_NBINS + 1];
    otsu_linspace(first, last, y);
    for (int i = 0; i <= OTSU_NBINS; i++) {
        ef[i] = (float)y[i];
        e[i] = ef[i];
    }
    /* Array-with-scalar operations stay in f32: the scalars are cast. */
    const float first32 = (float)first, last32 = (float)last;
    const int mul32 = norm < OTSU_F32_SCALAR_MAX;
    const float norm32 = mul32 ? (float)norm : 0.0f;
    double h[OTSU_NBINS] = {0};
    for (size_t i = 0; i < n; i++) {
        float x = v[i];
        if (!(x >= first32 && x <= last32))
            continue;
        float d = x - first32;
        double f = mul32 ? (double)(d * norm32) : (double)d * norm;
        int b = otsu_bin_fix(f, x, e);
        if (b < 0)
            return dmri_err_set(err, DMRI_ENUMERIC,
                                "otsu: cannot bin value %g in range [%g, %g]", (double)x,
                                (double)lo, (double)hi);
        h[b] += 1.0;
    }
    *threshold = ef[otsu_pick(h, e)];
    return 0;
}

int dmri_otsu_threshold_f64(const double *v, size_t n, double *threshold, dmri_err_t *err) {
    if (n == 0)
        return dmri_err_set(err, DMRI_EINVAL, "otsu: empty image");
    double lo = v[0], hi = v[0];
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i]))
            return dmri_err_set(err, DMRI_ENUMERIC,
                                "otsu: image contains NaN (value %zu of %zu): histogram range "
                                "is not finite",
                                i, n);
        if (v[i] < lo)
            lo = v[i];
        if (v[i] > hi)
            hi = v[i];
    }
    if (isinf(lo) || isinf(hi))
        return dmri_err_set(err, DMRI_ENUMERIC, "otsu: histogram range [%g, %g] is not finite",
                            lo, hi);
    double first = lo, last = hi;
    if (lo == hi) {
        first = lo - 0.5;
        last = hi + 0.5;
    }
    double norm = OTSU_NBINS / (last - first);
    double e[OTSU_NBINS + 1];
    otsu_linspace(first, last, e);
    double h[OTSU_NBINS] = {0};
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        if (!(x >= first && x <= last))
            continue;
        int b = otsu_bin_fix((x - first) * norm, x, e);
        if (b < 0)
            return dmri_err_set(err, DMRI_ENUMERIC,
                                "otsu: cannot bin value %g in range [%g, %g] (range too narrow)",
                                x, lo, hi);
        h[b] += 1.0;
    }
    *threshold = e[otsu_pick(h, e)];
    return 0;
}
