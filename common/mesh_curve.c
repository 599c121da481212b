/*  mesh_curve: see mesh_curve.h.

    The ZAP handler is our own small thread rather than czmq's zauth: zauth
    lets in any known key on any socket, and the mesh needs an allow-list
    per socket (per ZAP domain).  The keys themselves are czmq
    certificates (zcert, zcertstore), so a directory of them works with
    czmq's own tools too.                                                   */
#include "mesh_curve.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

static const char *const s_roles [] = { "ingress", "router", "connector", "audit", "cache", NULL };

//  Who may connect to each bound socket
static const struct {
    const char *domain;
    const char *roles;              //  space-separated
} s_domains [] = {
    { "router.listen",           "ingress" },
    { "router.connector_listen", "connector" },
    { "audit.listen",            "ingress" },
    { "cache.listen",            "router connector" },
    { "ingress.reply_endpoint",  "router connector cache" },
};

static struct {
    bool started;
    bool enabled;
    char role [32];
    zcert_t *own;                   //  this service's keypair
    zcertstore_t *store;            //  every role's public certificate
    char public_of [8][41];         //  by index in s_roles
    void *ctx;
    pthread_mutex_t lock;           //  the store, between the ZAP thread and the rest
    mesh_metric_t *accepted;
    mesh_metric_t *refused;
} s = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int
s_role_index (const char *role)
{
    for (int i = 0; s_roles [i]; i++)
        if (strcmp (s_roles [i], role) == 0)
            return i;
    return -1;
}

//  The ZAP handler --------------------------------------------------------------

static bool
s_allowed (const char *domain, const char *role)
{
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_domains); i++) {
        if (strcmp (s_domains [i].domain, domain) != 0)
            continue;
        size_t len = strlen (role);
        for (const char *at = s_domains [i].roles; (at = strstr (at, role)); at += len)
            if ((at == s_domains [i].roles || at [-1] == ' ') && (at [len] == ' ' || at [len] == 0))
                return true;
    }
    return false;
}

//  One ZAP request (RFC 27): version, request id, domain, address,
//  identity, mechanism, credentials; answered 200 with the role as user id,
//  or 400
static void
s_zap_one (void *socket, zmsg_t *request)
{
    char *version = zmsg_popstr (request), *sequence = zmsg_popstr (request);
    char *domain = zmsg_popstr (request), *address = zmsg_popstr (request);
    char *identity = zmsg_popstr (request), *mechanism = zmsg_popstr (request);
    zframe_t *key = zmsg_pop (request);
    const char *role = NULL;
    const char *why = "not a CURVE client";
    char public_txt [41] = "";
    if (version && strcmp (version, "1.0") == 0 && mechanism && strcmp (mechanism, "CURVE") == 0
    &&  key && zframe_size (key) == 32) {
        zmq_z85_encode (public_txt, zframe_data (key), 32);
        pthread_mutex_lock (&s.lock);
        zcert_t *cert = zcertstore_lookup (s.store, public_txt);
        role = cert ? zcert_meta (cert, "role") : NULL;
        pthread_mutex_unlock (&s.lock);
        why = !role ? "a key the mesh does not know" : "a role not allowed here";
        if (role && !s_allowed (domain ? domain : "", role))
            role = NULL;
    }
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "1.0");
    zmsg_addstr (reply, sequence ? sequence : "");
    zmsg_addstr (reply, role ? "200" : "400");
    zmsg_addstr (reply, role ? "OK" : why);
    zmsg_addstr (reply, role ? role : "");
    zmsg_addmem (reply, NULL, 0);
    zmsg_send (&reply, socket);
    if (role)
        mesh_metric_inc (s.accepted);
    else {
        mesh_metric_inc (s.refused);
        mesh_warn ("CURVE: refused %s on %s from %s: %s", public_txt [0] ? "a client" : "a peer",
                   domain ? domain : "?", address ? address : "?", why);
    }
    free (version); free (sequence); free (domain); free (address); free (identity); free (mechanism);
    zframe_destroy (&key);
}

static void *
s_zap (void *arg)
{
    void *socket = arg;
    while (true) {
        zmsg_t *request = zmsg_recv (socket);
        if (!request)
            break;                      //  the context is ending
        s_zap_one (socket, request);
        zmsg_destroy (&request);
    }
    zmq_close (socket);
    return NULL;
}

//  Keys ---------------------------------------------------------------------------

//  A secret key file that others can read is refused
static int
s_private (const char *path, char *why, size_t why_size)
{
    struct stat st;
    if (stat (path, &st) < 0)
        return mesh_fail (why, why_size, "%s: %s", path, strerror (errno));
    if (st.st_mode & S_IROTH)
        return mesh_fail (why, why_size, "%s is readable by every user (mode %03o): chmod 600 it",
                          path, st.st_mode & 0777);
    return 0;
}

//  "<role> <public> [<secret>]" lines
static int
s_load_text (const char *text, char *why, size_t why_size)
{
    char *copy = strdup (text), *save = NULL;
    int rc = 0;
    for (char *line = strtok_r (copy, "\n;", &save); line && rc == 0; line = strtok_r (NULL, "\n;", &save)) {
        char role [32], public_txt [64], secret_txt [64] = "";
        int n = sscanf (line, " %31s %63s %63s", role, public_txt, secret_txt);
        if (n < 1 || role [0] == '#')
            continue;
        uint8_t public_key [32], secret_key [32];
        if (n < 2 || s_role_index (role) < 0 || strlen (public_txt) != 40
        ||  !zmq_z85_decode (public_key, public_txt)
        ||  (n == 3 && (strlen (secret_txt) != 40 || !zmq_z85_decode (secret_key, secret_txt)))) {
            rc = mesh_fail (why, why_size, "a line is not \"<role> <public Z85> [<secret Z85>]\" with a known role");
            break;
        }
        zcert_t *cert = zcert_new_from (public_key, n == 3 ? secret_key : public_key);
        zcert_set_meta (cert, "role", "%s", role);
        snprintf (s.public_of [s_role_index (role)], 41, "%s", public_txt);
        if (n == 3 && strcmp (role, s.role) == 0)
            s.own = zcert_dup (cert);
        zcertstore_insert (s.store, &cert);
    }
    free (copy);
    return rc;
}

static int
s_load_dir (const char *dir, char *why, size_t why_size)
{
    zcertstore_destroy (&s.store);
    s.store = zcertstore_new (dir);
    char path [1024];
    for (int i = 0; s_roles [i]; i++) {
        if (snprintf (path, sizeof path, "%s/%s.cert", dir, s_roles [i]) >= (int) sizeof path)
            return mesh_fail (why, why_size, "%s: the path is too long", dir);
        zcert_t *cert = zcert_load (path);
        if (cert) {
            snprintf (s.public_of [i], 41, "%s", zcert_public_txt (cert));
            zcert_destroy (&cert);
        }
    }
    if (snprintf (path, sizeof path, "%s/%s.cert_secret", dir, s.role) >= (int) sizeof path)
        return mesh_fail (why, why_size, "%s: the path is too long", dir);
    if (s_private (path, why, why_size) < 0)
        return -1;
    s.own = zcert_load (path);
    if (!s.own)
        return mesh_fail (why, why_size, "%s: not a CURVE certificate", path);
    return 0;
}

int
mesh_curve_start (mesh_config_t *config, void *ctx, const char *role, mesh_metrics_t *metrics,
                  char *why, size_t why_size)
{
    assert (!s.started && s_role_index (role) >= 0);
    snprintf (s.role, sizeof s.role, "%s", role);
    s.ctx = ctx;
    s.enabled = mesh_setting_bool (config, "mesh.curve");
    s.accepted = mesh_metrics_counter (metrics, "seekmesh_curve_handshakes_total",
        "CURVE clients let in, and refused (an unknown key, or a role not allowed on the socket).",
        "result=\"accepted\"");
    s.refused = mesh_metrics_counter (metrics, "seekmesh_curve_handshakes_total", NULL,
                                      "result=\"refused\"");
    mesh_metric_set (mesh_metrics_gauge (metrics, "seekmesh_curve_enabled",
        "1 when every ZeroMQ link of this service is CURVE-encrypted and authenticated.", NULL),
        s.enabled ? 1 : 0);
    s.started = true;
    if (!s.enabled)
        return 0;                       //  said at the first link (s_plain)
    const char *env = mesh_setting_str (config, "mesh.curve_keys_env");
    const char *text = *env ? getenv (env) : NULL;
    int rc;
    if (text && *text) {
        s.store = zcertstore_new (NULL);
        rc = s_load_text (text, why, why_size);
        if (rc == 0 && !s.own)
            rc = mesh_fail (why, why_size, "$%s has no secret key for %s", env, role);
        if (rc < 0) {
            char inner [256];
            snprintf (inner, sizeof inner, "%s", why);
            mesh_fail (why, why_size, "CURVE keys in $%s: %s", env, inner);
        }
    }
    else {
        const char *dir = mesh_setting_str (config, "mesh.curve_dir");
        const char *run_dir = getenv ("SEEKMESH_MESH_RUN_DIR");
        char path [1024];
        if (*dir)
            snprintf (path, sizeof path, "%s", dir);
        else
            snprintf (path, sizeof path, "%s/curve", run_dir && *run_dir ? run_dir : "run");
        rc = s_load_dir (path, why, why_size);
        if (rc < 0) {
            char inner [512];
            snprintf (inner, sizeof inner, "%s", why);
            mesh_fail (why, why_size, "CURVE keys for %s in %s: %s (make them with `seekmeshctl "
                       "curve keygen --dir %s`, or set mesh.curve false on loopback)",
                       role, path, inner, path);
        }
    }
    if (rc < 0)
        return -1;
    //  The ZAP handler, before any server socket binds
    void *zap = zmq_socket (ctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt (zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind (zap, ZAP_ENDPOINT) < 0)
        return mesh_fail (why, why_size, "cannot start the ZAP handler: %s", zmq_strerror (errno));
    pthread_t thread;
    pthread_create (&thread, NULL, s_zap, zap);
    pthread_detach (thread);
    mesh_info ("CURVE on: %s's key %.8s…", role, zcert_public_txt (s.own));
    return 0;
}

void
mesh_curve_stop (void)
{
    zcert_destroy (&s.own);
    pthread_mutex_lock (&s.lock);
    zcertstore_destroy (&s.store);
    pthread_mutex_unlock (&s.lock);
    memset (s.public_of, 0, sizeof s.public_of);
    s.started = false;
}

bool
mesh_curve_enabled (void)
{
    return s.enabled;
}

//  Sockets --------------------------------------------------------------------------

//  ipc://, inproc:// or a loopback address: where plain links may go
static bool
s_local (const char *endpoint)
{
    if (strncmp (endpoint, "ipc://", 6) == 0 || strncmp (endpoint, "inproc://", 9) == 0)
        return true;
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return false;
    const char *host = endpoint + 6;
    return strncmp (host, "127.", 4) == 0 || strncmp (host, "localhost:", 10) == 0
        || strncmp (host, "[::1]:", 6) == 0;
}

//  Says once that links are plain, when the service makes its first one
//  (after its config was found sound: a config error stays one line)
static void
s_plain (void)
{
    static bool said;
    if (s.started && !said) {
        said = true;
        mesh_warn ("CURVE is off (mesh.curve false): the mesh's links are plain and open; "
                   "allowed only on ipc:// and loopback");
    }
}

int
mesh_curve_bind (void *socket, const char *domain, const char *endpoint, char *why, size_t why_size)
{
    //  Not started (a selftest): plain, and loopback only, as when off
    if (!s.started || !s.enabled) {
        s_plain ();
        if (!s_local (endpoint))
            return mesh_fail (why, why_size, "%s: %s is not loopback or ipc://, and mesh.curve is "
                              "false: the link would be open to anyone", domain, endpoint);
    }
    else {
        int one = 1;
        zmq_setsockopt (socket, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, zcert_secret_key (s.own), 32);
        zmq_setsockopt (socket, ZMQ_ZAP_DOMAIN, domain, strlen (domain));
    }
    if (zmq_bind (socket, endpoint) < 0)
        return mesh_fail (why, why_size, "%s: cannot bind %s: %s", domain, endpoint, zmq_strerror (errno));
    return 0;
}

int
mesh_curve_connect (void *socket, const char *server_role, const char *endpoint, char *why,
                    size_t why_size)
{
    if (!s.started || !s.enabled) {
        s_plain ();
        if (!s_local (endpoint))
            return mesh_fail (why, why_size, "%s is not loopback or ipc://, and mesh.curve is "
                              "false: the link would be plain", endpoint);
    }
    else {
        int index = s_role_index (server_role);
        if (index < 0 || !s.public_of [index][0])
            return mesh_fail (why, why_size, "no public CURVE key for the %s service", server_role);
        zmq_setsockopt (socket, ZMQ_CURVE_SERVERKEY, s.public_of [index], 40);
        zmq_setsockopt (socket, ZMQ_CURVE_PUBLICKEY, zcert_public_key (s.own), 32);
        zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, zcert_secret_key (s.own), 32);
    }
    if (zmq_connect (socket, endpoint) < 0)
        return mesh_fail (why, why_size, "cannot connect to %s: %s", endpoint, zmq_strerror (errno));
    return 0;
}

const char *
mesh_curve_sender (zmq_msg_t *frame)
{
    const char *user = s.started && s.enabled ? zmq_msg_gets (frame, "User-Id") : NULL;
    return user ? user : "";
}

//  Key generation ------------------------------------------------------------

int
mesh_curve_keygen (char public_key [41], char secret_key [41])
{
    return zmq_curve_keypair (public_key, secret_key);
}

int
mesh_curve_save (const char *dir, const char *role, char *why, size_t why_size)
{
    if (s_role_index (role) < 0)
        return mesh_fail (why, why_size, "unknown role \"%s\"", role);
    zcert_t *cert = zcert_new ();
    zcert_set_meta (cert, "role", "%s", role);
    char path [1024];
    snprintf (path, sizeof path, "%s/%s.cert", dir, role);
    mode_t mask = umask (077);
    int rc = zcert_save (cert, path);
    umask (mask);
    zcert_destroy (&cert);
    if (rc < 0)
        return mesh_fail (why, why_size, "cannot write %s: %s", path, strerror (errno));
    //  The public half may be read by anyone
    chmod (path, 0644);
    return 0;
}

//  Selftest -------------------------------------------------------------------

void
mesh_curve_test (bool verbose)
{
    (void) verbose;
    assert (s_allowed ("router.connector_listen", "connector"));
    assert (!s_allowed ("router.connector_listen", "ingress"));
    assert (s_allowed ("ingress.reply_endpoint", "router") && s_allowed ("ingress.reply_endpoint", "connector"));
    assert (!s_allowed ("ingress.reply_endpoint", "connect"));
    assert (s_allowed ("ingress.reply_endpoint", "cache") && s_allowed ("cache.listen", "connector"));
    assert (!s_allowed ("cache.listen", "ingress"));
    assert (!s_allowed ("nowhere", "router"));
    assert (s_local ("tcp://127.0.0.1:5555") && s_local ("ipc:///tmp/x") && !s_local ("tcp://10.0.0.1:5555"));

    //  A key set on disk, a router and a connector on one context: the
    //  connector gets in, an ingress key and a stranger do not
    char dir [] = "/tmp/mesh-curve-test-XXXXXX";
    assert (mkdtemp (dir));
    char why [512];
    for (int i = 0; s_roles [i]; i++)
        assert (mesh_curve_save (dir, s_roles [i], why, sizeof why) == 0);
    char path [1024];
    snprintf (path, sizeof path, "%s/router.cert_secret", dir);
    struct stat st;
    assert (stat (path, &st) == 0 && (st.st_mode & 077) == 0);
    char text [2048];
    snprintf (text, sizeof text, "{\"mesh\":{\"curve_dir\":\"%s\"}}", dir);
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "test.json", why, sizeof why);
    assert (config);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    void *ctx = zmq_ctx_new ();
    assert (mesh_curve_start (config, ctx, "router", metrics, why, sizeof why) == 0);
    void *server = zmq_socket (ctx, ZMQ_ROUTER);
    assert (mesh_curve_bind (server, "router.connector_listen", "tcp://127.0.0.1:*", why, sizeof why) == 0);
    char endpoint [64];
    size_t size = sizeof endpoint;
    zmq_getsockopt (server, ZMQ_LAST_ENDPOINT, endpoint, &size);
    //  Clients with other keys: made by hand, as their own services would
    zcert_t *connector = zcert_load ((snprintf (path, sizeof path, "%s/connector.cert_secret", dir), path));
    zcert_t *ingress = zcert_load ((snprintf (path, sizeof path, "%s/ingress.cert_secret", dir), path));
    zcert_t *stranger = zcert_new ();
    zcert_t *clients [] = { connector, ingress, stranger };
    void *sockets [3];
    for (int i = 0; i < 3; i++) {
        sockets [i] = zmq_socket (ctx, ZMQ_DEALER);
        zmq_setsockopt (sockets [i], ZMQ_CURVE_SERVERKEY, s.public_of [s_role_index ("router")], 40);
        zcert_apply (clients [i], sockets [i]);
        int timeout = 2000;
        zmq_setsockopt (sockets [i], ZMQ_SNDTIMEO, &timeout, sizeof timeout);
        assert (zmq_connect (sockets [i], endpoint) == 0);
        zmq_send (sockets [i], "hello", 5, 0);
    }
    int timeout = 1000;
    zmq_setsockopt (server, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int got = 0;
    while (true) {
        zmq_msg_t identity, body;
        zmq_msg_init (&identity);
        zmq_msg_init (&body);
        if (zmq_msg_recv (&identity, server, 0) < 0)
            break;
        assert (zmq_msg_recv (&body, server, 0) == 5);
        assert (strcmp (mesh_curve_sender (&body), "connector") == 0);
        got++;
        zmq_msg_close (&identity);
        zmq_msg_close (&body);
    }
    assert (got == 1);
    assert (mesh_metric_value (s.refused) >= 2);
    for (int i = 0; i < 3; i++) {
        int zero = 0;
        zmq_setsockopt (sockets [i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_close (sockets [i]);
        zcert_destroy (&clients [i]);
    }
    int zero = 0;
    zmq_setsockopt (server, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close (server);
    zmq_ctx_term (ctx);
    mesh_curve_stop ();
    mesh_config_destroy (&config);
    mesh_metrics_destroy (&metrics);
    //  A world-readable secret is refused
    snprintf (path, sizeof path, "%s/router.cert_secret", dir);
    chmod (path, 0644);
    assert (s_private (path, why, sizeof why) < 0 && strstr (why, "chmod 600"));
    char command [1100];
    snprintf (command, sizeof command, "rm -rf %s", dir);
    assert (system (command) == 0);
}
