/* auth: ZeroMQ CURVE authentication and encryption for the cluster — the key
 * files written by dmri-keygen (Z85 text, see README "Security"), the ZAP
 * handler that admits only authorized client keys and logs refusals with the
 * peer's address, the per-socket CURVE options, and a handshake monitor so a
 * connecting side can tell "refused" from "nobody there".
 *
 * Key folder (dmri-keygen DIR --cert NAME ...):
 *   DIR/cluster.pub         the cluster's public key (everyone needs it)
 *   DIR/cluster.secret      the cluster's key pair, mode 0600: scheduler and
 *                           workers (the servers of port 8786 and of the
 *                           workers' peer sockets) only
 *   DIR/authorized/N.pub    public keys admitted to the cluster
 *   DIR/certs/N.cert        member N's key pair, mode 0600: for N only
 * A key file is lines "public = Z85" and "secret = Z85" (40 Z85 characters,
 * zmq_z85_encode of 32 bytes); '#' starts a comment line. */
#ifndef DMRI_AUTH_H
#define DMRI_AUTH_H

#include <stddef.h>

#include "dmri_err.h"

#define DMRI_AUTH_Z85_LEN 40

typedef enum {
    DMRI_AUTH_SCHEDULER, /* cluster.secret + authorized/; connects out with the cluster pair */
    DMRI_AUTH_WORKER,    /* cluster.secret + authorized/ + its own certificate */
    DMRI_AUTH_CLIENT     /* cluster.pub + its own certificate */
} dmri_auth_role_t;

typedef struct dmri_auth dmri_auth_t;

/* Called from the ZAP thread with one line (no newline) for each refusal
 * that is not rate-limited away; must be thread-safe. */
typedef void (*dmri_auth_log_fn)(void *ctx, const char *line);

/* Load what `role` needs from `dir`; `cert` is the member certificate file
 * (workers, clients; ignored for the scheduler). A file holding a secret key
 * that is readable by group or others is refused, as ssh does. Returns 0
 * with *out set, or DMRI_EIO/DMRI_EFORMAT with err naming the file. */
int dmri_auth_load(dmri_auth_t **out, dmri_auth_role_t role, const char *dir, const char *cert,
                   dmri_err_t *err);
/* Safe on NULL and twice. The ZAP thread (if started) must have left: call
 * after zmq_ctx_term of the context it was started on. */
void dmri_auth_destroy(dmri_auth_t **a);

/* Number of authorized keys (the cluster key included). */
size_t dmri_auth_nauthorized(const dmri_auth_t *a);

/* Start the ZAP handler (a REP socket on inproc://zeromq.zap.01 in a thread)
 * in context `zctx`; call before binding any server socket of that context.
 * At most `burst` refusal lines per 10 s are logged, then a count of those
 * left out. Returns 0 or DMRI_EIO. */
int dmri_auth_start(dmri_auth_t *a, void *zctx, dmri_auth_log_fn log, void *log_ctx,
                    dmri_err_t *err);

/* Make `sock` a CURVE server with the cluster key pair (it then needs the ZAP
 * handler, and refuses every client if none runs). a == NULL: no-op. */
int dmri_auth_server_setup(void *sock, const dmri_auth_t *a, dmri_err_t *err);
/* Make `sock` a CURVE client of the cluster with this member's key pair (the
 * scheduler uses the cluster pair). a == NULL: no-op. */
int dmri_auth_client_setup(void *sock, const dmri_auth_t *a, dmri_err_t *err);

/* Key files. Write a fresh key pair: `secret_path` (public + secret, mode
 * 0600, created exclusively) and `public_path` (public only, 0644). Either
 * may be NULL. Refuses to overwrite. */
int dmri_auth_write_keypair(const char *secret_path, const char *public_path, dmri_err_t *err);
/* Read a key file: public (and secret when `secret` != NULL, which then must
 * be present and the file private), 32 bytes each. */
int dmri_auth_read_keyfile(const char *path, unsigned char public_key[32],
                           unsigned char *secret, dmri_err_t *err);

/* The whole of dmri-keygen: create DIR (0700) if needed, the cluster key
 * pair unless it exists, and for each name a certificate and its public key
 * in authorized/ (a name that exists already is an error). Names: letters,
 * digits, '.', '_', '-'. Returns 0 or an error naming the file. */
int dmri_auth_keygen(const char *dir, char **names, int nnames, dmri_err_t *err);

/* Handshake monitor of a connecting socket: tells when the other side
 * refused our certificate or speaks another security mechanism. */
typedef struct dmri_auth_monitor dmri_auth_monitor_t;
dmri_auth_monitor_t *dmri_auth_monitor_new(void *zctx, void *sock, dmri_err_t *err);
/* Non-blocking. Returns 2 when the handshake failed for good (certificate
 * refused: ZAP status 400; or a security mechanism mismatch: keys on one side
 * only), 1 for another handshake failure (e.g. wrong cluster public key),
 * 0 when nothing happened; `why` gets a sentence for the user. */
int dmri_auth_monitor_check(dmri_auth_monitor_t *m, char *why, size_t whysz);
/* Close the monitor (before the monitored socket). Safe on NULL, twice. */
void dmri_auth_monitor_destroy(dmri_auth_monitor_t **m);

#endif
