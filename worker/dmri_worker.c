/* dmri-worker: a compute node of the dmri cluster (the counterpart of
 * `dask-worker SCHEDULER:8786`). Parses the command line and runs the
 * daemon (worker.h). Exit 0 on SIGTERM/SIGINT or the scheduler's BYE, 1 when
 * refused or on a fatal error, 2 on usage errors. */
#include "proto.h"
#include <stdlib.h>
#include <stdio.h>

#include "wopts.h"
#include "worker.h"

int main(int argc, char **argv) {
    dmri_wopts_t o;
    int rc = dmri_wopts_parse(&o, argc, argv, stdout, stderr);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return 2;
    /* Test hook: speak another protocol version, to check that the
     * scheduler refuses it with a message on both sides. */
    const char *pv = getenv("DMRI_TEST_PROTOCOL_VERSION");
    if (pv && atoi(pv) > 0)
        dmri_proto_set_send_version(atoi(pv));
    return dmri_worker_run(&o);
}
