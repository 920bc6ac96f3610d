/* harness_image: command-line access to common/image and common/fsl_gradients
 * for tests/parity/test_image_io.py, which compares the results with nibabel
 * and dipy.
 *
 *   harness_image read IN OUT.raw
 *       read a NIfTI image; print one JSON line (shape, datatype, scaled,
 *       store, geometry) and dump the data as raw f32/f64 (x fastest).
 *   harness_image copy IN OUT DATATYPE
 *       read IN, cast its values to DATATYPE (NIfTI code) and write OUT with
 *       IN's geometry.
 *   harness_image write GEOM OUT DATATYPE RAW d1 d2 d3 [d4 [d5]]
 *       write RAW (values already of DATATYPE, x fastest) as OUT with GEOM's
 *       geometry.
 *   harness_image bvals FILE | bvecs FILE
 *       print {"ok": true, "n": N, "values": [...], "bits": [hex, ...]}
 *       (bvecs: N x 3, row-major; "bits" are the IEEE doubles in hex).
 *
 * Errors print {"ok": false, "code": C, "error": "..."} and exit 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nifti2_io.h>

#include "dmri_alloc.h"
#include "fsl_gradients.h"
#include "image.h"

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int fail(const dmri_err_t *err) {
    printf("{\"ok\": false, \"code\": %d, \"error\": ", err->code);
    print_json_string(err->msg);
    printf("}\n");
    return 1;
}

/* JSON numbers, with Python's json extensions for non-finite values. */
static void print_double(double v) {
    if (isnan(v))
        printf("NaN");
    else if (isinf(v))
        printf(v > 0 ? "Infinity" : "-Infinity");
    else
        printf("%.17g", v);
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    int bad = fclose(f) != 0;
    return (w != len || bad) ? -1 : 0;
}

static int cmd_read(const char *in, const char *out) {
    dmri_image_t img;
    dmri_err_t err = {0};
    if (dmri_image_read(in, &img, &err) != 0)
        return fail(&err);
    size_t n = dmri_image_nvox(&img) * (size_t)img.nv;
    size_t sz = img.store == DMRI_STORE_F32 ? 4 : 8;
    if (write_file(out, img.data, n * sz) != 0) {
        fprintf(stderr, "cannot write %s\n", out);
        dmri_image_close(&img);
        return 2;
    }
    printf("{\"ok\": true, \"ndim\": %d, \"shape\": [%d, %d, %d, %d], \"datatype\": %d, "
           "\"scaled\": %d, \"store\": \"%s\", \"f32_semantics\": %d, \"integer\": %d, "
           "\"qform_code\": %d, \"sform_code\": %d, \"xyz_units\": %d, \"time_units\": %d, "
           "\"qfac\": ",
           img.ndim, img.nx, img.ny, img.nz, img.nv, img.datatype, img.scaled,
           img.store == DMRI_STORE_F32 ? "f32" : "f64", dmri_image_is_f32_semantics(&img),
           dmri_image_is_integer(&img), img.qform_code, img.sform_code, img.xyz_units,
           img.time_units);
    print_double(img.qfac);
    printf(", \"pixdim\": [");
    for (int i = 0; i < 4; i++) {
        print_double(img.pixdim[i]);
        printf(i < 3 ? ", " : "]");
    }
    printf(", \"quatern\": [");
    for (int i = 0; i < 6; i++) {
        print_double(img.quatern[i]);
        printf(i < 5 ? ", " : "]");
    }
    printf(", \"srow\": [");
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            print_double(img.srow[r][c]);
            printf(r * 4 + c < 11 ? ", " : "]");
        }
    printf("}\n");
    dmri_image_close(&img);
    return 0;
}

#define CAST_TO(T)                                                     \
    do {                                                               \
        T *d = (T *)dst;                                               \
        for (size_t i = 0; i < n; i++)                                 \
            d[i] = (T)(img->store == DMRI_STORE_F32                    \
                           ? (double)((const float *)img->data)[i]     \
                           : ((const double *)img->data)[i]);          \
    } while (0)

static void cast_values(const dmri_image_t *img, int dt, size_t n, void *dst) {
    switch (dt) {
    case DT_UINT8: CAST_TO(uint8_t); break;
    case DT_INT8: CAST_TO(int8_t); break;
    case DT_INT16: CAST_TO(int16_t); break;
    case DT_UINT16: CAST_TO(uint16_t); break;
    case DT_INT32: CAST_TO(int32_t); break;
    case DT_UINT32: CAST_TO(uint32_t); break;
    case DT_FLOAT32: CAST_TO(float); break;
    case DT_FLOAT64: CAST_TO(double); break;
    default: break;
    }
}

static int cmd_copy(const char *in, const char *out, int dt) {
    dmri_image_t img;
    dmri_err_t err = {0};
    if (dmri_image_read(in, &img, &err) != 0)
        return fail(&err);
    size_t n = dmri_image_nvox(&img) * (size_t)img.nv;
    size_t bpv = dmri_image_datatype_size(dt);
    if (bpv == 0) {
        fprintf(stderr, "bad datatype %d\n", dt);
        dmri_image_close(&img);
        return 2;
    }
    void *buf = dmri_malloc(n * bpv);
    cast_values(&img, dt, n, buf);
    int dims[4] = {img.nx, img.ny, img.nz, img.nv};
    int rc = dmri_image_write(out, &img, img.ndim, dims, dt, buf, &err);
    dmri_free(buf);
    dmri_image_close(&img);
    if (rc != 0)
        return fail(&err);
    printf("{\"ok\": true}\n");
    return 0;
}

static int cmd_write(int argc, char **argv) {
    /* GEOM OUT DATATYPE RAW d1 d2 d3 [d4 [d5]] */
    const char *geom_path = argv[0], *out = argv[1], *raw = argv[3];
    int dt = atoi(argv[2]);
    int ndim = argc - 4;
    int dims[5];
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = atoi(argv[4 + i]);
        n *= (size_t)(dims[i] > 0 ? dims[i] : 1);
    }
    dmri_image_t geom;
    dmri_err_t err = {0};
    if (dmri_image_read(geom_path, &geom, &err) != 0)
        return fail(&err);
    size_t bpv = dmri_image_datatype_size(dt);
    void *buf = dmri_malloc(n * (bpv ? bpv : 1));
    FILE *f = fopen(raw, "rb");
    size_t got = f ? fread(buf, 1, n * bpv, f) : 0;
    if (f)
        fclose(f);
    if (got != n * bpv) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", n * bpv, raw);
        dmri_free(buf);
        dmri_image_close(&geom);
        return 2;
    }
    int rc = dmri_image_write(out, &geom, ndim, dims, dt, buf, &err);
    dmri_free(buf);
    dmri_image_close(&geom);
    if (rc != 0)
        return fail(&err);
    printf("{\"ok\": true}\n");
    return 0;
}

static int cmd_gradients(const char *what, const char *path) {
    dmri_err_t err = {0};
    double *v = NULL;
    int n = 0, per = 1, rc;
    if (strcmp(what, "bvals") == 0) {
        rc = dmri_read_bvals(path, &v, &n, &err);
    } else {
        rc = dmri_read_bvecs(path, &v, &n, &err);
        per = 3;
    }
    if (rc != 0)
        return fail(&err);
    printf("{\"ok\": true, \"n\": %d, \"values\": [", n);
    for (int i = 0; i < n * per; i++) {
        print_double(v[i]);
        if (i + 1 < n * per)
            printf(", ");
    }
    /* The exact bits too: JSON loses -0.0 and the sign of a NaN. */
    printf("], \"bits\": [");
    for (int i = 0; i < n * per; i++) {
        uint64_t b;
        memcpy(&b, &v[i], sizeof b);
        printf("\"%016llx\"%s", (unsigned long long)b, i + 1 < n * per ? ", " : "");
    }
    printf("]}\n");
    dmri_free(v);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "read") == 0)
        return cmd_read(argv[2], argv[3]);
    if (argc == 5 && strcmp(argv[1], "copy") == 0)
        return cmd_copy(argv[2], argv[3], atoi(argv[4]));
    if (argc >= 9 && argc <= 11 && strcmp(argv[1], "write") == 0)
        return cmd_write(argc - 2, argv + 2);
    if (argc == 3 && (strcmp(argv[1], "bvals") == 0 || strcmp(argv[1], "bvecs") == 0))
        return cmd_gradients(argv[1], argv[2]);
    fprintf(stderr,
            "usage: harness_image read IN OUT.raw | copy IN OUT DATATYPE |\n"
            "       write GEOM OUT DATATYPE RAW d1 d2 d3 [d4 [d5]] | bvals FILE | bvecs FILE\n");
    return 2;
}
