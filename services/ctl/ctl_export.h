/*  ctl_export: one audit record as a line of NDJSON with Elastic Common
    Schema names, for `seekmeshctl audit export` (Filebeat/ELK, Loki).

    @timestamp, event.id, event.outcome, event.duration (ns),
    http.response.status_code, organization.id (tenant), user.id (key id),
    gen_ai.request.model, gen_ai.response.model, gen_ai.usage.input_tokens,
    gen_ai.usage.output_tokens, url.original (endpoint), cloud.region, the
    request's parameters as gen_ai.request.* where ECS names them and all
    of them under seekmesh.params, the rest under seekmesh.*; the prompt
    and response as gen_ai.prompt / gen_ai.completion when decrypted.  Text
    that is not UTF-8 is written with U+FFFD in place of the bad bytes.
    Single-threaded, like the rest of seekmeshctl.                          */
#ifndef CTL_EXPORT_H
#define CTL_EXPORT_H

#include "mesh_audit_query.h"
#include "mesh_buf.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

//  A JSON string of bytes that should be UTF-8: valid sequences kept as
//  they are (NUL too), each byte that does not start one replaced by
//  U+FFFD.  What query --json and the export both write.
json_t *ctl_export_json_text (const char *data, size_t size);
//  Appends row as one JSON object and a newline to out
void ctl_export_ndjson (const mesh_audit_query_row_t *row, mesh_buf_t *out);
//  Writes ms (wall clock) as "YYYY-MM-DDTHH:MM:SS.mmmZ"
void ctl_export_iso_time (int64_t ms, char out [32]);

void ctl_export_test (bool verbose);

#endif
