/*  ctl_http: a blocking HTTP/1.1 client for one request per connection.
    The socket stays non-blocking and every step waits in poll(2), so a
    router that accepts but never answers costs timeout_ms, not forever.    */
#include "ctl_http.h"
#include "mesh_http.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (64 * 1024)

//  1 when fd is ready for events, 0 when timeout_ms passed, -1 on error.
static int
s_wait (int fd, short events, int timeout_ms)
{
    struct pollfd item = { .fd = fd, .events = events };
    int rc;
    do
        rc = poll (&item, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    return rc;
}

//  Tries each address of host in turn; the connected socket or -1.
static int
s_connect (const char *host, const char *port, int timeout_ms, char *why, size_t why_size)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *list;
    int rc = getaddrinfo (host, port, &hints, &list);
    if (rc != 0) {
        snprintf (why, why_size, "cannot resolve %s: %s", host,
                  rc == EAI_SYSTEM ? strerror (errno) : gai_strerror (rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        fd = socket (ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai->ai_protocol);
        if (fd < 0) {
            snprintf (why, why_size, "socket: %s", strerror (errno));
            continue;
        }
        int error = 0;
        if (connect (fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            error = errno;
            if (error == EINPROGRESS) {
                socklen_t size = sizeof error;
                int ready = s_wait (fd, POLLOUT, timeout_ms);
                if (ready == 0)
                    error = ETIMEDOUT;
                else
                if (ready < 0 || getsockopt (fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0)
                    error = errno;
            }
        }
        if (error) {
            if (error == ETIMEDOUT)
                snprintf (why, why_size, "connect: no answer within %d ms", timeout_ms);
            else
                snprintf (why, why_size, "connect: %s", strerror (error));
            close (fd);
            fd = -1;
        }
    }
    freeaddrinfo (list);
    return fd;
}

static int
s_send_all (int fd, const char *data, size_t size, int timeout_ms, char *why, size_t why_size)
{
    while (size > 0) {
        ssize_t sent = send (fd, data, size, MSG_NOSIGNAL);
        if (sent < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (s_wait (fd, POLLOUT, timeout_ms) <= 0) {
                snprintf (why, why_size, "send: stalled for %d ms", timeout_ms);
                return -1;
            }
            continue;
        }
        if (sent < 0) {
            snprintf (why, why_size, "send: %s", strerror (errno));
            return -1;
        }
        data += sent;
        size -= (size_t) sent;
    }
    return 0;
}

//  Reads one response: the head into a buffer of its own, then the body
//  straight from each read into response->body, or, for a 2xx with fn,
//  to fn as it comes (idle_ms between pieces; -1: no limit).
static int
s_read_response (int fd, int timeout_ms, ctl_http_response_t *response,
                 ctl_http_data_fn *fn, void *arg, int idle_ms, char *why, size_t why_size)
{
    mesh_buf_t head_bytes;
    mesh_buf_init (&head_bytes);
    mesh_http_head_t head;
    mesh_http_chunked_t decoder;
    bool have_head = false;
    bool chunked = false;
    int64_t remaining = -1;             //  body bytes to come; -1: until the end of stream
    bool done = false;
    int rc = -1;
    char input [16 * 1024];

    while (!done) {
        bool streaming = fn && have_head && response->status >= 200 && response->status < 300;
        int ready = s_wait (fd, POLLIN, streaming ? idle_ms : timeout_ms);
        if (ready <= 0) {
            if (ready == 0)
                snprintf (why, why_size, "no response within %d ms", streaming ? idle_ms : timeout_ms);
            else
                snprintf (why, why_size, "poll: %s", strerror (errno));
            goto cleanup;
        }
        ssize_t got = recv (fd, input, sizeof input, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got < 0) {
            snprintf (why, why_size, "recv: %s", strerror (errno));
            goto cleanup;
        }
        if (got == 0) {
            //  Only a body without length or coding ends with the stream
            if (have_head && !chunked && remaining < 0)
                break;
            snprintf (why, why_size, "the connection closed before a whole response");
            goto cleanup;
        }
        char *data = input;
        size_t size = (size_t) got;
        if (!have_head) {
            mesh_buf_append (&head_bytes, input, size);
            int head_size = mesh_http_parse_response (mesh_buf_head (&head_bytes),
                                                      mesh_buf_size (&head_bytes),
                                                      MAX_HEAD_BYTES, &head);
            if (head_size < 0) {
                snprintf (why, why_size, "not an HTTP/1.1 response");
                goto cleanup;
            }
            if (head_size == 0)
                continue;
            have_head = true;
            response->status = head.status;
            chunked = head.chunked;
            remaining = head.content_length;
            if (head.status < 200 || head.status == 204 || head.status == 304) {
                chunked = false;
                remaining = 0;
            }
            if (chunked)
                mesh_http_chunked_init (&decoder);
            data = mesh_buf_head (&head_bytes) + head_size;
            size = mesh_buf_size (&head_bytes) - (size_t) head_size;
        }
        bool to_fn = fn && response->status >= 200 && response->status < 300;
        if (chunked) {
            size_t used;
            int64_t payload = mesh_http_chunked_decode (&decoder, data, size, &used);
            if (payload < 0) {
                snprintf (why, why_size, "malformed chunked body");
                goto cleanup;
            }
            if (to_fn)
                fn (arg, data, (size_t) payload);
            else
                mesh_buf_append (&response->body, data, (size_t) payload);
            done = decoder.done;
        }
        else {
            if (remaining >= 0 && (int64_t) size > remaining)
                size = (size_t) remaining;      //  bytes past the body: not ours
            if (to_fn)
                fn (arg, data, size);
            else
                mesh_buf_append (&response->body, data, size);
            if (remaining >= 0)
                remaining -= (int64_t) size;
            done = remaining == 0;
        }
        if (mesh_buf_size (&response->body) > CTL_HTTP_MAX_BODY_BYTES) {
            snprintf (why, why_size, "response body over %d bytes", CTL_HTTP_MAX_BODY_BYTES);
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    mesh_buf_free (&head_bytes);
    return rc;
}

static int
s_request (const char *host, const char *port, int timeout_ms, const char *method,
           const char *path, const char *headers, const char *body, size_t body_len,
           ctl_http_response_t *response, ctl_http_data_fn *fn, void *arg, int idle_ms,
           char *why, size_t why_size)
{
    response->status = 0;
    mesh_buf_init (&response->body);
    int fd = s_connect (host, port, timeout_ms, why, why_size);
    if (fd < 0)
        return -1;

    mesh_buf_t request;
    mesh_buf_init (&request);
    bool v6 = strchr (host, ':') != NULL;
    mesh_buf_printf (&request,
                     "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: seekmeshctl\r\n"
                     "Accept: application/json\r\nConnection: close\r\n%s",
                     method, path, v6 ? "[" : "", host, v6 ? "]" : "", port, headers);
    //  A POST or PUT without a body still says so, or servers wait or 411
    if (body || !(mesh_streq (method, "GET") || mesh_streq (method, "DELETE")))
        mesh_buf_printf (&request, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                         body ? body_len : 0);
    mesh_buf_append_str (&request, "\r\n");
    if (body)
        mesh_buf_append (&request, body, body_len);

    int rc = s_send_all (fd, mesh_buf_head (&request), mesh_buf_size (&request), timeout_ms,
                         why, why_size);
    if (rc == 0)
        rc = s_read_response (fd, timeout_ms, response, fn, arg, idle_ms, why, why_size);
    mesh_buf_free (&request);
    close (fd);
    return rc;
}

int
ctl_http_request (const char *host, const char *port, int timeout_ms,
                  const char *method, const char *path, const char *headers,
                  const char *body, size_t body_len,
                  ctl_http_response_t *response, char *why, size_t why_size)
{
    return s_request (host, port, timeout_ms, method, path, headers, body, body_len, response,
                      NULL, NULL, 0, why, why_size);
}

int
ctl_http_stream (const char *host, const char *port, int timeout_ms, int idle_ms,
                 const char *path, const char *headers, ctl_http_response_t *response,
                 ctl_http_data_fn *fn, void *arg, char *why, size_t why_size)
{
    return s_request (host, port, timeout_ms, "GET", path, headers, NULL, 0, response,
                      fn, arg, idle_ms, why, why_size);
}

int
ctl_http_parse_address (const char *text, char *host, size_t host_size,
                        char *port, size_t port_size, char *why, size_t why_size)
{
    const char *at = text;
    const char *default_port = NULL;
    if (strncmp (at, "https://", 8) == 0) {
        snprintf (why, why_size, "%s: the admin API is plain HTTP (no https)", text);
        return -1;
    }
    if (strncmp (at, "http://", 7) == 0) {
        at += 7;
        default_port = "80";
    }
    const char *host_start = at, *host_end;
    if (*at == '[') {                   //  [v6 address]
        host_start = at + 1;
        host_end = strchr (host_start, ']');
        if (!host_end)
            goto malformed;
        at = host_end + 1;
    }
    else {
        at += strcspn (at, ":/");
        host_end = at;
    }
    size_t host_len = (size_t) (host_end - host_start);
    const char *port_start = default_port;
    size_t port_len = default_port ? strlen (default_port) : 0;
    if (*at == ':') {
        port_start = ++at;
        port_len = strspn (at, "0123456789");
        at += port_len;
    }
    if (*at == '/')
        at++;
    if (host_len == 0 || host_len >= host_size || *at || !port_start
    ||  port_len == 0 || port_len > 5 || port_len >= port_size)
        goto malformed;
    long number = strtol (port_start, NULL, 10);
    if (number < 1 || number > 65535)
        goto malformed;
    memcpy (host, host_start, host_len);
    host [host_len] = 0;
    snprintf (port, port_size, "%ld", number);
    return 0;
malformed:
    snprintf (why, why_size, "'%s' is not HOST:PORT or http://HOST:PORT", text);
    return -1;
}

void
ctl_http_escape (mesh_buf_t *path, const char *text)
{
    static const char hex [] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *) text; *c; c++) {
        bool unreserved = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')
                       || (*c >= '0' && *c <= '9') || *c == '-' || *c == '.'
                       || *c == '_' || *c == '~';
        if (unreserved)
            mesh_buf_append (path, c, 1);
        else
            mesh_buf_printf (path, "%%%c%c", hex [*c >> 4], hex [*c & 15]);
    }
}

void
ctl_http_test (bool verbose)
{
    (void) verbose;
    char host [64], port [8], why [128];
    assert (ctl_http_parse_address ("127.0.0.1:9081", host, sizeof host, port, sizeof port,
                                    why, sizeof why) == 0);
    assert (mesh_streq (host, "127.0.0.1") && mesh_streq (port, "9081"));
    assert (ctl_http_parse_address ("http://localhost:9081/", host, sizeof host, port,
                                    sizeof port, why, sizeof why) == 0);
    assert (mesh_streq (host, "localhost") && mesh_streq (port, "9081"));
    assert (ctl_http_parse_address ("http://admin.internal", host, sizeof host, port,
                                    sizeof port, why, sizeof why) == 0);
    assert (mesh_streq (host, "admin.internal") && mesh_streq (port, "80"));
    assert (ctl_http_parse_address ("[::1]:9081", host, sizeof host, port, sizeof port,
                                    why, sizeof why) == 0);
    assert (mesh_streq (host, "::1") && mesh_streq (port, "9081"));
    const char *bad [] = { "localhost", ":9081", "h:0", "h:65536", "h:90x", "h:9081/admin",
                           "https://h:9081", "[::1:9081", "" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++)
        assert (ctl_http_parse_address (bad [i], host, sizeof host, port, sizeof port,
                                        why, sizeof why) == -1);

    mesh_buf_t path;
    mesh_buf_init (&path);
    ctl_http_escape (&path, "Qwen/Qwen2 7B~v1.5_x-%?#");
    assert (mesh_memeq (mesh_buf_head (&path), mesh_buf_size (&path),
                        "Qwen%2FQwen2%207B~v1.5_x-%25%3F%23"));
    mesh_buf_reset (&path);
    ctl_http_escape (&path, "\xc3\xa9");
    assert (mesh_memeq (mesh_buf_head (&path), mesh_buf_size (&path), "%C3%A9"));
    mesh_buf_free (&path);

    //  A port nobody listens on: refused at once, not a timeout
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t size = sizeof addr;
    assert (fd >= 0 && bind (fd, (struct sockaddr *) &addr, size) == 0);
    assert (getsockname (fd, (struct sockaddr *) &addr, &size) == 0);
    snprintf (port, sizeof port, "%d", ntohs (addr.sin_port));
    close (fd);
    ctl_http_response_t response;
    assert (ctl_http_request ("127.0.0.1", port, 1000, "GET", "/", "", NULL, 0, &response,
                              why, sizeof why) == -1);
    assert (strstr (why, "refused"));
    mesh_buf_free (&response.body);
}
