/* wtask: one task assigned to this worker — a copy of its TASK_ASSIGN, the
 * references to its input chunks as they become available, and its body,
 * run on a compute thread: LOAD (read a subject, cut it into chunks) or a
 * graph task (dmri_chunk_run). Outputs go into the store; the result fields
 * tell the main thread what to report. */
#ifndef DMRI_WTASK_H
#define DMRI_WTASK_H

#include <stddef.h>
#include <stdint.h>

#include "chunks.h"
#include "jobinfo.h"
#include "pool.h"
#include "proto.h"
#include "store.h"

typedef struct dmri_wtask {
    dmri_pool_item_t item;        /* first: the pool hands this back */
    /* the assignment */
    uint64_t job, task, kind, flags;
    char *subject;                /* LOAD */
    double b0_threshold;          /* LOAD */
    int v0, v1, z0, z1;           /* graph task ranges */
    int slab_slices, vols_per_task; /* LOAD chunking */
    size_t nin;
    char **in_keys;               /* nin */
    char **in_addrs;              /* nin ("" = here) */
    dmri_keyref_t *in_refs;       /* nin, parsed in_keys */
    char *out_key;                /* graph tasks */
    /* inputs, gathered by the main thread */
    dmri_wstore_entry_t **inputs;  /* nin references (NULL for info when ji is set) */
    size_t nmissing;              /* inputs still being fetched */
    dmri_jobinfo_t *ji;           /* graph tasks: the job's info and graph */
    /* run context, set before submitting */
    dmri_wstore_t *store;
    const char *data_dir;
    const dmri_s3_source_t *s3;   /* NULL unless the worker reads from S3 */
    uint64_t generation;          /* store generation at assignment */
    /* results, set by the compute thread */
    int rc;                       /* 0, DMRI_ECANCEL if the store was cleared, or an error */
    dmri_err_t err;
    const char *lost_input;       /* in_keys[i] whose spilled copy could not be read, or NULL */
    double seconds;               /* wall time of the body */
    int thread;                   /* pool thread that ran it */
    /* inputs fetched from peers (main thread): for TASK_DONE */
    double t_assigned, fetch_seconds;
    uint64_t fetch_bytes;
    dmri_strlist_t out_keys;      /* owned */
    dmri_u64list_t out_sizes;     /* owned */
    uint8_t *info_blob;           /* LOAD: the info chunk for TASK_DONE.info */
    size_t info_len;
    dmri_jobinfo_t *loaded_ji;    /* LOAD: the decoded info, for the job cache */
    struct dmri_wtask *next;      /* the main thread's lists */
} dmri_wtask_t;

/* Copy and check a TASK_ASSIGN of a LOAD or graph task (not NOOP). Fails
 * with DMRI_EINVAL and a message for the scheduler when the kind, the keys
 * or the ranges make no sense. */
int dmri_wtask_new(const dmri_msg_task_assign_t *a, dmri_wtask_t **out, dmri_err_t *err);

/* The compute thread's body (dmri_pool_item_t.run). */
void dmri_wtask_run(dmri_pool_item_t *it);

/* "J7 #12 nlmeans g3 s2" (or "load subj01") for log lines. */
void dmri_wtask_label(const dmri_wtask_t *t, char *out, size_t outsz);

/* Drops the input references and the job info, frees everything. Safe on
 * NULL and twice. */
void dmri_wtask_destroy(dmri_wtask_t **t);

#endif
