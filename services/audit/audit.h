/*  audit: the audit service.  Receives AUDIT records from ingresses on a
    ROUTER socket, has the writer thread (audit_writer.h) store them in
    batches, and acknowledges each sender's records with ACK once they are
    durable.  Reactor thread only, except where audit_writer.h says.         */
#ifndef AUDIT_H
#define AUDIT_H

#include "mesh_audit.h"
#include "mesh_buf.h"
#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct audit_t audit_t;

//  Resolves the directory and keys (making a development key if there is
//  none), opens the store on the writer thread and binds audit.listen.
//  NULL with a reason naming the config field, file or endpoint.
audit_t *audit_new (mesh_config_t *config, void *zmq_ctx, mesh_loop_t *loop,
                    mesh_metrics_t *metrics, char *why, size_t why_size);
//  Acknowledges what the writer still commits, then frees everything.
void     audit_destroy (audit_t **self_p);
//  Ready once the store is open, until draining.
bool     audit_ready (audit_t *self, mesh_buf_t *why);
//  Stops reading, commits what is queued now; returns the records not yet
//  acknowledged.
size_t   audit_drain (audit_t *self);
size_t   audit_inflight (audit_t *self);

void     audit_test (bool verbose);

//  `seekmesh-audit bench`: a DEALER client pushing records through a
//  running service; prints the durable records/s.  Exit status.
int      audit_bench (int argc, char *argv []);
//  A plausible record (an ok stream) with this id, prompt and response,
//  which it points to: the bench's and the selftest's
void     audit_bench_record (mesh_audit_record_t *record, const char *id,
                             const mesh_bytes_t *prompt, const mesh_bytes_t *response);

#endif
