/* chunks: a subject cut into named chunks, and every task of graph.h as a
 * pure function from input chunks to one output chunk — the form in which
 * the cluster runs the pipeline (workers hold chunks, move them between each
 * other, and run tasks on them). Also the client side: assembling result
 * chunks into the output files dmri-run writes.
 *
 * Chunk layouts (all little-endian host order, x fastest):
 *   info        dmri_info_encode blob (geometry, gradients, chunking)
 *   raw g s     volumes [v0,v1) of group g x slices [z0,z1) of slab s:
 *               (v1-v0) blocks of nx*ny*(z1-z0) values in the image's store
 *               type (float32 or float64, as dmri_image_t)
 *   meanb0      nx*ny*nz values, float32 (f32 semantics) or float64
 *   median1/2 s slices of slab s of the median passes, same type as meanb0
 *               (median slabs: dmri_graph_params_t.median_slabs = 1 in the
 *               cluster, so s = 0 is the whole volume)
 *   mask        nx*ny*nz uint8 (0/1), then the Otsu threshold as a float64
 *               (8 bytes, for summary.json)
 *   sigma g     (v1-v0) float32
 *   den g s     like raw g s, denoised, in the store type
 *   maps s      16 planes of nx*ny*(z1-z0) float32: fa, md, ad, rd,
 *               color_fa[0..2], evecs[c + 3j] for c, j in 0..2
 * Every size is checked on use: a chunk of the wrong size (a bug or a hostile
 * peer) is an error, never a crash. */
#ifndef DMRI_CHUNKS_H
#define DMRI_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#include "dmri_err.h"
#include "graph.h"
#include "image.h"
#include "subject_s3.h"

/* Everything about a subject but its voxels. */
typedef struct {
    char name[256];          /* subject name (HCP id or folder base name) */
    char data_path[4096];    /* where the LOAD worker read it (for messages) */
    dmri_image_t geom;       /* header fields; geom.data == NULL */
    double *bvals;           /* nv */
    double *bvecs;           /* nv x 3 */
    double b0_threshold;
    int skip_denoise;
    int slab_slices;         /* chunking chosen at LOAD (graph params) */
    int vols_per_task;
} dmri_info_t;

int dmri_info_encode(const dmri_info_t *info, uint8_t **buf, size_t *len);
/* Validates everything (magic, version, sizes, dims >= 1, nv matches). */
int dmri_info_decode(const uint8_t *buf, size_t len, dmri_info_t *info, dmri_err_t *err);
void dmri_info_close(dmri_info_t *info);

/* The graph parameters of the cluster for this subject (median_slabs = 1). */
void dmri_info_graph_params(const dmri_info_t *info, int save_denoised, dmri_graph_params_t *p);

typedef enum {
    DMRI_KEY_INFO,
    DMRI_KEY_RAW,      /* g, s */
    DMRI_KEY_MEANB0,
    DMRI_KEY_MEDIAN1,  /* s */
    DMRI_KEY_MEDIAN2,  /* s */
    DMRI_KEY_MASK,
    DMRI_KEY_SIGMA,    /* g */
    DMRI_KEY_DEN,      /* g, s */
    DMRI_KEY_MAPS      /* s */
} dmri_key_kind_t;

typedef struct {
    dmri_key_kind_t kind;
    int g, s;          /* -1 where not used */
} dmri_keyref_t;

/* "J7/raw/g3/s2"; returns DMRI_ERANGE if it does not fit. */
int dmri_key_format(char *out, size_t outsz, uint64_t job, const dmri_keyref_t *ref);
/* Parses a key (strictly: DMRI_EFORMAT on anything else). */
int dmri_key_parse(const char *key, uint64_t *job, dmri_keyref_t *ref);

/* Input keys of graph task t, in the order dmri_chunk_run expects; returns
 * their number (<= max; DMRI_ERANGE if more), or a negative code. The first
 * input is always info. MEANB0 reads only the groups holding a b0 volume,
 * hence `info` (its bvals and b0 threshold).
 * SAVE tasks list the chunks the client needs for that output: MASK the mask
 * and every sigma g (summary.json), FA..COLOR_FA every maps s, DENOISED every
 * den g s (raw g s with skip_denoise). out == NULL: just count them. */
int dmri_task_inputs(const dmri_info_t *info, const dmri_graph_t *g, const dmri_task_t *t,
                     dmri_keyref_t *out, int max);
/* Output key of graph task t (SAVE tasks have none: returns 0), else 1. */
int dmri_task_output(const dmri_graph_t *g, const dmri_task_t *t, dmri_keyref_t *out);

/* Expected size in bytes of a chunk for this subject (0 if the ref is out of range). */
size_t dmri_chunk_size(const dmri_info_t *info, const dmri_graph_t *g, const dmri_keyref_t *ref);

typedef struct {
    void *data;        /* dmri_malloc'd (outputs) or borrowed (inputs) */
    size_t size;
} dmri_chunk_t;

/* LOAD, on the worker: resolve the subject (folder or id under data_dir),
 * read and validate it exactly as dmri-run does (subject.h), and cut it into
 * info and raw chunks with the given chunking. raw[g * nslabs + s] gets the
 * chunk (dmri_free each data, then the array). */
int dmri_chunk_load(const char *subject, const char *data_dir, const dmri_s3_source_t *s3,
                    double b0_threshold,
                    int skip_denoise, int slab_slices, int vols_per_task, dmri_info_t *info,
                    dmri_chunk_t **raw, int *nraw, dmri_err_t *err);

/* Run one graph task (not SAVE) on its input chunks (dmri_task_inputs order,
 * inputs[0] the info chunk's bytes are not needed: pass the decoded info).
 * output->data is allocated here. Thread-safe. Errors name the task and the
 * problem ("nlmeans g3 s2: input J7/raw/g3/s1 has 1000 bytes, expected 4096"). */
int dmri_chunk_run(const dmri_info_t *info, const dmri_graph_t *g, const dmri_task_t *t,
                   const dmri_keyref_t *in_refs, const dmri_chunk_t *inputs, int ninputs,
                   dmri_chunk_t *output, dmri_err_t *err);

/* Client side: collects result chunks of one subject, then writes the same
 * files as dmri-run (staged, then renamed; all or nothing). */
typedef struct dmri_assembly dmri_assembly_t;

dmri_assembly_t *dmri_assembly_new(const dmri_info_t *info, int save_denoised);
/* Add one chunk (mask, sigma g, maps s, den g s, and raw g s standing for
 * den with skip_denoise; others are ignored). Checks the size. Copies what it
 * needs; data may be freed after the call. */
int dmri_assembly_add(dmri_assembly_t *a, const dmri_keyref_t *ref, const void *data,
                      size_t size, dmri_err_t *err);
/* 1 when every chunk the outputs need has arrived. */
int dmri_assembly_complete(const dmri_assembly_t *a);
/* Write preview.png (preview.h) of the assembled FA and colour FA into
 * out_dir. Call after dmri_assembly_write succeeded. */
int dmri_assembly_write_preview(const dmri_assembly_t *a, const char *out_dir, dmri_err_t *err);

/* Write all outputs and summary.json into out_dir (created). summary_extra:
 * a JSON object text merged as "cluster": {...} (may be NULL). */
int dmri_assembly_write(dmri_assembly_t *a, const char *out_dir, const char *summary_extra,
                        dmri_err_t *err);
void dmri_assembly_destroy(dmri_assembly_t **a);

#endif
