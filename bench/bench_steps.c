/* bench_steps: times each step of the pipeline on one subject, one thread,
 * with the same kernels dmri-run uses, and prints one JSON object. Driven by
 * bench/bench.py, which times dipy on the same input in the same run.
 * usage: bench_steps SUBJECT_DIR [--nlmeans-volumes K] [--threads N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"
#include "executor.h"
#include "graph.h"
#include "subject.h"
#include "tasks.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_steps SUBJECT_DIR [--nlmeans-volumes K]\n");
        return 2;
    }
    int k_nlm = 2;
    for (int i = 2; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--nlmeans-volumes") == 0)
            k_nlm = atoi(argv[i + 1]);
    dmri_err_t err = {0};
    dmri_subject_paths_t paths;
    if (dmri_subject_resolve(argv[1], NULL, &paths, &err) != 0) {
        fprintf(stderr, "bench_steps: %s\n", err.msg);
        return 1;
    }
    dmri_subject_opts_t so = {.b0_threshold = 10.0, .skip_denoise = 0};
    dmri_subject_t subj;
    double t0 = dmri_now();
    if (dmri_subject_load(&subj, &paths, &so, &err) != 0) {
        fprintf(stderr, "bench_steps: %s\n", err.msg);
        return 1;
    }
    double t_load = dmri_now() - t0;
    dmri_image_t *img = &subj.img;
    dmri_graph_params_t gp;
    dmri_graph_params_default(&gp, img->nx, img->ny, img->nz, img->nv);
    gp.median_slabs = 1;
    gp.slab_slices = 0;
    dmri_graph_t g;
    dmri_graph_build(&g, &gp, &err);
    dmri_state_t st;
    if (dmri_state_init(&st, &subj, img, &g, "/tmp", &err) != 0) {
        fprintf(stderr, "bench_steps: %s\n", err.msg);
        return 1;
    }
    /* NL-means is measured on the first K volumes only (dipy would need hours
     * for all); they are denoised in place, so the fit then reads a partly
     * denoised series, which costs the same per voxel. */
    double t_kind[DMRI_TASK_NKINDS] = {0};
    int nlm_done = 0;
    for (int i = 0; i < g.ntasks; i++) {
        const dmri_task_t *t = &g.tasks[i];
        if (t->kind == DMRI_TASK_SAVE)
            continue;
        if (t->kind == DMRI_TASK_NLMEANS && nlm_done >= k_nlm)
            continue;
        double s = dmri_now();
        if (dmri_task_run(&st, t, &err) != 0) {
            fprintf(stderr, "bench_steps: %s\n", err.msg);
            return 1;
        }
        t_kind[t->kind] += dmri_now() - s;
        if (t->kind == DMRI_TASK_NLMEANS)
            nlm_done += t->v1 - t->v0;
    }
    printf("{\"load\": %.6f, \"meanb0\": %.6f, \"median\": %.6f, \"mask\": %.6f, "
           "\"sigma\": %.6f, \"nlmeans\": %.6f, \"nlmeans_volumes\": %d, \"dti\": %.6f, "
           "\"mask_voxels\": %zu, \"shape\": [%d, %d, %d, %d]}\n",
           t_load, t_kind[DMRI_TASK_MEANB0], t_kind[DMRI_TASK_MEDIAN1] + t_kind[DMRI_TASK_MEDIAN2],
           t_kind[DMRI_TASK_MASK], t_kind[DMRI_TASK_SIGMA], t_kind[DMRI_TASK_NLMEANS], nlm_done,
           t_kind[DMRI_TASK_DTI], st.mask_count, img->nx, img->ny, img->nz, img->nv);
    dmri_state_close(&st);
    dmri_graph_close(&g);
    dmri_subject_close(&subj);
    return 0;
}
