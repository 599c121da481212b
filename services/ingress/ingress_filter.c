/*  ingress_filter: the word lists from the routers, and filtering chunks
    and bodies.                                                              */
#include "ingress_filter.h"
#include "ingress_audit.h"

#include "mesh_audit.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_wordchunk.h"
#include "mesh_wordfilter.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_INTERVAL_MS 1000

typedef struct ingress_filter_t {
    ingress_t *ingress;
    mesh_wordfilter_t *filter;      //  in force, or NULL
    char *refusal;                  //  filters.refusal_message
    lws_sorted_usec_list_t sync_sul;
    mesh_metric_t *versions;
    mesh_metric_t *version;         //  the one in force
    mesh_metric_t *refused;         //  FILTERS that did not parse
} ingress_filter_t;

//  A response's filtering
typedef struct ingress_words_t {
    mesh_wordstream_t *stream;      //  NULL: no list applies (only tracked)
    char tenant [128];
    bool known;                     //  tenant known
    mesh_buf_t out [MESH_WORDFILTER_FIELDS];
    mesh_buf_t chunk;               //  the chunk sent instead
    size_t reported;                //  matched entries logged and recorded
    size_t counted [3];             //  matches counted in the metric, by action
    //  The stream's envelope, for a last chunk of our own
    char *id;
    json_t *created;
    char *model;
    bool done;                      //  the last chunk went out
} ingress_words_t;

//  The lists ------------------------------------------------------------------------

uint64_t
ingress_filter_version (ingress_t *ingress)
{
    ingress_filter_t *self = ingress->filter;
    return self && self->filter ? mesh_wordfilter_version (self->filter) : 0;
}

void
ingress_filter_on_filters (ingress_t *ingress, const mesh_msg_t *msg)
{
    ingress_filter_t *self = ingress->filter;
    if (msg->version <= ingress_filter_version (ingress))
        return;                     //  another router's copy, or older
    char why [256];
    mesh_wordfilter_t *filter = mesh_wordfilter_parse (msg->data.data, msg->data.size, why, sizeof why);
    if (!filter || mesh_wordfilter_version (filter) != msg->version) {
        mesh_warn ("word lists version %llu from %s refused: %s", (unsigned long long) msg->version,
                   msg->sender, filter ? "its document names another version" : why);
        mesh_metric_inc (self->refused);
        mesh_wordfilter_unref (&filter);
        return;
    }
    mesh_info ("word lists version %llu: %zu entries, longest %zu characters (from %s)",
               (unsigned long long) msg->version, mesh_wordfilter_count (filter),
               mesh_wordfilter_longest (filter), msg->sender);
    mesh_wordfilter_unref (&self->filter);
    self->filter = filter;
    mesh_metric_inc (self->versions);
    mesh_metric_set (self->version, (double) msg->version);
}

static void
s_on_sync (lws_sorted_usec_list_t *sul)
{
    ingress_filter_t *self = lws_container_of (sul, ingress_filter_t, sync_sul);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_SYNC, NULL);
    snprintf (msg.reply_to, sizeof msg.reply_to, "%s", ingress_mesh_reply_to (self->ingress));
    msg.version = ingress_filter_version (self->ingress);
    ingress_mesh_broadcast (self->ingress, &msg);
    lws_sul_schedule (self->ingress->context, 0, &self->sync_sul, s_on_sync,
                      SYNC_INTERVAL_MS * LWS_US_PER_MS);
}

void
ingress_filter_configure (ingress_t *ingress)
{
    ingress_filter_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ingress = ingress;
    self->refusal = strdup (mesh_setting_str (ingress->config, "filters.refusal_message"));
    self->versions = mesh_metrics_counter (ingress->metrics, "seekmesh_ingress_filter_versions_total",
        "Versions of the word lists installed.", NULL);
    self->version = mesh_metrics_gauge (ingress->metrics, "seekmesh_ingress_filter_version",
        "The version of the word lists in force (0: none yet).", NULL);
    self->refused = mesh_metrics_counter (ingress->metrics, "seekmesh_ingress_filter_refused_total",
        "Word lists from a router that could not be read (the previous stay in force).", NULL);
    ingress->filter = self;
}

void
ingress_filter_start (ingress_t *ingress)
{
    ingress_filter_t *self = ingress->filter;
    //  The first SYNC soon after the routers connect, then every second
    lws_sul_schedule (ingress->context, 0, &self->sync_sul, s_on_sync, 100 * LWS_US_PER_MS);
}

void
ingress_filter_sync_soon (ingress_t *ingress)
{
    ingress_filter_t *self = ingress->filter;
    if (self)
        lws_sul_schedule (ingress->context, 0, &self->sync_sul, s_on_sync, 50 * LWS_US_PER_MS);
}

void
ingress_filter_stop (ingress_t *ingress)
{
    ingress_filter_t *self = ingress->filter;
    if (!self)
        return;
    lws_sul_cancel (&self->sync_sul);
    mesh_wordfilter_unref (&self->filter);
    free (self->refusal);
    free (self);
    ingress->filter = NULL;
}

//  Matches: metric, log, record -------------------------------------------------------

static void
s_count (pss_t *pss, const char *tenant, const char *action, size_t count)
{
    char labels [300];
    snprintf (labels, sizeof labels, "tenant=\"%.127s\",action=\"%s\"", tenant, action);
    mesh_metric_add (mesh_metrics_counter (pss->ingress->metrics, "seekmesh_filter_matches_total",
        "Sensitive-word matches, by tenant and action (input: the router; output: the ingress).",
        labels), (double) count);
}

//  Adds entries (a JSON array of {list, entry, action}) to the record's
//  parameters and makes its outcome "filtered"
static void
s_record (pss_t *pss, json_t *entries)
{
    ingress_audit_outcome (pss, MESH_AUDIT_FILTERED);
    if (!pss->params)
        return;                     //  no record owed
    json_t *params = json_loads (pss->params, 0, NULL);
    if (!json_is_object (params)) {
        json_decref (params);
        return;
    }
    json_t *list = json_object_get (params, "filter");
    if (!json_is_array (list))
        json_object_set_new (params, "filter", list = json_array ());
    json_array_extend (list, entries);
    char *text = json_dumps (params, JSON_COMPACT);
    json_decref (params);
    if (text) {
        free (pss->params);
        pss->params = text;
    }
}

//  What the stream matched since last time
static void
s_report (pss_t *pss)
{
    ingress_words_t *words = pss->words;
    static const char *names [] = { "", "block", "mask" };
    for (int action = MESH_WORD_BLOCK; action <= MESH_WORD_MASK; action++) {
        size_t count = mesh_wordstream_match_count (words->stream, action);
        if (count > words->counted [action]) {
            s_count (pss, words->tenant, names [action], count - words->counted [action]);
            words->counted [action] = count;
        }
    }
    const uint32_t *matched;
    size_t count = mesh_wordstream_matched (words->stream, &matched);
    if (count == words->reported)
        return;
    mesh_wordfilter_t *filter = mesh_wordstream_filter (words->stream);
    json_t *entries = json_array ();
    for (size_t i = words->reported; i < count; i++) {
        mesh_wordentry_t entry = mesh_wordfilter_entry (filter, matched [i]);
        const char *list = *entry.list ? entry.list : "global";
        mesh_info ("output filtered: entry %s of the %s list (%s) tenant=%s req=%s", entry.id, list,
                   names [entry.action], words->tenant, pss->id);
        json_array_append_new (entries, json_pack ("{s:s, s:s, s:s}", "list", list, "entry", entry.id,
                                                   "action", names [entry.action]));
    }
    words->reported = count;
    s_record (pss, entries);
    json_decref (entries);
}

void
ingress_filter_input (pss_t *pss, const char *filtered)
{
    json_t *entries = json_loads (filtered, 0, NULL);
    if (json_is_array (entries))
        s_record (pss, entries);
    else
        ingress_audit_outcome (pss, MESH_AUDIT_FILTERED);
    json_decref (entries);
}

//  Streams ------------------------------------------------------------------------

void
ingress_filter_begin (pss_t *pss, const char *tenant)
{
    if (pss->words_decided)
        return;
    pss->words_decided = true;
    ingress_filter_t *self = pss->ingress->filter;
    mesh_wordfilter_t *filter = self ? self->filter : NULL;
    bool applies = filter && mesh_wordfilter_applies (filter, tenant && *tenant ? tenant : NULL);
    //  A stream of a session is followed too, for a last chunk of ours
    if (!applies && !(pss->stream && *pss->session))
        return;
    ingress_words_t *words = calloc (1, sizeof *words);
    assert (words);
    snprintf (words->tenant, sizeof words->tenant, "%s", tenant ? tenant : "");
    words->known = tenant && *tenant;
    if (applies)
        words->stream = mesh_wordstream_new (filter, words->known ? tenant : NULL);
    mesh_buf_init (&words->out [0]);
    mesh_buf_init (&words->out [1]);
    mesh_buf_init (&words->chunk);
    pss->words = words;
}

void
ingress_filter_release (pss_t *pss)
{
    ingress_words_t *words = pss->words;
    pss->words_decided = false;
    if (!words)
        return;
    mesh_wordstream_destroy (&words->stream);
    mesh_buf_free (&words->out [0]);
    mesh_buf_free (&words->out [1]);
    mesh_buf_free (&words->chunk);
    free (words->id);
    free (words->model);
    json_decref (words->created);
    free (words);
    pss->words = NULL;
    pss->words_decided = false;
}

static void
s_send (pss_t *pss, json_t *root)
{
    char *text = json_dumps (root, JSON_COMPACT);
    if (text)
        ingress_sse_event (pss, text, strlen (text), false);
    free (text);
}

//  A chunk of our own: the stream's envelope, one choice
static json_t *
s_chunk (ingress_words_t *words, json_t *delta, const char *finish)
{
    return json_pack ("{s:s, s:s, s:o, s:s, s:[{s:i, s:o, s:o}]}",
                      "id", words->id ? words->id : "", "object", "chat.completion.chunk",
                      "created", words->created ? json_incref (words->created) : json_integer (0),
                      "model", words->model ? words->model : "",
                      "choices", "index", 0, "delta", delta,
                      "finish_reason", finish ? json_string (finish) : json_null ());
}

//  A block ended the text: nothing more goes out, the upstream stops
static void
s_blocked (pss_t *pss)
{
    pss->words->done = true;
    ingress_sse_end (pss);
    ingress_mesh_cancel (pss, "filtered");
}

void
ingress_filter_chunk (pss_t *pss, const char *data, size_t len)
{
    ingress_words_t *words = pss->words;
    if (!words || words->done) {
        if (!words)
            ingress_sse_event (pss, data, len, false);
        return;
    }
    if (!words->id) {
        //  The stream's envelope, from its first chunk, for a last chunk of ours
        json_t *root = json_loadb (data, len, 0, NULL);
        if (json_is_string (json_object_get (root, "id"))) {
            words->id = strdup (json_string_value (json_object_get (root, "id")));
            words->created = json_incref (json_object_get (root, "created"));
            const char *model = json_string_value (json_object_get (root, "model"));
            words->model = strdup (model ? model : "");
        }
        json_decref (root);
    }
    if (!words->stream) {
        ingress_sse_event (pss, data, len, false);
        return;
    }
    mesh_wordchunk_result_t result;
    mesh_wordchunk_filter (words->stream, data, len, &words->chunk, &result);
    s_report (pss);
    if (result.verdict == MESH_WORDCHUNK_AS_IS)
        ingress_sse_event (pss, data, len, false);
    else
    if (result.verdict == MESH_WORDCHUNK_SEND)
        ingress_sse_event (pss, mesh_buf_head (&words->chunk), mesh_buf_size (&words->chunk), false);
    if (result.blocked)
        s_blocked (pss);
}

//  What is held and the finish, in a last chunk of ours
static void
s_last_chunk (pss_t *pss, const char *finish)
{
    ingress_words_t *words = pss->words;
    if (words->stream && !mesh_wordstream_blocked (words->stream))
        mesh_wordstream_finish (words->stream, words->out);
    bool blocked = words->stream && mesh_wordstream_blocked (words->stream);
    json_t *delta = json_object ();
    static const char *members [MESH_WORDFILTER_FIELDS] = { "content", "reasoning_content" };
    for (int field = MESH_WORDFILTER_FIELDS - 1; field >= 0; field--) {
        mesh_buf_t *text = &words->out [field];
        if (mesh_buf_size (text))
            json_object_set_new (delta, members [field], json_stringn (mesh_buf_head (text), mesh_buf_size (text)));
        mesh_buf_reset (text);
    }
    if (words->stream)
        s_report (pss);
    if (json_object_size (delta) || finish || blocked) {
        json_t *root = s_chunk (words, delta, blocked ? "content_filter" : finish);
        s_send (pss, root);
        json_decref (root);
    }
    else
        json_decref (delta);
    words->done = true;
}

void
ingress_filter_end (pss_t *pss)
{
    ingress_words_t *words = pss->words;
    if (!words || words->done || !words->stream)
        return;
    s_last_chunk (pss, NULL);
}

void
ingress_filter_close (pss_t *pss, const char *finish)
{
    if (pss->finished)
        return;
    if (!pss->sse)
        ingress_sse_begin (pss);
    ingress_filter_begin (pss, NULL);
    if (pss->words && !pss->words->done)
        s_last_chunk (pss, finish);
    ingress_sse_end (pss);
}

//  Bodies ---------------------------------------------------------------------------

void
ingress_filter_body (pss_t *pss, int status, const char *data, size_t len)
{
    ingress_words_t *words = pss->words;
    json_t *root = words && words->stream && status == 200 ? json_loadb (data, len, 0, NULL) : NULL;
    json_t *choices = json_object_get (root, "choices");
    if (!json_is_array (choices)) {
        json_decref (root);
        ingress_respond_body (pss, status, "application/json", data, len);
        return;
    }
    mesh_wordfilter_t *filter = mesh_wordstream_filter (words->stream);
    size_t index;
    json_t *choice;
    json_array_foreach (choices, index, choice) {
        json_object_del (choice, "logprobs");
        json_t *message = json_object_get (choice, "message");
        json_t *reasoning = json_object_get (message, "reasoning_content");
        json_t *content = json_object_get (message, "content");
        //  One stream per choice; the first is the request's (its matches
        //  are reported), the others are made for the occasion
        mesh_wordstream_t *stream = index == 0 ? words->stream
                                  : mesh_wordstream_new (filter, words->known ? words->tenant : NULL);
        mesh_buf_t out [MESH_WORDFILTER_FIELDS];
        mesh_buf_init (&out [0]);
        mesh_buf_init (&out [1]);
        if (json_is_string (reasoning))
            mesh_wordstream_feed (stream, MESH_WORD_REASONING, json_string_value (reasoning),
                                  json_string_length (reasoning), out);
        if (json_is_string (content))
            mesh_wordstream_feed (stream, MESH_WORD_CONTENT, json_string_value (content),
                                  json_string_length (content), out);
        bool passed = mesh_wordstream_finish (stream, out) && !mesh_wordstream_blocked (stream);
        if (!passed) {
            json_object_set_new (message, "content", json_string (pss->ingress->filter->refusal));
            json_object_del (message, "reasoning_content");
            json_object_set_new (choice, "finish_reason", json_string ("content_filter"));
        }
        else {
            if (json_is_string (reasoning))
                json_object_set_new (message, "reasoning_content",
                                     json_stringn (mesh_buf_size (&out [1]) ? mesh_buf_head (&out [1]) : "",
                                                   mesh_buf_size (&out [1])));
            if (json_is_string (content))
                json_object_set_new (message, "content",
                                     json_stringn (mesh_buf_size (&out [0]) ? mesh_buf_head (&out [0]) : "",
                                                   mesh_buf_size (&out [0])));
        }
        if (index == 0)
            s_report (pss);
        else {
            //  Count and record the other choices' matches too
            ingress_words_t other = *words;
            other.stream = stream;
            other.reported = 0;
            memset (other.counted, 0, sizeof other.counted);
            pss->words = &other;
            s_report (pss);
            pss->words = words;
            mesh_wordstream_destroy (&stream);
        }
        mesh_buf_free (&out [0]);
        mesh_buf_free (&out [1]);
    }
    char *text = json_dumps (root, JSON_COMPACT);
    json_decref (root);
    if (text)
        ingress_respond_body (pss, status, "application/json", text, strlen (text));
    else
        ingress_respond_error (pss, 500, "server_error", "filter_failed", NULL,
                               "The gateway could not filter the answer.");
    free (text);
}

//  Selftest ---------------------------------------------------------------------------

void
ingress_filter_test (bool verbose)
{
    (void) verbose;
    //  The module's behaviour needs the lws loop and real streams: it is
    //  proven by tests/integration/test_wordfilter.py (the chunks' own
    //  filtering by mesh_wordchunk's selftest and fuzz target).  Here: a
    //  last chunk of ours has the stream's envelope.
    ingress_words_t words = { .id = "chatcmpl-1", .model = "deepseek-chat" };
    words.created = json_integer (7);
    json_t *chunk = s_chunk (&words, json_pack ("{s:s}", "content", "held"), "stop");
    assert (mesh_streq (json_string_value (json_object_get (chunk, "id")), "chatcmpl-1"));
    assert (json_integer_value (json_object_get (chunk, "created")) == 7);
    json_t *choice = json_array_get (json_object_get (chunk, "choices"), 0);
    assert (mesh_streq (json_string_value (json_object_get (choice, "finish_reason")), "stop"));
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (choice, "delta"), "content")), "held"));
    json_decref (chunk);
    json_decref (words.created);
}
