/* run: the whole pipeline for one subject in this process (dmri-run): load
 * and validate, execute the task graph on a thread pool, move the outputs
 * into place and write summary.json. Either every output file appears, or
 * none does. */
#ifndef DMRI_RUN_H
#define DMRI_RUN_H

#include <stdio.h>

#include "dmri_err.h"
#include "subject.h"

typedef struct {
    const char *out_dir;     /* this subject's output folder (created) */
    int nthreads;            /* >= 1 */
    double b0_threshold;     /* default 10 */
    int skip_denoise;
    int save_denoised;
    int preview;             /* also write preview.png (preview.h) */
    int slab_slices;         /* graph tuning (0 = whole volumes) */
    int vols_per_task;       /* graph tuning (>= 1) */
    FILE *log;               /* step lines and progress; NULL for silence */
    int progress_tty;        /* 1: redraw the progress line in place */
    const dmri_s3_source_t *s3; /* remote subjects (subject_s3.h), else NULL */
} dmri_run_opts_t;

void dmri_run_opts_default(dmri_run_opts_t *o);

int dmri_run_subject(const dmri_subject_paths_t *paths, const dmri_run_opts_t *o,
                     dmri_err_t *err);

#endif
