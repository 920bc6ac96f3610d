/* harness_dti: runs the gradient table and the tensor fit for the dipy
 * parity script (tests/parity/test_dti.py).
 *
 *   harness_dti --bvals F --bvecs F [--text] [--b0-threshold T]
 *               [--signal F --dtype f32|f64 --nvox N [--write-log]] [--repeat R]
 *               --out DIR
 *
 * Without --text, bvals is N raw float64 values and bvecs N x 3 raw float64
 * (one direction per row); with --text both are FSL text read by
 * common/fsl_gradients (3 x N or N x 3, as dipy reads them). The signal is
 * nvox x N raw values, one voxel's N volumes contiguous. DIR receives raw
 * files: b0s_mask.u8, b_eff.f64, g_eff.f64, X.f64, min_eval.f64 and, with a
 * signal, evals.f64 (nvox x 3), evecs.f64 (nvox x 9, [c * 3 + j]), fa.f64,
 * md.f64, ad.f64, rd.f64, color_fa.f64 (nvox x 3), and with --write-log
 * logsig.f64 (nvox x N, the log signal the fit used). A gradient-table error
 * prints "error: <message>" on stderr and exits 3. The last stdout line is
 * "fit_us_per_voxel U" (best of --repeat runs of log + fit + maps). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmri_alloc.h"
#include "dti.h"
#include "fsl_gradients.h"
#include "gtab.h"

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "harness_dti: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
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
    void *buf = dmri_malloc((size_t)len);
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

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *bvals_path = NULL, *bvecs_path = NULL, *sig_path = NULL, *out = NULL;
    const char *dtype = "f64";
    int text = 0, repeat = 1, write_log = 0;
    long nvox = 0;
    double thr = 10.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--bvals") && more)
            bvals_path = argv[++i];
        else if (!strcmp(a, "--bvecs") && more)
            bvecs_path = argv[++i];
        else if (!strcmp(a, "--text"))
            text = 1;
        else if (!strcmp(a, "--write-log"))
            write_log = 1;
        else if (!strcmp(a, "--b0-threshold") && more)
            thr = strtod(argv[++i], NULL);
        else if (!strcmp(a, "--signal") && more)
            sig_path = argv[++i];
        else if (!strcmp(a, "--dtype") && more)
            dtype = argv[++i];
        else if (!strcmp(a, "--nvox") && more)
            nvox = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--repeat") && more)
            repeat = atoi(argv[++i]);
        else if (!strcmp(a, "--out") && more)
            out = argv[++i];
        else
            die("unknown or incomplete argument", a);
    }
    if (!bvals_path || !bvecs_path || !out)
        die("need --bvals, --bvecs and --out", NULL);
    int is_f32 = !strcmp(dtype, "f32");
    if (!is_f32 && strcmp(dtype, "f64"))
        die("--dtype must be f32 or f64", dtype);

    double *bvals, *bvecs;
    int n;
    if (text) {
        /* The project's FSL reader (common/fsl_gradients), as the pipeline uses. */
        dmri_err_t rerr = {0};
        int nv;
        if (dmri_read_bvals(bvals_path, &bvals, &n, &rerr) != 0 ||
            dmri_read_bvecs(bvecs_path, &bvecs, &nv, &rerr) != 0) {
            fprintf(stderr, "error: %s\n", rerr.msg);
            return 3;
        }
        if (nv != n)
            die("bvals and bvecs differ in length", bvecs_path);
    } else {
        size_t nb, ng;
        bvals = read_raw(bvals_path, sizeof(double), &nb);
        bvecs = read_raw(bvecs_path, sizeof(double), &ng);
        if (ng != 3 * nb)
            die("bvecs must hold 3 values per b-value", bvecs_path);
        n = (int)nb;
    }

    dmri_err_t err = {0};
    dmri_gtab_t gt;
    int rc = dmri_gtab_init(&gt, bvals, bvecs, n, thr, &err);
    dmri_free(bvals);
    dmri_free(bvecs);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 3;
    }
    dmri_dti_model_t m;
    if (dmri_dti_model_init(&m, gt.b_eff, gt.g_eff, n, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        dmri_gtab_close(&gt);
        return 3;
    }
    size_t G = (size_t)n;
    write_raw(out, "b0s_mask.u8", gt.b0s_mask, G);
    write_raw(out, "b_eff.f64", gt.b_eff, G * sizeof(double));
    write_raw(out, "g_eff.f64", gt.g_eff, 3 * G * sizeof(double));
    write_raw(out, "X.f64", m.X, 7 * G * sizeof(double));
    write_raw(out, "min_eval.f64", &m.min_eval, sizeof(double));

    if (sig_path) {
        size_t count;
        void *sig = read_raw(sig_path, is_f32 ? sizeof(float) : sizeof(double), &count);
        if (nvox <= 0 || count != (size_t)nvox * G)
            die("signal size is not nvox x N", sig_path);
        size_t V = (size_t)nvox;
        double *evals = dmri_malloc(V * 3 * sizeof(double));
        double *evecs = dmri_malloc(V * 9 * sizeof(double));
        double *fa = dmri_malloc(V * sizeof(double));
        double *md = dmri_malloc(V * sizeof(double));
        double *ad = dmri_malloc(V * sizeof(double));
        double *rd = dmri_malloc(V * sizeof(double));
        double *cfa = dmri_malloc(V * 3 * sizeof(double));
        double *ws = dmri_malloc(dmri_dti_workspace_len(&m) * sizeof(double));
        double *y = dmri_malloc(G * sizeof(double));
        double best = 1e300;
        for (int rep = 0; rep < (repeat > 0 ? repeat : 1); rep++) {
            double t0 = now();
            for (size_t v = 0; v < V; v++) {
                if (is_f32)
                    dmri_dti_logsig_f32((const float *)sig + v * G, 1, n, y);
                else
                    dmri_dti_logsig_f64((const double *)sig + v * G, 1, n, y);
                dmri_dti_fit_voxel(&m, y, ws, evals + v * 3, evecs + v * 9);
                dmri_dti_maps(evals + v * 3, evecs + v * 9, fa + v, md + v, ad + v, rd + v,
                              cfa + v * 3);
            }
            double t = now() - t0;
            if (t < best)
                best = t;
        }
        if (write_log) {
            double *ys = dmri_malloc(V * G * sizeof(double));
            for (size_t v = 0; v < V; v++) {
                if (is_f32)
                    dmri_dti_logsig_f32((const float *)sig + v * G, 1, n, ys + v * G);
                else
                    dmri_dti_logsig_f64((const double *)sig + v * G, 1, n, ys + v * G);
            }
            write_raw(out, "logsig.f64", ys, V * G * sizeof(double));
            dmri_free(ys);
        }
        write_raw(out, "evals.f64", evals, V * 3 * sizeof(double));
        write_raw(out, "evecs.f64", evecs, V * 9 * sizeof(double));
        write_raw(out, "fa.f64", fa, V * sizeof(double));
        write_raw(out, "md.f64", md, V * sizeof(double));
        write_raw(out, "ad.f64", ad, V * sizeof(double));
        write_raw(out, "rd.f64", rd, V * sizeof(double));
        write_raw(out, "color_fa.f64", cfa, V * 3 * sizeof(double));
        printf("fit_us_per_voxel %.4f\n", 1e6 * best / (double)V);
        dmri_free(sig);
        dmri_free(evals);
        dmri_free(evecs);
        dmri_free(fa);
        dmri_free(md);
        dmri_free(ad);
        dmri_free(rd);
        dmri_free(cfa);
        dmri_free(ws);
        dmri_free(y);
    }
    dmri_dti_model_close(&m);
    dmri_gtab_close(&gt);
    return 0;
}
