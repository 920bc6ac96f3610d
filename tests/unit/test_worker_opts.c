/* test_worker_opts: dmri-worker's command line and addresses
 * (worker/wopts.h, worker/netaddr.h) — sizes with suffixes and 'auto',
 * scheduler addresses with and without a port, IPv6, defaults, the usage
 * errors that must name their argument, the routed local address, the
 * --listen endpoint and the announced endpoint of a wildcard bind. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "netaddr.h"
#include "wopts.h"

static int failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            failures++;                                                                \
        }                                                                              \
    } while (0)

#define CHECK_EQ(a, b)                                                                    \
    do {                                                                                  \
        unsigned long long va_ = (unsigned long long)(a), vb_ = (unsigned long long)(b); \
        if (va_ != vb_) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %llu, %s = %llu\n", __FILE__,  \
                    __LINE__, #a, va_, #b, vb_);                                          \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

#define CHECK_STR(a, b)                                                                   \
    do {                                                                                  \
        if (strcmp((a), (b)) != 0) {                                                      \
            fprintf(stderr, "%s:%d: CHECK_STR failed: %s = '%s', expected '%s'\n",       \
                    __FILE__, __LINE__, #a, (a), (b));                                    \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

static void test_sizes(void) {
    uint64_t v = 0;
    CHECK(dmri_wopts_parse_size("0", &v) == 0 && v == 0);
    CHECK(dmri_wopts_parse_size("1048576", &v) == 0 && v == 1048576);
    CHECK(dmri_wopts_parse_size("40K", &v) == 0 && v == 40960);
    CHECK(dmri_wopts_parse_size("512M", &v) == 0 && v == 512ull << 20);
    CHECK(dmri_wopts_parse_size("512MB", &v) == 0 && v == 512ull << 20);
    CHECK(dmri_wopts_parse_size("2g", &v) == 0 && v == 2ull << 30);
    CHECK(dmri_wopts_parse_size("1.5GiB", &v) == 0 && v == 3ull << 29);
    CHECK(dmri_wopts_parse_size("3T", &v) == 0 && v == 3ull << 40);
    CHECK(dmri_wopts_parse_size("100B", &v) == 0 && v == 100);
    const char *bad[] = {"", "lots", "-5", "5X", "5 M", "M", "1e30G", "12KK", "+3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 777;
        if (dmri_wopts_parse_size(bad[i], &v) == 0) {
            fprintf(stderr, "size '%s' accepted as %llu\n", bad[i], (unsigned long long)v);
            failures++;
        }
    }
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    CHECK(dmri_wopts_parse_size("auto", &v) == 0);
    double phys = (double)pages * (double)psz;
    CHECK(v > 0.79 * phys && v < 0.81 * phys);
}

static void test_hostport(void) {
    char h[256];
    int p = -1;
    CHECK(dmri_wopts_parse_hostport("head", 8786, h, sizeof h, &p) == 0);
    CHECK_STR(h, "head");
    CHECK_EQ(p, 8786);
    CHECK(dmri_wopts_parse_hostport("10.0.0.2:9000", 8786, h, sizeof h, &p) == 0);
    CHECK_STR(h, "10.0.0.2");
    CHECK_EQ(p, 9000);
    CHECK(dmri_wopts_parse_hostport("tcp://node-1.cluster:1", 8786, h, sizeof h, &p) == 0);
    CHECK_STR(h, "node-1.cluster");
    CHECK_EQ(p, 1);
    CHECK(dmri_wopts_parse_hostport("[::1]:8800", 8786, h, sizeof h, &p) == 0);
    CHECK_STR(h, "::1");
    CHECK_EQ(p, 8800);
    CHECK(dmri_wopts_parse_hostport("fe80::1", 8786, h, sizeof h, &p) == 0);
    CHECK_STR(h, "fe80::1");
    CHECK_EQ(p, 8786);
    CHECK(dmri_wopts_parse_hostport("127.0.0.1:*", 8786, h, sizeof h, &p) == 0);
    CHECK_EQ(p, 0);
    const char *bad[] = {"", ":8786", "h:", "h:0", "h:65536", "h:12x", "[::1", "[]:5", "a b:5",
                         "h:5:6x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (dmri_wopts_parse_hostport(bad[i], 8786, h, sizeof h, &p) == 0) {
            fprintf(stderr, "address '%s' accepted as %s port %d\n", bad[i], h, p);
            failures++;
        }
    }
    char ep[300];
    dmri_wopts_endpoint(ep, sizeof ep, "::1", "*");
    CHECK_STR(ep, "tcp://[::1]:*");
    dmri_wopts_endpoint(ep, sizeof ep, "10.1.2.3", "8786");
    CHECK_STR(ep, "tcp://10.1.2.3:8786");
}

/* Parse a command line; returns the parse result, the messages in out/err. */
static int parse(dmri_wopts_t *o, char *errbuf, size_t errsz, int argc, char **argv) {
    char outbuf[8192];
    FILE *out = fmemopen(outbuf, sizeof outbuf, "w");
    FILE *err = fmemopen(errbuf, errsz, "w");
    int rc = dmri_wopts_parse(o, argc, argv, out, err);
    fclose(out);
    fclose(err);
    return rc;
}

static void test_parse(void) {
    dmri_wopts_t o;
    char err[2048];
    char *a1[] = {"dmri-worker", "head:9999", NULL};
    CHECK_EQ(parse(&o, err, sizeof err, 2, a1), 0);
    CHECK_STR(o.sched_endpoint, "tcp://head:9999");
    CHECK(o.nthreads >= 1 && o.memory_limit > 0 && o.listen == NULL && o.spill_dir == NULL);
    char def_name[300];
    char host[200];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    snprintf(def_name, sizeof def_name, "%s-%ld", host, (long)getpid());
    CHECK_STR(o.name, def_name);

    char *a2[] = {"dmri-worker", "--nthreads", "3", "--name", "n1", "--memory-limit", "2G",
                  "--spill-dir", "/scratch", "--listen", "10.0.0.5:*", "--pid-file", "p",
                  "--data-dir", "/data", "tcp://[::1]", NULL};
    CHECK_EQ(parse(&o, err, sizeof err, 16, a2), 0);
    CHECK_EQ(o.nthreads, 3);
    CHECK_STR(o.name, "n1");
    CHECK_EQ(o.memory_limit, 2ull << 30);
    CHECK_STR(o.spill_dir, "/scratch");
    CHECK_STR(o.listen, "10.0.0.5:*");
    CHECK_STR(o.pid_file, "p");
    CHECK_STR(o.data_dir, "/data");
    CHECK_STR(o.sched_endpoint, "tcp://[::1]:8786");
    /* abuse limits: defaults, and given */
    CHECK_EQ(o.max_msg, 16ull << 20);
    CHECK_EQ(o.max_chunk, 1ull << 30);
    char *a3[] = {"dmri-worker", "--max-message-size", "64K", "--max-chunk-size", "3G", "h",
                  NULL};
    CHECK_EQ(parse(&o, err, sizeof err, 6, a3), 0);
    CHECK_EQ(o.max_msg, 64ull << 10);
    CHECK_EQ(o.max_chunk, 3ull << 30);

    CHECK(o.keys_dir == NULL && o.cert[0] == '\0');

    /* --keys: the certificate defaults to DIR/certs/NAME.cert */
    char *k1[] = {"dmri-worker", "--keys", "/k", "--name", "w7", "h", NULL};
    CHECK_EQ(parse(&o, err, sizeof err, 6, k1), 0);
    CHECK_STR(o.keys_dir, "/k");
    CHECK_STR(o.cert, "/k/certs/w7.cert");
    char *k2[] = {"dmri-worker", "--cert", "/c/me.cert", "--keys", "/k", "h", NULL};
    CHECK_EQ(parse(&o, err, sizeof err, 6, k2), 0);
    CHECK_STR(o.cert, "/c/me.cert");

    char *help[] = {"dmri-worker", "--help", NULL};
    CHECK_EQ(parse(&o, err, sizeof err, 2, help), 1);

    struct {
        char *argv[5];
        int argc;
        const char *names;
    } bad[] = {
        {{"dmri-worker", NULL}, 1, "SCHEDULER"},
        {{"dmri-worker", "--nthreads", "0", "h", NULL}, 4, "--nthreads"},
        {{"dmri-worker", "--nthreads", "2x", "h", NULL}, 4, "--nthreads"},
        {{"dmri-worker", "--memory-limit", "much", "h", NULL}, 4, "--memory-limit"},
        {{"dmri-worker", "--listen", "a b", "h", NULL}, 4, "--listen"},
        {{"dmri-worker", "--bogus", "h", NULL}, 3, "--bogus"},
        {{"dmri-worker", "h", "extra", NULL}, 3, "extra"},
        {{"dmri-worker", "h:0", NULL}, 2, "SCHEDULER"},
        {{"dmri-worker", "--name", "", "h", NULL}, 4, "--name"},
        {{"dmri-worker", "h", "--nthreads", NULL}, 3, "--nthreads"},
        {{"dmri-worker", "--max-message-size", "100", "h", NULL}, 4, "--max-message-size"},
        {{"dmri-worker", "--max-chunk-size", "auto", "h", NULL}, 4, "--max-chunk-size"},
        {{"dmri-worker", "--cert", "c", "h", NULL}, 4, "--keys"},
        {{"dmri-worker", "--keys", "", "h", NULL}, 4, "--keys"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(err, 0, sizeof err);
        int rc = parse(&o, err, sizeof err, bad[i].argc, bad[i].argv);
        if (rc != 2 || !strstr(err, bad[i].names)) {
            fprintf(stderr, "case %zu: rc %d, message '%s' should name %s\n", i, rc, err,
                    bad[i].names);
            failures++;
        }
    }
}

static void test_netaddr(void) {
    char ip[64], ep[300];
    dmri_err_t err = {0};
    CHECK_EQ(dmri_netaddr_routed_ip("127.0.0.1", 8786, ip, sizeof ip, &err), 0);
    CHECK_STR(ip, "127.0.0.1");
    CHECK_EQ(dmri_netaddr_routed_ip("localhost", 8786, ip, sizeof ip, &err), 0);
    CHECK_STR(ip, "127.0.0.1"); /* IPv4 first */
    CHECK(dmri_netaddr_routed_ip("no-such-host.invalid", 8786, ip, sizeof ip, &err) != 0);
    CHECK(strstr(err.msg, "no-such-host.invalid") != NULL);

    CHECK_EQ(dmri_netaddr_listen_endpoint(NULL, "10.0.0.7", ep, sizeof ep, &err), 0);
    CHECK_STR(ep, "tcp://10.0.0.7:*");
    CHECK_EQ(dmri_netaddr_listen_endpoint(NULL, "fe80::2", ep, sizeof ep, &err), 0);
    CHECK_STR(ep, "tcp://[fe80::2]:*");
    CHECK_EQ(dmri_netaddr_listen_endpoint("tcp://0.0.0.0:9000", "x", ep, sizeof ep, &err), 0);
    CHECK_STR(ep, "tcp://0.0.0.0:9000");
    CHECK_EQ(dmri_netaddr_listen_endpoint("10.1.1.1", "x", ep, sizeof ep, &err), 0);
    CHECK_STR(ep, "tcp://10.1.1.1:*");
    CHECK_EQ(dmri_netaddr_listen_endpoint("node3:7001", "x", ep, sizeof ep, &err), 0);
    CHECK_STR(ep, "tcp://node3:7001");
    CHECK_EQ(dmri_netaddr_listen_endpoint("[::1]:7001", "x", ep, sizeof ep, &err), 0);
    CHECK_STR(ep, "tcp://[::1]:7001");
    CHECK_EQ(dmri_netaddr_listen_endpoint("a b", "x", ep, sizeof ep, &err), DMRI_EINVAL);
    CHECK(strstr(err.msg, "--listen") != NULL);

    dmri_netaddr_announce("tcp://0.0.0.0:5555", "10.0.0.7", ep, sizeof ep);
    CHECK_STR(ep, "tcp://10.0.0.7:5555");
    dmri_netaddr_announce("tcp://[::]:12", "::1", ep, sizeof ep);
    CHECK_STR(ep, "tcp://[::1]:12");
    dmri_netaddr_announce("tcp://127.0.0.1:9", "10.0.0.7", ep, sizeof ep);
    CHECK_STR(ep, "tcp://127.0.0.1:9");
    dmri_netaddr_announce("tcp://10.0.0.70:9", "10.0.0.7", ep, sizeof ep);
    CHECK_STR(ep, "tcp://10.0.0.70:9");
}

int main(void) {
    test_sizes();
    test_netaddr();
    test_hostport();
    test_parse();
    if (failures) {
        fprintf(stderr, "test_worker_opts: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_worker_opts: all checks passed\n");
    return 0;
}
