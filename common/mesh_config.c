/*  mesh_config: JSON configuration with environment overrides.              */
#include "mesh_config.h"
#include "mesh_util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mesh_config_t {
    char *file;
    json_t *root;
    json_t *env_strings;        //  keeps strings read from the environment alive
    json_t *memo;               //  values derived from the config (mesh_settings)
    char *error;                //  first error, or NULL
};

static mesh_config_t *
s_new (json_t *root, const char *name)
{
    mesh_config_t *self = calloc (1, sizeof *self);
    assert (self);
    self->file = strdup (name);
    self->root = root;
    self->env_strings = json_object ();
    self->memo = json_object ();
    return self;
}

mesh_config_t *
mesh_config_load (const char *path, char *error, size_t error_size)
{
    if (!path)
        path = getenv ("SEEKMESH_CONFIG");
    if (!path || !*path)
        path = MESH_CONFIG_DEFAULT;
    json_error_t jerr;
    json_t *root = json_load_file (path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line < 0)
            snprintf (error, error_size, "config %s: cannot read: %s", path, jerr.text);
        else
            snprintf (error, error_size, "config %s:%d:%d: %s", path, jerr.line,
                      jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object (root)) {
        snprintf (error, error_size, "config %s: the top level must be an object", path);
        json_decref (root);
        return NULL;
    }
    return s_new (root, path);
}

mesh_config_t *
mesh_config_parse (const char *text, size_t len, const char *name, char *error,
                   size_t error_size)
{
    json_error_t jerr;
    json_t *root = json_loadb (text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf (error, error_size, "config %s:%d:%d: %s", name, jerr.line,
                  jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object (root)) {
        snprintf (error, error_size, "config %s: the top level must be an object", name);
        json_decref (root);
        return NULL;
    }
    return s_new (root, name);
}

void
mesh_config_destroy (mesh_config_t **self_p)
{
    assert (self_p);
    mesh_config_t *self = *self_p;
    if (!self)
        return;
    json_decref (self->root);
    json_decref (self->env_strings);
    json_decref (self->memo);
    free (self->file);
    free (self->error);
    free (self);
    *self_p = NULL;
}

const char *
mesh_config_file (mesh_config_t *self)
{
    return self->file;
}

json_t *
mesh_config_node (mesh_config_t *self, const char *path)
{
    json_t *node = self->root;
    const char *at = path;
    while (node && *at) {
        const char *dot = strchr (at, '.');
        size_t len = dot ? (size_t) (dot - at) : strlen (at);
        char key [128];
        if (len == 0 || len >= sizeof key)
            return NULL;
        memcpy (key, at, len);
        key [len] = 0;
        if (json_is_object (node))
            node = json_object_get (node, key);
        else
        if (json_is_array (node)) {
            char *end;
            unsigned long index = strtoul (key, &end, 10);
            node = *end ? NULL : json_array_get (node, index);
        }
        else
            node = NULL;
        at += len;
        if (*at == '.')
            at++;
    }
    return node;
}

json_t *
mesh_config_memo (mesh_config_t *self)
{
    return self->memo;
}

void
mesh_config_env_name (const char *path, char *out, size_t size)
{
    size_t n = snprintf (out, size, "SEEKMESH_");
    for (const char *at = path; *at && n + 1 < size; at++)
        out [n++] = (*at == '.' || *at == '-') ? '_' : (char) toupper ((unsigned char) *at);
    out [n] = 0;
}

void
mesh_config_invalid (mesh_config_t *self, const char *path, const char *fmt, ...)
{
    if (self->error)
        return;
    char what [512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (what, sizeof what, fmt, args);
    va_end (args);
    char env [160];
    mesh_config_env_name (path, env, sizeof env);
    char line [800];
    if (getenv (env))
        snprintf (line, sizeof line, "config: environment %s (for %s in %s): %s",
                  env, path, self->file, what);
    else
        snprintf (line, sizeof line, "config %s: %s: %s", self->file, path, what);
    self->error = strdup (line);
}

const char *
mesh_config_failed (mesh_config_t *self)
{
    return self->error;
}

const char *
mesh_json_kind (json_t *node)
{
    switch (json_typeof (node)) {
        case JSON_OBJECT:  return "an object";
        case JSON_ARRAY:   return "an array";
        case JSON_STRING:  return "a string";
        case JSON_INTEGER: return "an integer";
        case JSON_REAL:    return "a number";
        case JSON_TRUE:
        case JSON_FALSE:   return "a boolean";
        default:           return "null";
    }
}

int64_t
mesh_config_int (mesh_config_t *self, const char *path, int64_t dflt)
{
    char env [160];
    mesh_config_env_name (path, env, sizeof env);
    const char *text = getenv (env);
    if (text) {
        char *end;
        errno = 0;
        long long value = strtoll (text, &end, 10);
        if (errno || end == text || *end) {
            mesh_config_invalid (self, path, "expected an integer, got \"%s\"", text);
            return dflt;
        }
        return value;
    }
    json_t *node = mesh_config_node (self, path);
    if (!node)
        return dflt;
    if (!json_is_integer (node)) {
        mesh_config_invalid (self, path, "expected an integer, got %s", mesh_json_kind (node));
        return dflt;
    }
    return json_integer_value (node);
}

double
mesh_config_number (mesh_config_t *self, const char *path, double dflt)
{
    char env [160];
    mesh_config_env_name (path, env, sizeof env);
    const char *text = getenv (env);
    if (text) {
        char *end;
        double value = strtod (text, &end);
        if (end == text || *end) {
            mesh_config_invalid (self, path, "expected a number, got \"%s\"", text);
            return dflt;
        }
        return value;
    }
    json_t *node = mesh_config_node (self, path);
    if (!node)
        return dflt;
    if (!json_is_number (node)) {
        mesh_config_invalid (self, path, "expected a number, got %s", mesh_json_kind (node));
        return dflt;
    }
    return json_number_value (node);
}

bool
mesh_config_bool (mesh_config_t *self, const char *path, bool dflt)
{
    char env [160];
    mesh_config_env_name (path, env, sizeof env);
    const char *text = getenv (env);
    if (text) {
        if (strcmp (text, "true") == 0 || strcmp (text, "1") == 0)
            return true;
        if (strcmp (text, "false") == 0 || strcmp (text, "0") == 0)
            return false;
        mesh_config_invalid (self, path, "expected true or false, got \"%s\"", text);
        return dflt;
    }
    json_t *node = mesh_config_node (self, path);
    if (!node)
        return dflt;
    if (!json_is_boolean (node)) {
        mesh_config_invalid (self, path, "expected true or false, got %s", mesh_json_kind (node));
        return dflt;
    }
    return json_is_true (node);
}

const char *
mesh_config_str (mesh_config_t *self, const char *path, const char *dflt)
{
    char env [160];
    mesh_config_env_name (path, env, sizeof env);
    const char *text = getenv (env);
    if (text) {
        json_object_set_new (self->env_strings, path, json_string (text));
        json_t *kept = json_object_get (self->env_strings, path);
        //  A value that is not UTF-8 cannot be held by jansson
        if (!kept) {
            mesh_config_invalid (self, path, "not valid UTF-8");
            return dflt;
        }
        return json_string_value (kept);
    }
    json_t *node = mesh_config_node (self, path);
    if (!node)
        return dflt;
    if (!json_is_string (node)) {
        mesh_config_invalid (self, path, "expected a string, got %s", mesh_json_kind (node));
        return dflt;
    }
    return json_string_value (node);
}

int
mesh_config_only (mesh_config_t *self, const char *path, const char *const *fields)
{
    json_t *node = mesh_config_node (self, path);
    const char *key;
    json_t *value;
    json_object_foreach (node, key, value) {
        bool known = false;
        for (size_t i = 0; fields [i] && !known; i++)
            known = strcmp (key, fields [i]) == 0;
        if (!known) {
            char at [256];
            snprintf (at, sizeof at, "%s.%s", path, key);
            mesh_config_invalid (self, at, "unknown field");
            return -1;
        }
    }
    return 0;
}

size_t
mesh_config_array_size (mesh_config_t *self, const char *path)
{
    json_t *node = mesh_config_node (self, path);
    if (!node)
        return 0;
    if (!json_is_array (node)) {
        mesh_config_invalid (self, path, "expected an array, got %s", mesh_json_kind (node));
        return 0;
    }
    return json_array_size (node);
}

int
mesh_config_instance (void)
{
    const char *text = getenv ("SEEKMESH_INSTANCE");
    return text ? atoi (text) : 0;
}

int
mesh_endpoint_offset (const char *endpoint, int offset, char *out, size_t size)
{
    //  ipc:// paths have no port: instances get the offset as a suffix
    if (strncmp (endpoint, "ipc://", 6) == 0 && endpoint [6]) {
        int n = offset ? snprintf (out, size, "%s-%d", endpoint, offset)
                       : snprintf (out, size, "%s", endpoint);
        return n > 0 && (size_t) n < size ? 0 : -1;
    }
    const char *colon = strrchr (endpoint, ':');
    if (!colon || !isdigit ((unsigned char) colon [1]))
        return -1;
    char *end;
    long port = strtol (colon + 1, &end, 10);
    if (*end || port + offset <= 0 || port + offset > 65535)
        return -1;
    int n = snprintf (out, size, "%.*s:%ld", (int) (colon - endpoint), endpoint, port + offset);
    return n > 0 && (size_t) n < size ? 0 : -1;
}

void
mesh_config_test (bool verbose)
{
    (void) verbose;
    const char *text =
        "{ \"ingress\": { \"listen\": \"127.0.0.1:8080\", \"max_body_bytes\": 1024,"
        "               \"tls\": false, \"ratio\": 0.5 },"
        "  \"models\": [ { \"name\": \"deepseek-chat\" } ] }";
    char error [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "test.json", error, sizeof error);
    assert (config);
    assert (mesh_streq (mesh_config_str (config, "ingress.listen", NULL), "127.0.0.1:8080"));
    assert (mesh_config_int (config, "ingress.max_body_bytes", 0) == 1024);
    assert (mesh_config_int (config, "ingress.missing", 7) == 7);
    assert (mesh_config_bool (config, "ingress.tls", true) == false);
    assert (mesh_config_number (config, "ingress.ratio", 0) == 0.5);
    assert (mesh_streq (mesh_config_str (config, "models.0.name", NULL), "deepseek-chat"));
    assert (mesh_config_str (config, "models.1.name", NULL) == NULL);
    assert (mesh_config_array_size (config, "models") == 1);
    assert (mesh_config_failed (config) == NULL);

    //  The environment wins over the file
    setenv ("SEEKMESH_INGRESS_MAX_BODY_BYTES", "2048", 1);
    setenv ("SEEKMESH_MODELS_0_NAME", "deepseek-reasoner", 1);
    assert (mesh_config_int (config, "ingress.max_body_bytes", 0) == 2048);
    assert (mesh_streq (mesh_config_str (config, "models.0.name", NULL), "deepseek-reasoner"));
    unsetenv ("SEEKMESH_MODELS_0_NAME");

    //  A wrong type names the file and the field; the first error is kept
    assert (mesh_config_int (config, "ingress.listen", 5) == 5);
    assert (strstr (mesh_config_failed (config), "test.json"));
    assert (strstr (mesh_config_failed (config), "ingress.listen"));
    assert (strstr (mesh_config_failed (config), "expected an integer"));
    setenv ("SEEKMESH_INGRESS_MAX_BODY_BYTES", "lots", 1);
    mesh_config_int (config, "ingress.max_body_bytes", 0);
    assert (strstr (mesh_config_failed (config), "ingress.listen"));
    unsetenv ("SEEKMESH_INGRESS_MAX_BODY_BYTES");
    mesh_config_destroy (&config);
    mesh_config_destroy (&config);

    //  A bad environment value names the variable
    config = mesh_config_parse ("{}", 2, "empty.json", error, sizeof error);
    setenv ("SEEKMESH_ROUTER_TIMEOUT_MS", "soon", 1);
    mesh_config_int (config, "router.timeout_ms", 1);
    assert (strstr (mesh_config_failed (config), "SEEKMESH_ROUTER_TIMEOUT_MS"));
    unsetenv ("SEEKMESH_ROUTER_TIMEOUT_MS");
    mesh_config_destroy (&config);

    //  Syntax errors carry line and column; duplicate keys are refused
    assert (!mesh_config_parse ("{\n \"a\": }", 9, "bad.json", error, sizeof error));
    assert (strstr (error, "bad.json:2:"));
    assert (!mesh_config_parse ("{\"a\":1,\"a\":2}", 13, "dup.json", error, sizeof error));
    assert (!mesh_config_parse ("[1]", 3, "arr.json", error, sizeof error));

    char out [64];
    assert (mesh_endpoint_offset ("tcp://127.0.0.1:5555", 10, out, sizeof out) == 0);
    assert (mesh_streq (out, "tcp://127.0.0.1:5565"));
    assert (mesh_endpoint_offset ("tcp://*:5555", 0, out, sizeof out) == 0);
    assert (mesh_endpoint_offset ("ipc:///tmp/x", 10, out, sizeof out) == 0);
    assert (mesh_streq (out, "ipc:///tmp/x-10"));
    assert (mesh_endpoint_offset ("ipc:///tmp/x", 0, out, sizeof out) == 0);
    assert (mesh_streq (out, "ipc:///tmp/x"));
    assert (mesh_endpoint_offset ("ipc://", 0, out, sizeof out) == -1);
    assert (mesh_endpoint_offset ("inproc://x", 0, out, sizeof out) == -1);
}
