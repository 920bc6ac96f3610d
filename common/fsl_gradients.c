/* fsl_gradients: FSL bvals/bvecs text files, read as dipy 1.6.0's
 * read_bvals_bvecs reads them (see fsl_gradients.h, PIPELINE.md Step 1).
 *
 * dipy replaces tabs and commas by blanks, hands the text to numpy.loadtxt
 * ('#' comments, blank lines skipped, every row the same length, Python float
 * syntax) and squeezes the matrix. We parse the same matrix, then apply the
 * same shape rules, turning the cases dipy accepts but cannot use later (one
 * direction, two directions) into errors up front. */
#include "fsl_gradients.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dmri_alloc.h"

/* Gradient files hold a few thousand numbers; anything this big is not one. */
#define MAX_FILE_BYTES ((long)64 << 20)

typedef struct {
    double *v;   /* rows x cols values, row-major */
    int rows, cols;
} matrix_t;

static int is_blank(char c) {
    /* Tabs and commas are blanks for dipy; the rest is what Python's
     * str.split() treats as whitespace in ASCII. */
    return c == ' ' || c == '\t' || c == ',' || c == '\v' || c == '\f' || c == '\r';
}

/* One number with Python float() syntax: decimal with optional exponent,
 * inf/infinity/nan with optional sign. strtod also takes hex and "nan(...)",
 * which numpy does not, so those are refused. */
static int parse_number(const char *tok, size_t len, double *out) {
    char buf[128];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, tok, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] == 'x' || buf[i] == 'X' || buf[i] == '(' || buf[i] == ')')
            return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + len)
        return -1;
    /* Overflow to inf is what Python does too ("1e999" -> inf); underflow
     * to 0 or a subnormal likewise, so ERANGE is not an error. */
    *out = v;
    return 0;
}

static int read_text(const char *path, char **text, long *len, dmri_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR)
            return dmri_err_set(err, DMRI_ENOENT, "%s: no such file", path);
        return dmri_err_set(err, DMRI_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dmri_err_set(err, DMRI_EIO, "%s: not a regular file", path);
    }
    if (st.st_size > MAX_FILE_BYTES) {
        fclose(f);
        return dmri_err_set(err, DMRI_EFORMAT, "%s: %lld bytes, too large for a gradient file",
                            path, (long long)st.st_size);
    }
    long n = (long)st.st_size;
    char *buf = dmri_malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)n) {
        dmri_free(buf);
        return dmri_err_set(err, DMRI_EIO, "%s: read error", path);
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/* Parse `text` (named `path` in messages) into a rows x cols matrix the way
 * numpy.loadtxt does. */
static int parse_matrix(const char *path, const char *text, long len, matrix_t *m,
                        dmri_err_t *err) {
    int rc = 0;

    size_t cap = 256, count = 0;
    double *vals = dmri_malloc(cap * sizeof *vals);
    int rows = 0, cols = 0, line = 0;
    long pos = 0;
    while (pos < len) {
        /* One line: '\n', '\r\n' or a lone '\r' ends it (Python's universal
         * newlines); a NUL byte is kept inside so it fails as a number. */
        long start = pos;
        while (pos < len && text[pos] != '\n' && text[pos] != '\r')
            pos++;
        long stop = pos;
        if (pos < len && text[pos] == '\r' && pos + 1 < len && text[pos + 1] == '\n')
            pos++;
        pos++;
        line++;
        for (long i = start; i < stop; i++)
            if (text[i] == '#') {
                stop = i;
                break;
            }
        int ncol = 0;
        for (long i = start; i < stop;) {
            while (i < stop && is_blank(text[i]))
                i++;
            if (i >= stop)
                break;
            long t = i;
            while (i < stop && !is_blank(text[i]))
                i++;
            double v;
            if (parse_number(text + t, (size_t)(i - t), &v) != 0) {
                int shown = (int)(i - t) > 40 ? 40 : (int)(i - t);
                rc = dmri_err_set(err, DMRI_EFORMAT, "%s: line %d: '%.*s' is not a number", path,
                                  line, shown, text + t);
                goto fail;
            }
            if (count == cap) {
                cap *= 2;
                vals = dmri_realloc(vals, cap * sizeof *vals);
            }
            vals[count++] = v;
            ncol++;
        }
        if (ncol == 0)
            continue; /* blank or comment-only line */
        if (rows > 0 && ncol != cols) {
            rc = dmri_err_set(err, DMRI_EFORMAT,
                              "%s: line %d has %d values, the lines before it have %d", path,
                              line, ncol, cols);
            goto fail;
        }
        cols = ncol;
        rows++;
    }
    if (rows == 0) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "%s: no values", path);
        goto fail;
    }
    m->v = vals;
    m->rows = rows;
    m->cols = cols;
    return 0;
fail:
    dmri_free(vals);
    return rc;
}

static int read_matrix(const char *path, matrix_t *m, dmri_err_t *err) {
    char *text = NULL;
    long len = 0;
    int rc = read_text(path, &text, &len, err);
    if (rc != 0)
        return rc;
    rc = parse_matrix(path, text, len, m, err);
    dmri_free(text);
    return rc;
}

static int bvals_from_matrix(const char *path, matrix_t m, double **bvals, int *n,
                             dmri_err_t *err);
static int bvecs_from_matrix(const char *path, matrix_t m, double **bvecs, int *n,
                             dmri_err_t *err);

/* Text in memory: the same size limit and parser as a file. */
static int parse_text(const char *name, const char *text, size_t len, matrix_t *m,
                      dmri_err_t *err) {
    if ((long)len > MAX_FILE_BYTES)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: %zu bytes, too large for a gradient file",
                            name, len);
    return parse_matrix(name, text, (long)len, m, err);
}

int dmri_parse_bvals(const char *name, const char *text, size_t len, double **bvals, int *n,
                     dmri_err_t *err) {
    matrix_t m;
    int rc = parse_text(name, text, len, &m, err);
    return rc != 0 ? rc : bvals_from_matrix(name, m, bvals, n, err);
}

int dmri_parse_bvecs(const char *name, const char *text, size_t len, double **bvecs, int *n,
                     dmri_err_t *err) {
    matrix_t m;
    int rc = parse_text(name, text, len, &m, err);
    return rc != 0 ? rc : bvecs_from_matrix(name, m, bvecs, n, err);
}

int dmri_read_bvals(const char *path, double **bvals, int *n, dmri_err_t *err) {
    matrix_t m;
    int rc = read_matrix(path, &m, err);
    return rc != 0 ? rc : bvals_from_matrix(path, m, bvals, n, err);
}

static int bvals_from_matrix(const char *path, matrix_t m, double **bvals, int *n,
                             dmri_err_t *err) {
    /* After numpy's squeeze the values must form one axis: a row or a column. */
    if (m.rows > 1 && m.cols > 1) {
        dmri_free(m.v);
        return dmri_err_set(err, DMRI_EFORMAT,
                            "%s: expected one row or one column of b-values, found %d x %d", path,
                            m.rows, m.cols);
    }
    *bvals = m.v;
    *n = m.rows * m.cols;
    return 0;
}

int dmri_read_bvecs(const char *path, double **bvecs, int *n, dmri_err_t *err) {
    matrix_t m;
    int rc = read_matrix(path, &m, err);
    return rc != 0 ? rc : bvecs_from_matrix(path, m, bvecs, n, err);
}

static int bvecs_from_matrix(const char *path, matrix_t m, double **bvecs, int *n,
                             dmri_err_t *err) {
    int rc;
    int R = m.rows, C = m.cols;
    if (R != 3 && C != 3) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "%s: expected 3 rows or 3 columns, found %d x %d",
                          path, R, C);
        goto fail;
    }
    if (R == 1 || C == 1) {
        /* Squeezed to one axis of 3 values: dipy's reader then fails. */
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "%s: a single direction (%d x %d values); dipy cannot use fewer than "
                          "3 directions",
                          path, R, C);
        goto fail;
    }
    /* dipy transposes when the second axis is not 3, so N x 3 is kept as is
     * and a 3 x 3 file is read as three row vectors. */
    int N = C == 3 ? R : C;
    if (N == 2) {
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "%s: 2 directions; dipy's gradient table cannot use fewer than 3", path);
        goto fail;
    }
    double *out = dmri_malloc((size_t)N * 3 * sizeof *out);
    if (C == 3) {
        memcpy(out, m.v, (size_t)N * 3 * sizeof *out);
    } else {
        for (int i = 0; i < N; i++)
            for (int k = 0; k < 3; k++)
                out[i * 3 + k] = m.v[k * C + i];
    }
    dmri_free(m.v);
    *bvecs = out;
    *n = N;
    return 0;
fail:
    dmri_free(m.v);
    return rc;
}
