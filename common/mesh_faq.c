/*  mesh_faq: see mesh_faq.h.

    The set keeps its entries in the order they came, an index by id, and
    indexes rebuilt after a change (changes are rare, matches are not): the
    exact entries by tenant, model and normalised question, and per tenant
    the keyword and regex entries in the order they are tried.              */
#include "mesh_faq.h"
#include "mesh_map.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mesh_faq_entry_t {
    char id [MESH_FAQ_ID_BYTES + 1];
    char *tenant;
    char *model;                //  "" for every model
    mesh_faq_kind_t kind;
    char *question;             //  exact: as given; regex: the pattern
    char *normalised;           //  exact: the question normalised
    char **keywords;            //  as given
    char **keywords_normal;     //  normalised
    size_t keyword_count;
    regex_t regex;
    bool compiled;
    char *answer;
    int64_t created_ms;
    size_t order;               //  in the set
};

typedef struct {
    char *name;
    size_t any_model;           //  entries for every model
    mesh_map_t *models;         //  model -> entries for it (a count, as a pointer)
    mesh_faq_entry_t **tried;   //  keywords then regex entries, in matching order
    size_t tried_count;
} tenant_t;

struct mesh_faq_t {
    mesh_faq_entry_t **entries;
    size_t count;
    size_t cap;
    size_t next_order;
    mesh_map_t *by_id;
    bool dirty;                 //  the indexes below need rebuilding
    mesh_map_t *exact;          //  "tenant\x1fmodel\x1fnormalised" -> entry
    char **exact_keys;
    size_t exact_count;
    mesh_map_t *tenants;        //  name -> tenant_t
    mesh_buf_t scratch;
};

//  Normalising ----------------------------------------------------------------

//  The next code point of [p, end) and its length; a byte that does not
//  start a well-formed character is U+FFFD of length 1
static uint32_t
s_next (const unsigned char *p, const unsigned char *end, size_t *len)
{
    uint32_t c = p [0];
    size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
    if (n == 0) {
        *len = 1;
        return c;
    }
    if (n == 9 || (size_t) (end - p) <= n) {
        *len = 1;
        return 0xfffd;
    }
    uint32_t cp = c & (0x3f >> n);
    for (size_t k = 1; k <= n; k++) {
        if ((p [k] & 0xc0) != 0x80) {
            *len = 1;
            return 0xfffd;
        }
        cp = cp << 6 | (p [k] & 0x3f);
    }
    static const uint32_t least [] = { 0, 0x80, 0x800, 0x10000 };
    if (cp < least [n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        *len = 1;                   //  overlong, past Unicode, a surrogate
        return 0xfffd;
    }
    *len = n + 1;
    return cp;
}

enum { C_KEEP, C_SPACE, C_IGNORE };

//  What a code point is to the normaliser; *cp may be changed (folded)
static int
s_class (uint32_t *cp)
{
    uint32_t c = *cp;
    if (c >= 0xff01 && c <= 0xff5e)             //  full-width ASCII
        c = *cp = c - 0xfee0;
    if (c < 0x80) {
        if (c >= 'A' && c <= 'Z') {
            *cp = c + 32;
            return C_KEEP;
        }
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? C_KEEP : C_SPACE;
    }
    if (c >= 0xc0 && c <= 0xde && c != 0xd7) {  //  Latin-1 capitals
        *cp = c + 32;
        return C_KEEP;
    }
    if ((c >= 0x200b && c <= 0x200d) || c == 0x2060 || c == 0xfeff)
        return C_IGNORE;
    if ((c >= 0x80 && c <= 0xbf) || c == 0xd7 || c == 0xf7 || c == 0x1680
    ||  (c >= 0x2000 && c <= 0x206f) || (c >= 0x3000 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011)
    ||  (c >= 0x3014 && c <= 0x301f) || (c >= 0xfe10 && c <= 0xfe19) || (c >= 0xfe30 && c <= 0xfe4f)
    ||  (c >= 0xff5f && c <= 0xff65) || c == 0xfffd)
        return C_SPACE;
    return C_KEEP;
}

static void
s_put (mesh_buf_t *out, uint32_t cp)
{
    char bytes [4];
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n == 1)
        bytes [0] = (char) cp;
    else {
        for (size_t k = n - 1; k > 0; k--) {
            bytes [k] = (char) (0x80 | (cp & 0x3f));
            cp >>= 6;
        }
        bytes [0] = (char) ((n == 2 ? 0xc0 : n == 3 ? 0xe0 : 0xf0) | cp);
    }
    mesh_buf_append (out, bytes, n);
}

void
mesh_faq_normalise (const char *text, size_t len, mesh_buf_t *out)
{
    mesh_buf_reset (out);
    mesh_buf_reserve (out, len + 1);        //  never a NULL head, even empty
    const unsigned char *p = (const unsigned char *) text, *end = p + len;
    bool space = false;
    while (p < end) {
        size_t n;
        uint32_t cp = s_next (p, end, &n);
        p += n;
        int kind = s_class (&cp);
        if (kind == C_IGNORE)
            continue;
        if (kind == C_SPACE) {
            space = mesh_buf_size (out) > 0;
            continue;
        }
        if (space)
            mesh_buf_append (out, " ", 1);
        space = false;
        s_put (out, cp);
    }
}

static char *
s_normal (const char *text)
{
    mesh_buf_t out;
    mesh_buf_init (&out);
    mesh_faq_normalise (text, strlen (text), &out);
    mesh_buf_append (&out, "", 1);
    char *copy = strdup (mesh_buf_head (&out));
    mesh_buf_free (&out);
    assert (copy);
    return copy;
}

static bool
s_alnum (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

//  True when keyword (normalised) occurs in text (normalised), as a word
//  at an edge that is a letter or digit
static bool
s_contains (const char *text, size_t len, const char *keyword)
{
    size_t klen = strlen (keyword);
    if (klen == 0 || klen > len)
        return false;
    for (const char *at = text; (at = memmem (at, len - (size_t) (at - text), keyword, klen)); at++) {
        bool start_ok = !s_alnum (keyword [0]) || at == text || !s_alnum (at [-1]);
        const char *after = at + klen;
        bool end_ok = !s_alnum (keyword [klen - 1]) || after == text + len || !s_alnum (*after);
        if (start_ok && end_ok)
            return true;
        if ((size_t) (at - text) + klen >= len)
            break;
    }
    return false;
}

//  Entries ----------------------------------------------------------------------

void
mesh_faq_entry_destroy (mesh_faq_entry_t **self_p)
{
    assert (self_p);
    mesh_faq_entry_t *self = *self_p;
    if (!self)
        return;
    free (self->tenant);
    free (self->model);
    free (self->question);
    free (self->normalised);
    for (size_t i = 0; i < self->keyword_count; i++) {
        free (self->keywords [i]);
        free (self->keywords_normal [i]);
    }
    free (self->keywords);
    free (self->keywords_normal);
    if (self->compiled)
        regfree (&self->regex);
    free (self->answer);
    free (self);
    *self_p = NULL;
}

static bool
s_id_valid (const char *id)
{
    size_t len = strlen (id);
    if (len < 1 || len > MESH_FAQ_ID_BYTES)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
        ||    *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

//  A text member: NULL when absent (and not required); refuses a wrong
//  type or length with the field named
static int
s_text (json_t *root, const char *name, size_t max, bool required, char **out,
        char *why, size_t why_size)
{
    json_t *value = json_object_get (root, name);
    *out = NULL;
    if (!value)
        return required ? mesh_fail (why, why_size, "%s: required", name) : 0;
    if (!json_is_string (value))
        return mesh_fail (why, why_size, "%s: expected a string", name);
    size_t len = json_string_length (value);
    if (len > max || (required && len == 0) || memchr (json_string_value (value), 0, len))
        return mesh_fail (why, why_size, "%s: %s", name,
                          len > max ? "too long" : len == 0 ? "must not be empty" : "holds a NUL");
    *out = strdup (json_string_value (value));
    assert (*out);
    return 0;
}

//  What could make glibc's regcomp build a huge automaton: a repeat of a
//  repeat ("a++", "(a*)*" is fine, "a{2}{3}" is not), more than four
//  counted repeats, or a count over 16
static int
s_regex_bounded (const char *pattern, char *why, size_t why_size)
{
    int repeats = 0;
    bool after_repeat = false;
    for (const char *p = pattern; *p; p++) {
        bool repeat = false;
        if (*p == '\\' && p [1])
            p++;
        else
        if (*p == '[') {                //  a bracket expression: no repeats inside
            const char *q = p + 1;
            if (*q == '^')
                q++;
            if (*q == ']')
                q++;
            while (*q && *q != ']') {
                if (*q == '[' && (q [1] == ':' || q [1] == '.' || q [1] == '=')) {
                    const char *close = strstr (q + 2, (char []) { q [1], ']', 0 });
                    q = close ? close + 1 : q + 1;
                    continue;
                }
                q++;
            }
            if (!*q)
                break;                  //  regcomp refuses it
            p = q;
        }
        else
        if (*p == '*' || *p == '+' || *p == '?')
            repeat = true;
        else
        if (*p == '{') {
            char *end;
            long low = strtol (p + 1, &end, 10), high = low;
            if (end != p + 1) {
                if (*end == ',')
                    high = end [1] == '}' ? 1000 : strtol (end + 1, &end, 10);
                if (low > 16 || high > 16)
                    return mesh_fail (why, why_size, "regex: a repeat count is at most 16");
                if (++repeats > 4)
                    return mesh_fail (why, why_size, "regex: at most 4 counted repeats");
                repeat = true;
                const char *close = strchr (p, '}');
                if (close)
                    p = close;
            }
        }
        if (repeat && after_repeat)
            return mesh_fail (why, why_size, "regex: a repeat of a repeat (\"a++\", \"a*{2}\")");
        after_repeat = repeat;
    }
    return 0;
}

mesh_faq_entry_t *
mesh_faq_entry_parse (const char *text, size_t len, char *why, size_t why_size)
{
    json_error_t error;
    json_t *root = json_loadb (text ? text : "", text ? len : 0, JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        mesh_fail (why, why_size, "not JSON: %s", error.text);
        return NULL;
    }
    mesh_faq_entry_t *self = calloc (1, sizeof *self);
    assert (self);
    char *id = NULL;
    const char *key;
    json_t *value;
    int kinds = 0;
    if (!json_is_object (root)) {
        mesh_fail (why, why_size, "an entry is a JSON object");
        goto fail;
    }
    static const char *const known [] = { "id", "tenant", "model", "exact", "keywords", "regex",
                                          "answer", "created_ms", NULL };
    json_object_foreach (root, key, value) {
        bool found = false;
        for (size_t i = 0; known [i] && !found; i++)
            found = strcmp (known [i], key) == 0;
        if (!found) {
            mesh_fail (why, why_size, "%.64s: unknown field (id, tenant, model, exact, keywords, "
                       "regex, answer, created_ms)", key);
            goto fail;
        }
    }
    if (s_text (root, "id", MESH_FAQ_ID_BYTES, false, &id, why, why_size) < 0)
        goto fail;
    if (id && !s_id_valid (id)) {
        mesh_fail (why, why_size, "id: letters, digits, '_', '-' and '.' only");
        goto fail;
    }
    snprintf (self->id, sizeof self->id, "%s", id ? id : "");
    if (s_text (root, "tenant", 127, true, &self->tenant, why, why_size) < 0
    ||  s_text (root, "model", 255, false, &self->model, why, why_size) < 0
    ||  s_text (root, "answer", MESH_FAQ_ANSWER_BYTES, true, &self->answer, why, why_size) < 0)
        goto fail;
    if (!self->model) {
        self->model = strdup ("");
        assert (self->model);
    }
    json_t *created = json_object_get (root, "created_ms");
    if (created && (!json_is_integer (created) || json_integer_value (created) < 0)) {
        mesh_fail (why, why_size, "created_ms: expected a positive integer");
        goto fail;
    }
    self->created_ms = created ? json_integer_value (created) : 0;
    kinds = !!json_object_get (root, "exact") + !!json_object_get (root, "keywords")
          + !!json_object_get (root, "regex");
    if (kinds != 1) {
        mesh_fail (why, why_size, "give exactly one of exact, keywords, regex");
        goto fail;
    }
    if (json_object_get (root, "exact")) {
        self->kind = MESH_FAQ_EXACT;
        if (s_text (root, "exact", MESH_FAQ_QUESTION_BYTES, true, &self->question, why, why_size) < 0)
            goto fail;
        self->normalised = s_normal (self->question);
        if (!*self->normalised) {
            mesh_fail (why, why_size, "exact: has no letters or digits");
            goto fail;
        }
    }
    else
    if (json_object_get (root, "keywords")) {
        self->kind = MESH_FAQ_KEYWORDS;
        json_t *list = json_object_get (root, "keywords");
        size_t count = json_is_array (list) ? json_array_size (list) : 0;
        if (count == 0 || count > MESH_FAQ_MAX_KEYWORDS) {
            mesh_fail (why, why_size, "keywords: an array of 1 to %d words", MESH_FAQ_MAX_KEYWORDS);
            goto fail;
        }
        self->keywords = calloc (count, sizeof *self->keywords);
        self->keywords_normal = calloc (count, sizeof *self->keywords_normal);
        assert (self->keywords && self->keywords_normal);
        for (size_t i = 0; i < count; i++) {
            json_t *word = json_array_get (list, i);
            if (!json_is_string (word) || json_string_length (word) == 0 || json_string_length (word) > 256
            ||  memchr (json_string_value (word), 0, json_string_length (word))) {
                mesh_fail (why, why_size, "keywords: each one a string of 1 to 256 bytes");
                goto fail;
            }
            self->keywords [i] = strdup (json_string_value (word));
            self->keywords_normal [i] = s_normal (self->keywords [i]);
            self->keyword_count++;
            assert (self->keywords [i]);
            if (!*self->keywords_normal [i]) {
                mesh_fail (why, why_size, "keywords: \"%.64s\" has no letters or digits",
                           self->keywords [i]);
                goto fail;
            }
        }
    }
    else {
        self->kind = MESH_FAQ_REGEX;
        if (s_text (root, "regex", MESH_FAQ_REGEX_BYTES, true, &self->question, why, why_size) < 0
        ||  s_regex_bounded (self->question, why, why_size) < 0)
            goto fail;
        int rc = regcomp (&self->regex, self->question, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (rc != 0) {
            char message [128];
            regerror (rc, &self->regex, message, sizeof message);
            mesh_fail (why, why_size, "regex: %s", message);
            goto fail;
        }
        self->compiled = true;
    }
    free (id);
    json_decref (root);
    return self;
fail:
    free (id);
    json_decref (root);
    mesh_faq_entry_destroy (&self);
    return NULL;
}

char *
mesh_faq_entry_json (const mesh_faq_entry_t *self)
{
    json_t *root = json_object ();
    if (*self->id)
        json_object_set_new (root, "id", json_string (self->id));
    json_object_set_new (root, "tenant", json_string (self->tenant));
    if (*self->model)
        json_object_set_new (root, "model", json_string (self->model));
    if (self->kind == MESH_FAQ_KEYWORDS) {
        json_t *list = json_array ();
        for (size_t i = 0; i < self->keyword_count; i++)
            json_array_append_new (list, json_string (self->keywords [i]));
        json_object_set_new (root, "keywords", list);
    }
    else
        json_object_set_new (root, self->kind == MESH_FAQ_EXACT ? "exact" : "regex",
                             json_string (self->question));
    json_object_set_new (root, "answer", json_string (self->answer));
    if (self->created_ms)
        json_object_set_new (root, "created_ms", json_integer (self->created_ms));
    char *text = json_dumps (root, JSON_COMPACT);
    json_decref (root);
    assert (text);
    return text;
}

const char *mesh_faq_entry_id (const mesh_faq_entry_t *self) { return self->id; }
const char *mesh_faq_entry_tenant (const mesh_faq_entry_t *self) { return self->tenant; }
const char *mesh_faq_entry_model (const mesh_faq_entry_t *self) { return self->model; }
const char *mesh_faq_entry_answer (const mesh_faq_entry_t *self) { return self->answer; }
mesh_faq_kind_t mesh_faq_entry_kind (const mesh_faq_entry_t *self) { return self->kind; }

const char *
mesh_faq_kind_name (mesh_faq_kind_t kind)
{
    return kind == MESH_FAQ_EXACT ? "exact" : kind == MESH_FAQ_KEYWORDS ? "keywords" : "regex";
}

void
mesh_faq_entry_stamp (mesh_faq_entry_t *self, const char *id, int64_t created_ms)
{
    snprintf (self->id, sizeof self->id, "%s", id);
    self->created_ms = created_ms;
}

//  The set ------------------------------------------------------------------------

mesh_faq_t *
mesh_faq_new (void)
{
    mesh_faq_t *self = calloc (1, sizeof *self);
    assert (self);
    self->by_id = mesh_map_new ();
    self->exact = mesh_map_new ();
    self->tenants = mesh_map_new ();
    mesh_buf_init (&self->scratch);
    return self;
}

static void
s_indexes_free (mesh_faq_t *self)
{
    size_t cursor = 0;
    tenant_t *tenant;
    while ((tenant = mesh_map_next (self->tenants, &cursor, NULL))) {
        mesh_map_destroy (&tenant->models);
        free (tenant->tried);
        free (tenant->name);
        free (tenant);
    }
    mesh_map_destroy (&self->tenants);
    self->tenants = mesh_map_new ();
    for (size_t i = 0; i < self->exact_count; i++)
        free (self->exact_keys [i]);
    free (self->exact_keys);
    self->exact_keys = NULL;
    self->exact_count = 0;
    mesh_map_destroy (&self->exact);
    self->exact = mesh_map_new ();
}

void
mesh_faq_clear (mesh_faq_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        mesh_faq_entry_destroy (&self->entries [i]);
    self->count = 0;
    mesh_map_destroy (&self->by_id);
    self->by_id = mesh_map_new ();
    self->dirty = true;
}

void
mesh_faq_destroy (mesh_faq_t **self_p)
{
    assert (self_p);
    mesh_faq_t *self = *self_p;
    if (!self)
        return;
    mesh_faq_clear (self);
    s_indexes_free (self);
    mesh_map_destroy (&self->by_id);
    mesh_map_destroy (&self->exact);
    mesh_map_destroy (&self->tenants);
    free (self->entries);
    mesh_buf_free (&self->scratch);
    free (self);
    *self_p = NULL;
}

bool
mesh_faq_remove (mesh_faq_t *self, const char *id)
{
    mesh_faq_entry_t *entry = mesh_map_remove (self->by_id, id);
    if (!entry)
        return false;
    for (size_t i = 0; i < self->count; i++)
        if (self->entries [i] == entry) {
            memmove (&self->entries [i], &self->entries [i + 1],
                     (self->count - i - 1) * sizeof *self->entries);
            self->count--;
            break;
        }
    mesh_faq_entry_destroy (&entry);
    self->dirty = true;
    return true;
}

void
mesh_faq_put (mesh_faq_t *self, mesh_faq_entry_t *entry)
{
    assert (entry && *entry->id);
    mesh_faq_remove (self, entry->id);
    if (self->count == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 16;
        self->entries = realloc (self->entries, self->cap * sizeof *self->entries);
        assert (self->entries);
    }
    entry->order = self->next_order++;
    self->entries [self->count++] = entry;
    mesh_map_put (self->by_id, entry->id, entry);
    self->dirty = true;
}

const mesh_faq_entry_t *
mesh_faq_get (mesh_faq_t *self, const char *id)
{
    return mesh_map_get (self->by_id, id);
}

size_t
mesh_faq_count (mesh_faq_t *self)
{
    return self->count;
}

const mesh_faq_entry_t *
mesh_faq_at (mesh_faq_t *self, size_t index)
{
    return index < self->count ? self->entries [index] : NULL;
}

//  Matching order within a tenant: keywords before regex; an entry for a
//  model before one for every model; more keywords first; older first
static int
s_by_priority (const void *a, const void *b)
{
    const mesh_faq_entry_t *x = *(mesh_faq_entry_t * const *) a, *y = *(mesh_faq_entry_t * const *) b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (!*x->model != !*y->model)
        return *x->model ? -1 : 1;
    if (x->keyword_count != y->keyword_count)
        return x->keyword_count > y->keyword_count ? -1 : 1;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void
s_reindex (mesh_faq_t *self)
{
    if (!self->dirty)
        return;
    s_indexes_free (self);
    mesh_faq_entry_t **sorted = malloc ((self->count + 1) * sizeof *sorted);
    assert (sorted);
    memcpy (sorted, self->entries, self->count * sizeof *sorted);
    qsort (sorted, self->count, sizeof *sorted, s_by_priority);
    self->exact_keys = calloc (self->count + 1, sizeof *self->exact_keys);
    assert (self->exact_keys);
    for (size_t i = 0; i < self->count; i++) {
        mesh_faq_entry_t *entry = sorted [i];
        tenant_t *tenant = mesh_map_get (self->tenants, entry->tenant);
        if (!tenant) {
            tenant = calloc (1, sizeof *tenant);
            assert (tenant);
            tenant->name = strdup (entry->tenant);
            tenant->models = mesh_map_new ();
            tenant->tried = calloc (self->count, sizeof *tenant->tried);
            assert (tenant->name && tenant->tried);
            mesh_map_put (self->tenants, tenant->name, tenant);
        }
        if (*entry->model) {
            uintptr_t n = (uintptr_t) mesh_map_get (tenant->models, entry->model);
            mesh_map_put (tenant->models, entry->model, (void *) (n + 1));
        }
        else
            tenant->any_model++;
        if (entry->kind != MESH_FAQ_EXACT) {
            tenant->tried [tenant->tried_count++] = entry;
            continue;
        }
        size_t size = strlen (entry->tenant) + strlen (entry->model) + strlen (entry->normalised) + 3;
        char *key = malloc (size);
        assert (key);
        snprintf (key, size, "%s\x1f%s\x1f%s", entry->tenant, entry->model, entry->normalised);
        if (mesh_map_get (self->exact, key))
            free (key);             //  an older entry says the same: it wins
        else {
            self->exact_keys [self->exact_count++] = key;
            mesh_map_put (self->exact, key, entry);
        }
    }
    free (sorted);
    self->dirty = false;
}

bool
mesh_faq_covers (mesh_faq_t *self, const char *tenant_name, const char *model)
{
    if (self->count == 0)
        return false;
    s_reindex (self);
    tenant_t *tenant = mesh_map_get (self->tenants, tenant_name);
    return tenant && (tenant->any_model || mesh_map_get (tenant->models, model));
}

static const mesh_faq_entry_t *
s_exact (mesh_faq_t *self, const char *tenant, const char *model, const char *normal)
{
    size_t size = strlen (tenant) + strlen (model) + strlen (normal) + 3;
    char stack [512];
    char *key = size <= sizeof stack ? stack : malloc (size);
    assert (key);
    snprintf (key, size, "%s\x1f%s\x1f%s", tenant, model, normal);
    const mesh_faq_entry_t *entry = mesh_map_get (self->exact, key);
    if (key != stack)
        free (key);
    return entry;
}

const mesh_faq_entry_t *
mesh_faq_match (mesh_faq_t *self, const char *tenant_name, const char *model,
                const char *text, size_t len)
{
    if (!mesh_faq_covers (self, tenant_name, model))
        return NULL;
    tenant_t *tenant = mesh_map_get (self->tenants, tenant_name);
    mesh_faq_normalise (text, len, &self->scratch);
    mesh_buf_append (&self->scratch, "", 1);
    const char *normal = mesh_buf_head (&self->scratch);
    size_t normal_len = mesh_buf_size (&self->scratch) - 1;
    const mesh_faq_entry_t *found = s_exact (self, tenant_name, model, normal);
    if (!found)
        found = s_exact (self, tenant_name, "", normal);
    if (found)
        return found;
    char *raw = NULL;
    for (size_t i = 0; i < tenant->tried_count && !found; i++) {
        mesh_faq_entry_t *entry = tenant->tried [i];
        if (*entry->model && strcmp (entry->model, model) != 0)
            continue;
        if (entry->kind == MESH_FAQ_KEYWORDS) {
            bool all = true;
            for (size_t k = 0; k < entry->keyword_count && all; k++)
                all = s_contains (normal, normal_len, entry->keywords_normal [k]);
            if (all)
                found = entry;
            continue;
        }
        if (!raw) {
            //  A terminated copy, cut on a character at the bound
            size_t take = MESH_MIN (len, (size_t) MESH_FAQ_MATCH_BYTES);
            while (take < len && take > 0 && ((unsigned char) text [take] & 0xc0) == 0x80)
                take--;
            raw = malloc (take + 1);
            assert (raw);
            memcpy (raw, text, take);
            raw [take] = 0;
            if (strlen (raw) != take)
                raw [0] = 0;            //  a NUL inside: matched as nothing
        }
        if (regexec (&entry->regex, raw, 0, NULL, 0) == 0)
            found = entry;
    }
    free (raw);
    return found;
}

//  Selftest -------------------------------------------------------------------

static mesh_faq_entry_t *
s_entry (const char *json, const char *id)
{
    char why [256];
    mesh_faq_entry_t *entry = mesh_faq_entry_parse (json, strlen (json), why, sizeof why);
    if (!entry)
        fprintf (stderr, "mesh_faq: %s: %s\n", json, why);
    assert (entry);
    mesh_faq_entry_stamp (entry, id, 1000);
    return entry;
}

static const char *
s_answer (mesh_faq_t *faq, const char *tenant, const char *model, const char *text)
{
    const mesh_faq_entry_t *entry = mesh_faq_match (faq, tenant, model, text, strlen (text));
    return entry ? mesh_faq_entry_id (entry) : NULL;
}

void
mesh_faq_test (bool verbose)
{
    (void) verbose;
    mesh_buf_t out;
    mesh_buf_init (&out);
    const char *text = "  What are\tyour  OPENING hours?? \xef\xbc\xa1\xe2\x80\x8b"
                       "B\xe3\x80\x82\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x9f";
    mesh_faq_normalise (text, strlen (text), &out);
    assert (mesh_memeq (mesh_buf_head (&out), mesh_buf_size (&out),
                        "what are your opening hours ab \xe4\xbd\xa0\xe5\xa5\xbd"));
    mesh_faq_normalise ("\xff\xfe?!", 4, &out);
    assert (mesh_buf_size (&out) == 0);

    mesh_faq_t *faq = mesh_faq_new ();
    assert (!mesh_faq_covers (faq, "acme", "m"));
    mesh_faq_put (faq, s_entry ("{\"tenant\":\"acme\",\"exact\":\"What are your opening hours?\","
                                "\"answer\":\"9-17\"}", "hours"));
    mesh_faq_put (faq, s_entry ("{\"tenant\":\"acme\",\"model\":\"m\",\"exact\":\"what are your "
                                "opening hours\",\"answer\":\"on m: 9-17\"}", "hours-m"));
    mesh_faq_put (faq, s_entry ("{\"tenant\":\"acme\",\"keywords\":[\"refund\",\"order\"],"
                                "\"answer\":\"refunds\"}", "refund"));
    mesh_faq_put (faq, s_entry ("{\"tenant\":\"acme\",\"keywords\":[\"refund\",\"order\",\"late\"],"
                                "\"answer\":\"late refunds\"}", "refund-late"));
    mesh_faq_put (faq, s_entry ("{\"tenant\":\"acme\",\"regex\":\"^(how|where) (do|can) i reset\","
                                "\"answer\":\"settings\"}", "reset"));
    mesh_faq_put (faq, s_entry ("{\"tenant\":\"beta\",\"model\":\"n\",\"keywords\":[\"\xe9\x80\x80\xe6\xac\xbe\"],"
                                "\"answer\":\"x\"}", "cjk"));
    assert (mesh_faq_count (faq) == 6);
    assert (mesh_faq_covers (faq, "acme", "anything") && mesh_faq_covers (faq, "beta", "n"));
    assert (!mesh_faq_covers (faq, "beta", "m") && !mesh_faq_covers (faq, "gamma", "m"));
    //  Exact, the model's own first
    assert (mesh_streq (s_answer (faq, "acme", "x", "what are your opening HOURS"), "hours"));
    assert (mesh_streq (s_answer (faq, "acme", "m", "What are your opening hours?"), "hours-m"));
    assert (!s_answer (faq, "acme", "x", "what are your opening hours today"));
    assert (!s_answer (faq, "other", "x", "What are your opening hours?"));
    //  Keywords: every one, as words; more keywords first
    assert (mesh_streq (s_answer (faq, "acme", "x", "My ORDER needs a refund."), "refund"));
    assert (mesh_streq (s_answer (faq, "acme", "x", "late order, refund please"), "refund-late"));
    assert (!s_answer (faq, "acme", "x", "refunds for my order"));
    assert (!s_answer (faq, "acme", "x", "a refund"));
    assert (mesh_streq (s_answer (faq, "beta", "n", "\xe6\x88\x91\xe8\xa6\x81\xe9\x80\x80\xe6\xac\xbe"), "cjk"));
    assert (!s_answer (faq, "beta", "m", "\xe9\x80\x80\xe6\xac\xbe"));
    //  Regex, case-insensitive, on the message as sent
    assert (mesh_streq (s_answer (faq, "acme", "x", "How can I reset my password?"), "reset"));
    assert (!s_answer (faq, "acme", "x", "so how can I reset it"));
    //  Round trip through JSON; replace and remove
    char *json = mesh_faq_entry_json (mesh_faq_get (faq, "refund"));
    assert (strstr (json, "\"id\":\"refund\"") && strstr (json, "\"keywords\":[\"refund\",\"order\"]"));
    mesh_faq_entry_t *again = s_entry (json, "refund");
    free (json);
    mesh_faq_put (faq, again);
    assert (mesh_faq_count (faq) == 6);
    assert (mesh_faq_remove (faq, "hours") && !mesh_faq_remove (faq, "hours"));
    assert (!s_answer (faq, "acme", "x", "what are your opening hours"));
    assert (mesh_streq (s_answer (faq, "acme", "m", "what are your opening hours"), "hours-m"));

    //  Refusals name the field
    const char *bad [][2] = {
        { "[]", "object" }, { "{\"tenant\":\"a\",\"answer\":\"x\"}", "exactly one" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"exact\":\"q\",\"regex\":\"q\"}", "exactly one" },
        { "{\"answer\":\"x\",\"exact\":\"q\"}", "tenant" },
        { "{\"tenant\":\"a\",\"exact\":\"q\"}", "answer" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"exact\":\"?!\"}", "exact" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"keywords\":[]}", "keywords" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"keywords\":[\"ok\",3]}", "keywords" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"regex\":\"(\"}", "regex" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"regex\":\"(a{16}){16}{16}{16}{16}\"}", "regex" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"regex\":\"a{17}\"}", "regex" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"exact\":\"q\",\"colour\":1}", "colour" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"exact\":\"q\",\"id\":\"a b\"}", "id" },
        { "{\"tenant\":\"a\",\"answer\":\"x\",\"exact\":\"q\",\"exact\":\"r\"}", "JSON" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        char why [256] = "";
        mesh_faq_entry_t *entry = mesh_faq_entry_parse (bad [i][0], strlen (bad [i][0]), why, sizeof why);
        if (entry || !strstr (why, bad [i][1]))
            fprintf (stderr, "mesh_faq: %s gave \"%s\"\n", bad [i][0], why);
        assert (!entry && strstr (why, bad [i][1]));
    }
    mesh_faq_destroy (&faq);
    mesh_faq_destroy (&faq);
    mesh_buf_free (&out);
}
