/* wtask: an assigned task's data and its compute-thread body (wtask.h). */
#include "wtask.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"
#include "executor.h"

/* Ranges and chunking are ints in the pipeline; anything beyond is nonsense. */
#define MAX_INDEX (1 << 24)

static int to_int(int64_t v, int *out) {
    if (v < -MAX_INDEX || v > MAX_INDEX)
        return -1;
    *out = (int)v;
    return 0;
}

static char **copy_strs(const dmri_strlist_t *l) {
    char **v = dmri_calloc(l->n ? l->n : 1, sizeof *v);
    for (size_t i = 0; i < l->n; i++)
        v[i] = dmri_strdup(l->v[i] ? l->v[i] : "");
    return v;
}

int dmri_wtask_new(const dmri_msg_task_assign_t *a, dmri_wtask_t **out, dmri_err_t *err) {
    *out = NULL;
    int graph = a->kind < DMRI_TASK_NKINDS && a->kind != DMRI_TASK_SAVE;
    if (!graph && a->kind != DMRI_TASK_KIND_LOAD)
        return dmri_err_set(err, DMRI_EINVAL, "task kind %" PRIu64 " is not one a worker runs",
                            a->kind);
    if (a->in_keys.n != a->in_addrs.n)
        return dmri_err_set(err, DMRI_EINVAL, "%zu in_keys but %zu in_addrs", a->in_keys.n,
                            a->in_addrs.n);
    dmri_wtask_t *t = dmri_calloc(1, sizeof *t);
    t->item.run = dmri_wtask_run;
    t->job = a->job;
    t->task = a->task;
    t->kind = a->kind;
    t->flags = a->flags;
    t->subject = dmri_strdup(a->subject ? a->subject : "");
    t->b0_threshold = a->b0_threshold;
    t->nin = a->in_keys.n;
    t->in_keys = copy_strs(&a->in_keys);
    t->in_addrs = copy_strs(&a->in_addrs);
    t->in_refs = dmri_calloc(t->nin ? t->nin : 1, sizeof *t->in_refs);
    t->inputs = dmri_calloc(t->nin ? t->nin : 1, sizeof *t->inputs);
    t->out_key = dmri_strdup(a->out_key ? a->out_key : "");
    int rc = 0;
    if (to_int(a->v0, &t->v0) || to_int(a->v1, &t->v1) || to_int(a->z0, &t->z0) ||
        to_int(a->z1, &t->z1) || a->slab_slices > MAX_INDEX || a->vols_per_task > MAX_INDEX) {
        rc = dmri_err_set(err, DMRI_EINVAL, "task ranges or chunking out of range");
        goto fail;
    }
    t->slab_slices = (int)a->slab_slices;
    t->vols_per_task = (int)a->vols_per_task;
    if (!graph) {
        if (!t->subject[0]) {
            rc = dmri_err_set(err, DMRI_EINVAL, "LOAD without a subject");
            goto fail;
        }
        *out = t;
        return 0;
    }
    if (t->nin < 1) {
        rc = dmri_err_set(err, DMRI_EINVAL, "%s task without inputs",
                          dmri_task_kind_name((dmri_task_kind_t)t->kind));
        goto fail;
    }
    for (size_t i = 0; i < t->nin; i++) {
        uint64_t job;
        if (dmri_key_parse(t->in_keys[i], &job, &t->in_refs[i]) != 0 || job != t->job) {
            rc = dmri_err_set(err, DMRI_EINVAL, "input key '%.200s' is not a chunk of job %" PRIu64,
                              t->in_keys[i], t->job);
            goto fail;
        }
    }
    if (t->in_refs[0].kind != DMRI_KEY_INFO) {
        rc = dmri_err_set(err, DMRI_EINVAL, "first input '%.200s' is not the info chunk",
                          t->in_keys[0]);
        goto fail;
    }
    for (size_t i = 1; i < t->nin; i++) {
        for (size_t k = 0; k < i; k++) {
            if (strcmp(t->in_keys[i], t->in_keys[k]) == 0) {
                rc = dmri_err_set(err, DMRI_EINVAL, "input key '%.200s' is listed twice",
                                  t->in_keys[i]);
                goto fail;
            }
        }
    }
    uint64_t ojob;
    dmri_keyref_t oref;
    if (dmri_key_parse(t->out_key, &ojob, &oref) != 0 || ojob != t->job) {
        rc = dmri_err_set(err, DMRI_EINVAL, "output key '%.200s' is not a chunk of job %" PRIu64,
                          t->out_key, t->job);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    dmri_wtask_destroy(&t);
    return rc;
}

static void set_outputs(dmri_wtask_t *t, size_t n) {
    t->out_keys.n = 0;
    t->out_keys.v = dmri_calloc(n ? n : 1, sizeof(char *));
    t->out_sizes.n = 0;
    t->out_sizes.v = dmri_calloc(n ? n : 1, sizeof(uint64_t));
}

static void add_output(dmri_wtask_t *t, const char *key, size_t size) {
    t->out_keys.v[t->out_keys.n++] = dmri_strdup(key);
    t->out_sizes.v[t->out_sizes.n++] = size;
}

static int run_load(dmri_wtask_t *t) {
    dmri_info_t info;
    dmri_chunk_t *raw = NULL;
    int nraw = 0;
    int rc = dmri_chunk_load(t->subject, t->data_dir, t->s3, t->b0_threshold, (t->flags & 1) != 0,
                             t->slab_slices, t->vols_per_task, &info, &raw, &nraw, &t->err);
    if (rc != 0)
        return rc;
    uint8_t *blob = NULL;
    size_t blen = 0;
    if ((rc = dmri_info_encode(&info, &blob, &blen)) != 0) {
        dmri_err_set(&t->err, rc, "%s: cannot encode the info chunk", t->subject);
        dmri_info_close(&info);
        goto out;
    }
    dmri_jobinfo_t *ji = NULL;
    if ((rc = dmri_jobinfo_adopt(t->job, &info, (t->flags & 2) != 0, &ji, &t->err)) != 0) {
        dmri_free(blob);
        goto out;
    }
    int nslabs = ji->graph.nslabs;
    if (nslabs < 1 || nraw % nslabs != 0) {
        rc = dmri_err_set(&t->err, DMRI_EINVAL, "%s: %d raw chunks do not fill %d slabs",
                          t->subject, nraw, nslabs);
        dmri_jobinfo_unref(ji);
        dmri_free(blob);
        goto out;
    }
    t->info_blob = blob;
    t->info_len = blen;
    t->loaded_ji = ji;
    set_outputs(t, 1 + (size_t)nraw);
    char key[128];
    dmri_keyref_t ref = {DMRI_KEY_INFO, -1, -1};
    if ((rc = dmri_key_format(key, sizeof key, t->job, &ref)) != 0)
        goto out;
    void *copy = dmri_malloc(blen);
    memcpy(copy, blob, blen);
    if ((rc = dmri_wstore_put(t->store, key, copy, blen, 0, t->generation, NULL)) != 0)
        goto out;
    add_output(t, key, blen);
    for (int i = 0; i < nraw; i++) {
        ref.kind = DMRI_KEY_RAW;
        ref.g = i / nslabs;
        ref.s = i % nslabs;
        if ((rc = dmri_key_format(key, sizeof key, t->job, &ref)) != 0)
            goto out;
        size_t size = raw[i].size;
        rc = dmri_wstore_put(t->store, key, raw[i].data, size, 0, t->generation, NULL);
        raw[i].data = NULL; /* the store owns it now, even on failure */
        if (rc != 0)
            goto out;
        add_output(t, key, size);
    }
out:
    for (int i = 0; i < nraw; i++)
        dmri_free(raw[i].data);
    dmri_free(raw);
    if (rc == DMRI_ECANCEL)
        dmri_err_set(&t->err, rc, "the store was cleared (re-registered with the scheduler)");
    else if (rc != 0 && !t->err.msg[0])
        dmri_err_set(&t->err, rc, "%s: %s", t->subject, dmri_strerror(rc));
    return rc;
}

static int run_graph(dmri_wtask_t *t) {
    dmri_chunk_t *in = dmri_calloc(t->nin, sizeof *in);
    int rc = 0;
    for (size_t i = 0; i < t->nin && rc == 0; i++) {
        if (!t->inputs[i])
            continue; /* the info chunk, passed decoded */
        const void *d;
        size_t n;
        rc = dmri_wstore_entry_data(t->inputs[i], &d, &n, &t->err);
        if (rc != 0)
            t->lost_input = t->in_keys[i];
        in[i].data = (void *)d;
        in[i].size = n;
    }
    dmri_chunk_t out = {NULL, 0};
    if (rc == 0) {
        dmri_task_t gt = {.kind = (dmri_task_kind_t)t->kind, .v0 = t->v0, .v1 = t->v1,
                          .z0 = t->z0, .z1 = t->z1, .output = -1, .ndeps = 0, .deps = NULL};
        rc = dmri_chunk_run(&t->ji->info, &t->ji->graph, &gt, t->in_refs, in, (int)t->nin, &out,
                            &t->err);
    }
    dmri_free(in);
    if (rc != 0)
        return rc;
    set_outputs(t, 1);
    size_t size = out.size;
    rc = dmri_wstore_put(t->store, t->out_key, out.data, size, 0, t->generation, NULL);
    if (rc == DMRI_ECANCEL)
        return dmri_err_set(&t->err, rc,
                            "the store was cleared (re-registered with the scheduler)");
    add_output(t, t->out_key, size);
    return 0;
}

void dmri_wtask_run(dmri_pool_item_t *it) {
    dmri_wtask_t *t = (dmri_wtask_t *)it;
    double t0 = dmri_now();
    t->thread = dmri_pool_thread_index();
    t->rc = t->kind == DMRI_TASK_KIND_LOAD ? run_load(t) : run_graph(t);
    t->seconds = dmri_now() - t0;
}

void dmri_wtask_label(const dmri_wtask_t *t, char *out, size_t outsz) {
    if (t->kind == DMRI_TASK_KIND_LOAD)
        snprintf(out, outsz, "J%" PRIu64 " task %" PRIu64 " load %.200s", t->job, t->task,
                 t->subject);
    else
        snprintf(out, outsz, "J%" PRIu64 " task %" PRIu64 " %s -> %.200s", t->job, t->task,
                 dmri_task_kind_name((dmri_task_kind_t)t->kind), t->out_key);
}

static void free_strs(char **v, size_t n) {
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        dmri_free(v[i]);
    dmri_free(v);
}

void dmri_wtask_destroy(dmri_wtask_t **tp) {
    if (!tp || !*tp)
        return;
    dmri_wtask_t *t = *tp;
    for (size_t i = 0; t->inputs && i < t->nin; i++)
        dmri_wstore_unref(t->inputs[i]);
    dmri_free(t->inputs);
    dmri_jobinfo_unref(t->ji);
    dmri_jobinfo_unref(t->loaded_ji);
    dmri_free(t->subject);
    free_strs(t->in_keys, t->nin);
    free_strs(t->in_addrs, t->nin);
    dmri_free(t->in_refs);
    dmri_free(t->out_key);
    free_strs(t->out_keys.v, t->out_keys.n);
    dmri_free(t->out_sizes.v);
    dmri_free(t->info_blob);
    dmri_free(t);
    *tp = NULL;
}
