/* preview: FA / colour FA slices as a PNG (preview.h). */
#include "preview.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dmri_alloc.h"

void dmri_preview_slices(int nz, int z[DMRI_PREVIEW_NSLICES]) {
    for (int i = 0; i < DMRI_PREVIEW_NSLICES; i++) {
        int v = (nz * (i + 1)) / (DMRI_PREVIEW_NSLICES + 1);
        z[i] = v < 0 ? 0 : v >= nz ? nz - 1 : v;
    }
}

int dmri_preview_scale(int nx, int ny) {
    int m = nx > ny ? nx : ny;
    int s = m > 0 ? 128 / m : 1;
    return s < 1 ? 1 : s > 16 ? 16 : s;
}

unsigned char dmri_preview_level(float v) {
    if (!(v > 0))
        return 0;
    if (v >= 1)
        return 255;
    return (unsigned char)(v * 255.0f + 0.5f);
}

int dmri_preview_write(const char *path, int nx, int ny, int nz, const float *fa,
                       const float *color_fa, dmri_err_t *err) {
    if (nx < 1 || ny < 1 || nz < 1 || !fa || !color_fa)
        return dmri_err_set(err, DMRI_EINVAL, "%s: nothing to draw (%dx%dx%d)", path, nx, ny, nz);
    int s = dmri_preview_scale(nx, ny);
    size_t w = (size_t)DMRI_PREVIEW_NSLICES * (size_t)nx * (size_t)s, h = 2 * (size_t)ny * (size_t)s;
    if (w > 100000 || h > 100000)
        return dmri_err_set(err, DMRI_ERANGE, "%s: %zux%zu pixels is too large", path, w, h);
    unsigned char *px = dmri_calloc(w * h * 3, 1);
    size_t nvox = (size_t)nx * (size_t)ny * (size_t)nz;
    int zs[DMRI_PREVIEW_NSLICES];
    dmri_preview_slices(nz, zs);
    for (int i = 0; i < DMRI_PREVIEW_NSLICES; i++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                size_t v = (size_t)x + (size_t)nx * ((size_t)y + (size_t)ny * (size_t)zs[i]);
                unsigned char g = dmri_preview_level(fa[v]);
                unsigned char rgb[3];
                for (int c = 0; c < 3; c++)
                    rgb[c] = dmri_preview_level(color_fa[v + (size_t)c * nvox]);
                /* Anterior (high y) at the top, as viewers show axial slices. */
                size_t row0 = (size_t)(ny - 1 - y) * (size_t)s;
                size_t col0 = ((size_t)i * (size_t)nx + (size_t)x) * (size_t)s;
                for (int dy = 0; dy < s; dy++)
                    for (int dx = 0; dx < s; dx++) {
                        unsigned char *top = px + ((row0 + (size_t)dy) * w + col0 + (size_t)dx) * 3;
                        unsigned char *bot = top + (size_t)ny * (size_t)s * w * 3;
                        top[0] = top[1] = top[2] = g;
                        memcpy(bot, rgb, 3);
                    }
            }
    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) {
        dmri_free(px);
        return dmri_err_set(err, DMRI_ERANGE, "%s: path too long", path);
    }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    int ok = png_image_write_to_file(&img, tmp, 0, px, (png_int_32)(w * 3), NULL);
    dmri_free(px);
    if (!ok) {
        unlink(tmp);
        int rc = dmri_err_set(err, DMRI_EIO, "%s: cannot write the PNG: %s", path, img.message);
        png_image_free(&img);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dmri_err_set(err, DMRI_EIO, "%s: cannot move into place: %s", path, strerror(e));
    }
    return 0;
}
