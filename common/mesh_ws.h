/*  mesh_ws: WebSocket (RFC 6455) frames, for the connector's upstream
    client and the mock's server.

    mesh_ws_reader_t consumes bytes from a buffer and reports data payload as
    it arrives, unmasked in place, without waiting for whole messages or
    frames: the connector feeds it straight into the SSE parser, so an event
    cut across frames is put together there.  Control frames (ping, pong,
    close) are reported whole.  It refuses what the RFC forbids: reserved
    bits, unknown opcodes, fragmented or oversized control frames, masking
    from the wrong side, a continuation with nothing to continue.
    Single-threaded per instance.                                             */
#ifndef MESH_WS_H
#define MESH_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    MESH_WS_CONTINUATION = 0x0,
    MESH_WS_TEXT = 0x1,
    MESH_WS_BINARY = 0x2,
    MESH_WS_CLOSE = 0x8,
    MESH_WS_PING = 0x9,
    MESH_WS_PONG = 0xa
};

//  Events of the reader
enum {
    MESH_WS_EV_DATA = 1,        //  payload bytes of a text or binary message
    MESH_WS_EV_MESSAGE_END,     //  the message that DATA belonged to ended
    MESH_WS_EV_PING,
    MESH_WS_EV_PONG,
    MESH_WS_EV_CLOSE            //  payload: 2-byte code and reason, or empty
};

#define MESH_WS_MAX_HEADER 14

//  Return 0 to go on, -1 to stop reading.
typedef int (mesh_ws_fn) (void *arg, int event, uint8_t *data, size_t len);

typedef struct {
    bool expect_masked;         //  a server reads masked frames
    uint64_t max_message_bytes;
    //  Frame being read
    bool in_frame;
    uint8_t opcode;
    bool fin;
    bool masked;
    uint8_t mask [4];
    uint64_t remaining;
    uint64_t mask_offset;
    //  Message being read (across continuation frames)
    bool in_message;
    uint64_t message_bytes;
} mesh_ws_reader_t;

void mesh_ws_reader_init (mesh_ws_reader_t *self, bool expect_masked,
                          uint64_t max_message_bytes);
//  Reads frames from buf [0 .. len), unmasking payload in place.  Returns
//  the bytes consumed (a partial header or control frame is left for the
//  next call), or -1 on a protocol error or when fn stopped.
int64_t mesh_ws_read (mesh_ws_reader_t *self, uint8_t *buf, size_t len,
                      mesh_ws_fn *fn, void *arg);

//  Writes a frame header into out (MESH_WS_MAX_HEADER bytes); mask NULL for
//  a server's frames.  Returns its length.  The caller masks the payload.
size_t mesh_ws_header (uint8_t *out, int opcode, bool fin, const uint8_t *mask,
                       uint64_t length);
void   mesh_ws_mask (uint8_t *data, size_t len, const uint8_t mask [4], uint64_t offset);

//  Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64 (sha1 (key + GUID)).
void   mesh_ws_accept_key (const char *key, size_t key_len, char out [29]);

void   mesh_ws_test (bool verbose);

#endif
