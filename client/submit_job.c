/* submit_job: one subject of dmri-submit (see submit_job.h). Besides feeding
 * the assembly, it keeps its own list of the chunks the outputs need, only to
 * say which ones are missing when the scheduler claims a job is done early. */
#include "submit_job.h"

#include <limits.h> /* PATH_MAX */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmri_alloc.h"
#include "fsutil.h"
#include "graph.h"

#define MISSING_LISTED 6 /* missing keys named in the error, the rest counted */

static void base_name(const char *path, char *out, size_t outsz) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    snprintf(out, outsz, "%.*s", (int)(n - b), path + b);
}

void dmri_submit_job_init(dmri_submit_job_t *j, const char *arg, uint64_t request,
                          int save_denoised) {
    memset(j, 0, sizeof *j);
    j->arg = arg;
    j->request = request;
    j->save_denoised = save_denoised;
    j->decile = -1;
    j->state = DMRI_SUBMIT_JOB_SENT;
    char abs[PATH_MAX];
    if (arg[0] != '/' && dmri_is_dir(arg) && realpath(arg, abs))
        snprintf(j->subject, sizeof j->subject, "%s", abs);
    else
        snprintf(j->subject, sizeof j->subject, "%s", arg);
    /* A provisional name for the progress display; the info chunk has the
     * real one (an HCP .../<id>/T1w/Diffusion folder is named <id>). */
    base_name(arg, j->name, sizeof j->name);
    if (strcmp(j->name, "Diffusion") == 0) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", arg);
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(parent, '/');
            while (slash && slash[1] == '\0' && slash != parent) {
                *slash = '\0';
                slash = strrchr(parent, '/');
            }
            if (slash && slash != parent)
                *slash = '\0';
        }
        base_name(parent, j->name, sizeof j->name);
    }
    if (!j->name[0])
        snprintf(j->name, sizeof j->name, "%s", arg);
}

int dmri_submit_name_safe(const char *name) {
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int ref_cmp(const dmri_keyref_t *a, const dmri_keyref_t *b) {
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->g != b->g)
        return a->g < b->g ? -1 : 1;
    return a->s < b->s ? -1 : a->s > b->s;
}

static int want_cmp(const void *a, const void *b) {
    return ref_cmp(&((const dmri_submit_want_t *)a)->ref, &((const dmri_submit_want_t *)b)->ref);
}

/* The union of the SAVE tasks' inputs (the info chunk left out). */
static int build_wants(dmri_submit_job_t *j, dmri_err_t *err) {
    dmri_graph_params_t p;
    dmri_info_graph_params(&j->info, j->save_denoised, &p);
    dmri_graph_t g;
    int rc = dmri_graph_build(&g, &p, err);
    if (rc != 0)
        return rc;
    size_t cap = 64, n = 0;
    dmri_submit_want_t *want = dmri_malloc(cap * sizeof *want);
    for (int t = 0; t < g.ntasks && rc == 0; t++) {
        if (g.tasks[t].kind != DMRI_TASK_SAVE)
            continue;
        int k = dmri_task_inputs(&j->info, &g, &g.tasks[t], NULL, 0); /* count */
        dmri_keyref_t *refs = k > 0 ? dmri_malloc((size_t)k * sizeof *refs) : NULL;
        if (k > 0)
            k = dmri_task_inputs(&j->info, &g, &g.tasks[t], refs, k);
        if (k < 0) {
            rc = dmri_err_set(err, k, "inputs of the %s output: %s",
                              dmri_output_file_name((dmri_output_t)g.tasks[t].output),
                              dmri_strerror(k));
        }
        for (int i = 0; i < k; i++) {
            if (refs[i].kind == DMRI_KEY_INFO)
                continue;
            if (n == cap) {
                cap *= 2;
                want = dmri_realloc(want, cap * sizeof *want);
            }
            want[n].ref = refs[i];
            want[n].received = 0;
            n++;
        }
        dmri_free(refs);
    }
    dmri_graph_close(&g);
    if (rc != 0) {
        dmri_free(want);
        return rc;
    }
    qsort(want, n, sizeof *want, want_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || ref_cmp(&want[u - 1].ref, &want[i].ref) != 0)
            want[u++] = want[i];
    j->want = want;
    j->nwant = u;
    return 0;
}

static void mark_received(dmri_submit_job_t *j, const dmri_keyref_t *ref) {
    dmri_submit_want_t key = {*ref, 0};
    dmri_submit_want_t *w = bsearch(&key, j->want, j->nwant, sizeof *j->want, want_cmp);
    if (w)
        w->received = 1;
}

static int take_info(dmri_submit_job_t *j, const void *data, size_t size, dmri_err_t *err) {
    int rc = dmri_info_decode(data, size, &j->info, err);
    if (rc != 0)
        return err && strncmp(err->msg, "info chunk", 10) != 0
                   ? dmri_err_prefix(err, "info chunk: ")
                   : rc;
    j->have_info = 1;
    if (!dmri_submit_name_safe(j->info.name))
        return dmri_err_set(err, DMRI_EFORMAT,
                            "info chunk: subject name '%s' cannot be a folder name",
                            j->info.name);
    snprintf(j->name, sizeof j->name, "%s", j->info.name);
    rc = build_wants(j, err);
    if (rc != 0)
        return rc;
    j->assembly = dmri_assembly_new(&j->info, j->save_denoised);
    if (!j->assembly)
        return dmri_err_set(err, DMRI_EINVAL, "info chunk: cannot assemble a %dx%dx%dx%d subject",
                            j->info.geom.nx, j->info.geom.ny, j->info.geom.nz,
                            j->info.geom.nv);
    return 0;
}

int dmri_submit_job_result(dmri_submit_job_t *j, const char *key, const void *data, size_t size,
                           dmri_err_t *err) {
    if (!dmri_submit_job_active(j))
        return 0;
    uint64_t kjob;
    dmri_keyref_t ref;
    if (dmri_key_parse(key, &kjob, &ref) != 0)
        return dmri_err_set(err, DMRI_EFORMAT, "result key '%.200s' is not a chunk key", key);
    if (kjob != j->job)
        return dmri_err_set(err, DMRI_EFORMAT, "result %.200s of job %llu is not a key of job %llu",
                            key, (unsigned long long)kjob, (unsigned long long)j->job);
    j->bytes += size;
    if (ref.kind == DMRI_KEY_INFO)
        return j->have_info ? 0 : take_info(j, data, size, err);
    if (!j->assembly)
        return dmri_err_set(err, DMRI_EFORMAT, "result %s arrived before the info chunk", key);
    /* The assembly's errors name the subject and the chunk already. */
    int rc = dmri_assembly_add(j->assembly, &ref, data, size, err);
    if (rc != 0)
        return err && err->msg[0] ? rc : dmri_err_set(err, rc, "result %s: %s", key,
                                                      dmri_strerror(rc));
    mark_received(j, &ref);
    return 0;
}

static void list_missing(const dmri_submit_job_t *j, char *out, size_t outsz) {
    size_t len = 0, nmiss = 0;
    out[0] = '\0';
    for (size_t i = 0; i < j->nwant; i++) {
        if (j->want[i].received)
            continue;
        if (nmiss++ < MISSING_LISTED) {
            char key[128];
            if (dmri_key_format(key, sizeof key, j->job, &j->want[i].ref) != 0)
                snprintf(key, sizeof key, "?");
            int n = snprintf(out + len, outsz - len, "%s%s", len ? ", " : "", key);
            if (n > 0 && (size_t)n < outsz - len)
                len += (size_t)n;
        }
    }
    if (nmiss > MISSING_LISTED)
        snprintf(out + len, outsz - len, " and %zu more", nmiss - MISSING_LISTED);
    else if (nmiss == 0)
        snprintf(out, outsz, "the assembly is incomplete");
}

int dmri_submit_job_finish(dmri_submit_job_t *j, const char *out_root, const char *summary,
                           dmri_err_t *err) {
    int rc = 0;
    if (!j->assembly) {
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "scheduler reported done but chunks are missing: J%llu/info",
                          (unsigned long long)j->job);
    } else if (!dmri_assembly_complete(j->assembly)) {
        char miss[400];
        list_missing(j, miss, sizeof miss);
        rc = dmri_err_set(err, DMRI_EFORMAT, "scheduler reported done but chunks are missing: %s",
                          miss);
    } else if (dmri_path_join(j->out_dir, sizeof j->out_dir, out_root, j->name) != 0) {
        rc = dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", out_root);
    } else {
        /* Only a JSON object can be merged into summary.json as "cluster". */
        const char *extra = summary;
        if (extra) {
            while (*extra == ' ' || *extra == '\n' || *extra == '\t' || *extra == '\r')
                extra++;
            size_t n = strlen(extra);
            while (n > 0 && (extra[n - 1] == ' ' || extra[n - 1] == '\n' ||
                             extra[n - 1] == '\t' || extra[n - 1] == '\r'))
                n--;
            if (n < 2 || extra[0] != '{' || extra[n - 1] != '}')
                extra = NULL;
        }
        rc = dmri_assembly_write(j->assembly, j->out_dir, extra ? summary : NULL, err);
        if (rc == 0 && j->preview)
            rc = dmri_assembly_write_preview(j->assembly, j->out_dir, err);
    }
    if (j->assembly)
        dmri_assembly_destroy(&j->assembly);
    if (rc == 0) {
        j->state = DMRI_SUBMIT_JOB_DONE;
    } else {
        j->state = DMRI_SUBMIT_JOB_FAILED;
        snprintf(j->error, sizeof j->error, "%s",
                 err && err->msg[0] ? err->msg : dmri_strerror(rc));
    }
    return rc;
}

int dmri_submit_job_fail(dmri_submit_job_t *j, const char *msg) {
    if (!dmri_submit_job_active(j))
        return 0;
    j->state = DMRI_SUBMIT_JOB_FAILED;
    snprintf(j->error, sizeof j->error, "%s", msg && msg[0] ? msg : "unknown error");
    if (j->assembly)
        dmri_assembly_destroy(&j->assembly);
    return 1;
}

int dmri_submit_job_active(const dmri_submit_job_t *j) {
    return j->state == DMRI_SUBMIT_JOB_SENT || j->state == DMRI_SUBMIT_JOB_RUNNING;
}

void dmri_submit_job_close(dmri_submit_job_t *j) {
    if (j->assembly)
        dmri_assembly_destroy(&j->assembly);
    if (j->have_info) {
        dmri_info_close(&j->info);
        j->have_info = 0;
    }
    dmri_free(j->want);
    j->want = NULL;
    j->nwant = 0;
    dmri_free(j->summary_json);
    dmri_free(j->events_json);
    j->summary_json = j->events_json = NULL;
}

void dmri_submit_job_restart(dmri_submit_job_t *j, uint64_t request) {
    if (!dmri_submit_job_active(j))
        return;
    dmri_submit_job_close(j); /* chunks of the old job id are of no use */
    j->state = DMRI_SUBMIT_JOB_SENT;
    j->request = request;
    j->resume = j->job;
    j->job = 0;
    j->done = j->total = 0;
    j->step[0] = '\0';
    j->decile = -1;
    j->decile_total = 0;
    j->bytes = 0;
}
