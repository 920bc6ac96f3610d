/* jobinfo: decoded info + graph per job, and their LRU cache (jobinfo.h). */
#include "jobinfo.h"

#include <string.h>

#include "dmri_alloc.h"

static int finish(dmri_jobinfo_t *ji, dmri_jobinfo_t **out, dmri_err_t *err) {
    dmri_graph_params_t p;
    dmri_info_graph_params(&ji->info, ji->save_denoised, &p);
    int rc = dmri_graph_build(&ji->graph, &p, err);
    if (rc != 0) {
        dmri_info_close(&ji->info);
        dmri_free(ji);
        return rc;
    }
    ji->refs = 1;
    *out = ji;
    return 0;
}

int dmri_jobinfo_decode(uint64_t job, const void *blob, size_t len, int save_denoised,
                        dmri_jobinfo_t **out, dmri_err_t *err) {
    *out = NULL;
    dmri_jobinfo_t *ji = dmri_calloc(1, sizeof *ji);
    ji->job = job;
    ji->save_denoised = save_denoised ? 1 : 0;
    int rc = dmri_info_decode(blob, len, &ji->info, err);
    if (rc != 0) {
        dmri_free(ji);
        return rc;
    }
    return finish(ji, out, err);
}

int dmri_jobinfo_adopt(uint64_t job, dmri_info_t *info, int save_denoised, dmri_jobinfo_t **out,
                       dmri_err_t *err) {
    *out = NULL;
    dmri_jobinfo_t *ji = dmri_calloc(1, sizeof *ji);
    ji->job = job;
    ji->save_denoised = save_denoised ? 1 : 0;
    ji->info = *info;
    memset(info, 0, sizeof *info);
    return finish(ji, out, err);
}

void dmri_jobinfo_ref(dmri_jobinfo_t *ji) { ji->refs++; }

void dmri_jobinfo_unref(dmri_jobinfo_t *ji) {
    if (!ji || --ji->refs > 0)
        return;
    dmri_graph_close(&ji->graph);
    dmri_info_close(&ji->info);
    dmri_free(ji);
}

struct dmri_jobcache {
    dmri_jobinfo_t **v;  /* most recently used first */
    int n, cap;
};

dmri_jobcache_t *dmri_jobcache_new(int capacity) {
    dmri_jobcache_t *c = dmri_calloc(1, sizeof *c);
    c->cap = capacity > 0 ? capacity : 1;
    c->v = dmri_calloc((size_t)c->cap, sizeof *c->v);
    return c;
}

void dmri_jobcache_clear(dmri_jobcache_t *c) {
    for (int i = 0; i < c->n; i++)
        dmri_jobinfo_unref(c->v[i]);
    c->n = 0;
}

void dmri_jobcache_destroy(dmri_jobcache_t **cp) {
    if (!cp || !*cp)
        return;
    dmri_jobcache_clear(*cp);
    dmri_free((*cp)->v);
    dmri_free(*cp);
    *cp = NULL;
}

/* Move entry i to the front. */
static void to_front(dmri_jobcache_t *c, int i) {
    dmri_jobinfo_t *ji = c->v[i];
    memmove(c->v + 1, c->v, (size_t)i * sizeof *c->v);
    c->v[0] = ji;
}

dmri_jobinfo_t *dmri_jobcache_get(dmri_jobcache_t *c, uint64_t job) {
    for (int i = 0; i < c->n; i++) {
        if (c->v[i]->job == job) {
            to_front(c, i);
            c->v[0]->refs++;
            return c->v[0];
        }
    }
    return NULL;
}

void dmri_jobcache_put(dmri_jobcache_t *c, dmri_jobinfo_t *ji) {
    ji->refs++;
    for (int i = 0; i < c->n; i++) {
        if (c->v[i]->job == ji->job) {
            dmri_jobinfo_unref(c->v[i]);
            c->v[i] = ji;
            to_front(c, i);
            return;
        }
    }
    if (c->n == c->cap) {
        dmri_jobinfo_unref(c->v[c->n - 1]);
        c->n--;
    }
    memmove(c->v + 1, c->v, (size_t)c->n * sizeof *c->v);
    c->v[0] = ji;
    c->n++;
}
