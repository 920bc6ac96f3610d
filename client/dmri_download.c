/* dmri-download: fetches HCP subjects (bvals, bvecs, data.nii.gz) from the
 * hcp-openaccess S3 bucket into DIR/<id>/T1w/Diffusion/, or lists what the
 * bucket holds. Owns the transfer policy: resume through a .part file with a
 * Range request, retries with backoff on transient failures, verification by
 * size and MD5 (plain ETags only) before the rename to the final name.
 * Exit 0 when everything succeeded, 1 when anything failed, 2 for usage. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fsutil.h"
#include "s3.h"

static const char usage_text[] =
    "usage: dmri-download SUBJECT... [options]\n"
    "       dmri-download --list [--prefix HCP/] [--recursive] [options]\n"
    "\n"
    "Downloads HCP/<SUBJECT>/T1w/Diffusion/{bvals,bvecs,data.nii.gz} of each\n"
    "subject into DIR/<SUBJECT>/T1w/Diffusion/ (what dmri-run --data-dir DIR\n"
    "reads). A partial file is kept as NAME.part and resumed with a Range\n"
    "request; a complete file is skipped; a file gets its final name only once\n"
    "its size and (for plain-MD5 ETags) its MD5 are verified.\n"
    "\n"
    "options:\n"
    "  --dest DIR          where to put subjects (default .)\n"
    "  --profile NAME      credentials profile (default hcp); AWS_ACCESS_KEY_ID /\n"
    "                      AWS_SECRET_ACCESS_KEY in the environment win; file:\n"
    "                      AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials\n"
    "  --bucket NAME       (default hcp-openaccess)\n"
    "  --region NAME       (default us-east-1)\n"
    "  --endpoint URL      S3-compatible server, path-style (e.g. http://127.0.0.1:4568)\n"
    "  --jobs N            transfers at once (default 4)\n"
    "  --retries N         attempts after a timeout or 5xx answer (default 6)\n"
    "  --list              list the subjects (prefixes) under --prefix\n"
    "  --prefix P          listing prefix (default HCP/)\n"
    "  --recursive         list every key with its size instead of prefixes\n"
    "  -h, --help          show this help\n";

typedef struct {
    const char *dest, *profile, *bucket, *region, *endpoint, *prefix;
    int jobs, retries, list, recursive, max_keys, quiet;
    long backoff_ms;
    int64_t rate_limit;
} opts_t;

typedef struct {
    char subject[128];
    char key[512];
    char dest[PATH_MAX];
    char part[PATH_MAX + 8];
    dmri_s3_object_t obj;
    _Atomic uint64_t have; /* bytes of this file on disk so far */
    int failed;
    int head_done;
    char msg[DMRI_ERR_MSG_MAX];
} task_t;

static task_t *g_tasks;
static size_t g_ntasks;
static size_t g_next;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static const opts_t *g_opts;
static const dmri_s3_creds_t *g_creds;
static dmri_s3_opts_t g_s3opts;
static atomic_int g_finished;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dmri-download: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'dmri-download --help'.\n");
    va_end(ap);
    return 2;
}

/* vsnprintf: messages that hold paths may be cut, which is fine for a
 * message (and keeps -Wformat-truncation quiet). */
static void set_msg(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_msg(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void human(char *out, size_t n, double bytes)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (bytes >= 1000.0 && i < 4) {
        bytes /= 1000.0;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}

/* ---- one file ---- */

typedef struct {
    int fd;
    task_t *t;
} sink_ctx_t;

static int sink_write(void *vctx, uint64_t offset, const void *data, size_t len)
{
    sink_ctx_t *c = vctx;
    const char *p = data;
    size_t left = len;
    uint64_t off = offset;
    while (left > 0) {
        ssize_t w = pwrite(c->fd, p, left, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            set_msg(c->t->msg, sizeof(c->t->msg), "%s: write failed: %s", c->t->part,
                     strerror(errno));
            return DMRI_EIO;
        }
        p += w;
        left -= (size_t)w;
        off += (uint64_t)w;
    }
    atomic_store(&c->t->have, off);
    return 0;
}

/* 1 if the ETag is a plain MD5 (32 hex digits); multipart ETags ("md5-N")
 * are not the MD5 of the object. */
static int etag_is_md5(const char *etag)
{
    if (strlen(etag) != 32)
        return 0;
    for (const char *p = etag; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return 0;
    return 1;
}

static int file_md5(const char *path, char hex[33], char *msg, size_t msgsz)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_msg(msg, msgsz, "%s: %s", path, strerror(errno));
        return DMRI_EIO;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    static _Thread_local unsigned char buf[1 << 20];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        EVP_DigestUpdate(ctx, buf, n);
    int bad = ferror(f);
    fclose(f);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (bad) {
        set_msg(msg, msgsz, "%s: read failed while verifying", path);
        return DMRI_EIO;
    }
    for (unsigned i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return UINT64_MAX;
    return (uint64_t)st.st_size;
}

/* One attempt: resume the .part, verify, rename. DMRI_EIO means "retry". */
static int fetch_once(dmri_s3_t *s3, task_t *t, int attempt)
{
    dmri_err_t err = {0};
    int fd = open(t->part, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        set_msg(t->msg, sizeof(t->msg), "%s: %s", t->part, strerror(errno));
        return DMRI_EINVAL;
    }
    struct stat st;
    fstat(fd, &st);
    uint64_t off = (uint64_t)st.st_size;
    if (off > t->obj.size) {
        /* Longer than the object: not ours to resume. */
        if (ftruncate(fd, 0) != 0) {
            set_msg(t->msg, sizeof(t->msg), "%s: %s", t->part, strerror(errno));
            close(fd);
            return DMRI_EINVAL;
        }
        off = 0;
    }
    atomic_store(&t->have, off);
    if (off > 0 && off < t->obj.size && !g_opts->quiet)
        fprintf(stderr, "\n%s: resuming at byte %llu of %llu%s\n", t->key,
                (unsigned long long)off, (unsigned long long)t->obj.size,
                attempt ? " (retry)" : "");
    int rc = 0;
    if (off < t->obj.size) {
        sink_ctx_t sc = {fd, t};
        rc = dmri_s3_get(s3, t->key, off, sink_write, &sc, &err);
        if (rc && rc != DMRI_EIO && t->msg[0] == '\0')
            set_msg(t->msg, sizeof(t->msg), "%s", err.msg);
        else if (rc == DMRI_EIO && t->msg[0] == '\0')
            set_msg(t->msg, sizeof(t->msg), "%s", err.msg);
    }
    if (fsync(fd) != 0 && rc == 0) {
        set_msg(t->msg, sizeof(t->msg), "%s: fsync: %s", t->part, strerror(errno));
        rc = DMRI_EINVAL;
    }
    close(fd);
    if (rc)
        return rc;
    uint64_t got = file_size(t->part);
    if (got != t->obj.size) {
        set_msg(t->msg, sizeof(t->msg), "%s: got %llu bytes, expected %llu", t->key,
                 (unsigned long long)got, (unsigned long long)t->obj.size);
        return DMRI_EIO;
    }
    if (etag_is_md5(t->obj.etag)) {
        char hex[33];
        rc = file_md5(t->part, hex, t->msg, sizeof(t->msg));
        if (rc)
            return rc;
        if (strcasecmp(hex, t->obj.etag) != 0) {
            set_msg(t->msg, sizeof(t->msg), "%s: MD5 %s does not match the ETag %s; starting over",
                     t->key, hex, t->obj.etag);
            unlink(t->part);
            atomic_store(&t->have, 0);
            return DMRI_EIO;
        }
    }
    if (rename(t->part, t->dest) != 0) {
        set_msg(t->msg, sizeof(t->msg), "%s: rename to %s: %s", t->part, t->dest, strerror(errno));
        return DMRI_EINVAL;
    }
    return 0;
}

static int fetch_file(dmri_s3_t *s3, task_t *t)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", t->dest);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    dmri_err_t err = {0};
    if (dmri_mkdir_p(dir, &err)) {
        set_msg(t->msg, sizeof(t->msg), "%s", err.msg);
        return DMRI_EIO;
    }
    if (file_size(t->dest) == t->obj.size) {
        atomic_store(&t->have, t->obj.size);
        return 0; /* already complete */
    }
    long backoff = g_opts->backoff_ms;
    for (int attempt = 0;; attempt++) {
        t->msg[0] = '\0';
        int rc = fetch_once(s3, t, attempt);
        if (rc == 0)
            return 0;
        if (rc != DMRI_EIO || attempt >= g_opts->retries)
            return rc;
        if (!g_opts->quiet)
            fprintf(stderr, "\n%s (attempt %d of %d; retrying in %.1f s)\n", t->msg, attempt + 1,
                    g_opts->retries + 1, (double)backoff / 1000.0);
        sleep_ms(backoff);
        if (backoff < 60000)
            backoff *= 2;
    }
}

static void *worker(void *arg)
{
    (void)arg;
    dmri_s3_t *s3 = NULL;
    dmri_err_t err = {0};
    int orc = dmri_s3_open(&s3, &g_s3opts, g_creds, &err);
    for (;;) {
        pthread_mutex_lock(&g_lock);
        size_t i = g_next < g_ntasks ? g_next++ : g_ntasks;
        pthread_mutex_unlock(&g_lock);
        if (i >= g_ntasks)
            break;
        task_t *t = &g_tasks[i];
        if (t->failed)
            continue;
        if (orc) {
            set_msg(t->msg, sizeof(t->msg), "%s", err.msg);
            t->failed = 1;
            continue;
        }
        if (fetch_file(s3, t) != 0)
            t->failed = 1;
    }
    dmri_s3_close(s3);
    return NULL;
}

static void *progress(void *arg)
{
    uint64_t total = *(uint64_t *)arg;
    int tty = isatty(2);
    double t0 = now_s(), last_print = 0;
    uint64_t start = 0;
    for (size_t i = 0; i < g_ntasks; i++)
        start += atomic_load(&g_tasks[i].have);
    while (!atomic_load(&g_finished)) {
        sleep_ms(200);
        double t = now_s();
        if (!tty && t - last_print < 5.0)
            continue;
        if (tty && t - last_print < 0.5)
            continue;
        last_print = t;
        uint64_t done = 0;
        for (size_t i = 0; i < g_ntasks; i++)
            done += atomic_load(&g_tasks[i].have);
        double rate = (double)(done > start ? done - start : 0) / (t - t0 > 1e-3 ? t - t0 : 1e-3);
        char a[32], b[32], r[32];
        human(a, sizeof(a), (double)done);
        human(b, sizeof(b), (double)total);
        human(r, sizeof(r), rate);
        double left = rate > 0 ? (double)(total - (done < total ? done : total)) / rate : -1;
        char eta[32] = "--:--";
        if (left >= 0)
            snprintf(eta, sizeof(eta), "%02d:%02d", (int)(left / 60), (int)left % 60);
        fprintf(stderr, "%s%s / %s  %5.1f%%  %s/s  %s left%s", tty ? "\r" : "", a, b,
                total ? 100.0 * (double)done / (double)total : 100.0, r, eta, tty ? "   " : "\n");
    }
    return NULL;
}

/* ---- listing ---- */

typedef struct {
    size_t plen;
    unsigned long long n;
} list_ctx_t;

static int print_key(void *vctx, const char *key, uint64_t size)
{
    list_ctx_t *c = vctx;
    printf("%12llu  %s\n", (unsigned long long)size, key);
    c->n++;
    return 0;
}

static int print_prefix(void *vctx, const char *prefix)
{
    list_ctx_t *c = vctx;
    const char *rest = strlen(prefix) >= c->plen ? prefix + c->plen : prefix;
    size_t n = strlen(rest);
    printf("%.*s\n", (int)(n > 0 && rest[n - 1] == '/' ? n - 1 : n), rest);
    c->n++;
    return 0;
}

static int do_list(const opts_t *o, dmri_s3_t *s3)
{
    dmri_err_t err = {0};
    list_ctx_t c = {strlen(o->prefix), 0};
    int rc = dmri_s3_list(s3, o->prefix, o->recursive ? NULL : "/", o->max_keys, print_key,
                          o->recursive ? NULL : print_prefix, &c, &err);
    if (rc) {
        fprintf(stderr, "dmri-download: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o = {.dest = ".", .profile = "hcp", .bucket = "hcp-openaccess", .region = "us-east-1",
                .prefix = "HCP/", .jobs = 4, .retries = 6, .backoff_ms = 1000};
    /* Subjects are compacted to the front of argv (slots already parsed),
     * so no allocation can leak on the early usage returns. */
    char **subjects = argv + 1;
    size_t nsub = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
#define NEEDV()                                                  \
    do {                                                         \
        if (!v)                                                  \
            return usage_error("%s needs a value", a);           \
        i++;                                                     \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--dest")) {
            NEEDV();
            o.dest = v;
        } else if (!strcmp(a, "--profile")) {
            NEEDV();
            o.profile = v;
        } else if (!strcmp(a, "--bucket")) {
            NEEDV();
            o.bucket = v;
        } else if (!strcmp(a, "--region")) {
            NEEDV();
            o.region = v;
        } else if (!strcmp(a, "--endpoint")) {
            NEEDV();
            o.endpoint = v;
        } else if (!strcmp(a, "--prefix")) {
            NEEDV();
            o.prefix = v;
        } else if (!strcmp(a, "--jobs")) {
            NEEDV();
            if (parse_long(v, 1, 64, &n))
                return usage_error("--jobs: expected 1..64, got '%s'", v);
            o.jobs = (int)n;
        } else if (!strcmp(a, "--retries")) {
            NEEDV();
            if (parse_long(v, 0, 100, &n))
                return usage_error("--retries: expected 0..100, got '%s'", v);
            o.retries = (int)n;
        } else if (!strcmp(a, "--backoff-ms")) { /* hidden: tests */
            NEEDV();
            if (parse_long(v, 1, 600000, &n))
                return usage_error("--backoff-ms: expected 1..600000, got '%s'", v);
            o.backoff_ms = n;
        } else if (!strcmp(a, "--max-keys")) { /* hidden: tests page size */
            NEEDV();
            if (parse_long(v, 1, 1000, &n))
                return usage_error("--max-keys: expected 1..1000, got '%s'", v);
            o.max_keys = (int)n;
        } else if (!strcmp(a, "--rate-limit")) { /* hidden: bytes/s, for tests */
            NEEDV();
            if (parse_long(v, 1, LONG_MAX, &n))
                return usage_error("--rate-limit: expected bytes per second, got '%s'", v);
            o.rate_limit = n;
        } else if (!strcmp(a, "--list")) {
            o.list = 1;
        } else if (!strcmp(a, "--recursive")) {
            o.recursive = 1;
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (a[0] == '-') {
            return usage_error("unknown option %s", a);
        } else {
            if (strlen(a) >= 100 || strchr(a, '/') || !strcmp(a, ".") || !strcmp(a, ".."))
                return usage_error("'%s' is not an HCP subject id", a);
            subjects[nsub++] = argv[i];
        }
#undef NEEDV
    }
    if (!o.list && nsub == 0)
        return usage_error("no subject given (or --list)");
    if (o.list && nsub > 0)
        return usage_error("--list takes no subjects");

    dmri_err_t err = {0};
    static dmri_s3_creds_t creds;
    if (dmri_s3_creds_load(&creds, o.profile, &err)) {
        fprintf(stderr, "dmri-download: %s\n", err.msg);
        return 1;
    }
    if (dmri_s3_global_init(&err)) {
        fprintf(stderr, "dmri-download: %s\n", err.msg);
        return 1;
    }
    g_s3opts = (dmri_s3_opts_t){.bucket = o.bucket, .region = o.region, .endpoint = o.endpoint,
                                .max_recv_bytes_s = o.rate_limit};
    g_opts = &o;
    g_creds = &creds;
    dmri_s3_t *s3 = NULL;
    if (dmri_s3_open(&s3, &g_s3opts, &creds, &err)) {
        fprintf(stderr, "dmri-download: %s\n", err.msg);
        return 1;
    }
    if (o.list) {
        int rc = do_list(&o, s3);
        dmri_s3_close(s3);
        dmri_s3_global_cleanup();
        return rc;
    }

    static const char *files[] = {"bvals", "bvecs", "data.nii.gz"};
    g_ntasks = nsub * 3;
    g_tasks = calloc(g_ntasks, sizeof(task_t));
    if (!g_tasks) {
        fprintf(stderr, "dmri-download: out of memory\n");
        return 1;
    }
    /* Ask for every size first: a refused key or a missing subject fails
     * here, before anything is created on disk. */
    uint64_t total = 0;
    int fatal = 0;
    for (size_t s = 0; s < nsub && !fatal; s++) {
        int sub_failed = 0;
        for (int f = 0; f < 3; f++) {
            task_t *t = &g_tasks[s * 3 + (size_t)f];
            snprintf(t->subject, sizeof(t->subject), "%s", subjects[s]);
            snprintf(t->key, sizeof(t->key), "HCP/%s/T1w/Diffusion/%s", subjects[s], files[f]);
            snprintf(t->dest, sizeof(t->dest), "%s/%s/T1w/Diffusion/%s", o.dest, subjects[s],
                     files[f]);
            snprintf(t->part, sizeof(t->part), "%s.part", t->dest);
            if (sub_failed) {
                t->failed = 1;
                continue;
            }
            int rc = 0;
            for (int attempt = 0;; attempt++) {
                rc = dmri_s3_head(s3, t->key, &t->obj, &err);
                if (rc != DMRI_EIO || attempt >= o.retries)
                    break;
                sleep_ms(o.backoff_ms << (attempt < 6 ? attempt : 6));
            }
            if (rc) {
                fprintf(stderr, "dmri-download: %s: %s\n", subjects[s], err.msg);
                t->failed = 1;
                t->msg[0] = '\0';
                sub_failed = 1;
                /* A refused key id will be refused for every subject. */
                if (rc == DMRI_EINVAL)
                    fatal = 1;
                for (int g = 0; g < f; g++)
                    g_tasks[s * 3 + (size_t)g].failed = 1;
                continue;
            }
            total += t->obj.size;
        }
    }
    dmri_s3_close(s3);
    if (fatal) {
        for (size_t i = 0; i < g_ntasks; i++)
            g_tasks[i].failed = 1;
    }

    int njobs = o.jobs;
    pthread_t *th = calloc((size_t)njobs, sizeof(pthread_t));
    pthread_t pth;
    int have_progress = !o.quiet && !fatal && pthread_create(&pth, NULL, progress, &total) == 0;
    double t0 = now_s();
    for (int j = 0; j < njobs; j++)
        pthread_create(&th[j], NULL, worker, NULL);
    for (int j = 0; j < njobs; j++)
        pthread_join(th[j], NULL);
    atomic_store(&g_finished, 1);
    if (have_progress) {
        pthread_join(pth, NULL);
        if (isatty(2))
            fputc('\n', stderr);
    }

    int failures = 0;
    uint64_t done = 0;
    for (size_t s = 0; s < nsub; s++) {
        int ok = 1;
        for (int f = 0; f < 3; f++) {
            task_t *t = &g_tasks[s * 3 + (size_t)f];
            if (t->failed) {
                ok = 0;
                if (t->msg[0])
                    fprintf(stderr, "dmri-download: %s: %s\n", t->subject, t->msg);
            } else {
                done += t->obj.size;
            }
        }
        if (!ok)
            failures++;
        else if (!o.quiet)
            fprintf(stderr, "%s: complete in %s/%s/T1w/Diffusion\n", subjects[s], o.dest,
                    subjects[s]);
    }
    if (!o.quiet) {
        char a[32];
        human(a, sizeof(a), (double)done);
        fprintf(stderr, "dmri-download: %zu of %zu subjects, %s, %.1f s\n", nsub - (size_t)failures,
                nsub, a, now_s() - t0);
    }
    free(th);
    free(g_tasks);
    memset(&creds, 0, sizeof(creds));
    dmri_s3_global_cleanup();
    return failures ? 1 : 0;
}
