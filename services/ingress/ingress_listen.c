/*  ingress_listen: the ingress's listening sockets, handed from one
    process to the next on a restart, and the reply address it advertises.

    The client ports (ingress.listen, ingress.tls_listen) are sockets of our
    own (SO_REUSEPORT, so instances of one host share them), watched in the
    lws loop: what they accept is adopted into lws vhosts that do not listen
    themselves.  The admin port is handed over the same way; its vhost is
    made with CONTEXT_PORT_NO_LISTEN rather than _NO_LISTEN_SERVER, since
    lws moves a request to the first vhost of its vhost's port number, and
    the API's would otherwise take the admin requests.  Owning them is what lets a
    restart lose nothing, as nginx's binary upgrade does: with
    ingress.handover_path set (scripts/mesh sets it), a running ingress
    listens on that unix socket, and a new process of the same instance
    started beside it connects there first and receives the very sockets
    (SCM_RIGHTS), pending connections and all.  Both accept for a moment;
    once the new one is ready (a router connected, or after
    HANDOVER_READY_MS regardless) it says READY, the old one stops
    accepting (its copies closed, the sockets live on in the new process),
    gives up the handover path, answers RELEASED and drains: requests in
    flight finish, those that come on its open connections are answered
    with `Connection: close`.  The new one then listens on the path for
    the next restart.  Its reply endpoint, still bound by the old process,
    moves to a free port of the same host for this process's life.

    On SIGTERM without a successor (a Kubernetes pod stopping, scripts/mesh
    down) an ingress accepts what is already queued, closes its listening
    sockets and drains the same way.

    The reply address (ingress_listen_reply_address): ingress.reply_advertise
    if set; else the reply endpoint's own host, unless it binds every
    address: then the address in the environment variable named by
    ingress.reply_host_env (SEEKMESH_POD_IP: a pod's IP from the downward
    API), else the first non-loopback IPv4 address of an interface that is
    up.  lws service thread only.                                          */
#include "ingress.h"
#include "ingress_guard.h"

#include "mesh_conn.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define HANDOVER_READY_MS   10000   //  a successor takes over after this even if not ready
#define HANDOVER_WAIT_MS    3000    //  how long a successor waits for the sockets
#define HANDOVER_MAGIC      "seekmesh-handover-1"
#define ACCEPT_BATCH        1024    //  at most per wake-up, then the loop goes round

enum { L_API, L_TLS, L_ADMIN, L_COUNT };
static const char *const s_names [L_COUNT] = { "api", "api-tls", "admin" };

typedef struct {
    ingress_listen_t *owner;
    int fd;                     //  -1: none
    char address [256];         //  host:port, as configured
    struct lws_vhost *vhost;
    bool tls;
    bool clients;               //  client connections, not admin
    ingress_watch_t watch;
} listener_t;

struct ingress_listen_t {
    ingress_t *ingress;
    listener_t listeners [L_COUNT];
    char path [sizeof ((struct sockaddr_un *) 0)->sun_path];
    int handover_fd;            //  our listening unix socket, or -1
    ingress_watch_t handover_watch;
    int peer_fd;                //  the other process, during a handover
    ingress_watch_t peer_watch;
    bool successor;             //  this process took its sockets over
    bool handed_over;           //  ... or gave them away
    bool accepting;
    int64_t started_ms;
    lws_sorted_usec_list_t ready_sul;
};

//  Sockets ------------------------------------------------------------------------

//  A vhost that does not listen: our sockets feed it.  port tells vhosts
//  apart (see above)
static struct lws_vhost *
s_vhost (ingress_t *ingress, const char *name, int port, const struct lws_protocols *protocols,
         const char *cert, const char *key, char *why, size_t why_size)
{
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.vhost_name = name;
    info.port = port;
    info.protocols = protocols;
    info.keepalive_timeout = ingress->idle_timeout_s;
    //  A request head must be complete this long after its first byte
    info.timeout_secs_ah_idle = ingress->header_timeout_s;
    info.server_string = "seekmesh";
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cert;
        info.ssl_private_key_filepath = key;
        //  TLS 1.3 only: older versions are refused at the handshake
        info.ssl_options_set = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2;
        info.alpn = "h2,http/1.1";
    }
    struct lws_vhost *vhost = lws_create_vhost (ingress->context, &info);
    if (!vhost)
        snprintf (why, why_size, "cannot make the %s vhost (bad TLS files?)", name);
    return vhost;
}

static int
s_bind (listener_t *listener, char *why, size_t why_size)
{
    const char *name = s_names [listener - listener->owner->listeners];
    char host [256];
    int port;
    if (mesh_split_host_port (listener->address, host, sizeof host, &port) < 0) {
        snprintf (why, why_size, "%s: \"%s\" is not host:port", name, listener->address);
        return -1;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    if (!*host || strcmp (host, "0.0.0.0") == 0 || strcmp (host, "*") == 0)
        addr.sin_addr.s_addr = htonl (INADDR_ANY);
    else
    if (strcmp (host, "localhost") == 0)
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    else
    if (inet_pton (AF_INET, host, &addr.sin_addr) != 1) {
        snprintf (why, why_size, "%s: \"%s\" must be a numeric IPv4 address (or 0.0.0.0)", name, host);
        return -1;
    }
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0
    ||  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
    ||  setsockopt (fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0
    ||  bind (fd, (struct sockaddr *) &addr, sizeof addr) < 0
    ||  listen (fd, SOMAXCONN) < 0) {
        snprintf (why, why_size, "cannot listen on %s for %s: %s", listener->address, name,
                  strerror (errno));
        if (fd >= 0)
            close (fd);
        return -1;
    }
    listener->fd = fd;
    return 0;
}

//  Accepts what is queued on a listening socket into its vhost
static void
s_on_accept (ingress_t *ingress, ingress_watch_t *watch)
{
    listener_t *listener = watch->arg;
    ingress_listen_t *self = listener->owner;
    (void) ingress;
    for (int n = 0; n < ACCEPT_BATCH && self->accepting && listener->fd >= 0; n++) {
        int fd = accept4 (listener->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                mesh_warn ("accept on %s: %s", listener->address, strerror (errno));
            return;
        }
        lws_sock_file_fd_type descriptor;
        descriptor.sockfd = fd;
        int type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | (listener->tls ? LWS_ADOPT_ALLOW_SSL : 0);
        //  NULL when lws closed it (ingress_guard's caps refused it)
        lws_adopt_descriptor_vhost (listener->vhost, (lws_adoption_type) type, descriptor, NULL, NULL);
    }
}

//  The handover, old side -----------------------------------------------------------

static void
s_close_listeners (ingress_listen_t *self)
{
    self->accepting = false;
    for (int i = 0; i < L_COUNT; i++) {
        listener_t *listener = &self->listeners [i];
        if (listener->fd < 0)
            continue;
        ingress_unadopt (&listener->watch);     //  closes our copy
        listener->fd = -1;
    }
}

static void
s_close_handover (ingress_listen_t *self, bool unlink_path)
{
    if (self->handover_fd >= 0) {
        ingress_unadopt (&self->handover_watch);
        self->handover_fd = -1;
        if (unlink_path)
            unlink (self->path);
    }
}

static void
s_close_peer (ingress_listen_t *self)
{
    if (self->peer_fd >= 0) {
        ingress_unadopt (&self->peer_watch);
        self->peer_fd = -1;
    }
}

//  The successor says it is ready: stop accepting, give up the path, drain
static void
s_on_successor (ingress_t *ingress, ingress_watch_t *watch)
{
    (void) watch;
    ingress_listen_t *self = ingress->listen;
    char message [64];
    ssize_t n = recv (self->peer_fd, message, sizeof message - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0 || strncmp (message, "READY", 5) != 0) {
        //  It went away before it was ready: we go on as we were
        mesh_warn ("handover: the new process left before taking over; serving on");
        s_close_peer (self);
        return;
    }
    s_close_listeners (self);
    s_close_handover (self, true);
    self->handed_over = true;
    if (send (self->peer_fd, "RELEASED", 8, MSG_NOSIGNAL) != 8)
        mesh_warn ("handover: cannot answer the new process: %s", strerror (errno));
    s_close_peer (self);
    mesh_info ("handover: the new process accepts now; draining %zu requests",
               ingress_mesh_active (ingress));
    ingress_drain (ingress);
}

//  A new process of this instance asks for the sockets
static void
s_on_handover (ingress_t *ingress, ingress_watch_t *watch)
{
    (void) watch;
    ingress_listen_t *self = ingress->listen;
    int fd = accept4 (self->handover_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != getuid ()
    ||  self->peer_fd >= 0 || ingress->draining) {
        mesh_warn ("handover: refused a request (pid %d, uid %d)", (int) cred.pid, (int) cred.uid);
        close (fd);
        return;
    }
    //  The sockets, and which is which
    char text [1024];
    int fds [L_COUNT], count = 0;
    int at = snprintf (text, sizeof text, "%s", HANDOVER_MAGIC);
    for (int i = 0; i < L_COUNT; i++)
        if (self->listeners [i].fd >= 0) {
            fds [count++] = self->listeners [i].fd;
            at += snprintf (text + at, sizeof text - (size_t) at, " %s=%s", s_names [i],
                            self->listeners [i].address);
        }
    struct iovec iov = { text, strlen (text) };
    char control [CMSG_SPACE (sizeof fds)];
    memset (control, 0, sizeof control);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                          .msg_controllen = CMSG_SPACE (sizeof (int) * (size_t) count) };
    struct cmsghdr *cmsg = CMSG_FIRSTHDR (&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN (sizeof (int) * (size_t) count);
    memcpy (CMSG_DATA (cmsg), fds, sizeof (int) * (size_t) count);
    if (sendmsg (fd, &msg, MSG_NOSIGNAL) < 0) {
        mesh_warn ("handover: cannot send the sockets to pid %d: %s", (int) cred.pid, strerror (errno));
        close (fd);
        return;
    }
    mesh_info ("handover: pid %d has our sockets; serving until it is ready", (int) cred.pid);
    fcntl (fd, F_SETFL, O_NONBLOCK);
    self->peer_fd = fd;
    if (ingress_adopt_fd (ingress, &self->peer_watch, fd, s_on_successor) < 0) {
        self->peer_fd = -1;
        mesh_warn ("handover: cannot watch pid %d", (int) cred.pid);
    }
}

//  Listens on the handover path for the next process of this instance
static void
s_offer (ingress_listen_t *self)
{
    if (!self->path [0])
        return;
    int fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf (addr.sun_path, sizeof addr.sun_path, "%s", self->path);
    unlink (self->path);
    mode_t mask = umask (077);
    int rc = fd >= 0 ? bind (fd, (struct sockaddr *) &addr, sizeof addr) : -1;
    umask (mask);
    if (rc < 0 || listen (fd, 4) < 0) {
        mesh_warn ("handover: cannot listen on %s: %s (a restart will not be hitless)", self->path,
                   strerror (errno));
        if (fd >= 0)
            close (fd);
        return;
    }
    self->handover_fd = fd;
    if (ingress_adopt_fd (self->ingress, &self->handover_watch, fd, s_on_handover) < 0)
        self->handover_fd = -1;
}

//  The handover, new side -----------------------------------------------------------

//  Asks a running process of this instance for its sockets.  Blocks (at
//  start, before the loop runs) for at most HANDOVER_WAIT_MS.  0 with the
//  sockets in the listeners, -1 when there is nobody to take over from.
static int
s_take_over (ingress_listen_t *self)
{
    int fd = socket (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf (addr.sun_path, sizeof addr.sun_path, "%s", self->path);
    if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr) < 0) {
        if (fd >= 0)
            close (fd);
        return -1;                  //  nobody there (or a stale path)
    }
    struct timeval wait = { HANDOVER_WAIT_MS / 1000, (HANDOVER_WAIT_MS % 1000) * 1000 };
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    char text [1024];
    int fds [L_COUNT];
    char control [CMSG_SPACE (sizeof fds)];
    struct iovec iov = { text, sizeof text - 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                          .msg_controllen = sizeof control };
    ssize_t n = recvmsg (fd, &msg, MSG_CMSG_CLOEXEC);
    struct cmsghdr *cmsg = n > 0 ? CMSG_FIRSTHDR (&msg) : NULL;
    if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) {
        mesh_warn ("handover: no sockets from %s: %s", self->path, n < 0 ? strerror (errno) : "none");
        close (fd);
        return -1;
    }
    int count = (int) ((cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int));
    memcpy (fds, CMSG_DATA (cmsg), sizeof (int) * (size_t) MESH_MIN (count, L_COUNT));
    text [n] = 0;
    //  "magic api=127.0.0.1:8080 admin=127.0.0.1:9080": each socket is
    //  taken only for the address this process is configured with
    int taken = 0, got = 0;
    char *save = NULL;
    char *word = strtok_r (text, " ", &save);
    bool magic = word && strcmp (word, HANDOVER_MAGIC) == 0;
    while (magic && (word = strtok_r (NULL, " ", &save)) && got < count) {
        int socket_fd = fds [got++];
        char *eq = strchr (word, '=');
        bool used = false;
        for (int i = 0; eq && i < L_COUNT && !used; i++) {
            listener_t *listener = &self->listeners [i];
            if (listener->fd < 0 && *listener->address && (size_t) (eq - word) == strlen (s_names [i])
            &&  strncmp (word, s_names [i], (size_t) (eq - word)) == 0
            &&  strcmp (eq + 1, listener->address) == 0) {
                fcntl (socket_fd, F_SETFL, O_NONBLOCK);
                listener->fd = socket_fd;
                used = true;
                taken++;
            }
        }
        if (!used)
            close (socket_fd);
    }
    for (; got < count; got++)
        close (fds [got]);
    if (taken == 0) {
        mesh_warn ("handover: the sockets offered are for other addresses; binding our own");
        close (fd);
        return -1;
    }
    self->peer_fd = fd;
    self->successor = true;
    mesh_info ("handover: took over %d listening sockets; the old process serves until this one is ready", taken);
    return 0;
}

//  The old process has stopped accepting: the path is ours now
static void
s_on_released (ingress_t *ingress, ingress_watch_t *watch)
{
    (void) watch;
    ingress_listen_t *self = ingress->listen;
    char message [32];
    ssize_t n = recv (self->peer_fd, message, sizeof message, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == 8 && memcmp (message, "RELEASED", 8) == 0)
        mesh_info ("handover: done, the old process drains");
    else
        mesh_warn ("handover: the old process left without a word; taking its place");
    s_close_peer (self);
    s_offer (self);
}

//  Until this process is ready (or HANDOVER_READY_MS has passed): the old
//  one keeps serving beside it
static void
s_on_ready_check (lws_sorted_usec_list_t *sul)
{
    ingress_listen_t *self = lws_container_of (sul, ingress_listen_t, ready_sul);
    ingress_t *ingress = self->ingress;
    mesh_buf_t why;
    mesh_buf_init (&why);
    bool ready = ingress_mesh_ready (ingress, &why);
    mesh_buf_free (&why);
    if (!ready && mesh_mono_ms () - self->started_ms < HANDOVER_READY_MS) {
        lws_sul_schedule (ingress->context, 0, &self->ready_sul, s_on_ready_check, 20 * LWS_US_PER_MS);
        return;
    }
    if (!ready)
        mesh_warn ("handover: not ready after %d ms; taking over all the same", HANDOVER_READY_MS);
    if (send (self->peer_fd, "READY", 5, MSG_NOSIGNAL) != 5
    ||  ingress_adopt_fd (ingress, &self->peer_watch, self->peer_fd, s_on_released) < 0) {
        mesh_warn ("handover: the old process is gone: %s", strerror (errno));
        self->peer_fd = -1;
        s_offer (self);
    }
}

//  Public ---------------------------------------------------------------------------

int
ingress_listen_open (ingress_t *ingress, char *why, size_t why_size)
{
    mesh_config_t *config = ingress->config;
    ingress_listen_t *self = calloc (1, sizeof *self);
    assert (self);
    ingress->listen = self;
    self->ingress = ingress;
    self->handover_fd = self->peer_fd = -1;
    self->started_ms = mesh_mono_ms ();
    const char *addresses [L_COUNT] = {
        mesh_setting_str (config, "ingress.listen"), mesh_setting_str (config, "ingress.tls_listen"),
        mesh_setting_str (config, "ingress.admin_listen")
    };
    for (int i = 0; i < L_COUNT; i++) {
        listener_t *listener = &self->listeners [i];
        listener->owner = self;
        listener->fd = -1;
        listener->tls = i == L_TLS;
        listener->clients = i != L_ADMIN;
        listener->watch.arg = listener;
        snprintf (listener->address, sizeof listener->address, "%s", addresses [i]);
    }
    const char *path = mesh_setting_str (config, "ingress.handover_path");
    if (strlen (path) >= sizeof self->path)
        mesh_warn ("ingress.handover_path is longer than a unix socket path may be: no handover");
    else
        snprintf (self->path, sizeof self->path, "%s", path);
    if (self->path [0])
        s_take_over (self);
    for (int i = 0; i < L_COUNT; i++) {
        listener_t *listener = &self->listeners [i];
        if (listener->fd < 0 && *listener->address && s_bind (listener, why, why_size) < 0)
            return -1;
        if (listener->fd >= 0)
            mesh_info ("%s on %s%s", s_names [i], listener->address,
                       self->successor ? " (taken over)" : "");
    }
    return 0;
}

int
ingress_listen_start (ingress_t *ingress, const struct lws_protocols *api,
                      const struct lws_protocols *admin, char *why, size_t why_size)
{
    ingress_listen_t *self = ingress->listen;
    mesh_config_t *config = ingress->config;
    const char *cert = mesh_setting_str (config, "ingress.tls_cert");
    const char *key = mesh_setting_str (config, "ingress.tls_key");
    struct lws_vhost *vhosts [L_COUNT] = { NULL, NULL, NULL };
    vhosts [L_API] = s_vhost (ingress, "api", CONTEXT_PORT_NO_LISTEN_SERVER, api, NULL, NULL,
                              why, why_size);
    vhosts [L_ADMIN] = s_vhost (ingress, "admin", CONTEXT_PORT_NO_LISTEN, admin, NULL, NULL,
                                why, why_size);
    if (!vhosts [L_API] || !vhosts [L_ADMIN])
        return -1;
    ingress->api_vhost = vhosts [L_API];
    if (self->listeners [L_TLS].fd >= 0
    &&  !(vhosts [L_TLS] = s_vhost (ingress, "api-tls", CONTEXT_PORT_NO_LISTEN_SERVER, api,
                                    cert, key, why, why_size)))
        return -1;
    self->accepting = true;
    for (int i = 0; i < L_COUNT; i++) {
        listener_t *listener = &self->listeners [i];
        listener->vhost = vhosts [i];
        if (listener->fd < 0)
            continue;
        if (ingress_adopt_fd (ingress, &listener->watch, listener->fd, s_on_accept) < 0) {
            listener->fd = -1;
            snprintf (why, why_size, "cannot watch the %s socket", s_names [i]);
            return -1;
        }
    }
    if (self->successor)
        lws_sul_schedule (ingress->context, 0, &self->ready_sul, s_on_ready_check, 20 * LWS_US_PER_MS);
    else
        s_offer (self);
    return 0;
}

bool
ingress_listen_successor (ingress_t *ingress)
{
    return ingress->listen && ingress->listen->successor;
}

void
ingress_listen_drain (ingress_t *ingress)
{
    ingress_listen_t *self = ingress->listen;
    if (!self || !self->accepting)
        return;
    //  Nobody takes over: what is queued is served, then nothing more
    for (int i = 0; i < L_COUNT; i++)
        if (self->listeners [i].fd >= 0 && self->listeners [i].clients)
            s_on_accept (ingress, &self->listeners [i].watch);
    //  The admin port stays: /readyz says "draining"
    for (int i = 0; i < L_COUNT; i++) {
        listener_t *listener = &self->listeners [i];
        if (listener->fd >= 0 && listener->clients) {
            ingress_unadopt (&listener->watch);
            listener->fd = -1;
        }
    }
    s_close_handover (self, true);
}

size_t
ingress_listen_connections (ingress_t *ingress)
{
    return ingress->guard ? ingress_guard_connections (ingress->guard) : 0;
}

void
ingress_listen_stop (ingress_t *ingress)
{
    ingress_listen_t *self = ingress->listen;
    if (!self)
        return;
    lws_sul_cancel (&self->ready_sul);
    //  lws has closed every adopted descriptor with its context; a path we
    //  still own is removed (not one a successor has taken)
    if (self->handover_fd >= 0 && !self->handed_over)
        unlink (self->path);
    free (self);
    ingress->listen = NULL;
}

//  The reply address ------------------------------------------------------------------

//  The first non-loopback IPv4 address of an interface that is up
static int
s_interface_address (char *out, size_t size)
{
    struct ifaddrs *list;
    if (getifaddrs (&list) < 0)
        return -1;
    int rc = -1;
    for (struct ifaddrs *at = list; at && rc < 0; at = at->ifa_next) {
        if (!at->ifa_addr || at->ifa_addr->sa_family != AF_INET || !(at->ifa_flags & IFF_UP)
        ||  (at->ifa_flags & IFF_LOOPBACK))
            continue;
        struct sockaddr_in *in = (struct sockaddr_in *) at->ifa_addr;
        if (inet_ntop (AF_INET, &in->sin_addr, out, (socklen_t) size))
            rc = 0;
    }
    freeifaddrs (list);
    return rc;
}

int
ingress_listen_reply_address (mesh_config_t *config, const char *bound, char *out, size_t size,
                              char *why, size_t why_size)
{
    const char *advertise = mesh_setting_str (config, "ingress.reply_advertise");
    //  bound: the endpoint as bound ("tcp://0.0.0.0:5559", a port ZeroMQ
    //  picked, or ipc://)
    if (strncmp (bound, "tcp://", 6) != 0) {
        snprintf (out, size, "%s", *advertise ? advertise : bound);
        return 0;
    }
    const char *colon = strrchr (bound + 6, ':');
    const char *port = colon ? colon + 1 : "";
    if (*advertise) {
        //  As configured; with this process's port when it had to take another
        const char *configured = mesh_setting_str (config, "ingress.reply_endpoint");
        const char *advertised_colon = strrchr (advertise, ':');
        if (advertised_colon && strcmp (bound, configured) != 0 && strncmp (advertise, "tcp://", 6) == 0)
            snprintf (out, size, "%.*s:%s", (int) (advertised_colon - advertise), advertise, port);
        else
            snprintf (out, size, "%s", advertise);
        if ((strncmp (out, "tcp://127.", 10) == 0 || strncmp (out, "tcp://localhost:", 16) == 0)
        &&  strncmp (bound, "tcp://127.", 10) != 0)
            mesh_warn ("ingress.reply_advertise %s is loopback while the reply endpoint binds %s: "
                       "peers on other hosts cannot answer", out, bound);
        return 0;
    }
    char host [256];
    snprintf (host, sizeof host, "%.*s", colon ? (int) (colon - bound - 6) : 0, bound + 6);
    bool wildcard = strcmp (host, "*") == 0 || strcmp (host, "0.0.0.0") == 0 || !*host;
    if (!wildcard) {
        snprintf (out, size, "%s", bound);
        return 0;
    }
    const char *env_name = mesh_setting_str (config, "ingress.reply_host_env");
    const char *from_env = *env_name ? getenv (env_name) : NULL;
    char address [INET6_ADDRSTRLEN];
    if (from_env && *from_env)
        snprintf (address, sizeof address, "%s", from_env);
    else
    if (s_interface_address (address, sizeof address) < 0) {
        snprintf (why, why_size, "config %s: ingress.reply_endpoint %s binds every address and no "
                  "address to advertise was found (set ingress.reply_advertise, or $%s)",
                  mesh_config_file (config), bound, *env_name ? env_name : "SEEKMESH_POD_IP");
        return -1;
    }
    snprintf (out, size, "tcp://%s:%s", address, port);
    return 0;
}

void
ingress_listen_test (bool verbose)
{
    (void) verbose;
    //  The reply address (the handover runs between real processes:
    //  tests/integration/test_restarts.py)
    char why [256], out [300];
    const char *text = "{ \"ingress\": { \"reply_endpoint\": \"tcp://0.0.0.0:5559\" } }";
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "i.json", why, sizeof why);
    setenv ("SEEKMESH_POD_IP", "10.42.0.7", 1);
    assert (ingress_listen_reply_address (config, "tcp://0.0.0.0:5559", out, sizeof out, why, sizeof why) == 0);
    assert (strcmp (out, "tcp://10.42.0.7:5559") == 0);
    //  A port of its own (a successor beside the old process)
    assert (ingress_listen_reply_address (config, "tcp://0.0.0.0:41234", out, sizeof out, why, sizeof why) == 0);
    assert (strcmp (out, "tcp://10.42.0.7:41234") == 0);
    unsetenv ("SEEKMESH_POD_IP");
    //  Without it, an interface's address, never loopback
    if (ingress_listen_reply_address (config, "tcp://0.0.0.0:5559", out, sizeof out, why, sizeof why) == 0)
        assert (strncmp (out, "tcp://127.", 10) != 0 && strstr (out, ":5559"));
    mesh_config_destroy (&config);
    //  A host of its own is advertised as it is; an explicit advertise wins
    text = "{ \"ingress\": { \"reply_endpoint\": \"tcp://10.0.0.3:5559\", "
           "\"reply_advertise\": \"tcp://ingress-3.mesh:5559\" } }";
    config = mesh_config_parse (text, strlen (text), "i.json", why, sizeof why);
    assert (ingress_listen_reply_address (config, "tcp://10.0.0.3:5559", out, sizeof out, why, sizeof why) == 0);
    assert (strcmp (out, "tcp://ingress-3.mesh:5559") == 0);
    assert (ingress_listen_reply_address (config, "tcp://10.0.0.3:40001", out, sizeof out, why, sizeof why) == 0);
    assert (strcmp (out, "tcp://ingress-3.mesh:40001") == 0);
    mesh_config_destroy (&config);
    text = "{ \"ingress\": { \"reply_endpoint\": \"tcp://10.0.0.3:5559\" } }";
    config = mesh_config_parse (text, strlen (text), "i.json", why, sizeof why);
    assert (ingress_listen_reply_address (config, "tcp://10.0.0.3:5559", out, sizeof out, why, sizeof why) == 0);
    assert (strcmp (out, "tcp://10.0.0.3:5559") == 0);
    mesh_config_destroy (&config);
}
