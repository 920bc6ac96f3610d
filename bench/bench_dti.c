/* bench_dti: single-thread speed of the tensor fit (log + WLS + eigen +
 * maps) on the mask voxels of one series held as the pipeline holds it
 * (volume after volume, x fastest). Prints the best (minimum) thread CPU
 * time of --repeat runs, so that a busy shared machine inflates the number
 * as little as possible.
 *
 *   bench_dti --bvals F --bvecs F --signal F --nvox N [--mask F]
 *             [--dtype f32|f64] [--mode block|voxel] [--isa auto|scalar|avx512]
 *             [--repeat R]
 *
 * bvals: G raw float64; bvecs: G x 3 raw float64; signal: G x N raw values;
 * mask: N bytes (default: every voxel). --mode block times
 * dmri_dti_fit_block on the whole series (what the pipeline calls per slab);
 * --mode voxel the per-voxel route (dmri_dti_logsig_* + dmri_dti_fit_voxel +
 * dmri_dti_maps). Output lines: "isa NAME", "mode M", "mask_voxels M",
 * "seconds T", "us_per_voxel U". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmri_alloc.h"
#include "dti.h"
#include "gtab.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *load(const char *path, size_t bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_dti: cannot open %s\n", path);
        exit(2);
    }
    void *buf = dmri_malloc(bytes ? bytes : 1);
    size_t got = fread(buf, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != bytes || extra != EOF) {
        fprintf(stderr, "bench_dti: %s: expected exactly %zu bytes\n", path, bytes);
        exit(2);
    }
    return buf;
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_dti --bvals F --bvecs F --signal F --nvox N [--mask F] "
                    "[--dtype f32|f64] [--mode block|voxel] [--isa auto|scalar|avx512] "
                    "[--repeat R]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *bvals_p = NULL, *bvecs_p = NULL, *sig_p = NULL, *mask_p = NULL, *isa = NULL;
    const char *mode = "block";
    int repeat = 3, f64 = 0;
    long nvox = 0;
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--bvals") && more)
            bvals_p = argv[++i];
        else if (!strcmp(argv[i], "--bvecs") && more)
            bvecs_p = argv[++i];
        else if (!strcmp(argv[i], "--signal") && more)
            sig_p = argv[++i];
        else if (!strcmp(argv[i], "--mask") && more)
            mask_p = argv[++i];
        else if (!strcmp(argv[i], "--nvox") && more)
            nvox = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dtype") && more)
            f64 = !strcmp(argv[++i], "f64");
        else if (!strcmp(argv[i], "--mode") && more)
            mode = argv[++i];
        else if (!strcmp(argv[i], "--isa") && more)
            isa = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && more)
            repeat = atoi(argv[++i]);
        else
            usage();
    }
    if (!bvals_p || !bvecs_p || !sig_p || nvox <= 0 || repeat < 1)
        usage();
    int block = !strcmp(mode, "block");
    if (!block && strcmp(mode, "voxel"))
        usage();
    if (dmri_dti_set_isa(isa) != 0) {
        fprintf(stderr, "bench_dti: instruction set '%s' unknown or not on this CPU\n", isa);
        return 2;
    }
    long bsz = file_size(bvals_p);
    if (bsz <= 0 || bsz % 8) {
        fprintf(stderr, "bench_dti: bad bvals file %s\n", bvals_p);
        return 2;
    }
    int G = (int)(bsz / 8);
    size_t N = (size_t)nvox, esz = f64 ? sizeof(double) : sizeof(float);
    double *bvals = load(bvals_p, (size_t)G * 8), *bvecs = load(bvecs_p, (size_t)G * 24);
    char *sig = load(sig_p, (size_t)G * N * esz);
    unsigned char *mask = mask_p ? load(mask_p, N) : NULL;
    size_t nmask = N;
    if (mask) {
        nmask = 0;
        for (size_t i = 0; i < N; i++)
            nmask += mask[i] != 0;
    }
    dmri_err_t err = {0};
    dmri_gtab_t gt;
    dmri_dti_model_t m;
    if (dmri_gtab_init(&gt, bvals, bvecs, G, 10.0, &err) != 0 ||
        dmri_dti_model_init(&m, gt.b_eff, gt.g_eff, G, &err) != 0) {
        fprintf(stderr, "bench_dti: %s\n", err.msg);
        return 2;
    }
    float *maps = dmri_calloc(16 * N, sizeof(float));
    const void **vols = dmri_malloc((size_t)G * sizeof *vols);
    for (int g = 0; g < G; g++)
        vols[g] = sig + (size_t)g * N * esz;
    dmri_dti_out_t o = {.fa = maps, .md = maps + N, .ad = maps + 2 * N, .rd = maps + 3 * N,
                        .color_fa = maps + 4 * N, .evecs_map = maps + 7 * N, .stride = N};
    double *y = dmri_malloc((size_t)G * sizeof(double));
    double *ws = dmri_malloc(dmri_dti_workspace_len(&m) * sizeof(double));
    double best = 1e300;
    for (int rep = 0; rep < repeat; rep++) {
        double t0 = cpu_now();
        if (block) {
            dmri_dti_fit_block(&m, f64 ? DMRI_DTI_IN_F64 : DMRI_DTI_IN_F32,
                               (const void *const *)vols, 1, N, mask, &o);
        } else {
            for (size_t i = 0; i < N; i++) {
                if (mask && !mask[i])
                    continue;
                if (f64)
                    dmri_dti_logsig_f64((const double *)sig + i, N, G, y);
                else
                    dmri_dti_logsig_f32((const float *)sig + i, N, G, y);
                double evals[3], evecs[9], fa, md, ad, rd, cfa[3];
                dmri_dti_fit_voxel(&m, y, ws, evals, evecs);
                dmri_dti_maps(evals, evecs, &fa, &md, &ad, &rd, cfa);
                maps[i] = (float)fa;
                maps[N + i] = (float)md;
                maps[2 * N + i] = (float)ad;
                maps[3 * N + i] = (float)rd;
                for (int c = 0; c < 3; c++)
                    maps[(4 + c) * N + i] = (float)cfa[c];
                for (int c = 0; c < 9; c++)
                    maps[(7 + c) * N + i] = (float)evecs[(c % 3) * 3 + c / 3];
            }
        }
        double t = cpu_now() - t0;
        if (t < best)
            best = t;
    }
    printf("isa %s\n", block ? dmri_dti_isa() : "voxel");
    printf("mode %s\n", mode);
    printf("mask_voxels %zu\n", nmask);
    printf("seconds %.4f\n", best);
    printf("us_per_voxel %.4f\n", 1e6 * best / (double)(nmask ? nmask : 1));
    dmri_free(bvals);
    dmri_free(bvecs);
    dmri_free(sig);
    dmri_free(mask);
    dmri_free(maps);
    dmri_free(vols);
    dmri_free(y);
    dmri_free(ws);
    dmri_dti_model_close(&m);
    dmri_gtab_close(&gt);
    return 0;
}
