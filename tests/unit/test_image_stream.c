/* test_image_stream: dmri_image_read_fd (a .nii.gz on a pipe, as data
 * arrives from S3) must give exactly what dmri_image_read gives on the same
 * file, on both inflaters, and refuse a cut or damaged stream. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti1.h>

#include "dmri_alloc.h"
#include "image.h"

static int failures = 0;
#define CHECK(c, ...)                                                   \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #c); \
            fprintf(stderr, __VA_ARGS__);                               \
            fprintf(stderr, "\n");                                      \
            failures++;                                                 \
        }                                                               \
    } while (0)

typedef struct {
    int fd;
    unsigned char *buf;
    size_t len;
} feeder_t;

/* Writes the bytes into the pipe in odd-sized pieces, then closes it. */
static void *feed(void *arg) {
    feeder_t *f = arg;
    size_t off = 0, piece = 777;
    while (off < f->len) {
        size_t m = f->len - off < piece ? f->len - off : piece;
        ssize_t w = write(f->fd, f->buf + off, m);
        if (w <= 0)
            break;
        off += (size_t)w;
        piece = piece * 3 % 70001 + 1;
    }
    close(f->fd);
    return NULL;
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

/* Read `bytes` through a pipe. */
static int read_pipe(const unsigned char *bytes, size_t len, dmri_image_t *img, dmri_err_t *err) {
    int p[2];
    if (pipe(p) != 0)
        return -1;
    feeder_t f = {p[1], (unsigned char *)bytes, len};
    pthread_t t;
    pthread_create(&t, NULL, feed, &f);
    int rc = dmri_image_read_fd("stream.nii.gz", p[0], img, err);
    /* Drain so the feeder never blocks on an early failure. */
    char sink[4096];
    while (read(p[0], sink, sizeof sink) > 0)
        ;
    pthread_join(t, NULL);
    close(p[0]);
    return rc;
}

static void one_case(const char *dir, int datatype, int nv, double slope) {
    char path[512];
    snprintf(path, sizeof path, "%s/img_%d_%d.nii.gz", dir, datatype, nv);
    const int dims[4] = {7, 6, 5, nv};
    size_t n = (size_t)7 * 6 * 5 * nv, bpv = dmri_image_datatype_size(datatype);
    unsigned char *data = malloc(n * bpv);
    for (size_t i = 0; i < n; i++) {
        double v = (double)((i * 2654435761u) % 1000) - 300.0;
        if (datatype == DT_FLOAT32) {
            float x = (float)(v * 0.37);
            memcpy(data + i * 4, &x, 4);
        } else {
            short x = (short)v;
            memcpy(data + i * 2, &x, 2);
        }
    }
    dmri_image_t geom;
    memset(&geom, 0, sizeof geom);
    geom.pixdim[0] = geom.pixdim[1] = geom.pixdim[2] = 1.25;
    geom.qform_code = 1;
    geom.qfac = 1;
    dmri_err_t err;
    int rc = dmri_image_write(path, &geom, 4, dims, datatype, data, &err);
    CHECK(rc == 0, "write %s: %s", path, err.msg);
    (void)slope;

    dmri_image_t a, b;
    rc = dmri_image_read(path, &a, &err);
    CHECK(rc == 0, "read %s: %s", path, err.msg);
    size_t len = 0;
    unsigned char *bytes = slurp(path, &len);
    rc = read_pipe(bytes, len, &b, &err);
    CHECK(rc == 0, "stream %s: rc %d %s", path, rc, err.msg);
    if (rc == 0) {
        size_t osz = a.store == DMRI_STORE_F32 ? 4 : 8;
        CHECK(a.nx == b.nx && a.ny == b.ny && a.nz == b.nz && a.nv == b.nv, "dims %d %d",
              a.nv, b.nv);
        CHECK(a.datatype == b.datatype && a.store == b.store, "type %d %d", a.datatype,
              b.datatype);
        CHECK(memcmp(a.data, b.data, n * osz) == 0, "data differ (%s)", path);
        CHECK(memcmp(a.pixdim, b.pixdim, sizeof a.pixdim) == 0, "pixdim %g %g", a.pixdim[1],
              b.pixdim[1]);
        CHECK(memcmp(a.srow, b.srow, sizeof a.srow) == 0 && a.qform_code == b.qform_code,
              "geometry differs");
    }
    dmri_image_close(&b);
    /* Cut inside the data, and cut inside the trailer: both refused. */
    size_t cuts[2] = {len / 2, len - 3};
    for (int c = 0; c < 2; c++) {
        rc = read_pipe(bytes, cuts[c], &b, &err);
        CHECK(rc != 0 && strstr(err.msg, "stream.nii.gz") && strstr(err.msg, "gzip"),
              "cut at %zu of %zu: rc %d '%s'", cuts[c], len, rc, rc ? err.msg : "");
        CHECK(b.data == NULL, "data kept after failure");
    }
    /* A flipped byte in the compressed data: refused (corrupt or CRC). */
    bytes[len - 12] ^= 0x55;
    rc = read_pipe(bytes, len, &b, &err);
    CHECK(rc != 0, "flipped byte accepted");
    dmri_image_close(&b);
    dmri_image_close(&a);
    free(bytes);
    free(data);
}

int main(void) {
    char dir[] = "/tmp/dmri-test-stream-XXXXXX";
    if (!mkdtemp(dir))
        return 2;
    for (int z = 0; z < 2; z++) {
        if (z)
            setenv("DMRI_INFLATE", "zlib", 1);
        one_case(dir, DT_FLOAT32, 9, 1.0);
        one_case(dir, DT_INT16, 4, 1.0);
    }
    unsetenv("DMRI_INFLATE");
    /* Not gzip at all. */
    static const unsigned char junk[400] = {1, 2, 3};
    dmri_image_t b;
    dmri_err_t err;
    int rc = read_pipe(junk, sizeof junk, &b, &err);
    CHECK(rc != 0, "junk accepted");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    else
        printf("test_image_stream: all passed\n");
    return failures != 0;
}
