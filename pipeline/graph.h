/* graph: the task graph of one subject — the steps of PIPELINE.md cut into
 * chunks, with their dependencies. It is a pure description (no data, no
 * threads): dmri-run executes it in-process (executor.h) and the cluster
 * scheduler executes the same description across workers.
 *
 * Chunking: the mask chain and sigma need whole volumes; NL-means and the
 * tensor fit are cut along z into slabs (NL-means slab inputs need a halo of
 * DMRI_NLMEANS_HALO slices), and NL-means additionally by volume groups. */
#ifndef DMRI_GRAPH_H
#define DMRI_GRAPH_H

#include "dmri_err.h"

#define DMRI_TASK_KIND_MAP(X)                                         \
    X(MEANB0, "meanb0", "mean b0")                                    \
    X(MEDIAN1, "median1", "median filter, pass 1")                    \
    X(MEDIAN2, "median2", "median filter, pass 2")                    \
    X(MASK, "mask", "Otsu threshold and dilation")                    \
    X(SIGMA, "sigma", "noise estimate")                               \
    X(NLMEANS, "nlmeans", "non-local means denoising")                \
    X(DTI, "dti", "tensor fit")                                       \
    X(SAVE, "save", "writing outputs")

typedef enum {
#define DMRI_TASK_ENUM(name, id, text) DMRI_TASK_##name,
    DMRI_TASK_KIND_MAP(DMRI_TASK_ENUM)
#undef DMRI_TASK_ENUM
        DMRI_TASK_NKINDS
} dmri_task_kind_t;

/* Cluster-only task kinds, outside the graph: LOAD reads a subject and cuts
 * it into chunks (it runs before the graph exists, since the graph depends on
 * the image's size); NOOP does nothing (scheduler overhead benchmark). */
#define DMRI_TASK_KIND_LOAD 100
#define DMRI_TASK_KIND_NOOP 101

/* Outputs a SAVE task can write (one file each). */
#define DMRI_OUTPUT_MAP(X)                   \
    X(MASK, "mask.nii.gz")                   \
    X(FA, "dti_fa.nii.gz")                   \
    X(MD, "dti_md.nii.gz")                   \
    X(AD, "dti_ad.nii.gz")                   \
    X(RD, "dti_rd.nii.gz")                   \
    X(EVECS, "dti_evecs.nii.gz")             \
    X(COLOR_FA, "dti_color_fa.nii.gz")       \
    X(DENOISED, "denoised.nii.gz")

typedef enum {
#define DMRI_OUTPUT_ENUM(name, file) DMRI_OUTPUT_##name,
    DMRI_OUTPUT_MAP(DMRI_OUTPUT_ENUM)
#undef DMRI_OUTPUT_ENUM
        DMRI_OUTPUT_COUNT
} dmri_output_t;

typedef struct {
    dmri_task_kind_t kind;
    int v0, v1;      /* volume range [v0, v1) (SIGMA, NLMEANS); else 0, 0 */
    int z0, z1;      /* slice range [z0, z1) (MEDIAN*, NLMEANS, DTI); else whole */
    int output;      /* dmri_output_t for SAVE, else -1 */
    int ndeps;       /* number of tasks this one waits for */
    int *deps;       /* their indices (all lower than this task's index) */
} dmri_task_t;

typedef struct {
    int nx, ny, nz, nv;    /* subject geometry */
    int skip_denoise;      /* no NLMEANS tasks; DTI fits the raw data */
    int save_denoised;     /* add a SAVE of the denoised series */
    int slab_slices;       /* NLMEANS/DTI slab thickness in z (0 = whole volume) */
    int vols_per_task;     /* NLMEANS/SIGMA volumes per task (>= 1) */
    int median_slabs;      /* number of z slabs of each median pass (>= 1) */
} dmri_graph_params_t;

typedef struct {
    dmri_graph_params_t params;
    int ntasks;
    dmri_task_t *tasks;    /* topologically ordered, also a sensible priority order */
    int nslabs;            /* number of NLMEANS/DTI z slabs */
} dmri_graph_t;

void dmri_graph_params_default(dmri_graph_params_t *p, int nx, int ny, int nz, int nv);

int dmri_graph_build(dmri_graph_t *g, const dmri_graph_params_t *p, dmri_err_t *err);
void dmri_graph_close(dmri_graph_t *g);

const char *dmri_task_kind_name(dmri_task_kind_t kind);   /* "nlmeans" */
const char *dmri_task_kind_title(dmri_task_kind_t kind);  /* "non-local means denoising" */
const char *dmri_output_file_name(dmri_output_t out);     /* "dti_fa.nii.gz" */

/* Number of tasks of a kind. */
int dmri_graph_count(const dmri_graph_t *g, dmri_task_kind_t kind);

#endif
