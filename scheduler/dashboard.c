/* dashboard: libmicrohttpd server over published snapshots (dashboard.h). */
#include "dashboard.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "dmri_alloc.h"
#include "metrics.h"
#include "status_json.h"

/* /health turns 503 when the loop has not published for this long. */
#define HEALTH_STALE_S 3.0

/* A rendering shared by the responses that send it: freed by the last one
 * (MHD frees responses on its thread, possibly after a newer rendering
 * replaced this one), so a big /api/status is never copied per request. */
typedef struct {
    atomic_int refs;
    size_t len;
    char text[];
} rendering_t;

static rendering_t *rendering_new(char *text) {
    size_t len = strlen(text);
    rendering_t *r = dmri_malloc(sizeof *r + len + 1);
    atomic_init(&r->refs, 1);
    r->len = len;
    memcpy(r->text, text, len + 1);
    dmri_free(text);
    return r;
}

static void rendering_unref(void *p) {
    rendering_t *r = p;
    if (r && atomic_fetch_sub(&r->refs, 1) == 1)
        dmri_free(r);
}

struct dmri_dashboard {
    struct MHD_Daemon *mhd;
    int port;
    pthread_mutex_t mu;           /* guards everything below */
    dmri_sched_snapshot_t snap;   /* latest published */
    uint64_t version;             /* bumped at each publish */
    double published;             /* monotonic time of the last publish */
    rendering_t *json, *metrics;  /* renderings of snap ... */
    uint64_t json_version, metrics_version; /* ... of this version */
};

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             const char *body, size_t len) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* Render (if this snapshot was not rendered yet, under the lock) and reply
 * with a reference to the rendering (outside the lock). */
static enum MHD_Result reply_rendered(dmri_dashboard_t *d, struct MHD_Connection *c, int metrics) {
    pthread_mutex_lock(&d->mu);
    rendering_t **cur = metrics ? &d->metrics : &d->json;
    uint64_t *ver = metrics ? &d->metrics_version : &d->json_version;
    if (!*cur || *ver != d->version) {
        rendering_unref(*cur);
        *cur = rendering_new(metrics ? dmri_metrics_text(&d->snap) : dmri_status_json(&d->snap));
        *ver = d->version;
    }
    rendering_t *r = *cur;
    atomic_fetch_add(&r->refs, 1);
    pthread_mutex_unlock(&d->mu);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        r->len, r->text, rendering_unref, r);
    if (!resp) {
        rendering_unref(r);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            metrics ? "text/plain; version=0.0.4; charset=utf-8"
                                    : "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Runs on MHD's thread for every new connection: the first time, lower
 * that thread's priority, so that on a busy head node HTTP work yields the
 * CPU to the scheduling loop (Linux: niceness is per thread). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    (void)cls, (void)c, (void)socket_context, (void)toe;
    static _Thread_local int niced;
    if (!niced) {
        niced = 1;
        if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0) {
            /* not fatal: the page only gets the same share as the loop */
        }
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **state) {
    (void)version;
    (void)upload_data;
    dmri_dashboard_t *d = cls;
    /* First call per request: headers only. Answer on the second, so that
     * a body (which we ignore) never gets queued against a response. */
    if (!*state) {
        *state = d;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET and HEAD\n";
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", msg, sizeof msg - 1);
    }
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
        return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", dmri_dashboard_html,
                     strlen(dmri_dashboard_html));
    if (strcmp(url, "/api/status") == 0)
        return reply_rendered(d, c, 0);
    if (strcmp(url, "/metrics") == 0)
        return reply_rendered(d, c, 1);
    if (strcmp(url, "/health") == 0) {
        pthread_mutex_lock(&d->mu);
        double age = mono() - d->published;
        int ok = d->version > 0 && age < HEALTH_STALE_S;
        pthread_mutex_unlock(&d->mu);
        char body[128];
        int n = snprintf(body, sizeof body, "%s: loop last published %.2f s ago\n",
                         ok ? "ok" : "unresponsive", d->version ? age : -1.0);
        return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", body,
                     (size_t)n);
    }
    static const char nf[] = "not found: try /, /api/status, /metrics, /health\n";
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", nf, sizeof nf - 1);
}

int dmri_dashboard_new(const char *host, int port, dmri_dashboard_t **out, dmri_err_t *err) {
    *out = NULL;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0 || !ai)
        return dmri_err_set(err, DMRI_EIO, "dashboard: cannot resolve %s: %s", host,
                            gai_strerror(rc));
    dmri_dashboard_t *d = dmri_calloc(1, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    d->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, d,
                              MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)128, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)64,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, d, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d->mhd) {
        pthread_mutex_destroy(&d->mu);
        dmri_free(d);
        return dmri_err_set(err, DMRI_EIO,
                            "dashboard: cannot listen on %s:%d (port taken or address not "
                            "of this machine)",
                            host, port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_BIND_PORT);
    d->port = info ? (int)info->port : port;
    *out = d;
    return 0;
}

int dmri_dashboard_port(const dmri_dashboard_t *d) { return d->port; }

int dmri_dashboard_publish(dmri_dashboard_t *d, dmri_sched_snapshot_t *snap, double now) {
    if (pthread_mutex_trylock(&d->mu) != 0)
        return 0;
    dmri_sched_snapshot_close(&d->snap);
    d->snap = *snap;
    memset(snap, 0, sizeof *snap);
    d->version++;
    d->published = now;
    pthread_mutex_unlock(&d->mu);
    return 1;
}

void dmri_dashboard_destroy(dmri_dashboard_t **pd) {
    if (!pd || !*pd)
        return;
    dmri_dashboard_t *d = *pd;
    MHD_stop_daemon(d->mhd);
    dmri_sched_snapshot_close(&d->snap);
    rendering_unref(d->json);
    rendering_unref(d->metrics);
    pthread_mutex_destroy(&d->mu);
    dmri_free(d);
    *pd = NULL;
}
