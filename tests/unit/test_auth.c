/* test_auth: CURVE keys and the ZAP handler over real TCP sockets on
 * 127.0.0.1 — an authorized certificate gets through, an unknown one and a
 * socket without CURVE are refused (the connecting side's monitor says so,
 * the server logs the address, rate-limited), and key files are checked
 * (private modes, format, matching pair). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "auth.h"
#include "check.h"

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[16384];
static int log_refusals;

static void on_log(void *ctx, const char *line) {
    (void)ctx;
    pthread_mutex_lock(&log_mu);
    if (strncmp(line, "refused connection from ", 24) == 0)
        log_refusals++;
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}

static int refusals(void) {
    pthread_mutex_lock(&log_mu);
    int n = log_refusals;
    pthread_mutex_unlock(&log_mu);
    return n;
}

/* Wait up to `ms` for a message on the ROUTER: 1 if one came. */
static int router_got(void *router, int ms) {
    zmq_pollitem_t it = {router, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0)
        return 0;
    zmq_msg_t m;
    int more = 1;
    while (more) {
        zmq_msg_init(&m);
        zmq_msg_recv(&m, router, 0);
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return 1;
}

/* Poll the monitor for up to `ms`; returns its verdict (0 if none). */
static int monitor_wait(dmri_auth_monitor_t *m, int ms, char *why, size_t n) {
    for (int t = 0; t < ms; t += 20) {
        int v = dmri_auth_monitor_check(m, why, n);
        if (v)
            return v;
        usleep(20000);
    }
    return 0;
}

/* A DEALER set up as `a` (NULL: no CURVE) connected to `ep`. */
static void *dealer(void *ctx, const dmri_auth_t *a, const char *ep, dmri_auth_monitor_t **mon) {
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    dmri_err_t err = {0};
    CHECK_INT(dmri_auth_client_setup(d, a, &err), 0);
    *mon = dmri_auth_monitor_new(ctx, d, &err);
    CHECK(*mon != NULL);
    CHECK_INT(zmq_connect(d, ep), 0);
    zmq_send(d, "hello", 5, ZMQ_DONTWAIT);
    return d;
}

static void close_dealer(void **d, dmri_auth_monitor_t **mon) {
    dmri_auth_monitor_destroy(mon);
    zmq_close(*d);
    *d = NULL;
}

static void write_text(const char *path, const char *text, mode_t mode) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

int main(void) {
    char base[] = "/tmp/dmri-test-auth-XXXXXX", dir[100], path[512], other[512];
    if (!mkdtemp(base))
        return 1;
    snprintf(dir, sizeof dir, "%s/keys", base);
    dmri_err_t err = {0};
    char *names[] = {"alice", "w1"};
    CHECK_INT(dmri_auth_keygen(dir, names, 2, &err), 0);
    struct stat st;
    snprintf(path, sizeof path, "%s/cluster.secret", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof path, "%s/certs/alice.cert", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof path, "%s/authorized/alice.pub", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
    /* a name that exists is not overwritten; a bad name is refused */
    char *again[] = {"alice"};
    CHECK(dmri_auth_keygen(dir, again, 1, &err) != 0);
    CHECK_HAS(err, "exists already");
    char *bad[] = {"../x"};
    CHECK(dmri_auth_keygen(dir, bad, 1, &err) != 0);
    CHECK_HAS(err, "certificate name");

    dmri_auth_t *srv = NULL, *alice = NULL, *mallory = NULL;
    CHECK_INT(dmri_auth_load(&srv, DMRI_AUTH_SCHEDULER, dir, NULL, &err), 0);
    CHECK_INT(dmri_auth_nauthorized(srv), 3); /* cluster key, alice, w1 */
    snprintf(path, sizeof path, "%s/certs/alice.cert", dir);
    CHECK_INT(dmri_auth_load(&alice, DMRI_AUTH_CLIENT, dir, path, &err), 0);
    /* a valid certificate the cluster never authorized */
    snprintf(other, sizeof other, "%s/../mallory.cert", dir);
    CHECK_INT(dmri_auth_write_keypair(other, NULL, &err), 0);
    CHECK_INT(dmri_auth_load(&mallory, DMRI_AUTH_CLIENT, dir, other, &err), 0);

    void *ctx = zmq_ctx_new();
    CHECK_INT(dmri_auth_start(srv, ctx, on_log, NULL, &err), 0);
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
    CHECK_INT(dmri_auth_server_setup(router, srv, &err), 0);
    CHECK_INT(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char ep[256];
    size_t eplen = sizeof ep;
    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &eplen);

    char why[512] = "";
    dmri_auth_monitor_t *mon = NULL;
    void *d = dealer(ctx, alice, ep, &mon);
    CHECK(router_got(router, 5000));
    CHECK_INT(dmri_auth_monitor_check(mon, why, sizeof why), 0);
    close_dealer(&d, &mon);
    CHECK_INT(refusals(), 0);

    d = dealer(ctx, mallory, ep, &mon);
    CHECK_INT(monitor_wait(mon, 5000, why, sizeof why), 2);
    CHECK(strstr(why, "certificate was refused") != NULL);
    CHECK(!router_got(router, 300));
    close_dealer(&d, &mon);
    CHECK(refusals() >= 1);
    pthread_mutex_lock(&log_mu);
    CHECK(strstr(log_text, "refused connection from 127.0.0.1: unknown CURVE key") != NULL);
    pthread_mutex_unlock(&log_mu);

    d = dealer(ctx, NULL, ep, &mon); /* no CURVE at all */
    CHECK_INT(monitor_wait(mon, 5000, why, sizeof why), 2);
    CHECK(strstr(why, "security mechanisms differ") != NULL);
    CHECK(!router_got(router, 300));
    close_dealer(&d, &mon);

    /* a flood of unknown keys: refused, and at most 5 lines in 10 s */
    void *flood[10];
    dmri_auth_monitor_t *fmon[10];
    for (int i = 0; i < 10; i++)
        flood[i] = dealer(ctx, mallory, ep, &fmon[i]);
    for (int i = 0; i < 10; i++)
        CHECK_INT(monitor_wait(fmon[i], 5000, why, sizeof why), 2);
    CHECK(!router_got(router, 100));
    for (int i = 0; i < 10; i++)
        close_dealer(&flood[i], &fmon[i]);
    CHECK_INT(refusals(), 5);

    /* the authorized client still gets through afterwards */
    d = dealer(ctx, alice, ep, &mon);
    CHECK(router_got(router, 5000));
    close_dealer(&d, &mon);

    zmq_close(router);
    zmq_ctx_term(ctx); /* makes the ZAP thread leave */
    dmri_auth_destroy(&srv);
    dmri_auth_destroy(&srv); /* twice is safe */
    dmri_auth_destroy(&alice);
    dmri_auth_destroy(&mallory);

    /* key file checks */
    dmri_auth_t *x = NULL;
    snprintf(path, sizeof path, "%s/certs/alice.cert", dir);
    chmod(path, 0644);
    CHECK(dmri_auth_load(&x, DMRI_AUTH_CLIENT, dir, path, &err) != 0);
    CHECK_HAS(err, "chmod 600");
    CHECK(x == NULL);
    chmod(path, 0600);
    snprintf(path, sizeof path, "%s/cluster.secret", dir);
    chmod(path, 0640);
    CHECK(dmri_auth_load(&x, DMRI_AUTH_SCHEDULER, dir, NULL, &err) != 0);
    CHECK_HAS(err, "readable by group or others");
    chmod(path, 0600);
    CHECK(dmri_auth_load(&x, DMRI_AUTH_WORKER, dir, NULL, &err) != 0);
    CHECK_HAS(err, "--cert");
    snprintf(path, sizeof path, "%s/../bad.cert", dir);
    write_text(path, "public = short\n", 0600);
    unsigned char pub[32], sec[32];
    CHECK_INT(dmri_auth_read_keyfile(path, pub, NULL, &err), DMRI_EFORMAT);
    CHECK_HAS(err, "Z85");
    /* a public key that does not belong to the secret one */
    char p1[41], s1[41], p2[41], s2[41], text[300];
    zmq_curve_keypair(p1, s1);
    zmq_curve_keypair(p2, s2);
    snprintf(text, sizeof text, "# test\npublic = %s\nsecret = %s\n", p2, s1);
    write_text(path, text, 0600);
    CHECK_INT(dmri_auth_read_keyfile(path, pub, sec, &err), DMRI_EFORMAT);
    CHECK_HAS(err, "does not belong");
    snprintf(text, sizeof text, "public = %s\r\n", p1);
    write_text(path, text, 0644);
    CHECK_INT(dmri_auth_read_keyfile(path, pub, NULL, &err), 0);
    CHECK_INT(dmri_auth_read_keyfile(path, pub, sec, &err), DMRI_EIO); /* public, not private */
    unlink(path);
    unlink(other);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%.500s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (failures)
        fprintf(stderr, "%d checks failed\nlog:\n%s", failures, log_text);
    return failures ? 1 : 0;
}
