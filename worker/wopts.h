/* wopts: the command line of dmri-worker as a plain struct — parsing,
 * defaults and the help text, kept apart from the daemon so they can be
 * tested alone. */
#ifndef DMRI_WOPTS_H
#define DMRI_WOPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "subject_s3.h"

#define DMRI_WORKER_DEFAULT_PORT 8786

typedef struct {
    char sched_host[1024];   /* host part of the scheduler argument (no brackets) */
    int sched_port;          /* 8786 unless given */
    char sched_endpoint[1100]; /* "tcp://HOST:PORT" (IPv6 hosts in brackets) */
    char name[256];          /* --name, default hostname-pid */
    int nthreads;            /* --nthreads, default all cores */
    int prefetch;            /* --prefetch: tasks asked for beyond free threads (1) */
    uint64_t memory_limit;   /* --memory-limit in bytes (auto: 80% of RAM) */
    const char *spill_dir;   /* --spill-dir, NULL: /tmp */
    const char *listen;      /* --listen as given, NULL: the routed address */
    const char *data_dir;    /* --data-dir, default $DMRI_DATA_DIR or "." */
    const char *pid_file;    /* --pid-file or NULL */
    const char *log_file;    /* --log-file or NULL (stderr) */
    const char *keys_dir;    /* --keys DIR: CURVE keys (proto/auth.h); NULL: none */
    char cert[1400];         /* --cert FILE, default DIR/certs/NAME.cert with --keys; "" without */
    int use_s3;              /* --s3 (or any S3 option): ids not on disk come from S3 */
    dmri_s3_source_t s3;     /* --bucket, --s3-prefix, --profile, --s3-cache... */
    uint64_t max_msg;        /* --max-message-size: frames on the peer socket */
    uint64_t max_chunk;      /* --max-chunk-size: frames arriving from peers */
} dmri_wopts_t;

/* Parse argv. Returns 0 to run, 1 when --help/--version was printed (exit
 * 0), 2 on a usage error (message naming the argument printed to `errf`). */
int dmri_wopts_parse(dmri_wopts_t *o, int argc, char **argv, FILE *outf, FILE *errf);

/* "512M", "2G", "1048576", "auto" -> bytes. Returns 0 or -1. `auto` is 80%
 * of physical memory. */
int dmri_wopts_parse_size(const char *s, uint64_t *out);

/* "host", "host:port", "tcp://host:port", "[::1]:port" -> host, port
 * (default_port when absent). Returns 0 or -1. */
int dmri_wopts_parse_hostport(const char *s, int default_port, char *host, size_t hostsz,
                              int *port);

/* "tcp://HOST:PORT" with IPv6 hosts bracketed. */
void dmri_wopts_endpoint(char *out, size_t outsz, const char *host, const char *port);

void dmri_wopts_usage(FILE *f);

#endif
