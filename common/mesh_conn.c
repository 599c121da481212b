/*  mesh_conn: non-blocking TCP and TLS connections.                          */
#include "mesh_conn.h"
#include "mesh_loop.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void
mesh_socket_tune (int fd)
{
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int flags = fcntl (fd, F_GETFL);
    fcntl (fd, F_SETFL, flags | O_NONBLOCK);
}

void
mesh_conn_init (mesh_conn_t *self, int fd)
{
    memset (self, 0, sizeof *self);
    self->fd = fd;
}

int
mesh_conn_connect (mesh_conn_t *self, const struct sockaddr *addr, socklen_t addr_len)
{
    int fd = socket (addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    mesh_socket_tune (fd);
    mesh_conn_init (self, fd);
    if (connect (fd, addr, addr_len) < 0) {
        if (errno != EINPROGRESS) {
            int saved = errno;
            close (fd);
            self->fd = -1;
            errno = saved;
            return -1;
        }
        self->connecting = true;
        self->want = MESH_WRITE;
    }
    return 0;
}

int
mesh_conn_tls_client (mesh_conn_t *self, SSL_CTX *ctx, const char *host)
{
    self->ssl = SSL_new (ctx);
    if (!self->ssl)
        return -1;
    SSL_set_fd (self->ssl, self->fd);
    SSL_set_connect_state (self->ssl);
    //  SSL_set_tlsext_host_name, whose macro casts const away (OpenSSL
    //  copies the name); through uintptr_t so that -Wcast-qual stays quiet
    SSL_ctrl (self->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
              (void *) (uintptr_t) host);
    //  Host name check: SSL_set1_host treats an IP literal as a DNS name, so
    //  give IP addresses to the IP matcher instead
    X509_VERIFY_PARAM *param = SSL_get0_param (self->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc (param, host) != 1
    &&  SSL_set1_host (self->ssl, host) != 1)
        return -1;
    self->handshaking = true;
    return 0;
}

int
mesh_conn_tls_server (mesh_conn_t *self, SSL_CTX *ctx)
{
    self->ssl = SSL_new (ctx);
    if (!self->ssl)
        return -1;
    SSL_set_fd (self->ssl, self->fd);
    SSL_set_accept_state (self->ssl);
    self->handshaking = true;
    return 0;
}

//  Maps an OpenSSL result to MESH_AGAIN (setting want) or -1.
static int
s_ssl_result (mesh_conn_t *self, int rc)
{
    int err = SSL_get_error (self->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        self->want = MESH_READ;
        return MESH_AGAIN;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        self->want = MESH_WRITE;
        return MESH_AGAIN;
    }
    if (err == SSL_ERROR_ZERO_RETURN)
        return 0;
    return -1;
}

int
mesh_conn_progress (mesh_conn_t *self, char *why, size_t why_size)
{
    if (self->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt (self->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == EINPROGRESS || err == EALREADY) {
            self->want = MESH_WRITE;
            return MESH_AGAIN;
        }
        if (err) {
            snprintf (why, why_size, "connect: %s", strerror (err));
            return -1;
        }
        //  SO_ERROR is 0 both when connected and while still connecting;
        //  a writable socket (the caller's cue) means connected
        self->connecting = false;
    }
    if (self->handshaking) {
        ERR_clear_error ();
        int rc = SSL_do_handshake (self->ssl);
        if (rc == 1) {
            self->handshaking = false;
            return 1;
        }
        int result = s_ssl_result (self, rc);
        if (result == MESH_AGAIN)
            return MESH_AGAIN;
        unsigned long code = ERR_peek_last_error ();
        long verify = SSL_get_verify_result (self->ssl);
        if (verify != X509_V_OK)
            snprintf (why, why_size, "TLS handshake: certificate: %s",
                      X509_verify_cert_error_string (verify));
        else
        if (code)
            snprintf (why, why_size, "TLS handshake: %s", ERR_reason_error_string (code));
        else
            snprintf (why, why_size, "TLS handshake: connection closed");
        return -1;
    }
    return 1;
}

ssize_t
mesh_conn_read (mesh_conn_t *self, void *buf, size_t len)
{
    if (self->ssl) {
        ERR_clear_error ();
        int rc = SSL_read (self->ssl, buf, (int) (len > INT32_MAX ? INT32_MAX : len));
        if (rc > 0)
            return rc;
        return s_ssl_result (self, rc);
    }
    ssize_t rc = read (self->fd, buf, len);
    if (rc >= 0)
        return rc;
    if (errno == EAGAIN || errno == EINTR) {
        self->want = MESH_READ;
        return MESH_AGAIN;
    }
    return -1;
}

ssize_t
mesh_conn_write (mesh_conn_t *self, const void *buf, size_t len)
{
    if (self->ssl) {
        ERR_clear_error ();
        int rc = SSL_write (self->ssl, buf, (int) (len > INT32_MAX ? INT32_MAX : len));
        if (rc > 0)
            return rc;
        rc = s_ssl_result (self, rc);
        return rc == 0 ? -1 : rc;
    }
    ssize_t rc = send (self->fd, buf, len, MSG_NOSIGNAL);
    if (rc >= 0)
        return rc;
    if (errno == EAGAIN || errno == EINTR) {
        self->want = MESH_WRITE;
        return MESH_AGAIN;
    }
    return -1;
}

void
mesh_conn_close (mesh_conn_t *self)
{
    if (self->ssl) {
        SSL_free (self->ssl);
        self->ssl = NULL;
    }
    if (self->fd >= 0) {
        close (self->fd);
        self->fd = -1;
    }
}

SSL_CTX *
mesh_tls_client_ctx (const char *ca_file, char *why, size_t why_size)
{
    SSL_CTX *ctx = SSL_CTX_new (TLS_client_method ());
    if (!ctx) {
        snprintf (why, why_size, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version (ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify (ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode (ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                         | SSL_MODE_RELEASE_BUFFERS);
    int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations (ctx, ca_file, NULL)
                                 : SSL_CTX_set_default_verify_paths (ctx);
    if (ok != 1) {
        snprintf (why, why_size, "cannot load CA certificates from %s",
                  ca_file && *ca_file ? ca_file : "the system store");
        SSL_CTX_free (ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *
mesh_tls_server_ctx (const char *cert_file, const char *key_file, bool tls13_only,
                     char *why, size_t why_size)
{
    SSL_CTX *ctx = SSL_CTX_new (TLS_server_method ());
    if (!ctx) {
        snprintf (why, why_size, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version (ctx, tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_mode (ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                         | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file (ctx, cert_file) != 1) {
        snprintf (why, why_size, "cannot load certificate %s", cert_file);
        SSL_CTX_free (ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file (ctx, key_file, SSL_FILETYPE_PEM) != 1
    ||  SSL_CTX_check_private_key (ctx) != 1) {
        snprintf (why, why_size, "cannot load private key %s (or it does not match %s)",
                  key_file, cert_file);
        SSL_CTX_free (ctx);
        return NULL;
    }
    return ctx;
}

int
mesh_split_host_port (const char *address, char *host, size_t host_size, int *port)
{
    const char *colon;
    if (address [0] == '[') {
        const char *close = strchr (address, ']');
        if (!close || close [1] != ':')
            return -1;
        snprintf (host, host_size, "%.*s", (int) (close - address - 1), address + 1);
        colon = close + 1;
    }
    else {
        colon = strrchr (address, ':');
        if (!colon)
            return -1;
        snprintf (host, host_size, "%.*s", (int) (colon - address), address);
    }
    char *end;
    long value = strtol (colon + 1, &end, 10);
    if (end == colon + 1 || *end || value <= 0 || value > 65535)
        return -1;
    *port = (int) value;
    return 0;
}

int
mesh_tcp_listen (const char *address, bool reuseport, char *why, size_t why_size)
{
    char host [256];
    int port;
    if (mesh_split_host_port (address, host, sizeof host, &port) < 0) {
        snprintf (why, why_size, "listen address \"%s\": expected host:port", address);
        return -1;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE };
    struct addrinfo *info;
    char service [8];
    snprintf (service, sizeof service, "%d", port);
    int rc = getaddrinfo (*host ? host : NULL, service, &hints, &info);
    if (rc != 0) {
        snprintf (why, why_size, "listen address \"%s\": %s", address, gai_strerror (rc));
        return -1;
    }
    int fd = socket (info->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf (why, why_size, "listen %s: %s", address, strerror (errno));
        freeaddrinfo (info);
        return -1;
    }
    int one = 1;
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt (fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind (fd, info->ai_addr, info->ai_addrlen) < 0 || listen (fd, 4096) < 0) {
        snprintf (why, why_size, "listen %s: %s", address, strerror (errno));
        close (fd);
        freeaddrinfo (info);
        return -1;
    }
    freeaddrinfo (info);
    return fd;
}

void
mesh_conn_test (bool verbose)
{
    (void) verbose;
    char host [64], why [128];
    int port;
    assert (mesh_split_host_port ("127.0.0.1:9080", host, sizeof host, &port) == 0);
    assert (strcmp (host, "127.0.0.1") == 0 && port == 9080);
    assert (mesh_split_host_port ("[::1]:443", host, sizeof host, &port) == 0);
    assert (strcmp (host, "::1") == 0 && port == 443);
    assert (mesh_split_host_port (":80", host, sizeof host, &port) == 0 && host [0] == 0);
    assert (mesh_split_host_port ("nohost", host, sizeof host, &port) == -1);
    assert (mesh_split_host_port ("h:99999", host, sizeof host, &port) == -1);

    //  A plain connection over loopback: connect, progress, write, read
    int listener = mesh_tcp_listen ("127.0.0.1:0", false, why, sizeof why);
    assert (listener < 0);              //  port 0 is refused by the parser
    listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert (bind (listener, (struct sockaddr *) &addr, sizeof addr) == 0);
    assert (listen (listener, 4) == 0);
    socklen_t len = sizeof addr;
    getsockname (listener, (struct sockaddr *) &addr, &len);
    mesh_conn_t conn;
    assert (mesh_conn_connect (&conn, (struct sockaddr *) &addr, sizeof addr) == 0);
    int server = accept (listener, NULL, NULL);
    assert (server >= 0);
    struct pollfd pfd = { .fd = conn.fd, .events = POLLOUT };
    assert (poll (&pfd, 1, 1000) == 1);
    assert (mesh_conn_progress (&conn, why, sizeof why) == 1);
    char buf [16];
    assert (mesh_conn_read (&conn, buf, sizeof buf) == MESH_AGAIN && conn.want == MESH_READ);
    assert (mesh_conn_write (&conn, "ping", 4) == 4);
    assert (read (server, buf, sizeof buf) == 4 && memcmp (buf, "ping", 4) == 0);
    close (server);
    pfd = (struct pollfd) { .fd = conn.fd, .events = POLLIN };
    assert (poll (&pfd, 1, 1000) == 1);
    assert (mesh_conn_read (&conn, buf, sizeof buf) == 0);     //  end of stream
    mesh_conn_close (&conn);
    assert (conn.fd == -1);
    close (listener);

    //  A refused connection is reported by progress
    assert (mesh_conn_connect (&conn, (struct sockaddr *) &addr, sizeof addr) == 0);
    pfd = (struct pollfd) { .fd = conn.fd, .events = POLLOUT };
    poll (&pfd, 1, 1000);
    assert (mesh_conn_progress (&conn, why, sizeof why) == -1);
    assert (strstr (why, "refused"));
    mesh_conn_close (&conn);

    //  The client context loads the system store
    SSL_CTX *ctx = mesh_tls_client_ctx (NULL, why, sizeof why);
    assert (ctx);
    SSL_CTX_free (ctx);
    assert (!mesh_tls_client_ctx ("/nonexistent/ca.pem", why, sizeof why));
    assert (!mesh_tls_server_ctx ("/nonexistent/c.pem", "/nonexistent/k.pem", true, why, sizeof why));
}
