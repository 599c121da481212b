/*  mock_replay: recorded model answers that seekmesh-mock replays.

    A recording says what a model answered to one question, so that an
    application built on the gateway (examples/analyst) can be tested end
    to end without a key: the mock gives the recorded answer instead of its
    echo.  The file (mock.replay_file) is JSON:

        {"recordings": [
          {"prompt": "How many customers are there?",
           "tool_call": {"name": "run_sql", "arguments": {"sql": "SELECT ..."}}},
          {"prompt": "How many customers are there?", "after_tool": "no such column",
           "tool_call": {"name": "run_sql", "arguments": "{\"sql\":\"SELECT ...\"}"}},
          {"prompt": "Summarise it", "after_tool": "", "content": "Sales rose."}
        ]}

    A request matches on its PROMPT (the text of its last user message,
    exactly).  Without a tool message after that user message, the first
    recording of that prompt with no "after_tool" answers; with one, the
    first recording whose "after_tool" occurs in the last tool message's
    content ("" occurs in every one): how a test gives a different answer
    to the repair round, when the tool reported an error.  An answer is
    either "content" (text) or "tool_call" (name and arguments, a JSON
    string or an object, which is sent compact).

    Loaded once at start on the main thread; read-only afterwards, so any
    worker thread may look up.                                              */
#ifndef MOCK_REPLAY_H
#define MOCK_REPLAY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *prompt;
    size_t prompt_len;
    char *after_tool;           //  NULL: answers only before any tool message
    size_t after_tool_len;
    char *content;              //  a text answer, or NULL
    size_t content_len;
    char *tool_name;            //  a tool call answer, or NULL
    size_t tool_name_len;
    char *tool_args;            //  its arguments, a JSON text
    size_t tool_args_len;
} mock_replay_entry_t;

typedef struct mock_replay_t mock_replay_t;

//  Reads a recordings file.  NULL with the reason in error (naming the
//  file and the first bad recording's field).
mock_replay_t *mock_replay_load (const char *path, char *error, size_t error_size);
//  The same from memory; name is what error messages call it.
mock_replay_t *mock_replay_parse (const char *text, size_t len, const char *name,
                                  char *error, size_t error_size);
void mock_replay_destroy (mock_replay_t **self_p);
size_t mock_replay_size (const mock_replay_t *self);
//  The recording at index (< mock_replay_size), in the file's order.
const mock_replay_entry_t *mock_replay_at (const mock_replay_t *self, size_t index);

//  The recording that answers a request whose last user message is prompt
//  and whose last tool message after it holds tool_result (NULL: no tool
//  message came after it).  NULL when none does.  Any thread.
const mock_replay_entry_t *mock_replay_find (const mock_replay_t *self,
                                             const char *prompt, size_t prompt_len,
                                             const char *tool_result, size_t tool_result_len);

void mock_replay_test (bool verbose);

#endif
