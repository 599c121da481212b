/*  ctl_audit: the audit store's tools, on its files (no admin API, no token).

        audit query [FILTERS] [--decrypt]     a table, or --json: one object a line
        audit verify [--from DATE] [--tail-wait MS]
                                              0 sound, 1 the first bad record, 2 unreadable
        audit export [--format ndjson]        Elastic Common Schema, one record a line
        audit rotate-key                      a new key in the key file; prints its id

    The store is --dir, else $SEEKMESH_AUDIT_DIR, else run/audit; the key
    file --key-file, else $SEEKMESH_AUDIT_KEY_FILE, else <dir>/keys; the
    public key --public-key, else <dir>/signing.pub.pem.  Prompts and
    responses are only shown with --decrypt, and only with the key file.
    What the records hold is printed with control characters replaced, so
    a stored prompt cannot drive the terminal.                               */
#include "ctl.h"
#include "ctl_export.h"
#include "mesh_audit_keyring.h"
#include "mesh_audit_query.h"
#include "mesh_audit_seal.h"
#include "mesh_audit_verify.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_DIR "run/audit"
//  How long verify waits for a running service to sign the records after
//  its last checkpoint: five times audit.checkpoint_ms's default
#define DEFAULT_TAIL_WAIT_MS 5000

//  The options every reading command shares, then each command's
#define FILTER_OPTIONS                                   \
    { "dir",      CTL_STRING, "dir" },                   \
    { "since",    CTL_STRING, "since" },                 \
    { "until",    CTL_STRING, "until" },                 \
    { "tenant",   CTL_STRING, "tenant" },                \
    { "model",    CTL_STRING, "model" },                 \
    { "status",   CTL_COUNT,  "status" },                \
    { "outcome",  CTL_STRING, "outcome" },               \
    { "limit",    CTL_COUNT,  "limit" },                 \
    { "decrypt",  CTL_FLAG,   "decrypt" },               \
    { "key-file", CTL_STRING, "key_file" }

static const ctl_option_t s_query_options [] = {
    FILTER_OPTIONS,
    { NULL, 0, NULL }
};

static const ctl_option_t s_export_options [] = {
    FILTER_OPTIONS,
    { "format",   CTL_STRING, "format" },
    { NULL, 0, NULL }
};

static const ctl_option_t s_verify_options [] = {
    { "dir",        CTL_STRING, "dir" },
    { "from",       CTL_STRING, "from" },
    { "public-key", CTL_STRING, "public_key" },
    { "tail-wait",  CTL_LIMIT,  "tail_wait" },
    { NULL, 0, NULL }
};

static const ctl_option_t s_rotate_options [] = {
    { "dir",      CTL_STRING, "dir" },
    { "key-file", CTL_STRING, "key_file" },
    { NULL, 0, NULL }
};

static const char *
s_field (json_t *fields, const char *name)
{
    return json_string_value (json_object_get (fields, name));
}

static const char *
s_dir (json_t *fields)
{
    const char *dir = s_field (fields, "dir");
    if (!dir && (dir = getenv ("SEEKMESH_AUDIT_DIR")) && !*dir)
        dir = NULL;
    return dir ? dir : DEFAULT_DIR;
}

//  Option value, else environment variable, else <dir>/name
static void
s_file (json_t *fields, const char *field, const char *env, const char *name,
        char *path, size_t size)
{
    const char *value = s_field (fields, field);
    if (!value && env && (value = getenv (env)) && !*value)
        value = NULL;
    if (value)
        snprintf (path, size, "%s", value);
    else
        snprintf (path, size, "%s/%s", s_dir (fields), name);
}

//  Times ------------------------------------------------------------------------

//  A time as the options take it: a duration back from now ("90s", "30m",
//  "1h", "2d", "1w"), or a UTC date and time ("2026-05-26",
//  "2026-05-26T10:00", "2026-05-26 10:00:00.250Z", "2026-05-26T12:00+02:00").
//  -1 if it is neither.
static int64_t
s_parse_time (const char *text, int64_t now_ms)
{
    char *end;
    size_t len = strlen (text);
    if (len >= 2 && strspn (text, "0123456789") == len - 1) {
        errno = 0;
        long long count = strtoll (text, &end, 10);
        int64_t unit_ms = 0;
        switch (text [len - 1]) {
            case 's': unit_ms = 1000; break;
            case 'm': unit_ms = 60 * 1000; break;
            case 'h': unit_ms = 3600 * 1000; break;
            case 'd': unit_ms = 86400 * 1000LL; break;
            case 'w': unit_ms = 7 * 86400 * 1000LL; break;
        }
        if (errno || !unit_ms || count > now_ms / unit_ms)
            return -1;
        return now_ms - count * unit_ms;
    }
    int year, month, day, hour = 0, minute = 0, second = 0, consumed = 0;
    if (sscanf (text, "%4d-%2d-%2d%n", &year, &month, &day, &consumed) != 3 || consumed != 10)
        return -1;
    const char *at = text + 10;
    int millis = 0;
    if (*at == 'T' || *at == ' ') {
        if (sscanf (at + 1, "%2d:%2d%n", &hour, &minute, &consumed) != 2 || consumed != 5)
            return -1;
        at += 6;
        if (*at == ':') {
            if (sscanf (at + 1, "%2d%n", &second, &consumed) != 1 || consumed != 2)
                return -1;
            at += 3;
            if (*at == '.') {
                int digits = 0;
                for (at++; *at >= '0' && *at <= '9'; at++, digits++)
                    if (digits < 3)
                        millis = millis * 10 + (*at - '0');
                if (digits == 0)
                    return -1;
                for (; digits < 3; digits++)
                    millis *= 10;
            }
        }
    }
    int64_t offset_ms = 0;
    if (*at == 'Z')
        at++;
    else
    if (*at == '+' || *at == '-') {
        int hours, minutes;
        if (sscanf (at + 1, "%2d:%2d%n", &hours, &minutes, &consumed) != 2 || consumed != 5
        ||  hours > 23 || minutes > 59)
            return -1;
        offset_ms = (hours * 60 + minutes) * 60000LL * (*at == '+' ? 1 : -1);
        at += 6;
    }
    if (*at || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59
    ||  second > 59)
        return -1;
    struct tm tm = { .tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day,
                     .tm_hour = hour, .tm_min = minute, .tm_sec = second };
    time_t seconds = timegm (&tm);
    struct tm back;
    gmtime_r (&seconds, &back);
    if (back.tm_mday != day)            //  2026-02-30
        return -1;
    return (int64_t) seconds * 1000 + millis - offset_ms;
}

//  Reads the filter options; CTL_EXIT_OK or a usage error
static int
s_filter (ctl_t *ctl, json_t *fields, mesh_audit_query_filter_t *filter)
{
    memset (filter, 0, sizeof *filter);
    int64_t now_ms = mesh_wall_ms ();
    const char *names [] = { "since", "until" };
    int64_t *times [] = { &filter->since_ms, &filter->until_ms };
    for (int i = 0; i < 2; i++) {
        const char *text = s_field (fields, names [i]);
        if (text && (*times [i] = s_parse_time (text, now_ms)) < 0)
            return ctl_usage (ctl, "--%s: '%s' is neither a duration (30m, 1h, 2d) nor a UTC "
                              "date and time (2026-05-26, 2026-05-26T10:00:00Z)", names [i], text);
    }
    filter->tenant = s_field (fields, "tenant");
    filter->model = s_field (fields, "model");
    filter->outcome = s_field (fields, "outcome");
    filter->status = json_integer_value (json_object_get (fields, "status"));
    filter->limit = (size_t) json_integer_value (json_object_get (fields, "limit"));
    return CTL_EXIT_OK;
}

//  The key ring for --decrypt, or NULL after saying why
static mesh_audit_keyring_t *
s_keys (json_t *fields)
{
    char path [4096], why [512];
    s_file (fields, "key_file", "SEEKMESH_AUDIT_KEY_FILE", "keys", path, sizeof path);
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (path, NULL, why, sizeof why);
    if (!keys)
        fprintf (stderr, "seekmeshctl: --decrypt needs the audit key file: %s\n"
                 "(give it with --key-file FILE or $SEEKMESH_AUDIT_KEY_FILE)\n", why);
    return keys;
}

//  Text -------------------------------------------------------------------------

//  Appends text with control characters (and DEL) as '?', except newlines
//  when keep_lines; bytes that are not UTF-8 pass as they are
static void
s_clean (mesh_buf_t *out, const char *text, size_t size, bool keep_lines)
{
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) text [i];
        char put = (c < 0x20 && !(keep_lines && c == '\n')) || c == 0x7f ? '?' : (char) c;
        mesh_buf_append (out, &put, 1);
    }
}

static void
s_append_json_text (mesh_buf_t *out, json_t *content)
{
    size_t index;
    json_t *part;
    if (json_is_string (content))
        mesh_buf_append (out, json_string_value (content), json_string_length (content));
    else
    if (json_is_array (content))
        json_array_foreach (content, index, part) {
            //  Content parts: the text ones; others by their type
            json_t *text = json_object_get (part, "text");
            if (json_is_string (text))
                mesh_buf_append (out, json_string_value (text), json_string_length (text));
            else
                mesh_buf_printf (out, "[%s]", json_string_value (json_object_get (part, "type"))
                                 ? json_string_value (json_object_get (part, "type")) : "part");
        }
}

//  The prompt as people read it: "[role] content" a message, or the body
//  as it is when it is not a chat request
static void
s_prompt_text (const char *body, size_t size, mesh_buf_t *out)
{
    json_t *request = json_loadb (body ? body : "", size, JSON_ALLOW_NUL, NULL);
    json_t *messages = json_object_get (request, "messages");
    if (!json_is_array (messages)) {
        mesh_buf_append (out, body ? body : "", size);
        json_decref (request);
        return;
    }
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message) {
        const char *role = json_string_value (json_object_get (message, "role"));
        if (index)
            mesh_buf_append (out, "\n", 1);
        mesh_buf_printf (out, "[%s] ", role ? role : "?");
        s_append_json_text (out, json_object_get (message, "content"));
        if (json_is_array (json_object_get (message, "tool_calls")))
            mesh_buf_append_str (out, " [tool calls]");
    }
    json_decref (request);
}

//  An error envelope, or an error event kept as it came, by its message
static void
s_error_text (mesh_buf_t *text, json_t *item)
{
    json_t *error = json_object_get (item, "error");
    const char *message = json_string_value (json_object_get (error, "message"));
    if (!message)
        message = json_is_string (item) ? json_string_value (item)
                : json_string_value (json_object_get (error, "code"));
    mesh_buf_printf (text, "%s[error: %s]", mesh_buf_size (text) ? " " : "", message ? message : "?");
}

//  The answer's text and reasoning: the first choice's message of the
//  chat.completion the record holds (a stream's is assembled from its
//  deltas by the ingress), its tool calls as "[tool call name(arguments)]",
//  an error envelope or error events by their messages; what is not JSON
//  as it came
static void
s_response_text (const char *data, size_t size, mesh_buf_t *text, mesh_buf_t *reasoning)
{
    json_t *answer = json_loadb (data ? data : "", size, JSON_ALLOW_NUL, NULL);
    if (!answer) {
        if (size)
            mesh_buf_append (text, data, size);
        return;
    }
    json_t *message = json_object_get (json_array_get (json_object_get (answer, "choices"), 0),
                                       "message");
    s_append_json_text (reasoning, json_object_get (message, "reasoning_content"));
    s_append_json_text (text, json_object_get (message, "content"));
    size_t index;
    json_t *item;
    json_array_foreach (json_object_get (message, "tool_calls"), index, item) {
        json_t *function = json_object_get (item, "function");
        const char *name = json_string_value (json_object_get (function, "name"));
        const char *arguments = json_string_value (json_object_get (function, "arguments"));
        mesh_buf_printf (text, "%s[tool call %s(%s)]", mesh_buf_size (text) ? " " : "",
                         name ? name : "?", arguments ? arguments : "");
    }
    if (json_is_object (json_object_get (answer, "error")))
        s_error_text (text, answer);
    json_array_foreach (json_object_get (answer, "errors"), index, item)
        s_error_text (text, item);
    json_decref (answer);
}

//  Prints "  label  text", the text's later lines indented under its first
static void
s_print_block (const char *label, const mesh_buf_t *text)
{
    mesh_buf_t clean;
    mesh_buf_init (&clean);
    s_clean (&clean, mesh_buf_size (text) ? mesh_buf_head (text) : "", mesh_buf_size (text), true);
    mesh_buf_append (&clean, "", 1);
    printf ("    %-10s", label);
    for (const char *line = clean.data; ; ) {
        const char *newline = strchr (line, '\n');
        printf ("%.*s\n", (int) (newline ? newline - line : (long) strlen (line)), line);
        if (!newline)
            break;
        line = newline + 1;
        printf ("    %-10s", "");
    }
    mesh_buf_free (&clean);
}

//  Query --------------------------------------------------------------------------

typedef struct {
    bool json;
    bool decrypt;
    size_t rows;
    size_t failed;                      //  records that would not decrypt
    mesh_buf_t line;
} query_t;

static json_t *
s_json_bytes (const mesh_bytes_t *bytes)
{
    return ctl_export_json_text (bytes->data, bytes->size);
}

static json_t *
s_row_json (const mesh_audit_query_row_t *row, bool decrypt)
{
    const mesh_audit_record_t *r = &row->record;
    char start [32], end [32];
    ctl_export_iso_time ((int64_t) r->start_ms, start);
    ctl_export_iso_time ((int64_t) r->end_ms, end);
    json_t *object = json_pack ("{sI ss so ss ss so so so so so so sb sI so so sI sb"
                                " sI sI sI sI sI sI sI sI sI sb ss}",
        "seq", (json_int_t) row->seq, "file", row->file, "id", s_json_bytes (&r->id), "start", start, "end", end,
        "tenant", s_json_bytes (&r->tenant), "key_id", s_json_bytes (&r->key_id),
        "model_requested", s_json_bytes (&r->model_requested), "model", s_json_bytes (&r->model),
        "endpoint", s_json_bytes (&r->endpoint), "region", s_json_bytes (&r->region),
        "stream", r->stream, "status", (json_int_t) r->status,
        "outcome", s_json_bytes (&r->outcome), "error_code", s_json_bytes (&r->error_code),
        "attempts", (json_int_t) r->attempts, "cache_hit", r->cache_hit,
        "queue_us", (json_int_t) r->queue_us, "ttft_us", (json_int_t) r->ttft_us,
        "total_us", (json_int_t) r->total_us, "upstream_ttfb_us", (json_int_t) r->upstream_ttfb_us,
        "prompt_tokens", (json_int_t) r->prompt_tokens,
        "completion_tokens", (json_int_t) r->completion_tokens,
        "cached_tokens", (json_int_t) r->cached_tokens,
        "reasoning_tokens", (json_int_t) r->reasoning_tokens,
        "bytes_out", (json_int_t) r->bytes_out, "truncated", r->truncated,
        "enc_key_id", row->enc_key_id);
    assert (object);
    json_t *params = json_loadb (r->params.size ? r->params.data : "", r->params.size, 0, NULL);
    json_object_set_new (object, "params", params ? params : s_json_bytes (&r->params));
    if (row->decrypted) {
        mesh_buf_t text, reasoning;
        mesh_buf_init (&text);
        mesh_buf_init (&reasoning);
        s_response_text (r->response.data, r->response.size, &text, &reasoning);
        mesh_bytes_t text_bytes = { text.data, text.len };
        mesh_bytes_t reasoning_bytes = { reasoning.data, reasoning.len };
        json_object_set_new (object, "prompt", s_json_bytes (&r->prompt));
        json_object_set_new (object, "response", s_json_bytes (&r->response));
        json_object_set_new (object, "response_text", s_json_bytes (&text_bytes));
        if (reasoning.len)
            json_object_set_new (object, "reasoning_text", s_json_bytes (&reasoning_bytes));
        mesh_buf_free (&text);
        mesh_buf_free (&reasoning);
    }
    else
    if (decrypt)
        json_object_set_new (object, "decrypt_error",
                             json_string (row->decrypt_error ? row->decrypt_error : "?"));
    return object;
}

static const char *s_columns [] = { "TIME", "ID", "TENANT", "MODEL", "STATUS", "OUTCOME",
                                    "TOKENS", "TTFT ms", "TOTAL ms" };
static const int s_widths [] = { 24, 26, 12, 20, 6, 14, 11, 8, 0 };

//  One table row: cells padded to their column (longer ones push on)
static void
s_print_row (const char *cells [])
{
    mesh_buf_t line;
    mesh_buf_init (&line);
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_columns); i++) {
        size_t start = line.len;
        s_clean (&line, cells [i], strlen (cells [i]), false);
        if (i + 1 < MESH_ARRAY_SIZE (s_columns)) {
            size_t width = 0;
            for (size_t k = start; k < line.len; k++)
                width += ((unsigned char) line.data [k] & 0xc0) != 0x80;
            for (; width < (size_t) s_widths [i]; width++)
                mesh_buf_append (&line, " ", 1);
            mesh_buf_append (&line, "  ", 2);
        }
    }
    mesh_buf_append (&line, "", 1);
    puts (line.data);
    mesh_buf_free (&line);
}

static int
s_on_query_row (void *arg, const mesh_audit_query_row_t *row)
{
    query_t *self = arg;
    const mesh_audit_record_t *r = &row->record;
    self->rows++;
    if (self->decrypt && !row->decrypted)
        self->failed++;
    if (self->json) {
        json_t *object = s_row_json (row, self->decrypt);
        char *text = json_dumps (object, JSON_COMPACT);
        if (text)
            puts (text);
        free (text);
        json_decref (object);
        return 0;
    }
    char time [32], status [16], tokens [48], ttft [32], total [32];
    ctl_export_iso_time ((int64_t) r->start_ms, time);
    snprintf (status, sizeof status, r->status ? "%u" : "-", r->status);
    snprintf (tokens, sizeof tokens, "%llu/%llu", (unsigned long long) r->prompt_tokens,
              (unsigned long long) r->completion_tokens);
    snprintf (ttft, sizeof ttft, r->ttft_us ? "%.1f" : "-", (double) r->ttft_us / 1000);
    snprintf (total, sizeof total, "%.1f", (double) r->total_us / 1000);
    const mesh_bytes_t *model = r->model.size ? &r->model : &r->model_requested;
    const char *cells [] = { time, r->id.data, r->tenant.size ? r->tenant.data : "-",
                             model->size ? model->data : "-", status, r->outcome.data, tokens,
                             ttft, total };
    s_print_row (cells);
    if (!self->decrypt)
        return 0;
    if (!row->decrypted) {
        printf ("    %-10s%s\n", "decrypt", row->decrypt_error ? row->decrypt_error : "failed");
        return 0;
    }
    mesh_buf_t text, reasoning;
    mesh_buf_init (&text);
    mesh_buf_init (&reasoning);
    s_prompt_text (r->prompt.data, r->prompt.size, &text);
    s_print_block ("prompt", &text);
    mesh_buf_reset (&text);
    s_response_text (r->response.data, r->response.size, &text, &reasoning);
    if (mesh_buf_size (&reasoning))
        s_print_block ("reasoning", &reasoning);
    if (r->truncated)
        mesh_buf_append_str (&text, " [truncated]");
    s_print_block ("response", &text);
    mesh_buf_free (&text);
    mesh_buf_free (&reasoning);
    return 0;
}

//  After a query or an export: how many would not decrypt
static int
s_decrypt_summary (const query_t *query)
{
    if (!query->failed)
        return CTL_EXIT_OK;
    fprintf (stderr, "seekmeshctl: %zu of %zu records could not be decrypted\n", query->failed,
             query->rows);
    return CTL_EXIT_API;
}

int
ctl_audit_query (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    mesh_audit_query_filter_t filter;
    mesh_audit_keyring_t *keys = NULL;
    query_t query = { .json = ctl->json };
    int rc = ctl_parse (ctl, argc, argv, s_query_options, fields, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = s_filter (ctl, fields, &filter);
    if (rc != CTL_EXIT_OK)
        goto done;
    query.decrypt = json_is_true (json_object_get (fields, "decrypt"));
    if (query.decrypt && !(keys = s_keys (fields))) {
        rc = CTL_EXIT_UNREACHABLE;
        goto done;
    }
    if (!query.json)
        s_print_row (s_columns);
    char why [512];
    if (mesh_audit_query (s_dir (fields), &filter, keys, s_on_query_row, &query,
                          why, sizeof why) < 0) {
        fprintf (stderr, "seekmeshctl: cannot read the audit store: %s\n", why);
        rc = CTL_EXIT_UNREACHABLE;
        goto done;
    }
    rc = s_decrypt_summary (&query);
done:
    mesh_audit_keyring_destroy (&keys);
    json_decref (fields);
    return rc;
}

//  Export ---------------------------------------------------------------------------

static int
s_on_export_row (void *arg, const mesh_audit_query_row_t *row)
{
    query_t *self = arg;
    self->rows++;
    if (self->decrypt && !row->decrypted)
        self->failed++;
    mesh_buf_reset (&self->line);
    ctl_export_ndjson (row, &self->line);
    fwrite (mesh_buf_head (&self->line), 1, mesh_buf_size (&self->line), stdout);
    mesh_buf_trim (&self->line, 1 << 20);
    return ferror (stdout) ? -1 : 0;
}

int
ctl_audit_export (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    mesh_audit_query_filter_t filter;
    mesh_audit_keyring_t *keys = NULL;
    query_t query = { .json = true };
    mesh_buf_init (&query.line);
    int rc = ctl_parse (ctl, argc, argv, s_export_options, fields, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = s_filter (ctl, fields, &filter);
    const char *format = s_field (fields, "format");
    if (rc == CTL_EXIT_OK && format && !mesh_streq (format, "ndjson"))
        rc = ctl_usage (ctl, "--format: '%s' is not a format it writes (ndjson)", format);
    if (rc != CTL_EXIT_OK)
        goto done;
    query.decrypt = json_is_true (json_object_get (fields, "decrypt"));
    if (query.decrypt && !(keys = s_keys (fields))) {
        rc = CTL_EXIT_UNREACHABLE;
        goto done;
    }
    char why [512];
    int result = mesh_audit_query (s_dir (fields), &filter, keys, s_on_export_row, &query,
                                   why, sizeof why);
    if (fflush (stdout) != 0 || result > 0) {
        fprintf (stderr, "seekmeshctl: cannot write the export: %s\n", strerror (errno));
        rc = CTL_EXIT_UNREACHABLE;
    }
    else
    if (result < 0) {
        fprintf (stderr, "seekmeshctl: cannot read the audit store: %s\n", why);
        rc = CTL_EXIT_UNREACHABLE;
    }
    else
        rc = s_decrypt_summary (&query);
done:
    mesh_buf_free (&query.line);
    mesh_audit_keyring_destroy (&keys);
    json_decref (fields);
    return rc;
}

//  Verify ---------------------------------------------------------------------------

int
ctl_audit_verify (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    EVP_PKEY *public_key = NULL;
    mesh_buf_t report;
    mesh_buf_init (&report);
    int rc = ctl_parse (ctl, argc, argv, s_verify_options, fields, NULL, 0);
    const char *from = s_field (fields, "from");
    if (rc == CTL_EXIT_OK && from && (strlen (from) != 10 || s_parse_time (from, 0) < 0))
        rc = ctl_usage (ctl, "--from: '%s' is not a date (YYYY-MM-DD)", from);
    if (rc != CTL_EXIT_OK)
        goto done;
    char path [4096], why [512];
    s_file (fields, "public_key", NULL, "signing.pub.pem", path, sizeof path);
    if (!(public_key = mesh_audit_seal_public_key_load (path, why, sizeof why))) {
        fprintf (stderr, "seekmeshctl: cannot read the checkpoints' public key: %s\n"
                 "(give it with --public-key FILE)\n", why);
        rc = CTL_EXIT_UNREACHABLE;
        goto done;
    }
    json_t *tail_wait = json_object_get (fields, "tail_wait");
    int64_t tail_wait_ms = tail_wait ? (int64_t) json_integer_value (tail_wait)
                                     : DEFAULT_TAIL_WAIT_MS;
    int result = mesh_audit_verify (s_dir (fields), from, public_key, tail_wait_ms, &report,
                                    why, sizeof why);
    if (result < 0) {
        fprintf (stderr, "seekmeshctl: cannot verify the audit store: %s\n", why);
        rc = CTL_EXIT_UNREACHABLE;
        goto done;
    }
    mesh_buf_append (&report, "", 1);
    if (ctl->json) {
        //  The verdict's line, then the notes
        char *line = strtok (report.data, "\n");
        json_t *object = json_pack ("{sb ss}", "ok", result == 0, "report", line ? line : "");
        json_t *notes = json_array ();
        for (char *note; (note = strtok (NULL, "\n")); )
            json_array_append_new (notes, ctl_export_json_text (note, strlen (note)));
        json_object_set_new (object, "notes", notes);
        ctl_print_json (object);
        json_decref (object);
    }
    else
        fputs (report.data, stdout);
    rc = result == 0 ? CTL_EXIT_OK : CTL_EXIT_API;
done:
    EVP_PKEY_free (public_key);
    mesh_buf_free (&report);
    json_decref (fields);
    return rc;
}

//  Rotate ----------------------------------------------------------------------------

int
ctl_audit_rotate_key (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    int rc = ctl_parse (ctl, argc, argv, s_rotate_options, fields, NULL, 0);
    if (rc != CTL_EXIT_OK)
        goto done;
    char path [4096], id [64], why [512];
    s_file (fields, "key_file", "SEEKMESH_AUDIT_KEY_FILE", "keys", path, sizeof path);
    if (mesh_audit_keyring_rotate (path, id, sizeof id, why, sizeof why) < 0) {
        fprintf (stderr, "seekmeshctl: cannot add a key: %s\n", why);
        rc = CTL_EXIT_UNREACHABLE;
        goto done;
    }
    if (ctl->json) {
        json_t *object = json_pack ("{ss ss}", "key_id", id, "key_file", path);
        ctl_print_json (object);
        json_decref (object);
    }
    else
        printf ("%s\n", id);
done:
    json_decref (fields);
    return rc;
}

//  Selftest ----------------------------------------------------------------------------

void
ctl_audit_test (bool verbose)
{
    (void) verbose;
    int64_t now = 1780000000000LL;      //  2026-05-28T20:26:40Z
    assert (s_parse_time ("90s", now) == now - 90000);
    assert (s_parse_time ("30m", now) == now - 1800000);
    assert (s_parse_time ("1h", now) == now - 3600000);
    assert (s_parse_time ("2d", now) == now - 2 * 86400000LL);
    assert (s_parse_time ("1w", now) == now - 7 * 86400000LL);
    assert (s_parse_time ("2026-05-28", now) == 1779926400000LL);
    assert (s_parse_time ("2026-05-28T20:26", now) == 1780000000000LL - 40000);
    assert (s_parse_time ("2026-05-28T20:26:40Z", now) == now);
    assert (s_parse_time ("2026-05-28 20:26:40.25", now) == now + 250);
    assert (s_parse_time ("2026-05-28T22:26:40+02:00", now) == now);
    assert (s_parse_time ("2026-05-28T18:26:40.123456-02:00", now) == now + 123);
    const char *bad [] = { "", "h", "1", "1y", "-1h", "1.5h", "99999999999999999999d", "2026-5-28",
                           "2026-02-30", "2026-05-28T25:00", "2026-05-28T10", "2026-05-28x",
                           "2026-05-28T10:00+2", "2026-05-28T10:00:00." };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++)
        assert (s_parse_time (bad [i], now) == -1);

    //  What --decrypt shows: messages, stream deltas, a completion, errors
    mesh_buf_t text, reasoning;
    mesh_buf_init (&text);
    mesh_buf_init (&reasoning);
    const char *request = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief\"},"
                          "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
                          "{\"type\":\"image_url\"}]}]}";
    s_prompt_text (request, strlen (request), &text);
    mesh_buf_append (&text, "", 1);
    assert (mesh_streq (text.data, "[system] Be brief\n[user] hi[image_url]"));
    mesh_buf_reset (&text);
    s_prompt_text ("not json", 8, &text);
    assert (text.len == 8 && memcmp (text.data, "not json", 8) == 0);
    mesh_buf_reset (&text);
    const char *stream = "{\"id\":\"c\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                         "\"message\":{\"role\":\"assistant\",\"content\":\"Echo: hi\","
                         "\"reasoning_content\":\"Thinking\",\"tool_calls\":[{\"index\":0,"
                         "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                         "\"finish_reason\":\"stop\"}],\"errors\":[{\"error\":{\"message\":\"stalled\"}},"
                         "\"raw\"]}";
    s_response_text (stream, strlen (stream), &text, &reasoning);
    mesh_buf_append (&text, "", 1);
    mesh_buf_append (&reasoning, "", 1);
    assert (mesh_streq (text.data, "Echo: hi [tool call f({})] [error: stalled] [error: raw]"));
    assert (mesh_streq (reasoning.data, "Thinking"));
    mesh_buf_reset (&text);
    mesh_buf_reset (&reasoning);
    const char *body = "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"Echo: hi\","
                       "\"reasoning_content\":\"R\"}}]}";
    s_response_text (body, strlen (body), &text, &reasoning);
    mesh_buf_append (&text, "", 1);
    assert (mesh_streq (text.data, "Echo: hi") && reasoning.len == 1);
    mesh_buf_reset (&text);
    const char *error = "{\"error\":{\"message\":\"Rate limit\",\"type\":\"rate_limit_error\"}}";
    s_response_text (error, strlen (error), &text, &reasoning);
    mesh_buf_append (&text, "", 1);
    assert (mesh_streq (text.data, "[error: Rate limit]"));
    mesh_buf_reset (&text);
    s_response_text (NULL, 0, &text, &reasoning);
    assert (text.len == 0);
    mesh_buf_free (&text);
    mesh_buf_free (&reasoning);

    //  query --json keeps UTF-8 text (it replaced every byte >= 0x80 once)
    //  and replaces only the bytes that are not UTF-8, as the export does
    mesh_audit_query_row_t row = {
        .seq = 1, .file = "audit-2026-05-28.db", .enc_key_id = "k1", .decrypted = true,
        .record = { .id = { "0123456789abcdefghijklmnop", 26 },
                    .tenant = { "\xc3\xa9quipe", 7 },
                    .prompt = { "{\"content\":\"\xe4\xbd\xa0\xe5\xa5\xbd \xff\"}", 22 },
                    .response = { "caf\xc3\xa9", 5 }, .params = { "{}", 2 } } };
    json_t *object = s_row_json (&row, true);
    assert (mesh_streq (json_string_value (json_object_get (object, "tenant")), "\xc3\xa9quipe"));
    assert (mesh_streq (json_string_value (json_object_get (object, "prompt")),
                        "{\"content\":\"\xe4\xbd\xa0\xe5\xa5\xbd \xef\xbf\xbd\"}"));
    assert (mesh_streq (json_string_value (json_object_get (object, "response")), "caf\xc3\xa9"));
    json_t *same = ctl_export_json_text (row.record.prompt.data, row.record.prompt.size);
    assert (json_equal (same, json_object_get (object, "prompt")));
    json_decref (same);
    json_decref (object);
}
