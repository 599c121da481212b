/*  router_faq: see router_faq.h.                                             */
#include "router_faq.h"

#include "mesh_faq.h"
#include "mesh_faq_store.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct router_faq_t {
    mesh_faq_store_t *store;
    router_registry_t *registry;
};

//  A write waiting for Redis
typedef struct {
    mesh_admin_pending_t *pending;
    int status;
    char *reply;                //  the body to answer with
} write_t;

static void
s_json (mesh_admin_response_t *response, int status, json_t *body)
{
    response->status = status;
    response->content_type = "application/json";
    char *text = json_dumps (body, JSON_COMPACT);
    mesh_buf_append_str (&response->body, text ? text : "{}");
    mesh_buf_append_str (&response->body, "\n");
    free (text);
    json_decref (body);
}

static int
s_fail (mesh_admin_response_t *response, int status, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static int
s_fail (mesh_admin_response_t *response, int status, const char *code, const char *fmt, ...)
{
    char message [768];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    s_json (response, status, json_pack ("{s:{s:s, s:s, s:n, s:s}}", "error", "message", message,
                                         "type", type, "param", "code", code));
    return 0;
}

static json_t *
s_view (const mesh_faq_entry_t *entry)
{
    char *text = mesh_faq_entry_json (entry);
    json_t *view = json_loads (text, 0, NULL);
    free (text);
    return view;
}

static void
s_on_written (void *arg, bool ok)
{
    write_t *write = arg;
    mesh_buf_t body;
    mesh_buf_init (&body);
    if (ok) {
        mesh_buf_append_str (&body, write->reply);
        mesh_buf_append_str (&body, "\n");
        mesh_admin_complete (write->pending, write->status, "application/json", &body);
    }
    else {
        mesh_buf_append_str (&body, "{\"error\":{\"message\":\"The FAQ store (Redis) did not answer; "
                             "nothing was changed.\",\"type\":\"server_error\",\"param\":null,"
                             "\"code\":\"faq_unavailable\"}}\n");
        mesh_admin_complete (write->pending, 503, "application/json", &body);
    }
    free (write->reply);
    free (write);
}

//  Writes entry (JSON) or removes id, answering status with reply once
//  Redis has it.  Takes reply.
static int
s_write (router_faq_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response,
         const char *id, const char *entry, int status, char *reply)
{
    mesh_admin_pending_t *pending = mesh_admin_defer (request);
    if (!pending) {
        free (reply);
        return s_fail (response, 500, "cannot_wait", "This transport cannot serve admin writes.");
    }
    write_t *write = calloc (1, sizeof *write);
    assert (write);
    *write = (write_t) { pending, status, reply };
    if (mesh_faq_store_write (self->store, id, entry, s_on_written, write) < 0)
        s_on_written (write, false);
    return 0;
}

static int
s_add (router_faq_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response,
       const char *given_id)
{
    char why [512];
    mesh_faq_entry_t *entry = mesh_faq_entry_parse (request->body, request->body_len, why, sizeof why);
    if (!entry)
        return s_fail (response, 400, "invalid_faq_entry", "%s", why);
    char id [MESH_FAQ_ID_BYTES + 1];
    if (given_id)
        snprintf (id, sizeof id, "%s", given_id);
    else {
        unsigned char random [6];
        mesh_random (random, sizeof random);
        snprintf (id, sizeof id, "faq_%02x%02x%02x%02x%02x%02x", random [0], random [1], random [2],
                  random [3], random [4], random [5]);
    }
    const mesh_faq_entry_t *old = mesh_faq_get (mesh_faq_store_entries (self->store), id);
    mesh_faq_entry_stamp (entry, id, mesh_wall_ms ());
    char *text = mesh_faq_entry_json (entry);
    //  Stamped again on reading: the id must be a valid one
    mesh_faq_entry_t *check = mesh_faq_entry_parse (text, strlen (text), why, sizeof why);
    mesh_faq_entry_destroy (&entry);
    if (!check) {
        free (text);
        return s_fail (response, 400, "invalid_faq_entry", "%s", why);
    }
    mesh_faq_entry_destroy (&check);
    mesh_info ("admin: FAQ entry %s %s", id, old ? "replaced" : "added");
    int rc = s_write (self, request, response, id, text, old ? 200 : 201, strdup (text));
    free (text);
    return rc;
}

static int
s_test_question (router_faq_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    json_error_t error;
    json_t *body = json_loadb (request->body, request->body_len, 0, &error);
    const char *tenant = json_string_value (json_object_get (body, "tenant"));
    const char *question = json_string_value (json_object_get (body, "question"));
    const char *model = json_string_value (json_object_get (body, "model"));
    if (!tenant || !question) {
        json_decref (body);
        return s_fail (response, 400, "invalid_request", "Give {\"tenant\", \"question\"} and maybe \"model\".");
    }
    const mesh_faq_entry_t *entry = mesh_faq_match (mesh_faq_store_entries (self->store), tenant,
                                                    model ? model : "", question, strlen (question));
    json_t *reply = json_object ();
    json_object_set_new (reply, "match", entry ? s_view (entry) : json_null ());
    if (entry)
        json_object_set_new (reply, "kind", json_string (mesh_faq_kind_name (mesh_faq_entry_kind (entry))));
    json_decref (body);
    s_json (response, 200, reply);
    return 0;
}

static int
s_on_admin (void *arg, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    router_faq_t *self = arg;
    if (!router_registry_authorized (self->registry, request, response))
        return 0;
    char method [16], path [256];
    snprintf (method, sizeof method, "%.*s", (int) request->method_len, request->method);
    if (request->path_len >= sizeof path)
        return s_fail (response, 404, "not_found", "No such admin route.");
    snprintf (path, sizeof path, "%.*s", (int) request->path_len, request->path);
    mesh_faq_t *entries = mesh_faq_store_entries (self->store);
    if (mesh_streq (path, "/admin/faq") || mesh_streq (path, "/admin/faq/")) {
        if (mesh_streq (method, "POST"))
            return s_add (self, request, response, NULL);
        if (!mesh_streq (method, "GET"))
            return s_fail (response, 405, "method_not_allowed", "Use GET or POST on /admin/faq.");
        char tenant [160] = "";
        if (request->query_len > 7 && memcmp (request->query, "tenant=", 7) == 0)
            snprintf (tenant, sizeof tenant, "%.*s", (int) MESH_MIN (request->query_len - 7, sizeof tenant - 1),
                      request->query + 7);
        json_t *data = json_array ();
        for (size_t i = 0; i < mesh_faq_count (entries); i++) {
            const mesh_faq_entry_t *entry = mesh_faq_at (entries, i);
            if (!*tenant || mesh_streq (mesh_faq_entry_tenant (entry), tenant))
                json_array_append_new (data, s_view (entry));
        }
        s_json (response, 200, json_pack ("{s:s, s:o}", "object", "list", "data", data));
        return 0;
    }
    if (mesh_streq (path, "/admin/faq/test")) {
        if (!mesh_streq (method, "POST"))
            return s_fail (response, 405, "method_not_allowed", "Use POST on /admin/faq/test.");
        return s_test_question (self, request, response);
    }
    if (strncmp (path, "/admin/faq/", 11) != 0)
        return s_fail (response, 404, "not_found", "No such admin route: %s", path);
    const char *id = path + 11;
    const mesh_faq_entry_t *entry = mesh_faq_get (entries, id);
    if (mesh_streq (method, "GET")) {
        if (!entry)
            return s_fail (response, 404, "faq_not_found", "No FAQ entry \"%s\".", id);
        s_json (response, 200, s_view (entry));
        return 0;
    }
    if (mesh_streq (method, "PUT"))
        return s_add (self, request, response, id);
    if (mesh_streq (method, "DELETE")) {
        if (!entry)
            return s_fail (response, 404, "faq_not_found", "No FAQ entry \"%s\".", id);
        mesh_info ("admin: FAQ entry %s removed", id);
        char reply [320];
        snprintf (reply, sizeof reply, "{\"id\":\"%s\",\"deleted\":true}", id);
        return s_write (self, request, response, id, NULL, 200, strdup (reply));
    }
    return s_fail (response, 405, "method_not_allowed", "Use GET, PUT or DELETE on /admin/faq/ID.");
}

router_faq_t *
router_faq_new (struct mesh_redis_t *redis, mesh_metrics_t *metrics, router_registry_t *registry)
{
    router_faq_t *self = calloc (1, sizeof *self);
    assert (self);
    self->store = mesh_faq_store_new (redis, metrics, "router");
    self->registry = registry;
    return self;
}

void
router_faq_destroy (router_faq_t **self_p)
{
    assert (self_p);
    router_faq_t *self = *self_p;
    if (!self)
        return;
    mesh_faq_store_destroy (&self->store);
    free (self);
    *self_p = NULL;
}

bool
router_faq_covers (router_faq_t *self, const char *tenant, const char *model)
{
    return mesh_faq_covers (mesh_faq_store_entries (self->store), tenant, model);
}

void
router_faq_tick (router_faq_t *self)
{
    mesh_faq_store_tick (self->store);
}

void
router_faq_routes (router_faq_t *self, mesh_admin_t *admin)
{
    mesh_admin_route (admin, "/admin/faq", s_on_admin, self);
}

void
router_faq_test (bool verbose)
{
    (void) verbose;
    //  Writes go through Redis (tests/integration/test_cache.py drives the
    //  API and seekmeshctl faq); without it: nothing is covered, and the
    //  admin answers without a token are the registry's
    router_faq_t *faq = router_faq_new (NULL, NULL, NULL);
    assert (!router_faq_covers (faq, "acme", "m"));
    router_faq_tick (faq);
    router_faq_destroy (&faq);
    router_faq_destroy (&faq);
}
