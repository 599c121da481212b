/*  The connector's public face, for main.c and its own modules.             */
#ifndef CONNECTOR_MAIN_H
#define CONNECTOR_MAIN_H

#include "connector.h"

connector_t *connector_new (mesh_config_t *config, void *zmq_ctx, mesh_loop_t *loop,
                            mesh_metrics_t *metrics, char *why, size_t why_size);
void    connector_destroy (connector_t **self_p);
bool    connector_ready (connector_t *self, mesh_buf_t *why);
//  Stops taking work; returns the number of requests still in flight.
size_t  connector_drain (connector_t *self);
size_t  connector_inflight (connector_t *self);

#endif
