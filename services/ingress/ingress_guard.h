/*  ingress_guard: who may connect, and how often a client without a valid
    key may ask.

    - Connections: a global cap and a cap per client address.  A
      connection over either is closed as soon as it is accepted, before a
      byte is read, so thousands of idle or trickling connections from one
      address cannot take the file descriptors normal clients need.
    - Unauthenticated requests: each address has a token bucket that only
      refusals made before a key was authenticated draw from (no key, a
      key the router does not know, a body refused by the validator).
      While an address's bucket is empty its requests are refused at once
      with 429, without a trip to a router and without an audit record —
      unless they carry a key that has recently been accepted, so that a
      client sharing an address (a NAT, a proxy) with a flood is not shut
      out with it.

    Pure bookkeeping: the lws glue (which callback counts what) is in
    ingress_http.c.  lws service thread only.                              */
#ifndef INGRESS_GUARD_H
#define INGRESS_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ingress_guard_t ingress_guard_t;

typedef struct {
    int64_t max_connections;            //  0: no cap
    int64_t max_per_address;            //  0: no cap
    double unauth_per_second;           //  bucket refill; 0: no limiter
    double unauth_burst;                //  bucket size
} ingress_guard_limits_t;

enum { INGRESS_GUARD_OK, INGRESS_GUARD_FULL, INGRESS_GUARD_ADDRESS_FULL };

ingress_guard_t *ingress_guard_new (const ingress_guard_limits_t *limits);
void ingress_guard_destroy (ingress_guard_t **self_p);

//  A connection (any pointer that names it) from address was accepted:
//  INGRESS_GUARD_OK when it may stay (it is counted until disconnect),
//  else why it must be closed.
int  ingress_guard_connect (ingress_guard_t *self, const void *conn, const char *address);
//  The connection is gone (a connection never counted is ignored).
void ingress_guard_disconnect (ingress_guard_t *self, const void *conn);
//  The address of a counted connection, or NULL.
const char *ingress_guard_address (ingress_guard_t *self, const void *conn);
size_t ingress_guard_connections (ingress_guard_t *self);

//  A request arrived on conn, with the SHA-256 of its key (NULL: none):
//  false when its address is throttled and the key is not known good.
bool ingress_guard_admit (ingress_guard_t *self, const void *conn, const unsigned char *key_hash,
                          int64_t now_ms);
//  A request on conn was refused before its key was authenticated.
void ingress_guard_unauthenticated (ingress_guard_t *self, const void *conn, int64_t now_ms);
//  A router accepted this key: its requests pass a throttled address.
void ingress_guard_key_accepted (ingress_guard_t *self, const unsigned char *key_hash, int64_t now_ms);

void ingress_guard_test (bool verbose);

#endif
