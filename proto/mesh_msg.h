/*  mesh_msg: the one codec of the seekmesh wire protocol.

    Every ZeroMQ message is one frame holding a msgpack array:
        [ "SM", version, type, request id, fields of that type ... ]
    (a ROUTER socket adds its identity frame in front).  The fields of each
    type are defined once, in mesh_msg.def; PROTOCOL.md describes them.

    Encoding uses msgpack-c's packer.  Decoding is our own strict reader: it
    accepts exactly the types and sizes the schema names, allocates nothing
    and copies nothing but short strings.  (msgpack-c's unpacker allocates a
    container's declared element count before reading it, so six hostile
    bytes can ask it for gigabytes.)  A malformed message is rejected with a
    reason; it never trips an assert.  Any thread; no shared state.         */
#ifndef MESH_MSG_H
#define MESH_MSG_H

#include "mesh_buf.h"
#include "mesh_id.h"
#include "mesh_msg.def"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define MESH_PROTO_SIGNATURE "SM"
#define MESH_PROTO_VERSION   5
#define MESH_MAX_BODY_BYTES  (64u * 1024 * 1024)

typedef struct {
    const char *data;
    size_t size;
} mesh_bytes_t;

//  Type codes: MESH_MSG_REQUEST, MESH_MSG_DISPATCH, ...
enum {
#define M(NAME, code, id, fields) MESH_MSG_##NAME = code,
#define F(x)
    MESH_MESSAGES (M)
#undef M
#undef F
    MESH_MSG_MAX
};

//  REQUEST.kind
//  INVALID: a request the ingress refused; the router answers its body's
//  verdict once it knows whose key it is (or 401), for the audit record
enum { MESH_KIND_CHAT = 1, MESH_KIND_MODELS = 2, MESH_KIND_INVALID = 3,
       MESH_KIND_SESSION_GET = 4, MESH_KIND_SESSION_DELETE = 5 };
//  CHUNK.flags
enum { MESH_CHUNK_COMMENT = 1 };
//  ERROR.flags and FAIL.flags: whether a client retry can help
//  (x-should-retry); FAIL also says whether the router may retry it
enum { MESH_ERROR_RETRY_YES = 1, MESH_ERROR_RETRY_NO = 2, MESH_FAIL_RETRYABLE = 4,
       MESH_FAIL_ENDPOINT = 8 /* the endpoint is at fault: counts for ejection */ };
//  ERROR.flags from a router: it did nothing with the request (draining,
//  no connector): another router may take it
enum { MESH_ERROR_ELSEWHERE = 4 };
//  LOOKUP.flags: what the router asks of the cache
enum { MESH_LOOKUP_STORE = 1,       //  cacheable: look up, coalesce, store the answer
       MESH_LOOKUP_NO_CACHE = 2,    //  x-seekmesh-cache: no-cache: a fresh answer, stored
       MESH_LOOKUP_SHARED = 4,      //  the model's answers are shared by its tenants
       MESH_LOOKUP_FAQ = 8 };       //  the tenant has FAQ entries: match them
//  LOOKUP.max_temp_milli when the model sets no temperature limit
#define MESH_LOOKUP_ANY_TEMPERATURE 100000

//  One struct for every message type; a message uses the fields its type
//  lists.  BIN fields of a decoded message point into the received frame.
typedef struct {
    uint32_t type;
    char id [MESH_ID_LEN + 1];
#define F(NAME, kind, member, max) MESH_FIELD_##kind (member, max)
#define MESH_FIELD_U32(member, max)  uint32_t member;
#define MESH_FIELD_U64(member, max)  uint64_t member;
#define MESH_FIELD_BOOL(member, max) bool member;
#define MESH_FIELD_STR(member, max)  char member [max + 1];
#define MESH_FIELD_BIN(member, max)  mesh_bytes_t member;
    MESH_FIELDS (F)
#undef F
} mesh_msg_t;

//  Name of a type code ("REQUEST"), or "?".
const char *mesh_msg_name (uint32_t type);

//  Starts a message: zeroes msg and sets type and (for REQ types) id.
void mesh_msg_init (mesh_msg_t *msg, uint32_t type, const char *id);

//  Appends the encoding of msg to out.  Returns -1 (and encodes nothing) if
//  a field breaks the schema: a bug in the caller.
int  mesh_msg_encode (const mesh_msg_t *msg, mesh_buf_t *out);

//  A batch: several encoded messages in one BATCH frame, so a queue of them
//  costs the sockets, their I/O threads and CURVE one message.  Appends
//  msg's encoding to batch, behind its 4-byte little-endian length; -1 (and
//  nothing appended) if it breaks the schema.
int  mesh_msg_batch_add (mesh_buf_t *batch, const mesh_msg_t *msg);
//  The next message of a batch's data at *offset (advanced): 1 with its
//  bytes, 0 at the end, -1 when the lengths do not add up.
int  mesh_msg_batch_next (mesh_bytes_t data, size_t *offset, mesh_bytes_t *part);
//  Sends count messages gathered with mesh_msg_batch_add: one alone as
//  itself, more as one BATCH.  Same contract as mesh_msg_send.
int  mesh_msg_send_batch (void *socket, const mesh_buf_t *batch, size_t count,
                          const void *identity, size_t identity_size, int flags);

//  Decodes one frame into msg.  Returns 0, or -1 with a reason in why.
int  mesh_msg_decode (mesh_msg_t *msg, const void *data, size_t size,
                      char *why, size_t why_size);

//  Encodes msg and sends it as one frame (after identity, if given, for a
//  ROUTER socket).  Returns 0, or -1 with errno from zmq_send (EAGAIN at
//  the high-water mark with ZMQ_DONTWAIT, EHOSTUNREACH for an unknown peer
//  on a mandatory ROUTER).
int  mesh_msg_send (void *socket, const mesh_msg_t *msg,
                    const void *identity, size_t identity_size, int flags);

//  A received message and the frames it points into.  Close it when done.
typedef struct {
    mesh_msg_t msg;
    zmq_msg_t frame;
    char identity [256];        //  for messages read from a ROUTER socket
    size_t identity_size;
    int source_fd;              //  the TCP connection it came over, or -1
} mesh_inbox_t;

//  Receives one message without blocking.  Returns 1 with a valid message,
//  0 when nothing is queued, -1 when a malformed message was read and
//  dropped (why says why; the caller logs and counts it).
int  mesh_msg_recv (void *socket, mesh_inbox_t *inbox, bool router,
                    char *why, size_t why_size);
void mesh_inbox_close (mesh_inbox_t *inbox);

void mesh_msg_test (bool verbose);

#endif
