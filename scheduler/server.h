/* server: the ZeroMQ shell of dmri-scheduler — the ROUTER socket on port
 * 8786, the DEALER sockets to workers' peer sockets (for relaying results to
 * clients), the poll loop, timers and signals. All decisions are taken by
 * sched.h; this module only decodes, delivers and sends. It also publishes a
 * snapshot of the state to the HTTP dashboard (dashboard.h) 4 times a second. */
#ifndef DMRI_SERVER_H
#define DMRI_SERVER_H

#include "dmri_err.h"
#include "sched_state.h"

typedef struct {
    const char *host;        /* bind address ("127.0.0.1", "0.0.0.0", an IP) */
    int port;                /* 8786 */
    const char *pid_file;    /* written once listening; NULL for none */
    const char *port_file;   /* the bound port, written once listening (tests) */
    const char *state_dir;   /* --state-dir: the crash journal lives here; NULL for none */
    int quiet;               /* no log lines */
    int64_t max_msg;         /* ZMQ_MAXMSGSIZE of port 8786 (DMRI_PROTO_DEFAULT_MAX_MSG) */
    int64_t max_chunk;       /* ... of the sockets fetching chunks from workers */
    int dashboard_port;      /* HTTP status page (8787); 0: none, -1: any free port */
    const char *dashboard_port_file; /* its port, written once listening (tests) */
    const char *keys_dir;    /* --keys: CURVE keys (proto/auth.h); NULL: no authentication */
    dmri_sched_opts_t sched;
} dmri_server_opts_t;

void dmri_server_opts_default(dmri_server_opts_t *o);

/* Runs until SIGTERM/SIGINT; returns 0 on a clean shutdown, else an error
 * (e.g. the port is taken) with err filled. */
int dmri_server_run(const dmri_server_opts_t *o, dmri_err_t *err);

#endif
