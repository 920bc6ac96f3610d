/* chunks: a subject as named chunks, graph tasks as functions of chunks, and
 * the client-side assembly of result chunks (see chunks.h). Everything that
 * arrives here may come from the network: sizes, keys and task fields are
 * checked against the subject's geometry before any copy. The arithmetic is
 * the kernels' and the order of tasks.c, so results are bit-identical to
 * dmri-run's. */
#include "preview.h"
#include "chunks.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti1.h>

#include "dmri_alloc.h"
#include "dti.h"
#include "fsutil.h"
#include "gtab.h"
#include "mask.h"
#include "meanb0.h"
#include "median.h"
#include "nlmeans.h"
#include "otsu.h"
#include "outputs.h"
#include "sigma.h"
#include "subject.h"

#define MEDIAN_RADIUS 4
#define INFO_MAGIC "DMRIINFO"
#define INFO_VERSION 1u
#define INFO_NINTS 12
#define INFO_NGEOM 23   /* pixdim 4, quatern 6, qfac 1, srow 12 */
#define MAX_DIM 32767   /* NIfTI-1 dims (outputs must be writable) */
#define NMAPS 16

/* ---------------------------------------------------------------- layout */

/* The chunking of one subject, derived from the graph parameters exactly as
 * graph.c derives its tasks. */
typedef struct {
    int nx, ny, nz, nv;
    size_t plane, nvox;
    int vpt, ngroups;   /* volume groups (SIGMA, NLMEANS, raw/den chunks) */
    int slab, nslabs;   /* z slabs (NLMEANS, DTI, raw/den/maps chunks) */
    int nmed;           /* median slabs */
    int skip_denoise, save_denoised;
    size_t ssz;         /* bytes of a stored value (raw, den) */
    size_t esz;         /* bytes of a mean b0 / median value */
} layout_t;

static void layout_from_params(const dmri_graph_params_t *p, layout_t *L) {
    memset(L, 0, sizeof *L);
    L->nx = p->nx;
    L->ny = p->ny;
    L->nz = p->nz;
    L->nv = p->nv;
    L->plane = (size_t)p->nx * (size_t)p->ny;
    L->nvox = L->plane * (size_t)p->nz;
    L->vpt = p->vols_per_task > 0 ? p->vols_per_task : 1;
    L->ngroups = (p->nv + L->vpt - 1) / L->vpt;
    L->slab = (p->slab_slices > 0 && p->slab_slices < p->nz) ? p->slab_slices : p->nz;
    L->nslabs = (p->nz + L->slab - 1) / L->slab;
    L->nmed = p->median_slabs > 0 ? p->median_slabs : 1;
    if (L->nmed > p->nz)
        L->nmed = p->nz;
    L->skip_denoise = p->skip_denoise;
    L->save_denoised = p->save_denoised;
    L->ssz = 8;
    L->esz = 8;
}

static void layout_set_types(layout_t *L, const dmri_image_t *geom) {
    L->ssz = geom->store == DMRI_STORE_F32 ? sizeof(float) : sizeof(double);
    L->esz = dmri_image_is_f32_semantics(geom) ? sizeof(float) : sizeof(double);
}

/* Layout of graph g for subject info; DMRI_EINVAL if they disagree. */
static int layout_of(const dmri_info_t *info, const dmri_graph_t *g, layout_t *L) {
    layout_from_params(&g->params, L);
    if (g->params.nx < 1 || g->params.ny < 1 || g->params.nz < 1 || g->params.nv < 1 ||
        L->nslabs != g->nslabs)
        return DMRI_EINVAL;
    if (info) {
        const dmri_image_t *im = &info->geom;
        if (im->nx != L->nx || im->ny != L->ny || im->nz != L->nz || im->nv != L->nv)
            return DMRI_EINVAL;
        layout_set_types(L, im);
    }
    return 0;
}

static void group_range(const layout_t *L, int gi, int *v0, int *v1) {
    *v0 = gi * L->vpt;
    *v1 = *v0 + L->vpt < L->nv ? *v0 + L->vpt : L->nv;
}

static void slab_range(const layout_t *L, int s, int *z0, int *z1) {
    *z0 = s * L->slab;
    *z1 = *z0 + L->slab < L->nz ? *z0 + L->slab : L->nz;
}

static void median_range(const layout_t *L, int s, int *z0, int *z1) {
    *z0 = s * L->nz / L->nmed;
    *z1 = (s + 1) * L->nz / L->nmed;
}

/* Group / slab index of a task, -1 if its ranges are not one of the layout's
 * (task fields travel over the network). */
static int task_group(const layout_t *L, const dmri_task_t *t) {
    if (t->v0 < 0 || t->v0 % L->vpt != 0)
        return -1;
    int gi = t->v0 / L->vpt, v0, v1;
    if (gi >= L->ngroups)
        return -1;
    group_range(L, gi, &v0, &v1);
    return t->v1 == v1 ? gi : -1;
}

static int task_slab(const layout_t *L, const dmri_task_t *t) {
    if (t->z0 < 0 || t->z0 % L->slab != 0)
        return -1;
    int s = t->z0 / L->slab, z0, z1;
    if (s >= L->nslabs)
        return -1;
    slab_range(L, s, &z0, &z1);
    return t->z1 == z1 ? s : -1;
}

static int task_median_slab(const layout_t *L, const dmri_task_t *t) {
    for (int s = 0; s < L->nmed; s++) {
        int z0, z1;
        median_range(L, s, &z0, &z1);
        if (z0 == t->z0 && z1 == t->z1)
            return s;
    }
    return -1;
}

/* ------------------------------------------------------------------- info */

typedef struct {
    uint8_t *p;
    size_t n;
} wbuf_t;

static void put_u32(wbuf_t *w, uint32_t v) {
    for (int i = 0; i < 4; i++)
        w->p[w->n++] = (uint8_t)(v >> (8 * i));
}

static void put_f64(wbuf_t *w, double d) {
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    for (int i = 0; i < 8; i++)
        w->p[w->n++] = (uint8_t)(v >> (8 * i));
}

static void put_bytes(wbuf_t *w, const char *s, size_t len) {
    memcpy(w->p + w->n, s, len);
    w->n += len;
}

static size_t info_encoded_len(size_t name_len, size_t path_len, int nv) {
    return 8 + 4 + 4 + name_len + 4 + path_len + 4 * INFO_NINTS + 8 * INFO_NGEOM + 8 + 4 * 3 +
           (size_t)nv * 4 * 8;
}

int dmri_info_encode(const dmri_info_t *info, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    const dmri_image_t *im = &info->geom;
    size_t nl = strnlen(info->name, sizeof info->name);
    size_t pl = strnlen(info->data_path, sizeof info->data_path);
    if (nl >= sizeof info->name || pl >= sizeof info->data_path || im->nv < 1 ||
        !info->bvals || !info->bvecs)
        return DMRI_EINVAL;
    size_t total = info_encoded_len(nl, pl, im->nv);
    wbuf_t w = {dmri_malloc(total), 0};
    put_bytes(&w, INFO_MAGIC, 8);
    put_u32(&w, INFO_VERSION);
    put_u32(&w, (uint32_t)nl);
    put_bytes(&w, info->name, nl);
    put_u32(&w, (uint32_t)pl);
    put_bytes(&w, info->data_path, pl);
    const int ints[INFO_NINTS] = {im->ndim,     im->nx,         im->ny,        im->nz,
                                  im->nv,       im->datatype,   im->scaled,    (int)im->store,
                                  im->qform_code, im->sform_code, im->xyz_units, im->time_units};
    for (int i = 0; i < INFO_NINTS; i++)
        put_u32(&w, (uint32_t)ints[i]);
    for (int i = 0; i < 4; i++)
        put_f64(&w, im->pixdim[i]);
    for (int i = 0; i < 6; i++)
        put_f64(&w, im->quatern[i]);
    put_f64(&w, im->qfac);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            put_f64(&w, im->srow[r][c]);
    put_f64(&w, info->b0_threshold);
    put_u32(&w, (uint32_t)info->skip_denoise);
    put_u32(&w, (uint32_t)info->slab_slices);
    put_u32(&w, (uint32_t)info->vols_per_task);
    for (int v = 0; v < im->nv; v++)
        put_f64(&w, info->bvals[v]);
    for (int v = 0; v < 3 * im->nv; v++)
        put_f64(&w, info->bvecs[v]);
    *buf = w.p;
    *len = w.n;
    return 0;
}

/* A bounds-checked reader: a read past the end sets `bad` and yields zeros. */
typedef struct {
    const uint8_t *p;
    size_t n, off;
    int bad;
} rbuf_t;

static const uint8_t *take(rbuf_t *r, size_t k) {
    if (r->bad || k > r->n - r->off) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->off;
    r->off += k;
    return q;
}

static uint32_t get_u32(rbuf_t *r) {
    const uint8_t *q = take(r, 4);
    uint32_t v = 0;
    for (int i = 0; q && i < 4; i++)
        v |= (uint32_t)q[i] << (8 * i);
    return v;
}

static int32_t get_i32(rbuf_t *r) {
    uint32_t u = get_u32(r);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static double get_f64(rbuf_t *r) {
    const uint8_t *q = take(r, 8);
    uint64_t v = 0;
    for (int i = 0; q && i < 8; i++)
        v |= (uint64_t)q[i] << (8 * i);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

static int get_str(rbuf_t *r, char *out, size_t outsz) {
    uint32_t n = get_u32(r);
    if (r->bad || n >= outsz)
        return -1;
    const uint8_t *q = take(r, n);
    if (!q || memchr(q, '\0', n))
        return -1;
    memcpy(out, q, n);
    out[n] = '\0';
    return 0;
}

int dmri_info_decode(const uint8_t *buf, size_t len, dmri_info_t *info, dmri_err_t *err) {
    memset(info, 0, sizeof *info);
    rbuf_t r = {buf, buf ? len : 0, 0, 0};
    const char *why = "truncated";
    const uint8_t *magic = take(&r, 8);
    if (!magic || memcmp(magic, INFO_MAGIC, 8) != 0) {
        why = "bad magic";
        goto malformed;
    }
    uint32_t version = get_u32(&r);
    if (!r.bad && version != INFO_VERSION) {
        dmri_err_set(err, DMRI_EUNSUP, "info chunk: version %u, this build reads version %u",
                     version, INFO_VERSION);
        return DMRI_EUNSUP;
    }
    if (get_str(&r, info->name, sizeof info->name) != 0 ||
        get_str(&r, info->data_path, sizeof info->data_path) != 0) {
        why = "bad name or path";
        goto malformed;
    }
    dmri_image_t *im = &info->geom;
    int32_t ints[INFO_NINTS];
    for (int i = 0; i < INFO_NINTS; i++)
        ints[i] = get_i32(&r);
    im->ndim = ints[0];
    im->nx = ints[1];
    im->ny = ints[2];
    im->nz = ints[3];
    im->nv = ints[4];
    im->datatype = ints[5];
    im->scaled = ints[6];
    im->store = ints[7] == 1 ? DMRI_STORE_F64 : DMRI_STORE_F32;
    im->qform_code = ints[8];
    im->sform_code = ints[9];
    im->xyz_units = ints[10];
    im->time_units = ints[11];
    for (int i = 0; i < 4; i++)
        im->pixdim[i] = get_f64(&r);
    for (int i = 0; i < 6; i++)
        im->quatern[i] = get_f64(&r);
    im->qfac = get_f64(&r);
    for (int rr = 0; rr < 3; rr++)
        for (int c = 0; c < 4; c++)
            im->srow[rr][c] = get_f64(&r);
    info->b0_threshold = get_f64(&r);
    info->skip_denoise = get_i32(&r);
    info->slab_slices = get_i32(&r);
    info->vols_per_task = get_i32(&r);
    if (r.bad)
        goto malformed;
    why = "bad geometry";
    if (im->ndim != 4)
        goto malformed;
    const int dims[4] = {im->nx, im->ny, im->nz, im->nv};
    for (int i = 0; i < 4; i++)
        if (dims[i] < 1 || dims[i] > MAX_DIM)
            goto malformed;
    why = "bad datatype or store";
    if (dmri_image_datatype_size(im->datatype) == 0 || (im->scaled != 0 && im->scaled != 1) ||
        (ints[7] != 0 && ints[7] != 1))
        goto malformed;
    /* The store type follows from the datatype (image.c's rule). */
    dmri_store_t want = im->scaled ? DMRI_STORE_F64
                        : (im->datatype == DT_FLOAT32 ||
                           dmri_image_datatype_size(im->datatype) <= 2)
                            ? DMRI_STORE_F32
                            : DMRI_STORE_F64;
    if (im->store != want)
        goto malformed;
    why = "bad options";
    if ((info->skip_denoise != 0 && info->skip_denoise != 1) || info->slab_slices < 0 ||
        info->slab_slices > MAX_DIM || info->vols_per_task < 1 ||
        info->vols_per_task > MAX_DIM || !isfinite(info->b0_threshold))
        goto malformed;
    /* NL-means reflects its 5-voxel halo inside the volume: smaller sizes
     * would read outside it. */
    if (!info->skip_denoise &&
        (im->nx < DMRI_NLMEANS_MIN_SIZE || im->ny < DMRI_NLMEANS_MIN_SIZE ||
         im->nz < DMRI_NLMEANS_MIN_SIZE))
        goto malformed;
    why = "gradient table size does not match the volumes";
    if (len - r.off != (size_t)im->nv * 4 * 8)
        goto malformed;
    info->bvals = dmri_malloc((size_t)im->nv * sizeof(double));
    info->bvecs = dmri_malloc((size_t)im->nv * 3 * sizeof(double));
    for (int v = 0; v < im->nv; v++)
        info->bvals[v] = get_f64(&r);
    for (int v = 0; v < 3 * im->nv; v++)
        info->bvecs[v] = get_f64(&r);
    if (r.bad || r.off != len)
        goto malformed;
    return 0;
malformed:
    dmri_info_close(info);
    return dmri_err_set(err, DMRI_EFORMAT, "info chunk (%zu bytes): malformed: %s", len, why);
}

void dmri_info_close(dmri_info_t *info) {
    if (!info)
        return;
    dmri_free(info->bvals);
    dmri_free(info->bvecs);
    info->bvals = info->bvecs = NULL;
}

void dmri_info_graph_params(const dmri_info_t *info, int save_denoised, dmri_graph_params_t *p) {
    const dmri_image_t *im = &info->geom;
    dmri_graph_params_default(p, im->nx, im->ny, im->nz, im->nv);
    p->skip_denoise = info->skip_denoise;
    p->save_denoised = save_denoised;
    p->slab_slices = info->slab_slices > 0 ? info->slab_slices : 0;
    p->vols_per_task = info->vols_per_task > 0 ? info->vols_per_task : 1;
    /* The mask chain is a tiny share of the work; one task per pass keeps
     * the whole-volume arrays on one worker. */
    p->median_slabs = 1;
}

static int info_gtab(const dmri_info_t *info, dmri_gtab_t *gt, dmri_err_t *err) {
    int rc = dmri_gtab_init(gt, info->bvals, info->bvecs, info->geom.nv, info->b0_threshold, err);
    if (rc != 0) {
        dmri_err_prefix(err, "%s: gradient table: ", info->name);
        return rc;
    }
    if (gt->nb0 == 0) {
        dmri_gtab_close(gt);
        return dmri_err_set(err, DMRI_EFORMAT, "%s: no b0 volume (b <= %g)", info->name,
                            info->b0_threshold);
    }
    return 0;
}

/* ------------------------------------------------------------------- keys */

static const char *const key_names[] = {"info", "raw",  "meanb0", "median1", "median2",
                                        "mask", "sigma", "den",   "maps"};
#define NKEYKINDS ((int)(sizeof key_names / sizeof key_names[0]))

/* Which of g and s a kind carries. */
static int kind_has_g(dmri_key_kind_t k) {
    return k == DMRI_KEY_RAW || k == DMRI_KEY_SIGMA || k == DMRI_KEY_DEN;
}

static int kind_has_s(dmri_key_kind_t k) {
    return k == DMRI_KEY_RAW || k == DMRI_KEY_MEDIAN1 || k == DMRI_KEY_MEDIAN2 ||
           k == DMRI_KEY_DEN || k == DMRI_KEY_MAPS;
}

static int ref_valid(const dmri_keyref_t *ref) {
    if ((int)ref->kind < 0 || (int)ref->kind >= NKEYKINDS)
        return 0;
    if (kind_has_g(ref->kind) ? ref->g < 0 : ref->g != -1)
        return 0;
    if (kind_has_s(ref->kind) ? ref->s < 0 : ref->s != -1)
        return 0;
    return 1;
}

/* The key without its job prefix ("raw/g3/s2"), for messages. */
static int key_tail(char *out, size_t outsz, const dmri_keyref_t *ref) {
    if (!ref_valid(ref)) {
        snprintf(out, outsz, "?");
        return DMRI_EINVAL;
    }
    int n = snprintf(out, outsz, "%s", key_names[ref->kind]);
    if (n >= 0 && (size_t)n < outsz && kind_has_g(ref->kind))
        n += snprintf(out + n, outsz - (size_t)n, "/g%d", ref->g);
    if (n >= 0 && (size_t)n < outsz && kind_has_s(ref->kind))
        n += snprintf(out + n, outsz - (size_t)n, "/s%d", ref->s);
    return (n < 0 || (size_t)n >= outsz) ? DMRI_ERANGE : 0;
}

int dmri_key_format(char *out, size_t outsz, uint64_t job, const dmri_keyref_t *ref) {
    char tail[64];
    int rc = key_tail(tail, sizeof tail, ref);
    if (rc != 0) {
        if (outsz)
            out[0] = '\0';
        return rc;
    }
    int n = snprintf(out, outsz, "J%" PRIu64 "/%s", job, tail);
    if (n < 0 || (size_t)n >= outsz) {
        if (outsz)
            out[0] = '\0';
        return DMRI_ERANGE;
    }
    return 0;
}

/* A decimal without sign or leading zeros ("0" itself is fine), at most
 * `max`; advances *p. Keys have one spelling, so equal chunks have equal
 * names. */
static int parse_dec(const char **p, uint64_t max, uint64_t *out) {
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    if (*s == '0' && s[1] >= '0' && s[1] <= '9')
        return -1;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    *p = s;
    return 0;
}

static int parse_index(const char **p, char letter, int *out) {
    if (**p != '/' || (*p)[1] != letter)
        return -1;
    *p += 2;
    uint64_t v;
    if (parse_dec(p, INT_MAX, &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

int dmri_key_parse(const char *key, uint64_t *job, dmri_keyref_t *ref) {
    if (!key || key[0] != 'J')
        return DMRI_EFORMAT;
    const char *p = key + 1;
    uint64_t j;
    if (parse_dec(&p, UINT64_MAX, &j) != 0 || *p != '/')
        return DMRI_EFORMAT;
    p++;
    const char *slash = strchr(p, '/');
    size_t nlen = slash ? (size_t)(slash - p) : strlen(p);
    int kind = -1;
    for (int k = 0; k < NKEYKINDS; k++)
        if (strlen(key_names[k]) == nlen && memcmp(key_names[k], p, nlen) == 0)
            kind = k;
    if (kind < 0)
        return DMRI_EFORMAT;
    p += nlen;
    dmri_keyref_t r = {(dmri_key_kind_t)kind, -1, -1};
    if (kind_has_g(r.kind) && parse_index(&p, 'g', &r.g) != 0)
        return DMRI_EFORMAT;
    if (kind_has_s(r.kind) && parse_index(&p, 's', &r.s) != 0)
        return DMRI_EFORMAT;
    if (*p != '\0')
        return DMRI_EFORMAT;
    *job = j;
    *ref = r;
    return 0;
}

/* ------------------------------------------------------ task inputs/outputs */

typedef struct {
    dmri_keyref_t *out;
    int n, max;
} reflist_t;

static void push(reflist_t *l, dmri_key_kind_t kind, int g, int s) {
    if (l->n < l->max && l->out)
        l->out[l->n] = (dmri_keyref_t){kind, g, s};
    l->n++;
}

/* Groups holding at least one b0 volume (1/0 per group). */
static int b0_groups(const dmri_info_t *info, const layout_t *L, uint8_t *has_b0,
                     dmri_err_t *err) {
    dmri_gtab_t gt;
    int rc = info_gtab(info, &gt, err);
    if (rc != 0)
        return rc;
    memset(has_b0, 0, (size_t)L->ngroups);
    for (int k = 0; k < gt.nb0; k++)
        has_b0[gt.b0_idx[k] / L->vpt] = 1;
    dmri_gtab_close(&gt);
    return 0;
}

/* The slabs [sa, sb] whose slices meet the NL-means source range of a slab. */
static void halo_slabs(const layout_t *L, int s, int *sa, int *sb) {
    int z0, z1;
    slab_range(L, s, &z0, &z1);
    int sz0 = z0 - DMRI_NLMEANS_HALO < 0 ? 0 : z0 - DMRI_NLMEANS_HALO;
    int sz1 = z1 + DMRI_NLMEANS_HALO > L->nz ? L->nz : z1 + DMRI_NLMEANS_HALO;
    *sa = sz0 / L->slab;
    *sb = (sz1 - 1) / L->slab;
}

static int task_inputs(const dmri_info_t *info, const dmri_graph_t *g, const dmri_task_t *t,
                       reflist_t *l, dmri_err_t *err) {
    layout_t L;
    if (!info || layout_of(info, g, &L) != 0)
        return dmri_err_set(err, DMRI_EINVAL, "task inputs: graph and info disagree");
    dmri_key_kind_t series = L.skip_denoise ? DMRI_KEY_RAW : DMRI_KEY_DEN;
    push(l, DMRI_KEY_INFO, -1, -1);
    int gi = -1, s = -1;
    switch (t->kind) {
    case DMRI_TASK_MEANB0: {
        uint8_t *has = dmri_malloc((size_t)L.ngroups);
        int rc = b0_groups(info, &L, has, err);
        for (int k = 0; rc == 0 && k < L.ngroups; k++)
            for (int ss = 0; has[k] && ss < L.nslabs; ss++)
                push(l, DMRI_KEY_RAW, k, ss);
        dmri_free(has);
        return rc;
    }
    case DMRI_TASK_MEDIAN1:
        if ((s = task_median_slab(&L, t)) < 0)
            goto bad;
        push(l, DMRI_KEY_MEANB0, -1, -1);
        return 0;
    case DMRI_TASK_MEDIAN2:
        if ((s = task_median_slab(&L, t)) < 0)
            goto bad;
        for (int k = 0; k < L.nmed; k++)
            push(l, DMRI_KEY_MEDIAN1, -1, k);
        return 0;
    case DMRI_TASK_MASK:
        for (int k = 0; k < L.nmed; k++)
            push(l, DMRI_KEY_MEDIAN2, -1, k);
        return 0;
    case DMRI_TASK_SIGMA:
        if ((gi = task_group(&L, t)) < 0)
            goto bad;
        for (int k = 0; k < L.nslabs; k++)
            push(l, DMRI_KEY_RAW, gi, k);
        return 0;
    case DMRI_TASK_NLMEANS: {
        if (L.skip_denoise || (gi = task_group(&L, t)) < 0 || (s = task_slab(&L, t)) < 0)
            goto bad;
        int sa, sb;
        halo_slabs(&L, s, &sa, &sb);
        push(l, DMRI_KEY_MASK, -1, -1);
        push(l, DMRI_KEY_SIGMA, gi, -1);
        for (int k = sa; k <= sb; k++)
            push(l, DMRI_KEY_RAW, gi, k);
        return 0;
    }
    case DMRI_TASK_DTI:
        if ((s = task_slab(&L, t)) < 0)
            goto bad;
        push(l, DMRI_KEY_MASK, -1, -1);
        for (int k = 0; k < L.ngroups; k++)
            push(l, series, k, s);
        return 0;
    case DMRI_TASK_SAVE:
        switch (t->output) {
        case DMRI_OUTPUT_MASK:
            push(l, DMRI_KEY_MASK, -1, -1);
            for (int k = 0; k < L.ngroups; k++)
                push(l, DMRI_KEY_SIGMA, k, -1);
            return 0;
        case DMRI_OUTPUT_FA:
        case DMRI_OUTPUT_MD:
        case DMRI_OUTPUT_AD:
        case DMRI_OUTPUT_RD:
        case DMRI_OUTPUT_EVECS:
        case DMRI_OUTPUT_COLOR_FA:
            for (int k = 0; k < L.nslabs; k++)
                push(l, DMRI_KEY_MAPS, -1, k);
            return 0;
        case DMRI_OUTPUT_DENOISED:
            for (int k = 0; k < L.ngroups; k++)
                for (int ss = 0; ss < L.nslabs; ss++)
                    push(l, series, k, ss);
            return 0;
        default: goto bad;
        }
    default: goto bad;
    }
bad:
    return dmri_err_set(err, DMRI_EINVAL,
                        "%s task (v %d..%d, z %d..%d, output %d) does not fit the graph",
                        dmri_task_kind_name(t->kind), t->v0, t->v1, t->z0, t->z1, t->output);
}

int dmri_task_inputs(const dmri_info_t *info, const dmri_graph_t *g, const dmri_task_t *t,
                     dmri_keyref_t *out, int max) {
    reflist_t l = {out, 0, out ? max : 0};
    int rc = task_inputs(info, g, t, &l, NULL);
    if (rc != 0)
        return rc;
    return out && l.n > max ? DMRI_ERANGE : l.n;
}

int dmri_task_output(const dmri_graph_t *g, const dmri_task_t *t, dmri_keyref_t *out) {
    layout_t L;
    if (layout_of(NULL, g, &L) != 0)
        return DMRI_EINVAL;
    int gi, s;
    switch (t->kind) {
    case DMRI_TASK_MEANB0: *out = (dmri_keyref_t){DMRI_KEY_MEANB0, -1, -1}; return 1;
    case DMRI_TASK_MEDIAN1:
    case DMRI_TASK_MEDIAN2:
        if ((s = task_median_slab(&L, t)) < 0)
            return DMRI_EINVAL;
        *out = (dmri_keyref_t){t->kind == DMRI_TASK_MEDIAN1 ? DMRI_KEY_MEDIAN1 : DMRI_KEY_MEDIAN2,
                               -1, s};
        return 1;
    case DMRI_TASK_MASK: *out = (dmri_keyref_t){DMRI_KEY_MASK, -1, -1}; return 1;
    case DMRI_TASK_SIGMA:
        if ((gi = task_group(&L, t)) < 0)
            return DMRI_EINVAL;
        *out = (dmri_keyref_t){DMRI_KEY_SIGMA, gi, -1};
        return 1;
    case DMRI_TASK_NLMEANS:
        if ((gi = task_group(&L, t)) < 0 || (s = task_slab(&L, t)) < 0)
            return DMRI_EINVAL;
        *out = (dmri_keyref_t){DMRI_KEY_DEN, gi, s};
        return 1;
    case DMRI_TASK_DTI:
        if ((s = task_slab(&L, t)) < 0)
            return DMRI_EINVAL;
        *out = (dmri_keyref_t){DMRI_KEY_MAPS, -1, s};
        return 1;
    case DMRI_TASK_SAVE: return 0;
    default: return DMRI_EINVAL;
    }
}

/* ------------------------------------------------------------ chunk sizes */

static size_t chunk_size_l(const dmri_info_t *info, const layout_t *L, const dmri_keyref_t *ref) {
    if (!ref_valid(ref))
        return 0;
    int z0, z1, v0 = 0, v1 = 0;
    if (kind_has_g(ref->kind)) {
        if (ref->g >= L->ngroups)
            return 0;
        group_range(L, ref->g, &v0, &v1);
    }
    switch (ref->kind) {
    case DMRI_KEY_INFO:
        return info_encoded_len(strnlen(info->name, sizeof info->name),
                                strnlen(info->data_path, sizeof info->data_path), L->nv);
    case DMRI_KEY_RAW:
    case DMRI_KEY_DEN:
        if (ref->s >= L->nslabs)
            return 0;
        slab_range(L, ref->s, &z0, &z1);
        return (size_t)(v1 - v0) * L->plane * (size_t)(z1 - z0) * L->ssz;
    case DMRI_KEY_MEANB0: return L->nvox * L->esz;
    case DMRI_KEY_MEDIAN1:
    case DMRI_KEY_MEDIAN2:
        if (ref->s >= L->nmed)
            return 0;
        median_range(L, ref->s, &z0, &z1);
        return L->plane * (size_t)(z1 - z0) * L->esz;
    case DMRI_KEY_MASK: return L->nvox + sizeof(double);
    case DMRI_KEY_SIGMA: return (size_t)(v1 - v0) * sizeof(float);
    case DMRI_KEY_MAPS:
        if (ref->s >= L->nslabs)
            return 0;
        slab_range(L, ref->s, &z0, &z1);
        return NMAPS * L->plane * (size_t)(z1 - z0) * sizeof(float);
    default: return 0;
    }
}

size_t dmri_chunk_size(const dmri_info_t *info, const dmri_graph_t *g, const dmri_keyref_t *ref) {
    layout_t L;
    if (!info || layout_of(info, g, &L) != 0)
        return 0;
    return chunk_size_l(info, &L, ref);
}

/* ------------------------------------------------------------------- load */

int dmri_chunk_load(const char *subject, const char *data_dir, const dmri_s3_source_t *s3,
                    double b0_threshold,
                    int skip_denoise, int slab_slices, int vols_per_task, dmri_info_t *info,
                    dmri_chunk_t **raw, int *nraw, dmri_err_t *err) {
    memset(info, 0, sizeof *info);
    *raw = NULL;
    *nraw = 0;
    if (slab_slices < 0 || vols_per_task < 1)
        return dmri_err_set(err, DMRI_EINVAL, "%s: bad chunking (slab %d, volumes %d)",
                            subject ? subject : "?", slab_slices, vols_per_task);
    dmri_subject_paths_t paths;
    int rc = dmri_subject_resolve_s3(subject, data_dir, s3, &paths, err);
    if (rc != 0)
        return rc;
    dmri_subject_t subj;
    dmri_subject_opts_t sopts = {.b0_threshold = b0_threshold, .skip_denoise = skip_denoise,
                                 .s3 = s3};
    if ((rc = dmri_subject_load(&subj, &paths, &sopts, err)) != 0)
        return rc;
    const dmri_image_t *img = &subj.img;
    if (img->nx > MAX_DIM || img->ny > MAX_DIM || img->nz > MAX_DIM || img->nv > MAX_DIM) {
        dmri_subject_close(&subj);
        return dmri_err_set(err, DMRI_EUNSUP, "%s: %dx%dx%dx%d: sizes above %d are not supported",
                            paths.data_path, img->nx, img->ny, img->nz, img->nv, MAX_DIM);
    }
    snprintf(info->name, sizeof info->name, "%s", paths.name);
    snprintf(info->data_path, sizeof info->data_path, "%s", paths.data_path);
    info->geom = *img;
    info->geom.data = NULL;
    info->bvals = dmri_malloc((size_t)img->nv * sizeof(double));
    info->bvecs = dmri_malloc((size_t)img->nv * 3 * sizeof(double));
    memcpy(info->bvals, subj.bvals, (size_t)img->nv * sizeof(double));
    memcpy(info->bvecs, subj.bvecs, (size_t)img->nv * 3 * sizeof(double));
    info->b0_threshold = b0_threshold;
    info->skip_denoise = skip_denoise ? 1 : 0;
    info->slab_slices = slab_slices;
    info->vols_per_task = vols_per_task;

    dmri_graph_params_t p;
    dmri_info_graph_params(info, 0, &p);
    layout_t L;
    layout_from_params(&p, &L);
    layout_set_types(&L, img);
    int n = L.ngroups * L.nslabs;
    dmri_chunk_t *c = dmri_calloc((size_t)n, sizeof *c);
    for (int gi = 0; gi < L.ngroups; gi++) {
        int v0, v1;
        group_range(&L, gi, &v0, &v1);
        for (int s = 0; s < L.nslabs; s++) {
            int z0, z1;
            slab_range(&L, s, &z0, &z1);
            size_t block = L.plane * (size_t)(z1 - z0) * L.ssz;
            dmri_chunk_t *ch = &c[gi * L.nslabs + s];
            ch->size = block * (size_t)(v1 - v0);
            ch->data = dmri_malloc(ch->size);
            for (int v = v0; v < v1; v++)
                memcpy((char *)ch->data + (size_t)(v - v0) * block,
                       (const char *)img->data + ((size_t)v * L.nvox + (size_t)z0 * L.plane) * L.ssz,
                       block);
        }
    }
    dmri_subject_close(&subj);
    *raw = c;
    *nraw = n;
    return 0;
}

/* -------------------------------------------------------------------- run */

/* "nlmeans g3 s2", for messages. */
static void task_label(const layout_t *L, const dmri_task_t *t, char *out, size_t outsz) {
    int n = snprintf(out, outsz, "%s", dmri_task_kind_name(t->kind));
    if (n < 0 || (size_t)n >= outsz)
        return;
    int gi = -1, s = -1;
    switch (t->kind) {
    case DMRI_TASK_SIGMA: gi = task_group(L, t); break;
    case DMRI_TASK_NLMEANS: gi = task_group(L, t); s = task_slab(L, t); break;
    case DMRI_TASK_DTI: s = task_slab(L, t); break;
    case DMRI_TASK_MEDIAN1:
    case DMRI_TASK_MEDIAN2: s = task_median_slab(L, t); break;
    default: break;
    }
    if (gi >= 0)
        n += snprintf(out + n, outsz - (size_t)n, " g%d", gi);
    if (s >= 0 && n >= 0 && (size_t)n < outsz)
        snprintf(out + n, outsz - (size_t)n, " s%d", s);
}

/* What one task run needs: the layout, the inputs, the output. */
typedef struct {
    const dmri_info_t *info;
    layout_t L;
    const dmri_chunk_t *in;
    int nin;
    dmri_chunk_t *out;
} job_t;

static const void *in_data(const job_t *j, int i) {
    return j->in[i].data;
}

/* Copy the median/mean slabs starting at input `first` into one volume. */
static void gather_median(const job_t *j, int first, void *vol) {
    for (int s = 0; s < j->L.nmed; s++) {
        int z0, z1;
        median_range(&j->L, s, &z0, &z1);
        memcpy((char *)vol + (size_t)z0 * j->L.plane * j->L.esz, in_data(j, first + s),
               (size_t)(z1 - z0) * j->L.plane * j->L.esz);
    }
}

/* Volume k of group chunk set: slices [za, zb) of volume k of the group,
 * from the raw (or den) chunks of slabs first_slab.. held at inputs
 * first_input.., into dst (slice za at dst). */
static void gather_slices(const job_t *j, int first_input, int first_slab, int k, int za, int zb,
                          void *dst) {
    const layout_t *L = &j->L;
    for (int z = za; z < zb;) {
        int s = z / L->slab, z0, z1;
        slab_range(L, s, &z0, &z1);
        int e = z1 < zb ? z1 : zb;
        size_t nzs = (size_t)(z1 - z0);
        const char *src = (const char *)in_data(j, first_input + (s - first_slab)) +
                          ((size_t)k * nzs + (size_t)(z - z0)) * L->plane * L->ssz;
        memcpy((char *)dst + (size_t)(z - za) * L->plane * L->ssz, src,
               (size_t)(e - z) * L->plane * L->ssz);
        z = e;
    }
}

static int run_meanb0(job_t *j, dmri_err_t *err) {
    const layout_t *L = &j->L;
    dmri_gtab_t gt;
    int rc = info_gtab(j->info, &gt, err);
    if (rc != 0)
        return rc;
    /* Inputs are the b0-holding groups in ascending order, every slab each. */
    int *gpos = dmri_malloc((size_t)L->ngroups * sizeof(int));
    for (int k = 0; k < L->ngroups; k++)
        gpos[k] = -1;
    for (int k = 0, next = 0; k < gt.nb0; k++) {
        int gi = gt.b0_idx[k] / L->vpt;
        if (gpos[gi] < 0)
            gpos[gi] = next++;
    }
    void *vols = dmri_malloc((size_t)gt.nb0 * L->nvox * L->ssz);
    int *idx = dmri_malloc((size_t)gt.nb0 * sizeof(int));
    for (int k = 0; k < gt.nb0; k++) {
        int v = gt.b0_idx[k], gi = v / L->vpt;
        gather_slices(j, 1 + gpos[gi] * L->nslabs, 0, v - gi * L->vpt, 0, L->nz,
                      (char *)vols + (size_t)k * L->nvox * L->ssz);
        idx[k] = k;
    }
    j->out->size = L->nvox * L->esz;
    j->out->data = dmri_malloc(j->out->size);
    const dmri_image_t *im = &j->info->geom;
    /* Same kernel choice as tasks.c's run_meanb0; ascending b0 order kept. */
    if (im->store == DMRI_STORE_F64)
        dmri_meanb0_f64(vols, L->nvox, idx, gt.nb0, j->out->data);
    else if (dmri_image_is_f32_semantics(im))
        dmri_meanb0_f32(vols, L->nvox, idx, gt.nb0, j->out->data);
    else
        dmri_meanb0_f32_to_f64(vols, L->nvox, idx, gt.nb0, j->out->data);
    dmri_free(vols);
    dmri_free(idx);
    dmri_free(gpos);
    dmri_gtab_close(&gt);
    return 0;
}

static void run_median(job_t *j, const void *in, int s) {
    const layout_t *L = &j->L;
    int z0, z1;
    median_range(L, s, &z0, &z1);
    size_t wl = dmri_median3d_workspace_len(MEDIAN_RADIUS);
    void *ws = dmri_malloc(wl * L->esz);
    void *full = dmri_malloc(L->nvox * L->esz);
    if (L->esz == sizeof(float))
        dmri_median3d_f32(in, L->nx, L->ny, L->nz, MEDIAN_RADIUS, z0, z1, full, ws);
    else
        dmri_median3d_f64(in, L->nx, L->ny, L->nz, MEDIAN_RADIUS, z0, z1, full, ws);
    j->out->size = L->plane * (size_t)(z1 - z0) * L->esz;
    if (z0 == 0 && z1 == L->nz) {
        j->out->data = full;
    } else {
        j->out->data = dmri_malloc(j->out->size);
        memcpy(j->out->data, (char *)full + (size_t)z0 * L->plane * L->esz, j->out->size);
        dmri_free(full);
    }
    dmri_free(ws);
}

static int run_mask(job_t *j, dmri_err_t *err) {
    const layout_t *L = &j->L;
    void *med = dmri_malloc(L->nvox * L->esz);
    gather_median(j, 1, med);
    uint8_t *mask0 = dmri_malloc(L->nvox);
    double thr = 0;
    int rc;
    if (L->esz == sizeof(float)) {
        float t;
        rc = dmri_otsu_threshold_f32(med, L->nvox, &t, err);
        if (rc == 0) {
            dmri_mask_threshold_f32(med, L->nvox, t, mask0);
            thr = t;
        }
    } else {
        double t;
        rc = dmri_otsu_threshold_f64(med, L->nvox, &t, err);
        if (rc == 0) {
            dmri_mask_threshold_f64(med, L->nvox, t, mask0);
            thr = t;
        }
    }
    if (rc == 0) {
        j->out->size = L->nvox + sizeof(double);
        j->out->data = dmri_malloc(j->out->size);
        dmri_mask_dilate_cross(mask0, L->nx, L->ny, L->nz, j->out->data);
        memcpy((uint8_t *)j->out->data + L->nvox, &thr, sizeof thr);
    } else {
        dmri_err_prefix(err, "%s: brain mask: ", j->info->data_path);
    }
    dmri_free(mask0);
    dmri_free(med);
    return rc;
}

static void run_sigma(job_t *j, int gi) {
    const layout_t *L = &j->L;
    int v0, v1;
    group_range(L, gi, &v0, &v1);
    void *vol = dmri_malloc(L->nvox * L->ssz);
    j->out->size = (size_t)(v1 - v0) * sizeof(float);
    float *sig = j->out->data = dmri_malloc(j->out->size);
    for (int k = 0; k < v1 - v0; k++) {
        gather_slices(j, 1, 0, k, 0, L->nz, vol);
        sig[k] = L->ssz == sizeof(float) ? dmri_sigma_volume_f32(vol, L->nx, L->ny, L->nz)
                                         : dmri_sigma_volume_f64(vol, L->nx, L->ny, L->nz);
    }
    dmri_free(vol);
}

static void run_nlmeans(job_t *j, int gi, int s) {
    const layout_t *L = &j->L;
    int v0, v1, z0, z1, sa, sb;
    group_range(L, gi, &v0, &v1);
    slab_range(L, s, &z0, &z1);
    halo_slabs(L, s, &sa, &sb);
    int nx = L->nx, ny = L->ny, nz = L->nz, nzs = z1 - z0;
    int sz0 = z0 - DMRI_NLMEANS_HALO < 0 ? 0 : z0 - DMRI_NLMEANS_HALO;
    int sz1 = z1 + DMRI_NLMEANS_HALO > nz ? nz : z1 + DMRI_NLMEANS_HALO;
    size_t n = L->plane * (size_t)nzs;
    const uint8_t *mask = (const uint8_t *)in_data(j, 1) + (size_t)z0 * L->plane;
    const float *sigma = in_data(j, 2);
    /* As tasks.c: the float64 result goes back to the input's type, integer
     * types truncated toward zero (dipy's .astype). */
    int integer = dmri_image_is_integer(&j->info->geom);
    void *src = dmri_malloc((size_t)(sz1 - sz0) * L->plane * L->ssz);
    double *padded = dmri_malloc(dmri_nlmeans_padded_len(nx, ny, nzs) * sizeof(double));
    double *ws = dmri_malloc(dmri_nlmeans_workspace_len(nx, ny, nzs) * sizeof(double));
    double *res = dmri_malloc(n * sizeof(double));
    j->out->size = n * (size_t)(v1 - v0) * L->ssz;
    j->out->data = dmri_malloc(j->out->size);
    for (int k = 0; k < v1 - v0; k++) {
        gather_slices(j, 3, sa, k, sz0, sz1, src);
        if (L->ssz == sizeof(float))
            dmri_nlmeans_pad_f32(src, nx, ny, nz, sz0, sz1, z0, z1, padded);
        else
            dmri_nlmeans_pad_f64(src, nx, ny, nz, sz0, sz1, z0, z1, padded);
        dmri_nlmeans_block(padded, nx, ny, z0, nzs, mask, (double)sigma[k], 1, res, ws);
        if (L->ssz == sizeof(float)) {
            float *d = (float *)j->out->data + (size_t)k * n;
            for (size_t i = 0; i < n; i++)
                d[i] = (float)(integer ? trunc(res[i]) : res[i]);
        } else {
            double *d = (double *)j->out->data + (size_t)k * n;
            for (size_t i = 0; i < n; i++)
                d[i] = integer ? trunc(res[i]) : res[i];
        }
    }
    dmri_free(src);
    dmri_free(padded);
    dmri_free(ws);
    dmri_free(res);
}

static int run_dti(job_t *j, int s, dmri_err_t *err) {
    const layout_t *L = &j->L;
    const dmri_image_t *im = &j->info->geom;
    dmri_gtab_t gt;
    int rc = info_gtab(j->info, &gt, err);
    if (rc != 0)
        return rc;
    dmri_dti_model_t model;
    rc = dmri_dti_model_init(&model, gt.b_eff, gt.g_eff, L->nv, err);
    dmri_gtab_close(&gt);
    if (rc != 0) {
        dmri_err_prefix(err, "%s: tensor model: ", j->info->name);
        return rc;
    }
    int z0, z1, G = L->nv;
    slab_range(L, s, &z0, &z1);
    size_t n = L->plane * (size_t)(z1 - z0);
    const uint8_t *mask = (const uint8_t *)in_data(j, 1) + (size_t)z0 * L->plane;
    int f32sem = dmri_image_is_f32_semantics(im);
    j->out->size = NMAPS * n * sizeof(float);
    float *maps = j->out->data = dmri_calloc(NMAPS * n, sizeof(float));
    /* Volume v of the slab lives in its group's chunk; the log rules are
     * tasks.c's run_dti (the same batched kernel call). */
    size_t esz = im->store == DMRI_STORE_F64 ? sizeof(double) : sizeof(float);
    const void **vols = dmri_malloc((size_t)G * sizeof(void *));
    for (int v = 0; v < G; v++) {
        int gi = v / L->vpt;
        vols[v] = (const char *)in_data(j, 2 + gi) + (size_t)(v - gi * L->vpt) * n * esz;
    }
    dmri_dti_input_t kind = im->store == DMRI_STORE_F64 ? DMRI_DTI_IN_F64
                            : f32sem                   ? DMRI_DTI_IN_F32
                                                       : DMRI_DTI_IN_F32_AS_F64;
    dmri_dti_out_t out = {.fa = maps, .md = maps + n, .ad = maps + 2 * n, .rd = maps + 3 * n,
                          .color_fa = maps + 4 * n, .evecs_map = maps + 7 * n, .stride = n};
    dmri_dti_fit_block(&model, kind, (const void *const *)vols, 1, n, mask, &out);
    dmri_free(vols);
    dmri_dti_model_close(&model);
    return 0;
}

int dmri_chunk_run(const dmri_info_t *info, const dmri_graph_t *g, const dmri_task_t *t,
                   const dmri_keyref_t *in_refs, const dmri_chunk_t *inputs, int ninputs,
                   dmri_chunk_t *output, dmri_err_t *err) {
    output->data = NULL;
    output->size = 0;
    job_t j = {.info = info, .in = inputs, .nin = ninputs, .out = output};
    if (!info || !g || !t || layout_of(info, g, &j.L) != 0)
        return dmri_err_set(err, DMRI_EINVAL, "%s: the task graph does not match the subject's "
                            "info", t ? dmri_task_kind_name(t->kind) : "task");
    char label[64];
    task_label(&j.L, t, label, sizeof label);
    if (t->kind == DMRI_TASK_SAVE || t->kind < 0 || t->kind >= DMRI_TASK_NKINDS)
        return dmri_err_set(err, DMRI_EINVAL, "%s: not a task a worker runs", label);
    if (t->kind == DMRI_TASK_NLMEANS &&
        (j.L.nx < DMRI_NLMEANS_MIN_SIZE || j.L.ny < DMRI_NLMEANS_MIN_SIZE ||
         j.L.nz < DMRI_NLMEANS_MIN_SIZE))
        return dmri_err_set(err, DMRI_EUNSUP, "%s: image too small for NL-means", label);

    /* The inputs must be exactly the ones dmri_task_inputs names, each of
     * its chunk size. */
    reflist_t l = {NULL, 0, 0};
    int rc = task_inputs(info, g, t, &l, err);
    if (rc != 0) {
        dmri_err_prefix(err, "%s: ", label);
        return rc;
    }
    l.out = dmri_malloc((size_t)l.n * sizeof *l.out);
    l.max = l.n;
    l.n = 0;
    task_inputs(info, g, t, &l, NULL);
    if (ninputs != l.n || (ninputs > 0 && (!in_refs || !inputs))) {
        rc = dmri_err_set(err, DMRI_EINVAL, "%s: %d inputs, expected %d", label, ninputs, l.n);
        goto out;
    }
    for (int i = 0; i < l.n; i++) {
        char want[64], got[64];
        key_tail(want, sizeof want, &l.out[i]);
        if (in_refs[i].kind != l.out[i].kind || in_refs[i].g != l.out[i].g ||
            in_refs[i].s != l.out[i].s) {
            key_tail(got, sizeof got, &in_refs[i]);
            rc = dmri_err_set(err, DMRI_EINVAL, "%s: input %d is %s, expected %s", label, i, got,
                              want);
            goto out;
        }
        if (i == 0)
            continue; /* info: passed decoded */
        size_t expect = chunk_size_l(info, &j.L, &l.out[i]);
        if (inputs[i].size != expect || !inputs[i].data) {
            rc = dmri_err_set(err, DMRI_EFORMAT, "%s: input %s has %zu bytes, expected %zu",
                              label, want, inputs[i].data ? inputs[i].size : 0, expect);
            goto out;
        }
    }

    switch (t->kind) {
    case DMRI_TASK_MEANB0: rc = run_meanb0(&j, err); break;
    case DMRI_TASK_MEDIAN1: run_median(&j, in_data(&j, 1), task_median_slab(&j.L, t)); break;
    case DMRI_TASK_MEDIAN2: {
        void *vol = dmri_malloc(j.L.nvox * j.L.esz);
        gather_median(&j, 1, vol);
        run_median(&j, vol, task_median_slab(&j.L, t));
        dmri_free(vol);
        break;
    }
    case DMRI_TASK_MASK: rc = run_mask(&j, err); break;
    case DMRI_TASK_SIGMA: run_sigma(&j, task_group(&j.L, t)); break;
    case DMRI_TASK_NLMEANS: run_nlmeans(&j, task_group(&j.L, t), task_slab(&j.L, t)); break;
    case DMRI_TASK_DTI: rc = run_dti(&j, task_slab(&j.L, t), err); break;
    default: rc = dmri_err_set(err, DMRI_EINVAL, "%s: unknown task kind", label); break;
    }
    if (rc != 0) {
        if (err && strncmp(err->msg, label, strlen(label)) != 0)
            dmri_err_prefix(err, "%s: ", label);
        dmri_free(output->data);
        output->data = NULL;
        output->size = 0;
    }
out:
    dmri_free(l.out);
    return rc;
}

/* --------------------------------------------------------------- assembly */

struct dmri_assembly {
    dmri_info_t info;        /* deep copy */
    layout_t L;
    dmri_graph_t graph;      /* which SAVE outputs to write, step names */
    uint8_t *mask;           /* nvox */
    double otsu_threshold;
    int have_mask;
    float *sigma;            /* nv */
    uint8_t *have_sigma;     /* ngroups */
    float *maps;             /* NMAPS*nvox: plane m of every maps chunk in
                              * volume m (fa, md, ad, rd, color_fa 0..2,
                              * evecs 0..8: the outputs' own layouts) */
    uint8_t *have_maps;      /* nslabs */
    void *denoised;          /* nvox*nv store type, when save_denoised */
    uint8_t *have_den;       /* ngroups*nslabs */
};

dmri_assembly_t *dmri_assembly_new(const dmri_info_t *info, int save_denoised) {
    dmri_assembly_t *a = dmri_calloc(1, sizeof *a);
    a->info = *info;
    int nv = info->geom.nv;
    a->info.bvals = dmri_malloc((size_t)nv * sizeof(double));
    a->info.bvecs = dmri_malloc((size_t)nv * 3 * sizeof(double));
    memcpy(a->info.bvals, info->bvals, (size_t)nv * sizeof(double));
    memcpy(a->info.bvecs, info->bvecs, (size_t)nv * 3 * sizeof(double));
    dmri_graph_params_t p;
    dmri_info_graph_params(info, save_denoised, &p);
    if (dmri_graph_build(&a->graph, &p, NULL) != 0) {
        dmri_assembly_destroy(&a);
        return NULL;
    }
    layout_from_params(&p, &a->L);
    layout_set_types(&a->L, &info->geom);
    const layout_t *L = &a->L;
    a->mask = dmri_calloc(L->nvox, 1);
    a->sigma = dmri_calloc((size_t)nv, sizeof(float));
    a->have_sigma = dmri_calloc((size_t)L->ngroups, 1);
    a->maps = dmri_calloc(NMAPS * L->nvox, sizeof(float));
    a->have_maps = dmri_calloc((size_t)L->nslabs, 1);
    if (save_denoised) {
        a->denoised = dmri_calloc(L->nvox * (size_t)nv, L->ssz);
        a->have_den = dmri_calloc((size_t)L->ngroups * (size_t)L->nslabs, 1);
    }
    return a;
}

void dmri_assembly_destroy(dmri_assembly_t **ap) {
    if (!ap || !*ap)
        return;
    dmri_assembly_t *a = *ap;
    dmri_info_close(&a->info);
    dmri_graph_close(&a->graph);
    dmri_free(a->mask);
    dmri_free(a->sigma);
    dmri_free(a->have_sigma);
    dmri_free(a->maps);
    dmri_free(a->have_maps);
    dmri_free(a->denoised);
    dmri_free(a->have_den);
    dmri_free(a);
    *ap = NULL;
}

int dmri_assembly_add(dmri_assembly_t *a, const dmri_keyref_t *ref, const void *data,
                      size_t size, dmri_err_t *err) {
    const layout_t *L = &a->L;
    dmri_key_kind_t den_kind = L->skip_denoise ? DMRI_KEY_RAW : DMRI_KEY_DEN;
    int wanted = ref_valid(ref) &&
                 (ref->kind == DMRI_KEY_MASK || ref->kind == DMRI_KEY_SIGMA ||
                  ref->kind == DMRI_KEY_MAPS || (a->denoised && ref->kind == den_kind));
    if (!wanted)
        return 0;
    char name[64];
    key_tail(name, sizeof name, ref);
    size_t expect = chunk_size_l(&a->info, L, ref);
    if (expect == 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: result %s is out of range", a->info.name,
                            name);
    if (size != expect || !data)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: result %s has %zu bytes, expected %zu",
                            a->info.name, name, size, expect);
    int v0, v1, z0, z1;
    switch (ref->kind) {
    case DMRI_KEY_MASK:
        memcpy(a->mask, data, L->nvox);
        memcpy(&a->otsu_threshold, (const uint8_t *)data + L->nvox, sizeof(double));
        a->have_mask = 1;
        break;
    case DMRI_KEY_SIGMA:
        group_range(L, ref->g, &v0, &v1);
        memcpy(a->sigma + v0, data, size);
        a->have_sigma[ref->g] = 1;
        break;
    case DMRI_KEY_MAPS: {
        slab_range(L, ref->s, &z0, &z1);
        size_t n = L->plane * (size_t)(z1 - z0);
        for (int m = 0; m < NMAPS; m++)
            memcpy(a->maps + (size_t)m * L->nvox + (size_t)z0 * L->plane, (const float *)data + (size_t)m * n,
                   n * sizeof(float));
        a->have_maps[ref->s] = 1;
        break;
    }
    default: {
        group_range(L, ref->g, &v0, &v1);
        slab_range(L, ref->s, &z0, &z1);
        size_t block = L->plane * (size_t)(z1 - z0) * L->ssz;
        for (int v = v0; v < v1; v++)
            memcpy((char *)a->denoised + ((size_t)v * L->nvox + (size_t)z0 * L->plane) * L->ssz,
                   (const char *)data + (size_t)(v - v0) * block, block);
        a->have_den[ref->g * L->nslabs + ref->s] = 1;
        break;
    }
    }
    return 0;
}

int dmri_assembly_complete(const dmri_assembly_t *a) {
    const layout_t *L = &a->L;
    if (!a->have_mask)
        return 0;
    for (int k = 0; k < L->ngroups; k++)
        if (!a->have_sigma[k])
            return 0;
    for (int k = 0; k < L->nslabs; k++)
        if (!a->have_maps[k])
            return 0;
    if (a->denoised)
        for (int k = 0; k < L->ngroups * L->nslabs; k++)
            if (!a->have_den[k])
                return 0;
    return 1;
}

static void remove_stage(const char *stage) {
    DIR *d = opendir(stage);
    if (d) {
        struct dirent *e;
        char p[DMRI_PATH_MAX];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (dmri_path_join(p, sizeof p, stage, e->d_name) == 0)
                unlink(p);
        }
        closedir(d);
    }
    rmdir(stage);
}

int dmri_assembly_write_preview(const dmri_assembly_t *a, const char *out_dir, dmri_err_t *err) {
    char path[DMRI_PATH_MAX];
    if (dmri_path_join(path, sizeof path, out_dir, DMRI_PREVIEW_FILE) != 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", out_dir);
    const dmri_image_t *g = &a->info.geom;
    return dmri_preview_write(path, g->nx, g->ny, g->nz, a->maps, a->maps + 4 * a->L.nvox, err);
}

int dmri_assembly_write(dmri_assembly_t *a, const char *out_dir, const char *summary_extra,
                        dmri_err_t *err) {
    if (!dmri_assembly_complete(a))
        return dmri_err_set(err, DMRI_EINVAL, "%s: results incomplete, nothing written",
                            a->info.name);
    int rc;
    if ((rc = dmri_mkdir_p(out_dir, err)) != 0)
        return rc;
    /* As dmri-run: every file is written in a stage folder, then moved. */
    char stage[DMRI_PATH_MAX];
    int n = snprintf(stage, sizeof stage, "%s/.dmri-partial-%ld", out_dir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof stage)
        return dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", out_dir);
    remove_stage(stage);
    if (mkdir(stage, 0755) != 0)
        return dmri_err_set(err, DMRI_EIO, "%s: cannot write in the output folder: %s", out_dir,
                            strerror(errno));
    const dmri_graph_t *g = &a->graph;
    size_t nvox = a->L.nvox;
    dmri_outputs_data_t d = {.mask = a->mask, .fa = a->maps, .md = a->maps + nvox,
                             .ad = a->maps + 2 * nvox, .rd = a->maps + 3 * nvox,
                             .color_fa = a->maps + 4 * nvox, .evecs = a->maps + 7 * nvox,
                             .denoised = a->denoised};
    for (int i = 0; i < g->ntasks && rc == 0; i++)
        if (g->tasks[i].kind == DMRI_TASK_SAVE)
            rc = dmri_outputs_write(stage, &a->info.geom, (dmri_output_t)g->tasks[i].output, &d,
                                    err);
    for (int i = 0; i < g->ntasks && rc == 0; i++) {
        if (g->tasks[i].kind != DMRI_TASK_SAVE)
            continue;
        const char *name = dmri_output_file_name((dmri_output_t)g->tasks[i].output);
        char from[DMRI_PATH_MAX], to[DMRI_PATH_MAX];
        if (dmri_path_join(from, sizeof from, stage, name) != 0 ||
            dmri_path_join(to, sizeof to, out_dir, name) != 0) {
            rc = dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", out_dir);
            break;
        }
        if (rename(from, to) != 0)
            rc = dmri_err_set(err, DMRI_EIO, "%s: cannot move into place: %s", to,
                              strerror(errno));
    }
    if (rc == 0) {
        dmri_gtab_t gt;
        char sp[DMRI_PATH_MAX];
        if (dmri_path_join(sp, sizeof sp, out_dir, "summary.json") != 0) {
            rc = dmri_err_set(err, DMRI_ERANGE, "%s: output path too long", out_dir);
        } else if ((rc = info_gtab(&a->info, &gt, err)) == 0) {
            dmri_summary_t s = {.subject = a->info.name,
                                .input = a->info.data_path,
                                .geom = &a->info.geom,
                                .b0_threshold = a->info.b0_threshold,
                                .b0_volumes = gt.nb0,
                                .otsu_threshold = a->otsu_threshold,
                                .mask_voxels = dmri_mask_count(a->mask, nvox),
                                .denoised = !a->info.skip_denoise,
                                .sigma = a->sigma,
                                .load_s = NAN,
                                .total_s = NAN,
                                .threads = 0,
                                .cluster = summary_extra};
            /* Step timings live in the scheduler's "cluster" object. */
            for (int k = 0; k < DMRI_TASK_NKINDS; k++) {
                s.has_step[k] = dmri_graph_count(g, (dmri_task_kind_t)k) > 0;
                s.step_s[k] = NAN;
            }
            dmri_gtab_close(&gt);
            rc = dmri_outputs_write_summary(sp, &s, err);
        }
    }
    remove_stage(stage);
    return rc;
}
