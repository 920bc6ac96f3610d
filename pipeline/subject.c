/* subject: resolving and loading one subject (see subject.h). */
#include "subject.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dmri_alloc.h"
#include "fsl_gradients.h"
#include "fsutil.h"
#include "nlmeans.h"

#include <nifti1.h>

static int has_files(const char *dir, dmri_subject_paths_t *p) {
    char data[DMRI_PATH_MAX];
    if (dmri_path_join(data, sizeof data, dir, "data.nii.gz") != 0)
        return 0;
    if (!dmri_is_file(data)) {
        if (dmri_path_join(data, sizeof data, dir, "data.nii") != 0 || !dmri_is_file(data))
            return 0;
    }
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    snprintf(p->data_path, sizeof p->data_path, "%s", data);
    if (dmri_path_join(p->bvals_path, sizeof p->bvals_path, dir, "bvals") != 0 ||
        dmri_path_join(p->bvecs_path, sizeof p->bvecs_path, dir, "bvecs") != 0)
        return 0;
    return 1;
}

static void base_name(const char *path, char *out, size_t outsz) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    snprintf(out, outsz, "%.*s", (int)(n - b), path + b);
    if (!out[0])
        snprintf(out, outsz, "subject");
}

int dmri_subject_resolve(const char *arg, const char *data_dir, dmri_subject_paths_t *p,
                         dmri_err_t *err) {
    memset(p, 0, sizeof *p);
    if (!arg || !arg[0])
        return dmri_err_set(err, DMRI_EINVAL, "empty subject argument");
    if (dmri_is_dir(arg)) {
        if (!has_files(arg, p))
            return dmri_err_set(err, DMRI_ENOENT,
                                "%s: folder has no data.nii.gz (or data.nii): expected "
                                "data.nii.gz, bvals and bvecs",
                                arg);
        base_name(arg, p->name, sizeof p->name);
        /* HCP layout <id>/T1w/Diffusion: name the subject after <id>. */
        char tail[64];
        base_name(arg, tail, sizeof tail);
        if (strcmp(tail, "Diffusion") == 0) {
            char parent[DMRI_PATH_MAX];
            snprintf(parent, sizeof parent, "%s", arg);
            for (int up = 0; up < 2; up++) {
                char *slash = strrchr(parent, '/');
                while (slash && slash[1] == '\0') {
                    *slash = '\0';
                    slash = strrchr(parent, '/');
                }
                if (!slash)
                    break;
                *slash = '\0';
            }
            if (parent[0])
                base_name(parent, p->name, sizeof p->name);
        }
        return 0;
    }
    const char *dd = data_dir && data_dir[0] ? data_dir : ".";
    if (strchr(arg, '/'))
        return dmri_err_set(err, DMRI_ENOENT, "%s: no such folder", arg);
    char cand[DMRI_PATH_MAX];
    int n = snprintf(cand, sizeof cand, "%s/%s/T1w/Diffusion", dd, arg);
    if (n > 0 && (size_t)n < sizeof cand && dmri_is_dir(cand) && has_files(cand, p)) {
        snprintf(p->name, sizeof p->name, "%s", arg);
        return 0;
    }
    n = snprintf(cand, sizeof cand, "%s/%s", dd, arg);
    if (n > 0 && (size_t)n < sizeof cand && dmri_is_dir(cand) && has_files(cand, p)) {
        snprintf(p->name, sizeof p->name, "%s", arg);
        return 0;
    }
    return dmri_err_set(err, DMRI_ENOENT,
                        "subject %s: not found: neither %s/%s/T1w/Diffusion/ nor %s/%s/ holds "
                        "data.nii.gz, bvals, bvecs (set --data-dir)",
                        arg, dd, arg, dd, arg);
}

int dmri_subject_resolve_s3(const char *arg, const char *data_dir, const dmri_s3_source_t *s3,
                            dmri_subject_paths_t *p, dmri_err_t *err) {
    int rc = dmri_subject_resolve(arg, data_dir, p, err);
    if (rc != DMRI_ENOENT || !s3 || !arg || !dmri_s3_is_subject_id(arg))
        return rc;
    return dmri_s3_subject_paths(s3, arg, p, err);
}

const char *dmri_datatype_name(int datatype) {
    switch (datatype) {
    case DT_UINT8: return "uint8";
    case DT_INT8: return "int8";
    case DT_INT16: return "int16";
    case DT_UINT16: return "uint16";
    case DT_INT32: return "int32";
    case DT_UINT32: return "uint32";
    case DT_INT64: return "int64";
    case DT_UINT64: return "uint64";
    case DT_FLOAT32: return "float32";
    case DT_FLOAT64: return "float64";
    default: return "unknown";
    }
}

static const char *short_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Non-finite voxels would make the median, Otsu and the fit meaningless (dipy
 * either fails deep inside or silently writes NaN maps): refuse them. */
static int check_finite(const dmri_image_t *img, const char *path, dmri_err_t *err) {
    size_t nvox = dmri_image_nvox(img), total = nvox * (size_t)img->nv, bad = 0, first = 0;
    if (img->store == DMRI_STORE_F32) {
        const float *d = img->data;
        for (size_t i = 0; i < total; i++)
            if (!isfinite(d[i]) && bad++ == 0)
                first = i;
    } else {
        const double *d = img->data;
        for (size_t i = 0; i < total; i++)
            if (!isfinite(d[i]) && bad++ == 0)
                first = i;
    }
    if (!bad)
        return 0;
    size_t v = first / nvox, r = first % nvox;
    size_t x = r % (size_t)img->nx, y = (r / (size_t)img->nx) % (size_t)img->ny,
           z = r / ((size_t)img->nx * (size_t)img->ny);
    return dmri_err_set(err, DMRI_EFORMAT,
                        "%s: %zu non-finite values (NaN or Inf), the first at voxel (%zu, %zu, "
                        "%zu) of volume %zu; dmri needs finite data",
                        path, bad, x, y, z, v);
}

int dmri_subject_load(dmri_subject_t *s, const dmri_subject_paths_t *paths,
                      const dmri_subject_opts_t *opts, dmri_err_t *err) {
    memset(s, 0, sizeof *s);
    s->paths = *paths;
    int rc;
    int nb = 0, ng = 0;
    if (paths->remote) {
        if (!opts->s3)
            return dmri_err_set(err, DMRI_EINVAL, "%s: an S3 subject needs S3 settings",
                                paths->dir);
        if ((rc = dmri_s3_subject_read(opts->s3, s, &nb, &ng, err)) != 0)
            goto fail;
    } else {
        if (!dmri_is_file(paths->bvals_path))
            return dmri_err_set(err, DMRI_ENOENT, "%s: missing file", paths->bvals_path);
        if (!dmri_is_file(paths->bvecs_path))
            return dmri_err_set(err, DMRI_ENOENT, "%s: missing file", paths->bvecs_path);
        if ((rc = dmri_read_bvals(paths->bvals_path, &s->bvals, &nb, err)) != 0)
            goto fail;
        if ((rc = dmri_read_bvecs(paths->bvecs_path, &s->bvecs, &ng, err)) != 0)
            goto fail;
    }
    if (nb != ng) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "%s has %d values but %s has %d directions",
                          paths->bvals_path, nb, paths->bvecs_path, ng);
        goto fail;
    }
    if (!paths->remote && (rc = dmri_image_read(paths->data_path, &s->img, err)) != 0)
        goto fail;
    const dmri_image_t *img = &s->img;
    if (img->ndim != 4 || img->nv < 2) {
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "%s: a %d-D image (%dx%dx%dx%d); a diffusion series must be 4-D "
                          "with one volume per b-value",
                          paths->data_path, img->ndim, img->nx, img->ny, img->nz, img->nv);
        goto fail;
    }
    if (nb != img->nv) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "%s: %d entries, but %s has %d volumes",
                          short_name(paths->bvals_path), nb, short_name(paths->data_path),
                          img->nv);
        dmri_err_prefix(err, "%s: ", paths->dir);
        goto fail;
    }
    if (!opts->skip_denoise) {
        int dims[3] = {img->nx, img->ny, img->nz};
        const char axes[3] = {'X', 'Y', 'Z'};
        for (int a = 0; a < 3; a++)
            if (dims[a] < DMRI_NLMEANS_MIN_SIZE) {
                rc = dmri_err_set(err, DMRI_EUNSUP,
                                  "%s: image dimension %c = %d < %d needed by NL-means (block "
                                  "radius 5); use --skip-denoise to fit without denoising",
                                  paths->data_path, axes[a], dims[a], DMRI_NLMEANS_MIN_SIZE);
                goto fail;
            }
    }
    if ((rc = dmri_gtab_init(&s->gtab, s->bvals, s->bvecs, nb, opts->b0_threshold, err)) != 0) {
        dmri_err_prefix(err, "%s: ", paths->bvecs_path);
        goto fail;
    }
    if (s->gtab.nb0 == 0) {
        double bmin = INFINITY;
        for (int i = 0; i < nb; i++)
            if (s->bvals[i] < bmin)
                bmin = s->bvals[i];
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "%s: no volume with b <= %g (smallest b = %g): the brain mask needs "
                          "b0 volumes; use --b0-threshold to change the threshold",
                          paths->bvals_path, opts->b0_threshold, bmin);
        goto fail;
    }
    if ((rc = check_finite(img, paths->data_path, err)) != 0)
        goto fail;
    return 0;
fail:
    dmri_subject_close(s);
    return rc;
}

void dmri_subject_close(dmri_subject_t *s) {
    if (!s)
        return;
    dmri_image_close(&s->img);
    dmri_gtab_close(&s->gtab);
    dmri_free(s->bvals);
    dmri_free(s->bvecs);
    s->bvals = s->bvecs = NULL;
}
