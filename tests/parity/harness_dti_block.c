/* harness_dti_block: runs dmri_dti_fit_block (the batched tensor fit) for
 * the dipy parity script tests/parity/test_dti.py.
 *
 *   harness_dti_block --bvals F --bvecs F --signal F --nvox N
 *                     [--dtype f32|f64|f32as64] [--layout voxel|volume]
 *                     [--mask F] [--isa auto|scalar|avx512] [--repeat R]
 *                     --out DIR
 *
 * bvals: N raw float64, bvecs: N x 3 raw float64. The signal is raw float32
 * (f32, f32as64: integer data held as float32, logged in float64) or
 * float64: nvox x N (layout voxel: one voxel's volumes contiguous) or N x
 * nvox (layout volume: as the pipeline holds it). mask: nvox bytes. DIR
 * receives evals.f64 (nvox x 3), evecs.f64 (nvox x 9, [c * 3 + j]), fa.f64,
 * md.f64, ad.f64, rd.f64, color_fa.f64 (nvox x 3, dmri_dti_maps of the double
 * results) and the float32 maps the block wrote: fa.f32, md.f32, ad.f32,
 * rd.f32, color_fa.f32 (3 x nvox) and evecs_map.f32 (9 x nvox, (c + 3 j)).
 * The last stdout line is "fit_us_per_voxel U" (best of --repeat, log +
 * fit + maps, per voxel of the mask). Exit 2 on usage or I/O errors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmri_alloc.h"
#include "dti.h"
#include "gtab.h"

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "harness_dti_block: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

static void *read_raw(const char *path, size_t elem, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0)
        die("cannot seek", path);
    long len = ftell(f);
    rewind(f);
    if (len < 0 || (size_t)len % elem != 0)
        die("size is not a multiple of the element size", path);
    void *buf = dmri_malloc((size_t)len + 1);
    if (fread(buf, 1, (size_t)len, f) != (size_t)len)
        die("short read", path);
    fclose(f);
    *count = (size_t)len / elem;
    return buf;
}

static void write_raw(const char *dir, const char *name, const void *buf, size_t bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot create", path);
    if (fwrite(buf, 1, bytes, f) != bytes || fclose(f) != 0)
        die("cannot write", path);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *bvals_path = NULL, *bvecs_path = NULL, *sig_path = NULL, *out = NULL;
    const char *dtype = "f32", *layout = "voxel", *mask_path = NULL, *isa = NULL;
    int repeat = 1;
    long nvox = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--bvals") && more)
            bvals_path = argv[++i];
        else if (!strcmp(a, "--bvecs") && more)
            bvecs_path = argv[++i];
        else if (!strcmp(a, "--signal") && more)
            sig_path = argv[++i];
        else if (!strcmp(a, "--dtype") && more)
            dtype = argv[++i];
        else if (!strcmp(a, "--layout") && more)
            layout = argv[++i];
        else if (!strcmp(a, "--mask") && more)
            mask_path = argv[++i];
        else if (!strcmp(a, "--isa") && more)
            isa = argv[++i];
        else if (!strcmp(a, "--nvox") && more)
            nvox = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--repeat") && more)
            repeat = atoi(argv[++i]);
        else if (!strcmp(a, "--out") && more)
            out = argv[++i];
        else
            die("unknown or incomplete argument", a);
    }
    if (!bvals_path || !bvecs_path || !sig_path || !out || nvox <= 0)
        die("need --bvals, --bvecs, --signal, --nvox and --out", NULL);
    dmri_dti_input_t kind;
    if (!strcmp(dtype, "f32"))
        kind = DMRI_DTI_IN_F32;
    else if (!strcmp(dtype, "f32as64"))
        kind = DMRI_DTI_IN_F32_AS_F64;
    else if (!strcmp(dtype, "f64"))
        kind = DMRI_DTI_IN_F64;
    else
        die("--dtype must be f32, f32as64 or f64", dtype);
    int by_volume = !strcmp(layout, "volume");
    if (!by_volume && strcmp(layout, "voxel"))
        die("--layout must be voxel or volume", layout);
    if (dmri_dti_set_isa(isa) != 0)
        die("instruction set unknown or not on this CPU", isa);

    size_t nb, ng;
    double *bvals = read_raw(bvals_path, sizeof(double), &nb);
    double *bvecs = read_raw(bvecs_path, sizeof(double), &ng);
    if (ng != 3 * nb)
        die("bvecs must hold 3 values per b-value", bvecs_path);
    int n = (int)nb;
    dmri_err_t err = {0};
    dmri_gtab_t gt;
    dmri_dti_model_t m;
    if (dmri_gtab_init(&gt, bvals, bvecs, n, 10.0, &err) != 0 ||
        dmri_dti_model_init(&m, gt.b_eff, gt.g_eff, n, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 3;
    }
    dmri_free(bvals);
    dmri_free(bvecs);

    size_t V = (size_t)nvox, G = (size_t)n, count;
    size_t esz = kind == DMRI_DTI_IN_F64 ? sizeof(double) : sizeof(float);
    char *sig = read_raw(sig_path, esz, &count);
    if (count != V * G)
        die("signal size is not nvox x N", sig_path);
    unsigned char *mask = NULL;
    size_t nmask = V;
    if (mask_path) {
        size_t mc;
        mask = read_raw(mask_path, 1, &mc);
        if (mc != V)
            die("mask size is not nvox", mask_path);
        nmask = 0;
        for (size_t v = 0; v < V; v++)
            nmask += mask[v] != 0;
    }
    const void **vols = dmri_malloc(G * sizeof *vols);
    for (size_t g = 0; g < G; g++)
        vols[g] = sig + (by_volume ? g * V : g) * esz;
    size_t vstride = by_volume ? 1 : G;

    double *evals = dmri_malloc(V * 3 * sizeof(double));
    double *evecs = dmri_malloc(V * 9 * sizeof(double));
    float *maps = dmri_malloc(V * 16 * sizeof(float));
    /* Poison, so that a voxel the block forgets to write shows up. */
    for (size_t i = 0; i < V * 3; i++)
        evals[i] = -12345.0;
    for (size_t i = 0; i < V * 16; i++)
        maps[i] = -12345.0f;
    dmri_dti_out_t o = {.evals = evals, .evecs = evecs, .fa = maps, .md = maps + V,
                        .ad = maps + 2 * V, .rd = maps + 3 * V, .color_fa = maps + 4 * V,
                        .evecs_map = maps + 7 * V, .stride = V};
    double best = 1e300;
    for (int rep = 0; rep < (repeat > 0 ? repeat : 1); rep++) {
        double t0 = cpu_now();
        dmri_dti_fit_block(&m, kind, (const void *const *)vols, vstride, V, mask, &o);
        double t = cpu_now() - t0;
        if (t < best)
            best = t;
    }
    double *fa = dmri_malloc(V * 4 * sizeof(double)), *cfa = dmri_malloc(V * 3 * sizeof(double));
    for (size_t v = 0; v < V; v++)
        dmri_dti_maps(evals + v * 3, evecs + v * 9, fa + v, fa + V + v, fa + 2 * V + v,
                      fa + 3 * V + v, cfa + v * 3);
    write_raw(out, "evals.f64", evals, V * 3 * sizeof(double));
    write_raw(out, "evecs.f64", evecs, V * 9 * sizeof(double));
    write_raw(out, "fa.f64", fa, V * sizeof(double));
    write_raw(out, "md.f64", fa + V, V * sizeof(double));
    write_raw(out, "ad.f64", fa + 2 * V, V * sizeof(double));
    write_raw(out, "rd.f64", fa + 3 * V, V * sizeof(double));
    write_raw(out, "color_fa.f64", cfa, V * 3 * sizeof(double));
    write_raw(out, "fa.f32", maps, V * sizeof(float));
    write_raw(out, "md.f32", maps + V, V * sizeof(float));
    write_raw(out, "ad.f32", maps + 2 * V, V * sizeof(float));
    write_raw(out, "rd.f32", maps + 3 * V, V * sizeof(float));
    write_raw(out, "color_fa.f32", maps + 4 * V, 3 * V * sizeof(float));
    write_raw(out, "evecs_map.f32", maps + 7 * V, 9 * V * sizeof(float));
    printf("isa %s\n", dmri_dti_isa());
    printf("fit_us_per_voxel %.4f\n", 1e6 * best / (double)(nmask ? nmask : 1));
    dmri_free(sig);
    dmri_free(mask);
    dmri_free(vols);
    dmri_free(evals);
    dmri_free(evecs);
    dmri_free(maps);
    dmri_free(fa);
    dmri_free(cfa);
    dmri_dti_model_close(&m);
    dmri_gtab_close(&gt);
    return 0;
}
