/* jobinfo: the decoded info chunk and task graph of each job this worker
 * runs tasks for, kept so a task of a known job neither fetches nor decodes
 * the info chunk again. A small LRU cache; entries are reference counted
 * because a running task keeps using its entry after eviction.
 * Main thread only (compute threads read an entry they were handed, which
 * is immutable, and never touch the counts). */
#ifndef DMRI_JOBINFO_H
#define DMRI_JOBINFO_H

#include <stddef.h>
#include <stdint.h>

#include "chunks.h"
#include "dmri_err.h"
#include "graph.h"

typedef struct dmri_jobinfo {
    uint64_t job;          /* scheduler's job id */
    int save_denoised;     /* the graph was built with it */
    dmri_info_t info;      /* decoded info chunk */
    dmri_graph_t graph;    /* dmri_info_graph_params(info, save_denoised) */
    int refs;              /* the cache's and the tasks' */
} dmri_jobinfo_t;

/* Build an entry (one reference) from an info chunk's bytes. */
int dmri_jobinfo_decode(uint64_t job, const void *blob, size_t len, int save_denoised,
                        dmri_jobinfo_t **out, dmri_err_t *err);
/* Build an entry from an info the caller gives up (it is moved: *info is
 * zeroed). */
int dmri_jobinfo_adopt(uint64_t job, dmri_info_t *info, int save_denoised, dmri_jobinfo_t **out,
                       dmri_err_t *err);
void dmri_jobinfo_ref(dmri_jobinfo_t *ji);
void dmri_jobinfo_unref(dmri_jobinfo_t *ji); /* safe on NULL */

typedef struct dmri_jobcache dmri_jobcache_t;

dmri_jobcache_t *dmri_jobcache_new(int capacity);
void dmri_jobcache_destroy(dmri_jobcache_t **c);
/* The entry of job (a new reference), or NULL. */
dmri_jobinfo_t *dmri_jobcache_get(dmri_jobcache_t *c, uint64_t job);
/* Keep ji (takes a reference of its own), replacing an entry of the same job
 * and evicting the least recently used one beyond capacity. */
void dmri_jobcache_put(dmri_jobcache_t *c, dmri_jobinfo_t *ji);
/* Forget everything (job ids restart with a new scheduler). */
void dmri_jobcache_clear(dmri_jobcache_t *c);

#endif
