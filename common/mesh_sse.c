/*  mesh_sse: incremental event-stream parser.                               */
#include "mesh_sse.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void
mesh_sse_init (mesh_sse_t *self, size_t max_event_bytes)
{
    memset (self, 0, sizeof *self);
    self->max_event_bytes = max_event_bytes;
}

void
mesh_sse_reset (mesh_sse_t *self)
{
    mesh_buf_reset (&self->line);
    mesh_buf_reset (&self->data);
    self->has_data = false;
    self->skip_lf = false;
}

void
mesh_sse_free (mesh_sse_t *self)
{
    mesh_buf_free (&self->line);
    mesh_buf_free (&self->data);
}

//  Processes one complete line (without its line ending).
static int
s_line (mesh_sse_t *self, const char *line, size_t len, mesh_sse_fn *fn, void *arg)
{
    if (len == 0) {
        //  Blank line: dispatch the event, if it has data
        if (!self->has_data)
            return 0;
        size_t size = mesh_buf_size (&self->data);
        //  The data buffer ends with the LF of the last data line
        int rc = fn (arg, MESH_SSE_DATA, mesh_buf_head (&self->data), size ? size - 1 : 0);
        mesh_buf_reset (&self->data);
        self->has_data = false;
        return rc;
    }
    if (line [0] == ':') {
        const char *text = line + 1;
        size_t text_len = len - 1;
        if (text_len && *text == ' ') {
            text++;
            text_len--;
        }
        return fn (arg, MESH_SSE_COMMENT, text, text_len);
    }
    const char *colon = memchr (line, ':', len);
    size_t name_len = colon ? (size_t) (colon - line) : len;
    if (!mesh_memeq (line, name_len, "data"))
        return 0;                           //  event:, id:, retry:, unknown
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = (size_t) (line + len - value);
    if (value_len && *value == ' ') {
        value++;
        value_len--;
    }
    if (mesh_buf_size (&self->data) + value_len + 1 > self->max_event_bytes)
        return -1;
    mesh_buf_append (&self->data, value, value_len);
    mesh_buf_append (&self->data, "\n", 1);
    self->has_data = true;
    return 0;
}

int
mesh_sse_feed (mesh_sse_t *self, const char *data, size_t len, mesh_sse_fn *fn, void *arg)
{
    const char *at = data, *end = data + len;
    if (self->skip_lf && at < end) {
        if (*at == '\n')
            at++;
        self->skip_lf = false;
    }
    while (at < end) {
        //  Next line ending: CR, LF or CRLF
        const char *eol = at;
        while (eol < end && *eol != '\n' && *eol != '\r')
            eol++;
        if (eol == end) {
            //  Partial line: keep it for the next feed
            if (mesh_buf_size (&self->line) + (size_t) (end - at) > self->max_event_bytes)
                return -1;
            mesh_buf_append (&self->line, at, (size_t) (end - at));
            return 0;
        }
        int rc;
        if (mesh_buf_size (&self->line) + (size_t) (eol - at) > self->max_event_bytes)
            return -1;          //  a line over the limit, cut or not
        if (mesh_buf_size (&self->line)) {
            mesh_buf_append (&self->line, at, (size_t) (eol - at));
            rc = s_line (self, mesh_buf_head (&self->line), mesh_buf_size (&self->line), fn, arg);
            mesh_buf_reset (&self->line);
        }
        else
            rc = s_line (self, at, (size_t) (eol - at), fn, arg);
        if (rc < 0)
            return -1;
        if (*eol == '\r') {
            if (eol + 1 < end) {
                if (eol [1] == '\n')
                    eol++;
            }
            else
                self->skip_lf = true;       //  LF may open the next feed
        }
        at = eol + 1;
    }
    return 0;
}

//  Selftest -----------------------------------------------------------------

typedef struct {
    char log [1024];
    size_t len;
    int events;
} test_log_t;

static int
s_test_event (void *arg, int kind, const char *data, size_t len)
{
    test_log_t *log = arg;
    log->len += (size_t) snprintf (log->log + log->len, sizeof log->log - log->len, "%s[%.*s]",
                                   kind == MESH_SSE_DATA ? "D" : "C", (int) len, data);
    log->events++;
    return 0;
}

void
mesh_sse_test (bool verbose)
{
    (void) verbose;
    const char *stream =
        ": keep-alive\n\n"
        "data: {\"a\":1}\n\n"
        "event: message\r\nid: 7\r\ndata: line one\r\ndata:line two\r\n\r\n"
        "data: {\"b\":2}\r\r"
        "retry: 10\n\n"                 //  no data: not an event
        "data\n\n"                      //  empty data: an event with ""
        "data: [DONE]\n\n";
    const char *expect = "C[keep-alive]D[{\"a\":1}]D[line one\nline two]D[{\"b\":2}]D[]D[[DONE]]";
    size_t total = strlen (stream);
    //  Whatever the cut points, the same events come out
    for (size_t step = 1; step <= total; step++) {
        mesh_sse_t sse;
        mesh_sse_init (&sse, 4096);
        test_log_t log = { .len = 0 };
        for (size_t at = 0; at < total; at += step)
            assert (mesh_sse_feed (&sse, stream + at, MESH_MIN (step, total - at),
                                   s_test_event, &log) == 0);
        assert (strcmp (log.log, expect) == 0);
        mesh_sse_free (&sse);
    }
    //  An over-long event fails the stream
    mesh_sse_t sse;
    mesh_sse_init (&sse, 16);
    test_log_t log = { .len = 0 };
    assert (mesh_sse_feed (&sse, "data: 0123456789abcdefghij\n\n", 28, s_test_event, &log) == -1);
    mesh_sse_reset (&sse);
    assert (mesh_sse_feed (&sse, "data: 0123456789", 16, s_test_event, &log) == 0);
    assert (mesh_sse_feed (&sse, "abcdefghij", 10, s_test_event, &log) == -1);
    //  A long comment line is refused whether it comes whole or cut
    mesh_sse_reset (&sse);
    assert (mesh_sse_feed (&sse, ": 0123456789abcdefghij\n\n", 24, s_test_event, &log) == -1);
    mesh_sse_free (&sse);
}
