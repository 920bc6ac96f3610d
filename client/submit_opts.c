/* submit_opts: dmri-submit's command line (see submit_opts.h). Hand-written
 * instead of getopt so that it keeps no global state and can be called many
 * times from a unit test. */
#include "submit_opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_SCHED, OPT_OUT, OPT_SAVE, OPT_SKIP, OPT_PREVIEW, OPT_REPORT, OPT_B0, OPT_TIMEOUT, OPT_QUIET,
       OPT_BENCH, OPT_HELP, OPT_VERSION, OPT_STATUS, OPT_JSON, OPT_KEYS, OPT_CERT };

static const struct {
    const char *name;
    int id;
    int has_arg;
} opt_table[] = {
    {"scheduler", OPT_SCHED, 1},   {"out", OPT_OUT, 1},         {"save-denoised", OPT_SAVE, 0},
    {"skip-denoise", OPT_SKIP, 0}, {"b0-threshold", OPT_B0, 1}, {"timeout", OPT_TIMEOUT, 1},
    {"quiet", OPT_QUIET, 0},       {"bench-noop", OPT_BENCH, 1}, {"help", OPT_HELP, 0},
    {"version", OPT_VERSION, 0},   {"preview", OPT_PREVIEW, 0}, {"report", OPT_REPORT, 1},
    {"status", OPT_STATUS, 0},     {"json", OPT_JSON, 0},
    {"keys", OPT_KEYS, 1},         {"cert", OPT_CERT, 1},
};

int dmri_submit_opts_endpoint(dmri_submit_opts_t *o, const char *text, const char *what,
                              dmri_err_t *err) {
    const char *s = text;
    if (strncmp(s, "tcp://", 6) == 0)
        s += 6;
    const char *colon = strrchr(s, ':');
    const char *host = s;
    size_t hlen = colon ? (size_t)(colon - s) : 0;
    int v6 = 0;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
        v6 = 1;
    } else if (colon && memchr(s, ':', hlen)) {
        hlen = 0; /* a bare IPv6 literal is ambiguous: demand brackets */
    }
    if (!colon || hlen == 0 || hlen >= DMRI_SUBMIT_HOST_MAX)
        return dmri_err_set(err, DMRI_EINVAL, "%s: expected HOST:PORT, got '%s'", what, text);
    for (size_t i = 0; i < hlen; i++)
        if (host[i] == '/' || host[i] == ' ' || host[i] == '[' || host[i] == ']')
            return dmri_err_set(err, DMRI_EINVAL, "%s: expected HOST:PORT, got '%s'", what,
                                text);
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || port < 1 || port > 65535)
        return dmri_err_set(err, DMRI_EINVAL, "%s: expected a port 1..65535 in '%s'", what,
                            text);
    memcpy(o->host, host, hlen);
    o->host[hlen] = '\0';
    o->port = (int)port;
    o->ipv6 = v6;
    snprintf(o->scheduler, sizeof o->scheduler, v6 ? "[%s]:%d" : "%s:%d", o->host, o->port);
    return 0;
}

static int parse_number(const char *opt, const char *s, double lo, int lo_open, double hi,
                        double *out, dmri_err_t *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    int ok = *s != '\0' && *end == '\0' && errno == 0 && isfinite(v) && v <= hi &&
             (lo_open ? v > lo : v >= lo);
    if (!ok)
        return dmri_err_set(err, DMRI_EINVAL, "%s: expected a number %s %g, got '%s'", opt,
                            lo_open ? ">" : ">=", lo, s);
    *out = v;
    return 0;
}

int dmri_submit_opts_parse(dmri_submit_opts_t *o, int argc, char **argv,
                           const char *env_scheduler, dmri_err_t *err) {
    memset(o, 0, sizeof *o);
    o->action = DMRI_SUBMIT_RUN;
    o->out_root = "dmri-out";
    o->b0_threshold = 10.0;
    o->timeout = 30.0;
    const char *sched = NULL;
    /* Subjects are collected in place: argv entries are only reordered
     * towards the front, which getopt does too. */
    char **subj = argv + 1;
    int nsubj = 0, only_subjects = 0, bench_given = 0, status_given = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_subjects || a[0] != '-' || a[1] == '\0') {
            subj[nsubj++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_subjects = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0) {
            o->action = DMRI_SUBMIT_HELP;
            return 0;
        }
        if (a[1] != '-')
            return dmri_err_set(err, DMRI_EINVAL, "unknown option '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int id = -1, has_arg = 0;
        for (size_t k = 0; k < sizeof opt_table / sizeof opt_table[0]; k++)
            if (strlen(opt_table[k].name) == nlen && strncmp(opt_table[k].name, name, nlen) == 0) {
                id = opt_table[k].id;
                has_arg = opt_table[k].has_arg;
            }
        if (id < 0)
            return dmri_err_set(err, DMRI_EINVAL, "unknown option '%.*s'", (int)nlen + 2, a);
        const char *val = NULL;
        if (has_arg) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return dmri_err_set(err, DMRI_EINVAL, "--%.*s: missing value", (int)nlen, name);
        } else if (eq) {
            return dmri_err_set(err, DMRI_EINVAL, "--%.*s takes no value", (int)nlen, name);
        }
        switch (id) {
        case OPT_SCHED: sched = val; break;
        case OPT_OUT:
            if (!val[0])
                return dmri_err_set(err, DMRI_EINVAL, "--out: expected a folder, got ''");
            o->out_root = val;
            break;
        case OPT_SAVE: o->save_denoised = 1; break;
        case OPT_SKIP: o->skip_denoise = 1; break;
        case OPT_PREVIEW: o->preview = 1; break;
        case OPT_REPORT:
            if (!val[0])
                return dmri_err_set(err, DMRI_EINVAL, "--report: expected a file name, got ''");
            o->report = val;
            break;
        case OPT_B0:
            if (parse_number("--b0-threshold", val, 0, 0, 1e12, &o->b0_threshold, err) != 0)
                return DMRI_EINVAL;
            break;
        case OPT_TIMEOUT:
            if (parse_number("--timeout", val, 0, 1, 1e6, &o->timeout, err) != 0)
                return DMRI_EINVAL;
            break;
        case OPT_QUIET: o->quiet = 1; break;
        case OPT_KEYS:
        case OPT_CERT:
            if (!val[0])
                return dmri_err_set(err, DMRI_EINVAL, "--%s: expected a %s, got ''",
                                    id == OPT_KEYS ? "keys" : "cert",
                                    id == OPT_KEYS ? "folder" : "file");
            if (id == OPT_KEYS)
                o->keys_dir = val;
            else
                o->cert = val;
            break;
        case OPT_BENCH: {
            char *end;
            errno = 0;
            long n = strtol(val, &end, 10);
            if (!val[0] || *end != '\0' || errno || n < 1 || n > 1000000000L)
                return dmri_err_set(err, DMRI_EINVAL,
                                    "--bench-noop: expected a task count 1..1000000000, got '%s'",
                                    val);
            o->bench_tasks = n;
            bench_given = 1;
            break;
        }
        case OPT_STATUS: status_given = 1; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_HELP: o->action = DMRI_SUBMIT_HELP; return 0;
        case OPT_VERSION: o->action = DMRI_SUBMIT_VERSION; return 0;
        }
    }
    o->subjects = subj;
    o->nsubjects = nsubj;
    if (o->cert && !o->keys_dir)
        return dmri_err_set(err, DMRI_EINVAL, "--cert needs --keys DIR (the cluster's public key)");
    if (sched) {
        if (dmri_submit_opts_endpoint(o, sched, "--scheduler", err) != 0)
            return DMRI_EINVAL;
    } else if (env_scheduler && env_scheduler[0]) {
        if (dmri_submit_opts_endpoint(o, env_scheduler, "DMRI_SCHEDULER", err) != 0)
            return DMRI_EINVAL;
    } else {
        dmri_submit_opts_endpoint(o, DMRI_SUBMIT_DEFAULT_SCHEDULER, "default", NULL);
    }
    if (o->json && !status_given)
        return dmri_err_set(err, DMRI_EINVAL, "--json goes with --status");
    if (status_given) {
        if (bench_given)
            return dmri_err_set(err, DMRI_EINVAL, "--status and --bench-noop exclude each other");
        if (nsubj > 0)
            return dmri_err_set(err, DMRI_EINVAL, "--status takes no SUBJECT (got '%s')",
                                subj[0]);
        o->action = DMRI_SUBMIT_STATUS;
        return 0;
    }
    if (bench_given) {
        if (nsubj > 0)
            return dmri_err_set(err, DMRI_EINVAL, "--bench-noop takes no SUBJECT (got '%s')",
                                subj[0]);
        o->action = DMRI_SUBMIT_BENCH;
        return 0;
    }
    if (nsubj == 0)
        return dmri_err_set(err, DMRI_EINVAL, "no subject given");
    if (o->save_denoised && o->skip_denoise)
        return dmri_err_set(err, DMRI_EINVAL,
                            "--save-denoised and --skip-denoise exclude each other");
    return 0;
}
