/* run: one subject end to end in this process (see run.h). */
#include "preview.h"
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmri_alloc.h"
#include "executor.h"
#include "fsutil.h"
#include "graph.h"
#include "outputs.h"
#include "tasks.h"

void dmri_run_opts_default(dmri_run_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->out_dir = "dmri-out";
    o->nthreads = 1;
    o->b0_threshold = 10.0;
    o->vols_per_task = 1;
}

/* Per step: how many tasks, how many done, first start and last end. */
typedef struct {
    int total, done;
    double first_start, last_end;
} step_stat_t;

typedef struct {
    dmri_state_t *st;
    const dmri_run_opts_t *o;
    step_stat_t steps[DMRI_TASK_NKINDS];
    double t_start;
    double last_progress;
    int progress_drawn;
    int nlm_volumes_total;
    double nlm_voxel_volumes_done;
} run_ctx_t;

static int task_fn(void *ctx, int idx, const dmri_task_t *t, int thread, dmri_err_t *err) {
    (void)idx;
    (void)thread;
    run_ctx_t *rc = ctx;
    return dmri_task_run(rc->st, t, err);
}

static void logf_(const dmri_run_opts_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(const dmri_run_opts_t *o, const char *fmt, ...) {
    if (!o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->log, fmt, ap);
    va_end(ap);
    fflush(o->log);
}

static void clear_progress(run_ctx_t *rc) {
    if (rc->progress_drawn && rc->o->progress_tty && rc->o->log) {
        fprintf(rc->o->log, "\r%-78s\r", "");
        rc->progress_drawn = 0;
    }
}

static void task_done(void *ctx, int idx, const dmri_task_t *t, double start, double end) {
    (void)idx;
    run_ctx_t *rc = ctx;
    step_stat_t *s = &rc->steps[t->kind];
    if (s->done == 0 || start < s->first_start)
        s->first_start = start;
    if (end > s->last_end)
        s->last_end = end;
    s->done++;
    if (t->kind == DMRI_TASK_NLMEANS) {
        double frac = (double)s->done / s->total;
        double now = dmri_now();
        int last = s->done == s->total;
        /* On a terminal redraw often; in a log, one line per 10%. */
        int step10 = (int)(frac * 10) != (int)((double)(s->done - 1) / s->total * 10);
        if (!last && ((rc->o->progress_tty && now - rc->last_progress > 0.25) ||
                      (!rc->o->progress_tty && step10))) {
            double el = now - s->first_start;
            double left = frac > 0 ? el / frac - el : 0;
            if (rc->o->log) {
                fprintf(rc->o->log, "%s  denoising %3.0f%% (%d/%d tasks), %.0f s elapsed, ~%.0f s left%s",
                        rc->o->progress_tty ? "\r" : "", 100 * frac, s->done, s->total, el, left,
                        rc->o->progress_tty ? "" : "\n");
                fflush(rc->o->log);
            }
            rc->progress_drawn = rc->o->progress_tty;
            rc->last_progress = now;
        }
    }
    if (s->done == s->total && t->kind != DMRI_TASK_SAVE) {
        clear_progress(rc);
        logf_(rc->o, "  %-32s %8.2f s\n", dmri_task_kind_title(t->kind),
              s->last_end - s->first_start);
    }
}

static void remove_stage(const char *stage) {
    DIR *d = opendir(stage);
    if (d) {
        struct dirent *e;
        char p[DMRI_PATH_MAX];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (dmri_path_join(p, sizeof p, stage, e->d_name) == 0)
                unlink(p);
        }
        closedir(d);
    }
    rmdir(stage);
}

static int write_summary(const run_ctx_t *rc, const dmri_subject_t *subj, const char *path,
                         double load_s, double total_s, dmri_err_t *err) {
    const dmri_state_t *st = rc->st;
    dmri_summary_t s = {.subject = subj->paths.name,
                        .input = subj->paths.data_path,
                        .geom = &subj->img,
                        .b0_threshold = rc->o->b0_threshold,
                        .b0_volumes = subj->gtab.nb0,
                        .otsu_threshold = st->otsu_threshold,
                        .mask_voxels = st->mask_count,
                        .denoised = !rc->o->skip_denoise,
                        .sigma = st->sigma,
                        .load_s = load_s,
                        .total_s = total_s,
                        .threads = rc->o->nthreads};
    for (int k = 0; k < DMRI_TASK_NKINDS; k++) {
        s.has_step[k] = rc->steps[k].total > 0;
        s.step_s[k] = rc->steps[k].last_end - rc->steps[k].first_start;
    }
    return dmri_outputs_write_summary(path, &s, err);
}

int dmri_run_subject(const dmri_subject_paths_t *paths, const dmri_run_opts_t *o,
                     dmri_err_t *err) {
    double t0 = dmri_now();
    int rc;
    char stage[DMRI_PATH_MAX];
    /* Refuse an unwritable output folder before hours of work. */
    if ((rc = dmri_mkdir_p(o->out_dir, err)) != 0)
        return rc;
    int n = snprintf(stage, sizeof stage, "%s/.dmri-partial-%ld", o->out_dir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof stage)
        return dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", o->out_dir);
    remove_stage(stage);
    if (mkdir(stage, 0755) != 0)
        return dmri_err_set(err, DMRI_EIO, "%s: cannot write in the output folder: %s",
                            o->out_dir, strerror(errno));

    dmri_subject_t subj;
    dmri_subject_opts_t sopts = {.b0_threshold = o->b0_threshold,
                                 .skip_denoise = o->skip_denoise, .s3 = o->s3};
    if ((rc = dmri_subject_load(&subj, paths, &sopts, err)) != 0) {
        remove_stage(stage);
        return rc;
    }
    double t_load = dmri_now() - t0;
    const dmri_image_t *img = &subj.img;
    logf_(o, "  %-32s %8.2f s   (%dx%dx%dx%d %s%s, %d b0)\n", "load", t_load, img->nx, img->ny,
          img->nz, img->nv, dmri_datatype_name(img->datatype), img->scaled ? " scaled" : "",
          subj.gtab.nb0);
    if (subj.source_note[0])
        logf_(o, "  %-32s %s\n", "", subj.source_note);

    dmri_graph_params_t gp;
    dmri_graph_params_default(&gp, img->nx, img->ny, img->nz, img->nv);
    gp.skip_denoise = o->skip_denoise;
    gp.save_denoised = o->save_denoised;
    gp.slab_slices = o->slab_slices;
    gp.vols_per_task = o->vols_per_task > 0 ? o->vols_per_task : 1;
    dmri_graph_t g;
    if ((rc = dmri_graph_build(&g, &gp, err)) != 0) {
        dmri_subject_close(&subj);
        remove_stage(stage);
        return rc;
    }
    dmri_state_t st;
    if ((rc = dmri_state_init(&st, &subj, &subj.img, &g, stage, err)) != 0) {
        dmri_graph_close(&g);
        dmri_subject_close(&subj);
        remove_stage(stage);
        return rc;
    }
    run_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.st = &st;
    ctx.o = o;
    ctx.t_start = t0;
    for (int i = 0; i < g.ntasks; i++)
        ctx.steps[g.tasks[i].kind].total++;

    rc = dmri_execute_local(&g, o->nthreads, task_fn, task_done, &ctx, err);
    clear_progress(&ctx);
    if (rc == 0) {
        logf_(o, "  %-32s %8.2f s\n", dmri_task_kind_title(DMRI_TASK_SAVE),
              ctx.steps[DMRI_TASK_SAVE].last_end - ctx.steps[DMRI_TASK_SAVE].first_start);
        /* Every file is complete in the stage folder: move them into place. */
        for (int i = 0; i < g.ntasks && rc == 0; i++) {
            if (g.tasks[i].kind != DMRI_TASK_SAVE)
                continue;
            const char *name = dmri_output_file_name((dmri_output_t)g.tasks[i].output);
            char from[DMRI_PATH_MAX], to[DMRI_PATH_MAX];
            if (dmri_path_join(from, sizeof from, stage, name) != 0 ||
                dmri_path_join(to, sizeof to, o->out_dir, name) != 0) {
                rc = dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", o->out_dir);
                break;
            }
            if (rename(from, to) != 0)
                rc = dmri_err_set(err, DMRI_EIO, "%s: cannot move into place: %s", to,
                                  strerror(errno));
        }
        if (rc == 0) {
            char sp[DMRI_PATH_MAX];
            if (dmri_path_join(sp, sizeof sp, o->out_dir, "summary.json") != 0)
                rc = dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", o->out_dir);
            else
                rc = write_summary(&ctx, &subj, sp, t_load, dmri_now() - t0, err);
        }
        if (rc == 0 && o->preview) {
            char pp[DMRI_PATH_MAX];
            if (dmri_path_join(pp, sizeof pp, o->out_dir, DMRI_PREVIEW_FILE) != 0)
                rc = dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", o->out_dir);
            else
                rc = dmri_preview_write(pp, img->nx, img->ny, img->nz, st.fa, st.color_fa, err);
        }
    }
    remove_stage(stage);
    if (rc == 0)
        logf_(o, "  %-32s %8.2f s   (mask %zu voxels)\n", "total", dmri_now() - t0,
              st.mask_count);
    dmri_state_close(&st);
    dmri_graph_close(&g);
    dmri_subject_close(&subj);
    return rc;
}
