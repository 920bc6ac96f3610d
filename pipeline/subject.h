/* subject: finding a subject's three files and loading them into memory with
 * every check the pipeline needs up front, so that bad input fails the
 * subject at once with a message naming the file and the problem. */
#ifndef DMRI_SUBJECT_H
#define DMRI_SUBJECT_H

#include "dmri_err.h"
#include "gtab.h"
#include "image.h"
#include "subject_s3.h"

#define DMRI_PATH_MAX 4096

typedef struct dmri_subject_paths {
    char name[256];                  /* HCP id or the folder's base name */
    int remote;                      /* paths are s3:// names (subject_s3.h) */
    char dir[DMRI_PATH_MAX];         /* folder holding the three files */
    char data_path[DMRI_PATH_MAX];   /* data.nii.gz (or data.nii) */
    char bvals_path[DMRI_PATH_MAX];
    char bvecs_path[DMRI_PATH_MAX];
} dmri_subject_paths_t;

/* `arg` is a folder holding data.nii.gz (or data.nii), bvals and bvecs, or an
 * id looked up as DATA_DIR/<id>/T1w/Diffusion/ then DATA_DIR/<id>/. */
int dmri_subject_resolve(const char *arg, const char *data_dir, dmri_subject_paths_t *paths,
                         dmri_err_t *err);

/* As above; when the subject is not on local disk and `s3` is not NULL, an
 * id names the subject in the bucket instead (paths->remote). */
int dmri_subject_resolve_s3(const char *arg, const char *data_dir, const dmri_s3_source_t *s3,
                            dmri_subject_paths_t *paths, dmri_err_t *err);

typedef struct {
    double b0_threshold;   /* PIPELINE.md Step 2; dipy's default 10 */
    int skip_denoise;      /* no NL-means: sizes below 6 are then acceptable */
    const dmri_s3_source_t *s3; /* needed for remote paths */
} dmri_subject_opts_t;

typedef struct dmri_subject {
    dmri_subject_paths_t paths;
    char source_note[600]; /* remote subjects: "streamed from s3://..." or the cache */
    dmri_image_t img;      /* the 4-D series */
    double *bvals;         /* nv values */
    double *bvecs;         /* nv x 3 */
    dmri_gtab_t gtab;
} dmri_subject_t;

/* Read and validate: 4-D image, bvals/bvecs counts equal to the number of
 * volumes, unit diffusion vectors, at least one b0 volume, every size >= 6
 * unless skip_denoise, only finite values. */
int dmri_subject_load(dmri_subject_t *s, const dmri_subject_paths_t *paths,
                      const dmri_subject_opts_t *opts, dmri_err_t *err);
void dmri_subject_close(dmri_subject_t *s);

/* "float32", "int16", ...: the file's datatype, "+scaled" when scaled. */
const char *dmri_datatype_name(int datatype);

#endif
