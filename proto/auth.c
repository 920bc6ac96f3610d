/* auth: CURVE keys, the ZAP handler and the handshake monitor (auth.h).
 *
 * Why a ZAP handler of our own on libzmq rather than czmq's zauth/zcert:
 * what we need is ~100 lines (one REP socket answering "is this 32-byte key
 * in the set"), and owning it lets the refusal line name the peer's address
 * in our log format and be rate-limited; zauth would add libczmq, its actor
 * model and its own certificate file format (ZPL) to what a user must
 * understand, for no extra protection. The crypto is libzmq's either way. */
#include "auth.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "dmri_alloc.h"

#define AUTH_LOG_PERIOD_S 10.0
#define AUTH_LOG_BURST 5
#define AUTH_MAX_KEYS 100000      /* authorized/ files read at most */
#define AUTH_ZAP_ENDPOINT "inproc://zeromq.zap.01"

struct dmri_auth {
    dmri_auth_role_t role;
    unsigned char cluster_pub[32];   /* server key of every dmri server socket */
    unsigned char cluster_sec[32];   /* scheduler, workers: they serve with it */
    int have_cluster_sec;
    unsigned char my_pub[32];        /* our key pair as a client */
    unsigned char my_sec[32];
    unsigned char (*allowed)[32];    /* admitted client keys (linear search: a
                                        cluster has tens to hundreds) */
    size_t nallowed;
    void *zap;                       /* REP socket, owned by the thread */
    pthread_t thread;
    int thread_started;
    dmri_auth_log_fn log;
    void *log_ctx;
    double window_start;             /* rate limit of refusal lines */
    int used;
    unsigned long suppressed;
};

/* ------------------------------------------------------------ key files */

static int auth_z85_decode(const char *text, unsigned char out[32]) {
    if (strlen(text) != DMRI_AUTH_Z85_LEN)
        return -1;
    return zmq_z85_decode(out, text) ? 0 : -1;
}

int dmri_auth_read_keyfile(const char *path, unsigned char public_key[32], unsigned char *secret,
                           dmri_err_t *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dmri_err_set(err, DMRI_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 65536) {
        close(fd);
        return dmri_err_set(err, DMRI_EFORMAT, "%s: not a key file (a regular file of at most "
                            "64 KiB)", path);
    }
    /* Like ssh: a secret others can read is no longer a secret; say so
     * rather than use it. */
    if (secret && (st.st_mode & 077)) {
        close(fd);
        return dmri_err_set(err, DMRI_EIO,
                            "%s holds a secret key but is readable by group or others (mode "
                            "%04o): chmod 600 %s",
                            path, (unsigned)(st.st_mode & 07777), path);
    }
    char buf[65537];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    buf[n] = '\0';
    int have_pub = 0, have_sec = 0, lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t')
            line++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        if (!*line || *line == '#')
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            return dmri_err_set(err, DMRI_EFORMAT, "%s:%d: expected 'public = KEY' or 'secret = "
                                "KEY'", path, lineno);
        char *name = line, *value = eq + 1;
        char *e = eq;
        while (e > name && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = '\0';
        while (*value == ' ' || *value == '\t')
            value++;
        unsigned char key[32];
        if (strcmp(name, "public") != 0 && strcmp(name, "secret") != 0)
            continue; /* room for later fields (a comment, an expiry) */
        if (auth_z85_decode(value, key) != 0)
            return dmri_err_set(err, DMRI_EFORMAT, "%s:%d: %s key is not %d Z85 characters",
                                path, lineno, name, DMRI_AUTH_Z85_LEN);
        if (strcmp(name, "public") == 0) {
            if (have_pub++)
                return dmri_err_set(err, DMRI_EFORMAT, "%s: two public keys", path);
            memcpy(public_key, key, 32);
        } else {
            if (have_sec++)
                return dmri_err_set(err, DMRI_EFORMAT, "%s: two secret keys", path);
            if (secret)
                memcpy(secret, key, 32);
        }
    }
    if (!have_pub)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: no 'public = KEY' line", path);
    if (secret && !have_sec)
        return dmri_err_set(err, DMRI_EFORMAT, "%s: no 'secret = KEY' line (a public key only?)",
                            path);
    if (secret) {
        /* a pair that does not match would fail every handshake obscurely */
        char sec_z85[41], pub_z85[41], derived[41];
        zmq_z85_encode(sec_z85, secret, 32);
        zmq_z85_encode(pub_z85, public_key, 32);
        if (zmq_curve_public(derived, sec_z85) != 0 || strcmp(derived, pub_z85) != 0)
            return dmri_err_set(err, DMRI_EFORMAT, "%s: the public key does not belong to the "
                                "secret key", path);
    }
    return 0;
}

static int auth_write_new(const char *path, mode_t mode, const char *text, dmri_err_t *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return dmri_err_set(err, DMRI_EIO, "%s: %s", path,
                            errno == EEXIST ? "exists already (not overwritten)" : strerror(errno));
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    /* the umask may have narrowed the mode; a private file stays private */
    int ok = w == (ssize_t)len && fchmod(fd, mode) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(path);
        return dmri_err_set(err, DMRI_EIO, "%s: cannot write", path);
    }
    return 0;
}

int dmri_auth_write_keypair(const char *secret_path, const char *public_path, dmri_err_t *err) {
    char pub[41], sec[41], text[400];
    if (zmq_curve_keypair(pub, sec) != 0)
        return dmri_err_set(err, DMRI_EIO, "zmq_curve_keypair: %s (libzmq without CURVE?)",
                            zmq_strerror(errno));
    if (secret_path) {
        snprintf(text, sizeof text,
                 "# dmri CURVE key pair (Z85). Secret: keep this file mode 0600.\n"
                 "public = %s\nsecret = %s\n", pub, sec);
        if (auth_write_new(secret_path, 0600, text, err) != 0)
            return DMRI_EIO;
    }
    if (public_path) {
        snprintf(text, sizeof text, "# dmri CURVE public key (Z85)\npublic = %s\n", pub);
        if (auth_write_new(public_path, 0644, text, err) != 0) {
            if (secret_path)
                unlink(secret_path);
            return DMRI_EIO;
        }
    }
    memset(sec, 0, sizeof sec);
    return 0;
}

static int auth_valid_name(const char *s) {
    if (!*s || strlen(s) > 200 || s[0] == '.')
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int auth_mkdir(const char *path, mode_t mode, dmri_err_t *err) {
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return dmri_err_set(err, DMRI_EIO, "%s: %s", path, strerror(errno));
    return 0;
}

int dmri_auth_keygen(const char *dir, char **names, int nnames, dmri_err_t *err) {
    char a[4096], b[4096];
    for (int i = 0; i < nnames; i++)
        if (!auth_valid_name(names[i]))
            return dmri_err_set(err, DMRI_EINVAL, "certificate name '%.200s': use letters, "
                                "digits, '.', '_' and '-' (not starting with '.')", names[i]);
    if (auth_mkdir(dir, 0700, err))
        return DMRI_EIO;
    snprintf(a, sizeof a, "%s/authorized", dir);
    if (auth_mkdir(a, 0755, err))
        return DMRI_EIO;
    snprintf(a, sizeof a, "%s/certs", dir);
    if (auth_mkdir(a, 0700, err))
        return DMRI_EIO;
    snprintf(a, sizeof a, "%s/cluster.secret", dir);
    snprintf(b, sizeof b, "%s/cluster.pub", dir);
    if (access(a, F_OK) != 0 && dmri_auth_write_keypair(a, b, err) != 0)
        return DMRI_EIO;
    for (int i = 0; i < nnames; i++) {
        snprintf(a, sizeof a, "%s/certs/%s.cert", dir, names[i]);
        snprintf(b, sizeof b, "%s/authorized/%s.pub", dir, names[i]);
        if (access(b, F_OK) == 0)
            return dmri_err_set(err, DMRI_EIO, "%s exists already (not overwritten)", b);
        if (dmri_auth_write_keypair(a, b, err) != 0)
            return DMRI_EIO;
    }
    return 0;
}

/* ------------------------------------------------------------ loading */

static void auth_allow(dmri_auth_t *a, const unsigned char key[32]) {
    for (size_t i = 0; i < a->nallowed; i++)
        if (memcmp(a->allowed[i], key, 32) == 0)
            return;
    a->allowed = dmri_realloc(a->allowed, (a->nallowed + 1) * sizeof *a->allowed);
    memcpy(a->allowed[a->nallowed++], key, 32);
}

static int auth_load_authorized(dmri_auth_t *a, const char *dir, dmri_err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/authorized", dir);
    DIR *d = opendir(path);
    if (!d)
        return dmri_err_set(err, DMRI_EIO, "%s: %s", path, strerror(errno));
    struct dirent *e;
    int rc = 0, n = 0;
    while (rc == 0 && (e = readdir(d)) != NULL && n < AUTH_MAX_KEYS) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".pub") != 0)
            continue;
        char file[4400];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        unsigned char key[32];
        rc = dmri_auth_read_keyfile(file, key, NULL, err);
        if (rc == 0) {
            auth_allow(a, key);
            n++;
        }
    }
    closedir(d);
    return rc;
}

int dmri_auth_load(dmri_auth_t **out, dmri_auth_role_t role, const char *dir, const char *cert,
                   dmri_err_t *err) {
    *out = NULL;
    if (zmq_has("curve") != 1)
        return dmri_err_set(err, DMRI_EUNSUP, "this libzmq has no CURVE security");
    dmri_auth_t *a = dmri_calloc(1, sizeof *a);
    a->role = role;
    char path[4096];
    int rc;
    if (role == DMRI_AUTH_CLIENT) {
        snprintf(path, sizeof path, "%s/cluster.pub", dir);
        rc = dmri_auth_read_keyfile(path, a->cluster_pub, NULL, err);
    } else {
        snprintf(path, sizeof path, "%s/cluster.secret", dir);
        rc = dmri_auth_read_keyfile(path, a->cluster_pub, a->cluster_sec, err);
        a->have_cluster_sec = rc == 0;
        if (rc == 0) {
            /* whoever holds the cluster secret is a server of this cluster:
             * the scheduler connects to workers' peer sockets with it */
            auth_allow(a, a->cluster_pub);
            rc = auth_load_authorized(a, dir, err);
        }
    }
    if (rc == 0 && role == DMRI_AUTH_SCHEDULER) {
        memcpy(a->my_pub, a->cluster_pub, 32);
        memcpy(a->my_sec, a->cluster_sec, 32);
    } else if (rc == 0) {
        if (!cert || !*cert)
            rc = dmri_err_set(err, DMRI_EINVAL, "no certificate file given (--cert)");
        else
            rc = dmri_auth_read_keyfile(cert, a->my_pub, a->my_sec, err);
    }
    if (rc != 0) {
        dmri_auth_destroy(&a);
        return rc;
    }
    *out = a;
    return 0;
}

size_t dmri_auth_nauthorized(const dmri_auth_t *a) { return a ? a->nallowed : 0; }

void dmri_auth_destroy(dmri_auth_t **ap) {
    if (!ap || !*ap)
        return;
    dmri_auth_t *a = *ap;
    if (a->thread_started)
        pthread_join(a->thread, NULL);
    memset(a->cluster_sec, 0, sizeof a->cluster_sec);
    memset(a->my_sec, 0, sizeof a->my_sec);
    dmri_free(a->allowed);
    dmri_free(a);
    *ap = NULL;
}

/* ------------------------------------------------------------ ZAP handler */

static double auth_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A flood of bad handshakes must not fill the log: AUTH_LOG_BURST lines per
 * period, then one line saying how many were left out. ZAP thread only. */
static void auth_log_refusal(dmri_auth_t *a, const char *address, const char *why) {
    if (!a->log)
        return;
    double now = auth_now();
    char line[600];
    if (now - a->window_start >= AUTH_LOG_PERIOD_S) {
        if (a->suppressed) {
            snprintf(line, sizeof line, "%lu more refused connections were not logged",
                     a->suppressed);
            a->log(a->log_ctx, line);
        }
        a->window_start = now;
        a->used = 0;
        a->suppressed = 0;
    }
    if (a->used >= AUTH_LOG_BURST) {
        a->suppressed++;
        return;
    }
    a->used++;
    snprintf(line, sizeof line, "refused connection from %s: %s", address, why);
    a->log(a->log_ctx, line);
}

static int auth_key_allowed(const dmri_auth_t *a, const unsigned char *key) {
    for (size_t i = 0; i < a->nallowed; i++)
        if (memcmp(a->allowed[i], key, 32) == 0)
            return 1;
    return 0;
}

/* RFC 27 request: version, request id, domain, address, identity,
 * mechanism, credentials... (CURVE: one frame, the client's public key). */
#define ZAP_FRAMES 7
static void *auth_zap_thread(void *arg) {
    dmri_auth_t *a = arg;
    for (;;) {
        zmq_msg_t f[ZAP_FRAMES];
        int nf = 0, more = 1, term = 0;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, a->zap, 0) < 0) {
                zmq_msg_close(&part);
                if (zmq_errno() == EINTR)
                    continue;
                term = 1; /* ETERM: the context is going away */
                break;
            }
            more = zmq_msg_more(&part);
            if (nf < ZAP_FRAMES) {
                zmq_msg_init(&f[nf]);
                zmq_msg_move(&f[nf++], &part);
            }
            zmq_msg_close(&part);
        }
        if (term) {
            for (int i = 0; i < nf; i++)
                zmq_msg_close(&f[i]);
            break;
        }
        char address[200] = "?";
        const char *status = "400", *text = "unknown CURVE key";
        if (nf >= 4) {
            size_t n = zmq_msg_size(&f[3]);
            if (n >= sizeof address)
                n = sizeof address - 1;
            memcpy(address, zmq_msg_data(&f[3]), n);
            address[n] = '\0';
        }
        if (nf < 7 || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3) != 0) {
            text = "malformed ZAP request";
        } else if (zmq_msg_size(&f[5]) != 5 || memcmp(zmq_msg_data(&f[5]), "CURVE", 5) != 0) {
            text = "no CURVE key (security mechanism is not CURVE)";
        } else if (zmq_msg_size(&f[6]) == 32 && auth_key_allowed(a, zmq_msg_data(&f[6]))) {
            status = "200";
            text = "OK";
        }
        if (status[0] != '2')
            auth_log_refusal(a, address, text);
        /* reply: version, request id, status code, status text, user id,
         * metadata */
        int ok = zmq_send(a->zap, "1.0", 3, ZMQ_SNDMORE) >= 0;
        if (ok && nf >= 2)
            ok = zmq_send(a->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE) >= 0;
        else if (ok)
            ok = zmq_send(a->zap, "", 0, ZMQ_SNDMORE) >= 0;
        if (ok)
            ok = zmq_send(a->zap, status, 3, ZMQ_SNDMORE) >= 0 &&
                 zmq_send(a->zap, text, strlen(text), ZMQ_SNDMORE) >= 0 &&
                 zmq_send(a->zap, "", 0, ZMQ_SNDMORE) >= 0 && zmq_send(a->zap, "", 0, 0) >= 0;
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
        if (!ok && zmq_errno() == ETERM)
            break;
    }
    zmq_close(a->zap);
    a->zap = NULL;
    return NULL;
}

int dmri_auth_start(dmri_auth_t *a, void *zctx, dmri_auth_log_fn log, void *log_ctx,
                    dmri_err_t *err) {
    a->log = log;
    a->log_ctx = log_ctx;
    a->window_start = auth_now() - AUTH_LOG_PERIOD_S;
    a->zap = zmq_socket(zctx, ZMQ_REP);
    if (!a->zap)
        return dmri_err_set(err, DMRI_EIO, "ZAP socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(a->zap, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(a->zap, AUTH_ZAP_ENDPOINT) != 0) {
        int e = zmq_errno();
        zmq_close(a->zap);
        a->zap = NULL;
        return dmri_err_set(err, DMRI_EIO, "ZAP handler: bind %s: %s", AUTH_ZAP_ENDPOINT,
                            zmq_strerror(e));
    }
    if (pthread_create(&a->thread, NULL, auth_zap_thread, a) != 0) {
        zmq_close(a->zap);
        a->zap = NULL;
        return dmri_err_set(err, DMRI_EIO, "ZAP handler: cannot start a thread");
    }
    a->thread_started = 1;
    return 0;
}

/* ------------------------------------------------------------ sockets */

static int auth_setopt(void *sock, int opt, const char *name, const void *v, size_t n,
                       dmri_err_t *err) {
    if (zmq_setsockopt(sock, opt, v, n) != 0)
        return dmri_err_set(err, DMRI_EIO, "zmq_setsockopt(%s): %s", name,
                            zmq_strerror(zmq_errno()));
    return 0;
}

int dmri_auth_server_setup(void *sock, const dmri_auth_t *a, dmri_err_t *err) {
    if (!a)
        return 0;
    const int one = 1;
    if (!a->have_cluster_sec)
        return dmri_err_set(err, DMRI_EINVAL, "a CURVE server needs the cluster secret key");
    /* The domain makes libzmq consult our ZAP handler; it is started before
     * any server socket binds (without a handler libzmq would admit every
     * client that knows the cluster public key). */
    if (auth_setopt(sock, ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", "dmri", 4, err) ||
        auth_setopt(sock, ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER", &one, sizeof one, err) ||
        auth_setopt(sock, ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", a->cluster_sec, 32, err))
        return DMRI_EIO;
    return 0;
}

int dmri_auth_client_setup(void *sock, const dmri_auth_t *a, dmri_err_t *err) {
    if (!a)
        return 0;
    if (auth_setopt(sock, ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY", a->cluster_pub, 32, err) ||
        auth_setopt(sock, ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY", a->my_pub, 32, err) ||
        auth_setopt(sock, ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", a->my_sec, 32, err))
        return DMRI_EIO;
    return 0;
}

/* ------------------------------------------------------------ monitor */

struct dmri_auth_monitor {
    void *pair;   /* receives the monitored socket's events */
    void *sock;   /* the monitored socket (not owned) */
};

dmri_auth_monitor_t *dmri_auth_monitor_new(void *zctx, void *sock, dmri_err_t *err) {
    static int counter; /* unique inproc names; main thread only */
    char ep[80];
    snprintf(ep, sizeof ep, "inproc://dmri-auth-monitor-%ld-%d", (long)getpid(), ++counter);
    if (zmq_socket_monitor(sock, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
        dmri_err_set(err, DMRI_EIO, "zmq_socket_monitor: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    dmri_auth_monitor_t *m = dmri_calloc(1, sizeof *m);
    m->sock = sock;
    m->pair = zmq_socket(zctx, ZMQ_PAIR);
    int zero = 0;
    if (!m->pair || zmq_setsockopt(m->pair, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_connect(m->pair, ep) != 0) {
        dmri_err_set(err, DMRI_EIO, "monitor socket: %s", zmq_strerror(zmq_errno()));
        dmri_auth_monitor_destroy(&m);
        return NULL;
    }
    return m;
}

int dmri_auth_monitor_check(dmri_auth_monitor_t *m, char *why, size_t whysz) {
    int result = 0;
    if (!m)
        return 0;
    for (;;) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, m->pair, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return result;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        int more = zmq_msg_more(&ev);
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (char *)zmq_msg_data(&ev) + 2, 4);
        }
        zmq_msg_close(&ev);
        while (more) { /* the endpoint frame */
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, m->pair, 0) < 0) {
                zmq_msg_close(&part);
                break;
            }
            more = zmq_msg_more(&part);
            zmq_msg_close(&part);
        }
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            snprintf(why, whysz, "our certificate was refused (CURVE authentication failed, "
                     "ZAP status %u): is its public key in the cluster's authorized/ folder?",
                     (unsigned)value);
            return 2;
        }
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
            value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
            snprintf(why, whysz, "the security mechanisms differ: one side uses CURVE keys "
                     "(--keys) and the other does not");
            return 2;
        }
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            snprintf(why, whysz, "the CURVE handshake failed (protocol error 0x%x): is "
                     "cluster.pub this cluster's public key?", (unsigned)value);
            result = 1;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            /* e.g. a server that cannot decrypt our HELLO (another cluster's
             * public key) just closes the connection */
            snprintf(why, whysz, "the connection was closed during the security handshake "
                     "(%s): the other side has different CURVE keys (is cluster.pub this "
                     "cluster's?), or keys are configured on one side only (--keys)",
                     strerror((int)value));
            result = 1;
        }
    }
}

void dmri_auth_monitor_destroy(dmri_auth_monitor_t **mp) {
    if (!mp || !*mp)
        return;
    dmri_auth_monitor_t *m = *mp;
    if (m->sock)
        zmq_socket_monitor(m->sock, NULL, 0);
    if (m->pair)
        zmq_close(m->pair);
    dmri_free(m);
    *mp = NULL;
}
