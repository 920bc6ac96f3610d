/* phantom: the synthetic HCP-like subject generator behind dmri-phantom,
 * the project's demo, test and benchmark data. Deterministic for a seed. */
#ifndef DMRI_PHANTOM_H
#define DMRI_PHANTOM_H

#include "dmri_err.h"

typedef struct {
    int nx, ny, nz;          /* default 145 174 145 */
    int nb0;                 /* b0 volumes (default 18, b = 5) */
    int nshells;             /* default 3 */
    double shells[8];        /* default 1000 2000 3000 */
    int ndirs;               /* directions per shell (default 90) */
    double snr;              /* S0 / noise sigma in white matter (default 30) */
    unsigned long long seed; /* default 1 */
    int datatype;            /* DT_FLOAT32 (default) or DT_INT16 */
    double scl_slope;        /* written to the header for int16 (0 = none) */
    double scl_inter;
} dmri_phantom_opts_t;

void dmri_phantom_opts_default(dmri_phantom_opts_t *o);

/* Write data.nii.gz, bvals, bvecs into folder `out` (created if missing). */
int dmri_phantom_write(const char *out, const dmri_phantom_opts_t *o, dmri_err_t *err);

#endif
