/*  mesh_audit: the audit record, and its one codec.

    One record per client request, made by the ingress when the request
    ends for any reason, carried to seekmesh-audit in an AUDIT message
    (proto/PROTOCOL.md) and stored there (mesh_audit_store.h).

    Wire form: one msgpack array
        [ "SA", MESH_AUDIT_VERSION, field, field, … ]
    with the fields below in this order and exactly these msgpack types:
    str for text (UTF-8, no NUL, at most the size given), bin for bytes,
    positive int for numbers, bool.  Encoding uses msgpack-c's packer;
    decoding is strict and allocation-free like mesh_msg's: a decoded
    record's text and bytes point into the frame it came from.  A
    malformed record is refused with a reason; it never trips an assert.
    Any thread; no shared state.                                            */
#ifndef MESH_AUDIT_H
#define MESH_AUDIT_H

#include "mesh_buf.h"
#include "mesh_msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_AUDIT_VERSION        1
#define MESH_AUDIT_MAX_TEXT       (64u * 1024 * 1024)  //  prompt, response

//  The outcomes a record names (outcome)
#define MESH_AUDIT_OK              "ok"              //  answered by the upstream (or the cache)
#define MESH_AUDIT_FAQ             "faq"             //  answered by an operator's FAQ entry
#define MESH_AUDIT_CLIENT_GONE     "client_gone"     //  the client went away first
#define MESH_AUDIT_CONNECTOR_LOST  "connector_lost"  //  lost mid-stream, or out of attempts
#define MESH_AUDIT_UPSTREAM_ERROR  "upstream_error"  //  the upstream failed (status 5xx/429/…)
#define MESH_AUDIT_TIMEOUT         "timeout"         //  the ingress's request timeout
#define MESH_AUDIT_REFUSED         "refused"         //  the router refused it (key, model, quota, capacity)
#define MESH_AUDIT_INVALID         "invalid"         //  the ingress refused it (size, JSON, fields)
#define MESH_AUDIT_ERROR           "error"           //  anything else
#define MESH_AUDIT_FILTERED        "filtered"        //  the word filter refused or changed it
#define MESH_AUDIT_TAKEN_OVER      "taken_over"      //  an operator ended the stream to take over
//  Records of an operator's action on a session (made by a router)
#define MESH_AUDIT_TAKEOVER        "takeover"
#define MESH_AUDIT_OPERATOR_SAY    "operator_message"
#define MESH_AUDIT_RELEASE         "release"

typedef struct {
    mesh_bytes_t id;            //  str 26: the request id (a ULID)
    uint64_t start_ms;          //  wall clock: the request arrived
    uint64_t end_ms;            //  wall clock: it ended
    mesh_bytes_t tenant;        //  str 127, "" before the key was known
    mesh_bytes_t key_id;        //  str 64
    mesh_bytes_t model_requested;   //  str 255: what the client asked for
    mesh_bytes_t model;         //  str 255: the registry model that answered
    mesh_bytes_t endpoint;      //  str 511: its endpoint URL
    mesh_bytes_t region;        //  str 63
    mesh_bytes_t params;        //  str 4096: a JSON object of the request's
                                //  parameters (temperature, top_p, max_tokens,
                                //  stream, n, stop, tools (a count),
                                //  tool_choice, response_format, seed, user)
    bool stream;
    uint32_t status;            //  the HTTP status the client got (0: none)
    mesh_bytes_t outcome;       //  str 31: MESH_AUDIT_*
    mesh_bytes_t error_code;    //  str 63: the error envelope's code, or ""
    uint32_t attempts;          //  dispatches by the ingress (1 + retries)
    bool cache_hit;
    uint64_t queue_us;          //  arrival to the upstream call (ttft - upstream ttfb)
    uint64_t ttft_us;           //  arrival to the first byte sent to the client
    uint64_t total_us;          //  arrival to the end
    uint64_t upstream_ttfb_us;  //  the connector's: call to upstream's first byte
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    uint64_t cached_tokens;
    uint64_t reasoning_tokens;
    uint64_t bytes_out;         //  body bytes written to the client
    mesh_bytes_t prompt;        //  bin: the request body as received (JSON)
    mesh_bytes_t response;      //  bin: the body sent; for a stream, the answer
                                //  assembled from its deltas as a chat.completion
                                //  (with "errors": payloads that were not chunks)
    bool truncated;             //  response cut at the ingress's bound
} mesh_audit_record_t;

//  Appends the encoding of record to out.  -1 (nothing appended) if a
//  field breaks the limits above: a bug in the caller.
int  mesh_audit_encode (const mesh_audit_record_t *record, mesh_buf_t *out);
//  Decodes one record.  0, or -1 with a reason in why.
int  mesh_audit_decode (mesh_audit_record_t *record, const void *data, size_t size,
                        char *why, size_t why_size);

void mesh_audit_test (bool verbose);

#endif
