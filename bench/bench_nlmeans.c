/* bench_nlmeans: single-thread speed of the NL-means kernel on one float32
 * volume (raw, x fastest) with a mask (one byte per voxel), in microseconds
 * per mask voxel. Times dmri_nlmeans_block on the z-slab [Z0, Z1) (padding
 * included) R times and prints the minimum and the median thread CPU time, so
 * that a busy shared machine inflates the numbers as little as possible.
 *
 *   bench_nlmeans --shape NX NY NZ --input vol.f32 --mask mask.u8 --sigma S
 *                 [--slab Z0 Z1] [--repeat R] [--isa auto|scalar|avx2|avx512]
 *                 [--reference]
 *
 * dipy's own time is measured by the caller (see the test_nlmeans.py header
 * or the report of the "Fast kernels" issue); this only times the C side. */
#include "dmri_alloc.h"
#include "nlmeans.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int load(const char *path, void *buf, size_t bytes) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t got = fread(buf, 1, bytes, f);
    fclose(f);
    return got == bytes ? 0 : -1;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int nx = 0, ny = 0, nz = 0, z0 = -1, z1 = -1, repeat = 5, reference = 0;
    const char *in = NULL, *mpath = NULL, *isa = NULL;
    double sigma = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 3 < argc) {
            nx = atoi(argv[++i]);
            ny = atoi(argv[++i]);
            nz = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) {
            in = argv[++i];
        } else if (!strcmp(argv[i], "--mask") && i + 1 < argc) {
            mpath = argv[++i];
        } else if (!strcmp(argv[i], "--sigma") && i + 1 < argc) {
            sigma = strtod(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--slab") && i + 2 < argc) {
            z0 = atoi(argv[++i]);
            z1 = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            isa = argv[++i];
        } else if (!strcmp(argv[i], "--reference")) {
            reference = 1;
        } else {
            fprintf(stderr, "bench_nlmeans: bad argument %s\n", argv[i]);
            return 2;
        }
    }
    if (nx < DMRI_NLMEANS_MIN_SIZE || ny < DMRI_NLMEANS_MIN_SIZE || nz < DMRI_NLMEANS_MIN_SIZE ||
        !in || !mpath || sigma < 0 || repeat < 1) {
        fprintf(stderr, "usage: bench_nlmeans --shape NX NY NZ --input F --mask F --sigma S "
                        "[--slab Z0 Z1] [--repeat R] [--isa NAME] [--reference]\n");
        return 2;
    }
    if (z0 < 0 || z1 <= z0 || z1 > nz) {
        z0 = 0;
        z1 = nz;
    }
    if (isa && dmri_nlmeans_set_isa(isa) != 0) {
        fprintf(stderr, "bench_nlmeans: instruction set %s unknown or not supported\n", isa);
        return 2;
    }
    const size_t plane = (size_t)nx * ny, n = plane * nz;
    float *vol = dmri_malloc(n * sizeof(float));
    uint8_t *mask = dmri_malloc(n);
    if (load(in, vol, n * sizeof(float)) || load(mpath, mask, n)) {
        fprintf(stderr, "bench_nlmeans: cannot read %s or %s\n", in, mpath);
        return 1;
    }
    const int nzs = z1 - z0;
    size_t nmask = 0;
    for (size_t i = (size_t)z0 * plane; i < (size_t)z1 * plane; i++)
        nmask += mask[i] != 0;
    double *padded = dmri_malloc(dmri_nlmeans_padded_len(nx, ny, nzs) * sizeof(double));
    double *ws = dmri_malloc(dmri_nlmeans_workspace_len(nx, ny, nzs) * sizeof(double));
    double *out = dmri_malloc(plane * (size_t)nzs * sizeof(double));
    double *t = dmri_malloc((size_t)repeat * sizeof(double));
    for (int r = 0; r < repeat; r++) {
        const double t0 = cpu_now();
        dmri_nlmeans_pad_f32(vol, nx, ny, nz, 0, nz, z0, z1, padded);
        if (reference)
            dmri_nlmeans_block_reference(padded, nx, ny, nzs, mask + (size_t)z0 * plane, sigma, 1,
                                         out);
        else
            dmri_nlmeans_block(padded, nx, ny, z0, nzs, mask + (size_t)z0 * plane, sigma, 1, out,
                               ws);
        t[r] = cpu_now() - t0;
    }
    qsort(t, (size_t)repeat, sizeof *t, cmp_double);
    printf("isa %s slab [%d,%d) mask_voxels %zu us_per_voxel min %.4f median %.4f\n",
           reference ? "reference" : dmri_nlmeans_isa(), z0, z1, nmask, 1e6 * t[0] / (double)nmask,
           1e6 * t[repeat / 2] / (double)nmask);
    dmri_free(t);
    dmri_free(out);
    dmri_free(ws);
    dmri_free(padded);
    dmri_free(mask);
    dmri_free(vol);
    return 0;
}
