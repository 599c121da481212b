/*  router_filters: the word lists in Redis, the input check, FILTERS to
    ingresses, and /admin/filters.                                          */
#include "router_filters.h"

#include "mesh_log.h"
#include "mesh_msg.h"
#include "mesh_redis.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_wordfilter.h"

#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH            "seekmesh:filters"
#define SEQ             "seekmesh:filters:seq"
#define VERSION         "seekmesh:filters:version"
#define CHANNEL         "seekmesh:filters"
#define MAX_INGRESSES   256
#define INGRESS_LIVE_MS 5000        //  an ingress not heard from for longer is forgotten

//  The version and every entry, read together
static mesh_redis_script_t s_load_script = { .body =
    "return { redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2]) }\n"
};
//  KEYS: hash, version, seq; ARGV: the entry's JSON before and after its
//  id, the channel.  Returns { id, version }.
static mesh_redis_script_t s_add_script = { .body =
    "local id = 'f' .. redis.call('INCR', KEYS[3])\n"
    "redis.call('HSET', KEYS[1], id, ARGV[1] .. id .. ARGV[2])\n"
    "local version = redis.call('INCR', KEYS[2])\n"
    "redis.call('PUBLISH', ARGV[3], version)\n"
    "return { id, version }\n"
};
//  KEYS: hash, version; ARGV: id, channel.  The new version, or 0 when
//  there was no such entry.
static mesh_redis_script_t s_remove_script = { .body =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "local version = redis.call('INCR', KEYS[2])\n"
    "redis.call('PUBLISH', ARGV[2], version)\n"
    "return version\n"
};
//  KEYS: version; ARGV: a version an ingress has, the channel.  Raises the
//  version above it (Redis was emptied since).
static mesh_redis_script_t s_raise_script = { .body =
    "local version = tonumber (redis.call('GET', KEYS[1]) or '0')\n"
    "if version <= tonumber (ARGV[1]) then\n"
    "    version = tonumber (ARGV[1]) + 1\n"
    "    redis.call('SET', KEYS[1], version)\n"
    "    redis.call('PUBLISH', ARGV[2], version)\n"
    "end\n"
    "return version\n"
};

typedef struct {
    char reply_to [256];
    uint64_t version;           //  what it said it has
    int64_t seen_ms;
} ingress_t;

struct router_filters_t {
    mesh_loop_t *loop;
    mesh_redis_t *redis;
    mesh_outbox_t *outbox;
    mesh_metrics_t *metrics;
    router_registry_t *registry;    //  the admin token
    char sender [64];
    mesh_wordfilter_t *filter;      //  in force; never NULL
    char *doc;                      //  the FILTERS document of that version
    size_t doc_len;
    uint64_t version;
    bool loaded, loading, load_again, stale, polling, raising;
    bool redis_was_ready;
    ingress_t ingresses [MAX_INGRESSES];
    size_t ingress_count;
    size_t next_ingress;
    mesh_metric_t *installed;
    mesh_metric_t *version_gauge;
    mesh_metric_t *skipped;
};

//  FILTERS to the ingresses -------------------------------------------------------

static void
s_send (router_filters_t *self, ingress_t *ingress)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_FILTERS, NULL);
    snprintf (msg.sender, sizeof msg.sender, "%s", self->sender);
    msg.version = self->version;
    msg.data = (mesh_bytes_t) { self->doc, self->doc_len };
    if (mesh_outbox_send (self->outbox, ingress->reply_to, &msg) < 0)
        mesh_warn ("cannot send the word lists to %s", ingress->reply_to);
}

static void
s_forget_quiet (router_filters_t *self, int64_t now)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->ingress_count; i++)
        if (now - self->ingresses [i].seen_ms <= INGRESS_LIVE_MS)
            self->ingresses [kept++] = self->ingresses [i];
    self->ingress_count = kept;
}

static void s_raise (router_filters_t *self, uint64_t above);

void
router_filters_sync (router_filters_t *self, const char *reply_to, uint64_t version)
{
    int64_t now = mesh_loop_now_ms (self->loop);
    ingress_t *ingress = NULL;
    for (size_t i = 0; i < self->ingress_count && !ingress; i++)
        if (strcmp (self->ingresses [i].reply_to, reply_to) == 0)
            ingress = &self->ingresses [i];
    if (!ingress) {
        s_forget_quiet (self, now);
        if (self->ingress_count == MAX_INGRESSES)
            return;
        ingress = &self->ingresses [self->ingress_count++];
        snprintf (ingress->reply_to, sizeof ingress->reply_to, "%s", reply_to);
    }
    ingress->version = version;
    ingress->seen_ms = now;
    if (!self->loaded)
        return;                 //  nothing to say yet
    if (version < self->version)
        s_send (self, ingress);
    else
    if (version > self->version)
        s_raise (self, version);
}

const char *
router_filters_ingress (router_filters_t *self)
{
    int64_t now = mesh_loop_now_ms (self->loop);
    s_forget_quiet (self, now);
    if (self->ingress_count == 0)
        return NULL;
    return self->ingresses [self->next_ingress++ % self->ingress_count].reply_to;
}

//  Reading the lists ------------------------------------------------------------

//  Installs the entries of a hash reply (field, value, ...) as version
static void
s_install (router_filters_t *self, uint64_t version, redisReply *hash)
{
    mesh_wordfilter_t *filter = mesh_wordfilter_new ();
    json_t *words = json_array ();
    for (size_t i = 0; hash && i + 1 < hash->elements; i += 2) {
        redisReply *value = hash->element [i + 1];
        if (value->type != REDIS_REPLY_STRING)
            continue;
        json_t *entry = json_loadb (value->str, value->len, 0, NULL);
        json_t *tenant = json_object_get (entry, "tenant");
        const char *action = json_string_value (json_object_get (entry, "action"));
        mesh_wordentry_t given = {
            .id = json_string_value (json_object_get (entry, "id")),
            .list = json_is_string (tenant) ? json_string_value (tenant) : "",
            .word = json_string_value (json_object_get (entry, "word")),
            .action = mesh_streq (action, "mask") ? MESH_WORD_MASK
                    : mesh_streq (action, "block") ? MESH_WORD_BLOCK : 0
        };
        char why [256];
        if (!given.word || mesh_wordfilter_add (filter, &given, why, sizeof why) < 0) {
            mesh_warn ("word list entry %.*s in Redis skipped: %s", (int) MESH_MIN (hash->element [i]->len, 64),
                       hash->element [i]->str, given.word ? why : "not an entry");
            mesh_metric_inc (self->skipped);
            json_decref (entry);
            continue;
        }
        json_array_append_new (words, entry);
    }
    mesh_wordfilter_compile (filter);
    json_t *doc = json_pack ("{s:I, s:o}", "version", (json_int_t) version, "words", words);
    char *text = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    assert (text);
    if (strlen (text) > MESH_MAX_BODY_BYTES) {
        mesh_error ("the word lists do not fit a message (%zu bytes): keeping version %llu",
                    strlen (text), (unsigned long long) self->version);
        free (text);
        mesh_wordfilter_unref (&filter);
        return;
    }
    mesh_wordfilter_unref (&self->filter);
    self->filter = filter;
    free (self->doc);
    self->doc = text;
    self->doc_len = strlen (text);
    bool changed = version != self->version || !self->loaded;
    self->version = version;
    self->loaded = true;
    if (!changed)
        return;
    mesh_info ("word lists version %llu: %zu entries, longest %zu characters",
               (unsigned long long) version, mesh_wordfilter_count (filter), mesh_wordfilter_longest (filter));
    mesh_metric_inc (self->installed);
    mesh_metric_set (self->version_gauge, (double) version);
    int64_t now = mesh_loop_now_ms (self->loop);
    s_forget_quiet (self, now);
    for (size_t i = 0; i < self->ingress_count; i++)
        if (self->ingresses [i].version < version)
            s_send (self, &self->ingresses [i]);
}

static void s_load (router_filters_t *self);

static void
s_on_loaded (void *arg, redisReply *reply)
{
    router_filters_t *self = arg;
    self->loading = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING || reply->element [1]->type != REDIS_REPLY_ARRAY) {
        self->stale = true;
        return;
    }
    self->stale = false;
    uint64_t version = strtoull (reply->element [0]->str, NULL, 10);
    //  An older version than ours comes from a read that crossed a change
    if (!self->loaded || version >= self->version)
        s_install (self, version, reply->element [1]);
    if (self->load_again) {
        self->load_again = false;
        s_load (self);
    }
}

static void
s_load (router_filters_t *self)
{
    if (!self->redis)
        return;
    if (self->loading) {
        self->load_again = true;
        return;
    }
    const char *argv [] = { VERSION, HASH };
    if (mesh_redis_eval (self->redis, &s_load_script, s_on_loaded, self, 2, 2, argv, NULL) == 0)
        self->loading = true;
    else
        self->stale = true;
}

static void
s_on_polled (void *arg, redisReply *reply)
{
    router_filters_t *self = arg;
    self->polling = false;
    uint64_t version = reply && reply->type == REDIS_REPLY_STRING ? strtoull (reply->str, NULL, 10)
                     : reply && reply->type == REDIS_REPLY_NIL ? 0 : self->version;
    if (self->loaded && version != self->version)
        s_load (self);
}

static void
s_on_raised (void *arg, redisReply *reply)
{
    router_filters_t *self = arg;
    self->raising = false;
    (void) reply;
    s_load (self);
}

static void
s_raise (router_filters_t *self, uint64_t above)
{
    if (!self->redis || self->raising)
        return;
    char text [32];
    snprintf (text, sizeof text, "%llu", (unsigned long long) above);
    const char *argv [] = { VERSION, text, CHANNEL };
    if (mesh_redis_eval (self->redis, &s_raise_script, s_on_raised, self, 1, 3, argv, NULL) == 0) {
        mesh_warn ("an ingress has word lists version %s, newer than Redis's: raising it", text);
        self->raising = true;
    }
}

void
router_filters_tick (router_filters_t *self)
{
    if (!self->redis)
        return;
    bool ready = mesh_redis_ready (self->redis);
    if (ready && (self->stale || !self->redis_was_ready || !self->loaded))
        s_load (self);
    else
    if (ready && !self->polling && !self->loading) {
        const char *argv [] = { "GET", VERSION };
        if (mesh_redis_command (self->redis, s_on_polled, self, 2, argv, NULL) == 0)
            self->polling = true;
    }
    self->redis_was_ready = ready;
}

static void
s_on_message (void *arg, const char *payload, size_t len)
{
    (void) payload;
    (void) len;
    s_load (arg);
}

static void
s_on_subscribed (void *arg)
{
    s_load (arg);
}

//  The input check ----------------------------------------------------------------

//  One text of a message: blocked?  Adds the block matches to found.
static bool
s_check_text (router_filters_t *self, const char *tenant, const char *text, size_t len,
              json_t *found)
{
    mesh_buf_t out;
    mesh_buf_init (&out);
    uint32_t matched [MESH_WORDFILTER_MATCHES];
    size_t count = 0;
    bool passed = mesh_wordfilter_text (self->filter, tenant, text, len, &out, matched, &count);
    mesh_buf_free (&out);
    if (passed)
        return false;
    for (size_t i = 0; i < count; i++) {
        mesh_wordentry_t entry = mesh_wordfilter_entry (self->filter, matched [i]);
        if (entry.action == MESH_WORD_BLOCK && json_array_size (found) < 8)
            json_array_append_new (found, json_pack ("{s:s, s:s, s:s}", "list",
                                   *entry.list ? entry.list : "global", "entry", entry.id,
                                   "action", "block"));
    }
    return true;
}

bool
router_filters_refuse (router_filters_t *self, const char *id, const char *tenant,
                       const char *body, size_t len, char *filtered, size_t filtered_size,
                       char *param, size_t param_size)
{
    if (!mesh_wordfilter_applies (self->filter, tenant))
        return false;
    json_t *root = json_loadb (body, len, 0, NULL);
    json_t *messages = json_object_get (root, "messages");
    json_t *found = json_array ();
    bool refused = false;
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message) {
        json_t *content = json_object_get (message, "content");
        if (json_is_string (content))
            refused = s_check_text (self, tenant, json_string_value (content),
                                    json_string_length (content), found);
        size_t k;
        json_t *part;
        json_array_foreach (content, k, part) {
            json_t *text = json_object_get (part, "text");
            if (!refused && json_is_string (text))
                refused = s_check_text (self, tenant, json_string_value (text),
                                        json_string_length (text), found);
        }
        if (refused) {
            snprintf (param, param_size, "messages.[%zu].content", index);
            break;
        }
    }
    json_decref (root);
    if (refused) {
        char *text = json_dumps (found, JSON_COMPACT);
        //  Cut to whole entries: the list must stay JSON
        while (text && strlen (text) >= filtered_size && json_array_size (found) > 1) {
            json_array_remove (found, json_array_size (found) - 1);
            free (text);
            text = json_dumps (found, JSON_COMPACT);
        }
        snprintf (filtered, filtered_size, "%s", text && strlen (text) < filtered_size ? text : "[]");
        free (text);
        size_t i;
        json_t *match;
        json_array_foreach (found, i, match) {
            char labels [300];
            snprintf (labels, sizeof labels, "tenant=\"%.127s\",action=\"block\"", tenant);
            mesh_metric_inc (mesh_metrics_counter (self->metrics, "seekmesh_filter_matches_total",
                "Sensitive-word matches, by tenant and action (input: the router; output: the ingress).",
                labels));
            mesh_info ("input filtered: entry %s of the %s list (block) tenant=%s req=%s",
                       json_string_value (json_object_get (match, "entry")),
                       json_string_value (json_object_get (match, "list")), tenant, id);
        }
    }
    json_decref (found);
    return refused;
}

//  Admin API ----------------------------------------------------------------------

typedef struct {
    router_filters_t *filters;
    mesh_admin_pending_t *pending;
    json_t *entry;              //  what was added (its id comes from Redis)
    char id [64];               //  what was removed
} write_t;

static void
s_write_done (write_t *write, int status, json_t *body)
{
    mesh_admin_response_t response = { 0 };
    mesh_buf_init (&response.body);
    router_registry_answer (&response, status, body);
    mesh_admin_complete (write->pending, response.status, response.content_type, &response.body);
    json_decref (write->entry);
    free (write);
}

static void
s_write_failed (write_t *write)
{
    mesh_admin_response_t response = { 0 };
    mesh_buf_init (&response.body);
    router_registry_fail (&response, 503, "filters_unavailable",
                          "The word lists' store (Redis) did not answer; nothing was changed.");
    mesh_admin_complete (write->pending, response.status, response.content_type, &response.body);
    json_decref (write->entry);
    free (write);
}

static void
s_on_added (void *arg, redisReply *reply)
{
    write_t *write = arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING) {
        s_write_failed (write);
        return;
    }
    json_object_set_new (write->entry, "id", json_string (reply->element [0]->str));
    mesh_info ("admin: word list entry %s added (%s, %s list)", reply->element [0]->str,
               json_string_value (json_object_get (write->entry, "action")),
               json_is_string (json_object_get (write->entry, "tenant"))
               ? json_string_value (json_object_get (write->entry, "tenant")) : "global");
    s_load (write->filters);
    s_write_done (write, 201, json_incref (write->entry));
}

static void
s_on_removed (void *arg, redisReply *reply)
{
    write_t *write = arg;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        s_write_failed (write);
        return;
    }
    if (reply->integer == 0) {
        mesh_admin_response_t response = { 0 };
        mesh_buf_init (&response.body);
        router_registry_fail (&response, 404, "filter_not_found", "No word list entry \"%s\".", write->id);
        mesh_admin_complete (write->pending, response.status, response.content_type, &response.body);
        free (write);
        return;
    }
    mesh_info ("admin: word list entry %s removed", write->id);
    s_load (write->filters);
    s_write_done (write, 200, json_pack ("{s:s, s:b}", "id", write->id, "deleted", 1));
}

//  The value of name in a query string (percent-decoded), or false
static bool
s_query (const mesh_admin_request_t *request, const char *name, char *out, size_t size)
{
    size_t name_len = strlen (name);
    const char *at = request->query, *end = request->query + request->query_len;
    while (at < end) {
        const char *amp = memchr (at, '&', (size_t) (end - at));
        const char *stop = amp ? amp : end;
        if ((size_t) (stop - at) > name_len && memcmp (at, name, name_len) == 0 && at [name_len] == '=') {
            size_t len = 0;
            for (const char *p = at + name_len + 1; p < stop && len + 1 < size; p++) {
                unsigned int byte;
                if (*p == '%' && p + 2 < stop && isxdigit ((unsigned char) p [1])
                &&  isxdigit ((unsigned char) p [2]) && sscanf (p + 1, "%2x", &byte) == 1) {
                    out [len++] = (char) byte;
                    p += 2;
                }
                else
                    out [len++] = *p == '+' ? ' ' : *p;
            }
            out [len] = 0;
            return true;
        }
        at = stop + 1;
    }
    return false;
}

static bool
s_tenant_valid (const char *tenant)
{
    size_t len = strlen (tenant);
    if (len == 0 || len > MESH_WORDFILTER_MAX_LIST || !mesh_utf8_valid (tenant, len))
        return false;
    for (const char *p = tenant; *p; p++)
        if ((unsigned char) *p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f)
            return false;
    return true;
}

static json_t *
s_body (const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    json_error_t error;
    json_t *body = json_loadb (request->body, request->body_len, 0, &error);
    if (!json_is_object (body)) {
        json_decref (body);
        router_registry_fail (response, 400, "invalid_json", "The body must be a JSON object.");
        return NULL;
    }
    return body;
}

static int
s_list (router_filters_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    char tenant [256];
    bool one = s_query (request, "tenant", tenant, sizeof tenant);
    json_t *data = json_array ();
    json_t *doc = self->doc ? json_loads (self->doc, 0, NULL) : NULL;
    size_t index;
    json_t *entry;
    json_array_foreach (json_object_get (doc, "words"), index, entry) {
        json_t *list = json_object_get (entry, "tenant");
        if (!one || (json_is_string (list) ? mesh_streq (json_string_value (list), tenant) : !*tenant
                                                                              || mesh_streq (tenant, "global")))
            json_array_append (data, entry);
    }
    json_decref (doc);
    router_registry_answer (response, 200, json_pack ("{s:s, s:I, s:o}", "object", "list", "version",
                                                      (json_int_t) self->version, "data", data));
    return 0;
}

static int
s_add (router_filters_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    json_t *body = s_body (request, response);
    if (!body)
        return 0;
    const char *word = json_string_value (json_object_get (body, "word"));
    json_t *tenant = json_object_get (body, "tenant");
    json_t *action = json_object_get (body, "action");
    const char *action_name = action ? json_string_value (action) : "block";
    uint32_t chars [MESH_WORDFILTER_MAX_CHARS];
    size_t count = word ? mesh_wordfilter_normalise (word, strlen (word), chars, MESH_WORDFILTER_MAX_CHARS) : 0;
    int rc = 0;
    if (!word || strlen (word) > MESH_WORDFILTER_MAX_WORD)
        rc = router_registry_fail (response, 400, "invalid_word", "Give the \"word\" (a string of at most %d bytes).",
                                   MESH_WORDFILTER_MAX_WORD);
    else
    if (count == 0 || count > MESH_WORDFILTER_MAX_CHARS)
        rc = router_registry_fail (response, 400, "invalid_word",
                                   "A word has 1 to %d letters (spaces, punctuation and zero-width characters "
                                   "do not count).", MESH_WORDFILTER_MAX_CHARS);
    else
    if (tenant && !json_is_null (tenant) && !(json_is_string (tenant) && s_tenant_valid (json_string_value (tenant))))
        rc = router_registry_fail (response, 400, "invalid_tenant",
                                   "\"tenant\" is a tenant's name (1-127 characters), or null for the global list.");
    else
    if (!action_name || !(mesh_streq (action_name, "block") || mesh_streq (action_name, "mask")))
        rc = router_registry_fail (response, 400, "invalid_action", "\"action\" is \"block\" or \"mask\".");
    else
    if (mesh_wordfilter_count (self->filter) >= MESH_WORDFILTER_MAX_ENTRIES)
        rc = router_registry_fail (response, 409, "too_many_words", "The lists hold %d entries at most.",
                                   MESH_WORDFILTER_MAX_ENTRIES);
    else
    if (!self->redis || !mesh_redis_ready (self->redis))
        rc = router_registry_fail (response, 503, "filters_unavailable",
                                   "The word lists' store (Redis) is unavailable; nothing was changed.");
    (void) rc;
    if (response->status >= 400) {
        json_decref (body);
        return 0;
    }
    mesh_admin_pending_t *pending = mesh_admin_defer (request);
    if (!pending) {
        json_decref (body);
        return router_registry_fail (response, 500, "cannot_wait", "This transport cannot serve admin writes.");
    }
    write_t *write = calloc (1, sizeof *write);
    assert (write);
    write->filters = self;
    write->pending = pending;
    write->entry = json_pack ("{s:s, s:O, s:s, s:s, s:I}", "id", "", "tenant",
                              json_is_string (tenant) ? tenant : json_null (), "word", word,
                              "action", action_name, "added_ms", (json_int_t) mesh_wall_ms ());
    json_decref (body);
    //  The stored JSON around its id, which Redis makes: {"id":"<id>",...}
    json_t *rest = json_deep_copy (write->entry);
    json_object_del (rest, "id");
    char *text = json_dumps (rest, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (rest);
    assert (text && text [0] == '{');
    char *after = malloc (strlen (text) + 4);
    assert (after);
    snprintf (after, strlen (text) + 4, "\",%s", text + 1);
    const char *argv [] = { HASH, VERSION, SEQ, "{\"id\":\"", after, CHANNEL };
    if (mesh_redis_eval (self->redis, &s_add_script, s_on_added, write, 3, 6, argv, NULL) < 0)
        s_write_failed (write);
    free (text);
    free (after);
    return 0;
}

static int
s_remove (router_filters_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response,
          const char *id)
{
    if (!*id || strlen (id) > MESH_WORDFILTER_MAX_ID)
        return router_registry_fail (response, 404, "filter_not_found", "No word list entry \"%s\".", id);
    if (!self->redis || !mesh_redis_ready (self->redis))
        return router_registry_fail (response, 503, "filters_unavailable",
                                     "The word lists' store (Redis) is unavailable; nothing was changed.");
    mesh_admin_pending_t *pending = mesh_admin_defer (request);
    if (!pending)
        return router_registry_fail (response, 500, "cannot_wait", "This transport cannot serve admin writes.");
    write_t *write = calloc (1, sizeof *write);
    assert (write);
    write->filters = self;
    write->pending = pending;
    snprintf (write->id, sizeof write->id, "%s", id);
    const char *argv [] = { HASH, VERSION, id, CHANNEL };
    if (mesh_redis_eval (self->redis, &s_remove_script, s_on_removed, write, 2, 4, argv, NULL) < 0)
        s_write_failed (write);
    return 0;
}

static int
s_test (router_filters_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    json_t *body = s_body (request, response);
    if (!body)
        return 0;
    const char *text = json_string_value (json_object_get (body, "text"));
    json_t *tenant = json_object_get (body, "tenant");
    if (!text || (tenant && !json_is_null (tenant) && !json_is_string (tenant))) {
        json_decref (body);
        return router_registry_fail (response, 400, "invalid_request",
                                     "Give the \"text\" to test, and a \"tenant\" or none (every list).");
    }
    mesh_wordstream_t *stream = mesh_wordstream_new (self->filter, json_string_value (tenant));
    mesh_buf_t outs [MESH_WORDFILTER_FIELDS];
    mesh_buf_init (&outs [0]);
    mesh_buf_init (&outs [1]);
    bool passed = mesh_wordstream_feed (stream, MESH_WORD_CONTENT, text, json_string_length (
                                        json_object_get (body, "text")), outs)
               && mesh_wordstream_finish (stream, outs);
    json_t *matches = json_array ();
    const uint32_t *matched;
    size_t count = mesh_wordstream_matched (stream, &matched);
    for (size_t i = 0; i < count; i++) {
        mesh_wordentry_t entry = mesh_wordfilter_entry (self->filter, matched [i]);
        json_array_append_new (matches, json_pack ("{s:s, s:s, s:s, s:s}", "id", entry.id,
                               "list", *entry.list ? entry.list : "global", "word", entry.word,
                               "action", entry.action == MESH_WORD_BLOCK ? "block" : "mask"));
    }
    size_t size = mesh_buf_size (&outs [0]);
    json_t *reply = json_pack ("{s:s%, s:b, s:o, s:I}", "text", size ? mesh_buf_head (&outs [0]) : "",
                               size, "blocked", !passed, "matches", matches,
                               "version", (json_int_t) self->version);
    router_registry_answer (response, 200, reply);
    mesh_wordstream_destroy (&stream);
    mesh_buf_free (&outs [0]);
    mesh_buf_free (&outs [1]);
    json_decref (body);
    return 0;
}

static int
s_on_admin (void *arg, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    router_filters_t *self = arg;
    if (!router_registry_authorized (self->registry, request, response))
        return 0;
    char method [16], path [128];
    snprintf (method, sizeof method, "%.*s", (int) request->method_len, request->method);
    snprintf (path, sizeof path, "%.*s", (int) MESH_MIN (request->path_len, sizeof path - 1), request->path);
    if (mesh_streq (path, "/admin/filters")) {
        if (mesh_streq (method, "GET"))
            return s_list (self, request, response);
        if (mesh_streq (method, "POST"))
            return s_add (self, request, response);
        return router_registry_fail (response, 405, "method_not_allowed", "Use GET or POST on /admin/filters.");
    }
    if (mesh_streq (path, "/admin/filters/test")) {
        if (!mesh_streq (method, "POST"))
            return router_registry_fail (response, 405, "method_not_allowed", "Use POST on /admin/filters/test.");
        return s_test (self, request, response);
    }
    if (strncmp (path, "/admin/filters/", 15) == 0) {
        if (!mesh_streq (method, "DELETE"))
            return router_registry_fail (response, 405, "method_not_allowed", "Use DELETE on /admin/filters/ID.");
        return s_remove (self, request, response, path + 15);
    }
    return router_registry_fail (response, 404, "not_found", "No such admin route: %s", path);
}

void
router_filters_routes (router_filters_t *self, mesh_admin_t *admin, router_registry_t *registry)
{
    self->registry = registry;
    mesh_admin_route (admin, "/admin/filters", s_on_admin, self);
}

//  Lifecycle ----------------------------------------------------------------------

router_filters_t *
router_filters_new (mesh_loop_t *loop, struct mesh_redis_t *redis, mesh_outbox_t *outbox,
                    mesh_metrics_t *metrics, const char *sender)
{
    router_filters_t *self = calloc (1, sizeof *self);
    assert (self);
    self->loop = loop;
    self->redis = redis;
    self->outbox = outbox;
    self->metrics = metrics;
    snprintf (self->sender, sizeof self->sender, "%s", sender);
    self->filter = mesh_wordfilter_new ();
    mesh_wordfilter_compile (self->filter);
    self->installed = mesh_metrics_counter (metrics, "seekmesh_router_filter_versions_total",
        "Versions of the word lists installed.", NULL);
    self->version_gauge = mesh_metrics_gauge (metrics, "seekmesh_router_filter_version",
        "The version of the word lists in force (0: none).", NULL);
    self->skipped = mesh_metrics_counter (metrics, "seekmesh_router_filter_skipped_total",
        "Word list entries in Redis that could not be compiled (skipped).", NULL);
    if (redis)
        mesh_redis_subscribe (redis, CHANNEL, s_on_message, s_on_subscribed, self);
    return self;
}

void
router_filters_destroy (router_filters_t **self_p)
{
    assert (self_p);
    router_filters_t *self = *self_p;
    if (!self)
        return;
    mesh_wordfilter_unref (&self->filter);
    free (self->doc);
    free (self);
    *self_p = NULL;
}

//  Selftest ---------------------------------------------------------------------

void
router_filters_test (bool verbose)
{
    (void) verbose;
    //  Without Redis: the lists install from a hash reply, the input check,
    //  the admin API's reads and refusals (writes and the way to ingresses
    //  are proven against real processes by tests/integration)
    mesh_loop_t *loop = mesh_loop_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    router_filters_t *self = router_filters_new (loop, NULL, NULL, metrics, "router-test");
    redisReply fields [4], values [4];
    redisReply *elements [8];
    static char entries [][2][96] = {
        { "f1", "{\"id\":\"f1\",\"tenant\":null,\"word\":\"darn\",\"action\":\"block\"}" },
        { "f2", "{\"id\":\"f2\",\"tenant\":\"acme\",\"word\":\"widget\",\"action\":\"block\"}" },
        { "f3", "{\"id\":\"f3\",\"tenant\":null,\"word\":\"heck\",\"action\":\"mask\"}" },
        { "f4", "{\"id\":\"f4\",\"tenant\":null,\"word\":\"...\",\"action\":\"mask\"}" },
    };
    for (int i = 0; i < 4; i++) {
        fields [i] = (redisReply) { .type = REDIS_REPLY_STRING, .str = entries [i][0],
                                    .len = strlen (entries [i][0]) };
        values [i] = (redisReply) { .type = REDIS_REPLY_STRING, .str = entries [i][1],
                                    .len = strlen (entries [i][1]) };
        elements [2 * i] = &fields [i];
        elements [2 * i + 1] = &values [i];
    }
    redisReply hash = { .type = REDIS_REPLY_ARRAY, .elements = 8, .element = elements };
    s_install (self, 3, &hash);
    assert (self->loaded && self->version == 3 && mesh_wordfilter_count (self->filter) == 3);
    assert (mesh_metric_value (self->skipped) == 1);
    assert (strstr (self->doc, "\"version\":3") && strstr (self->doc, "widget") && !strstr (self->doc, "\"...\""));

    char filtered [512], param [96];
    const char *clean = "{\"messages\":[{\"role\":\"user\",\"content\":\"oh heck\"}]}";
    assert (!router_filters_refuse (self, "r1", "acme", clean, strlen (clean), filtered, sizeof filtered,
                                    param, sizeof param));
    const char *parts = "{\"messages\":[{\"role\":\"system\",\"content\":\"x\"},{\"role\":\"user\",\"content\":"
                        "[{\"type\":\"text\",\"text\":\"a w i d g e t\"}]}]}";
    assert (router_filters_refuse (self, "r2", "acme", parts, strlen (parts), filtered, sizeof filtered,
                                   param, sizeof param));
    assert (mesh_streq (param, "messages.[1].content"));
    assert (mesh_streq (filtered, "[{\"list\":\"acme\",\"entry\":\"f2\",\"action\":\"block\"}]"));
    assert (!router_filters_refuse (self, "r3", "other", parts, strlen (parts), filtered, sizeof filtered,
                                    param, sizeof param));
    assert (mesh_metric_value (mesh_metrics_counter (metrics, "seekmesh_filter_matches_total", "",
                               "tenant=\"acme\",action=\"block\"")) == 1);

    //  The API: token, list, test, refusals
    mesh_admin_t *admin = mesh_admin_new (metrics);
    const char *text = "{\"keys\":[]}";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "f.json", why, sizeof why);
    router_registry_t *registry = router_registry_new (config, NULL, NULL, NULL, NULL, why, sizeof why);
    router_filters_routes (self, admin, registry);
    setenv ("SEEKMESH_ADMIN_TOKEN", "admin-secret", 1);
    struct { const char *method, *path, *query, *body, *token; int status; const char *fragment; } calls [] = {
        { "GET", "/admin/filters", "", "", "Bearer nope", 401, "invalid_admin_token" },
        { "GET", "/admin/filters", "", "", "Bearer admin-secret", 200, "\"word\":\"widget\"" },
        { "GET", "/admin/filters", "tenant=global", "", "Bearer admin-secret", 200, "\"heck\"" },
        { "POST", "/admin/filters/test", "", "{\"text\":\"Oh HECK, a widget\",\"tenant\":\"acme\"}",
          "Bearer admin-secret", 200, "\"text\":\"Oh ****, a \",\"blocked\":true" },
        { "POST", "/admin/filters/test", "", "{\"text\":\"Oh HECK, a widget\",\"tenant\":\"zz\"}",
          "Bearer admin-secret", 200, "\"text\":\"Oh ****, a widget\",\"blocked\":false" },
        { "POST", "/admin/filters", "", "{\"word\":\"- -\"}", "Bearer admin-secret", 400, "invalid_word" },
        { "POST", "/admin/filters", "", "{\"word\":\"x\",\"action\":\"drop\"}", "Bearer admin-secret", 400,
          "invalid_action" },
        { "POST", "/admin/filters", "", "{\"word\":\"x\",\"tenant\":\"\"}", "Bearer admin-secret", 400,
          "invalid_tenant" },
        { "POST", "/admin/filters", "", "{\"word\":\"x\"}", "Bearer admin-secret", 503, "filters_unavailable" },
        { "DELETE", "/admin/filters/f1", "", "", "Bearer admin-secret", 503, "filters_unavailable" },
        { "PUT", "/admin/filters", "", "", "Bearer admin-secret", 405, "method_not_allowed" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (calls); i++) {
        mesh_admin_request_t request = {
            .method = calls [i].method, .method_len = strlen (calls [i].method),
            .path = calls [i].path, .path_len = strlen (calls [i].path),
            .query = calls [i].query, .query_len = strlen (calls [i].query),
            .body = calls [i].body, .body_len = strlen (calls [i].body),
            .authorization = calls [i].token, .authorization_len = strlen (calls [i].token) };
        mesh_admin_response_t response;
        mesh_admin_handle (admin, &request, &response);
        mesh_buf_append (&response.body, "", 1);
        if (response.status != calls [i].status || !strstr (response.body.data, calls [i].fragment)) {
            fprintf (stderr, "router_filters: %s %s: %d %s\n", calls [i].method, calls [i].path,
                     response.status, response.body.data);
            assert (false);
        }
        mesh_buf_free (&response.body);
    }
    unsetenv ("SEEKMESH_ADMIN_TOKEN");
    assert (!router_filters_ingress (self));
    mesh_admin_destroy (&admin);
    router_registry_destroy (&registry);
    mesh_config_destroy (&config);
    router_filters_destroy (&self);
    router_filters_destroy (&self);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
}
