/*  ingress_audit: one audit record for every request.

    A request that reaches the ingress's request handling (it has a request
    id) owes a record.  The HTTP and mesh modules note what the record says
    as the request goes (outcome, error code, tenant, endpoint, usage, the
    response the client is sent, up to ingress.audit_max_response_bytes);
    when it ends, for whatever reason, ingress_audit_end makes the record
    (mesh_audit.h) and hands it to ingress_audit_link.c, which keeps it
    until seekmesh-audit has stored it.

    When the spool is full and ingress.audit_when_full is "refuse", new
    requests are answered 503 audit_unavailable and get no record.
    lws service thread only.                                                 */
#ifndef INGRESS_AUDIT_H
#define INGRESS_AUDIT_H

#include "ingress.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ingress_audit_t ingress_audit_t;

//  Reads and checks the ingress.audit_* settings (a bad one through
//  mesh_config_invalid) and registers the metrics.  Before the loop runs.
void ingress_audit_configure (ingress_t *self);
//  Connects the link to seekmesh-audit; when audit is off, says so in the
//  log.  -1 with a reason.
int  ingress_audit_start (ingress_t *self, char *why, size_t why_size);
//  Closes the link and frees the spool, logging the records that were
//  never acknowledged.  After the lws context is destroyed.
void ingress_audit_stop (ingress_t *self);
//  Records made and not yet acknowledged
size_t ingress_audit_unacked (ingress_t *self);

//  A new request (it has its id): a record is owed
void ingress_audit_begin (pss_t *pss);
//  When the spool is full and full means "refuse": counts the refusal,
//  forgets the record owed, returns true; the caller answers 503.
bool ingress_audit_refuse (pss_t *pss);
//  What the client is sent, for the record's response: one SSE payload
//  (part: joined to the others with "\n") or the whole body.  One memcpy.
void ingress_audit_capture (pss_t *pss, const char *data, size_t len, bool part);
//  What a HEAD, END or ERROR says for the record
void ingress_audit_note (pss_t *pss, const mesh_msg_t *msg);
//  Decides how the request ended (MESH_AUDIT_*), unless its response is
//  complete already
void ingress_audit_outcome (pss_t *pss, const char *outcome);
//  The outcome a router's or connector's ERROR stands for, by its code:
//  the router's refusals before it dispatched, else an upstream error
const char *ingress_audit_error_outcome (const char *code);
//  RECORD from a router: an operator's action, spooled and sent like the
//  ingress's own records (only the operators' outcomes are taken)
void ingress_audit_forward (ingress_t *self, const mesh_msg_t *msg);
//  The request ended: makes, spools and sends its record, if one is owed.
//  closed: the connection closed before the response was complete.
void ingress_audit_end (pss_t *pss, bool closed);

void ingress_audit_test (bool verbose);

#endif
