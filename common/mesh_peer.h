/*  mesh_peer: the liveness of a peer we exchange heartbeats with
    (Paranoid Pirate).

    Anything heard from the peer proves it alive (mesh_peer_seen); it is
    lost when silent for `liveness` intervals.  mesh_peer_beat_due says when
    our own heartbeat to it is due.  A plain struct, embedded where the peer
    is kept; no allocation.  Single-threaded.                               */
#ifndef MESH_PEER_H
#define MESH_PEER_H

#include <stdbool.h>
#include <stdint.h>

#define MESH_HEARTBEAT_INTERVAL_MS 500
#define MESH_HEARTBEAT_LIVENESS    3

typedef struct {
    int64_t interval_ms;
    int64_t liveness;
    int64_t last_seen_ms;
    int64_t next_beat_ms;
} mesh_peer_t;

void    mesh_peer_init (mesh_peer_t *self, int64_t interval_ms, int64_t liveness, int64_t now_ms);
void    mesh_peer_seen (mesh_peer_t *self, int64_t now_ms);
//  True once the peer has been silent for liveness intervals.
bool    mesh_peer_expired (const mesh_peer_t *self, int64_t now_ms);
//  True when our heartbeat to the peer is due; schedules the next one.
bool    mesh_peer_beat_due (mesh_peer_t *self, int64_t now_ms);
int64_t mesh_peer_silence_ms (const mesh_peer_t *self, int64_t now_ms);

void    mesh_peer_test (bool verbose);

#endif
