/* dmri_err: error codes and messages (see dmri_err.h). */
#include "dmri_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *dmri_strerror(int code) {
    switch (code) {
#define DMRI_ERR_CASE(name, value, text) \
    case value:                          \
        return text;
        DMRI_ERRNO_MAP(DMRI_ERR_CASE)
#undef DMRI_ERR_CASE
    default:
        return "unknown error";
    }
}

int dmri_err_set(dmri_err_t *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int dmri_err_prefix(dmri_err_t *err, const char *fmt, ...) {
    if (!err)
        return 0;
    char prefix[DMRI_ERR_MSG_MAX];
    char old[DMRI_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is acceptable: the message is for people, and stays terminated. */
    size_t lp = strnlen(prefix, sizeof err->msg - 1);
    memcpy(err->msg, prefix, lp);
    size_t lo = strnlen(old, sizeof err->msg - 1 - lp);
    memcpy(err->msg + lp, old, lo);
    err->msg[lp + lo] = '\0';
    return err->code;
}

void dmri_err_clear(dmri_err_t *err) {
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
