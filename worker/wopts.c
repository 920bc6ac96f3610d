/* wopts: dmri-worker's command line (see wopts.h). */
#include "wopts.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport.h"

#include "pipeline_version.h"

void dmri_wopts_usage(FILE *f) {
    fprintf(f,
            "usage: dmri-worker [options] SCHEDULER\n"
            "\n"
            "Joins a dmri cluster: registers with the scheduler at SCHEDULER (HOST,\n"
            "HOST:PORT or tcp://HOST:PORT; port %d when omitted), asks it for tasks,\n"
            "runs them on a pool of threads, keeps their output chunks in memory\n"
            "(spilling to disk above --memory-limit) and serves them to other workers\n"
            "on its peer socket.\n"
            "\n"
            "options:\n"
            "  --name NAME           name shown by the scheduler (default: HOSTNAME-PID)\n"
            "  --nthreads N          compute threads (default: all cores)\n"
            "  --prefetch N          tasks asked for beyond the free threads, so the next\n"
            "                        task's inputs arrive while one runs (default 1)\n"
            "  --memory-limit SIZE   bytes of chunks kept in memory before spilling:\n"
            "                        a number with an optional K, M, G or T suffix\n"
            "                        (powers of 1024), or 'auto' = 80%% of physical\n"
            "                        memory (default: auto)\n"
            "  --spill-dir DIR       spill chunks into a private folder created in DIR\n"
            "                        and removed at exit (default: /tmp)\n"
            "  --listen ADDR         peer socket: tcp://HOST:PORT, HOST:PORT or HOST\n"
            "                        (PORT may be *; default: an ephemeral port on the\n"
            "                        local address that routes to the scheduler)\n"
            "  --data-dir DIR        where subject ids are looked up, as for dmri-run\n"
            "                        (default: $DMRI_DATA_DIR or .)\n"
            DMRI_S3_OPTIONS_HELP
            "  --pid-file FILE       write the process id to FILE once listening;\n"
            "                        removed at exit\n"
            "  --log-file FILE       append the log to FILE instead of stderr\n"
            "  --max-message-size SIZE  largest frame accepted on the peer socket and\n"
            "                        from the scheduler; a peer sending more is\n"
            "                        disconnected (default 16M)\n"
            "  --max-chunk-size SIZE largest chunk accepted from another worker\n"
            "                        (default 1G; raise it with a coarser chunking)\n"
            "  --keys DIR            CURVE authentication and encryption with the keys of\n"
            "                        dmri-keygen: DIR/cluster.secret (0600; the peer\n"
            "                        socket serves with it), DIR/authorized/*.pub\n"
            "  --cert FILE           this worker's certificate (default, with --keys:\n"
            "                        DIR/certs/NAME.cert, NAME as --name)\n"
            "  --version, --help\n"
            "\n"
            "The worker logs one timestamped line per notable event. It exits 0 on\n"
            "SIGTERM/SIGINT (after telling the scheduler) or when the scheduler says\n"
            "BYE, 1 when the scheduler refuses it or on a fatal error, 2 on usage errors.\n",
            DMRI_WORKER_DEFAULT_PORT);
}

int dmri_wopts_parse_size(const char *s, uint64_t *out) {
    if (strcmp(s, "auto") == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages <= 0 || psz <= 0)
            return -1;
        *out = (uint64_t)((double)pages * (double)psz * 0.8);
        return 0;
    }
    if (!isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0))
        return -1;
    double mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024.0; end++; break;
    case 'M': mult = 1024.0 * 1024; end++; break;
    case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (end[0] == 'i' || end[0] == 'I') && (end[1] == 'B' || end[1] == 'b'))
        end += 2;
    else if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0')
        return -1;
    double bytes = floor(v * mult);
    if (bytes >= 18446744073709551615.0)
        return -1;
    *out = (uint64_t)bytes;
    return 0;
}

int dmri_wopts_parse_hostport(const char *s, int default_port, char *host, size_t hostsz,
                              int *port) {
    if (strncmp(s, "tcp://", 6) == 0)
        s += 6;
    const char *hend, *rest;
    if (s[0] == '[') { /* [v6addr]:port */
        const char *close = strchr(s, ']');
        if (!close || close == s + 1)
            return -1;
        s++;
        hend = close;
        rest = close + 1;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) { /* a bare IPv6 address: no port */
            struct in6_addr a6;
            if (inet_pton(AF_INET6, s, &a6) != 1)
                return -1;
            hend = s + strlen(s);
            rest = hend;
        } else {
            hend = colon ? colon : s + strlen(s);
            rest = hend;
        }
    }
    size_t hl = (size_t)(hend - s);
    if (hl == 0 || hl >= hostsz)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if (isspace((unsigned char)s[i]) || s[i] == '/')
            return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (*rest == '\0') {
        *port = default_port;
        return 0;
    }
    if (*rest != ':')
        return -1;
    rest++;
    if (strcmp(rest, "*") == 0) {
        *port = 0;
        return 0;
    }
    char *end;
    errno = 0;
    long p = strtol(rest, &end, 10);
    if (errno || end == rest || *end != '\0' || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

void dmri_wopts_endpoint(char *out, size_t outsz, const char *host, const char *port) {
    if (strchr(host, ':'))
        snprintf(out, outsz, "tcp://[%s]:%s", host, port);
    else
        snprintf(out, outsz, "tcp://%s:%s", host, port);
}

static int bad(FILE *errf, const char *opt, const char *why, const char *val) {
    fprintf(errf, "dmri-worker: %s: %s, got '%s'\nTry 'dmri-worker --help'.\n", opt, why, val);
    return 2;
}

int dmri_wopts_parse(dmri_wopts_t *o, int argc, char **argv, FILE *outf, FILE *errf) {
    memset(o, 0, sizeof *o);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o->nthreads = ncpu > 0 ? (int)ncpu : 1;
    if (dmri_wopts_parse_size("auto", &o->memory_limit) != 0)
        o->memory_limit = 0;
    o->data_dir = getenv("DMRI_DATA_DIR");
    if (!o->data_dir || !*o->data_dir)
        o->data_dir = ".";
    char hostname[200] = "worker";
    if (gethostname(hostname, sizeof hostname) != 0 || !hostname[0])
        snprintf(hostname, sizeof hostname, "worker");
    hostname[sizeof hostname - 1] = '\0';
    snprintf(o->name, sizeof o->name, "%s-%ld", hostname, (long)getpid());

    o->prefetch = 1;
    o->max_msg = (uint64_t)DMRI_PROTO_DEFAULT_MAX_MSG;
    o->max_chunk = (uint64_t)DMRI_PROTO_DEFAULT_MAX_CHUNK;
    enum { OPT_NAME = 256, OPT_NTHREADS, OPT_PREFETCH, OPT_MEM, OPT_SPILL, OPT_LISTEN, OPT_DATA, OPT_PID,
           OPT_LOG, OPT_MAXMSG, OPT_MAXCHUNK, OPT_VERSION, OPT_HELP, OPT_S3, OPT_KEYS, OPT_CERT };
    static const struct option longopts[] = {
        {"name", required_argument, 0, OPT_NAME},
        {"nthreads", required_argument, 0, OPT_NTHREADS},
        {"prefetch", required_argument, 0, OPT_PREFETCH},
        {"memory-limit", required_argument, 0, OPT_MEM},
        {"spill-dir", required_argument, 0, OPT_SPILL},
        {"listen", required_argument, 0, OPT_LISTEN},
        {"data-dir", required_argument, 0, OPT_DATA},
        {"pid-file", required_argument, 0, OPT_PID},
        {"log-file", required_argument, 0, OPT_LOG},
        {"max-message-size", required_argument, 0, OPT_MAXMSG},
        {"max-chunk-size", required_argument, 0, OPT_MAXCHUNK},
        {"keys", required_argument, 0, OPT_KEYS},
        {"cert", required_argument, 0, OPT_CERT},
        {"version", no_argument, 0, OPT_VERSION},
        {"help", no_argument, 0, OPT_HELP},
        DMRI_S3_LONGOPTS(OPT_S3),
        {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    o->s3.retries = -1;
    int c, li = -1;
    while ((c = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
        switch (c) {
        case OPT_S3: {
            dmri_err_t e = {0};
            if (dmri_s3_source_option(&o->s3, &o->use_s3, longopts[li].name, optarg, &e) != 0) {
                fprintf(errf, "dmri-worker: %s\n", e.msg);
                return 2;
            }
            break;
        }
        case OPT_NAME:
            if (!optarg[0] || strlen(optarg) >= sizeof o->name)
                return bad(errf, "--name", "expected 1 to 255 characters", optarg);
            snprintf(o->name, sizeof o->name, "%s", optarg);
            break;
        case OPT_NTHREADS: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 4096)
                return bad(errf, "--nthreads", "expected an integer from 1 to 4096", optarg);
            o->nthreads = (int)v;
            break;
        }
        case OPT_PREFETCH: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 1000)
                return bad(errf, "--prefetch", "expected an integer from 0 to 1000", optarg);
            o->prefetch = (int)v;
            break;
        }
        case OPT_MEM:
            if (dmri_wopts_parse_size(optarg, &o->memory_limit) != 0)
                return bad(errf, "--memory-limit",
                           "expected bytes with an optional K/M/G/T suffix, or 'auto'", optarg);
            break;
        case OPT_SPILL:
            if (!optarg[0])
                return bad(errf, "--spill-dir", "expected a folder", optarg);
            o->spill_dir = optarg;
            break;
        case OPT_LISTEN: {
            char h[1024];
            int p;
            if (strncmp(optarg, "tcp://", 6) != 0 &&
                dmri_wopts_parse_hostport(optarg, 0, h, sizeof h, &p) != 0)
                return bad(errf, "--listen", "expected tcp://HOST:PORT, HOST:PORT or HOST",
                           optarg);
            o->listen = optarg;
            break;
        }
        case OPT_DATA: o->data_dir = optarg; break;
        case OPT_PID: o->pid_file = optarg; break;
        case OPT_LOG: o->log_file = optarg; break;
        case OPT_MAXMSG:
            /* below 4 KiB even a HELLO or a TASK_ASSIGN could be cut off */
            if (dmri_wopts_parse_size(optarg, &o->max_msg) != 0 || strcmp(optarg, "auto") == 0 ||
                o->max_msg < 4096 || o->max_msg > ((uint64_t)1 << 40))
                return bad(errf, "--max-message-size",
                           "expected bytes from 4K to 1T (K/M/G/T suffix allowed)", optarg);
            break;
        case OPT_MAXCHUNK:
            if (dmri_wopts_parse_size(optarg, &o->max_chunk) != 0 ||
                strcmp(optarg, "auto") == 0 || o->max_chunk < 4096 ||
                o->max_chunk > ((uint64_t)1 << 40))
                return bad(errf, "--max-chunk-size",
                           "expected bytes from 4K to 1T (K/M/G/T suffix allowed)", optarg);
            break;
        case OPT_KEYS:
            if (!optarg[0] || strlen(optarg) > 1000)
                return bad(errf, "--keys", "expected the folder of dmri-keygen", optarg);
            o->keys_dir = optarg;
            break;
        case OPT_CERT:
            if (!optarg[0] || strlen(optarg) >= sizeof o->cert)
                return bad(errf, "--cert", "expected a certificate file", optarg);
            snprintf(o->cert, sizeof o->cert, "%s", optarg);
            break;
        case OPT_VERSION: fprintf(outf, "dmri-worker %s\n", dmri_version()); return 1;
        case 'h':
        case OPT_HELP: dmri_wopts_usage(outf); return 1;
        default:
            fprintf(errf, "dmri-worker: unknown option or missing value: '%s'\n"
                          "Try 'dmri-worker --help'.\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(errf, "dmri-worker: SCHEDULER: missing (e.g. dmri-worker head-node:%d)\n"
                      "Try 'dmri-worker --help'.\n", DMRI_WORKER_DEFAULT_PORT);
        return 2;
    }
    if (optind + 1 < argc) {
        fprintf(errf, "dmri-worker: unexpected argument '%s' (only one SCHEDULER)\n"
                      "Try 'dmri-worker --help'.\n", argv[optind + 1]);
        return 2;
    }
    if (o->cert[0] && !o->keys_dir) {
        fprintf(errf, "dmri-worker: --cert needs --keys DIR (the cluster's keys)\n");
        return 2;
    }
    if (o->keys_dir && !o->cert[0])
        snprintf(o->cert, sizeof o->cert, "%s/certs/%s.cert", o->keys_dir, o->name);
    const char *sched = argv[optind];
    if (dmri_wopts_parse_hostport(sched, DMRI_WORKER_DEFAULT_PORT, o->sched_host,
                                  sizeof o->sched_host, &o->sched_port) != 0 ||
        o->sched_port == 0)
        return bad(errf, "SCHEDULER", "expected HOST, HOST:PORT or tcp://HOST:PORT", sched);
    char port[16];
    snprintf(port, sizeof port, "%d", o->sched_port);
    dmri_wopts_endpoint(o->sched_endpoint, sizeof o->sched_endpoint, o->sched_host, port);
    return 0;
}
