/*  mesh_peer: heartbeat liveness.                                           */
#include "mesh_peer.h"

#include <assert.h>

void
mesh_peer_init (mesh_peer_t *self, int64_t interval_ms, int64_t liveness, int64_t now_ms)
{
    self->interval_ms = interval_ms;
    self->liveness = liveness;
    self->last_seen_ms = now_ms;
    self->next_beat_ms = now_ms;
}

void
mesh_peer_seen (mesh_peer_t *self, int64_t now_ms)
{
    self->last_seen_ms = now_ms;
}

bool
mesh_peer_expired (const mesh_peer_t *self, int64_t now_ms)
{
    return now_ms - self->last_seen_ms > self->interval_ms * self->liveness;
}

bool
mesh_peer_beat_due (mesh_peer_t *self, int64_t now_ms)
{
    if (now_ms < self->next_beat_ms)
        return false;
    self->next_beat_ms = now_ms + self->interval_ms;
    return true;
}

int64_t
mesh_peer_silence_ms (const mesh_peer_t *self, int64_t now_ms)
{
    return now_ms - self->last_seen_ms;
}

void
mesh_peer_test (bool verbose)
{
    (void) verbose;
    mesh_peer_t peer;
    mesh_peer_init (&peer, 500, 3, 1000);
    assert (mesh_peer_beat_due (&peer, 1000));
    assert (!mesh_peer_beat_due (&peer, 1499));
    assert (mesh_peer_beat_due (&peer, 1500));
    assert (!mesh_peer_expired (&peer, 2500));
    assert (mesh_peer_expired (&peer, 2501));
    mesh_peer_seen (&peer, 2400);
    assert (!mesh_peer_expired (&peer, 3900));
    assert (mesh_peer_expired (&peer, 3901));
    assert (mesh_peer_silence_ms (&peer, 3901) == 1501);
}
