/* netaddr: the addresses a worker is reached at — the local address that
 * routes to the scheduler (where other workers will find us too), the
 * endpoint --listen asks for, and the endpoint to announce once bound. */
#ifndef DMRI_NETADDR_H
#define DMRI_NETADDR_H

#include <stddef.h>

#include "dmri_err.h"

/* The local address the kernel would use to reach host:port ("10.0.0.7",
 * "::1"); IPv4 preferred. No packet is sent: connect() on a UDP socket only
 * picks a route. Errors name the host. */
int dmri_netaddr_routed_ip(const char *host, int port, char *out, size_t outsz,
                           dmri_err_t *err);

/* The endpoint to bind for --listen: NULL -> tcp://ROUTED_IP:*, a tcp://
 * endpoint as is, HOST[:PORT] -> tcp://HOST:PORT (PORT * when absent). */
int dmri_netaddr_listen_endpoint(const char *listen, const char *routed_ip, char *out,
                                 size_t outsz, dmri_err_t *err);

/* The endpoint to announce for a socket bound to `last` (ZMQ_LAST_ENDPOINT):
 * a wildcard host (0.0.0.0, [::], *) becomes routed_ip. */
void dmri_netaddr_announce(const char *last, const char *routed_ip, char *out, size_t outsz);

#endif
