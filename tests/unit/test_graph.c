/* Unit tests of the task graph description (pipeline/graph.c). */
#include <stdio.h>
#include <string.h>

#include "graph.h"

#include "check.h"

/* Every dependency points backwards (topological order) and every slab of
 * each NLMEANS volume group and each DTI slab covers z exactly once. */
static void check_structure(const dmri_graph_t *g) {
    const dmri_graph_params_t *p = &g->params;
    for (int i = 0; i < g->ntasks; i++)
        for (int k = 0; k < g->tasks[i].ndeps; k++) {
            int d = g->tasks[i].deps[k];
            if (!(d >= 0 && d < i)) {
                fprintf(stderr, "task %d depends on %d\n", i, d);
                failures++;
            }
        }
    int cover_dti[4096] = {0};
    static int cover_nlm[64][512];
    memset(cover_nlm, 0, sizeof cover_nlm);
    for (int i = 0; i < g->ntasks; i++) {
        const dmri_task_t *t = &g->tasks[i];
        if (t->kind == DMRI_TASK_DTI)
            for (int z = t->z0; z < t->z1; z++)
                cover_dti[z]++;
        if (t->kind == DMRI_TASK_NLMEANS)
            for (int v = t->v0; v < t->v1; v++)
                for (int z = t->z0; z < t->z1; z++)
                    cover_nlm[v][z]++;
        if (t->kind == DMRI_TASK_DTI && !p->skip_denoise) {
            /* A DTI slab waits for the NLMEANS of every volume on its slices. */
            int seen[64] = {0};
            for (int k = 0; k < t->ndeps; k++) {
                const dmri_task_t *d = &g->tasks[t->deps[k]];
                if (d->kind == DMRI_TASK_NLMEANS && d->z0 == t->z0)
                    for (int v = d->v0; v < d->v1; v++)
                        seen[v] = 1;
            }
            for (int v = 0; v < p->nv; v++)
                CHECK_INT(seen[v], 1);
        }
    }
    for (int z = 0; z < p->nz; z++) {
        CHECK_INT(cover_dti[z], 1);
        for (int v = 0; v < p->nv; v++)
            CHECK_INT(cover_nlm[v][z], p->skip_denoise ? 0 : 1);
    }
}

int main(void) {
    dmri_graph_params_t p;
    dmri_graph_t g;
    dmri_err_t err = {0};

    dmri_graph_params_default(&p, 10, 12, 17, 7);
    CHECK_INT(dmri_graph_build(&g, &p, &err), 0);
    CHECK_INT(g.nslabs, 1);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_NLMEANS), 7);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_SIGMA), 7);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_MASK), 1);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_SAVE), 7);
    check_structure(&g);
    dmri_graph_close(&g);
    dmri_graph_close(&g); /* safe twice */

    p.slab_slices = 5;    /* 17 slices -> slabs 5,5,5,2 */
    p.vols_per_task = 3;  /* 7 volumes -> groups 3,3,1 */
    p.save_denoised = 1;
    CHECK_INT(dmri_graph_build(&g, &p, &err), 0);
    CHECK_INT(g.nslabs, 4);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_NLMEANS), 12);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_SIGMA), 3);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_DTI), 4);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_SAVE), 8);
    check_structure(&g);
    dmri_graph_close(&g);

    p.skip_denoise = 1;
    p.save_denoised = 0;
    CHECK_INT(dmri_graph_build(&g, &p, &err), 0);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_NLMEANS), 0);
    check_structure(&g);
    dmri_graph_close(&g);

    /* Thin volume: more median slabs than slices is clamped. */
    dmri_graph_params_default(&p, 10, 8, 2, 26);
    CHECK_INT(dmri_graph_build(&g, &p, &err), 0);
    CHECK_INT(dmri_graph_count(&g, DMRI_TASK_MEDIAN1), 2);
    check_structure(&g);
    dmri_graph_close(&g);

    dmri_graph_params_default(&p, 0, 8, 2, 26);
    CHECK_INT(dmri_graph_build(&g, &p, &err), DMRI_EINVAL);
    CHECK_INT(strstr(err.msg, "geometry") != NULL, 1);

    CHECK_INT(strcmp(dmri_task_kind_name(DMRI_TASK_NLMEANS), "nlmeans"), 0);
    CHECK_INT(strcmp(dmri_output_file_name(DMRI_OUTPUT_FA), "dti_fa.nii.gz"), 0);
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}
