/* harness_nlmeans: runs the NL-means kernel on one raw volume for the dipy
 * parity script (tests/parity/test_nlmeans.py).
 *
 *   harness_nlmeans --shape NX NY NZ --dtype f32|f64 --input vol.raw
 *                   --mask mask.u8 --sigma S [--rician 0|1]
 *                   [--variant fast|reference] [--slab NZS] [--repeat N]
 *                   --output out.f64
 *
 * Raw files are x fastest (numpy: arr.ravel(order="F")); the mask is one
 * uint8 per voxel; sigma is parsed with strtod (pass repr(float) for an exact
 * value). The output is NX*NY*NZ float64 values. With --slab the volume is
 * cut into z-slabs of NZS slices, each padded from a copy of only the input
 * slices it needs (as a chunked pipeline would). The last line on stdout is
 * "mask_voxels M seconds T" for the best of --repeat runs (thread CPU time),
 * the line before it
 * "isa NAME" (the fast kernel's instruction set). The environment variable
 * DMRI_NLMEANS_ISA (auto|scalar|avx2|avx512) forces that instruction set;
 * exit status 3 if this CPU lacks it. */
#include "dmri_alloc.h"
#include "nlmeans.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int read_file(const char *path, void *buf, size_t bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "harness_nlmeans: cannot open %s\n", path);
        return -1;
    }
    size_t got = fread(buf, 1, bytes, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != bytes || extra) {
        fprintf(stderr, "harness_nlmeans: %s: expected exactly %zu bytes\n", path, bytes);
        return -1;
    }
    return 0;
}

/* CPU time of this thread: the kernel's cost on one core, not inflated when
 * other processes share the machine. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(void) {
    fprintf(stderr, "usage: harness_nlmeans --shape NX NY NZ --dtype f32|f64 --input F --mask F "
                    "--sigma S [--rician 0|1] [--variant fast|reference] [--slab NZS] "
                    "[--repeat N] --output F\n");
    exit(2);
}

int main(int argc, char **argv) {
    int nx = 0, ny = 0, nz = 0, rician = 1, slab = 0, repeat = 1, reference = 0, is_f32 = -1;
    const char *in_path = NULL, *mask_path = NULL, *out_path = NULL, *sigma_str = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--shape") && i + 3 < argc) {
            nx = atoi(argv[++i]);
            ny = atoi(argv[++i]);
            nz = atoi(argv[++i]);
        } else if (!strcmp(a, "--dtype") && i + 1 < argc) {
            const char *t = argv[++i];
            is_f32 = !strcmp(t, "f32") ? 1 : !strcmp(t, "f64") ? 0 : -1;
        } else if (!strcmp(a, "--input") && i + 1 < argc) {
            in_path = argv[++i];
        } else if (!strcmp(a, "--mask") && i + 1 < argc) {
            mask_path = argv[++i];
        } else if (!strcmp(a, "--output") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(a, "--sigma") && i + 1 < argc) {
            sigma_str = argv[++i];
        } else if (!strcmp(a, "--rician") && i + 1 < argc) {
            rician = atoi(argv[++i]);
        } else if (!strcmp(a, "--slab") && i + 1 < argc) {
            slab = atoi(argv[++i]);
        } else if (!strcmp(a, "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (!strcmp(a, "--variant") && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(v, "reference"))
                reference = 1;
            else if (strcmp(v, "fast"))
                usage();
        } else {
            usage();
        }
    }
    if (is_f32 < 0 || !in_path || !mask_path || !out_path || !sigma_str || repeat < 1)
        usage();
    if (nx < DMRI_NLMEANS_MIN_SIZE || ny < DMRI_NLMEANS_MIN_SIZE || nz < DMRI_NLMEANS_MIN_SIZE) {
        fprintf(stderr, "harness_nlmeans: shape %dx%dx%d: every size must be >= %d\n", nx, ny, nz,
                DMRI_NLMEANS_MIN_SIZE);
        return 1;
    }
    char *end;
    const double sigma = strtod(sigma_str, &end);
    if (*end) {
        fprintf(stderr, "harness_nlmeans: bad sigma '%s'\n", sigma_str);
        return 2;
    }
    if (slab <= 0 || slab > nz)
        slab = nz;
    /* DMRI_NLMEANS_ISA=auto|scalar|avx2|avx512 picks the fast kernel's path */
    const char *isa = getenv("DMRI_NLMEANS_ISA");
    if (isa && dmri_nlmeans_set_isa(isa) != 0) {
        fprintf(stderr, "harness_nlmeans: DMRI_NLMEANS_ISA=%s: unknown or not supported here\n",
                isa);
        return 3;
    }

    const size_t plane = (size_t)nx * ny, n = plane * nz, esz = is_f32 ? 4 : 8;
    void *vol = dmri_malloc(n * esz);
    uint8_t *mask = dmri_malloc(n);
    double *out = dmri_malloc(n * sizeof(double));
    if (read_file(in_path, vol, n * esz) || read_file(mask_path, mask, n))
        return 1;
    size_t nmask = 0;
    for (size_t i = 0; i < n; i++)
        nmask += mask[i] != 0;

    double *padded = dmri_malloc(dmri_nlmeans_padded_len(nx, ny, slab) * sizeof(double));
    double *ws = dmri_malloc(dmri_nlmeans_workspace_len(nx, ny, slab) * sizeof(double));
    void *src = dmri_malloc((size_t)(slab + 2 * DMRI_NLMEANS_HALO) * plane * esz);
    double best = 1e300;
    for (int r = 0; r < repeat; r++) {
        double t0 = now();
        for (int z0 = 0; z0 < nz; z0 += slab) {
            const int z1 = z0 + slab < nz ? z0 + slab : nz, nzs = z1 - z0;
            const int sz0 = z0 - DMRI_NLMEANS_HALO > 0 ? z0 - DMRI_NLMEANS_HALO : 0;
            const int sz1 = z1 + DMRI_NLMEANS_HALO < nz ? z1 + DMRI_NLMEANS_HALO : nz;
            /* Only the slices the slab may read, in a buffer of their own. */
            memcpy(src, (const char *)vol + (size_t)sz0 * plane * esz,
                   (size_t)(sz1 - sz0) * plane * esz);
            if (is_f32)
                dmri_nlmeans_pad_f32(src, nx, ny, nz, sz0, sz1, z0, z1, padded);
            else
                dmri_nlmeans_pad_f64(src, nx, ny, nz, sz0, sz1, z0, z1, padded);
            const uint8_t *m = mask + (size_t)z0 * plane;
            double *o = out + (size_t)z0 * plane;
            if (reference)
                dmri_nlmeans_block_reference(padded, nx, ny, nzs, m, sigma, rician, o);
            else
                dmri_nlmeans_block(padded, nx, ny, z0, nzs, m, sigma, rician, o, ws);
        }
        double t = now() - t0;
        if (t < best)
            best = t;
    }

    FILE *f = fopen(out_path, "wb");
    int bad = !f;
    if (f) {
        bad = fwrite(out, sizeof(double), n, f) != n;
        bad |= fclose(f) != 0;
    }
    if (bad) {
        fprintf(stderr, "harness_nlmeans: cannot write %s\n", out_path);
        return 1;
    }
    printf("isa %s\n", reference ? "reference" : dmri_nlmeans_isa());
    printf("mask_voxels %zu seconds %.6f\n", nmask, best);
    dmri_free(src);
    dmri_free(ws);
    dmri_free(padded);
    dmri_free(out);
    dmri_free(mask);
    dmri_free(vol);
    return 0;
}
