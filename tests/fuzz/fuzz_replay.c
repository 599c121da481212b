/*  fuzz_replay: mock_replay_parse on arbitrary text (seekmesh-mock's
    mock.replay_file), then every recording looked up again.

    Property: no crash, leak or UB; a refused file says why, naming the
    file; every recording kept has a prompt and exactly one answer (text,
    or a tool call with a name and arguments); a lookup of its prompt
    (before any tool message, or after one holding its after_tool text)
    finds a recording of that same prompt.                                  */
#include "fuzz.h"
#include "mock/mock_replay.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char error [512] = "";
    mock_replay_t *replay = mock_replay_parse ((const char *) data, size, "fuzz.json",
                                               error, sizeof error);
    if (!replay) {
        FUZZ_ASSERT (strncmp (error, "fuzz.json: ", 11) == 0 && memchr (error, 0, sizeof error));
        return 0;
    }
    for (size_t i = 0; i < mock_replay_size (replay); i++) {
        const mock_replay_entry_t *entry = mock_replay_at (replay, i);
        FUZZ_ASSERT (entry->prompt);
        FUZZ_ASSERT ((entry->content != NULL) != (entry->tool_name != NULL));
        if (entry->tool_name)
            FUZZ_ASSERT (entry->tool_name_len > 0 && entry->tool_args);
        const mock_replay_entry_t *found =
            mock_replay_find (replay, entry->prompt, entry->prompt_len, entry->after_tool,
                              entry->after_tool_len);
        FUZZ_ASSERT (found && found->prompt_len == entry->prompt_len
                     && memcmp (found->prompt, entry->prompt, entry->prompt_len) == 0);
    }
    mock_replay_destroy (&replay);
    FUZZ_ASSERT (replay == NULL);
    return 0;
}
