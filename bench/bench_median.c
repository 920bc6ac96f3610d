/* bench_median: single-thread speed of the median_otsu median filter (two
 * passes of dmri_median3d, the second filtering the first) on one raw volume,
 * x fastest. Prints the best (minimum) thread CPU time of --repeat runs so
 * that a busy shared machine inflates the number as little as possible, and,
 * with --reference, how many values differ bit for bit from a reference
 * result (e.g. scipy's, written by bench/bench_kernels.py).
 *
 *   bench_median --shape NX NY NZ --input vol.raw [--dtype f32|f64]
 *                [--radius R] [--passes P] [--repeat N] [--slabs S]
 *                [--isa auto|scalar|avx512] [--reference ref.raw]
 *                [--output out.raw]
 *
 * Output lines: "isa NAME", "seconds T" (all passes, best run),
 * "us_per_voxel U" (all passes), "differ D" (with --reference). */
#include "dmri_alloc.h"
#include "median.h"

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

static void usage(void) {
    fprintf(stderr, "usage: bench_median --shape NX NY NZ --input vol.raw [--dtype f32|f64] "
                    "[--radius R] [--passes P] [--repeat N] [--slabs S] "
                    "[--isa auto|scalar|avx512] [--reference ref.raw] [--output out.raw]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int nx = 0, ny = 0, nz = 0, radius = 4, passes = 2, repeat = 3, slabs = 1, f64 = 0;
    const char *in = NULL, *ref = NULL, *outp = NULL, *isa = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 3 < argc) {
            nx = atoi(argv[++i]);
            ny = atoi(argv[++i]);
            nz = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) {
            in = argv[++i];
        } else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            f64 = !strcmp(argv[++i], "f64");
        } else if (!strcmp(argv[i], "--radius") && i + 1 < argc) {
            radius = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--passes") && i + 1 < argc) {
            passes = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--slabs") && i + 1 < argc) {
            slabs = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            isa = argv[++i];
        } else if (!strcmp(argv[i], "--reference") && i + 1 < argc) {
            ref = argv[++i];
        } else if (!strcmp(argv[i], "--output") && i + 1 < argc) {
            outp = argv[++i];
        } else {
            usage();
        }
    }
    if (nx <= 0 || ny <= 0 || nz <= 0 || !in || passes < 1 || repeat < 1 || slabs < 1)
        usage();
    if (dmri_median3d_set_isa(isa) != 0) {
        fprintf(stderr, "bench_median: instruction set '%s' unknown or not on this CPU\n", isa);
        return 2;
    }
    const size_t n = (size_t)nx * ny * nz, esz = f64 ? sizeof(double) : sizeof(float);
    char *src = dmri_malloc(n * esz), *a = dmri_malloc(n * esz), *b = dmri_malloc(n * esz);
    if (load(in, src, n * esz) != 0) {
        fprintf(stderr, "bench_median: cannot read %zu bytes from %s\n", n * esz, in);
        return 2;
    }
    void *ws = dmri_malloc(dmri_median3d_workspace_len(radius) * esz);
    double best = 1e300;
    char *res = NULL;
    for (int rep = 0; rep < repeat; rep++) {
        double t0 = cpu_now();
        const char *cur = src;
        char *dst = a;
        for (int p = 0; p < passes; p++) {
            for (int s = 0; s < slabs; s++) {
                int z0 = (int)((long)s * nz / slabs), z1 = (int)((long)(s + 1) * nz / slabs);
                if (f64)
                    dmri_median3d_f64((const double *)cur, nx, ny, nz, radius, z0, z1,
                                      (double *)dst, ws);
                else
                    dmri_median3d_f32((const float *)cur, nx, ny, nz, radius, z0, z1,
                                      (float *)dst, ws);
            }
            cur = dst;
            dst = dst == a ? b : a;
        }
        double t = cpu_now() - t0;
        if (t < best)
            best = t;
        res = (char *)cur;
    }
    printf("isa %s\n", dmri_median3d_isa());
    printf("seconds %.4f\n", best);
    printf("us_per_voxel %.4f\n", 1e6 * best / (double)n);
    if (outp) {
        FILE *f = fopen(outp, "wb");
        if (!f || fwrite(res, 1, n * esz, f) != n * esz || fclose(f) != 0) {
            fprintf(stderr, "bench_median: cannot write %s\n", outp);
            return 2;
        }
    }
    int rc = 0;
    if (ref) {
        char *want = dmri_malloc(n * esz);
        if (load(ref, want, n * esz) != 0) {
            fprintf(stderr, "bench_median: cannot read %zu bytes from %s\n", n * esz, ref);
            return 2;
        }
        size_t differ = 0;
        for (size_t i = 0; i < n; i++)
            differ += memcmp(res + i * esz, want + i * esz, esz) != 0;
        printf("differ %zu\n", differ);
        rc = differ != 0;
        dmri_free(want);
    }
    dmri_free(src);
    dmri_free(a);
    dmri_free(b);
    dmri_free(ws);
    return rc;
}
