/* submit_job: one subject as dmri-submit follows it — its request and job
 * ids, its progress, and the result chunks on their way into an assembly
 * (pipeline/chunks.h) — with no socket in sight: the caller hands it what
 * arrived and it answers with an error when a chunk is wrong, so a bad or
 * hostile scheduler fails one subject and never crashes the client. */
#ifndef DMRI_SUBMIT_JOB_H
#define DMRI_SUBMIT_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "chunks.h"
#include "dmri_err.h"

typedef enum {
    DMRI_SUBMIT_JOB_SENT,     /* SUBMIT sent, no ACCEPTED yet */
    DMRI_SUBMIT_JOB_RUNNING,  /* accepted: job id known */
    DMRI_SUBMIT_JOB_DONE,     /* outputs written */
    DMRI_SUBMIT_JOB_FAILED    /* error[] says why */
} dmri_submit_job_state_t;

typedef struct {
    dmri_keyref_t ref;
    int received;
} dmri_submit_want_t;

typedef struct {
    const char *arg;               /* the SUBJECT argument (borrowed) */
    char subject[4096];            /* what SUBMIT carries (absolute for a local folder) */
    char name[256];                /* output folder name: the info chunk's, else from arg */
    dmri_submit_job_state_t state;
    uint64_t request, job;
    uint64_t resume;               /* the job this one continues after a reconnect, or 0 */
    double sent_at;                /* when SUBMIT was sent (monotonic seconds) */
    int save_denoised;
    int preview;                   /* write preview.png too (set after init) */
    char *summary_json;            /* JOB_DONE.summary, for --report (owned) */
    char *events_json;             /* JOB_DONE.events, for --report (owned) */
    double wall_s;                 /* SUBMIT to JOB_DONE */
    uint64_t done, total;          /* last PROGRESS */
    char step[64];
    int decile;                    /* last 10 % step printed (logs), -1 none */
    uint64_t decile_total;         /* total that decile refers to */
    int have_info;
    dmri_info_t info;
    dmri_assembly_t *assembly;
    dmri_submit_want_t *want;      /* chunks the outputs need (sorted), for messages */
    size_t nwant;
    uint64_t bytes;                /* result bytes received */
    char error[DMRI_ERR_MSG_MAX];  /* why it failed */
    char out_dir[4096 + 300];      /* where the outputs went */
} dmri_submit_job_t;

/* Prepare job j for SUBJECT `arg`: an existing local folder given by a
 * relative path is made absolute (workers do not share our working folder);
 * anything else (an HCP id, an absolute path) is sent as given. */
void dmri_submit_job_init(dmri_submit_job_t *j, const char *arg, uint64_t request,
                          int save_denoised);

/* One RESULT: key and payload (size bytes, already checked against the
 * message). The info chunk must come first. Returns 0, or a negative code
 * with err saying what was wrong ("J7/maps/s2: ... "); the caller then fails
 * the job. Copies what it keeps: data may be freed after the call. */
int dmri_submit_job_result(dmri_submit_job_t *j, const char *key, const void *data, size_t size,
                           dmri_err_t *err);

/* JOB_DONE: write the outputs to out_root/<name> with the summary JSON
 * (may be NULL or "") merged into summary.json. Fails when chunks are missing
 * (err lists some of them). Releases the assembly either way. */
int dmri_submit_job_finish(dmri_submit_job_t *j, const char *out_root, const char *summary,
                           dmri_err_t *err);

/* Mark the job failed with a message (ignored if it already ended) and
 * release its chunks. Returns 1 if the state changed. */
int dmri_submit_job_fail(dmri_submit_job_t *j, const char *msg);

/* The scheduler was lost and is back: forget what arrived for the old job
 * and wait for a new ACCEPTED under `request` (j->resume = the old job id,
 * sent in SUBMIT so a scheduler with a journal knows it). No-op if ended. */
void dmri_submit_job_restart(dmri_submit_job_t *j, uint64_t request);

/* 1 while the job may still change (SENT or RUNNING). */
int dmri_submit_job_active(const dmri_submit_job_t *j);

/* Free everything; safe twice. */
void dmri_submit_job_close(dmri_submit_job_t *j);

/* 1 if `name` is safe as one folder name (not empty, ".", "..", no '/',
 * no control characters). */
int dmri_submit_name_safe(const char *name);

#endif
