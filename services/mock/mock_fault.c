/*  mock_fault: the fault switch and its admin route.                       */
#include "mock_fault.h"
#include "mock_reply.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RETRY_AFTER_S 86400
#define MAX_COUNT         1000000000

struct mock_fault_t {
    pthread_mutex_t lock;
    mock_fault_spec_t spec;     //  under lock
    atomic_bool armed;          //  spec.mode != NONE; read without the lock
};

static const char *s_modes [] = { "none", "status", "close" };

static void
s_none (mock_fault_spec_t *spec)
{
    *spec = (mock_fault_spec_t) { .mode = MOCK_FAULT_NONE, .retry_after = -1, .count = -1 };
}

mock_fault_t *
mock_fault_new (void)
{
    mock_fault_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    s_none (&self->spec);
    atomic_init (&self->armed, false);
    return self;
}

void
mock_fault_destroy (mock_fault_t **self_p)
{
    assert (self_p);
    mock_fault_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

void
mock_fault_set (mock_fault_t *self, const mock_fault_spec_t *spec)
{
    assert (spec->mode >= MOCK_FAULT_NONE && spec->mode <= MOCK_FAULT_CLOSE);
    assert (spec->mode != MOCK_FAULT_STATUS || (spec->status >= 400 && spec->status <= 599));
    assert (spec->count == -1 || spec->count > 0);
    pthread_mutex_lock (&self->lock);
    if (spec->mode == MOCK_FAULT_NONE)
        s_none (&self->spec);
    else
        self->spec = *spec;
    atomic_store (&self->armed, spec->mode != MOCK_FAULT_NONE);
    pthread_mutex_unlock (&self->lock);
}

void
mock_fault_get (mock_fault_t *self, mock_fault_spec_t *spec)
{
    pthread_mutex_lock (&self->lock);
    *spec = self->spec;
    pthread_mutex_unlock (&self->lock);
}

//  Takes one use of the fault in force if its mode is in `modes` (a mask of
//  1 << MOCK_FAULT_*).
static bool
s_take (mock_fault_t *self, unsigned modes, mock_fault_spec_t *spec)
{
    //  The path of every request while no fault is set: one atomic load
    if (!atomic_load_explicit (&self->armed, memory_order_relaxed))
        return false;
    bool used_up = false;
    pthread_mutex_lock (&self->lock);
    bool taken = self->spec.mode != MOCK_FAULT_NONE && (modes & (1u << self->spec.mode));
    if (taken) {
        if (spec)
            *spec = self->spec;
        if (self->spec.count > 0 && --self->spec.count == 0) {
            s_none (&self->spec);
            atomic_store (&self->armed, false);
            used_up = true;
        }
    }
    pthread_mutex_unlock (&self->lock);
    if (used_up)
        mesh_info ("fault: its count is used up; answering normally again");
    return taken;
}

bool
mock_fault_on_request (mock_fault_t *self, mock_fault_spec_t *spec)
{
    return s_take (self, 1u << MOCK_FAULT_STATUS | 1u << MOCK_FAULT_CLOSE, spec);
}

bool
mock_fault_on_accept (mock_fault_t *self)
{
    return s_take (self, 1u << MOCK_FAULT_CLOSE, NULL);
}

//  The body of PUT /mock/fault -------------------------------------------

//  An integer member within [min, max] into *value: 0, 1 when absent, -1
//  when it is something else.
static int
s_int (json_t *object, const char *key, int64_t min, int64_t max, int64_t *value)
{
    json_t *node = json_object_get (object, key);
    if (!node)
        return 1;
    if (!json_is_integer (node))
        return -1;
    json_int_t number = json_integer_value (node);
    if (number < min || number > max)
        return -1;
    *value = (int64_t) number;
    return 0;
}

int
mock_fault_parse (const char *body, size_t len, mock_fault_spec_t *spec,
                  char *error, size_t error_size)
{
    s_none (spec);
    json_error_t json_error;
    json_t *root = json_loadb (body, len, JSON_REJECT_DUPLICATES, &json_error);
    int rc = -1;
    if (!root) {
        snprintf (error, error_size, "the body is not valid JSON: %s", json_error.text);
        goto done;
    }
    if (!json_is_object (root)) {
        snprintf (error, error_size, "the body must be a JSON object, like "
                  "{\"mode\":\"status\",\"status\":503} or {\"mode\":\"close\"}");
        goto done;
    }
    const char *key;
    json_t *value;
    json_object_foreach (root, key, value) {
        if (!mesh_streq (key, "mode") && !mesh_streq (key, "status")
        &&  !mesh_streq (key, "retry_after") && !mesh_streq (key, "count")) {
            //  At most 40 bytes of the name, cut between UTF-8 sequences
            int shown = (int) MESH_MIN (strlen (key), (size_t) 40);
            while (shown > 0 && ((unsigned char) key [shown] & 0xc0) == 0x80)
                shown--;
            snprintf (error, error_size, "unknown field \"%.*s\" (expected mode, status, "
                      "retry_after, count)", shown, key);
            goto done;
        }
    }
    json_t *mode = json_object_get (root, "mode");
    if (!mode)
        spec->mode = json_object_get (root, "status") ? MOCK_FAULT_STATUS : -1;
    else
    if (json_is_string (mode)) {
        spec->mode = -1;
        for (int i = 0; i < (int) MESH_ARRAY_SIZE (s_modes); i++)
            if (mesh_streq (json_string_value (mode), s_modes [i]))
                spec->mode = i;
    }
    else
        spec->mode = -1;
    if (spec->mode < 0) {
        snprintf (error, error_size, mode ? "mode must be \"status\", \"close\" or \"none\""
                                          : "mode (\"status\" or \"close\") or status is required");
        goto done;
    }
    int64_t status = 0;
    int has_status = s_int (root, "status", 400, 599, &status);
    int has_retry = s_int (root, "retry_after", 0, MAX_RETRY_AFTER_S, &spec->retry_after);
    int has_count = s_int (root, "count", 1, MAX_COUNT, &spec->count);
    if (has_status < 0)
        snprintf (error, error_size, "status must be an integer from 400 to 599");
    else
    if (has_retry < 0)
        snprintf (error, error_size, "retry_after must be an integer number of seconds "
                  "from 0 to %d", MAX_RETRY_AFTER_S);
    else
    if (has_count < 0)
        snprintf (error, error_size, "count must be an integer from 1 to %d", MAX_COUNT);
    else
    if (spec->mode == MOCK_FAULT_STATUS && has_status != 0)
        snprintf (error, error_size, "mode \"status\" needs a status from 400 to 599");
    else
    if (spec->mode != MOCK_FAULT_STATUS && (has_status == 0 || has_retry == 0))
        snprintf (error, error_size, "status and retry_after apply to mode \"status\" only");
    else
    if (spec->mode == MOCK_FAULT_NONE && has_count == 0)
        snprintf (error, error_size, "count does not apply to mode \"none\"");
    else {
        spec->status = (int) status;
        rc = 0;
    }
done:
    if (rc < 0)
        s_none (spec);
    json_decref (root);
    return rc;
}

void
mock_fault_render (const mock_fault_spec_t *spec, mesh_buf_t *out)
{
    mesh_buf_printf (out, "{\"mode\":\"%s\"", s_modes [spec->mode]);
    if (spec->mode == MOCK_FAULT_STATUS)
        mesh_buf_printf (out, ",\"status\":%d", spec->status);
    if (spec->mode == MOCK_FAULT_STATUS && spec->retry_after >= 0)
        mesh_buf_printf (out, ",\"retry_after\":%lld", (long long) spec->retry_after);
    if (spec->mode != MOCK_FAULT_NONE && spec->count >= 0)
        mesh_buf_printf (out, ",\"count\":%lld", (long long) spec->count);
    mesh_buf_append_str (out, "}");
}

//  The admin route ------------------------------------------------------------

static void
s_admin_error (mesh_admin_response_t *response, int status, const char *message)
{
    response->status = status;
    mesh_buf_append_str (&response->body, "{\"error\":\"");
    mock_json_escape (&response->body, message, strlen (message));
    mesh_buf_append_str (&response->body, "\"}\n");
}

int
mock_fault_admin (void *arg, const mesh_admin_request_t *request,
                  mesh_admin_response_t *response)
{
    mock_fault_t *self = arg;
    response->content_type = "application/json";
    if (!mesh_memeq (request->path, request->path_len, "/mock/fault")) {
        s_admin_error (response, 404, "not found: the mock's admin route is /mock/fault");
        return 0;
    }
    const char *method = request->method;
    size_t method_len = request->method_len;
    mock_fault_spec_t spec;
    if (mesh_memeq (method, method_len, "PUT")) {
        char error [200];
        if (mock_fault_parse (request->body, request->body_len, &spec, error, sizeof error) < 0) {
            mesh_warn ("PUT /mock/fault refused: %s", error);
            s_admin_error (response, 400, error);
            return 0;
        }
        mock_fault_set (self, &spec);
        mesh_buf_t text;
        mesh_buf_init (&text);
        mock_fault_render (&spec, &text);
        mesh_info ("fault set: %.*s", (int) mesh_buf_size (&text), mesh_buf_head (&text));
        mesh_buf_free (&text);
    }
    else
    if (mesh_memeq (method, method_len, "DELETE")) {
        s_none (&spec);
        mock_fault_set (self, &spec);
        mesh_info ("fault cleared");
    }
    else
    if (mesh_memeq (method, method_len, "GET") || mesh_memeq (method, method_len, "HEAD"))
        mock_fault_get (self, &spec);
    else {
        s_admin_error (response, 405, "method not allowed: use GET, PUT or DELETE");
        return 0;
    }
    mock_fault_render (&spec, &response->body);
    mesh_buf_append_str (&response->body, "\n");
    return 0;
}

//  Selftest -----------------------------------------------------------------

static int
s_test_put (mock_fault_t *fault, const char *method, const char *body, mesh_buf_t *answer)
{
    mesh_admin_request_t request = {
        .method = method, .method_len = strlen (method),
        .path = "/mock/fault", .path_len = 11, .query = "",
        .body = body, .body_len = strlen (body)
    };
    mesh_admin_response_t response = { .status = 200 };
    mesh_buf_init (&response.body);
    mock_fault_admin (fault, &request, &response);
    mesh_buf_reset (answer);
    mesh_buf_append (answer, mesh_buf_head (&response.body), mesh_buf_size (&response.body));
    mesh_buf_append (answer, "", 1);
    mesh_buf_free (&response.body);
    return response.status;
}

void
mock_fault_test (bool verbose)
{
    (void) verbose;
    mock_fault_spec_t spec;
    char error [200];
    const char *good [][2] = {
        { "{\"status\":503}", "{\"mode\":\"status\",\"status\":503}" },
        { "{\"mode\":\"status\",\"status\":429,\"retry_after\":2,\"count\":3}",
          "{\"mode\":\"status\",\"status\":429,\"retry_after\":2,\"count\":3}" },
        { "{\"mode\":\"close\"}", "{\"mode\":\"close\"}" },
        { "{\"mode\":\"close\",\"count\":1}", "{\"mode\":\"close\",\"count\":1}" },
        { "{\"mode\":\"none\"}", "{\"mode\":\"none\"}" },
    };
    mesh_buf_t out;
    mesh_buf_init (&out);
    for (size_t i = 0; i < MESH_ARRAY_SIZE (good); i++) {
        const char *body = good [i][0];
        assert (mock_fault_parse (body, strlen (body), &spec, error, sizeof error) == 0);
        mesh_buf_reset (&out);
        mock_fault_render (&spec, &out);
        assert (mesh_memeq (mesh_buf_head (&out), mesh_buf_size (&out), good [i][1]));
    }
    const char *bad [][2] = {
        { "", "not valid JSON" },
        { "{\"status\":503", "not valid JSON" },
        { "[503]", "must be a JSON object" },
        { "{}", "is required" },
        { "{\"status\":200}", "400 to 599" },
        { "{\"status\":\"503\"}", "400 to 599" },
        { "{\"status\":503.0}", "400 to 599" },
        { "{\"mode\":\"status\"}", "needs a status" },
        { "{\"mode\":\"explode\"}", "mode must be" },
        { "{\"mode\":1}", "mode must be" },
        { "{\"mode\":\"close\",\"status\":503}", "mode \"status\" only" },
        { "{\"status\":503,\"retry_after\":-1}", "retry_after must be" },
        { "{\"status\":503,\"count\":0}", "count must be" },
        { "{\"status\":503,\"extra\":1}", "unknown field \"extra\"" },
        { "{\"status\":503,\"status\":502}", "not valid JSON" },
        { "{\"mode\":\"none\",\"count\":2}", "count does not apply" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        const char *body = bad [i][0];
        assert (mock_fault_parse (body, strlen (body), &spec, error, sizeof error) == -1);
        assert (spec.mode == MOCK_FAULT_NONE);
        assert (strstr (error, bad [i][1]));
    }

    //  Taking: nothing while none; close only at accept; a count runs out
    mock_fault_t *fault = mock_fault_new ();
    assert (!mock_fault_on_request (fault, &spec) && !mock_fault_on_accept (fault));
    spec = (mock_fault_spec_t) { .mode = MOCK_FAULT_STATUS, .status = 503, .retry_after = 2,
                                 .count = 2 };
    mock_fault_set (fault, &spec);
    assert (!mock_fault_on_accept (fault));                 //  status: not at accept
    memset (&spec, 0, sizeof spec);
    assert (mock_fault_on_request (fault, &spec) && spec.status == 503 && spec.retry_after == 2);
    mock_fault_get (fault, &spec);
    assert (spec.count == 1);
    assert (mock_fault_on_request (fault, &spec));
    assert (!mock_fault_on_request (fault, &spec));         //  used up
    mock_fault_get (fault, &spec);
    assert (spec.mode == MOCK_FAULT_NONE);
    spec = (mock_fault_spec_t) { .mode = MOCK_FAULT_CLOSE, .retry_after = -1, .count = -1 };
    mock_fault_set (fault, &spec);
    for (int i = 0; i < 3; i++)
        assert (mock_fault_on_accept (fault));
    assert (mock_fault_on_request (fault, &spec) && spec.mode == MOCK_FAULT_CLOSE);

    //  Through the admin route
    mesh_buf_t answer;
    mesh_buf_init (&answer);
    assert (s_test_put (fault, "GET", "", &answer) == 200);
    assert (mesh_streq (mesh_buf_head (&answer), "{\"mode\":\"close\"}\n"));
    assert (s_test_put (fault, "PUT", "{\"status\":502,\"count\":1}", &answer) == 200);
    assert (mesh_streq (mesh_buf_head (&answer),
                        "{\"mode\":\"status\",\"status\":502,\"count\":1}\n"));
    assert (s_test_put (fault, "PUT", "{\"status\":99}", &answer) == 400);
    assert (strstr (mesh_buf_head (&answer), "{\"error\":\"status must be"));
    assert (s_test_put (fault, "GET", "", &answer) == 200);        //  unchanged by the 400
    assert (strstr (mesh_buf_head (&answer), "\"status\":502"));
    assert (s_test_put (fault, "POST", "{}", &answer) == 405);
    assert (s_test_put (fault, "DELETE", "", &answer) == 200);
    assert (mesh_streq (mesh_buf_head (&answer), "{\"mode\":\"none\"}\n"));
    assert (!mock_fault_on_request (fault, &spec));
    mesh_buf_free (&answer);
    mesh_buf_free (&out);
    mock_fault_destroy (&fault);
    mock_fault_destroy (&fault);
}
