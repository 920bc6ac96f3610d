/* netaddr: routed local address and announced endpoints (netaddr.h). */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wopts.h"

int dmri_netaddr_routed_ip(const char *host, int port, char *out, size_t outsz,
                           dmri_err_t *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0)
        return dmri_err_set(err, DMRI_EIO, "scheduler host '%.300s': %s", host,
                            gai_strerror(rc));
    int found = 0;
    for (int pass = 0; pass < 2 && !found; pass++) {
        for (struct addrinfo *ai = res; ai && !found; ai = ai->ai_next) {
            if ((pass == 0) != (ai->ai_family == AF_INET))
                continue;
            int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            if (fd < 0)
                continue;
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
                getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
                const void *a = ss.ss_family == AF_INET
                                    ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                    : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
                found = inet_ntop(ss.ss_family, a, out, (socklen_t)outsz) != NULL;
            }
            close(fd);
        }
    }
    freeaddrinfo(res);
    if (!found)
        return dmri_err_set(err, DMRI_EIO,
                            "no local address routes to the scheduler host '%.300s' "
                            "(use --listen)", host);
    return 0;
}

int dmri_netaddr_listen_endpoint(const char *listen, const char *routed_ip, char *out,
                                 size_t outsz, dmri_err_t *err) {
    if (!listen) {
        dmri_wopts_endpoint(out, outsz, routed_ip, "*");
        return 0;
    }
    if (strncmp(listen, "tcp://", 6) == 0) {
        if ((size_t)snprintf(out, outsz, "%s", listen) >= outsz)
            return dmri_err_set(err, DMRI_ERANGE, "--listen: endpoint too long");
        return 0;
    }
    char host[1024];
    int port;
    if (dmri_wopts_parse_hostport(listen, 0, host, sizeof host, &port) != 0)
        return dmri_err_set(err, DMRI_EINVAL, "--listen '%.300s' is not HOST[:PORT]", listen);
    char ps[16];
    if (port)
        snprintf(ps, sizeof ps, "%d", port);
    else
        snprintf(ps, sizeof ps, "*");
    dmri_wopts_endpoint(out, outsz, host, ps);
    return 0;
}

void dmri_netaddr_announce(const char *last, const char *routed_ip, char *out, size_t outsz) {
    const char *colon = strrchr(last, ':');
    const char *hostp = strncmp(last, "tcp://", 6) == 0 ? last + 6 : NULL;
    if (hostp && colon && colon > hostp) {
        size_t hl = (size_t)(colon - hostp);
        if ((hl == 7 && strncmp(hostp, "0.0.0.0", 7) == 0) ||
            (hl == 4 && strncmp(hostp, "[::]", 4) == 0) || (hl == 1 && hostp[0] == '*')) {
            dmri_wopts_endpoint(out, outsz, routed_ip, colon + 1);
            return;
        }
    }
    snprintf(out, outsz, "%s", last);
}
