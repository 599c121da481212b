/*  mesh_settings: every setting of the mesh, in one table.

    Each setting has a dotted name ("ingress.max_body_bytes"), a kind, a
    default, a range (or the words it may be), and, for an address a
    service binds, the service that binds it.  From the table come: the
    values services read (the default is never written twice), the
    environment override (SEEKMESH_ and the name in upper case with dots as
    underscores: SEEKMESH_INGRESS_MAX_BODY_BYTES), the check of a whole
    config file (an unknown key, a wrong type, a value out of range: one
    line naming the file and the field), `--print-config` (the effective
    configuration as JSON, secrets redacted) and `--settings` (the table
    itself).  Redis's static_configs[] is the model.

    Replicas: instance i of a service (SEEKMESH_INSTANCE=i) binds every
    address it owns i x mesh.port_stride higher (an ipc:// path gets
    "-<offset>").  mesh_setting_str gives an owned address already moved;
    the lists of peers (ingress.routers, connector.routers) are the
    instances of router.listen / router.connector_listen unless set.
    Nothing else, in C, bash or the tests, derives a port: they ask
    `seekmesh-<service> --print-config`.

    The dynamic parts of a config (models, keys, aliases) are checked by
    their own loaders (mesh_models, router_keys).  Single-threaded, like
    mesh_config.                                                            */
#ifndef MESH_SETTINGS_H
#define MESH_SETTINGS_H

#include "mesh_config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MESH_SET_INT,           //  an integer in [min, max]
    MESH_SET_BOOL,
    MESH_SET_STR,           //  text; one of `choices` when they are given
    MESH_SET_ADDR,          //  "host:port" the owner binds ("" when optional and off)
    MESH_SET_ENDPOINT,      //  "tcp://host:port" or "ipc://path" the owner binds
    MESH_SET_PEERS          //  a list of ZeroMQ endpoints to connect to
} mesh_setting_kind_t;

typedef struct {
    const char *name;
    mesh_setting_kind_t kind;
    const char *dflt;
    int64_t min, max;       //  MESH_SET_INT
    const char *choices;    //  MESH_SET_STR: "refuse|drop", or NULL
    const char *owner;      //  MESH_SET_ADDR / ENDPOINT: the service that binds it
    const char *help;
} mesh_setting_t;

//  The table, and its size
const mesh_setting_t *mesh_settings_table (size_t *count);
//  A setting by name, or NULL
const mesh_setting_t *mesh_setting_find (const char *name);

//  Checks the whole config: every key of the file known, every setting's
//  value (file or environment) of its kind and in range.  The first error
//  is kept in the config (mesh_config_failed); returns -1 when there is one.
int mesh_settings_check (mesh_config_t *config);

//  Values.  name must be in the table (a bug otherwise).  A bad value
//  gives the default and records the error in the config.
int64_t     mesh_setting_int (mesh_config_t *config, const char *name);
bool        mesh_setting_bool (mesh_config_t *config, const char *name);
//  Text; an address or endpoint moved for this instance.  Lives as long as
//  the config.
const char *mesh_setting_str (mesh_config_t *config, const char *name);
//  A list of peers: its size, and item i
size_t      mesh_setting_count (mesh_config_t *config, const char *name);
const char *mesh_setting_item (mesh_config_t *config, const char *name, size_t i);

//  The effective configuration as JSON: every setting as this instance
//  would run with it, the models, aliases and keys (key secrets redacted),
//  and "mesh.instance".  The caller frees it.
char *mesh_settings_effective (mesh_config_t *config);
//  The table as JSON: name, kind, default, range, environment variable, help
char *mesh_settings_describe (void);

void mesh_settings_test (bool verbose);

#endif
