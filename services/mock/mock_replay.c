/*  mock_replay: the recordings file and the lookup of a request's answer.  */
#include "mock_replay.h"
#include "mesh_config.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mock_replay_t {
    mock_replay_entry_t *entries;
    size_t size;
};

//  A copy of [s, s + len) with a NUL after it.
static char *
s_dup (const char *s, size_t len)
{
    char *copy = malloc (len + 1);
    assert (copy);
    memcpy (copy, s, len);
    copy [len] = 0;
    return copy;
}

//  "a string", "an array", ... or "nothing" for a missing member.
static const char *
s_kind (json_t *node)
{
    return node ? mesh_json_kind (node) : "nothing";
}

static void
s_entry_free (mock_replay_entry_t *entry)
{
    free (entry->prompt);
    free (entry->after_tool);
    free (entry->content);
    free (entry->tool_name);
    free (entry->tool_args);
}

void
mock_replay_destroy (mock_replay_t **self_p)
{
    if (!*self_p)
        return;
    mock_replay_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        s_entry_free (&self->entries [i]);
    free (self->entries);
    free (self);
    *self_p = NULL;
}

size_t
mock_replay_size (const mock_replay_t *self)
{
    return self ? self->size : 0;
}

const mock_replay_entry_t *
mock_replay_at (const mock_replay_t *self, size_t index)
{
    assert (self && index < self->size);
    return &self->entries [index];
}

//  Copies the string member key of object into *out; a missing member is
//  fine unless required.  -1 with the reason for a member of another type.
static int
s_string (json_t *object, const char *key, bool required, char **out, size_t *len,
          const char *name, size_t index, char *error, size_t error_size)
{
    json_t *node = json_object_get (object, key);
    if (!node && !required)
        return 0;
    if (!json_is_string (node))
        return mesh_fail (error, error_size, "%s: recordings[%zu].%s: expected a string, got %s",
                          name, index, key, s_kind (node));
    *len = json_string_length (node);
    *out = s_dup (json_string_value (node), *len);
    return 0;
}

static int
s_entry (json_t *node, mock_replay_entry_t *entry, const char *name, size_t index,
         char *error, size_t error_size)
{
    if (!json_is_object (node))
        return mesh_fail (error, error_size, "%s: recordings[%zu]: expected an object, got %s",
                          name, index, s_kind (node));
    if (s_string (node, "prompt", true, &entry->prompt, &entry->prompt_len, name, index,
                  error, error_size) < 0
    ||  s_string (node, "after_tool", false, &entry->after_tool, &entry->after_tool_len,
                  name, index, error, error_size) < 0
    ||  s_string (node, "content", false, &entry->content, &entry->content_len, name, index,
                  error, error_size) < 0)
        return -1;
    json_t *call = json_object_get (node, "tool_call");
    if ((call != NULL) == (entry->content != NULL))
        return mesh_fail (error, error_size,
                          "%s: recordings[%zu]: needs either \"content\" or \"tool_call\"",
                          name, index);
    if (!call)
        return 0;
    if (!json_is_object (call))
        return mesh_fail (error, error_size, "%s: recordings[%zu].tool_call: expected an object, "
                          "got %s", name, index, s_kind (call));
    json_t *tool_name = json_object_get (call, "name");
    if (!json_is_string (tool_name) || json_string_length (tool_name) == 0)
        return mesh_fail (error, error_size, "%s: recordings[%zu].tool_call.name: expected "
                          "a non-empty string", name, index);
    json_t *args = json_object_get (call, "arguments");
    char *text = NULL;
    if (json_is_string (args))
        text = s_dup (json_string_value (args), json_string_length (args));
    else
    if (json_is_object (args))
        text = json_dumps (args, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text)
        return mesh_fail (error, error_size, "%s: recordings[%zu].tool_call.arguments: expected "
                          "a JSON string or an object, got %s", name, index, s_kind (args));
    entry->tool_name_len = json_string_length (tool_name);
    entry->tool_name = s_dup (json_string_value (tool_name), entry->tool_name_len);
    entry->tool_args_len = strlen (text);
    entry->tool_args = s_dup (text, entry->tool_args_len);
    free (text);
    return 0;
}

mock_replay_t *
mock_replay_parse (const char *text, size_t len, const char *name, char *error,
                   size_t error_size)
{
    json_error_t jerr;
    json_t *root = json_loadb (text, len, 0, &jerr);
    if (!root) {
        mesh_fail (error, error_size, "%s: line %d, column %d: %s", name, jerr.line,
                   jerr.column, jerr.text);
        return NULL;
    }
    mock_replay_t *self = calloc (1, sizeof *self);
    assert (self);
    json_t *recordings = json_object_get (root, "recordings");
    if (!json_is_array (recordings)) {
        mesh_fail (error, error_size, "%s: expected an object with a \"recordings\" array",
                   name);
        goto fail;
    }
    size_t count = json_array_size (recordings);
    self->entries = calloc (count ? count : 1, sizeof *self->entries);
    assert (self->entries);
    for (size_t i = 0; i < count; i++) {
        self->size = i + 1;                 //  so a failure frees this one too
        if (s_entry (json_array_get (recordings, i), &self->entries [i], name, i,
                     error, error_size) < 0)
            goto fail;
    }
    json_decref (root);
    return self;
fail:
    json_decref (root);
    mock_replay_destroy (&self);
    return NULL;
}

mock_replay_t *
mock_replay_load (const char *path, char *error, size_t error_size)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        mesh_fail (error, error_size, "%s: %s", path, strerror (errno));
        return NULL;
    }
    char *text = NULL;
    size_t size = 0;
    FILE *memory = open_memstream (&text, &size);
    assert (memory);
    char block [65536];
    size_t n;
    while ((n = fread (block, 1, sizeof block, file)) > 0)
        fwrite (block, 1, n, memory);
    bool failed = ferror (file);
    fclose (file);
    fclose (memory);
    mock_replay_t *self = NULL;
    if (failed)
        mesh_fail (error, error_size, "%s: cannot read it", path);
    else
        self = mock_replay_parse (text, size, path, error, error_size);
    free (text);
    return self;
}

const mock_replay_entry_t *
mock_replay_find (const mock_replay_t *self, const char *prompt, size_t prompt_len,
                  const char *tool_result, size_t tool_result_len)
{
    if (!self)
        return NULL;
    for (size_t i = 0; i < self->size; i++) {
        const mock_replay_entry_t *entry = &self->entries [i];
        if (entry->prompt_len != prompt_len || memcmp (entry->prompt, prompt, prompt_len) != 0)
            continue;
        if (!tool_result) {
            if (!entry->after_tool)
                return entry;
        }
        else
        if (entry->after_tool
        && (entry->after_tool_len == 0
        ||  memmem (tool_result, tool_result_len, entry->after_tool, entry->after_tool_len)))
            return entry;
    }
    return NULL;
}

//  Selftest -----------------------------------------------------------------

void
mock_replay_test (bool verbose)
{
    (void) verbose;
    char error [256];
    const char *text =
        "{\"recordings\":["
        "{\"prompt\":\"How many?\",\"tool_call\":{\"name\":\"run_sql\","
        "\"arguments\":{\"sql\":\"SELECT nope\",\"z\":1}}},"
        "{\"prompt\":\"How many?\",\"after_tool\":\"no such column\","
        "\"tool_call\":{\"name\":\"run_sql\",\"arguments\":\"{\\\"sql\\\":\\\"SELECT 1\\\"}\"}},"
        "{\"prompt\":\"How many?\",\"after_tool\":\"\",\"content\":\"One.\"},"
        "{\"prompt\":\"Hi \\u00e9\",\"content\":\"Hello\"}]}";
    mock_replay_t *replay = mock_replay_parse (text, strlen (text), "r.json", error, sizeof error);
    assert (replay);
    assert (mock_replay_size (replay) == 4);
    assert (mesh_streq (mock_replay_at (replay, 3)->content, "Hello"));

    //  Before any tool message: the recording without after_tool, its
    //  object arguments sent compact in their order
    const mock_replay_entry_t *entry = mock_replay_find (replay, "How many?", 9, NULL, 0);
    assert (entry && mesh_streq (entry->tool_name, "run_sql"));
    assert (mesh_streq (entry->tool_args, "{\"sql\":\"SELECT nope\",\"z\":1}"));
    //  After a tool message holding the error: the repair; any other: ""
    const char *failed = "{\"error\":\"no such column: x\"}";
    entry = mock_replay_find (replay, "How many?", 9, failed, strlen (failed));
    assert (entry && mesh_streq (entry->tool_args, "{\"sql\":\"SELECT 1\"}"));
    entry = mock_replay_find (replay, "How many?", 9, "[[3]]", 5);
    assert (entry && mesh_streq (entry->content, "One."));
    //  Exact prompts only; none after a tool message without after_tool
    assert (!mock_replay_find (replay, "How many", 8, NULL, 0));
    assert (!mock_replay_find (replay, "how many?", 9, NULL, 0));
    assert (mock_replay_find (replay, "Hi \xc3\xa9", 5, NULL, 0));
    assert (!mock_replay_find (replay, "Hi \xc3\xa9", 5, "x", 1));
    assert (!mock_replay_find (NULL, "Hi", 2, NULL, 0));
    mock_replay_destroy (&replay);
    mock_replay_destroy (&replay);

    //  Refusals name the recording and the field
    struct { const char *text; const char *says; } bad [] = {
        { "{\"recordings\":", "line 1" },
        { "[]", "\"recordings\" array" },
        { "{\"recordings\":[7]}", "recordings[0]: expected an object" },
        { "{\"recordings\":[{\"content\":\"x\"}]}", "recordings[0].prompt: expected a string" },
        { "{\"recordings\":[{\"prompt\":\"p\"}]}", "either \"content\" or \"tool_call\"" },
        { "{\"recordings\":[{\"prompt\":\"p\",\"content\":\"x\",\"tool_call\":{}}]}", "either" },
        { "{\"recordings\":[{\"prompt\":\"p\",\"content\":\"x\"},{\"prompt\":\"p\","
          "\"tool_call\":{\"name\":\"\"}}]}", "recordings[1].tool_call.name" },
        { "{\"recordings\":[{\"prompt\":\"p\",\"tool_call\":{\"name\":\"f\",\"arguments\":[1]}}]}",
          "recordings[0].tool_call.arguments" },
        { "{\"recordings\":[{\"prompt\":\"p\",\"after_tool\":1,\"content\":\"x\"}]}",
          "recordings[0].after_tool" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        error [0] = 0;
        assert (!mock_replay_parse (bad [i].text, strlen (bad [i].text), "r.json", error,
                                    sizeof error));
        if (!strstr (error, bad [i].says) || strncmp (error, "r.json: ", 8) != 0) {
            fprintf (stderr, "mock_replay: \"%s\" does not say \"%s\"\n", error, bad [i].says);
            assert (false);
        }
    }
    assert (!mock_replay_load ("/nonexistent/replay.json", error, sizeof error));
    assert (strstr (error, "/nonexistent/replay.json: "));
}
