/* test_submit_opts: dmri-submit's command line — defaults, the scheduler
 * address and $DMRI_SCHEDULER, and every bad value rejected with the option
 * named (the program turns that into exit status 2). */
#include <stdio.h>
#include <string.h>

#include "../../client/submit_opts.c"

static int failures;

#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond)) {                                                \
            failures++;                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                             \
            fputc('\n', stderr);                                      \
        }                                                             \
    } while (0)
#define CHECK_INT(a, b) \
    CHECK((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0, "'%s' != '%s'", (a), (b))

/* Parse a NULL-terminated list of arguments (copied: the parser reorders). */
static int parse(dmri_submit_opts_t *o, const char *env, dmri_err_t *err, char **store,
                 const char *const *args) {
    int n = 0;
    store[n++] = "dmri-submit";
    while (args[n - 1])
        store[n] = (char *)args[n - 1], n++;
    store[n] = NULL;
    dmri_err_clear(err);
    return dmri_submit_opts_parse(o, n, store, env, err);
}

#define PARSE(o, env, err, ...)                                         \
    parse(o, env, err, store, (const char *const[]){__VA_ARGS__, NULL})

/* The argument must be rejected and the message must name `what`. */
static void expect_bad(const char *what, const char *env, const char *const *args) {
    char *store[32];
    dmri_submit_opts_t o;
    dmri_err_t err = {0};
    int rc = parse(&o, env, &err, store, args);
    CHECK(rc == DMRI_EINVAL, "args starting '%s': rc %d, expected DMRI_EINVAL", args[0], rc);
    CHECK(strstr(err.msg, what) != NULL, "message '%s' does not name '%s'", err.msg, what);
}
#define BAD(what, env, ...) expect_bad(what, env, (const char *const[]){__VA_ARGS__, NULL})

int main(void) {
    char *store[32];
    dmri_submit_opts_t o;
    dmri_err_t err = {0};

    /* Defaults. */
    CHECK_INT(PARSE(&o, NULL, &err, "100307", "sub2"), 0);
    CHECK_INT(o.action, DMRI_SUBMIT_RUN);
    CHECK_STR(o.host, "127.0.0.1");
    CHECK_INT(o.port, 8786);
    CHECK_STR(o.scheduler, "127.0.0.1:8786");
    CHECK_STR(o.out_root, "dmri-out");
    CHECK(o.b0_threshold == 10.0, "%g", o.b0_threshold);
    CHECK(o.timeout == 30.0, "%g", o.timeout);
    CHECK_INT(o.nsubjects, 2);
    CHECK_STR(o.subjects[0], "100307");
    CHECK_STR(o.subjects[1], "sub2");
    CHECK_INT(o.save_denoised + o.skip_denoise + o.quiet + o.ipv6, 0);

    /* Every option, both spellings, subjects interleaved. */
    CHECK_INT(PARSE(&o, NULL, &err, "a", "--scheduler", "head:9000", "--out=/tmp/o", "b",
                    "--save-denoised", "--b0-threshold", "50", "--timeout=2.5", "--quiet", "c"),
              0);
    CHECK_STR(o.host, "head");
    CHECK_INT(o.port, 9000);
    CHECK_STR(o.out_root, "/tmp/o");
    CHECK(o.b0_threshold == 50.0, "%g", o.b0_threshold);
    CHECK(o.timeout == 2.5, "%g", o.timeout);
    CHECK_INT(o.save_denoised, 1);
    CHECK_INT(o.quiet, 1);
    CHECK_INT(o.nsubjects, 3);
    CHECK_STR(o.subjects[0], "a");
    CHECK_STR(o.subjects[1], "b");
    CHECK_STR(o.subjects[2], "c");
    CHECK_INT(PARSE(&o, NULL, &err, "--skip-denoise", "--b0-threshold", "0", "x"), 0);
    CHECK_INT(o.skip_denoise, 1);
    CHECK(o.b0_threshold == 0.0, "%g", o.b0_threshold);

    /* CURVE keys: --keys alone, or with --cert; --cert needs --keys. */
    CHECK(o.keys_dir == NULL && o.cert == NULL, "keys '%s'", o.keys_dir ? o.keys_dir : "");
    CHECK_INT(PARSE(&o, NULL, &err, "--keys", "/k", "s"), 0);
    CHECK_STR(o.keys_dir, "/k");
    CHECK(o.cert == NULL, "cert '%s'", o.cert ? o.cert : "");
    CHECK_INT(PARSE(&o, NULL, &err, "--cert=/c/me.cert", "s", "--keys", "/k"), 0);
    CHECK_STR(o.cert, "/c/me.cert");
    CHECK_STR(o.keys_dir, "/k");
    BAD("--keys", NULL, "--cert", "c", "s");
    BAD("--keys", NULL, "--keys=", "s");

    /* "--" ends the options; "-" alone is a subject. */
    CHECK_INT(PARSE(&o, NULL, &err, "--", "--quiet", "-"), 0);
    CHECK_INT(o.quiet, 0);
    CHECK_INT(o.nsubjects, 2);
    CHECK_STR(o.subjects[0], "--quiet");

    /* $DMRI_SCHEDULER, and --scheduler over it (even over a bad one). */
    CHECK_INT(PARSE(&o, "node7:1234", &err, "s"), 0);
    CHECK_STR(o.scheduler, "node7:1234");
    CHECK_INT(PARSE(&o, "garbage", &err, "--scheduler", "h:1", "s"), 0);
    CHECK_STR(o.scheduler, "h:1");
    CHECK_INT(PARSE(&o, "", &err, "s"), 0);
    CHECK_STR(o.scheduler, "127.0.0.1:8786");
    BAD("DMRI_SCHEDULER", "garbage", "s");
    BAD("DMRI_SCHEDULER", "host:0", "s");

    /* Address forms. */
    CHECK_INT(PARSE(&o, NULL, &err, "--scheduler", "tcp://10.0.0.1:8786", "s"), 0);
    CHECK_STR(o.host, "10.0.0.1");
    CHECK_INT(o.ipv6, 0);
    CHECK_INT(PARSE(&o, NULL, &err, "--scheduler", "[::1]:8786", "s"), 0);
    CHECK_STR(o.host, "::1");
    CHECK_INT(o.ipv6, 1);
    CHECK_STR(o.scheduler, "[::1]:8786");
    CHECK_INT(PARSE(&o, NULL, &err, "--scheduler", "h:65535", "s"), 0);
    CHECK_INT(o.port, 65535);

    /* Help, version: win over everything else. */
    CHECK_INT(PARSE(&o, "garbage", &err, "--help"), 0);
    CHECK_INT(o.action, DMRI_SUBMIT_HELP);
    CHECK_INT(PARSE(&o, NULL, &err, "-h"), 0);
    CHECK_INT(o.action, DMRI_SUBMIT_HELP);
    CHECK_INT(PARSE(&o, NULL, &err, "--version"), 0);
    CHECK_INT(o.action, DMRI_SUBMIT_VERSION);

    /* Benchmark. */
    CHECK_INT(PARSE(&o, NULL, &err, "--bench-noop", "1000", "--scheduler", "h:5"), 0);
    CHECK_INT(o.action, DMRI_SUBMIT_BENCH);
    CHECK_INT(o.bench_tasks, 1000);
    CHECK_INT(o.nsubjects, 0);

    /* Status query: no subject; --json only with --status. */
    CHECK_INT(PARSE(&o, "h:7", &err, "--status"), 0);
    CHECK_INT(o.action, DMRI_SUBMIT_STATUS);
    CHECK_INT(o.json, 0);
    CHECK_STR(o.scheduler, "h:7");
    CHECK_INT(PARSE(&o, NULL, &err, "--json", "--status", "--scheduler", "10.0.0.1:8786",
                    "--timeout", "2"), 0);
    CHECK_INT(o.action, DMRI_SUBMIT_STATUS);
    CHECK_INT(o.json, 1);
    CHECK_INT(o.port, 8786);
    CHECK(o.timeout == 2.0, "timeout %g", o.timeout);
    BAD("--status", NULL, "--status", "subject");
    BAD("--status", NULL, "--status", "--bench-noop", "5");
    BAD("--json", NULL, "--json", "subject");
    BAD("--json", NULL, "--status", "--json=1");

    /* Bad values: each rejected, naming the option. */
    BAD("--scheduler", NULL, "--scheduler", "head", "s");
    BAD("--scheduler", NULL, "--scheduler", "head:", "s");
    BAD("--scheduler", NULL, "--scheduler", ":8786", "s");
    BAD("--scheduler", NULL, "--scheduler", "head:0", "s");
    BAD("--scheduler", NULL, "--scheduler", "head:65536", "s");
    BAD("--scheduler", NULL, "--scheduler", "head:80x", "s");
    BAD("--scheduler", NULL, "--scheduler", "::1:8786", "s");
    BAD("--scheduler", NULL, "--scheduler", "a/b:1", "s");
    BAD("--timeout", NULL, "--timeout", "0", "s");
    BAD("--timeout", NULL, "--timeout", "-3", "s");
    BAD("--timeout", NULL, "--timeout", "abc", "s");
    BAD("--timeout", NULL, "--timeout", "", "s");
    BAD("--timeout", NULL, "--timeout=nan", "s");
    BAD("--timeout", NULL, "--timeout", "inf", "s");
    BAD("--b0-threshold", NULL, "--b0-threshold", "-1", "s");
    BAD("--b0-threshold", NULL, "--b0-threshold", "ten", "s");
    BAD("--bench-noop", NULL, "--bench-noop", "0");
    BAD("--bench-noop", NULL, "--bench-noop", "12k");
    BAD("--bench-noop", NULL, "--bench-noop", "-5");
    BAD("--bench-noop", NULL, "--bench-noop", "10", "subject");
    BAD("--out", NULL, "--out", "", "s");
    BAD("--out", NULL, "s", "--out");
    BAD("--quiet", NULL, "--quiet=1", "s");
    BAD("--frobnicate", NULL, "--frobnicate", "s");
    BAD("--sched", NULL, "--sched", "h:1", "s"); /* no prefix matching */
    BAD("-x", NULL, "-x", "s");
    BAD("no subject", NULL, "--quiet");
    BAD("--save-denoised", NULL, "--save-denoised", "--skip-denoise", "s");

    if (failures) {
        fprintf(stderr, "test_submit_opts: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_submit_opts: ok\n");
    return 0;
}
