/*  mesh_config: one JSON file for every service, every scalar overridable
    from the environment.

    A field is named by its dotted path ("ingress.max_body_bytes",
    "models.0.endpoint").  Its environment override is SEEKMESH_ followed by
    the path in upper case with dots and dashes as underscores
    (SEEKMESH_INGRESS_MAX_BODY_BYTES).  Lookup order: environment, file,
    the caller's default.

    A getter that meets a value of the wrong type returns the default and
    remembers the first such error; a service reads all its settings, then
    calls mesh_config_failed () and exits with that one line if it is set.
    Single-threaded (read at startup, or on the reactor thread on reload).  */
#ifndef MESH_CONFIG_H
#define MESH_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mesh_config_t mesh_config_t;

#define MESH_CONFIG_DEFAULT "compose/config/local.json"

//  Loads path (NULL: $SEEKMESH_CONFIG, else MESH_CONFIG_DEFAULT).  On a
//  missing or malformed file returns NULL with a message naming the file,
//  line and column in error.
mesh_config_t *mesh_config_load (const char *path, char *error, size_t error_size);
//  Parses a config held in memory (tests, fuzzing).
mesh_config_t *mesh_config_parse (const char *text, size_t len, const char *name,
                                  char *error, size_t error_size);
void        mesh_config_destroy (mesh_config_t **self_p);

const char *mesh_config_file (mesh_config_t *self);
//  The raw JSON node at path, or NULL (no environment lookup).
json_t     *mesh_config_node (mesh_config_t *self, const char *path);

int64_t     mesh_config_int (mesh_config_t *self, const char *path, int64_t dflt);
double      mesh_config_number (mesh_config_t *self, const char *path, double dflt);
bool        mesh_config_bool (mesh_config_t *self, const char *path, bool dflt);
//  The string lives as long as the config.
const char *mesh_config_str (mesh_config_t *self, const char *path, const char *dflt);
//  SEEKMESH_ and path in upper case, dots and dashes as underscores
void        mesh_config_env_name (const char *path, char *out, size_t size);
//  A JSON object that lives as long as the config, for values derived from
//  it (mesh_settings keeps moved addresses and peer lists there)
json_t     *mesh_config_memo (mesh_config_t *self);
//  Records an error naming the first member of the object at path that is
//  not in fields (NULL-terminated); nothing when path is not an object.
//  Returns -1 when one was found.
int         mesh_config_only (mesh_config_t *self, const char *path, const char *const *fields);
//  Size of the array at path; 0 if absent; an error if not an array.
size_t      mesh_config_array_size (mesh_config_t *self, const char *path);

//  Records a validation error found by the caller ("must be > 0"), naming
//  the file and field.  Only the first error is kept.
void        mesh_config_invalid (mesh_config_t *self, const char *path,
                                 const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
//  The first error met, or NULL.
const char *mesh_config_failed (mesh_config_t *self);

//  "an integer", "a string", … for messages about a JSON value.
const char *mesh_json_kind (json_t *value);

//  This process's instance number among replicas of its service
//  ($SEEKMESH_INSTANCE, default 0).
int         mesh_config_instance (void);
//  Rewrites "tcp://host:port" with port + offset into out ("ipc://path"
//  becomes "ipc://path-<offset>" when offset is not 0); returns -1 if the
//  endpoint has neither a numeric port nor an ipc path.
int         mesh_endpoint_offset (const char *endpoint, int offset, char *out, size_t size);

void        mesh_config_test (bool verbose);

#endif
