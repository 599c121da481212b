/*  mesh_faq_store: the FAQ entries every router and the cache stage share,
    kept in Redis.

        seekmesh:faq    hash: entry id -> entry JSON (mesh_faq.h)
    Every write also PUBLISHes the id on the channel seekmesh:faq; each
    holder then reads the whole hash again (and after every reconnect, and
    after a read that failed, in case it missed a message).  Entries that
    do not parse are skipped, logged and counted; the others are served.
    While Redis is away the last entries read stay in force and writes are
    refused.  Runs on the thread of the mesh_redis it is given.              */
#ifndef MESH_FAQ_STORE_H
#define MESH_FAQ_STORE_H

#include "mesh_faq.h"
#include "mesh_metrics.h"

#include <stdbool.h>

struct mesh_redis_t;

#define MESH_FAQ_STORE_HASH     "seekmesh:faq"
#define MESH_FAQ_STORE_CHANNEL  "seekmesh:faq"

typedef struct mesh_faq_store_t mesh_faq_store_t;
//  A write ended: ok, or Redis failed it (nothing changed)
typedef void (mesh_faq_store_fn) (void *arg, bool ok);

//  redis may be NULL (no entries, writes refused).  service names the
//  metric seekmesh_<service>_faq_entries.
mesh_faq_store_t *mesh_faq_store_new (struct mesh_redis_t *redis, mesh_metrics_t *metrics,
                                      const char *service);
void  mesh_faq_store_destroy (mesh_faq_store_t **self_p);
//  The entries as last read (borrowed; replaced by the next read)
mesh_faq_t *mesh_faq_store_entries (mesh_faq_store_t *self);
//  Reads again if a read failed or Redis came back (call every heartbeat)
void  mesh_faq_store_tick (mesh_faq_store_t *self);
//  Writes entry (JSON with its id) or removes id (entry NULL), and tells
//  every holder.  fn is called once, later; -1 (fn never called) when
//  Redis is away.
int   mesh_faq_store_write (mesh_faq_store_t *self, const char *id, const char *entry,
                            mesh_faq_store_fn *fn, void *arg);

void  mesh_faq_store_test (bool verbose);

#endif
