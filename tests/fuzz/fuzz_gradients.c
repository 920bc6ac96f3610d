/* fuzz_gradients: libFuzzer harness for the FSL bvals/bvecs parsers
 * (dmri_parse_bvals, dmri_parse_bvecs: what dmri-run and workers read for
 * every subject). Every input is parsed as both files. Results must be
 * consistent: n >= 0 and the arrays readable to the end (ASan checks that). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "dmri_alloc.h"
#include "fsl_gradients.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile double sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dmri_err_t err = {0};
    double *v = NULL;
    int n = -1;
    if (dmri_parse_bvals("bvals", (const char *)data, size, &v, &n, &err) == 0) {
        if (n < 0)
            abort();
        for (int i = 0; i < n; i++)
            sink = v[i];
        dmri_free(v);
    } else if (!err.msg[0]) {
        abort();
    }
    v = NULL;
    n = -1;
    err.msg[0] = '\0';
    if (dmri_parse_bvecs("bvecs", (const char *)data, size, &v, &n, &err) == 0) {
        if (n < 0)
            abort();
        for (int i = 0; i < 3 * n; i++)
            sink = v[i];
        dmri_free(v);
    } else if (!err.msg[0]) {
        abort();
    }
    return 0;
}
