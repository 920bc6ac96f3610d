/* tasks: task bodies over a subject in memory (see tasks.h). */
#include "tasks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"
#include "mask.h"
#include "meanb0.h"
#include "median.h"
#include "nlmeans.h"
#include "otsu.h"
#include "outputs.h"
#include "sigma.h"

#define MEDIAN_RADIUS 4

int dmri_state_init(dmri_state_t *st, const dmri_subject_t *subj, dmri_image_t *img,
                    const dmri_graph_t *g, const char *stage_dir, dmri_err_t *err) {
    memset(st, 0, sizeof *st);
    st->subj = subj;
    st->img = img;
    st->nx = img->nx;
    st->ny = img->ny;
    st->nz = img->nz;
    st->nv = img->nv;
    st->nvox = dmri_image_nvox(img);
    st->f32_semantics = dmri_image_is_f32_semantics(img);
    st->integer = dmri_image_is_integer(img);
    st->skip_denoise = g->params.skip_denoise;
    st->in_place = g->nslabs == 1;
    snprintf(st->stage_dir, sizeof st->stage_dir, "%s", stage_dir);

    size_t esz = st->f32_semantics ? sizeof(float) : sizeof(double);
    st->meanb0 = dmri_malloc(st->nvox * esz);
    st->median1 = dmri_malloc(st->nvox * esz);
    st->median2 = dmri_malloc(st->nvox * esz);
    st->mask = dmri_calloc(st->nvox, 1);
    st->sigma = dmri_calloc((size_t)st->nv, sizeof(float));
    if (st->skip_denoise || st->in_place) {
        st->denoised = img->data;
    } else {
        size_t ssz = img->store == DMRI_STORE_F32 ? sizeof(float) : sizeof(double);
        st->denoised = dmri_malloc(st->nvox * (size_t)st->nv * ssz);
    }
    st->fa = dmri_calloc(st->nvox, sizeof(float));
    st->md = dmri_calloc(st->nvox, sizeof(float));
    st->ad = dmri_calloc(st->nvox, sizeof(float));
    st->rd = dmri_calloc(st->nvox, sizeof(float));
    st->color_fa = dmri_calloc(st->nvox * 3, sizeof(float));
    st->evecs = dmri_calloc(st->nvox * 9, sizeof(float));
    int rc = dmri_dti_model_init(&st->model, subj->gtab.b_eff, subj->gtab.g_eff, st->nv, err);
    if (rc != 0) {
        dmri_err_prefix(err, "%s: tensor model: ", subj->paths.bvecs_path);
        dmri_state_close(st);
    }
    return rc;
}

void dmri_state_close(dmri_state_t *st) {
    if (!st)
        return;
    dmri_free(st->meanb0);
    dmri_free(st->median1);
    dmri_free(st->median2);
    dmri_free(st->mask);
    dmri_free(st->sigma);
    if (st->denoised && (!st->img || st->denoised != st->img->data))
        dmri_free(st->denoised);
    dmri_free(st->fa);
    dmri_free(st->md);
    dmri_free(st->ad);
    dmri_free(st->rd);
    dmri_free(st->color_fa);
    dmri_free(st->evecs);
    dmri_dti_model_close(&st->model);
    memset(st, 0, sizeof *st);
}

static void run_meanb0(dmri_state_t *st) {
    const dmri_gtab_t *gt = &st->subj->gtab;
    if (st->img->store == DMRI_STORE_F64)
        dmri_meanb0_f64(st->img->data, st->nvox, gt->b0_idx, gt->nb0, st->meanb0);
    else if (st->f32_semantics)
        dmri_meanb0_f32(st->img->data, st->nvox, gt->b0_idx, gt->nb0, st->meanb0);
    else
        dmri_meanb0_f32_to_f64(st->img->data, st->nvox, gt->b0_idx, gt->nb0, st->meanb0);
}

static void run_median(dmri_state_t *st, const void *in, void *out, int z0, int z1) {
    size_t wl = dmri_median3d_workspace_len(MEDIAN_RADIUS);
    if (st->f32_semantics) {
        float *ws = dmri_malloc(wl * sizeof(float));
        dmri_median3d_f32(in, st->nx, st->ny, st->nz, MEDIAN_RADIUS, z0, z1, out, ws);
        dmri_free(ws);
    } else {
        double *ws = dmri_malloc(wl * sizeof(double));
        dmri_median3d_f64(in, st->nx, st->ny, st->nz, MEDIAN_RADIUS, z0, z1, out, ws);
        dmri_free(ws);
    }
}

static int run_mask(dmri_state_t *st, dmri_err_t *err) {
    uint8_t *mask0 = dmri_malloc(st->nvox);
    int rc;
    if (st->f32_semantics) {
        float t;
        rc = dmri_otsu_threshold_f32(st->median2, st->nvox, &t, err);
        if (rc == 0) {
            dmri_mask_threshold_f32(st->median2, st->nvox, t, mask0);
            st->otsu_threshold = t;
        }
    } else {
        double t;
        rc = dmri_otsu_threshold_f64(st->median2, st->nvox, &t, err);
        if (rc == 0) {
            dmri_mask_threshold_f64(st->median2, st->nvox, t, mask0);
            st->otsu_threshold = t;
        }
    }
    if (rc == 0) {
        dmri_mask_dilate_cross(mask0, st->nx, st->ny, st->nz, st->mask);
        st->mask_count = dmri_mask_count(st->mask, st->nvox);
    } else {
        dmri_err_prefix(err, "%s: brain mask: ", st->subj->paths.data_path);
    }
    dmri_free(mask0);
    return rc;
}

static void run_sigma(dmri_state_t *st, int v0, int v1) {
    for (int v = v0; v < v1; v++) {
        if (st->img->store == DMRI_STORE_F32)
            st->sigma[v] = dmri_sigma_volume_f32((const float *)st->img->data + (size_t)v * st->nvox,
                                                 st->nx, st->ny, st->nz);
        else
            st->sigma[v] = dmri_sigma_volume_f64(
                (const double *)st->img->data + (size_t)v * st->nvox, st->nx, st->ny, st->nz);
    }
}

/* The float64 result goes back to the input's type, as dipy's
 * `.astype(input dtype)`: integer types are truncated toward zero. */
static double to_input_type(const dmri_state_t *st, double x) {
    if (st->integer && !st->img->scaled)
        return trunc(x);
    return x;
}

static void run_nlmeans(dmri_state_t *st, int v0, int v1, int z0, int z1) {
    int nx = st->nx, ny = st->ny, nz = st->nz, nzs = z1 - z0;
    size_t plane = (size_t)nx * (size_t)ny;
    int sz0 = z0 - DMRI_NLMEANS_HALO < 0 ? 0 : z0 - DMRI_NLMEANS_HALO;
    int sz1 = z1 + DMRI_NLMEANS_HALO > nz ? nz : z1 + DMRI_NLMEANS_HALO;
    double *padded = dmri_malloc(dmri_nlmeans_padded_len(nx, ny, nzs) * sizeof(double));
    double *ws = dmri_malloc(dmri_nlmeans_workspace_len(nx, ny, nzs) * sizeof(double));
    double *out = dmri_malloc(plane * (size_t)nzs * sizeof(double));
    const uint8_t *mask = st->mask + (size_t)z0 * plane;
    for (int v = v0; v < v1; v++) {
        size_t vol = (size_t)v * st->nvox;
        if (st->img->store == DMRI_STORE_F32)
            dmri_nlmeans_pad_f32((const float *)st->img->data + vol + (size_t)sz0 * plane, nx, ny,
                                 nz, sz0, sz1, z0, z1, padded);
        else
            dmri_nlmeans_pad_f64((const double *)st->img->data + vol + (size_t)sz0 * plane, nx,
                                 ny, nz, sz0, sz1, z0, z1, padded);
        dmri_nlmeans_block(padded, nx, ny, z0, nzs, mask, (double)st->sigma[v], 1, out, ws);
        size_t base = vol + (size_t)z0 * plane, n = plane * (size_t)nzs;
        if (st->img->store == DMRI_STORE_F32) {
            float *d = (float *)st->denoised + base;
            for (size_t i = 0; i < n; i++)
                d[i] = (float)to_input_type(st, out[i]);
        } else {
            double *d = (double *)st->denoised + base;
            for (size_t i = 0; i < n; i++)
                d[i] = to_input_type(st, out[i]);
        }
    }
    dmri_free(padded);
    dmri_free(ws);
    dmri_free(out);
}

static void run_dti(dmri_state_t *st, int z0, int z1) {
    size_t plane = (size_t)st->nx * (size_t)st->ny;
    size_t i0 = (size_t)z0 * plane, n = (size_t)(z1 - z0) * plane, nvox = st->nvox;
    int G = st->nv;
    const void *data = st->skip_denoise ? st->img->data : st->denoised;
    size_t esz = st->img->store == DMRI_STORE_F64 ? sizeof(double) : sizeof(float);
    const void **vols = dmri_malloc((size_t)G * sizeof(void *));
    for (int g = 0; g < G; g++)
        vols[g] = (const char *)data + ((size_t)g * nvox + i0) * esz;
    /* Precision rules (PIPELINE.md 7b): float32 data is floored and logged
     * in float32; integer data held as float32, and float64 data, in float64. */
    dmri_dti_input_t kind = st->img->store == DMRI_STORE_F64 ? DMRI_DTI_IN_F64
                            : st->f32_semantics             ? DMRI_DTI_IN_F32
                                                            : DMRI_DTI_IN_F32_AS_F64;
    dmri_dti_out_t out = {.fa = st->fa + i0, .md = st->md + i0, .ad = st->ad + i0,
                          .rd = st->rd + i0, .color_fa = st->color_fa + i0,
                          .evecs_map = st->evecs + i0, .stride = nvox};
    dmri_dti_fit_block(&st->model, kind, (const void *const *)vols, 1, n, st->mask + i0, &out);
    dmri_free(vols);
}

static int run_save(dmri_state_t *st, dmri_output_t out, dmri_err_t *err) {
    dmri_outputs_data_t d = {.mask = st->mask, .fa = st->fa, .md = st->md, .ad = st->ad,
                             .rd = st->rd, .color_fa = st->color_fa, .evecs = st->evecs,
                             .denoised = st->denoised};
    return dmri_outputs_write(st->stage_dir, st->img, out, &d, err);
}

int dmri_task_run(dmri_state_t *st, const dmri_task_t *t, dmri_err_t *err) {
    switch (t->kind) {
    case DMRI_TASK_MEANB0: run_meanb0(st); return 0;
    case DMRI_TASK_MEDIAN1: run_median(st, st->meanb0, st->median1, t->z0, t->z1); return 0;
    case DMRI_TASK_MEDIAN2: run_median(st, st->median1, st->median2, t->z0, t->z1); return 0;
    case DMRI_TASK_MASK: return run_mask(st, err);
    case DMRI_TASK_SIGMA: run_sigma(st, t->v0, t->v1); return 0;
    case DMRI_TASK_NLMEANS: run_nlmeans(st, t->v0, t->v1, t->z0, t->z1); return 0;
    case DMRI_TASK_DTI: run_dti(st, t->z0, t->z1); return 0;
    case DMRI_TASK_SAVE: return run_save(st, (dmri_output_t)t->output, err);
    default: return dmri_err_set(err, DMRI_EINVAL, "unknown task kind %d", (int)t->kind);
    }
}
