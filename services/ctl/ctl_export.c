/*  ctl_export: the audit store's records as NDJSON with Elastic Common
    Schema names (see ctl_export.h), for `seekmeshctl audit export`.
    Single-threaded, like the rest of seekmeshctl.                          */
#include "ctl_export.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

json_t *
ctl_export_json_text (const char *data, size_t size)
{
    json_t *text = json_stringn (data ? data : "", size);
    if (text)
        return text;
    //  Not UTF-8 as jansson takes it: each sequence that is kept, each
    //  byte that is not one's start replaced
    mesh_buf_t clean;
    mesh_buf_init (&clean);
    const unsigned char *p = (const unsigned char *) data;
    for (size_t i = 0; i < size; ) {
        size_t n = p [i] < 0x80 ? 1 : (p [i] & 0xe0) == 0xc0 ? 2 : (p [i] & 0xf0) == 0xe0 ? 3
                 : (p [i] & 0xf8) == 0xf0 ? 4 : 0;
        //  NUL is a character here (json_stringn keeps it as \u0000)
        if (n == 1 || (n && i + n <= size && mesh_utf8_valid ((const char *) p + i, n))) {
            mesh_buf_append (&clean, p + i, n);
            i += n;
        }
        else {
            mesh_buf_append (&clean, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    text = json_stringn (clean.data ? clean.data : "", clean.len);
    mesh_buf_free (&clean);
    assert (text);
    return text;
}

void
ctl_export_iso_time (int64_t ms, char out [32])
{
    time_t seconds = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&seconds, &tm);
    size_t len = strftime (out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (out + len, 32 - len, ".%03dZ", (int) (ms % 1000));
}

//  Sets path ("a.b.c") in object, making the objects on the way
static void
s_set (json_t *object, const char *path, json_t *value)
{
    char key [64];
    const char *dot;
    while ((dot = strchr (path, '.'))) {
        snprintf (key, sizeof key, "%.*s", (int) (dot - path), path);
        json_t *inner = json_object_get (object, key);
        if (!json_is_object (inner))
            json_object_set_new (object, key, inner = json_object ());
        object = inner;
        path = dot + 1;
    }
    json_object_set_new (object, path, value ? value : json_null ());
}

static json_t *
s_json_bytes (const mesh_bytes_t *bytes)
{
    return ctl_export_json_text (bytes->data, bytes->size);
}

void
ctl_export_ndjson (const mesh_audit_query_row_t *row, mesh_buf_t *out)
{
    const mesh_audit_record_t *r = &row->record;
    json_t *doc = json_object ();
    char time [32];
    ctl_export_iso_time ((int64_t) r->start_ms, time);
    s_set (doc, "@timestamp", json_string (time));
    s_set (doc, "ecs.version", json_string ("8.11.0"));
    s_set (doc, "event.kind", json_string ("event"));
    s_set (doc, "event.category", json_pack ("[s]", "web"));
    s_set (doc, "event.type", json_pack ("[s]", "access"));
    s_set (doc, "event.dataset", json_string ("seekmesh.audit"));
    s_set (doc, "event.id", s_json_bytes (&r->id));
    s_set (doc, "event.sequence", json_integer ((json_int_t) row->seq));
    s_set (doc, "event.start", json_string (time));
    ctl_export_iso_time ((int64_t) r->end_ms, time);
    s_set (doc, "event.end", json_string (time));
    s_set (doc, "event.duration", json_integer (r->total_us > INT64_MAX / 1000 ? INT64_MAX
                                                : (json_int_t) r->total_us * 1000));
    bool ok = mesh_memeq (r->outcome.data, r->outcome.size, MESH_AUDIT_OK);
    s_set (doc, "event.outcome", json_string (ok ? "success" : "failure"));
    s_set (doc, "event.reason", s_json_bytes (&r->outcome));
    s_set (doc, "http.request.id", s_json_bytes (&r->id));
    if (r->status)
        s_set (doc, "http.response.status_code", json_integer (r->status));
    s_set (doc, "http.response.body.bytes", json_integer ((json_int_t) r->bytes_out));
    if (r->error_code.size)
        s_set (doc, "error.code", s_json_bytes (&r->error_code));
    if (r->tenant.size)
        s_set (doc, "organization.id", s_json_bytes (&r->tenant));
    if (r->key_id.size)
        s_set (doc, "user.id", s_json_bytes (&r->key_id));
    if (r->endpoint.size)
        s_set (doc, "url.original", s_json_bytes (&r->endpoint));
    if (r->region.size)
        s_set (doc, "cloud.region", s_json_bytes (&r->region));
    s_set (doc, "gen_ai.system", json_string ("openai"));
    s_set (doc, "gen_ai.operation.name", json_string ("chat"));
    s_set (doc, "gen_ai.request.model", s_json_bytes (&r->model_requested));
    s_set (doc, "gen_ai.response.model", s_json_bytes (&r->model));
    s_set (doc, "gen_ai.usage.input_tokens", json_integer ((json_int_t) r->prompt_tokens));
    s_set (doc, "gen_ai.usage.output_tokens", json_integer ((json_int_t) r->completion_tokens));
    //  The request's parameters: ECS names for those it has, all of them
    //  under seekmesh.params
    json_t *params = json_loadb (r->params.data ? r->params.data : "", r->params.size, 0, NULL);
    if (json_is_object (params)) {
        const char *names [] = { "temperature", "top_p", "max_tokens", "seed",
                                 "frequency_penalty", "presence_penalty" };
        for (size_t i = 0; i < MESH_ARRAY_SIZE (names); i++) {
            json_t *value = json_object_get (params, names [i]);
            if (json_is_number (value)) {
                char path [64];
                snprintf (path, sizeof path, "gen_ai.request.%s", names [i]);
                s_set (doc, path, json_incref (value));
            }
        }
        s_set (doc, "seekmesh.params", params);
    }
    else
        json_decref (params);
    s_set (doc, "seekmesh.seq", json_integer ((json_int_t) row->seq));
    s_set (doc, "seekmesh.file", json_string (row->file ? row->file : ""));
    s_set (doc, "seekmesh.outcome", s_json_bytes (&r->outcome));
    s_set (doc, "seekmesh.stream", json_boolean (r->stream));
    s_set (doc, "seekmesh.attempts", json_integer (r->attempts));
    s_set (doc, "seekmesh.cache_hit", json_boolean (r->cache_hit));
    s_set (doc, "seekmesh.queue_us", json_integer ((json_int_t) r->queue_us));
    s_set (doc, "seekmesh.ttft_us", json_integer ((json_int_t) r->ttft_us));
    s_set (doc, "seekmesh.total_us", json_integer ((json_int_t) r->total_us));
    s_set (doc, "seekmesh.upstream_ttfb_us", json_integer ((json_int_t) r->upstream_ttfb_us));
    s_set (doc, "seekmesh.usage.cached_tokens", json_integer ((json_int_t) r->cached_tokens));
    s_set (doc, "seekmesh.usage.reasoning_tokens",
           json_integer ((json_int_t) r->reasoning_tokens));
    s_set (doc, "seekmesh.truncated", json_boolean (r->truncated));
    s_set (doc, "seekmesh.enc_key_id", json_string (row->enc_key_id ? row->enc_key_id : ""));
    if (row->decrypted) {
        s_set (doc, "gen_ai.prompt", s_json_bytes (&r->prompt));
        s_set (doc, "gen_ai.completion", s_json_bytes (&r->response));
    }
    if (row->decrypt_error)
        s_set (doc, "seekmesh.decrypt_error", json_string (row->decrypt_error));
    char *text = json_dumps (doc, JSON_COMPACT);
    assert (text);
    mesh_buf_append_str (out, text);
    mesh_buf_append (out, "\n", 1);
    free (text);
    json_decref (doc);
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"
#include "mesh_audit_store.h"

#include <unistd.h>

typedef struct {
    size_t rows;
    mesh_buf_t line;            //  the first row's
    mesh_buf_t all;             //  every row's
} t_export_t;

static int
s_test_row (void *arg, const mesh_audit_query_row_t *row)
{
    t_export_t *self = arg;
    if (self->rows++ == 0)
        ctl_export_ndjson (row, &self->line);
    size_t before = self->all.len;
    ctl_export_ndjson (row, &self->all);
    assert (self->all.len > before + 2 && self->all.data [self->all.len - 1] == '\n');
    return 0;
}

//  Exports the store in dir: every row makes one line
static t_export_t *
s_test_export (const char *dir, const mesh_audit_query_filter_t *filter,
               mesh_audit_keyring_t *keys)
{
    static t_export_t export;
    mesh_buf_free (&export.line);
    mesh_buf_free (&export.all);
    memset (&export, 0, sizeof export);
    char why [256];
    assert (mesh_audit_query (dir, filter, keys, s_test_row, &export, why, sizeof why) == 0);
    mesh_buf_append (&export.line, "", 1);
    mesh_buf_append (&export.all, "", 1);
    size_t lines = 0;
    for (char *at = export.all.data; (at = strchr (at, '\n')); at++)
        lines++;
    assert (lines == export.rows);
    return &export;
}

void
ctl_export_test (bool verbose)
{
    (void) verbose;
    char root [1024], dir [2048], why [256];
    mesh_audit_sample_tmpdir (root, sizeof root);
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL, MESH_AUDIT_SAMPLE_KEY1, why,
                                                          sizeof why);
    EVP_PKEY *signer = mesh_audit_sample_signer (root, "signing", NULL);
    assert (keys);
    snprintf (dir, sizeof dir, "%s/store", root);
    mesh_audit_sample_store (dir, data, 20, keys, signer);

    char time [32];
    ctl_export_iso_time (1772323200000LL + 45296789, time);
    assert (mesh_streq (time, "2026-03-01T12:34:56.789Z"));

    //  NDJSON with Elastic Common Schema names, one object a line, with
    //  and without the prompt and response
    assert (s_test_export (dir, NULL, NULL)->rows == 20);
    mesh_audit_query_filter_t filter = { .limit = 1 };
    t_export_t *export = s_test_export (dir, &filter, keys);
    assert (export->rows == 1 && export->line.len > 2
            && export->line.data [export->line.len - 2] == '\n');
    json_error_t error;
    json_t *doc = json_loads (export->line.data, 0, &error);
    assert (doc);
    assert (json_object_get (doc, "@timestamp"));
    json_t *event = json_object_get (doc, "event");
    assert (mesh_streq (json_string_value (json_object_get (event, "id")), data->ids [0]));
    assert (mesh_streq (json_string_value (json_object_get (event, "outcome")), "success"));
    assert (json_integer_value (json_object_get (event, "duration")) == 150000000);
    assert (json_integer_value (json_object_get (json_object_get (json_object_get (doc, "http"),
            "response"), "status_code")) == 200);
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (doc, "organization"),
            "id")), "t0"));
    json_t *gen_ai = json_object_get (doc, "gen_ai");
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (gen_ai, "request"),
            "model")), "alias-b"));
    assert (json_real_value (json_object_get (json_object_get (gen_ai, "request"),
            "temperature")) == 0.5);
    assert (json_integer_value (json_object_get (json_object_get (gen_ai, "usage"),
            "input_tokens")) == 10);
    assert (strstr (json_string_value (json_object_get (gen_ai, "prompt")), "secret 0"));
    json_decref (doc);
    //  Text that is not UTF-8 still makes a JSON line
    mesh_audit_query_row_t row = {
        .seq = 1, .file = "f", .enc_key_id = "k1", .decrypted = true,
        .record = { .id = mesh_audit_sample_text (data->ids [0]),
                    .prompt = mesh_audit_sample_text ("a\xff" "b\xe2\x82"),
                    .response = { "x\0y", 3 } } };
    mesh_buf_reset (&export->line);
    ctl_export_ndjson (&row, &export->line);
    mesh_buf_append (&export->line, "", 1);
    assert ((doc = json_loads (export->line.data, JSON_ALLOW_NUL, &error)));
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (doc, "gen_ai"),
            "prompt")), "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"));
    json_decref (doc);

    //  Valid UTF-8 is kept as it is; each byte that starts no valid
    //  sequence becomes U+FFFD, and the bytes after it are read again
    struct { const char *in; size_t size; const char *out; size_t out_size; } texts [] = {
        { "plain", 5, "plain", 5 },
        { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14 },
        { "\xc3\xa9\xff", 3, "\xc3\xa9\xef\xbf\xbd", 5 },               //  one bad byte after
        { "a\xe2\x82", 3, "a\xef\xbf\xbd\xef\xbf\xbd", 7 },             //  cut short
        { "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd", 6 },                //  overlong '/'
        { "\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9 },  //  a surrogate
        { "\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12 },
        { "\xe2\x82\xac\x80\xe2\x82\xac", 7, "\xe2\x82\xac\xef\xbf\xbd\xe2\x82\xac", 9 },
        { "x\0\xffy", 4, "x\0\xef\xbf\xbdy", 6 },                        //  NUL is kept
        { NULL, 0, "", 0 },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (texts); i++) {
        json_t *text = ctl_export_json_text (texts [i].in, texts [i].size);
        assert (json_is_string (text));
        assert (json_string_length (text) == texts [i].out_size);
        assert (memcmp (json_string_value (text), texts [i].out, texts [i].out_size) == 0);
        json_decref (text);
    }

    mesh_audit_keyring_destroy (&keys);
    EVP_PKEY_free (signer);
    free (data);
    mesh_buf_free (&export->line);
    mesh_buf_free (&export->all);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
