/* bench_read: times dmri_image_read (inflate + convert into the final
 * buffer) on one NIfTI file and prints one JSON object. Driven by
 * bench/bench_read.py, which times nibabel on the same file in the same run.
 * usage: bench_read FILE [--repeat N]
 * The CRC-32 of the data buffer (taken after the timing) lets the driver
 * check that both readers produced the same bytes. cpu_seconds (user +
 * system, all threads) shows what the read cost when the machine is shared.
 * Set DMRI_INFLATE=zlib to time the zlib path instead of ISA-L. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <zlib.h>

#include "image.h"

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_read FILE [--repeat N]\n");
        return 2;
    }
    int repeat = 1;
    for (int i = 2; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--repeat") == 0)
            repeat = atoi(argv[i + 1]);
    if (repeat < 1)
        repeat = 1;
    double best = 0, best_cpu = 0;
    unsigned long crc = 0;
    size_t bytes = 0;
    dmri_image_t img;
    for (int r = 0; r < repeat; r++) {
        dmri_err_t err = {0};
        double t0 = now(), c0 = cpu_now();
        if (dmri_image_read(argv[1], &img, &err) != 0) {
            fprintf(stderr, "bench_read: %s\n", err.msg);
            return 1;
        }
        double dt = now() - t0, dc = cpu_now() - c0;
        if (r == 0 || dt < best) {
            best = dt;
            best_cpu = dc;
        }
        bytes = dmri_image_nvox(&img) * (size_t)img.nv * (img.store == DMRI_STORE_F32 ? 4 : 8);
        if (r == repeat - 1) {
            crc = crc32(0L, Z_NULL, 0);
            const unsigned char *p = img.data;
            for (size_t done = 0; done < bytes;) {
                size_t m = bytes - done < (1u << 30) ? bytes - done : (1u << 30);
                crc = crc32(crc, p + done, (uInt)m);
                done += m;
            }
        }
        dmri_image_close(&img);
    }
    const char *inflater = "zlib";
#ifdef DMRI_HAVE_ISAL
    const char *e = getenv("DMRI_INFLATE");
    if (!(e && strcmp(e, "zlib") == 0))
        inflater = "isal";
#endif
    printf("{\"seconds\": %.4f, \"cpu_seconds\": %.4f, \"bytes\": %zu, \"crc32\": %lu, "
           "\"inflate\": \"%s\"}\n",
           best, best_cpu, bytes, crc, inflater);
    return 0;
}
