/* image: NIfTI-1/-2 reading and NIfTI-1 writing (see image.h).
 *
 * niftilib parses the header (both versions, both byte orders, extensions);
 * this file reads the voxel data itself. Doing the data read here lets us
 * (1) convert chunk by chunk straight into the final buffer while inflating,
 * so a 4.2 GB float32 image costs 4.2 GB and one pass, and an int16 image
 * costs its float32 size plus one small chunk, never two full copies; (2) tell
 * a truncated or corrupt gzip stream apart from a good one (we inflate on to
 * the gzip trailer and check its CRC-32 and length; niftilib stops at the last
 * data byte and only reports a short read on stderr). Scaling follows nibabel
 * 5.0 (PIPELINE.md Step 1). Writes use niftilib to build the NIfTI-1 header
 * and zlib to write it, checking every call, to a temporary name then
 * renamed: Debian 12's nifti_image_write cannot report a failed write.
 *
 * gzip data is inflated with Intel ISA-L (igzip) when the build found it
 * (DMRI_HAVE_ISAL): on a 1 GB HCP-size data.nii.gz it inflates at 1.1 GB/s of
 * output against zlib's 0.42 GB/s on the same machine. It reads the file in
 * 1 MB pieces (not the whole compressed file: that would cost 1 GB more
 * memory), follows concatenated gzip members and ignores what follows the
 * last one unless it starts with the gzip magic, as zlib's gzread does. zlib
 * stays the path for plain files and the fallback without ISA-L; setting
 * DMRI_INFLATE=zlib in the environment also forces it (tests and benchmarks
 * use that to cover and compare both). */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <nifti2_io.h>
#ifdef DMRI_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif

#include "dmri_alloc.h"
#include "fsutil.h"

/* Values converted per chunk when the stored type differs from the file's. */
#define CHUNK_VALUES ((size_t)1 << 20)
/* Largest single gzread/gzwrite (their length is an unsigned int, the
 * result an int). */
#define IO_PIECE ((size_t)1 << 28)
/* gzip level for outputs: outputs are large (a denoised HCP image is 4.2 GB
 * raw) and written once, so speed wins. Measured on 200 MB of noisy float32:
 * level 1 took 4.2 s for 112.7 MB, zlib's default 6 took 21.7 s for 102.2 MB
 * (5x slower for 10% less). */
#define GZ_WRITE_MODE "wb1"

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

/* Largest image (in its stored form) a read accepts: the header's dims are
 * checked against it before anything is allocated. A file's size bounds what
 * its header can honestly claim, but a stream (a pipe from S3) has no size. */
static _Atomic size_t max_image_bytes = DMRI_IMAGE_MAX_BYTES;

void dmri_image_set_max_bytes(size_t bytes) {
    max_image_bytes = bytes ? bytes : DMRI_IMAGE_MAX_BYTES;
}

/* niftilib prints diagnostics to stderr at its default debug level 1; a
 * library must not, and we report every failure ourselves. */
static void quiet_niftilib(void) { nifti_set_debug_level(0); }

size_t dmri_image_datatype_size(int datatype) {
    switch (datatype) {
    case DT_UINT8:
    case DT_INT8:
        return 1;
    case DT_INT16:
    case DT_UINT16:
        return 2;
    case DT_INT32:
    case DT_UINT32:
    case DT_FLOAT32:
        return 4;
    case DT_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

size_t dmri_image_nvox(const dmri_image_t *img) {
    return (size_t)img->nx * (size_t)img->ny * (size_t)img->nz;
}

int dmri_image_is_f32_semantics(const dmri_image_t *img) {
    return img->datatype == DT_FLOAT32 && !img->scaled;
}

/* A scaled integer image is float64 for numpy, so it is not "integer". */
int dmri_image_is_integer(const dmri_image_t *img) {
    if (img->scaled)
        return 0;
    switch (img->datatype) {
    case DT_UINT8:
    case DT_INT8:
    case DT_INT16:
    case DT_UINT16:
    case DT_INT32:
    case DT_UINT32:
        return 1;
    default:
        return 0;
    }
}

void dmri_image_close(dmri_image_t *img) {
    if (!img)
        return;
    dmri_free(img->data);
    img->data = NULL;
}

/* "1.2 MB" style sizes (powers of 1000) for error messages. */
static void fmt_bytes(char *out, size_t outsz, unsigned long long n) {
    if (n >= 1000000000ULL)
        snprintf(out, outsz, "%.2f GB", (double)n / 1e9);
    else if (n >= 1000000ULL)
        snprintf(out, outsz, "%.1f MB", (double)n / 1e6);
    else if (n >= 1000ULL)
        snprintf(out, outsz, "%.1f kB", (double)n / 1e3);
    else
        snprintf(out, outsz, "%llu bytes", n);
}

static int ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcasecmp(s + ls - lx, suffix) == 0;
}

/* zlib's description of the last error of `f`, or "" if none. zlib puts
 * the file name (or "<fd:N>") in front, which our messages already carry. */
static const char *gz_error_text(gzFile f, int *errnum) {
    int e = Z_OK;
    const char *msg = gzerror(f, &e);
    if (errnum)
        *errnum = e;
    if (e == Z_OK || !msg)
        return "";
    const char *sep = strstr(msg, ": ");
    return sep ? sep + 2 : msg;
}

/* ------------------------------------------------------------------ read */

/* What we take from the raw header, before niftilib's own clean-up (it turns
 * a non-finite scl_slope/scl_inter into 0, which would hide the "valid slope,
 * invalid intercept" case that nibabel refuses). */
typedef struct {
    int version;           /* 1 or 2 */
    int64_t dim[8];
    int datatype;
    double slope, inter;
} raw_header_t;

/* The reader's size cap (dmri_image_set_max_bytes), checked right before the
 * data buffer is allocated — after the file-size checks, whose messages say
 * more when the input is a file. */
static int check_max_bytes(const char *dname, const dmri_image_t *img, dmri_err_t *err) {
    const size_t limit = max_image_bytes;
    const double stored = (double)img->nx * img->ny * img->nz * img->nv *
                          (img->store == DMRI_STORE_F32 ? 4.0 : 8.0);
    if (stored <= (double)limit)
        return 0;
    char a[32], b[32];
    fmt_bytes(a, sizeof a, (unsigned long long)stored);
    fmt_bytes(b, sizeof b, (unsigned long long)limit);
    return dmri_err_set(err, DMRI_ERANGE,
                        "%s: header claims %d x %d x %d x %d voxels (%s in memory), more than "
                        "the reader's limit of %s",
                        dname, img->nx, img->ny, img->nz, img->nv, a, b);
}

/* Read the first bytes of `path` ourselves to give precise messages (gzip
 * damage, too short, not NIfTI, bad dims) that niftilib would only print. */
/* The raw header from its first n bytes (n >= 348), already inflated. */
static int parse_raw_header(const char *path, const unsigned char *buf, int n, raw_header_t *rh,
                            dmri_err_t *err) {
    int32_t sz;
    memcpy(&sz, buf, 4);
    int32_t swapped = sz;
    nifti_swap_4bytes(1, &swapped);
    int version = 0, swap = 0;
    if (sz == 348 || swapped == 348) {
        version = 1;
        swap = sz != 348;
    } else if (sz == 540 || swapped == 540) {
        version = 2;
        swap = sz != 540;
    } else {
        return dmri_err_set(err, DMRI_EFORMAT,
                            "%s: not a NIfTI file (header size field is %d, expected 348 or 540)",
                            path, (int)sz);
    }

    memset(rh, 0, sizeof *rh);
    rh->version = version;
    if (version == 1) {
        nifti_1_header h;
        memcpy(&h, buf, sizeof h);
        if (swap)
            nifti_swap_as_nifti1(&h);
        if (memcmp(h.magic, "n+1", 4) != 0 && memcmp(h.magic, "ni1", 4) != 0)
            return dmri_err_set(err, DMRI_EFORMAT,
                                "%s: not a NIfTI file (no NIfTI-1 magic; ANALYZE 7.5 is not "
                                "supported)",
                                path);
        for (int i = 0; i < 8; i++)
            rh->dim[i] = h.dim[i];
        rh->datatype = h.datatype;
        rh->slope = h.scl_slope;
        rh->inter = h.scl_inter;
    } else {
        if (n < (int)sizeof(nifti_2_header))
            return dmri_err_set(err, DMRI_EFORMAT,
                                "%s: truncated NIfTI-2 header (%d of 540 bytes)", path, n);
        nifti_2_header h;
        memcpy(&h, buf, sizeof h);
        if (swap)
            nifti_swap_as_nifti2(&h);
        if (memcmp(h.magic, "n+2", 4) != 0 && memcmp(h.magic, "ni2", 4) != 0)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: not a NIfTI file (no NIfTI-2 magic)",
                                path);
        for (int i = 0; i < 8; i++)
            rh->dim[i] = h.dim[i];
        rh->datatype = h.datatype;
        rh->slope = h.scl_slope;
        rh->inter = h.scl_inter;
    }
    if (rh->dim[0] < 1 || rh->dim[0] > 7)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: invalid number of dimensions dim[0] = %lld",
                            path, (long long)rh->dim[0]);
    for (int i = 1; i <= rh->dim[0]; i++)
        if (rh->dim[i] < 1)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: dimension %d has size %lld (must be >= 1)",
                                path, i, (long long)rh->dim[i]);
    return 0;
}

static int sniff_header(const char *path, raw_header_t *rh, dmri_err_t *err) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return dmri_err_set(err, DMRI_ENOENT, "%s: no such file", path);
        return dmri_err_set(err, DMRI_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        return dmri_err_set(err, DMRI_EFORMAT, "%s: is a folder, not a NIfTI file", path);

    gzFile f = gzopen(path, "rb");
    if (!f)
        return dmri_err_set(err, DMRI_EIO, "%s: cannot open: %s", path,
                            errno ? strerror(errno) : "out of memory");
    unsigned char buf[sizeof(nifti_2_header)];
    int n = gzread(f, buf, sizeof buf);
    int zerr = Z_OK;
    const char *zmsg = gz_error_text(f, &zerr);
    char zcopy[128];
    snprintf(zcopy, sizeof zcopy, "%s", zmsg);
    int compressed = !gzdirect(f);
    gzclose(f);
    if (n < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR))
        return dmri_err_set(err, DMRI_EFORMAT,
                            "%s: truncated or corrupt gzip stream (in the header: %s)", path,
                            zcopy);
    if (n < (int)sizeof(nifti_1_header)) {
        if (compressed && zerr == Z_BUF_ERROR)
            return dmri_err_set(err, DMRI_EFORMAT,
                                "%s: truncated or corrupt gzip stream (read %d of the %d "
                                "header bytes)",
                                path, n, (int)sizeof(nifti_1_header));
        return dmri_err_set(err, DMRI_EFORMAT,
                            "%s: not a NIfTI file (only %d bytes, a header needs 348)", path, n);
    }
    if (compressed && !ends_with(path, ".gz"))
        return dmri_err_set(err, DMRI_EFORMAT,
                            "%s: file is gzip-compressed but its name does not end in .gz", path);

    return parse_raw_header(path, buf, n, rh, err);
}

/* Convert n raw values (native byte order) to the stored type, applying the
 * scaling the nibabel way: v = raw as f64; v *= slope if slope != 1; v += inter
 * if inter != 0 (each step only when needed, so a -0.0 stays -0.0 as in numpy). */
#define CONVERT_LOOP(T)                                                             \
    do {                                                                            \
        const T *s = (const T *)src;                                                \
        if (store == DMRI_STORE_F32) {                                              \
            float *d = (float *)dst;                                                \
            for (size_t i = 0; i < n; i++)                                          \
                d[i] = (float)s[i];                                                 \
        } else if (!scaled) {                                                       \
            double *d = (double *)dst;                                              \
            for (size_t i = 0; i < n; i++)                                          \
                d[i] = (double)s[i];                                                \
        } else {                                                                    \
            double *d = (double *)dst;                                              \
            for (size_t i = 0; i < n; i++) {                                        \
                double v = (double)s[i];                                            \
                if (slope != 1.0)                                                   \
                    v *= slope;                                                     \
                if (inter != 0.0)                                                   \
                    v += inter;                                                     \
                d[i] = v;                                                           \
            }                                                                       \
        }                                                                           \
    } while (0)

static void convert_values(const void *src, int datatype, size_t n, void *dst,
                           dmri_store_t store, int scaled, double slope, double inter) {
    switch (datatype) {
    case DT_UINT8: CONVERT_LOOP(uint8_t); break;
    case DT_INT8: CONVERT_LOOP(int8_t); break;
    case DT_INT16: CONVERT_LOOP(int16_t); break;
    case DT_UINT16: CONVERT_LOOP(uint16_t); break;
    case DT_INT32: CONVERT_LOOP(int32_t); break;
    case DT_UINT32: CONVERT_LOOP(uint32_t); break;
    case DT_FLOAT32: CONVERT_LOOP(float); break;
    case DT_FLOAT64: CONVERT_LOOP(double); break;
    default: break;
    }
}
#undef CONVERT_LOOP

/* Read exactly `len` bytes; returns the number read (short on EOF/error). */
static size_t gz_read_full(gzFile f, void *buf, size_t len) {
    size_t got = 0;
    char *p = buf;
    while (got < len) {
        size_t piece = len - got < IO_PIECE ? len - got : IO_PIECE;
        int r = gzread(f, p + got, (unsigned)piece);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* Both inflaters say the same when a gzip trailer does not match. */
#define CHECK_FAILED "CRC-32 or length in the gzip trailer does not match the data"

static int zlib_check_failed(const char *zmsg) {
    return strstr(zmsg, "incorrect data check") || strstr(zmsg, "incorrect length check");
}

static int short_read_error(const char *path, gzFile f, int compressed, unsigned long long got,
                            unsigned long long want, dmri_err_t *err) {
    char a[32], b[32];
    fmt_bytes(a, sizeof a, got);
    fmt_bytes(b, sizeof b, want);
    int zerr = Z_OK;
    const char *zmsg = gz_error_text(f, &zerr);
    if (compressed && zerr == Z_DATA_ERROR) /* zlib does not say how far it got */
        return dmri_err_set(err, DMRI_EFORMAT, "%s: corrupt gzip stream (%szlib: %s)", path,
                            zlib_check_failed(zmsg) ? CHECK_FAILED "; " : "", zmsg);
    if (compressed)
        return dmri_err_set(err, DMRI_EFORMAT,
                            "%s: truncated or corrupt gzip stream (read %s of %s expected%s%s)",
                            path, a, b, *zmsg ? "; zlib: " : "", zmsg);
    if (zerr == Z_ERRNO)
        return dmri_err_set(err, DMRI_EIO, "%s: read error after %s of %s: %s", path, a, b,
                            strerror(errno));
    return dmri_err_set(err, DMRI_EFORMAT, "%s: file is truncated (read %s of %s expected)",
                        path, a, b);
}

/* ------------------------------------------------------------ prefault */

/* The output buffer is 4.2 GB for an HCP image, and on this kind of (virtual)
 * machine taking its million page faults one by one costs more than
 * inflating: 6.9 s to touch 4.2 GB page by page against 1.5-2.5 s for
 * MADV_POPULATE_WRITE, which maps the pages without a fault each. A helper
 * thread populates the buffer from its start while the reader fills it from
 * its start; the helper is faster, so the reader finds its pages mapped.
 * Populating never changes the contents, so the race with the reader's
 * writes is harmless. Kernels without MADV_POPULATE_WRITE (before 5.14)
 * refuse it and the reader takes the faults itself. */
#define PREFAULT_MIN ((size_t)64 << 20)   /* smaller buffers: not worth a thread */
#define PREFAULT_PIECE ((size_t)64 << 20) /* per madvise; lets a failed read stop it */

typedef struct {
    pthread_t tid;
    int running;
    atomic_int stop;
    char *start;
    size_t len;
} prefault_t;

static void *prefault_main(void *arg) {
#ifdef MADV_POPULATE_WRITE
    prefault_t *pf = arg;
    for (size_t off = 0; off < pf->len && !atomic_load(&pf->stop); off += PREFAULT_PIECE) {
        size_t m = pf->len - off < PREFAULT_PIECE ? pf->len - off : PREFAULT_PIECE;
        if (madvise(pf->start + off, m, MADV_POPULATE_WRITE) != 0)
            break;
    }
#else
    (void)arg;
#endif
    return NULL;
}

static void prefault_start(prefault_t *pf, void *buf, size_t len) {
    memset(pf, 0, sizeof *pf);
    atomic_init(&pf->stop, 0);
#ifdef MADV_POPULATE_WRITE
    long pg = sysconf(_SC_PAGESIZE);
    if (len < PREFAULT_MIN || pg <= 0)
        return;
    uintptr_t a = ((uintptr_t)buf + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t e = ((uintptr_t)buf + len) & ~((uintptr_t)pg - 1);
    if (e <= a)
        return;
    pf->start = (char *)a;
    pf->len = (size_t)(e - a);
    pf->running = pthread_create(&pf->tid, NULL, prefault_main, pf) == 0;
#else
    (void)buf;
    (void)len;
#endif
}

static void prefault_stop(prefault_t *pf) {
    if (!pf->running)
        return;
    atomic_store(&pf->stop, 1);
    pthread_join(pf->tid, NULL);
    pf->running = 0;
}

#ifdef DMRI_HAVE_ISAL
/* ------------------------------------------------- gzip data through ISA-L */

/* Compressed bytes read per read(): small enough to stay out of the memory
 * budget, large enough that the system calls cost nothing. */
#define IGZ_IN_BYTES ((size_t)1 << 20)
/* Values inflated per chunk when they must be swapped or converted: the
 * chunk stays in cache between inflating and converting. */
#define IGZ_CHUNK_VALUES ((size_t)1 << 16)
/* Bytes of the scratch buffer (chunks, header skipping, the tail). */
#define IGZ_SCRATCH (IGZ_CHUNK_VALUES * 8)
/* Largest output given to one isal_inflate call (avail_out is 32-bit). */
#define IGZ_OUT_PIECE ((size_t)1 << 30)

enum { IGZ_OK = 0, IGZ_TRUNCATED, IGZ_CORRUPT, IGZ_IOERR };

typedef struct {
    int fd;
    struct inflate_state st; /* next_in/avail_in point into `in` */
    unsigned char *in;       /* IGZ_IN_BYTES of compressed input */
    int in_eof;              /* read() has returned 0 */
    int ended;               /* last member finished; the rest is ignored */
    int status;              /* IGZ_* */
    int isal_ret;            /* isal_inflate's error for IGZ_CORRUPT */
    int sys_errno;           /* errno for IGZ_IOERR */
    unsigned member;         /* gzip member being inflated, from 1 */
    unsigned long long out_total; /* bytes inflated so far, all members */
} igz_t;

/* Keep the unread input, append what read() gives. */
static void igz_refill(igz_t *g) {
    size_t keep = g->st.avail_in;
    if (keep > 0 && g->st.next_in != g->in)
        memmove(g->in, g->st.next_in, keep);
    g->st.next_in = g->in;
    for (;;) {
        ssize_t r = read(g->fd, g->in + keep, IGZ_IN_BYTES - keep);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            g->status = IGZ_IOERR;
            g->sys_errno = errno;
            return;
        }
        if (r == 0)
            g->in_eof = 1;
        g->st.avail_in = (uint32_t)(keep + (size_t)r);
        return;
    }
}

/* After a member's trailer checked out: another member follows only if the
 * next bytes are the gzip magic (zlib's gzread rule); anything else is
 * trailing garbage that gzread ignores, and so do we. */
static void igz_next_member(igz_t *g) {
    while (g->st.avail_in < 2 && !g->in_eof && g->status == IGZ_OK)
        igz_refill(g);
    if (g->status != IGZ_OK)
        return;
    if (g->st.avail_in >= 2 && g->st.next_in[0] == 0x1f && g->st.next_in[1] == 0x8b) {
        isal_inflate_reset(&g->st); /* keeps next_in/avail_in; zeroes crc, total_out */
        g->st.crc_flag = ISAL_GZIP;
        g->member++;
    } else {
        g->ended = 1;
    }
}

/* Inflate up to `len` bytes into `dst`; fewer only at the end of the stream
 * or on an error (g->status says which). */
static size_t igz_read(igz_t *g, void *dst, size_t len) {
    unsigned char *out = dst;
    size_t done = 0;
    while (done < len && !g->ended && g->status == IGZ_OK) {
        if (g->st.avail_in == 0 && !g->in_eof) {
            igz_refill(g);
            if (g->status != IGZ_OK)
                break;
        }
        size_t piece = len - done < IGZ_OUT_PIECE ? len - done : IGZ_OUT_PIECE;
        g->st.next_out = out + done;
        g->st.avail_out = (uint32_t)piece;
        uint32_t in_before = g->st.avail_in;
        int ret = isal_inflate(&g->st);
        size_t made = (size_t)(g->st.next_out - (out + done));
        done += made;
        g->out_total += made;
        if (ret < 0 || ret == ISAL_NEED_DICT) {
            g->status = IGZ_CORRUPT;
            g->isal_ret = ret;
            break;
        }
        if (g->st.block_state == ISAL_BLOCK_FINISH) {
            igz_next_member(g);
        } else if (made == 0 && g->st.avail_in == in_before) {
            /* No progress: it needs input we do not have. */
            if (g->in_eof) {
                g->status = IGZ_TRUNCATED;
            } else if (g->st.avail_in >= IGZ_IN_BYTES) {
                g->status = IGZ_CORRUPT; /* cannot happen with a sane decoder */
                g->isal_ret = ISAL_INVALID_BLOCK;
            } else {
                igz_refill(g);
            }
        }
    }
    return done;
}

/* What went wrong, for messages. */
static void igz_reason(const igz_t *g, char *out, size_t outsz) {
    char at[32];
    fmt_bytes(at, sizeof at, g->out_total);
    const char *what = "unknown error";
    switch (g->status) {
    case IGZ_TRUNCATED:
        snprintf(out, outsz, "the compressed data ends early, after %s of output", at);
        return;
    case IGZ_IOERR:
        snprintf(out, outsz, "read error: %s", strerror(g->sys_errno));
        return;
    case IGZ_CORRUPT:
        switch (g->isal_ret) {
        case ISAL_INCORRECT_CHECKSUM: what = CHECK_FAILED; break;
        case ISAL_INVALID_BLOCK: what = "invalid deflate block"; break;
        case ISAL_INVALID_SYMBOL: what = "invalid deflate code"; break;
        case ISAL_INVALID_LOOKBACK: what = "back-reference before the start of the data"; break;
        case ISAL_INVALID_WRAPPER: what = "invalid gzip header"; break;
        case ISAL_UNSUPPORTED_METHOD: what = "unknown compression method in a gzip header"; break;
        default: break;
        }
        snprintf(out, outsz, "%s, in gzip member %u, after %s of output", what, g->member, at);
        return;
    default:
        snprintf(out, outsz, "%s", what);
        return;
    }
}

/* Inflate the data of a gzip file (already open as `fd`) into img->data,
 * converting on the way: straight into place when no conversion or swap is
 * needed, else through a small cached chunk. */
static igz_t *igz_new(int fd) {
    igz_t *g = dmri_calloc(1, sizeof *g);
    g->fd = fd;
    g->in = dmri_malloc(IGZ_IN_BYTES);
    g->member = 1;
    isal_inflate_init(&g->st);
    g->st.crc_flag = ISAL_GZIP;
    g->st.hist_bits = 0;
    g->st.next_in = g->in;
    g->st.avail_in = 0;
    return g;
}

static void igz_free(igz_t *g) {
    if (!g)
        return;
    dmri_free(g->in);
    dmri_free(g);
}

/* `consumed` bytes of the inflated stream were already read (a stream's
 * header); the rest up to the data offset is skipped. */
static int read_data_isal(const char *dname, igz_t *g, size_t consumed, const nifti_image *nim,
                          dmri_image_t *img, double slope, double inter, dmri_err_t *err) {
    const size_t nval = (size_t)img->nx * img->ny * img->nz * img->nv;
    const size_t bpv = dmri_image_datatype_size(img->datatype);
    const size_t osz = img->store == DMRI_STORE_F32 ? 4 : 8;
    const int swap = nim->byteorder != nifti_short_order() && bpv > 1;
    const size_t want = nval * bpv;
    int rc = 0;
    char reason[160];

    unsigned char *scratch = dmri_malloc(IGZ_SCRATCH);

    /* Header and extensions, already parsed by niftilib. */
    size_t skipped = consumed;
    size_t offset = nim->iname_offset > 0 ? (size_t)nim->iname_offset : 0;
    if (offset < consumed)
        offset = consumed;
    while (skipped < offset) {
        size_t m = offset - skipped < IGZ_SCRATCH ? offset - skipped : IGZ_SCRATCH;
        size_t r = igz_read(g, scratch, m);
        skipped += r;
        if (r != m)
            break;
    }

    /* Allocated only once the header part inflated: a stream damaged that
     * early fails without touching gigabytes. */
    prefault_t pf = {.running = 0};
    size_t got = 0;
    if (skipped == offset && (rc = check_max_bytes(dname, img, err)) != 0) {
        dmri_free(scratch);
        return rc;
    }
    if (skipped == offset) {
        img->data = dmri_aligned_alloc(nval * osz);
        prefault_start(&pf, img->data, nval * osz);
        const int direct = !swap && !img->scaled &&
                           (img->datatype == DT_FLOAT32 || img->datatype == DT_FLOAT64);
        if (direct) {
            got = igz_read(g, img->data, want);
        } else {
            for (size_t done = 0; done < nval;) {
                size_t m = nval - done < IGZ_CHUNK_VALUES ? nval - done : IGZ_CHUNK_VALUES;
                size_t r = igz_read(g, scratch, m * bpv);
                got += r;
                if (r != m * bpv)
                    break;
                if (swap)
                    nifti_swap_Nbytes((int64_t)m, (int)bpv, scratch);
                convert_values(scratch, img->datatype, m, (char *)img->data + done * osz,
                               img->store, img->scaled, slope, inter);
                done += m;
            }
        }
    }

    prefault_stop(&pf);
    if (skipped != offset || got != want) {
        char a[32], b[32];
        fmt_bytes(a, sizeof a, got);
        fmt_bytes(b, sizeof b, want);
        igz_reason(g, reason, sizeof reason);
        if (g->status == IGZ_IOERR)
            rc = dmri_err_set(err, DMRI_EIO, "%s: read error after %s of %s: %s", dname, a, b,
                              strerror(g->sys_errno));
        else if (g->status == IGZ_CORRUPT)
            rc = dmri_err_set(err, DMRI_EFORMAT, "%s: corrupt gzip stream (%s)", dname, reason);
        else if (g->status == IGZ_TRUNCATED)
            rc = dmri_err_set(err, DMRI_EFORMAT,
                              "%s: truncated or corrupt gzip stream (read %s of %s expected; %s)",
                              dname, a, b, reason);
        else
            rc = dmri_err_set(err, DMRI_EFORMAT,
                              "%s: truncated or corrupt gzip stream (read %s of %s expected; "
                              "the gzip stream ends there)",
                              dname, a, b);
    } else {
        /* Inflate on to the end so every member's trailer (CRC-32 and
         * length) is checked: damage after the data, or a stream cut inside
         * the trailer, fails the read. */
        while (igz_read(g, scratch, IGZ_SCRATCH) > 0)
            ;
        if (g->status != IGZ_OK) {
            igz_reason(g, reason, sizeof reason);
            if (g->status == IGZ_CORRUPT)
                rc = dmri_err_set(err, DMRI_EFORMAT, "%s: corrupt gzip stream (%s)", dname,
                                  reason);
            else
                rc = dmri_err_set(err, g->status == IGZ_IOERR ? DMRI_EIO : DMRI_EFORMAT,
                                  "%s: truncated or corrupt gzip stream (all data read, but "
                                  "the stream ends badly: %s)",
                                  dname, reason);
        }
    }
    dmri_free(scratch);
    if (rc != 0) {
        dmri_free(img->data);
        img->data = NULL;
    }
    return rc;
}

/* 1 unless DMRI_INFLATE=zlib asks for the zlib path. */
static int isal_wanted(void) {
    const char *e = getenv("DMRI_INFLATE");
    return !(e && strcmp(e, "zlib") == 0);
}
#endif /* DMRI_HAVE_ISAL */

static int read_data_gz(const char *dname, gzFile f, int stat_size, const nifti_image *nim,
                        dmri_image_t *img, double slope, double inter, dmri_err_t *err);

static int read_data(const char *path, const nifti_image *nim, dmri_image_t *img,
                     double slope, double inter, dmri_err_t *err) {
    /* niftilib knows where the data lives (.nii, or .img of a pair). */
    const char *dname = nim->iname ? nim->iname : path;
#ifdef DMRI_HAVE_ISAL
    if (isal_wanted()) {
        const unsigned long long want = (unsigned long long)img->nx * img->ny * img->nz *
                                        img->nv * dmri_image_datatype_size(img->datatype);
        int rc;
        int fd = open(dname, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return dmri_err_set(err, DMRI_EIO, "%s: cannot open: %s", dname, strerror(errno));
        unsigned char magic[2];
        struct stat st;
        int gz = pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        if (gz && fstat(fd, &st) == 0 && want / 1032 > (unsigned long long)st.st_size) {
            /* As below: refuse before allocating what the file cannot hold. */
            char a[32], b[32];
            fmt_bytes(a, sizeof a, want);
            fmt_bytes(b, sizeof b, (unsigned long long)st.st_size);
            close(fd);
            return dmri_err_set(err, DMRI_EFORMAT,
                                "%s: header claims %s of data, more than a %s gzip file can hold",
                                dname, a, b);
        }
        if (gz) {
            posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
            igz_t *g = igz_new(fd);
            rc = read_data_isal(dname, g, 0, nim, img, slope, inter, err);
            igz_free(g);
            close(fd);
            return rc;
        }
        close(fd); /* plain data: zlib's transparent mode reads it */
    }
#endif
    gzFile f = gzopen(dname, "rb");
    if (!f)
        return dmri_err_set(err, DMRI_EIO, "%s: cannot open: %s", dname,
                            errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 20);
    return read_data_gz(dname, f, 1, nim, img, slope, inter, err);
}

/* The zlib path, from an open gzFile (closed here). When `stat_size` the
 * file `dname` is stat'ed to refuse impossible sizes; a stream cannot be. */
static int read_data_gz(const char *dname, gzFile f, int stat_size, const nifti_image *nim,
                        dmri_image_t *img, double slope, double inter, dmri_err_t *err) {
    const size_t nval = (size_t)img->nx * img->ny * img->nz * img->nv;
    const size_t bpv = dmri_image_datatype_size(img->datatype);
    const size_t osz = img->store == DMRI_STORE_F32 ? 4 : 8;
    const int swap = nim->byteorder != nifti_short_order() && bpv > 1;
    const unsigned long long want = (unsigned long long)nval * bpv;
    int rc = 0;
    const int compressed = !gzdirect(f);
    /* A stream's header was read already: gzseek only goes forward there. */
    if (nim->iname_offset > 0 && (z_off_t)nim->iname_offset > gztell(f) &&
        gzseek(f, (z_off_t)nim->iname_offset, SEEK_SET) < 0) {
        rc = short_read_error(dname, f, compressed, 0, want, err);
        gzclose(f);
        return rc;
    }

    /* Refuse before allocating when the file cannot hold what the header
     * claims (a damaged header must fail the subject, not exhaust memory):
     * plain files by size, gzip by deflate's maximum ratio of 1032:1. */
    struct stat st;
    if (stat_size && stat(dname, &st) == 0) {
        unsigned long long have = (unsigned long long)st.st_size;
        unsigned long long off = (unsigned long long)nim->iname_offset;
        if (!compressed && have < off + want) {
            rc = short_read_error(dname, f, 0, have > off ? have - off : 0, want, err);
        } else if (compressed && want / 1032 > have) {
            char a[32], b[32];
            fmt_bytes(a, sizeof a, want);
            fmt_bytes(b, sizeof b, have);
            rc = dmri_err_set(err, DMRI_EFORMAT,
                              "%s: header claims %s of data, more than a %s gzip file can hold",
                              dname, a, b);
        }
        if (rc != 0) {
            gzclose(f);
            return rc;
        }
    }

    if ((rc = check_max_bytes(dname, img, err)) != 0) {
        gzclose(f);
        return rc;
    }
    img->data = dmri_aligned_alloc(nval * osz);
    prefault_t pf;
    prefault_start(&pf, img->data, nval * osz);
    unsigned long long got = 0;
    if (!img->scaled && (img->datatype == DT_FLOAT32 || img->datatype == DT_FLOAT64)) {
        /* float32 -> f32 or float64 -> f64: read straight into place. */
        got = gz_read_full(f, img->data, (size_t)want);
        if (got == want && swap)
            nifti_swap_Nbytes((int64_t)nval, (int)bpv, img->data);
    } else {
        void *chunk = dmri_malloc(CHUNK_VALUES * bpv);
        for (size_t done = 0; done < nval;) {
            size_t m = nval - done < CHUNK_VALUES ? nval - done : CHUNK_VALUES;
            size_t r = gz_read_full(f, chunk, m * bpv);
            got += r;
            if (r != m * bpv)
                break;
            if (swap)
                nifti_swap_Nbytes((int64_t)m, (int)bpv, chunk);
            convert_values(chunk, img->datatype, m, (char *)img->data + done * osz, img->store,
                           img->scaled, slope, inter);
            done += m;
        }
        dmri_free(chunk);
    }
    prefault_stop(&pf);
    if (got != want) {
        rc = short_read_error(dname, f, compressed, got, want, err);
    } else if (compressed) {
        /* Read on to the end so zlib checks the trailer (CRC-32 and length):
         * a stream damaged after the data, or cut inside the trailer, fails. */
        char tail[4096];
        int r;
        while ((r = gzread(f, tail, sizeof tail)) > 0)
            ;
        int zerr = Z_OK;
        const char *zmsg = gz_error_text(f, &zerr);
        if ((r < 0 || zerr != Z_OK) && zlib_check_failed(zmsg))
            rc = dmri_err_set(err, DMRI_EFORMAT, "%s: corrupt gzip stream (" CHECK_FAILED
                              "; zlib: %s)", dname, zmsg);
        else if (r < 0 || zerr != Z_OK)
            rc = dmri_err_set(err, DMRI_EFORMAT,
                              "%s: truncated or corrupt gzip stream (all data read, but the "
                              "stream ends badly: %s)",
                              dname, zmsg);
    }
    gzclose(f);
    if (rc != 0) {
        dmri_free(img->data);
        img->data = NULL;
    }
    return rc;
}

/* The image's fields from niftilib's header (and our raw slope/intercept);
 * *slope and *inter get the scaling to apply to the data. */
static int image_from_nim(const char *path, const nifti_image *nim, const raw_header_t *rh,
                          dmri_image_t *img, double *slope_out, double *inter_out,
                          dmri_err_t *err) {
    int rc = 0;
    const int dt = nim->datatype;
    if (dmri_image_datatype_size(dt) == 0) {
        rc = dmri_err_set(err, DMRI_EUNSUP,
                          "%s: unsupported datatype %s (NIfTI code %d); supported: uint8, int8, "
                          "int16, uint16, int32, uint32, float32, float64",
                          path, nifti_datatype_string(dt), dt);
        return rc;
    }
    const int64_t *dim = nim->dim;
    int ndim = (int)dim[0];
    if (ndim < 3) {
        rc = dmri_err_set(err, DMRI_EUNSUP, "%s: %d-D image; a 3-D or 4-D image is needed", path,
                          ndim);
        return rc;
    }
    /* 5-D and up are accepted only when the extra axes have size 1. */
    for (int i = 5; i <= ndim; i++) {
        if (dim[i] != 1) {
            rc = dmri_err_set(err, DMRI_EUNSUP,
                              "%s: %d-D image with dimension %d of size %lld; only 3-D or 4-D "
                              "images are supported",
                              path, ndim, i, (long long)dim[i]);
            return rc;
        }
    }
    if (ndim > 4)
        ndim = 4;
    for (int i = 1; i <= ndim; i++) {
        if (dim[i] < 1 || dim[i] > INT_MAX) {
            rc = dmri_err_set(err, DMRI_EFORMAT, "%s: dimension %d has size %lld", path, i,
                              (long long)dim[i]);
            return rc;
        }
    }
    const double total = (double)dim[1] * dim[2] * dim[3] * (ndim == 4 ? dim[4] : 1) * 8.0;
    if (total > (double)(SIZE_MAX / 2)) {
        rc = dmri_err_set(err, DMRI_ERANGE, "%s: image too large", path);
        return rc;
    }

    /* Scaling, as nibabel 5.0's get_slope_inter + apply_read_scaling. */
    double slope = rh->slope, inter = rh->inter;
    int scaled = 0;
    if (slope != 0.0 && isfinite(slope)) {
        if (!isfinite(inter)) {
            rc = dmri_err_set(err, DMRI_EFORMAT,
                              "%s: valid scl_slope %g but invalid scl_inter %g", path, slope,
                              inter);
            return rc;
        }
        scaled = !(slope == 1.0 && inter == 0.0);
    }

    img->ndim = ndim;
    img->nx = (int)dim[1];
    img->ny = (int)dim[2];
    img->nz = (int)dim[3];
    img->nv = ndim == 4 ? (int)dim[4] : 1;
    img->datatype = dt;
    img->scaled = scaled;
    /* f32 holds float32 and the 8/16-bit integers exactly; the rest, and
     * anything scaled (float64 in numpy), is held as f64. */
    if (scaled)
        img->store = DMRI_STORE_F64;
    else
        img->store = (dt == DT_FLOAT32 || dmri_image_datatype_size(dt) <= 2) ? DMRI_STORE_F32
                                                                               : DMRI_STORE_F64;
    for (int i = 0; i < 4; i++)
        img->pixdim[i] = nim->pixdim[i + 1];
    img->qform_code = nim->qform_code;
    img->sform_code = nim->sform_code;
    img->quatern[0] = nim->quatern_b;
    img->quatern[1] = nim->quatern_c;
    img->quatern[2] = nim->quatern_d;
    img->quatern[3] = nim->qoffset_x;
    img->quatern[4] = nim->qoffset_y;
    img->quatern[5] = nim->qoffset_z;
    img->qfac = nim->qfac;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            img->srow[r][c] = nim->sto_xyz.m[r][c];
    img->xyz_units = nim->xyz_units;
    img->time_units = nim->time_units;

    *slope_out = slope;
    *inter_out = inter;
    return 0;
}

int dmri_image_read(const char *path, dmri_image_t *img, dmri_err_t *err) {
    memset(img, 0, sizeof *img);
    pthread_once(&quiet_once, quiet_niftilib);

    raw_header_t rh;
    int rc = sniff_header(path, &rh, err);
    if (rc != 0)
        return rc;

    nifti_image *nim = nifti_image_read(path, 0);
    if (!nim)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: niftilib cannot read the NIfTI-%d header",
                            path, rh.version);

    double slope = 1.0, inter = 0.0;
    if ((rc = image_from_nim(path, nim, &rh, img, &slope, &inter, err)) != 0)
        goto out;
    rc = read_data(path, nim, img, slope, inter, err);
out:
    nifti_image_free(nim);
    if (rc != 0)
        dmri_image_close(img);
    return rc;
}

/* ------------------------------------------------------------- stream */

/* A gzip stream on a descriptor that may be a pipe (data arriving from S3):
 * the header is inflated by the same inflater as the data, so nothing is
 * read twice and nothing needs a seek. */
int dmri_image_read_fd(const char *name, int fd, dmri_image_t *img, dmri_err_t *err) {
    memset(img, 0, sizeof *img);
    pthread_once(&quiet_once, quiet_niftilib);
    union {
        nifti_1_header h1;
        nifti_2_header h2;
        unsigned char b[sizeof(nifti_2_header)];
    } hdr;
    raw_header_t rh;
    nifti_image *nim = NULL;
    gzFile f = NULL;
    int rc = 0, use_isal = 0;
    size_t got = 0;
    char reason[160] = "";
#ifdef DMRI_HAVE_ISAL
    igz_t *g = NULL;
    use_isal = isal_wanted();
    if (use_isal) {
        g = igz_new(fd);
        got = igz_read(g, hdr.b, sizeof(nifti_1_header));
        if (got < sizeof(nifti_1_header))
            igz_reason(g, reason, sizeof reason);
    }
#endif
    if (!use_isal) {
        int fd2 = dup(fd);
        f = fd2 >= 0 ? gzdopen(fd2, "rb") : NULL;
        if (!f) {
            if (fd2 >= 0)
                close(fd2);
            return dmri_err_set(err, DMRI_EIO, "%s: cannot read the stream: %s", name,
                                strerror(errno ? errno : ENOMEM));
        }
        gzbuffer(f, 1 << 20);
        got = gz_read_full(f, hdr.b, sizeof(nifti_1_header));
        if (gzdirect(f)) {
            rc = dmri_err_set(err, DMRI_EFORMAT, "%s: not a gzip stream", name);
            goto out;
        }
        if (got < sizeof(nifti_1_header))
            snprintf(reason, sizeof reason, "%s", gz_error_text(f, NULL));
    }
    if (got < sizeof(nifti_1_header)) {
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "%s: truncated or corrupt gzip stream (read %zu of the 348 header "
                          "bytes%s%s)",
                          name, got, reason[0] ? "; " : "", reason);
        goto out;
    }
    if ((rc = parse_raw_header(name, hdr.b, (int)got, &rh, err)) != 0)
        goto out;
    if (rh.version == 2) {
        size_t more = sizeof(nifti_2_header) - got, r = 0;
#ifdef DMRI_HAVE_ISAL
        if (use_isal)
            r = igz_read(g, hdr.b + got, more);
#endif
        if (!use_isal)
            r = gz_read_full(f, hdr.b + got, more);
        got += r;
        if (r != more || (rc = parse_raw_header(name, hdr.b, (int)got, &rh, err)) != 0) {
            if (rc == 0)
                rc = dmri_err_set(err, DMRI_EFORMAT,
                                  "%s: truncated or corrupt gzip stream (in the NIfTI-2 header)",
                                  name);
            goto out;
        }
        nim = nifti_convert_n2hdr2nim(hdr.h2, name);
    } else {
        nim = nifti_convert_n1hdr2nim(hdr.h1, name);
    }
    if (!nim) {
        rc = dmri_err_set(err, DMRI_EFORMAT, "%s: niftilib cannot read the NIfTI-%d header",
                          name, rh.version);
        goto out;
    }
    if (nim->nifti_type != NIFTI_FTYPE_NIFTI1_1 && nim->nifti_type != NIFTI_FTYPE_NIFTI2_1) {
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "%s: header of a two-file (.hdr/.img) NIfTI; a stream must be "
                          "single-file (.nii.gz)",
                          name);
        goto out;
    }
    double slope = 1.0, inter = 0.0;
    if ((rc = image_from_nim(name, nim, &rh, img, &slope, &inter, err)) != 0)
        goto out;
    /* A descriptor on a regular file has a size: refuse a header claiming
     * more than deflate's 1032:1 can fit in it before allocating. */
    struct stat st;
    const unsigned long long want = (unsigned long long)img->nx * img->ny * img->nz * img->nv *
                                    dmri_image_datatype_size(img->datatype);
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        want / 1032 > (unsigned long long)st.st_size) {
        char a[32], b[32];
        fmt_bytes(a, sizeof a, want);
        fmt_bytes(b, sizeof b, (unsigned long long)st.st_size);
        rc = dmri_err_set(err, DMRI_EFORMAT,
                          "%s: header claims %s of data, more than a %s gzip file can hold", name,
                          a, b);
        goto out;
    }
#ifdef DMRI_HAVE_ISAL
    if (use_isal)
        rc = read_data_isal(name, g, got, nim, img, slope, inter, err);
#endif
    if (!use_isal) {
        rc = read_data_gz(name, f, 0, nim, img, slope, inter, err);
        f = NULL; /* closed there */
    }
out:
#ifdef DMRI_HAVE_ISAL
    igz_free(g);
#endif
    if (f)
        gzclose(f);
    if (nim)
        nifti_image_free(nim);
    if (rc != 0)
        dmri_image_close(img);
    return rc;
}

/* ----------------------------------------------------------------- write */

static int write_all(gzFile gz, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        size_t piece = len < IO_PIECE ? len : IO_PIECE;
        int w = gzwrite(gz, p, (unsigned)piece);
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Fill a NIfTI-1 header through niftilib from `geom`'s geometry. */
static int build_header(const char *path, const dmri_image_t *geom, int ndim, const int *dims,
                        int datatype, nifti_1_header *hdr, dmri_err_t *err) {
    int64_t d[8] = {ndim, 1, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < ndim; i++)
        d[i + 1] = dims[i];
    nifti_image *nim = nifti_make_new_nim(d, datatype, 0);
    if (!nim)
        return dmri_err_set(err, DMRI_EINVAL, "%s: niftilib cannot make a header", path);
    for (int i = 1; i <= 7; i++)
        nim->pixdim[i] = 1.0;
    for (int i = 0; i < 3; i++)
        nim->pixdim[i + 1] = geom->pixdim[i];
    /* The time step only means something for a series of the input's volumes. */
    if (ndim >= 4 && geom->ndim == 4 && dims[3] == geom->nv)
        nim->pixdim[4] = geom->pixdim[3];
    nim->dx = nim->pixdim[1];
    nim->dy = nim->pixdim[2];
    nim->dz = nim->pixdim[3];
    nim->dt = nim->pixdim[4];
    nim->du = nim->dv = nim->dw = 1.0;
    nim->qform_code = geom->qform_code;
    nim->sform_code = geom->sform_code;
    nim->quatern_b = geom->quatern[0];
    nim->quatern_c = geom->quatern[1];
    nim->quatern_d = geom->quatern[2];
    nim->qoffset_x = geom->quatern[3];
    nim->qoffset_y = geom->quatern[4];
    nim->qoffset_z = geom->quatern[5];
    nim->qfac = geom->qfac < 0 ? -1.0 : 1.0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            nim->sto_xyz.m[r][c] = geom->srow[r][c];
    nim->xyz_units = geom->xyz_units;
    nim->time_units = geom->time_units;
    nim->scl_slope = 1.0;
    nim->scl_inter = 0.0;
    int rc = nifti_convert_nim2n1hdr(nim, hdr);
    nifti_image_free(nim);
    if (rc != 0)
        return dmri_err_set(err, DMRI_EINVAL, "%s: niftilib cannot convert the header", path);
    hdr->sizeof_hdr = (int)sizeof(nifti_1_header);
    hdr->vox_offset = 352.0f;
    memcpy(hdr->magic, "n+1", 4);
    snprintf(hdr->descrip, sizeof hdr->descrip, "dmri %s", DMRI_VERSION);
    return 0;
}

int dmri_image_write(const char *path, const dmri_image_t *geom, int ndim, const int *dims,
                     int datatype, const void *data, dmri_err_t *err) {
    pthread_once(&quiet_once, quiet_niftilib);
    if (ndim < 3 || ndim > 5)
        return dmri_err_set(err, DMRI_EINVAL, "%s: cannot write a %d-D image (3 to 5)", path,
                            ndim);
    const size_t bpv = dmri_image_datatype_size(datatype);
    if (bpv == 0)
        return dmri_err_set(err, DMRI_EINVAL, "%s: cannot write datatype %d", path, datatype);
    size_t nval = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1 || dims[i] > 32767) /* NIfTI-1 dims are int16 */
            return dmri_err_set(err, DMRI_EINVAL, "%s: dimension %d of size %d does not fit "
                                "NIfTI-1 (1..32767)", path, i + 1, dims[i]);
        nval *= (size_t)dims[i];
    }

    nifti_1_header hdr;
    int rc = build_header(path, geom, ndim, dims, datatype, &hdr, err);
    if (rc != 0)
        return rc;

    char tmp[4096];
    if (dmri_tmp_name_for(tmp, sizeof tmp, path) != 0)
        return dmri_err_set(err, DMRI_ERANGE, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return dmri_err_set(err, DMRI_EIO, "%s: cannot write (creating a temporary file in its "
                            "folder failed: %s)", path, strerror(errno));

    /* gzip for .gz names; zlib's transparent mode ("T") writes plain bytes
     * otherwise, so both go through one checked path. zlib gets a duplicate
     * of the descriptor, so we can still fsync after gzclose. */
    const char *mode = ends_with(path, ".gz") ? GZ_WRITE_MODE : "wbT";
    int fd2 = dup(fd);
    gzFile gz = fd2 >= 0 ? gzdopen(fd2, mode) : NULL;
    if (!gz) {
        int e = errno;
        if (fd2 >= 0)
            close(fd2);
        close(fd);
        unlink(tmp);
        return dmri_err_set(err, DMRI_EIO, "%s: cannot start writing: %s", path,
                            e ? strerror(e) : "out of memory");
    }
    gzbuffer(gz, 1 << 20);
    static const char ext[4] = {0, 0, 0, 0}; /* no header extensions */
    const char *what = NULL;
    errno = 0;
    if (write_all(gz, &hdr, sizeof hdr) != 0 || write_all(gz, ext, sizeof ext) != 0 ||
        write_all(gz, data, nval * bpv) != 0) {
        int zerr = Z_OK;
        const char *zmsg = gz_error_text(gz, &zerr);
        what = zerr == Z_ERRNO ? strerror(errno) : zmsg;
    }
    char whatbuf[256];
    if (what) {
        snprintf(whatbuf, sizeof whatbuf, "%s", what);
        what = whatbuf;
    }
    errno = 0;
    int zc = gzclose(gz); /* flushes: a full disk may show up only here */
    if (!what && zc != Z_OK)
        what = zc == Z_ERRNO && errno ? strerror(errno) : "zlib could not finish the stream";
    if (!what && fsync(fd) != 0)
        what = strerror(errno);
    if (close(fd) != 0 && !what)
        what = strerror(errno);
    if (!what && rename(tmp, path) != 0)
        what = strerror(errno);
    if (what) {
        if (what != whatbuf) {
            snprintf(whatbuf, sizeof whatbuf, "%s", what);
            what = whatbuf;
        }
        unlink(tmp);
        return dmri_err_set(err, DMRI_EIO, "%s: write failed: %s", path, what);
    }
    return 0;
}
