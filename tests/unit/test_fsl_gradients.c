/* Unit tests of common/fsl_gradients: the layouts dipy's read_bvals_bvecs
 * accepts (3xN, Nx3, 3x3 as rows, commas, tabs, comments, CRLF, nan), the
 * ones it rejects or cannot use later (wrong shapes, one or two directions,
 * ragged rows, non-numbers), and the messages naming the file. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmri_alloc.h"
#include "fsl_gradients.h"

static int failures = 0;

#define CHECK_INT(a, b)                                                              \
    do {                                                                             \
        long long va_ = (long long)(a), vb_ = (long long)(b);                        \
        if (va_ != vb_) {                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                               \
            failures++;                                                              \
        }                                                                            \
    } while (0)

#define CHECK_DBL(a, b)                                                                  \
    do {                                                                                 \
        double va_ = (a), vb_ = (b);                                                     \
        if (memcmp(&va_, &vb_, sizeof va_) != 0 && !(isnan(va_) && isnan(vb_))) {        \
            fprintf(stderr, "%s:%d: %s == %s failed: %.17g vs %.17g\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                   \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

#define CHECK_HAS(hay, needle)                                                          \
    do {                                                                                \
        if (!strstr((hay), (needle))) {                                                 \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
                    (hay), (needle));                                                   \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

static char tmpdir[256];

static void put(char *path, size_t n, const char *name, const char *text) {
    snprintf(path, n, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, strlen(text), f) != strlen(text)) {
        fprintf(stderr, "cannot write %s\n", path);
        failures++;
    }
    if (f)
        fclose(f);
}

/* Read bvecs from `text`; expect n directions equal to want (n x 3). */
static void expect_bvecs(const char *name, const char *text, int n, const double *want) {
    char p[512];
    put(p, sizeof p, name, text);
    double *v = NULL;
    int got = -1;
    dmri_err_t err = {0};
    int rc = dmri_read_bvecs(p, &v, &got, &err);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s: %s\n", name, err.msg);
        return;
    }
    CHECK_INT(got, n);
    for (int i = 0; i < n * 3 && got == n; i++)
        CHECK_DBL(v[i], want[i]);
    dmri_free(v);
}

static void expect_bvals(const char *name, const char *text, int n, const double *want) {
    char p[512];
    put(p, sizeof p, name, text);
    double *v = NULL;
    int got = -1;
    dmri_err_t err = {0};
    int rc = dmri_read_bvals(p, &v, &got, &err);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  %s: %s\n", name, err.msg);
        return;
    }
    CHECK_INT(got, n);
    for (int i = 0; i < n && got == n; i++)
        CHECK_DBL(v[i], want[i]);
    dmri_free(v);
}

static void expect_error(int bvecs, const char *name, const char *text, int code,
                         const char *needle) {
    char p[512];
    put(p, sizeof p, name, text);
    double *v = NULL;
    int n = -1;
    dmri_err_t err = {0};
    int rc = bvecs ? dmri_read_bvecs(p, &v, &n, &err) : dmri_read_bvals(p, &v, &n, &err);
    if (getenv("DMRI_TEST_VERBOSE"))
        printf("expected error: %s\n", err.msg);
    CHECK_INT(rc, code);
    CHECK_HAS(err.msg, p);
    CHECK_HAS(err.msg, needle);
    if (rc == 0)
        dmri_free(v);
}

static void test_bvecs_layouts(void) {
    /* Four directions: FSL 3 x N (one row per axis) and N x 3 give the same. */
    const double dirs[12] = {0, 0, 0, 1, 0, 0, 0, -0.6, 0.8, 0.48, 0.6, -0.64};
    expect_bvecs("fsl.bvec", "0 1 0 0.48\n0 0 -0.6 0.6\n0 0 0.8 -0.64\n", 4, dirs);
    expect_bvecs("nx3.bvec", "0 0 0\n1 0 0\n0 -0.6 0.8\n0.48 0.6 -0.64\n", 4, dirs);
    /* Separators, comments, blank lines, CRLF, lone CR, trailing blanks. */
    expect_bvecs("mixed.bvec",
                 "# FSL bvecs\r\n\r\n0,1,0,0.48  # x\r\n0\t0\t-0.6\t0.6\n\n"
                 "  0 ,\t0 , 0.8 , -0.64 ,\r# end",
                 4, dirs);
    /* 3 x 3 is ambiguous: dipy takes rows as vectors. */
    const double rows[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    expect_bvecs("3x3.bvec", "1 2 3\n4 5 6\n7 8 9\n", 3, rows);
    /* Number syntax of Python's float(): nan, inf, signs, exponents. */
    const double odd[12] = {NAN, NAN, NAN, 0.5, -0.0, 1e-3, INFINITY, -INFINITY, 100, 5, 0, 2};
    expect_bvecs("odd.bvec", "nan 0.5 inf 5\nNaN -0 -Infinity 0.\n-nan 1E-3 1.e2 +2\n", 4, odd);
    /* The sign of -0 and of -nan is kept, as numpy does. */
    char p[512];
    put(p, sizeof p, "signs.bvec", "-0 -nan 0\n1 2 3\n4 5 6\n");
    double *v = NULL;
    int n = 0;
    dmri_err_t err = {0};
    CHECK_INT(dmri_read_bvecs(p, &v, &n, &err), 0);
    if (v) {
        CHECK_INT(signbit(v[0]) != 0, 1);
        CHECK_INT(isnan(v[1]) && signbit(v[1]), 1);
        dmri_free(v);
    }
}

static void test_bvecs_errors(void) {
    expect_error(1, "4x5.bvec", "1 2 3 4 5\n1 2 3 4 5\n1 2 3 4 5\n1 2 3 4 5\n", DMRI_EFORMAT,
                 "expected 3 rows or 3 columns, found 4 x 5");
    expect_error(1, "2x3.bvec", "1 0 0\n0 1 0\n", DMRI_EFORMAT, "2 directions");
    expect_error(1, "3x2.bvec", "1 0\n0 1\n0 0\n", DMRI_EFORMAT, "2 directions");
    expect_error(1, "1x3.bvec", "0 0 1\n", DMRI_EFORMAT, "single direction");
    expect_error(1, "3x1.bvec", "0\n0\n1\n", DMRI_EFORMAT, "single direction");
    expect_error(1, "1x4.bvec", "0 0 1 1\n", DMRI_EFORMAT, "expected 3 rows or 3 columns, found 1 x 4");
    expect_error(1, "ragged.bvec", "1 2 3\n4 5 6\n7 8\n", DMRI_EFORMAT,
                 "line 3 has 2 values, the lines before it have 3");
    expect_error(1, "word.bvec", "1 2 3\n4 five 6\n7 8 9\n", DMRI_EFORMAT, "line 2: 'five' is not a number");
    expect_error(1, "hex.bvec", "1 2 3\n4 0x5 6\n7 8 9\n", DMRI_EFORMAT, "'0x5' is not a number");
    expect_error(1, "nanparen.bvec", "1 2 3\n4 nan(1) 6\n7 8 9\n", DMRI_EFORMAT, "is not a number");
    expect_error(1, "semicolon.bvec", "1;2;3\n4;5;6\n7;8;9\n", DMRI_EFORMAT, "is not a number");
    expect_error(1, "empty.bvec", "", DMRI_EFORMAT, "no values");
    expect_error(1, "comments.bvec", "# only\n  # comments\n\n", DMRI_EFORMAT, "no values");
    char p[512];
    snprintf(p, sizeof p, "%s/missing.bvec", tmpdir);
    double *v = NULL;
    int n = 0;
    dmri_err_t err = {0};
    CHECK_INT(dmri_read_bvecs(p, &v, &n, &err), DMRI_ENOENT);
    CHECK_HAS(err.msg, p);
    CHECK_HAS(err.msg, "no such file");
    CHECK_INT(dmri_read_bvecs(tmpdir, &v, &n, &err), DMRI_EIO);
    CHECK_HAS(err.msg, tmpdir);
}

static void test_bvals(void) {
    const double b[5] = {0, 1000, 2000, 5, 3000};
    expect_bvals("row.bval", "0 1000 2000 5 3000\n", 5, b);
    expect_bvals("col.bval", "0\n1000\n2000\n5\n3000\n", 5, b);
    expect_bvals("commas.bval", "# b\n0,1000,\t2000, 5 ,3000,\r\n", 5, b);
    expect_bvals("exp.bval", "0e0 1e3 2.0E+03 5 3000.0", 5, b);
    const double bn[3] = {0, NAN, 1000};
    expect_bvals("nan.bval", "0 nan 1000\n", 3, bn);
    const double one[1] = {1000};
    expect_bvals("one.bval", "1000\n", 1, one);
    expect_error(0, "matrix.bval", "0 1000\n2000 3000\n", DMRI_EFORMAT,
                 "expected one row or one column of b-values, found 2 x 2");
    expect_error(0, "ragged.bval", "0 1000\n2000\n", DMRI_EFORMAT, "line 2 has 1 values");
    expect_error(0, "empty.bval", "\n\n", DMRI_EFORMAT, "no values");
    expect_error(0, "text.bval", "0 1000 b=2000\n", DMRI_EFORMAT, "'b=2000' is not a number");
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dmri_test_grad_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bvecs_layouts();
    test_bvecs_errors();
    test_bvals();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (failures) {
        fprintf(stderr, "test_fsl_gradients: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_fsl_gradients: all checks passed\n");
    return 0;
}
