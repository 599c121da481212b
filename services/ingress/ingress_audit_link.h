/*  ingress_audit_link: the spool of audit records and the DEALER link that
    carries them to seekmesh-audit.

    A record handed over is numbered (seq, from 1 for this sender: the
    ingress's instance, pid and start time), wrapped in an AUDIT message,
    kept in the spool and sent.  ACK(seq) forgets every record up to seq.
    Until then a record is sent again when the link reconnects, and when no
    ACK has come for resend_ms.  The spool is bounded by max_records and
    max_bytes: at the bound, "refuse" makes ingress_audit_link_full true
    (the caller refuses new requests; records of requests already taken
    are always kept), "drop" forgets the oldest record.

    lws service thread only; frames handed to ZeroMQ are freed by whichever
    of the spool and ZeroMQ's I/O thread lets go last.                       */
#ifndef INGRESS_AUDIT_LINK_H
#define INGRESS_AUDIT_LINK_H

#include "ingress.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ingress_audit_link_t ingress_audit_link_t;

//  A link to endpoint ("": audit off, records are refused by
//  ingress_audit_link_send); registers the metrics.  Connects nothing yet.
ingress_audit_link_t *ingress_audit_link_new (ingress_t *ingress, const char *endpoint,
                                              uint64_t max_records, uint64_t max_bytes,
                                              bool drop_when_full, int64_t resend_ms);
//  Closes the link and frees the spool, logging the records that were
//  never acknowledged.  Safe twice.
void ingress_audit_link_destroy (ingress_audit_link_t **self_p);
//  Connects the DEALER and adopts it into the lws loop.  -1 with a reason.
int  ingress_audit_link_start (ingress_audit_link_t *self, char *why, size_t why_size);
//  Spools one encoded record (mesh_audit.h) of a request that ended at
//  end_us (monotonic) and sends it if nothing older waits.  -1 (counted as
//  dropped) if it cannot be wrapped: a bug.
int  ingress_audit_link_send (ingress_audit_link_t *self, const void *record, size_t size,
                              int64_t end_us);
//  At the bound, and the bound means "refuse"
bool ingress_audit_link_full (ingress_audit_link_t *self);
//  Records not acknowledged yet
size_t ingress_audit_link_unacked (ingress_audit_link_t *self);
//  What to say about the link in a log line: "tcp://… connected", "… away"
const char *ingress_audit_link_state (ingress_audit_link_t *self);

void ingress_audit_link_test (bool verbose);

#endif
