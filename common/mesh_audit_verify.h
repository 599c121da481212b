/*  mesh_audit_verify: checks that the audit store is whole and untouched,
    for the operators' tools.

    It reads every day file from a given day on, read-only, each in one
    snapshot (it may run while the service writes), and checks: seqs
    without gaps, each record's columns against its types and its sealed
    fields' shape, each record's chain value against its contents
    (mesh_audit_seal.h), days joined by their chain values, every
    checkpoint's signature (with the public key), that the chain gives the
    value each checkpoint signed, and that no checkpoint names a record
    that is gone.  It needs no key ring: the chain covers the ciphertexts.

    Any thread; each call has its own connections and state.                */
#ifndef MESH_AUDIT_VERIFY_H
#define MESH_AUDIT_VERIFY_H

#include "mesh_buf.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

//  Checks every day file of the store in dir from from_date ("YYYY-MM-DD",
//  NULL: all); public_key NULL: signatures not checked.  0 when all is
//  well, with "ok: …" in report; 1 with the first bad record named in
//  report ("audit-….db seq N (id …): why"); -1 with a reason when it
//  cannot read.
int     mesh_audit_verify (const char *dir, const char *from_date, EVP_PKEY *public_key,
                           mesh_buf_t *report, char *why, size_t why_size);

void    mesh_audit_verify_test (bool verbose);

#endif
