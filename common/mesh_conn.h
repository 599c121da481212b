/*  mesh_conn: a non-blocking TCP connection, plain or TLS (OpenSSL).

    Reads and writes return the byte count, 0 at end of stream (read), -1 on
    error, or MESH_AGAIN when the socket is not ready; then `want` says
    whether to wait for MESH_READ or MESH_WRITE (TLS may need to write to
    read).  TLS may hold decrypted bytes the socket no longer signals, so a
    reader reads until MESH_AGAIN.  Clients verify the server certificate
    and its host name; there is no switch to turn that off.
    Single-threaded per connection.                                          */
#ifndef MESH_CONN_H
#define MESH_CONN_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define MESH_AGAIN (-2)

typedef struct {
    int fd;
    SSL *ssl;                   //  NULL for plain TCP
    bool connecting;            //  TCP connect in progress
    bool handshaking;           //  TLS handshake in progress
    int want;                   //  MESH_READ / MESH_WRITE after MESH_AGAIN
} mesh_conn_t;

void    mesh_conn_init (mesh_conn_t *self, int fd);
//  Starts a non-blocking connect; returns 0, or -1 with errno.
int     mesh_conn_connect (mesh_conn_t *self, const struct sockaddr *addr, socklen_t addr_len);
//  Wraps the connection in TLS, as a client checking `host` (also sent as
//  SNI), or as a server.  The handshake runs in mesh_conn_progress.
int     mesh_conn_tls_client (mesh_conn_t *self, SSL_CTX *ctx, const char *host);
int     mesh_conn_tls_server (mesh_conn_t *self, SSL_CTX *ctx);
//  Drives connect and handshake: 1 when ready for data, MESH_AGAIN, or -1
//  with a reason in why.
int     mesh_conn_progress (mesh_conn_t *self, char *why, size_t why_size);
ssize_t mesh_conn_read (mesh_conn_t *self, void *buf, size_t len);
ssize_t mesh_conn_write (mesh_conn_t *self, const void *buf, size_t len);
//  Closes the socket (a TLS close_notify is not waited for).
void    mesh_conn_close (mesh_conn_t *self);

//  A client context that verifies peers against ca_file, or the system's
//  CA store when ca_file is NULL.  NULL with a reason on failure.
SSL_CTX *mesh_tls_client_ctx (const char *ca_file, char *why, size_t why_size);
//  A server context for cert_file/key_file; TLS 1.3 only when tls13_only.
SSL_CTX *mesh_tls_server_ctx (const char *cert_file, const char *key_file,
                              bool tls13_only, char *why, size_t why_size);

//  Sets TCP_NODELAY, SO_KEEPALIVE and O_NONBLOCK on a socket.
void    mesh_socket_tune (int fd);

//  Splits "host:port" ("[::1]:port", ":port" for any address) into host
//  and port.  Returns -1 if it has no valid port.
int     mesh_split_host_port (const char *address, char *host, size_t host_size, int *port);
//  A non-blocking listening socket on address.  reuseport lets several
//  processes share the port.  -1 with a reason naming the address.
int     mesh_tcp_listen (const char *address, bool reuseport, char *why, size_t why_size);

void    mesh_conn_test (bool verbose);

#endif
