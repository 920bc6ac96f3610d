/* harness_mask: command-line driver of the mask and noise kernels (mean b0,
 * median, Otsu, median_otsu, sigma) for tests/parity/test_mask_kernels.py.
 * Arrays travel as raw little-endian files, x fastest, volumes last.
 *
 *   harness_mask meanb0 f32|f32to64|f64 NVOX NVOL B0LIST IN OUT
 *       B0LIST: comma-separated volume indices; OUT in f32 (f32) or f64.
 *   harness_mask median f32|f64 NX NY NZ RADIUS NSLAB IN OUT
 *       one pass; the z range is filtered in NSLAB separate calls.
 *   harness_mask otsu f32|f64 N IN OUT        OUT: the threshold (1 value)
 *   harness_mask medotsu f32|f64 NX NY NZ IN MASK THR FILTERED
 *       median_otsu(radius 4, 2 passes, dilate 1): MASK uint8 0/1, THR one
 *       value, FILTERED the twice-filtered volume.
 *   harness_mask sigma f32|f64 NX NY NZ NVOL IN OUT    OUT: NVOL f32 values
 *
 * Exit status 0 on success, 2 when a kernel reports an error (message on
 * stderr), 1 on usage or I/O errors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"
#include "dmri_err.h"
#include "mask.h"
#include "meanb0.h"
#include "median.h"
#include "otsu.h"
#include "sigma.h"

static void *read_raw(const char *path, size_t bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "harness_mask: cannot open %s\n", path);
        exit(1);
    }
    void *p = dmri_malloc(bytes ? bytes : 1);
    size_t got = fread(p, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != bytes || extra != EOF) {
        fprintf(stderr, "harness_mask: %s: expected exactly %zu bytes\n", path, bytes);
        exit(1);
    }
    return p;
}

static void write_raw(const char *path, const void *p, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        fprintf(stderr, "harness_mask: cannot write %s\n", path);
        exit(1);
    }
}

static long arg_long(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "harness_mask: bad number '%s'\n", s);
        exit(1);
    }
    return v;
}

static int is_f32(const char *t) {
    if (strcmp(t, "f32") == 0)
        return 1;
    if (strcmp(t, "f64") == 0)
        return 0;
    fprintf(stderr, "harness_mask: type must be f32 or f64, got '%s'\n", t);
    exit(1);
}

static int cmd_meanb0(char **a) {
    size_t nvox = (size_t)arg_long(a[1]);
    size_t nvol = (size_t)arg_long(a[2]);
    int idx[4096], nb0 = 0;
    for (char *tok = strtok(a[3], ","); tok && nb0 < 4096; tok = strtok(NULL, ","))
        idx[nb0++] = (int)arg_long(tok);
    if (strcmp(a[0], "f64") == 0) {
        double *in = read_raw(a[4], nvox * nvol * 8), *out = dmri_malloc(nvox * 8);
        dmri_meanb0_f64(in, nvox, idx, nb0, out);
        write_raw(a[5], out, nvox * 8);
        dmri_free(in);
        dmri_free(out);
    } else if (strcmp(a[0], "f32to64") == 0) {
        float *in = read_raw(a[4], nvox * nvol * 4);
        double *out = dmri_malloc(nvox * 8);
        dmri_meanb0_f32_to_f64(in, nvox, idx, nb0, out);
        write_raw(a[5], out, nvox * 8);
        dmri_free(in);
        dmri_free(out);
    } else if (is_f32(a[0])) {
        float *in = read_raw(a[4], nvox * nvol * 4), *out = dmri_malloc(nvox * 4);
        dmri_meanb0_f32(in, nvox, idx, nb0, out);
        write_raw(a[5], out, nvox * 4);
        dmri_free(in);
        dmri_free(out);
    }
    return 0;
}

/* Filter in nslab z ranges, each with its own workspace, as the pipeline's
 * parallel tasks do. */
static void median_pass(int f32, const void *in, int nx, int ny, int nz, int r, int nslab,
                        void *out) {
    size_t wl = dmri_median3d_workspace_len(r);
    for (int s = 0; s < nslab; s++) {
        int z0 = (int)((long)s * nz / nslab), z1 = (int)((long)(s + 1) * nz / nslab);
        if (f32) {
            float *ws = dmri_malloc(wl * sizeof(float));
            dmri_median3d_f32(in, nx, ny, nz, r, z0, z1, out, ws);
            dmri_free(ws);
        } else {
            double *ws = dmri_malloc(wl * sizeof(double));
            dmri_median3d_f64(in, nx, ny, nz, r, z0, z1, out, ws);
            dmri_free(ws);
        }
    }
}

static int cmd_median(char **a) {
    int f32 = is_f32(a[0]);
    int nx = (int)arg_long(a[1]), ny = (int)arg_long(a[2]), nz = (int)arg_long(a[3]);
    int r = (int)arg_long(a[4]), nslab = (int)arg_long(a[5]);
    size_t n = (size_t)nx * ny * nz, esz = f32 ? 4 : 8;
    void *in = read_raw(a[6], n * esz), *out = dmri_malloc(n * esz);
    median_pass(f32, in, nx, ny, nz, r, nslab ? nslab : 1, out);
    write_raw(a[7], out, n * esz);
    dmri_free(in);
    dmri_free(out);
    return 0;
}

static int cmd_otsu(char **a) {
    int f32 = is_f32(a[0]);
    size_t n = (size_t)arg_long(a[1]);
    dmri_err_t err = {0};
    int rc;
    if (f32) {
        float *v = read_raw(a[2], n * 4), t = 0;
        rc = dmri_otsu_threshold_f32(v, n, &t, &err);
        if (rc == 0)
            write_raw(a[3], &t, 4);
        dmri_free(v);
    } else {
        double *v = read_raw(a[2], n * 8), t = 0;
        rc = dmri_otsu_threshold_f64(v, n, &t, &err);
        if (rc == 0)
            write_raw(a[3], &t, 8);
        dmri_free(v);
    }
    if (rc != 0) {
        fprintf(stderr, "harness_mask: otsu failed (%d, %s): %s\n", rc, dmri_strerror(rc),
                err.msg);
        return 2;
    }
    return 0;
}

static int cmd_medotsu(char **a) {
    int f32 = is_f32(a[0]);
    int nx = (int)arg_long(a[1]), ny = (int)arg_long(a[2]), nz = (int)arg_long(a[3]);
    size_t n = (size_t)nx * ny * nz, esz = f32 ? 4 : 8;
    void *in = read_raw(a[4], n * esz), *tmp = dmri_malloc(n * esz), *med = dmri_malloc(n * esz);
    median_pass(f32, in, nx, ny, nz, 4, 1, tmp);
    median_pass(f32, tmp, nx, ny, nz, 4, 1, med);
    uint8_t *m0 = dmri_malloc(n ? n : 1), *m = dmri_malloc(n ? n : 1);
    dmri_err_t err = {0};
    int rc;
    if (f32) {
        float t = 0;
        rc = dmri_otsu_threshold_f32(med, n, &t, &err);
        if (rc == 0) {
            dmri_mask_threshold_f32(med, n, t, m0);
            write_raw(a[6], &t, 4);
        }
    } else {
        double t = 0;
        rc = dmri_otsu_threshold_f64(med, n, &t, &err);
        if (rc == 0) {
            dmri_mask_threshold_f64(med, n, t, m0);
            write_raw(a[6], &t, 8);
        }
    }
    if (rc == 0) {
        dmri_mask_dilate_cross(m0, nx, ny, nz, m);
        write_raw(a[5], m, n);
        write_raw(a[7], med, n * esz);
    } else {
        fprintf(stderr, "harness_mask: otsu failed (%d, %s): %s\n", rc, dmri_strerror(rc),
                err.msg);
    }
    dmri_free(in);
    dmri_free(tmp);
    dmri_free(med);
    dmri_free(m0);
    dmri_free(m);
    return rc == 0 ? 0 : 2;
}

static int cmd_sigma(char **a) {
    int f32 = is_f32(a[0]);
    int nx = (int)arg_long(a[1]), ny = (int)arg_long(a[2]), nz = (int)arg_long(a[3]);
    size_t nvol = (size_t)arg_long(a[4]);
    size_t n = (size_t)nx * ny * nz, esz = f32 ? 4 : 8;
    void *in = read_raw(a[5], n * nvol * esz);
    float *out = dmri_malloc(nvol * 4 + 1);
    for (size_t v = 0; v < nvol; v++)
        out[v] = f32 ? dmri_sigma_volume_f32((const float *)in + v * n, nx, ny, nz)
                     : dmri_sigma_volume_f64((const double *)in + v * n, nx, ny, nz);
    write_raw(a[6], out, nvol * 4);
    dmri_free(in);
    dmri_free(out);
    return 0;
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int nargs;
        int (*fn)(char **);
    } cmds[] = {{"meanb0", 6, cmd_meanb0}, {"median", 8, cmd_median}, {"otsu", 4, cmd_otsu},
                {"medotsu", 8, cmd_medotsu}, {"sigma", 7, cmd_sigma}};
    for (size_t i = 0; argc >= 2 && i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) {
            if (argc - 2 != cmds[i].nargs) {
                fprintf(stderr, "harness_mask %s: expected %d arguments\n", cmds[i].name,
                        cmds[i].nargs);
                return 1;
            }
            return cmds[i].fn(argv + 2);
        }
    fprintf(stderr, "usage: harness_mask meanb0|median|otsu|medotsu|sigma ... (see source)\n");
    return 1;
}
