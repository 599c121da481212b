/*  mesh_audit_verify: checks that the audit store is whole and untouched,
    for the operators' tools.

    It reads every day file from a given day on, read-only, each in one
    snapshot (it may run while the service writes), and checks: seqs
    without gaps, each record's columns against its types and its sealed
    fields' shape, each record's chain value against its contents
    (mesh_audit_seal.h), days joined by their chain values, every
    checkpoint's signature (with the public key), that the chain gives the
    value each checkpoint signed, that each checkpoint is kept with its
    record and names the one before it (so none was removed, moved or put
    in another's place), that no checkpoint names a record that is gone,
    and that every record is signed: each day file but the newest ends
    with a checkpoint of its last record, and records after the newest
    checkpoint are accepted only as the live tail of a running writer (one
    holds the store's writer lock) that signs them within the wait given.
    The first checkpoint of a store whose oldest day files are gone
    (retention, or --from) names one before them: that is accepted when it
    is the checkpoint of the last record before them, and said in a note.
    It needs no key ring: the chain covers the ciphertexts.

    Any thread; each call has its own connections and state.                */
#ifndef MESH_AUDIT_VERIFY_H
#define MESH_AUDIT_VERIFY_H

#include "mesh_buf.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Checks every day file of the store in dir from from_date ("YYYY-MM-DD",
//  NULL: all); public_key NULL: signatures not checked.  Records after the
//  last checkpoint fail at once when no writer runs or tail_wait_ms is 0;
//  else the newest file is read again until a checkpoint signs them or
//  tail_wait_ms is over.  0 when all is well, with "ok: …" in report and
//  "note: …" lines after it; 1 with the first bad thing named in report
//  ("audit-….db seq N (id …): why", "audit-….db checkpoint of seq N:
//  why"); -1 with a reason when it cannot read (a file of an older format:
//  with what to do).
int     mesh_audit_verify (const char *dir, const char *from_date, EVP_PKEY *public_key,
                           int64_t tail_wait_ms, mesh_buf_t *report, char *why, size_t why_size);

void    mesh_audit_verify_test (bool verbose);

#endif
