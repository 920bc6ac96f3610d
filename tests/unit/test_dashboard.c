/* Unit tests of the dashboard's HTTP server (scheduler/dashboard.c) over
 * real loopback TCP: the routes, the content types, /health turning 503
 * when nothing was published for a while, a taken port refused with a
 * message, and garbage requests answered without harm. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dashboard.h"
#include "dmri_alloc.h"

#include "check.h"

/* Send raw bytes, read the whole answer (the server closes: HTTP/1.0). */
static char *http(int port, const char *request) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (write(fd, request, strlen(request)) < 0) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = dmri_malloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = dmri_realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static char *get(int port, const char *path) {
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    return http(port, req);
}

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    dmri_dashboard_t *d = NULL;
    dmri_err_t err = {0};
    CHECK_INT(dmri_dashboard_new("127.0.0.1", 0, &d, &err), 0);
    if (!d)
        return 1;
    int port = dmri_dashboard_port(d);
    CHECK(port > 0);

    /* Nothing published yet: unhealthy. */
    char *r = get(port, "/health");
    CHECK(r && strstr(r, " 503 ") && strstr(r, "unresponsive"));
    dmri_free(r);

    dmri_sched_snapshot_t snap;
    memset(&snap, 0, sizeof snap);
    snap.now = 12.5;
    snap.nworkers = 1;
    snap.workers = dmri_calloc(1, sizeof *snap.workers);
    snprintf(snap.workers[0].name, sizeof snap.workers[0].name, "worker-xyz");
    snap.workers[0].threads = 3;
    snap.stats.subjects_done = 7;
    CHECK_INT(dmri_dashboard_publish(d, &snap, mono()), 1);
    CHECK(snap.workers == NULL); /* taken over */

    r = get(port, "/health");
    CHECK(r && strstr(r, " 200 ") && strstr(r, "ok"));
    dmri_free(r);
    r = get(port, "/api/status");
    CHECK(r && strstr(r, " 200 ") && strstr(r, "application/json"));
    CHECK(r && strstr(r, "\"name\":\"worker-xyz\"") && strstr(r, "\"now_s\":12.5"));
    dmri_free(r);
    r = get(port, "/metrics");
    CHECK(r && strstr(r, "text/plain; version=0.0.4"));
    CHECK(r && strstr(r, "dmri_subjects_total{result=\"done\"} 7\n"));
    dmri_free(r);
    r = get(port, "/");
    CHECK(r && strstr(r, "text/html") && strstr(r, "api/status") && strstr(r, "<svg"));
    dmri_free(r);
    r = get(port, "/etc/passwd");
    CHECK(r && strstr(r, " 404 "));
    dmri_free(r);
    r = http(port, "POST /api/status HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello");
    CHECK(r && strstr(r, " 405 "));
    dmri_free(r);
    r = http(port, "\x01\x02garbage\r\n\r\n");
    CHECK(r != NULL); /* answered (400) or closed; the server lives on */
    dmri_free(r);
    r = get(port, "/health");
    CHECK(r && strstr(r, " 200 "));
    dmri_free(r);

    /* A second server on the same port is refused, naming the address. */
    dmri_dashboard_t *d2 = NULL;
    CHECK(dmri_dashboard_new("127.0.0.1", port, &d2, &err) != 0);
    CHECK(d2 == NULL);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    CHECK_HAS(err, want);

    /* A newer snapshot replaces the rendering. */
    memset(&snap, 0, sizeof snap);
    snap.stats.subjects_done = 8;
    CHECK_INT(dmri_dashboard_publish(d, &snap, mono()), 1);
    r = get(port, "/metrics");
    CHECK(r && strstr(r, "dmri_subjects_total{result=\"done\"} 8\n"));
    dmri_free(r);

    /* A loop that stops publishing is reported within a few seconds. */
    memset(&snap, 0, sizeof snap);
    CHECK_INT(dmri_dashboard_publish(d, &snap, mono() - 10), 1);
    r = get(port, "/health");
    CHECK(r && strstr(r, " 503 "));
    dmri_free(r);

    dmri_dashboard_destroy(&d);
    dmri_dashboard_destroy(&d);
    CHECK(get(port, "/health") == NULL);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    return failures != 0;
}
