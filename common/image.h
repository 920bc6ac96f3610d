/* image: NIfTI-1/NIfTI-2 reading (through niftilib) and writing, in the
 * numeric form the pipeline uses.
 *
 * Data is held either as float32 (native float32, and every integer type that
 * float32 holds exactly: uint8, int8, int16, uint16) or as float64 (float64,
 * int32, uint32 and any image with scl_slope/scl_inter applied, as nibabel
 * does: PIPELINE.md Step 1). `datatype` keeps the file's type, because the
 * precision rules downstream depend on it. Writes go to a temporary name in
 * the same folder, are checked, then renamed: a file that exists is complete. */
#ifndef DMRI_IMAGE_H
#define DMRI_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"

typedef enum { DMRI_STORE_F32 = 0, DMRI_STORE_F64 = 1 } dmri_store_t;

typedef struct {
    int ndim;              /* 3 or 4 */
    int nx, ny, nz, nv;    /* nv = 1 for a 3-D image */
    int datatype;          /* NIfTI DT_* code of the file */
    int scaled;            /* 1 if scl_slope/scl_inter were applied (data is f64) */
    dmri_store_t store;    /* type of `data` */
    void *data;            /* nx*ny*nz*nv values, x fastest, volumes contiguous */
    double pixdim[4];      /* voxel sizes (mm) and TR */
    int qform_code, sform_code;
    double quatern[6];     /* quatern_b, c, d, qoffset_x, y, z */
    double qfac;
    double srow[3][4];     /* sform rows */
    int xyz_units, time_units;
} dmri_image_t;

/* Read `path` (.nii or .nii.gz, NIfTI-1 or -2). Errors name the file and the
 * problem: missing, not NIfTI, truncated/corrupt gzip, unsupported datatype. */
int dmri_image_read(const char *path, dmri_image_t *img, dmri_err_t *err);

/* Read a single-file NIfTI-1/-2 image, gzip-compressed, from a readable
 * descriptor that may be a pipe (no seek: e.g. data.nii.gz arriving from S3),
 * with the same inflater, conversion and CRC-32/length checks as
 * dmri_image_read. `name` is used in messages; fd is not closed, and is read
 * to the end of the gzip stream on success. */
int dmri_image_read_fd(const char *name, int fd, dmri_image_t *img, dmri_err_t *err);

/* Default of the largest image a read accepts, in its stored form (float32 or
 * float64): an HCP subject is 4.2 GB as float32; 7T or scaled data (float64)
 * a few times that. A header claiming more fails with DMRI_ERANGE before
 * anything is allocated — for a stream (a pipe) this is the only bound. */
#define DMRI_IMAGE_MAX_BYTES ((size_t)64 << 30)

/* Change that limit for the whole process (0: back to the default); for
 * callers with less memory, and the fuzz harness. Thread-safe (atomic). */
void dmri_image_set_max_bytes(size_t bytes);

/* Free the data; safe to call twice. */
void dmri_image_close(dmri_image_t *img);

/* Number of voxels per volume. */
size_t dmri_image_nvox(const dmri_image_t *img);

/* 1 if the precision rules of float32 apply (native float32, unscaled). */
int dmri_image_is_f32_semantics(const dmri_image_t *img);

/* 1 if the file's type is an integer type (outputs are truncated to it). */
int dmri_image_is_integer(const dmri_image_t *img);

/* Write a NIfTI-1 file (gzip if the name ends in .gz) with the geometry
 * (qform, sform, pixdim, units) of `geom`, dims nx,ny,nz[,d4[,d5]] (ndim 3..5),
 * datatype DT_UINT8, DT_INT16, DT_UINT16, DT_INT8, DT_INT32, DT_FLOAT32 or
 * DT_FLOAT64, `data` already in that type. Written to a temporary name, checked,
 * then renamed over `path`. */
int dmri_image_write(const char *path, const dmri_image_t *geom, int ndim, const int *dims,
                     int datatype, const void *data, dmri_err_t *err);

/* Size in bytes of one value of a NIfTI datatype, 0 if unsupported. */
size_t dmri_image_datatype_size(int datatype);

#endif
