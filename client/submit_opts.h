/* submit_opts: the command line of dmri-submit, parsed into a plain struct
 * without printing or exiting, so every rule (ranges, exclusive options, the
 * scheduler address and $DMRI_SCHEDULER) can be unit-tested. */
#ifndef DMRI_SUBMIT_OPTS_H
#define DMRI_SUBMIT_OPTS_H

#include "dmri_err.h"

#define DMRI_SUBMIT_DEFAULT_SCHEDULER "127.0.0.1:8786"
#define DMRI_SUBMIT_HOST_MAX 256

typedef enum {
    DMRI_SUBMIT_RUN,      /* process the subjects */
    DMRI_SUBMIT_BENCH,    /* --bench-noop N */
    DMRI_SUBMIT_STATUS,   /* --status [--json]: print the scheduler's workers and jobs */
    DMRI_SUBMIT_HELP,     /* --help / -h: print usage, exit 0 */
    DMRI_SUBMIT_VERSION   /* --version */
} dmri_submit_action_t;

typedef struct {
    dmri_submit_action_t action;
    char host[DMRI_SUBMIT_HOST_MAX];  /* without brackets for IPv6 literals */
    int port;                         /* 1..65535 */
    int ipv6;                         /* host was given as [addr] */
    char scheduler[DMRI_SUBMIT_HOST_MAX + 16]; /* "HOST:PORT" as shown to the user */
    const char *out_root;             /* --out, default "dmri-out" (borrowed) */
    int save_denoised;
    int skip_denoise;
    int preview;                      /* --preview: preview.png next to the outputs */
    const char *report;               /* --report FILE: performance report (borrowed) */
    int quiet;
    int json;                         /* --json (with --status) */
    double b0_threshold;              /* default 10, like dmri-run */
    double timeout;                   /* seconds, default 30 */
    long bench_tasks;                 /* --bench-noop N */
    const char *keys_dir;             /* --keys DIR (CURVE, proto/auth.h) or NULL (borrowed) */
    const char *cert;                 /* --cert FILE or NULL: DIR/certs/$USER.cert (borrowed) */
    int nsubjects;
    char **subjects;                  /* borrowed from argv */
} dmri_submit_opts_t;

/* Parse argv (argv[0] is skipped). env_scheduler: $DMRI_SCHEDULER or NULL;
 * --scheduler overrides it. Options take "--opt VALUE" or "--opt=VALUE";
 * "--" ends the options. The subjects are moved to the front of argv[1..]
 * (o->subjects points there), as getopt permutes argv. Returns 0, or
 * DMRI_EINVAL with err naming the option and the bad value ("--timeout:
 * expected a number > 0, got 'x'"): the caller prints it and exits 2.
 * No output, no global state. */
int dmri_submit_opts_parse(dmri_submit_opts_t *o, int argc, char **argv,
                           const char *env_scheduler, dmri_err_t *err);

/* Split "HOST:PORT" (also "[v6addr]:PORT" and an optional "tcp://" prefix)
 * into o->host, o->port, o->ipv6 and o->scheduler. `what` names the source
 * in errors ("--scheduler", "DMRI_SCHEDULER"). */
int dmri_submit_opts_endpoint(dmri_submit_opts_t *o, const char *text, const char *what,
                              dmri_err_t *err);

#endif
