/* graph: building the task graph of one subject (see graph.h). */
#include "graph.h"

#include <string.h>

#include "dmri_alloc.h"

static const char *const kind_names[] = {
#define DMRI_TASK_NAME(name, id, text) id,
    DMRI_TASK_KIND_MAP(DMRI_TASK_NAME)
#undef DMRI_TASK_NAME
};
static const char *const kind_titles[] = {
#define DMRI_TASK_TITLE(name, id, text) text,
    DMRI_TASK_KIND_MAP(DMRI_TASK_TITLE)
#undef DMRI_TASK_TITLE
};
static const char *const output_files[] = {
#define DMRI_OUTPUT_FILE(name, file) file,
    DMRI_OUTPUT_MAP(DMRI_OUTPUT_FILE)
#undef DMRI_OUTPUT_FILE
};

const char *dmri_task_kind_name(dmri_task_kind_t kind) {
    return (kind >= 0 && kind < DMRI_TASK_NKINDS) ? kind_names[kind] : "?";
}

const char *dmri_task_kind_title(dmri_task_kind_t kind) {
    return (kind >= 0 && kind < DMRI_TASK_NKINDS) ? kind_titles[kind] : "?";
}

const char *dmri_output_file_name(dmri_output_t out) {
    return (out >= 0 && out < DMRI_OUTPUT_COUNT) ? output_files[out] : "?";
}

void dmri_graph_params_default(dmri_graph_params_t *p, int nx, int ny, int nz, int nv) {
    memset(p, 0, sizeof *p);
    p->nx = nx;
    p->ny = ny;
    p->nz = nz;
    p->nv = nv;
    /* Whole-volume NL-means tasks let the in-process run denoise in place
     * (no second copy of a 4 GB series); volumes give plenty of parallelism. */
    p->slab_slices = 0;
    p->vols_per_task = 1;
    p->median_slabs = 8;
}

/* A growable task list; dependencies are copied into the task. */
typedef struct {
    dmri_task_t *tasks;
    int n, cap;
} task_list_t;

static int add_task(task_list_t *l, dmri_task_kind_t kind, int v0, int v1, int z0, int z1,
                    int output, const int *deps, int ndeps) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->tasks = dmri_realloc(l->tasks, (size_t)l->cap * sizeof *l->tasks);
    }
    dmri_task_t *t = &l->tasks[l->n];
    t->kind = kind;
    t->v0 = v0;
    t->v1 = v1;
    t->z0 = z0;
    t->z1 = z1;
    t->output = output;
    t->ndeps = ndeps;
    t->deps = ndeps ? dmri_malloc((size_t)ndeps * sizeof(int)) : NULL;
    if (ndeps)
        memcpy(t->deps, deps, (size_t)ndeps * sizeof(int));
    return l->n++;
}

int dmri_graph_build(dmri_graph_t *g, const dmri_graph_params_t *p, dmri_err_t *err) {
    memset(g, 0, sizeof *g);
    if (p->nx < 1 || p->ny < 1 || p->nz < 1 || p->nv < 1)
        return dmri_err_set(err, DMRI_EINVAL, "graph: bad geometry %dx%dx%dx%d", p->nx, p->ny,
                            p->nz, p->nv);
    g->params = *p;
    int vpt = p->vols_per_task > 0 ? p->vols_per_task : 1;
    int slab = (p->slab_slices > 0 && p->slab_slices < p->nz) ? p->slab_slices : p->nz;
    int nslabs = (p->nz + slab - 1) / slab;
    int nmed = p->median_slabs > 0 ? p->median_slabs : 1;
    if (nmed > p->nz)
        nmed = p->nz;
    g->nslabs = nslabs;

    task_list_t l = {0};
    int ngroups = (p->nv + vpt - 1) / vpt;
    /* Scratch for dependency lists: the largest is DTI's (every NLMEANS group)
     * or the last SAVE's. */
    int scratch_len = ngroups + nslabs + 2 * nmed + 8;
    int *deps = dmri_malloc((size_t)scratch_len * sizeof(int));

    int meanb0 = add_task(&l, DMRI_TASK_MEANB0, 0, 0, 0, p->nz, -1, NULL, 0);
    int *med1 = dmri_malloc((size_t)nmed * sizeof(int));
    for (int s = 0; s < nmed; s++)
        med1[s] = add_task(&l, DMRI_TASK_MEDIAN1, 0, 0, s * p->nz / nmed,
                           (s + 1) * p->nz / nmed, -1, &meanb0, 1);
    /* Pass 2 reads pass 1 over a 9-slice window that may wrap by reflection
     * on thin volumes: depend on the whole pass. */
    int first_med2 = l.n;
    for (int s = 0; s < nmed; s++)
        add_task(&l, DMRI_TASK_MEDIAN2, 0, 0, s * p->nz / nmed, (s + 1) * p->nz / nmed, -1,
                 med1, nmed);
    for (int s = 0; s < nmed; s++)
        deps[s] = first_med2 + s;
    int mask = add_task(&l, DMRI_TASK_MASK, 0, 0, 0, p->nz, -1, deps, nmed);

    int first_sigma = l.n;
    for (int gi = 0; gi < ngroups; gi++) {
        int v0 = gi * vpt, v1 = v0 + vpt < p->nv ? v0 + vpt : p->nv;
        add_task(&l, DMRI_TASK_SIGMA, v0, v1, 0, p->nz, -1, NULL, 0);
    }

    int first_nlm = l.n;
    if (!p->skip_denoise) {
        for (int gi = 0; gi < ngroups; gi++) {
            int v0 = gi * vpt, v1 = v0 + vpt < p->nv ? v0 + vpt : p->nv;
            for (int s = 0; s < nslabs; s++) {
                int z0 = s * slab, z1 = z0 + slab < p->nz ? z0 + slab : p->nz;
                int d[2] = {mask, first_sigma + gi};
                add_task(&l, DMRI_TASK_NLMEANS, v0, v1, z0, z1, -1, d, 2);
            }
        }
    }

    int first_dti = l.n;
    for (int s = 0; s < nslabs; s++) {
        int z0 = s * slab, z1 = z0 + slab < p->nz ? z0 + slab : p->nz;
        int nd = 0;
        deps[nd++] = mask;
        if (!p->skip_denoise)
            for (int gi = 0; gi < ngroups; gi++)
                deps[nd++] = first_nlm + gi * nslabs + s;
        add_task(&l, DMRI_TASK_DTI, 0, 0, z0, z1, -1, deps, nd);
    }

    int ndti = 0;
    for (int s = 0; s < nslabs; s++)
        deps[ndti++] = first_dti + s;
    add_task(&l, DMRI_TASK_SAVE, 0, 0, 0, p->nz, DMRI_OUTPUT_MASK, &mask, 1);
    for (int o = DMRI_OUTPUT_FA; o <= DMRI_OUTPUT_COLOR_FA; o++)
        add_task(&l, DMRI_TASK_SAVE, 0, 0, 0, p->nz, o, deps, ndti);
    if (p->save_denoised) {
        /* The denoised series is complete when every DTI slab has read it,
         * i.e. when all NLMEANS tasks are done; DTI deps cover that. */
        add_task(&l, DMRI_TASK_SAVE, 0, 0, 0, p->nz, DMRI_OUTPUT_DENOISED, deps, ndti);
    }
    dmri_free(med1);
    dmri_free(deps);
    g->tasks = l.tasks;
    g->ntasks = l.n;
    return 0;
}

void dmri_graph_close(dmri_graph_t *g) {
    if (!g)
        return;
    for (int i = 0; i < g->ntasks; i++)
        dmri_free(g->tasks[i].deps);
    dmri_free(g->tasks);
    g->tasks = NULL;
    g->ntasks = 0;
}

int dmri_graph_count(const dmri_graph_t *g, dmri_task_kind_t kind) {
    int n = 0;
    for (int i = 0; i < g->ntasks; i++)
        n += g->tasks[i].kind == kind;
    return n;
}
