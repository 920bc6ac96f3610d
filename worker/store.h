/* store: the chunks a worker holds, by key ("J7/raw/g3/s2"), as
 * dmri_wstore_* (dmri_store_t is image.h's sample type). Reference counts
 * keep a chunk alive while a task reads it or ZeroMQ sends it zero-copy,
 * whatever RELEASE says meanwhile; the memory of chunk data is
 * accounted, and above the memory limit the least recently used unreferenced
 * chunks are written to a private spill folder and read back transparently
 * when next used. Chunks are immutable, so a chunk read back keeps its spill
 * file and can be dropped from memory again without another write.
 *
 * Threads: every function may be called from any thread (one mutex guards
 * the store); dmri_wstore_unref is also safe from ZeroMQ's I/O thread (it
 * never touches the disk, except to delete the file of a chunk it frees). */
#ifndef DMRI_WSTORE_H
#define DMRI_WSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"

typedef struct dmri_wstore dmri_wstore_t;
typedef struct dmri_wstore_entry dmri_wstore_entry_t;

/* A transient chunk is a private copy fetched from another worker for the
 * tasks that need it: it leaves the store when its last reference goes (the
 * scheduler does not know this worker holds it, so it would never be
 * released). A permanent chunk stays until dmri_wstore_remove. */
#define DMRI_WSTORE_TRANSIENT 1

typedef struct {
    uint64_t memory;       /* bytes of chunk data in memory (incl. released but referenced) */
    uint64_t spilled;      /* bytes of held chunks that are only on disk */
    uint64_t disk;         /* bytes of spill files */
    size_t count;          /* keys held */
    uint64_t spills;       /* chunks written to disk so far */
    uint64_t reloads;      /* chunks read back so far */
    uint64_t spill_errors; /* failed writes (the chunk then stays in memory) */
} dmri_wstore_stats_t;

/* memory_limit: bytes of chunk data kept in memory before spilling (0: never
 * spill). spill_parent: folder in which a private dmri-spill-XXXXXX folder is
 * created on the first spill (NULL: /tmp); it is removed by destroy. */
dmri_wstore_t *dmri_wstore_new(uint64_t memory_limit, const char *spill_parent);

/* Frees every chunk and removes the spill folder. Call it when nothing can
 * use a chunk any more (after zmq_ctx_term, after the compute threads are
 * joined). Safe on NULL and twice. */
void dmri_wstore_destroy(dmri_wstore_t **s);

/* For a process exiting while compute threads may still run: removes the
 * spill files and folder, then keeps the store locked forever so no thread
 * can write there again. The caller must _exit soon after. */
void dmri_wstore_abandon(dmri_wstore_t *s);

/* Add a chunk. Takes ownership of data (dmri_malloc'd; NULL allowed for size 0)
 * in every case. A permanent chunk replaces a chunk of the same key (readers
 * of the old one keep it until they unref); a transient one is dropped in
 * favour of an existing chunk of that key. generation: the value of
 * dmri_wstore_generation when the work that produced the chunk started; if the
 * store was cleared since, the chunk is dropped and DMRI_ECANCEL returned.
 * ref: if not NULL, receives a reference to the chunk now held under key
 * (unref it). May spill other chunks to disk (a failed spill is counted in
 * the stats, not returned). */
int dmri_wstore_put(dmri_wstore_t *s, const char *key, void *data, size_t size, int flags,
                   uint64_t generation, dmri_wstore_entry_t **ref);

/* A reference to the chunk held under key, or NULL. The chunk may be on disk
 * until dmri_wstore_entry_data is called; a referenced chunk is never
 * spilled once in memory. */
dmri_wstore_entry_t *dmri_wstore_acquire(dmri_wstore_t *s, const char *key);

/* The chunk's bytes, read back from the spill folder if needed (DMRI_EIO with
 * err naming the file otherwise). Valid until the reference is dropped. */
int dmri_wstore_entry_data(dmri_wstore_entry_t *e, const void **data, size_t *size,
                          dmri_err_t *err);
size_t dmri_wstore_entry_size(const dmri_wstore_entry_t *e);
const char *dmri_wstore_entry_key(const dmri_wstore_entry_t *e);

/* Take one more reference to a chunk already referenced. */
void dmri_wstore_ref(dmri_wstore_entry_t *e);
/* Drop a reference; the chunk is freed when it was removed (or is transient)
 * and this was the last reference. Safe on NULL. */
void dmri_wstore_unref(dmri_wstore_entry_t *e);

/* 1 if key is held. */
int dmri_wstore_has(dmri_wstore_t *s, const char *key);

/* Forget key (RELEASE): returns 1 if it was held, else 0. Memory is freed at
 * once unless the chunk is referenced. */
int dmri_wstore_remove(dmri_wstore_t *s, const char *key);

/* Forget every key and start a new generation (a reconnect: the scheduler no
 * longer knows what this worker holds). Returns the number of keys dropped. */
size_t dmri_wstore_clear(dmri_wstore_t *s);
uint64_t dmri_wstore_generation(dmri_wstore_t *s);

/* Spill until memory is under the limit (chunks whose last reference went
 * since the last put are spilled here: unref never writes to disk). */
void dmri_wstore_trim(dmri_wstore_t *s);

void dmri_wstore_stats(dmri_wstore_t *s, dmri_wstore_stats_t *st);
/* The spill folder ("" until the first spill) and the last spill error
 * ("" if none), copied into out. */
void dmri_wstore_spill_dir(dmri_wstore_t *s, char *out, size_t outsz);
void dmri_wstore_last_error(dmri_wstore_t *s, char *out, size_t outsz);

#endif
