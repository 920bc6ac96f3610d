/* journal: the scheduler's memory across a crash (--state-dir). An append-only
 * file of one-line records — a subject submitted (before the client hears
 * ACCEPTED), finished, failed or cancelled — each written with one write()
 * and made durable with fdatasync, so after kill -9 or a power cut the file
 * holds every acknowledged submission. A torn last line (crash mid-write) is
 * ignored on replay. At start the file is replayed and rewritten with only
 * what is still unfinished (atomic rename), so it never grows without bound.
 *
 * Record format (tab-separated, '\n'-terminated; see proto/PROTOCOL.md):
 *   S <job> <flags> <b0> <resumes> <client> <subject>   submitted
 *   D <job> | F <job> | C <job>                         done, failed, cancelled
 * Subjects and client names never contain control characters (the scheduler
 * refuses them), so tabs and newlines cannot be forged into a record. */
#ifndef DMRI_JOURNAL_H
#define DMRI_JOURNAL_H

#include <stdint.h>

#include "dmri_err.h"

typedef struct {
    uint64_t job;
    uint64_t flags;
    double b0_threshold;
    uint64_t resumes;   /* the job this one continues, 0 if none */
    char client[256];
    char subject[4100];   /* a protocol str: up to 4096 bytes */
} dmri_journal_job_t;

typedef struct {
    int fd;                     /* -1: no journal (no --state-dir) */
    int lock_fd;                /* DIR/lock, flocked: one scheduler per state dir */
    char path[4096];
    uint64_t max_job;           /* highest job id ever recorded */
    dmri_journal_job_t *unfinished; /* submitted, not ended, at open */
    int nunfinished;
    int torn;                   /* lines ignored at replay */
} dmri_journal_t;

/* Create DIR if needed, lock it (a second scheduler on the same DIR is
 * refused), replay DIR/journal, compact it. */
int dmri_journal_open(dmri_journal_t *jn, const char *dir, dmri_err_t *err);
void dmri_journal_close(dmri_journal_t *jn);

/* Append one record and make it durable. Returns 0 or DMRI_EIO. */
int dmri_journal_submitted(dmri_journal_t *jn, const dmri_journal_job_t *job, dmri_err_t *err);
int dmri_journal_ended(dmri_journal_t *jn, char what /* 'D', 'F' or 'C' */, uint64_t job,
                       dmri_err_t *err);

/* 1 if s can be written into a record (no control characters, not empty). */
int dmri_journal_text_ok(const char *s);

#endif
