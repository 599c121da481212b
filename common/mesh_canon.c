/*  mesh_canon: see mesh_canon.h.

    The parse builds a tree of nodes in an array (the arena); a string
    whose text had escapes is decoded into the scratch buffer, others point
    into the input.  Writing sorts each object's members, drops the
    duplicates jansson would overwrite, and escapes strings and spells
    numbers the way jansson's dump does.                                     */
#include "mesh_canon.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_OBJECT, N_ARRAY, N_STRING, N_INTEGER, N_REAL, N_TRUE, N_FALSE, N_NULL };

typedef struct {
    uint8_t kind;
    bool in_scratch;            //  text is an offset into scratch (decoded)
    bool key_in_scratch;
    uint32_t count;             //  members or elements
    uint32_t first;             //  first child's node index
    uint32_t next;              //  next sibling, 0 for none (node 0 is the root)
    uint32_t order;             //  position among its siblings
    size_t text;                //  string: offset or pointer; number: input offset
    size_t text_len;
    size_t key;                 //  a member's name, like text
    size_t key_len;
    double real;
    int64_t integer;
} node_t;

struct mesh_canon_t {
    node_t *nodes;
    size_t count;
    size_t cap;
    mesh_buf_t scratch;         //  decoded strings
    const char *input;
    const char *at, *end;
    uint32_t *order;            //  members being written, sorted: a stack
    size_t order_top;
    size_t order_cap;
    char *why;
    size_t why_size;
};

mesh_canon_t *
mesh_canon_new (void)
{
    mesh_canon_t *self = calloc (1, sizeof *self);
    assert (self);
    mesh_buf_init (&self->scratch);
    return self;
}

void
mesh_canon_destroy (mesh_canon_t **self_p)
{
    assert (self_p);
    mesh_canon_t *self = *self_p;
    if (!self)
        return;
    free (self->nodes);
    free (self->order);
    mesh_buf_free (&self->scratch);
    free (self);
    *self_p = NULL;
}

//  Parsing ------------------------------------------------------------------

static int
s_fail (mesh_canon_t *self, const char *what)
{
    return mesh_fail (self->why, self->why_size, "%s at byte %zu", what,
                      (size_t) (self->at - self->input));
}

static uint32_t
s_node (mesh_canon_t *self, int kind)
{
    if (self->count == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->nodes = realloc (self->nodes, self->cap * sizeof *self->nodes);
        assert (self->nodes);
    }
    node_t *node = &self->nodes [self->count];
    memset (node, 0, sizeof *node);
    node->kind = (uint8_t) kind;
    return (uint32_t) self->count++;
}

static void
s_space (mesh_canon_t *self)
{
    while (self->at < self->end
       && (*self->at == ' ' || *self->at == '\t' || *self->at == '\n' || *self->at == '\r'))
        self->at++;
}

//  A string at self->at (its opening quote): *text and *len are its UTF-8,
//  in the input when it has no escape, else decoded into scratch (then
//  *in_scratch is set and *text is an offset)
static int
s_string (mesh_canon_t *self, size_t *text, size_t *len, bool *in_scratch)
{
    const char *start = ++self->at;
    const char *p = start;
    bool escaped = false;
    //  Find the end, checking what jansson checks
    while (true) {
        if (p >= self->end)
            return s_fail (self, "unterminated string");
        unsigned char c = (unsigned char) *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return s_fail (self, "control character in a string");
        if (c == '\\') {
            escaped = true;
            if (p + 1 >= self->end)
                return s_fail (self, "unterminated string");
            p += 2;
            continue;
        }
        p++;
    }
    if (!mesh_utf8_valid (start, (size_t) (p - start)))
        return s_fail (self, "invalid UTF-8 in a string");
    self->at = p + 1;
    if (!escaped) {
        *text = (size_t) (start - self->input);
        *len = (size_t) (p - start);
        *in_scratch = false;
        return 0;
    }
    size_t at = self->scratch.len;
    for (const char *q = start; q < p; ) {
        if (*q != '\\') {
            const char *run = q;
            while (q < p && *q != '\\')
                q++;
            mesh_buf_append (&self->scratch, run, (size_t) (q - run));
            continue;
        }
        char e = q [1];
        q += 2;
        const char *simple = strchr ("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded [] = "\"\\/\b\f\n\r\t";
            mesh_buf_append (&self->scratch, &decoded [simple - "\"\\/bfnrt"], 1);
            continue;
        }
        if (e != 'u' || p - q < 4)
            return s_fail (self, "invalid escape");
        int cp = mesh_hex4 (q);
        if (cp < 0)
            return s_fail (self, "invalid escape");
        q += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            int low = p - q >= 6 && q [0] == '\\' && q [1] == 'u' ? mesh_hex4 (q + 2) : -1;
            if (low < 0xdc00 || low > 0xdfff)
                return s_fail (self, "invalid Unicode escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            q += 6;
        }
        else
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return s_fail (self, "invalid Unicode escape");
        else
        if (cp == 0)
            return s_fail (self, "\\u0000 is not allowed");
        mesh_buf_append_utf8 (&self->scratch, (uint32_t) cp);
    }
    *text = at;
    *len = self->scratch.len - at;
    *in_scratch = true;
    return 0;
}

static bool
s_digit (const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static int
s_number (mesh_canon_t *self, uint32_t index)
{
    const char *start = self->at, *p = start;
    bool real = false;
    if (p < self->end && *p == '-')
        p++;
    if (!s_digit (p, self->end))
        return s_fail (self, "invalid number");
    if (*p == '0') {
        p++;
        if (s_digit (p, self->end))
            return s_fail (self, "invalid number");
    }
    else
        while (s_digit (p, self->end))
            p++;
    if (p < self->end && *p == '.') {
        real = true;
        p++;
        if (!s_digit (p, self->end))
            return s_fail (self, "invalid number");
        while (s_digit (p, self->end))
            p++;
    }
    if (p < self->end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < self->end && (*p == '+' || *p == '-'))
            p++;
        if (!s_digit (p, self->end))
            return s_fail (self, "invalid number");
        while (s_digit (p, self->end))
            p++;
    }
    //  strtoll and strtod want a terminated string
    char small [64];
    size_t len = (size_t) (p - start);
    char *text = len < sizeof small ? small : malloc (len + 1);
    assert (text);
    memcpy (text, start, len);
    text [len] = 0;
    node_t *node = &self->nodes [index];
    errno = 0;
    bool range = false;
    if (!real) {
        node->kind = N_INTEGER;
        node->integer = strtoll (text, NULL, 10);
        range = errno == ERANGE;
    }
    else {
        node->kind = N_REAL;
        node->real = strtod (text, NULL);
        range = errno == ERANGE && isinf (node->real);
    }
    if (text != small)
        free (text);
    if (range)
        return s_fail (self, real ? "real number overflow" : "integer out of range");
    self->at = p;
    return 0;
}

static int s_value (mesh_canon_t *self, uint32_t index, int depth);

static bool
s_literal (mesh_canon_t *self, const char *word)
{
    size_t len = strlen (word);
    if ((size_t) (self->end - self->at) < len || memcmp (self->at, word, len) != 0)
        return false;
    self->at += len;
    return true;
}

static int
s_value (mesh_canon_t *self, uint32_t index, int depth)
{
    s_space (self);
    if (self->at >= self->end)
        return s_fail (self, "unexpected end");
    char c = *self->at;
    if (c == '{' || c == '[') {
        if (depth >= MESH_CANON_MAX_DEPTH)
            return s_fail (self, "nested too deep");
        bool object = c == '{';
        self->nodes [index].kind = object ? N_OBJECT : N_ARRAY;
        self->at++;
        s_space (self);
        if (self->at < self->end && *self->at == (object ? '}' : ']')) {
            self->at++;
            return 0;
        }
        uint32_t last = 0;
        while (true) {
            uint32_t child = s_node (self, N_NULL);
            if (object) {
                s_space (self);
                if (self->at >= self->end || *self->at != '"')
                    return s_fail (self, "expected a member name");
                size_t key, key_len;
                bool in_scratch;
                if (s_string (self, &key, &key_len, &in_scratch) < 0)
                    return -1;
                node_t *node = &self->nodes [child];
                node->key = key;
                node->key_len = key_len;
                node->key_in_scratch = in_scratch;
                s_space (self);
                if (self->at >= self->end || *self->at != ':')
                    return s_fail (self, "expected ':'");
                self->at++;
            }
            if (s_value (self, child, depth + 1) < 0)
                return -1;
            node_t *parent = &self->nodes [index];
            self->nodes [child].order = parent->count;
            if (parent->count++ == 0)
                parent->first = child;
            else
                self->nodes [last].next = child;
            last = child;
            s_space (self);
            if (self->at < self->end && *self->at == ',') {
                self->at++;
                continue;
            }
            if (self->at < self->end && *self->at == (object ? '}' : ']')) {
                self->at++;
                return 0;
            }
            return s_fail (self, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == '"') {
        node_t *node = &self->nodes [index];
        node->kind = N_STRING;
        size_t text, len;
        bool in_scratch;
        if (s_string (self, &text, &len, &in_scratch) < 0)
            return -1;
        node = &self->nodes [index];
        node->text = text;
        node->text_len = len;
        node->in_scratch = in_scratch;
        return 0;
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return s_number (self, index);
    if (s_literal (self, "true"))
        self->nodes [index].kind = N_TRUE;
    else
    if (s_literal (self, "false"))
        self->nodes [index].kind = N_FALSE;
    else
    if (s_literal (self, "null"))
        self->nodes [index].kind = N_NULL;
    else
        return s_fail (self, "invalid value");
    return 0;
}

int
mesh_canon_parse (mesh_canon_t *self, const char *data, size_t len, char *why, size_t why_size)
{
    self->count = 0;
    mesh_buf_reset (&self->scratch);
    self->input = data ? data : "";
    self->at = self->input;
    self->end = self->input + (data ? len : 0);
    self->why = why;
    self->why_size = why_size;
    uint32_t root = s_node (self, N_NULL);
    s_space (self);
    if (self->at >= self->end || *self->at != '{')
        return s_fail (self, "not a JSON object");
    if (s_value (self, root, 0) < 0) {
        self->count = 0;
        return -1;
    }
    s_space (self);
    if (self->at != self->end) {
        s_fail (self, "text after the object");
        self->count = 0;
        return -1;
    }
    return 0;
}

//  Reading the tree -----------------------------------------------------------

static const char *
s_text_of (mesh_canon_t *self, size_t text, bool in_scratch)
{
    return in_scratch ? self->scratch.data + text : self->input + text;
}

static const char *
s_key (mesh_canon_t *self, const node_t *node)
{
    return s_text_of (self, node->key, node->key_in_scratch);
}

static bool
s_key_is (mesh_canon_t *self, const node_t *node, const char *name)
{
    return mesh_memeq (s_key (self, node), node->key_len, name);
}

//  The member of object named name that jansson keeps (the last), or NULL
static node_t *
s_member (mesh_canon_t *self, const node_t *object, const char *name)
{
    node_t *found = NULL;
    if (object->kind != N_OBJECT)
        return NULL;
    for (uint32_t i = 0, at = object->first; i < object->count; i++, at = self->nodes [at].next)
        if (s_key_is (self, &self->nodes [at], name))
            found = &self->nodes [at];
    return found;
}

bool
mesh_canon_number (mesh_canon_t *self, const char *name, double *value)
{
    if (self->count == 0)
        return false;
    node_t *node = s_member (self, &self->nodes [0], name);
    if (!node || (node->kind != N_INTEGER && node->kind != N_REAL))
        return false;
    *value = node->kind == N_INTEGER ? (double) node->integer : node->real;
    return true;
}

static bool
s_string_is (mesh_canon_t *self, const node_t *node, const char *value)
{
    return node && node->kind == N_STRING
        && mesh_memeq (s_text_of (self, node->text, node->in_scratch), node->text_len, value);
}

bool
mesh_canon_last_user (mesh_canon_t *self, mesh_buf_t *text)
{
    if (self->count == 0)
        return false;
    node_t *messages = s_member (self, &self->nodes [0], "messages");
    if (!messages || messages->kind != N_ARRAY)
        return false;
    node_t *last = NULL;
    for (uint32_t i = 0, at = messages->first; i < messages->count; i++, at = self->nodes [at].next)
        if (s_string_is (self, s_member (self, &self->nodes [at], "role"), "user"))
            last = &self->nodes [at];
    if (!last)
        return false;
    node_t *content = s_member (self, last, "content");
    if (!content)
        return false;
    if (content->kind == N_STRING) {
        mesh_buf_append (text, s_text_of (self, content->text, content->in_scratch), content->text_len);
        return true;
    }
    if (content->kind != N_ARRAY)
        return false;
    bool any = false;
    for (uint32_t i = 0, at = content->first; i < content->count; i++, at = self->nodes [at].next) {
        node_t *part = &self->nodes [at];
        node_t *part_text = s_member (self, part, "text");
        if (!s_string_is (self, s_member (self, part, "type"), "text")
        ||  !part_text || part_text->kind != N_STRING)
            continue;
        if (any)
            mesh_buf_append (text, "\n", 1);
        mesh_buf_append (text, s_text_of (self, part_text->text, part_text->in_scratch),
                         part_text->text_len);
        any = true;
    }
    return any;
}

//  Writing --------------------------------------------------------------------

//  A string as jansson's dump writes it (without JSON_ENSURE_ASCII)
static void
s_write_string (mesh_buf_t *out, const char *text, size_t len)
{
    mesh_buf_append (out, "\"", 1);
    const char *run = text;
    for (const char *p = text; p < text + len; p++) {
        unsigned char c = (unsigned char) *p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        mesh_buf_append (out, run, (size_t) (p - run));
        run = p + 1;
        switch (c) {
            case '"':  mesh_buf_append (out, "\\\"", 2); break;
            case '\\': mesh_buf_append (out, "\\\\", 2); break;
            case '\b': mesh_buf_append (out, "\\b", 2); break;
            case '\f': mesh_buf_append (out, "\\f", 2); break;
            case '\n': mesh_buf_append (out, "\\n", 2); break;
            case '\r': mesh_buf_append (out, "\\r", 2); break;
            case '\t': mesh_buf_append (out, "\\t", 2); break;
            default:   mesh_buf_printf (out, "\\u%04X", c); break;
        }
    }
    mesh_buf_append (out, run, (size_t) (text + len - run));
    mesh_buf_append (out, "\"", 1);
}

//  A real as jansson writes it: %.17g, with ".0" when it would read as an
//  integer, and no '+' or leading zeros in the exponent
static void
s_write_real (mesh_buf_t *out, double value)
{
    char text [64];
    int len = snprintf (text, sizeof text - 2, "%.17g", value);
    if (len < 0)
        return;
    if (!strchr (text, '.') && !strchr (text, 'e')) {
        memcpy (text + len, ".0", 3);
        len += 2;
    }
    char *e = strchr (text, 'e');
    if (e) {
        char *start = e + 1, *digits = start;
        if (*digits == '-')
            digits++, start++;
        else
        if (*digits == '+')
            digits++;
        while (*digits == '0' && digits [1])
            digits++;
        memmove (start, digits, strlen (digits) + 1);
        len = (int) strlen (text);
    }
    mesh_buf_append (out, text, (size_t) len);
}

static int
s_by_key (const void *a, const void *b, void *arg)
{
    mesh_canon_t *self = arg;
    const node_t *x = &self->nodes [*(const uint32_t *) a];
    const node_t *y = &self->nodes [*(const uint32_t *) b];
    int diff = memcmp (s_key (self, x), s_key (self, y), MESH_MIN (x->key_len, y->key_len));
    if (diff)
        return diff;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static bool
s_dropped (mesh_canon_t *self, const node_t *node, const char *const *drop)
{
    for (size_t i = 0; drop && drop [i]; i++)
        if (s_key_is (self, node, drop [i]))
            return true;
    return false;
}

static void
s_write (mesh_canon_t *self, uint32_t index, const char *const *drop, mesh_buf_t *out)
{
    const node_t *node = &self->nodes [index];
    switch (node->kind) {
        case N_OBJECT: {
            //  The members' indexes, sorted, in a slice of the order stack
            //  (nested objects push theirs above it, and may move it)
            size_t need = node->count, base = self->order_top;
            if (base + need > self->order_cap) {
                self->order_cap = (base + need) * 2;
                self->order = realloc (self->order, self->order_cap * sizeof *self->order);
                assert (self->order);
            }
            for (uint32_t i = 0, at = node->first; i < node->count; i++, at = self->nodes [at].next)
                self->order [base + i] = at;
            if (need > 1)
                qsort_r (self->order + base, need, sizeof *self->order, s_by_key, self);
            self->order_top = base + need;
            mesh_buf_append (out, "{", 1);
            bool first = true;
            for (size_t i = 0; i < need; i++) {
                const node_t *member = &self->nodes [self->order [base + i]];
                //  A name given again: jansson keeps the last value
                if (i + 1 < need) {
                    const node_t *after = &self->nodes [self->order [base + i + 1]];
                    if (after->key_len == member->key_len
                    &&  memcmp (s_key (self, after), s_key (self, member), member->key_len) == 0)
                        continue;
                }
                if (s_dropped (self, member, drop))
                    continue;
                if (!first)
                    mesh_buf_append (out, ",", 1);
                first = false;
                s_write_string (out, s_key (self, member), member->key_len);
                mesh_buf_append (out, ":", 1);
                s_write (self, self->order [base + i], NULL, out);
            }
            mesh_buf_append (out, "}", 1);
            self->order_top = base;
            break;
        }
        case N_ARRAY:
            mesh_buf_append (out, "[", 1);
            for (uint32_t i = 0, at = node->first; i < node->count; i++, at = self->nodes [at].next) {
                if (i)
                    mesh_buf_append (out, ",", 1);
                s_write (self, at, NULL, out);
            }
            mesh_buf_append (out, "]", 1);
            break;
        case N_STRING:
            s_write_string (out, s_text_of (self, node->text, node->in_scratch), node->text_len);
            break;
        case N_INTEGER:
            mesh_buf_printf (out, "%lld", (long long) node->integer);
            break;
        case N_REAL:
            s_write_real (out, node->real);
            break;
        case N_TRUE:
            mesh_buf_append (out, "true", 4);
            break;
        case N_FALSE:
            mesh_buf_append (out, "false", 5);
            break;
        default:
            mesh_buf_append (out, "null", 4);
            break;
    }
}

void
mesh_canon_write (mesh_canon_t *self, const char *const *drop, mesh_buf_t *out)
{
    self->order_top = 0;
    if (self->count)
        s_write (self, 0, drop, out);
}

//  Selftest -------------------------------------------------------------------

static void
s_expect (mesh_canon_t *canon, const char *text, const char *const *drop, const char *want)
{
    mesh_buf_t out;
    mesh_buf_init (&out);
    char why [128];
    int rc = mesh_canon_parse (canon, text, strlen (text), why, sizeof why);
    if (!want) {
        assert (rc == -1 && *why);
        return;
    }
    assert (rc == 0);
    mesh_canon_write (canon, drop, &out);
    mesh_buf_append (&out, "", 1);
    if (strcmp (mesh_buf_head (&out), want) != 0) {
        fprintf (stderr, "mesh_canon: %s\n  gave %s\n  want %s\n", text, mesh_buf_head (&out), want);
        assert (false);
    }
    //  And jansson agrees
    json_t *json = json_loads (text, 0, NULL);
    assert (json);
    for (size_t i = 0; drop && drop [i]; i++)
        json_object_del (json, drop [i]);
    char *dumped = json_dumps (json, JSON_COMPACT | JSON_SORT_KEYS);
    assert (strcmp (dumped, want) == 0);
    free (dumped);
    json_decref (json);
    mesh_buf_free (&out);
}

void
mesh_canon_test (bool verbose)
{
    (void) verbose;
    mesh_canon_t *canon = mesh_canon_new ();
    static const char *const drop [] = { "user", "stream", "stream_options", NULL };
    //  Order, space, escapes and number spellings do not matter
    s_expect (canon, "{ \"b\" : 1, \"a\" : [ true , null, false ] }", NULL,
              "{\"a\":[true,null,false],\"b\":1}");
    s_expect (canon, "{\"model\":\"m\",\"stream\":true,\"user\":\"u\",\"stream_options\":{},"
              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", drop,
              "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"m\"}");
    s_expect (canon, "{\"t\":0.70,\"u\":7e-1,\"v\":1e2,\"w\":-0,\"x\":-0.0,\"y\":1.5E+300}", NULL,
              "{\"t\":0.69999999999999996,\"u\":0.69999999999999996,\"v\":100.0,\"w\":0,"
              "\"x\":-0.0,\"y\":1.5000000000000001e300}");
    s_expect (canon, "{\"s\":\"\\u0041\\/\\u00e9\\ud83d\\ude00\\u001f\\n\\\"\"}", NULL,
              "{\"s\":\"A/\xc3\xa9\xf0\x9f\x98\x80\\u001F\\n\\\"\"}");
    //  A name given twice: the last value; names sorted by their bytes
    s_expect (canon, "{\"a\":1,\"b\":{\"z\":1,\"\\u00e9\":2,\"e\":3},\"a\":2}", NULL,
              "{\"a\":2,\"b\":{\"e\":3,\"z\":1,\"\xc3\xa9\":2}}");
    s_expect (canon, "{\"user\":{\"user\":1}}", drop, "{}");
    //  What jansson refuses, refused
    const char *bad [] = {
        "", "[]", "\"x\"", "{", "{\"a\"}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":9223372036854775808}",
        "{\"a\":1e400}", "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\x01\"}", "{\"a\":tru}", "{} x", "{\"a\":[1,]}", "{\"a\":\"\\x\"}",
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++)
        s_expect (canon, bad [i], NULL, NULL);
    //  Nesting past the bound is declined (jansson would read it)
    char deep [300] = "{\"a\":";
    for (int i = 0; i < MESH_CANON_MAX_DEPTH + 1; i++)
        strcat (deep, "[");
    char why [64];
    assert (mesh_canon_parse (canon, deep, strlen (deep), why, sizeof why) == -1);

    //  What the cache reads besides
    const char *request = "{\"temperature\":0.2,\"messages\":[{\"role\":\"user\",\"content\":\"first\"},"
        "{\"role\":\"assistant\",\"content\":\"x\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"a\\nb\"},{\"type\":\"image_url\"},{\"type\":\"text\",\"text\":\"c\"}]}]}";
    assert (mesh_canon_parse (canon, request, strlen (request), why, sizeof why) == 0);
    double temperature = 0;
    assert (mesh_canon_number (canon, "temperature", &temperature) && temperature == 0.2);
    assert (!mesh_canon_number (canon, "top_p", &temperature));
    mesh_buf_t text;
    mesh_buf_init (&text);
    assert (mesh_canon_last_user (canon, &text));
    assert (mesh_memeq (mesh_buf_head (&text), mesh_buf_size (&text), "a\nb\nc"));
    mesh_buf_reset (&text);
    request = "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}";
    assert (mesh_canon_parse (canon, request, strlen (request), why, sizeof why) == 0);
    assert (!mesh_canon_last_user (canon, &text));
    mesh_buf_free (&text);
    mesh_canon_destroy (&canon);
    mesh_canon_destroy (&canon);
}
