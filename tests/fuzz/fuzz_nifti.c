/* fuzz_nifti: libFuzzer harness for the NIfTI reader. The input is a file:
 * written to a temporary .nii (or .nii.gz when it starts with the gzip magic)
 * and read by path (dmri_image_read: niftilib's header parse, our data read)
 * and, for gzip, also as a stream from a descriptor (dmri_image_read_fd, as
 * data arrives from S3); gzip goes through both inflaters (ISA-L and zlib).
 * The reader's size cap is lowered so a lying header cannot make the harness
 * allocate more than a few hundred MB; a decoded image must be readable to
 * its end (ASan checks that). */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile double sink;

static void check(int rc, dmri_image_t *img, const dmri_err_t *err) {
    if (rc != 0) {
        if (!err->msg[0] || img->data)
            abort();
        return;
    }
    size_t n = dmri_image_nvox(img) * (size_t)img->nv;
    if (!img->data || n == 0 || img->nx < 1 || img->ny < 1 || img->nz < 1 || img->nv < 1)
        abort();
    sink = img->store == DMRI_STORE_F32 ? ((float *)img->data)[n - 1]
                                        : ((double *)img->data)[n - 1];
    dmri_image_close(img);
}

static void read_path(const char *path, int isal) {
    if (isal)
        unsetenv("DMRI_INFLATE");
    else
        setenv("DMRI_INFLATE", "zlib", 1);
    dmri_image_t img;
    dmri_err_t err = {0};
    check(dmri_image_read(path, &img, &err), &img, &err);
}

static void read_stream(const char *path, int isal) {
    if (isal)
        unsetenv("DMRI_INFLATE");
    else
        setenv("DMRI_INFLATE", "zlib", 1);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        abort();
    dmri_image_t img;
    dmri_err_t err = {0};
    check(dmri_image_read_fd("stream.nii.gz", fd, &img, &err), &img, &err);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char raw_path[256], gz_path[256];
    if (!raw_path[0]) {
        const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(raw_path, sizeof raw_path, "%s/dmri-fuzz-%ld.nii", dir, (long)getpid());
        snprintf(gz_path, sizeof gz_path, "%s/dmri-fuzz-%ld.nii.gz", dir, (long)getpid());
        dmri_image_set_max_bytes((size_t)256 << 20);
    }
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const char *path = gz ? gz_path : raw_path;
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    read_path(path, 1);
    if (gz) {
        read_path(path, 0);
        read_stream(path, 1);
        read_stream(path, 0);
    }
    unlink(path);
    return 0;
}
