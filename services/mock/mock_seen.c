/*  mock_seen: the last chat requests, for tests.                           */
#include "mock_seen.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mock_seen_t {
    pthread_mutex_t lock;
    char *bodies [MOCK_SEEN_MAX];       //  a ring, under lock
    size_t lens [MOCK_SEEN_MAX];
    size_t next, count;
};

mock_seen_t *
mock_seen_new (void)
{
    mock_seen_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

static void
s_forget (mock_seen_t *self)
{
    for (size_t i = 0; i < MOCK_SEEN_MAX; i++) {
        free (self->bodies [i]);
        self->bodies [i] = NULL;
    }
    self->next = self->count = 0;
}

void
mock_seen_destroy (mock_seen_t **self_p)
{
    assert (self_p);
    mock_seen_t *self = *self_p;
    if (!self)
        return;
    s_forget (self);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

void
mock_seen_add (mock_seen_t *self, const char *body, size_t len)
{
    if (!self)
        return;
    len = MESH_MIN (len, (size_t) MOCK_SEEN_MAX_BYTES);
    char *copy = malloc (len + 1);
    assert (copy);
    memcpy (copy, body, len);
    copy [len] = 0;
    pthread_mutex_lock (&self->lock);
    free (self->bodies [self->next]);
    self->bodies [self->next] = copy;
    self->lens [self->next] = len;
    self->next = (self->next + 1) % MOCK_SEEN_MAX;
    if (self->count < MOCK_SEEN_MAX)
        self->count++;
    pthread_mutex_unlock (&self->lock);
}

int
mock_seen_admin (void *arg, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    mock_seen_t *self = arg;
    response->content_type = "application/json";
    bool get = mesh_memeq (request->method, request->method_len, "GET");
    if (!get && !mesh_memeq (request->method, request->method_len, "DELETE")) {
        response->status = 405;
        mesh_buf_append_str (&response->body, "{\"error\":\"use GET or DELETE\"}\n");
        return 0;
    }
    json_t *list = json_array ();
    pthread_mutex_lock (&self->lock);
    if (get) {
        for (size_t i = 0; i < self->count; i++) {
            size_t at = (self->next + MOCK_SEEN_MAX - self->count + i) % MOCK_SEEN_MAX;
            json_t *body = json_loadb (self->bodies [at], self->lens [at], 0, NULL);
            if (!body)
                body = json_stringn_nocheck (self->bodies [at], self->lens [at]);
            json_array_append_new (list, body ? body : json_null ());
        }
    }
    else
        s_forget (self);
    pthread_mutex_unlock (&self->lock);
    json_t *reply = json_pack ("{s:o}", "requests", list);
    char *text = json_dumps (reply, JSON_COMPACT);
    json_decref (reply);
    mesh_buf_append_str (&response->body, text ? text : "{\"requests\":[]}");
    mesh_buf_append_str (&response->body, "\n");
    free (text);
    return 0;
}

void
mock_seen_test (bool verbose)
{
    (void) verbose;
    mock_seen_t *seen = mock_seen_new ();
    for (int i = 0; i < MOCK_SEEN_MAX + 3; i++) {
        char body [64];
        int n = snprintf (body, sizeof body, "{\"n\":%d}", i);
        mock_seen_add (seen, body, (size_t) n);
    }
    mock_seen_add (seen, "not json", 8);
    mesh_admin_request_t request = { .method = "GET", .method_len = 3, .path = "/mock/requests",
                                     .path_len = 14, .query = "", .body = "" };
    mesh_admin_response_t response = { .status = 200 };
    mesh_buf_init (&response.body);
    mock_seen_admin (seen, &request, &response);
    json_t *reply = json_loadb (mesh_buf_head (&response.body), mesh_buf_size (&response.body), 0, NULL);
    json_t *list = json_object_get (reply, "requests");
    assert (json_array_size (list) == MOCK_SEEN_MAX);
    assert (json_integer_value (json_object_get (json_array_get (list, 0), "n")) == 4);
    assert (mesh_streq (json_string_value (json_array_get (list, MOCK_SEEN_MAX - 1)), "not json"));
    json_decref (reply);
    mesh_buf_reset (&response.body);
    request.method = "DELETE";
    request.method_len = 6;
    mock_seen_admin (seen, &request, &response);
    assert (strstr (mesh_buf_head (&response.body), "\"requests\":[]"));
    mesh_buf_free (&response.body);
    mock_seen_destroy (&seen);
    mock_seen_destroy (&seen);
}
