/* tasks: the body of every task kind of graph.h, over one subject held in
 * this process's memory. The executor (or a worker) calls dmri_task_run for
 * a task once its dependencies are done; tasks of a graph write disjoint
 * parts of the state, so they may run concurrently. */
#ifndef DMRI_TASKS_H
#define DMRI_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "dti.h"
#include "graph.h"
#include "subject.h"

typedef struct {
    const dmri_subject_t *subj;
    dmri_image_t *img;        /* the series; denoised in place when `in_place` */
    int nx, ny, nz, nv;
    size_t nvox;
    int f32_semantics;        /* native float32: f32 mean b0, median, Otsu, log */
    int integer;              /* file type is an integer: NL-means output truncated */
    int skip_denoise;
    int in_place;             /* NL-means overwrites the input series */

    void *meanb0;             /* nvox, float (f32 semantics) or double */
    void *median1, *median2;  /* nvox each, same type as meanb0 */
    double otsu_threshold;
    uint8_t *mask;            /* nvox, 0/1 after dilation */
    size_t mask_count;
    float *sigma;             /* nv */
    void *denoised;           /* nvox*nv in the image's store type (== img->data in place) */

    dmri_dti_model_t model;
    float *fa, *md, *ad, *rd; /* nvox each */
    float *color_fa;          /* nvox*3: volume c = component c */
    float *evecs;             /* nvox*9: volume c + 3j = component c of eigenvector j */

    char stage_dir[DMRI_PATH_MAX];  /* outputs are written here, then moved */
    int compress_level;       /* unused by now; outputs use the image writer's level */

    /* Progress of NL-means, read by the reporter (updated under its lock). */
    int nlmeans_volumes_done;
} dmri_state_t;

/* Allocate the state's arrays for a loaded subject and prepare the tensor
 * model. stage_dir: folder the SAVE tasks write to (must exist). */
int dmri_state_init(dmri_state_t *st, const dmri_subject_t *subj, dmri_image_t *img,
                    const dmri_graph_t *g, const char *stage_dir, dmri_err_t *err);
void dmri_state_close(dmri_state_t *st);

/* Run one task. Errors name the subject's file or the output being written. */
int dmri_task_run(dmri_state_t *st, const dmri_task_t *t, dmri_err_t *err);

#endif
