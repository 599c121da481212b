/*  mesh_audit_wal: a thread that copies the audit store's WAL back into
    its day file.

    Copying the WAL into the database file (and syncing that) costs about as
    much as writing the WAL.  This thread does it with a connection of its
    own and PASSIVE checkpoints, which never block the writer, so that the
    writer's thread only writes the WAL.  The writer's WAL hook
    (mesh_audit_wal_hook) wakes it every MESH_AUDIT_WAL_PAGES_KICK pages;
    if it falls MESH_AUDIT_WAL_PAGES_MAX behind, the writer checkpoints
    too.  Idle, it copies what is in the WAL every MESH_AUDIT_WAL_IDLE_MS.

    Two threads: the copier's own, and the writer's (the thread that owns
    the store), which calls every function here.  They share only the
    path of the day file written now, under the copier's lock.              */
#ifndef MESH_AUDIT_WAL_H
#define MESH_AUDIT_WAL_H

#include <sqlite3.h>
#include <stdbool.h>

#define MESH_AUDIT_WAL_PAGES_KICK 256   //  16 MiB in the WAL: wake the copier
#define MESH_AUDIT_WAL_PAGES_MAX  4096  //  256 MiB: it fell behind, the writer helps
#define MESH_AUDIT_WAL_IDLE_MS    1000  //  a WAL with anything in it is copied this often

typedef struct mesh_audit_wal_t mesh_audit_wal_t;

//  Starts the thread, with no file
mesh_audit_wal_t *mesh_audit_wal_new (void);
//  Stops the thread, which closes its connection
void        mesh_audit_wal_destroy (mesh_audit_wal_t **self_p);
//  Wakes the thread; path (not NULL) is the day file written from now on
void        mesh_audit_wal_kick (mesh_audit_wal_t *self, const char *path);
//  Has the thread close its connection and waits for that, so that the
//  writer's is the last one to the file and closing it folds the WAL back
//  and removes it (rather than leave it to a reader of the old day)
void        mesh_audit_wal_release (mesh_audit_wal_t *self);
//  The writer's WAL hook (sqlite3_wal_hook (db, mesh_audit_wal_hook,
//  self)): after each commit, with the WAL's size in pages.  It replaces
//  SQLite's own automatic checkpoints.
int         mesh_audit_wal_hook (void *self, sqlite3 *db, const char *name, int pages);

void        mesh_audit_wal_test (bool verbose);

#endif
