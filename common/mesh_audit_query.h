/*  mesh_audit_query: reads the audit store's records back, for the
    operators' tools: the day files merged in time order, filtered by time,
    tenant, model, outcome and status, the prompt and response decrypted
    when the key ring is given.

    It opens the day files read-only (mesh_audit_file.h) and may run while
    the service writes them.  Any thread; each call has its own
    connections and state.                                                  */
#ifndef MESH_AUDIT_QUERY_H
#define MESH_AUDIT_QUERY_H

#include "mesh_audit.h"
#include "mesh_audit_keyring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t since_ms;           //  0: from the start
    int64_t until_ms;           //  0: to the end
    const char *tenant;         //  NULL: any
    const char *model;          //  NULL: any (matches model or model_requested)
    const char *outcome;        //  NULL: any
    int64_t status;             //  0: any
    size_t limit;               //  0: no limit
} mesh_audit_query_filter_t;

//  One stored record as read back.  Text fields are NUL-terminated; the
//  prompt and response are filled only when decrypted (keys given), and
//  decrypt_error says why one could not be (unknown key id, failed tag).
//  Everything is valid during the call it is given to only.
typedef struct {
    uint64_t seq;
    const char *file;           //  its day file's name
    mesh_audit_record_t record;
    const char *enc_key_id;
    bool decrypted;
    const char *decrypt_error;  //  NULL, or why not
} mesh_audit_query_row_t;

//  Called with each row; 0 goes on, anything else stops the query
typedef int (mesh_audit_query_fn) (void *arg, const mesh_audit_query_row_t *row);

//  Calls fn for each record of the store in dir that filter (NULL: none)
//  matches, in time order (then seq); fn returns 0 to go on, anything
//  else stops (and is returned).  keys NULL: no decryption.  -1 with a
//  reason on an unreadable store.
int     mesh_audit_query (const char *dir, const mesh_audit_query_filter_t *filter,
                          mesh_audit_keyring_t *keys, mesh_audit_query_fn *fn, void *arg,
                          char *why, size_t why_size);

void    mesh_audit_query_test (bool verbose);

#endif
