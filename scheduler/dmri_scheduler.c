/* dmri-scheduler: the cluster's head daemon (replaces dask-scheduler). It owns
 * the task graphs of all submitted subjects and decides placement; workers do
 * the science, clients submit and receive results — all through one port. */
#include <getopt.h>
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
            "  --worker-timeout S     a silent worker is dead after S seconds (default 5)\n"
            "  --client-timeout S     a silent client is gone after S seconds (default 60)\n"
            "  --slab-slices N        NL-means/fit chunk thickness in z (default 16)\n"
            "  --vols-per-task N      volumes per NL-means task (default 8)\n"
            "  --quiet                no log lines\n"
            "  --version, --help\n"
            "Stops cleanly on SIGTERM/SIGINT, telling workers and clients.\n");
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
    enum { O_HOST = 256, O_PORT, O_PID, O_PORTFILE, O_WT, O_CT, O_SLAB, O_VPT, O_QUIET, O_VER,
           O_HELP, O_KEYS };
    static const struct option opts[] = {{"host", required_argument, 0, O_HOST},
                                         {"port", required_argument, 0, O_PORT},
                                         {"pid-file", required_argument, 0, O_PID},
                                         {"port-file", required_argument, 0, O_PORTFILE},
                                         {"worker-timeout", required_argument, 0, O_WT},
                                         {"client-timeout", required_argument, 0, O_CT},
                                         {"slab-slices", required_argument, 0, O_SLAB},
                                         {"vols-per-task", required_argument, 0, O_VPT},
                                         {"quiet", no_argument, 0, O_QUIET},
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
