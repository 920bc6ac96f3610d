/* outputs: the one writer of a subject's result files and summary.json.
 * dmri-run (tasks.c, run.c) and the cluster client (chunks.c, assembling
 * result chunks) both call it, so that both write byte-identical files. */
#ifndef DMRI_OUTPUTS_H
#define DMRI_OUTPUTS_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"
#include "graph.h"
#include "image.h"

/* The result arrays of one subject, whole volumes, x fastest. Only the
 * arrays of the output being written need to be set. */
typedef struct {
    const uint8_t *mask;      /* nvox, 0/1 */
    const float *fa, *md, *ad, *rd;  /* nvox each */
    const float *color_fa;    /* nvox*3: volume c = component c */
    const float *evecs;       /* nvox*9: volume c + 3j = component c of eigenvector j */
    const void *denoised;     /* nvox*nv in geom->store type */
} dmri_outputs_data_t;

/* Write output `out` as dir/<dmri_output_file_name(out)>, with the geometry
 * of `geom` (its data is not read). The denoised series goes back to the
 * input file's type (float64 when scaled, as nibabel hands dipy float64).
 * Errors name the file. */
int dmri_outputs_write(const char *dir, const dmri_image_t *geom, dmri_output_t out,
                       const dmri_outputs_data_t *d, dmri_err_t *err);

/* The fields of summary.json. Seconds that are NaN, and threads <= 0, are
 * written as null (the cluster client does not measure them itself). */
typedef struct {
    const char *subject;      /* name */
    const char *input;        /* data file path */
    const dmri_image_t *geom; /* shape, dtype, scaled */
    double b0_threshold;
    int b0_volumes;
    double otsu_threshold;
    size_t mask_voxels;
    int denoised;             /* 0 with --skip-denoise */
    const float *sigma;       /* geom->nv values */
    double load_s;
    int has_step[DMRI_TASK_NKINDS];   /* 1: write "seconds"."<kind>" */
    double step_s[DMRI_TASK_NKINDS];
    double total_s;
    int threads;
    const char *cluster;      /* JSON object text written as "cluster", or NULL */
} dmri_summary_t;

/* Write summary.json at `path` atomically. A `cluster` text that is not one
 * valid JSON object is written as a JSON string instead (it comes from the
 * network; the file must stay valid JSON). */
int dmri_outputs_write_summary(const char *path, const dmri_summary_t *s, dmri_err_t *err);

/* 1 if `text` is exactly one JSON object (whitespace around allowed). */
int dmri_outputs_json_is_object(const char *text);

#endif
