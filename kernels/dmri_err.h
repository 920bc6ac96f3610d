/* dmri_err: the project's error codes and the caller-supplied error detail.
 *
 * Every fallible function returns 0 or a negative DMRI_E* code and, when the
 * caller passes a dmri_err_t, fills in a human message that names the file or
 * peer and what is wrong. This sits at the bottom layer so kernels can use it. */
#ifndef DMRI_ERR_H
#define DMRI_ERR_H

#include <stddef.h>

#define DMRI_ERRNO_MAP(X)                                   \
    X(OK, 0, "success")                                     \
    X(EINVAL, -1, "invalid argument")                       \
    X(EIO, -2, "input/output error")                        \
    X(ENOENT, -3, "no such file")                           \
    X(EFORMAT, -4, "malformed input")                       \
    X(ERANGE, -5, "value out of range")                     \
    X(EUNSUP, -6, "unsupported input")                      \
    X(ENUMERIC, -7, "numerical failure")                    \
    X(ECANCEL, -8, "cancelled")

enum {
#define DMRI_ERR_ENUM(name, code, text) DMRI_##name = code,
    DMRI_ERRNO_MAP(DMRI_ERR_ENUM)
#undef DMRI_ERR_ENUM
};

#define DMRI_ERR_MSG_MAX 512

typedef struct {
    int code;                     /* last code set, 0 if none */
    char msg[DMRI_ERR_MSG_MAX];   /* human-readable detail, "" if none */
} dmri_err_t;

/* Name of a code ("malformed input"); never NULL. */
const char *dmri_strerror(int code);

/* Fill err (if not NULL) with code and a printf-style message; returns code,
 * so callers can write `return dmri_err_set(err, DMRI_EIO, "...", ...)`. */
int dmri_err_set(dmri_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with more context ("data.nii.gz: " + msg). */
int dmri_err_prefix(dmri_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void dmri_err_clear(dmri_err_t *err);

#endif
