/* dmri-keygen: makes a cluster's CURVE keys — the cluster key pair and one
 * certificate per member named — in the folder layout of proto/auth.h. */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "pipeline_version.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dmri-keygen DIR [--cert NAME]...\n"
            "\n"
            "Creates DIR (mode 0700) with the cluster's CURVE key pair, unless it is there\n"
            "already, and one certificate per --cert NAME (a worker, a user):\n"
            "  DIR/cluster.pub          public key of the cluster      -> everyone\n"
            "  DIR/cluster.secret       cluster key pair (0600)        -> scheduler, workers\n"
            "  DIR/authorized/NAME.pub  public keys admitted           -> scheduler, workers\n"
            "  DIR/certs/NAME.cert      NAME's key pair (0600)         -> NAME only\n"
            "Run it again with new names to add members; remove authorized/NAME.pub and\n"
            "restart the scheduler and workers to revoke one. Existing files are never\n"
            "overwritten. Then: dmri-scheduler --keys DIR, dmri-worker --keys DIR --name\n"
            "NAME (or --cert FILE), dmri-submit --keys DIR --cert FILE.\n");
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    char *names[1024];
    int nnames = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("dmri-keygen %s\n", dmri_version());
            return 0;
        } else if (strcmp(a, "--cert") == 0 || strncmp(a, "--cert=", 7) == 0) {
            char *v = a[6] == '=' ? argv[i] + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "dmri-keygen: --cert needs a NAME\n");
                return 2;
            }
            if (nnames == (int)(sizeof names / sizeof names[0])) {
                fprintf(stderr, "dmri-keygen: too many --cert (at most 1024 per run)\n");
                return 2;
            }
            names[nnames++] = v;
        } else if (a[0] == '-') {
            fprintf(stderr, "dmri-keygen: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (dir) {
            fprintf(stderr, "dmri-keygen: unexpected argument '%s' (one DIR)\n", a);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    dmri_err_t err = {0};
    if (dmri_auth_keygen(dir, names, nnames, &err) != 0) {
        fprintf(stderr, "dmri-keygen: %s\n", err.msg);
        return 1;
    }
    printf("dmri-keygen: keys in %s (%d certificate%s added)\n", dir, nnames,
           nnames == 1 ? "" : "s");
    return 0;
}
