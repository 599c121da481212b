/*  mesh_jscan: see mesh_jscan.h.                                          */
#include "mesh_jscan.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void
mesh_jscan_init (mesh_jscan_t *self, const char *data, size_t len, mesh_buf_t *scratch)
{
    self->at = data;
    self->end = data + len;
    self->scratch = scratch;
}

static void
s_ws (mesh_jscan_t *self)
{
    while (self->at < self->end
       && (*self->at == ' ' || *self->at == '\t' || *self->at == '\n' || *self->at == '\r'))
        self->at++;
}

bool
mesh_jscan_eat (mesh_jscan_t *self, char c)
{
    s_ws (self);
    if (self->at < self->end && *self->at == c) {
        self->at++;
        return true;
    }
    return false;
}

bool
mesh_jscan_literal (mesh_jscan_t *self, const char *word)
{
    s_ws (self);
    size_t len = strlen (word);
    if ((size_t) (self->end - self->at) < len || memcmp (self->at, word, len) != 0)
        return false;
    self->at += len;
    return true;
}

bool
mesh_jscan_done (mesh_jscan_t *self)
{
    s_ws (self);
    return self->at == self->end;
}

//  Decoding ---------------------------------------------------------------

//  A string body decoded into out as jansson reads it; -1 where jansson
//  refuses (a bad escape, a lone surrogate, \u0000, bytes that are not
//  UTF-8)
static int
s_decode (const char *p, size_t len, mesh_buf_t *out)
{
    mesh_buf_reset (out);
    const char *end = p + len, *run = p;
    while (p < end) {
        if (*p != '\\') {
            p++;
            continue;
        }
        mesh_buf_append (out, run, (size_t) (p - run));
        if (end - p < 2)
            return -1;
        char c = p [1];
        p += 2;
        const char *plain = strchr ("\"\\/bfnrt", c);
        if (c && plain) {
            static const char map [] = "\"\\/\b\f\n\r\t";
            mesh_buf_append (out, &map [plain - "\"\\/bfnrt"], 1);
        }
        else
        if (c == 'u') {
            int unit = end - p >= 4 ? mesh_hex4 (p) : -1;
            if (unit <= 0 || (unit >= 0xdc00 && unit <= 0xdfff))
                return -1;                          //  bad, \u0000, or a lone low surrogate
            p += 4;
            uint32_t cp = (uint32_t) unit;
            if (unit >= 0xd800 && unit <= 0xdbff) {
                int low = end - p >= 6 && p [0] == '\\' && p [1] == 'u' ? mesh_hex4 (p + 2) : -1;
                if (low < 0xdc00 || low > 0xdfff)
                    return -1;
                p += 6;
                cp = 0x10000 + (((uint32_t) unit - 0xd800) << 10) + ((uint32_t) low - 0xdc00);
            }
            mesh_buf_append_utf8 (out, cp);
        }
        else
            return -1;
        run = p;
    }
    mesh_buf_append (out, run, (size_t) (end - run));
    return mesh_utf8_valid (mesh_buf_size (out) ? mesh_buf_head (out) : "", mesh_buf_size (out)) ? 0 : -1;
}

//  True when a body is plain ASCII without escapes: its own text
static bool
s_plain (const char *body, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) body [i] >= 0x80 || body [i] == '\\')
            return false;
    return true;
}

void
mesh_jscan_text (const char *body, size_t len, mesh_buf_t *scratch, const char **text,
                 size_t *text_len)
{
    if (s_plain (body, len)) {
        *text = body;
        *text_len = len;
        return;
    }
    int rc = s_decode (body, len, scratch);
    assert (rc == 0);           //  mesh_jscan_string accepted it
    *text = mesh_buf_size (scratch) ? mesh_buf_head (scratch) : "";
    *text_len = mesh_buf_size (scratch);
}

//  Values -----------------------------------------------------------------

int
mesh_jscan_string (mesh_jscan_t *self, const char **body, size_t *len)
{
    s_ws (self);
    if (self->at >= self->end || *self->at != '"')
        return -1;
    const char *start = ++self->at;
    while (self->at < self->end) {
        unsigned char c = (unsigned char) *self->at;
        if (c == '"') {
            *body = start;
            *len = (size_t) (self->at - start);
            self->at++;
            return s_plain (start, *len) ? 0 : s_decode (start, *len, self->scratch);
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            self->at++;
            if (self->at >= self->end)
                return -1;
        }
        self->at++;
    }
    return -1;
}

int
mesh_jscan_string_or_null (mesh_jscan_t *self, const char **body, size_t *len)
{
    if (mesh_jscan_literal (self, "null")) {
        *body = NULL;
        *len = 0;
        return 0;
    }
    return mesh_jscan_string (self, body, len);
}

int
mesh_jscan_key (mesh_jscan_t *self, const char **body, size_t *len)
{
    if (mesh_jscan_string (self, body, len) < 0 || memchr (*body, '\\', *len)
    ||  !mesh_jscan_eat (self, ':'))
        return -1;
    return 0;
}

//  A number as JSON writes it, short, without an exponent; *fraction when
//  it has one
static int
s_number (mesh_jscan_t *self, bool *fraction)
{
    s_ws (self);
    const char *start = self->at;
    *fraction = false;
    if (self->at < self->end && *self->at == '-')
        self->at++;
    if (self->at >= self->end || *self->at < '0' || *self->at > '9')
        return -1;
    if (*self->at == '0')
        self->at++;
    else
        while (self->at < self->end && *self->at >= '0' && *self->at <= '9')
            self->at++;
    if (self->at < self->end && *self->at == '.') {
        *fraction = true;
        self->at++;
        if (self->at >= self->end || *self->at < '0' || *self->at > '9')
            return -1;
        while (self->at < self->end && *self->at >= '0' && *self->at <= '9')
            self->at++;
    }
    if (self->at < self->end
    && (*self->at == 'e' || *self->at == 'E' || (*self->at >= '0' && *self->at <= '9')))
        return -1;
    return self->at - start <= MESH_JSCAN_NUMBER ? 0 : -1;
}

int
mesh_jscan_integer (mesh_jscan_t *self, int64_t *value)
{
    s_ws (self);
    const char *start = self->at;
    bool fraction;
    if (s_number (self, &fraction) < 0 || fraction)
        return -1;
    char digits [MESH_JSCAN_NUMBER + 1];
    memcpy (digits, start, (size_t) (self->at - start));
    digits [self->at - start] = 0;
    *value = strtoll (digits, NULL, 10);
    return 0;
}

int
mesh_jscan_skip (mesh_jscan_t *self, int max_depth)
{
    s_ws (self);
    if (self->at >= self->end || max_depth < 0)
        return -1;
    const char *body;
    size_t len;
    char c = *self->at;
    if (c == '"')
        return mesh_jscan_string (self, &body, &len);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        self->at++;
        if (mesh_jscan_eat (self, close))
            return 0;
        do {
            if (c == '{' && mesh_jscan_key (self, &body, &len) < 0)
                return -1;
            if (mesh_jscan_skip (self, max_depth - 1) < 0)
                return -1;
        } while (mesh_jscan_eat (self, ','));
        return mesh_jscan_eat (self, close) ? 0 : -1;
    }
    if (mesh_jscan_literal (self, "null") || mesh_jscan_literal (self, "true")
    ||  mesh_jscan_literal (self, "false"))
        return 0;
    bool fraction;
    return s_number (self, &fraction);
}

//  Selftest ---------------------------------------------------------------

//  Whatever the scanner accepts as a string, jansson reads as the same text
static void
s_test_string (const char *json, bool accepted, const char *want)
{
    mesh_buf_t scratch;
    mesh_buf_init (&scratch);
    mesh_jscan_t scan;
    mesh_jscan_init (&scan, json, strlen (json), &scratch);
    const char *body, *text;
    size_t len, text_len;
    int rc = mesh_jscan_string (&scan, &body, &len);
    json_t *reference = json_loads (json, JSON_DECODE_ANY, NULL);
    if (accepted) {
        assert (rc == 0 && mesh_jscan_done (&scan));
        mesh_jscan_text (body, len, &scratch, &text, &text_len);
        assert (mesh_memeq (text, text_len, want));
        assert (json_is_string (reference) && mesh_streq (json_string_value (reference), want));
    }
    else
        assert (rc < 0 && !json_is_string (reference));
    json_decref (reference);
    mesh_buf_free (&scratch);
}

void
mesh_jscan_test (bool verbose)
{
    (void) verbose;
    s_test_string ("\"plain\"", true, "plain");
    s_test_string ("\"Caf\\u00e9 \\\"q\\\"\\n\\ud83d\\ude00\"", true,
                   "Caf\xc3\xa9 \"q\"\n\xf0\x9f\x98\x80");
    s_test_string ("\" \xc3\xa9t\xc3\xa9\"", true, " \xc3\xa9t\xc3\xa9");
    s_test_string ("\"\\ud800\"", false, NULL);
    s_test_string ("\"a\\u0000b\"", false, NULL);
    s_test_string ("\"\\x\"", false, NULL);
    s_test_string ("\"\xc3\"", false, NULL);
    s_test_string ("\"tab\there\"", false, NULL);
    s_test_string ("\"open", false, NULL);

    mesh_buf_t scratch;
    mesh_buf_init (&scratch);
    mesh_jscan_t scan;
    const char *text = " {\"a\" : [1, 2.5, {\"b\":null}], \"c\":true} ";
    mesh_jscan_init (&scan, text, strlen (text), &scratch);
    assert (mesh_jscan_skip (&scan, 3) == 0 && mesh_jscan_done (&scan));
    mesh_jscan_init (&scan, text, strlen (text), &scratch);
    assert (mesh_jscan_skip (&scan, 1) < 0);            //  too deep
    const char *numbers [] = { "12", "-7", "0", "1.5", "1e3", "01", "1234567890123456", "-" };
    const int valid [] = { 1, 1, 1, 0, -1, -1, -1, -1 };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (numbers); i++) {
        int64_t value = 0;
        mesh_jscan_init (&scan, numbers [i], strlen (numbers [i]), &scratch);
        int rc = mesh_jscan_integer (&scan, &value);
        assert (valid [i] == 1 ? rc == 0 && mesh_jscan_done (&scan) : valid [i] == 0 ? rc < 0 : rc < 0 || !mesh_jscan_done (&scan));
        if (valid [i] == 1)
            assert (value == strtoll (numbers [i], NULL, 10));
    }
    const char *body;
    size_t len;
    mesh_jscan_init (&scan, "\"k\\u0065y\":1", 12, &scratch);
    assert (mesh_jscan_key (&scan, &body, &len) < 0);  //  escaped key
    mesh_jscan_init (&scan, "\"key\" :1", 8, &scratch);
    assert (mesh_jscan_key (&scan, &body, &len) == 0 && mesh_memeq (body, len, "key"));
    mesh_buf_free (&scratch);
}
