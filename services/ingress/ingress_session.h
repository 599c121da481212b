/*  ingress_session: the ingress's part in sessions (router_session.c owns
    them).

    - A chat request belongs to a session by the header x-seekmesh-session
      or the body's metadata.session_id (both: they must agree); the id is
      1-128 letters, digits and . _ : - (else 400 invalid_session_id).  It
      goes to the router in REQUEST.session.
    - GET /v1/sessions/ID and DELETE /v1/sessions/ID are REQUESTs of kinds
      4 and 5; the router answers them (REPLY or ERROR).
    - When a session's chat request ends, however it ends, the router that
      has it is told (TURN) with the answer the client got, assembled from
      the stream (or the body) as an assistant message without its
      reasoning; empty when the client got none (an error, the client
      gone).  Outcome: "ok", "filtered", "taken_over", or why it failed.
    - STOP from the router (an operator took the session over): a stream
      ends at once, cleanly (what the word filter held, a last chunk with
      finish_reason "stop", [DONE]) and its upstream call is cancelled.
    - RECORD from a router (an operator's action) is handed to the audit
      link like the ingress's own records (ingress_audit_forward).

    lws service thread only.                                                */
#ifndef INGRESS_SESSION_H
#define INGRESS_SESSION_H

#include "ingress.h"

#include <stdbool.h>
#include <stddef.h>

//  The session header of a new request (before its body).  -1 when it is
//  malformed: the 400 is queued
int  ingress_session_header (pss_t *pss);
//  The body's metadata.session_id (NULL: none).  -1 after queueing a 400
int  ingress_session_body (pss_t *pss, const char *session_id);
//  A GET or DELETE of /v1/sessions/ID (or /sessions/ID): true when uri is
//  one, with pss ready to submit (kind and session) or answered already
bool ingress_session_route (pss_t *pss, const char *uri, size_t uri_len, int method);
//  The request ended (before its audit record is made): TURN, if owed
void ingress_session_end (pss_t *pss, bool closed);
//  STOP from a router
void ingress_session_stop (ingress_t *self, const mesh_msg_t *msg);

void ingress_session_test (bool verbose);

#endif
