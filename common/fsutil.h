/* fsutil: small filesystem helpers (mkdir -p, path joining, atomic text
 * files, temporary names next to a final name). */
#ifndef DMRI_FSUTIL_H
#define DMRI_FSUTIL_H

#include <stddef.h>

#include "dmri_err.h"

/* Create `path` and its parents (mode 0755). Error names the folder. */
int dmri_mkdir_p(const char *path, dmri_err_t *err);

/* 1 if `path` exists and is a regular file / a directory. */
int dmri_is_file(const char *path);
int dmri_is_dir(const char *path);

/* out = a "/" b (size outsz); returns DMRI_ERANGE if it does not fit. */
int dmri_path_join(char *out, size_t outsz, const char *a, const char *b);

/* A temporary name in the same folder as `path` that keeps its extension
 * (".nii.gz"), e.g. "dir/.tmp-1234-dti_fa.nii.gz", so readers never see a
 * partial file under the final name. */
int dmri_tmp_name_for(char *out, size_t outsz, const char *path);

/* Write `len` bytes to `path` atomically (temporary file, fsync, rename). */
int dmri_write_file_atomic(const char *path, const void *data, size_t len, dmri_err_t *err);

#endif
