/* outputs: result files and summary.json of one subject (see outputs.h). */
#include "outputs.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <nifti1.h>

#include "dmri_alloc.h"
#include "fsutil.h"
#include "pipeline_version.h"
#include "subject.h"

/* The denoised series in the file's own type (float64 when scaled, as nibabel
 * hands dipy a float64 array then). */
static int write_denoised(const char *path, const dmri_image_t *img, const void *den,
                          dmri_err_t *err) {
    int dims[4] = {img->nx, img->ny, img->nz, img->nv};
    size_t total = dmri_image_nvox(img) * (size_t)img->nv;
    if (img->scaled || img->datatype == DT_FLOAT64 || img->datatype == DT_UINT32 ||
        img->datatype == DT_INT64 || img->datatype == DT_UINT64) {
        if (img->store == DMRI_STORE_F64)
            return dmri_image_write(path, img, 4, dims, DT_FLOAT64, den, err);
        double *d = dmri_malloc(total * sizeof(double));
        for (size_t i = 0; i < total; i++)
            d[i] = ((const float *)den)[i];
        int rc = dmri_image_write(path, img, 4, dims, DT_FLOAT64, d, err);
        dmri_free(d);
        return rc;
    }
    if (img->datatype == DT_FLOAT32 && img->store == DMRI_STORE_F32)
        return dmri_image_write(path, img, 4, dims, DT_FLOAT32, den, err);
    size_t esz = dmri_image_datatype_size(img->datatype);
    void *buf = dmri_malloc(total * esz);
    for (size_t i = 0; i < total; i++) {
        double v = img->store == DMRI_STORE_F32 ? (double)((const float *)den)[i]
                                                : ((const double *)den)[i];
        switch (img->datatype) {
        case DT_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
        case DT_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
        case DT_INT16: ((int16_t *)buf)[i] = (int16_t)v; break;
        case DT_UINT16: ((uint16_t *)buf)[i] = (uint16_t)v; break;
        case DT_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
        default: ((float *)buf)[i] = (float)v; break;
        }
    }
    int rc = dmri_image_write(path, img, 4, dims, img->datatype, buf, err);
    dmri_free(buf);
    return rc;
}

int dmri_outputs_write(const char *dir, const dmri_image_t *geom, dmri_output_t out,
                       const dmri_outputs_data_t *d, dmri_err_t *err) {
    char path[DMRI_PATH_MAX];
    if (dmri_path_join(path, sizeof path, dir, dmri_output_file_name(out)) != 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", dir);
    int d3[3] = {geom->nx, geom->ny, geom->nz};
    int d4[4] = {geom->nx, geom->ny, geom->nz, 3};
    int d5[5] = {geom->nx, geom->ny, geom->nz, 3, 3};
    switch (out) {
    case DMRI_OUTPUT_MASK: return dmri_image_write(path, geom, 3, d3, DT_UINT8, d->mask, err);
    case DMRI_OUTPUT_FA: return dmri_image_write(path, geom, 3, d3, DT_FLOAT32, d->fa, err);
    case DMRI_OUTPUT_MD: return dmri_image_write(path, geom, 3, d3, DT_FLOAT32, d->md, err);
    case DMRI_OUTPUT_AD: return dmri_image_write(path, geom, 3, d3, DT_FLOAT32, d->ad, err);
    case DMRI_OUTPUT_RD: return dmri_image_write(path, geom, 3, d3, DT_FLOAT32, d->rd, err);
    case DMRI_OUTPUT_EVECS:
        return dmri_image_write(path, geom, 5, d5, DT_FLOAT32, d->evecs, err);
    case DMRI_OUTPUT_COLOR_FA:
        return dmri_image_write(path, geom, 4, d4, DT_FLOAT32, d->color_fa, err);
    case DMRI_OUTPUT_DENOISED: return write_denoised(path, geom, d->denoised, err);
    default: return dmri_err_set(err, DMRI_EINVAL, "unknown output %d", (int)out);
    }
}

/* A growable string for summary.json. */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            return;
        if (b->s && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->s = dmri_realloc(b->s, b->cap);
    }
}

static void sb_json_string(sbuf_t *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c < 0x20)
            sb_printf(b, "\\u%04x", c);
        else
            sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

static void sb_seconds(sbuf_t *b, double s) {
    if (isnan(s))
        sb_printf(b, "null");
    else
        sb_printf(b, "%.3f", s);
}

/* A strict JSON syntax check (RFC 8259), bounded in depth, never reading
 * past the terminating NUL. */
typedef struct {
    const char *p;
    int depth;
} jscan_t;

static void j_ws(jscan_t *j) {
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static int j_value(jscan_t *j);

static int j_string(jscan_t *j) {
    if (*j->p != '"')
        return 0;
    j->p++;
    for (;;) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '\0' || c < 0x20)
            return 0;
        j->p++;
        if (c == '"')
            return 1;
        if (c == '\\') {
            char e = *j->p;
            if (e == 'u') {
                for (int i = 1; i <= 4; i++) {
                    char h = j->p[i];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return 0;
                }
                j->p += 5;
            } else if (e && strchr("\"\\/bfnrt", e)) {
                j->p++;
            } else {
                return 0;
            }
        }
    }
}

static int j_digits(jscan_t *j) {
    if (!(*j->p >= '0' && *j->p <= '9'))
        return 0;
    while (*j->p >= '0' && *j->p <= '9')
        j->p++;
    return 1;
}

static int j_number(jscan_t *j) {
    if (*j->p == '-')
        j->p++;
    if (*j->p == '0')
        j->p++;
    else if (!j_digits(j))
        return 0;
    if (*j->p == '.') {
        j->p++;
        if (!j_digits(j))
            return 0;
    }
    if (*j->p == 'e' || *j->p == 'E') {
        j->p++;
        if (*j->p == '+' || *j->p == '-')
            j->p++;
        if (!j_digits(j))
            return 0;
    }
    return 1;
}

static int j_container(jscan_t *j, char open, char close) {
    if (*j->p != open || ++j->depth > 64)
        return 0;
    j->p++;
    j_ws(j);
    if (*j->p == close) {
        j->p++;
        j->depth--;
        return 1;
    }
    for (;;) {
        if (open == '{') {
            if (!j_string(j))
                return 0;
            j_ws(j);
            if (*j->p != ':')
                return 0;
            j->p++;
            j_ws(j);
        }
        if (!j_value(j))
            return 0;
        j_ws(j);
        if (*j->p == ',') {
            j->p++;
            j_ws(j);
            continue;
        }
        if (*j->p != close)
            return 0;
        j->p++;
        j->depth--;
        return 1;
    }
}

static int j_value(jscan_t *j) {
    switch (*j->p) {
    case '{': return j_container(j, '{', '}');
    case '[': return j_container(j, '[', ']');
    case '"': return j_string(j);
    case 't': return strncmp(j->p, "true", 4) == 0 ? (j->p += 4, 1) : 0;
    case 'f': return strncmp(j->p, "false", 5) == 0 ? (j->p += 5, 1) : 0;
    case 'n': return strncmp(j->p, "null", 4) == 0 ? (j->p += 4, 1) : 0;
    default: return j_number(j);
    }
}

int dmri_outputs_json_is_object(const char *text) {
    if (!text)
        return 0;
    jscan_t j = {text, 0};
    j_ws(&j);
    if (*j.p != '{' || !j_value(&j))
        return 0;
    j_ws(&j);
    return *j.p == '\0';
}

int dmri_outputs_write_summary(const char *path, const dmri_summary_t *s, dmri_err_t *err) {
    const dmri_image_t *img = s->geom;
    sbuf_t b = {0};
    sb_printf(&b, "{\n  \"subject\": ");
    sb_json_string(&b, s->subject);
    sb_printf(&b, ",\n  \"input\": ");
    sb_json_string(&b, s->input);
    sb_printf(&b, ",\n  \"shape\": [%d, %d, %d, %d],\n", img->nx, img->ny, img->nz, img->nv);
    sb_printf(&b, "  \"dtype\": \"%s\",\n  \"scaled\": %s,\n", dmri_datatype_name(img->datatype),
              img->scaled ? "true" : "false");
    sb_printf(&b, "  \"b0_threshold\": %.17g,\n  \"b0_volumes\": %d,\n", s->b0_threshold,
              s->b0_volumes);
    sb_printf(&b, "  \"otsu_threshold\": %.17g,\n", s->otsu_threshold);
    sb_printf(&b, "  \"mask_voxels\": %zu,\n", s->mask_voxels);
    sb_printf(&b, "  \"denoised\": %s,\n", s->denoised ? "true" : "false");
    sb_printf(&b, "  \"sigma\": [");
    for (int v = 0; v < img->nv; v++)
        sb_printf(&b, "%s%.9g", v ? ", " : "", (double)s->sigma[v]);
    sb_printf(&b, "],\n  \"seconds\": {\n    \"load\": ");
    sb_seconds(&b, s->load_s);
    for (int k = 0; k < DMRI_TASK_NKINDS; k++)
        if (s->has_step[k]) {
            sb_printf(&b, ",\n    \"%s\": ", dmri_task_kind_name((dmri_task_kind_t)k));
            sb_seconds(&b, s->step_s[k]);
        }
    sb_printf(&b, ",\n    \"total\": ");
    sb_seconds(&b, s->total_s);
    sb_printf(&b, "\n  },\n");
    if (s->threads > 0)
        sb_printf(&b, "  \"threads\": %d,\n", s->threads);
    else
        sb_printf(&b, "  \"threads\": null,\n");
    sb_printf(&b, "  \"version\": \"%s\",\n", dmri_version());
    sb_printf(&b, "  \"reference\": \"dipy 1.6.0 (PIPELINE.md)\"");
    if (s->cluster) {
        sb_printf(&b, ",\n  \"cluster\": ");
        if (dmri_outputs_json_is_object(s->cluster))
            sb_printf(&b, "%s", s->cluster);
        else
            sb_json_string(&b, s->cluster);
    }
    sb_printf(&b, "\n}\n");
    int r = dmri_write_file_atomic(path, b.s, b.n, err);
    dmri_free(b.s);
    return r;
}
