/* preview: preview.png, a picture of a subject's results for people who
 * would rather look at a map than at numbers — three axial slices (at 1/4,
 * 1/2 and 3/4 of z), FA in grey on the top row and colour FA (red = x,
 * green = y, blue = z) below, each slice magnified by a whole factor so it
 * is at least 128 pixels wide or tall, anterior (high y) at the top. Written
 * with libpng to a temporary name and renamed. Shared by dmri-run and
 * dmri-submit (--preview). */
#ifndef DMRI_PREVIEW_H
#define DMRI_PREVIEW_H

#include "dmri_err.h"

#define DMRI_PREVIEW_NSLICES 3
#define DMRI_PREVIEW_FILE "preview.png"

/* The z of each slice shown, for a volume nz slices deep. */
void dmri_preview_slices(int nz, int z[DMRI_PREVIEW_NSLICES]);

/* The magnification of each voxel (pixels per voxel side). */
int dmri_preview_scale(int nx, int ny);

/* Pixel value (0..255) of a map value in [0, 1] (clamped; NaN: 0). */
unsigned char dmri_preview_level(float v);

/* Write the PNG at path (RGB, 3*nx*s x 2*ny*s pixels, s = the scale).
 * fa: nx*ny*nz, color_fa: nx*ny*nz*3 (volume c = component c), x fastest.
 * Errors name the file. */
int dmri_preview_write(const char *path, int nx, int ny, int nz, const float *fa,
                       const float *color_fa, dmri_err_t *err);

#endif
