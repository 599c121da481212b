/*  mesh_audit_sample: sample records and stores for the selftests of the
    audit store's modules (keyring, seal, sealer, wal, file, store, query,
    verify) and of the tools that read the store.  Not used by the
    services.

    Every function asserts: a failure is a failed selftest.  Any thread,
    but the query helpers keep their result in one static: one caller at a
    time.                                                                    */
#ifndef MESH_AUDIT_SAMPLE_H
#define MESH_AUDIT_SAMPLE_H

#include "mesh_audit.h"
#include "mesh_audit_keyring.h"
#include "mesh_audit_query.h"
#include "mesh_id.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Two key lines, and three days of samples
#define MESH_AUDIT_SAMPLE_KEY1 "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define MESH_AUDIT_SAMPLE_KEY2 "k2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define MESH_AUDIT_SAMPLE_DAY1 "2026-03-01"
#define MESH_AUDIT_SAMPLE_DAY2 "2026-03-02"
#define MESH_AUDIT_SAMPLE_DAY3 "2026-03-03"
#define MESH_AUDIT_SAMPLE_MAX  400

//  Room for MESH_AUDIT_SAMPLE_MAX records and their text
typedef struct {
    char ids [MESH_AUDIT_SAMPLE_MAX][MESH_ID_LEN + 1];
    char prompts [MESH_AUDIT_SAMPLE_MAX][96];
    char responses [MESH_AUDIT_SAMPLE_MAX][160];
    mesh_audit_record_t records [MESH_AUDIT_SAMPLE_MAX];
} mesh_audit_sample_t;

mesh_bytes_t mesh_audit_sample_text (const char *text);
//  Makes record i of self, with a new request id, started at start_ms:
//  tenant t0/t1 by i's parity; model m-b (asked for as alias-b) when i % 3
//  is 0, else m-a; i % 5 == 4 failed with 429; the prompt holds
//  "secret <i>", the response "Echo:" and " secret <i>" deltas
mesh_audit_record_t *mesh_audit_sample_record (mesh_audit_sample_t *self, size_t i,
                                               int64_t start_ms);
//  Milliseconds offset_ms after the start of day ("YYYY-MM-DD", UTC)
int64_t  mesh_audit_sample_at (const char *day, int64_t offset_ms);
//  A signing key made in dir as <name>.pem, with <name>.pub.pem; its
//  public key into *public_key (when public_key is not NULL)
EVP_PKEY *mesh_audit_sample_signer (const char *dir, const char *name, EVP_PKEY **public_key);
//  A fresh store in dir of count records (records 0 .. count - 1 of self,
//  one an append) on MESH_AUDIT_SAMPLE_DAY1, checkpointed after every
//  10th record and at the close
void     mesh_audit_sample_store (const char *dir, mesh_audit_sample_t *self, size_t count,
                                  mesh_audit_keyring_t *keys, EVP_PKEY *signer);
//  The writer's bench (mesh_audit_store_test runs it when
//  SEEKMESH_AUDIT_BENCH=N): appends N records of 1 KiB prompt and 1 KiB
//  response to a new store in dir in batches of 4096
//  (SEEKMESH_AUDIT_BENCH_BATCH), a checkpoint after each, and prints the
//  durable rate
void     mesh_audit_sample_bench (const char *dir, mesh_audit_keyring_t *keys, EVP_PKEY *signer,
                                  size_t total);

//  A new scratch directory under $TMPDIR (or /tmp) into root
void     mesh_audit_sample_tmpdir (char *root, size_t size);
//  Deletes dir and everything in it
void     mesh_audit_sample_rmtree (const char *dir);
//  Writes text into a new file at path (replacing it)
void     mesh_audit_sample_write (const char *path, const char *text);
//  Runs sql on the day file of day in dir (the store closed)
void     mesh_audit_sample_sql (const char *dir, const char *day, const char *sql);

//  Verifies dir: asserts the result and that the report holds want
//  (NULL: "ok:")
void     mesh_audit_sample_verify (const char *dir, const char *from, EVP_PKEY *public_key,
                                   int want_rc, const char *want, bool verbose);

//  What a query saw
typedef struct {
    size_t rows, decrypted, failed;
    uint64_t seqs [MESH_AUDIT_SAMPLE_MAX];
    const char *errors [MESH_AUDIT_SAMPLE_MAX];
    char first_prompt [128];
    int64_t last_start;
    bool ordered;                       //  in time order
    size_t stop_after;                  //  0: never; else return 7 after so many rows
} mesh_audit_sample_seen_t;

//  A mesh_audit_query_fn filling a mesh_audit_sample_seen_t (arg), which
//  checks what every row promises (text NUL-terminated, the file named,
//  prompt and response only when decrypted)
int      mesh_audit_sample_collect (void *arg, const mesh_audit_query_row_t *row);
//  Queries dir (asserting it succeeds); what it saw, in a static
mesh_audit_sample_seen_t *mesh_audit_sample_query (const char *dir,
                                                   const mesh_audit_query_filter_t *filter,
                                                   mesh_audit_keyring_t *keys);

void     mesh_audit_sample_test (bool verbose);

#endif
