/*  mesh_audit_wal: the store's WAL copier (see mesh_audit_wal.h).
    s_wal_run runs on the copier's thread; the exported functions on the
    writer's.                                                               */
#include "mesh_audit_wal.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mesh_audit_wal_t {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;                //  for the thread
    pthread_cond_t released;            //  for the writer: held went false
    char path [4096];                   //  the day file written now ("": none)
    bool kicked;
    bool held;                          //  the thread has a day file open
    bool stop;
};

static void *
s_wal_run (void *arg)
{
    mesh_audit_wal_t *self = arg;
    sqlite3 *db = NULL;
    char open_path [4096] = "";
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        if (!self->kicked) {
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            until.tv_sec += MESH_AUDIT_WAL_IDLE_MS / 1000;
            pthread_cond_timedwait (&self->wake, &self->lock, &until);
            if (self->stop)
                break;
        }
        self->kicked = false;
        char path [4096];
        snprintf (path, sizeof path, "%s", self->path);
        pthread_mutex_unlock (&self->lock);
        if (db && strcmp (path, open_path) != 0) {
            sqlite3_close (db);
            db = NULL;
            pthread_mutex_lock (&self->lock);
            self->held = false;
            pthread_cond_broadcast (&self->released);
            pthread_mutex_unlock (&self->lock);
        }
        if (!db && *path) {
            if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
                != SQLITE_OK) {
                sqlite3_close (db);
                db = NULL;
            }
            else {
                sqlite3_busy_timeout (db, 100);
                sqlite3_exec (db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
                snprintf (open_path, sizeof open_path, "%s", path);
                pthread_mutex_lock (&self->lock);
                self->held = true;
                pthread_mutex_unlock (&self->lock);
            }
        }
        if (db) {
            int frames = 0, copied = 0;
            sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied);
        }
        pthread_mutex_lock (&self->lock);
    }
    pthread_mutex_unlock (&self->lock);
    sqlite3_close (db);
    return NULL;
}

mesh_audit_wal_t *
mesh_audit_wal_new (void)
{
    mesh_audit_wal_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    pthread_cond_init (&self->released, NULL);
    int rc = pthread_create (&self->thread, NULL, s_wal_run, self);
    assert (rc == 0);
    return self;
}

void
mesh_audit_wal_destroy (mesh_audit_wal_t **self_p)
{
    assert (self_p);
    mesh_audit_wal_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    pthread_cond_destroy (&self->wake);
    pthread_cond_destroy (&self->released);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

void
mesh_audit_wal_release (mesh_audit_wal_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->path [0] = 0;
    self->kicked = true;
    pthread_cond_signal (&self->wake);
    while (self->held)
        pthread_cond_wait (&self->released, &self->lock);
    pthread_mutex_unlock (&self->lock);
}

void
mesh_audit_wal_kick (mesh_audit_wal_t *self, const char *path)
{
    pthread_mutex_lock (&self->lock);
    if (path)
        snprintf (self->path, sizeof self->path, "%s", path);
    self->kicked = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
}

int
mesh_audit_wal_hook (void *arg, sqlite3 *db, const char *name, int pages)
{
    mesh_audit_wal_t *self = arg;
    if (pages >= MESH_AUDIT_WAL_PAGES_MAX)
        sqlite3_wal_checkpoint_v2 (db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    else
    if (pages >= MESH_AUDIT_WAL_PAGES_KICK)
        mesh_audit_wal_kick (self, NULL);
    return SQLITE_OK;
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"
#include "mesh_time.h"

#include <sys/stat.h>
#include <unistd.h>

static long long
s_test_size (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? (long long) st.st_size : -1;
}

//  A writer's connection to path in WAL mode, with the copier's hook and
//  about pages pages of rows in its WAL.  As the store does, the copier is
//  given the file (kick) once the file is in WAL mode.
static sqlite3 *
s_test_writer (const char *path, mesh_audit_wal_t *wal, bool kick, int pages)
{
    sqlite3 *db = NULL;
    assert (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)
            == SQLITE_OK);
    assert (sqlite3_exec (db, "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL;"
                          "CREATE TABLE t (x BLOB)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_wal_hook (db, mesh_audit_wal_hook, wal);
    if (kick)
        mesh_audit_wal_kick (wal, path);
    for (int i = 0; i < pages; i++)
        assert (sqlite3_exec (db, "INSERT INTO t VALUES (randomblob (4000))", NULL, NULL, NULL)
                == SQLITE_OK);
    return db;
}

void
mesh_audit_wal_test (bool verbose)
{
    (void) verbose;
    char root [1024], path [4096], wal_path [4200];
    mesh_audit_sample_tmpdir (root, sizeof root);
    mesh_audit_wal_t *wal = mesh_audit_wal_new ();

    //  Kicked past MESH_AUDIT_WAL_PAGES_KICK, the copier fills the day file
    //  from the WAL while the writer only writes the WAL
    snprintf (path, sizeof path, "%s/audit-2026-03-01.db", root);
    snprintf (wal_path, sizeof wal_path, "%s-wal", path);
    int rows = MESH_AUDIT_WAL_PAGES_KICK + 50;
    sqlite3 *db = s_test_writer (path, wal, true, rows);
    int64_t deadline = mesh_mono_us () + 10 * 1000000;
    while (s_test_size (path) < (long long) rows * 4000 && mesh_mono_us () < deadline)
        usleep (10000);
    assert (s_test_size (path) >= (long long) rows * 4000);
    //  Released, it has let go of the file: the writer's connection is the
    //  last, and closing it removes the WAL
    mesh_audit_wal_release (wal);
    sqlite3_close (db);
    assert (access (wal_path, F_OK) != 0);

    //  A file the copier does not know: below the limits the WAL stays as
    //  it is; at MESH_AUDIT_WAL_PAGES_MAX the writer copies it itself
    snprintf (path, sizeof path, "%s/audit-2026-03-02.db", root);
    snprintf (wal_path, sizeof wal_path, "%s-wal", path);
    db = s_test_writer (path, wal, false, 20);
    long long before = s_test_size (path);
    assert (mesh_audit_wal_hook (wal, db, "main", MESH_AUDIT_WAL_PAGES_KICK - 1) == SQLITE_OK);
    assert (s_test_size (path) == before);
    assert (mesh_audit_wal_hook (wal, db, "main", MESH_AUDIT_WAL_PAGES_MAX) == SQLITE_OK);
    assert (s_test_size (path) >= before + 20 * 4096);
    sqlite3_close (db);

    mesh_audit_wal_destroy (&wal);
    mesh_audit_wal_destroy (&wal);
    assert (wal == NULL);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
