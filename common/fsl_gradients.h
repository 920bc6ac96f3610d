/* fsl_gradients: reading FSL bvals/bvecs text files the way dipy's
 * read_bvals_bvecs does (PIPELINE.md Step 1): blanks, tabs and commas
 * separate numbers, '#' starts a comment, 3xN and Nx3 layouts. */
#ifndef DMRI_FSL_GRADIENTS_H
#define DMRI_FSL_GRADIENTS_H

#include <stddef.h>

#include "dmri_err.h"

/* *bvals gets n values (caller frees with dmri_free). Errors name the file. */
int dmri_read_bvals(const char *path, double **bvals, int *n, dmri_err_t *err);

/* *bvecs gets n x 3 values, row-major (one direction per row), whatever the
 * file's layout. "nan" is accepted. Errors name the file ("bvecs: expected 3
 * rows or 3 columns, found 4 x 65"). */
int dmri_read_bvecs(const char *path, double **bvecs, int *n, dmri_err_t *err);

/* The same from text already in memory (e.g. downloaded from S3); `name`
 * stands for the file in messages. */
int dmri_parse_bvals(const char *name, const char *text, size_t len, double **bvals, int *n,
                     dmri_err_t *err);
int dmri_parse_bvecs(const char *name, const char *text, size_t len, double **bvecs, int *n,
                     dmri_err_t *err);

#endif
