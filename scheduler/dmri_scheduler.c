/* dmri-scheduler: the cluster's head daemon (replaces dask-scheduler). It owns
 * the task graphs of all submitted subjects and decides placement; workers do
 * the science, clients submit and receive results — all through one port. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_version.h"
#include "server.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dmri-scheduler [options]\n"
            "\n"
            "options:\n"
            "  --host ADDR            address to listen on (default 127.0.0.1: loopback only;\n"
            "                         0.0.0.0 for workers on other machines)\n"
            "  --port N               port for workers and clients (default 8786; 0: any free)\n"
            "  --keys DIR             CURVE authentication and encryption with the keys\n"
            "                         of dmri-keygen DIR: needs DIR/cluster.secret (0600)\n"
            "                         and DIR/authorized/*.pub (the members admitted)\n"
            "  --pid-file F           write the pid to F while running\n"
            "  --port-file F          write the bound port to F once listening\n"
            "  --dashboard-port N     HTTP status page, /api/status, /metrics, /health on the\n"
            "                         --host address (default 8787; 0: none; -1: any free port);\n"
            "                         a taken port is a warning, not an error\n"
            "  --dashboard-port-file F  write the status page's port to F once listening\n"
            "  --worker-timeout S     a silent worker is dead after S seconds (default 5)\n"
            "  --client-timeout S     a silent client is gone after S seconds (default 60)\n"
            "  --slab-slices N        NL-means/fit chunk thickness in z (default 16)\n"
            "  --vols-per-task N      volumes per NL-means task (default 8)\n"
            "  --state-dir DIR        journal submitted subjects in DIR: after a crash and\n"
            "                         a restart with the same DIR, clients resume their\n"
            "                         unfinished subjects and job ids are never reused\n"
            "  --max-message-size SIZE  largest frame accepted on the port; a peer sending\n"
            "                         more is disconnected (default 16M; K/M/G suffixes)\n"
            "  --max-chunk-size SIZE  largest chunk accepted from a worker when relaying\n"
            "                         results (default 1G)\n"
            "  --max-pending-per-client N  unfinished subjects per client; a SUBMIT over\n"
            "                         it fails that subject (default 2048; 0: no limit)\n"
            "  --max-malformed N      malformed messages within --malformed-window that\n"
            "                         make the scheduler drop a peer and ignore it for\n"
            "                         --malformed-ban seconds (default 100; 0: never)\n"
            "  --malformed-window S   (default 10)\n"
            "  --malformed-ban S      (default 60)\n"
            "  --quiet                no log lines\n"
            "  --version, --help\n"
            "Stops cleanly on SIGTERM/SIGINT, telling workers and clients.\n");
}

/* "16M", "1G", "65536" -> bytes in [lo, hi]. */
static int size_arg(const char *opt, const char *s, double lo, double hi, int64_t *out) {
    char *end;
    double v = strtod(s, &end);
    double mult = 1;
    if (*end == 'K') mult = 1024.0, end++;
    else if (*end == 'M') mult = 1048576.0, end++;
    else if (*end == 'G') mult = 1073741824.0, end++;
    v *= mult;
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "dmri-scheduler: %s: expected bytes in [%.0f, %.0f] (K/M/G suffixes), "
                "got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int num(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "dmri-scheduler: %s: expected a number in [%g, %g], got '%s'\n", opt, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    dmri_server_opts_t o;
    dmri_server_opts_default(&o);
    enum { O_HOST = 256, O_PORT, O_PID, O_PORTFILE, O_WT, O_CT, O_SLAB, O_VPT, O_QUIET, O_DPORT,
           O_DPORTFILE, O_VER, O_HELP, O_STATE, O_MAXMSG, O_MAXCHUNK, O_MAXPEND, O_MAXBAD, O_BADWIN,
           O_BADBAN, O_KEYS };
    static const struct option opts[] = {{"host", required_argument, 0, O_HOST},
                                         {"port", required_argument, 0, O_PORT},
                                         {"pid-file", required_argument, 0, O_PID},
                                         {"port-file", required_argument, 0, O_PORTFILE},
                                         {"dashboard-port", required_argument, 0, O_DPORT},
                                         {"dashboard-port-file", required_argument, 0,
                                          O_DPORTFILE},
                                         {"worker-timeout", required_argument, 0, O_WT},
                                         {"client-timeout", required_argument, 0, O_CT},
                                         {"slab-slices", required_argument, 0, O_SLAB},
                                         {"vols-per-task", required_argument, 0, O_VPT},
                                         {"quiet", no_argument, 0, O_QUIET},
                                         {"state-dir", required_argument, 0, O_STATE},
                                         {"max-message-size", required_argument, 0, O_MAXMSG},
                                         {"max-chunk-size", required_argument, 0, O_MAXCHUNK},
                                         {"max-pending-per-client", required_argument, 0,
                                          O_MAXPEND},
                                         {"max-malformed", required_argument, 0, O_MAXBAD},
                                         {"malformed-window", required_argument, 0, O_BADWIN},
                                         {"malformed-ban", required_argument, 0, O_BADBAN},
                                         {"keys", required_argument, 0, O_KEYS},
                                         {"version", no_argument, 0, O_VER},
                                         {"help", no_argument, 0, O_HELP},
                                         {0, 0, 0, 0}};
    int c;
    double v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_HOST: o.host = optarg; break;
        case O_PORT:
            if (num("--port", optarg, 0, 65535, &v)) return 2;
            o.port = (int)v;
            break;
        case O_PID: o.pid_file = optarg; break;
        case O_PORTFILE: o.port_file = optarg; break;
        case O_DPORT:
            if (num("--dashboard-port", optarg, -1, 65535, &v)) return 2;
            o.dashboard_port = (int)v;
            break;
        case O_DPORTFILE: o.dashboard_port_file = optarg; break;
        case O_WT:
            if (num("--worker-timeout", optarg, 0.2, 86400, &v)) return 2;
            o.sched.worker_timeout = v;
            break;
        case O_CT:
            if (num("--client-timeout", optarg, 0.2, 86400, &v)) return 2;
            o.sched.client_timeout = v;
            break;
        case O_SLAB:
            if (num("--slab-slices", optarg, 1, 100000, &v)) return 2;
            o.sched.slab_slices = (int)v;
            break;
        case O_VPT:
            if (num("--vols-per-task", optarg, 1, 100000, &v)) return 2;
            o.sched.vols_per_task = (int)v;
            break;
        case O_QUIET: o.quiet = 1; break;
        case O_STATE: o.state_dir = optarg; break;
        /* below 4 KiB even a HELLO or TASK_DONE could be cut off */
        case O_MAXMSG:
            if (size_arg("--max-message-size", optarg, 4096, 1099511627776.0, &o.max_msg)) return 2;
            break;
        case O_MAXCHUNK:
            if (size_arg("--max-chunk-size", optarg, 4096, 1099511627776.0, &o.max_chunk)) return 2;
            break;
        case O_MAXPEND:
            if (num("--max-pending-per-client", optarg, 0, 1e9, &v)) return 2;
            o.sched.max_pending_per_client = (int)v;
            break;
        case O_MAXBAD:
            if (num("--max-malformed", optarg, 0, 1e9, &v)) return 2;
            o.sched.max_malformed = (int)v;
            break;
        case O_BADWIN:
            if (num("--malformed-window", optarg, 0.1, 86400, &v)) return 2;
            o.sched.malformed_window = v;
            break;
        case O_BADBAN:
            if (num("--malformed-ban", optarg, 0, 86400 * 30, &v)) return 2;
            o.sched.malformed_ban = v;
            break;
        case O_KEYS: o.keys_dir = optarg; break;
        case O_VER: printf("dmri-scheduler %s\n", dmri_version()); return 0;
        case 'h':
        case O_HELP: usage(stdout); return 0;
        default:
            fprintf(stderr, "dmri-scheduler: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dmri-scheduler: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    dmri_err_t err = {0};
    if (dmri_server_run(&o, &err) != 0) {
        fprintf(stderr, "dmri-scheduler: %s\n", err.msg);
        return 1;
    }
    return 0;
}
