/*  ingress_filter: the sensitive-word filter on what clients receive.

    The ingress is where it runs because every byte a client gets passes
    through it, whoever made it (an upstream through a connector, a human
    operator through a router, a cache): nothing can go around it.  The
    word lists come from the routers (router_filters.c): the ingress sends
    SYNC with the version it has to every connected router once a second,
    and installs a FILTERS newer than its own (compiled once per version).

    A response whose tenant (from HEAD or END; a stream's chunk before any:
    every list) has lists in force is filtered:
    - a stream: each chunk goes through mesh_wordchunk (choice 0's
      reasoning_content and content, one text, through a mesh_wordstream;
      the chunk sent again with what it released; other choices and
      logprobs dropped; a chunk left with nothing to say not sent).  The chunk with the finish_reason carries what was held back;
      a stream that ends without one gets a last chunk for it.  A block
      ends the stream at once: the text before the word, a last chunk with
      finish_reason "content_filter", [DONE], and the upstream call is
      cancelled.
    - a body: each choice's reasoning and content as one text; mask
      replaces, block replaces the message with filters.refusal_message and
      finish_reason "content_filter".
    Every match counts in seekmesh_filter_matches_total{tenant,action},
    makes a log line (entry id and list, never the word) and gives the
    audit record outcome "filtered" with its params' "filter": the list,
    entry and action of each entry matched.

    lws service thread only.                                                */
#ifndef INGRESS_FILTER_H
#define INGRESS_FILTER_H

#include "ingress.h"

#include <stdbool.h>
#include <stddef.h>

//  Reads filters.* and registers the metrics; before the loop runs
void ingress_filter_configure (ingress_t *self);
//  Starts the SYNC timer; after ingress_mesh_start
void ingress_filter_start (ingress_t *self);
void ingress_filter_stop (ingress_t *self);
//  A router has just connected: SYNC in 50 ms rather than at the next
//  second, so it knows this ingress (for RECORD) and we its lists at once
void ingress_filter_sync_soon (ingress_t *self);
//  FILTERS from a router
void ingress_filter_on_filters (ingress_t *self, const mesh_msg_t *msg);
//  The version in force (0: none)
uint64_t ingress_filter_version (ingress_t *self);

//  The response's tenant is known (NULL: not known, every list applies);
//  the first call decides
void ingress_filter_begin (pss_t *pss, const char *tenant);
//  One SSE data payload of a stream: filtered, and sent what is settled
void ingress_filter_chunk (pss_t *pss, const char *data, size_t len);
//  The upstream's stream ended: what was held goes out, before [DONE]
void ingress_filter_end (pss_t *pss);
//  Ends the stream now as if finished with finish ("stop"): what is held,
//  a last chunk, [DONE].  The caller cancels the upstream call.
void ingress_filter_close (pss_t *pss, const char *finish);
//  A whole JSON body of status: filtered, then the response
void ingress_filter_body (pss_t *pss, int status, const char *data, size_t len);
//  The router refused the request's input: the entries, for the record
void ingress_filter_input (pss_t *pss, const char *filtered);
//  The request ended: frees what it held
void ingress_filter_release (pss_t *pss);

void ingress_filter_test (bool verbose);

#endif
