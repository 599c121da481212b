/*  mesh_wordfilter: normalisation, the automaton and streams.             */
#include "mesh_wordfilter.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE        UINT32_MAX
#define ALL_LISTS   (UINT32_MAX - 1)    //  a stream for no tenant
#define NO_LIST     UINT32_MAX          //  a tenant without a list of its own

//  Normalisation ----------------------------------------------------------------

size_t
mesh_wordfilter_decode (const char *data, size_t len, bool final, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *) data;
    assert (len > 0);
    unsigned char lead = p [0];
    if (lead < 0x80) {
        *cp = lead;
        return 1;
    }
    size_t need;
    uint32_t value;
    unsigned char low = 0x80, high = 0xbf;          //  of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) {
        need = 1;
        value = lead & 0x1f;
    }
    else
    if (lead >= 0xe0 && lead <= 0xef) {
        need = 2;
        value = lead & 0x0f;
        if (lead == 0xe0)
            low = 0xa0;             //  no overlong form
        if (lead == 0xed)
            high = 0x9f;            //  no surrogate
    }
    else
    if (lead >= 0xf0 && lead <= 0xf4) {
        need = 3;
        value = lead & 0x07;
        if (lead == 0xf0)
            low = 0x90;
        if (lead == 0xf4)
            high = 0x8f;            //  nothing past U+10FFFF
    }
    else {
        *cp = 0x110000 + lead;
        return 1;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= len) {
            if (!final)
                return 0;           //  the rest may come
            *cp = 0x110000 + lead;
            return 1;
        }
        unsigned char c = p [k];
        if (c < (k == 1 ? low : 0x80) || c > (k == 1 ? high : 0xbf)) {
            *cp = 0x110000 + lead;
            return 1;
        }
        value = value << 6 | (c & 0x3f);
    }
    *cp = value;
    return need + 1;
}

static bool
s_transparent (uint32_t cp)
{
    return cp == 0x00ad || (cp >= 0x0300 && cp <= 0x036f) || cp == 0x034f || cp == 0x061c
        || cp == 0x115f || cp == 0x1160 || cp == 0x17b4 || cp == 0x17b5
        || (cp >= 0x180b && cp <= 0x180f) || (cp >= 0x200b && cp <= 0x200f)
        || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f)
        || cp == 0x3164 || (cp >= 0xfe00 && cp <= 0xfe0f) || cp == 0xfeff || cp == 0xffa0
        || (cp >= 0xe0000 && cp <= 0xe007f) || (cp >= 0x1d173 && cp <= 0x1d17a);
}

static bool
s_separator (uint32_t cp)
{
    if (cp < 0x80)
        return !((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'));
    if (cp < 0xc0)
        return cp != 0xaa && cp != 0xb5 && cp != 0xba;
    return cp == 0xd7 || cp == 0xf7
        || (cp >= 0x2000 && cp <= 0x206f) || (cp >= 0x20a0 && cp <= 0x20cf)
        || (cp >= 0x2e00 && cp <= 0x2e7f)
        || (cp >= 0x3000 && cp <= 0x3004) || (cp >= 0x3008 && cp <= 0x3020) || cp == 0x3030
        || (cp >= 0x303d && cp <= 0x303f) || cp == 0x30fb
        || (cp >= 0xfe10 && cp <= 0xfe1f) || (cp >= 0xfe30 && cp <= 0xfe6f)
        || (cp >= 0xff61 && cp <= 0xff65);
}

//  Lower case of the scripts written with spaces (a table would be the
//  next step for more of them)
static uint32_t
s_fold (uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if (cp < 0xc0)
        return cp;
    if (cp <= 0xde && cp != 0xd7)
        return cp + 32;
    if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14a && cp <= 0x177))
        return cp | 1;
    if (((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e)) && (cp & 1))
        return cp + 1;
    if (cp == 0x178)
        return 0xff;
    if (cp >= 0x391 && cp <= 0x3a9 && cp != 0x3a2)
        return cp + 32;
    if (cp == 0x3c2)
        return 0x3c3;               //  final sigma
    if (cp >= 0x410 && cp <= 0x42f)
        return cp + 32;
    if (cp >= 0x400 && cp <= 0x40f)
        return cp + 80;
    return cp;
}

static bool
s_word_char (uint32_t cp)
{
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || cp == 0xaa || cp == 0xb5
        || cp == 0xba || (cp >= 0xc0 && cp <= 0x24f && cp != 0xd7 && cp != 0xf7)
        || (cp >= 0x370 && cp <= 0x4ff);
}

int
mesh_wordfilter_classify (uint32_t cp, uint32_t *folded, bool *word)
{
    *folded = cp;
    *word = false;
    if (cp >= 0x110000)
        return MESH_WORD_SIGNIFICANT;   //  a byte that is not UTF-8
    if (s_transparent (cp))
        return MESH_WORD_TRANSPARENT;
    if (cp >= 0xff01 && cp <= 0xff5e)
        cp -= 0xfee0;               //  full-width ASCII
    else
    if (cp == 0x3000)
        cp = ' ';
    if (s_separator (cp))
        return MESH_WORD_SEPARATOR;
    *folded = s_fold (cp);
    *word = s_word_char (*folded);
    return MESH_WORD_SIGNIFICANT;
}

size_t
mesh_wordfilter_normalise (const char *text, size_t len, uint32_t *out, size_t max)
{
    size_t count = 0;
    for (size_t at = 0; at < len; ) {
        uint32_t cp, folded;
        bool word;
        at += mesh_wordfilter_decode (text + at, len - at, true, &cp);
        if (mesh_wordfilter_classify (cp, &folded, &word) != MESH_WORD_SIGNIFICANT)
            continue;
        if (count < max)
            out [count] = folded;
        count++;
    }
    return count;
}

//  The filter ---------------------------------------------------------------------

typedef struct {
    char *id;
    uint32_t list;              //  index in lists; 0: the global list
    char *word;
    int action;
    uint32_t *chars;            //  normalised
    uint32_t len;
    bool first_word, last_word; //  begins / ends with a letter of a spaced script
} entry_t;

typedef struct {
    uint32_t edge_first, edge_count;
    uint32_t fail;
    uint32_t dict;              //  nearest node on the fail chain with entries, or 0
    uint32_t out_first, out_count;
    uint32_t depth;
} node_t;

struct mesh_wordfilter_t {
    int refs;
    bool compiled;
    uint64_t version;
    entry_t *entries;
    size_t count;
    char **lists;               //  [0] = "" (the global list)
    size_t list_count;
    node_t *nodes;
    size_t node_count;
    uint32_t *edge_cp;          //  sorted per node
    uint32_t *edge_to;
    uint32_t *outs;             //  entry indexes, per node
    size_t longest;
};

mesh_wordfilter_t *
mesh_wordfilter_new (void)
{
    mesh_wordfilter_t *self = calloc (1, sizeof *self);
    assert (self);
    self->refs = 1;
    self->lists = calloc (1, sizeof *self->lists);
    assert (self->lists);
    self->lists [0] = strdup ("");
    self->list_count = 1;
    return self;
}

mesh_wordfilter_t *
mesh_wordfilter_ref (mesh_wordfilter_t *self)
{
    self->refs++;
    return self;
}

void
mesh_wordfilter_unref (mesh_wordfilter_t **self_p)
{
    assert (self_p);
    mesh_wordfilter_t *self = *self_p;
    *self_p = NULL;
    if (!self || --self->refs > 0)
        return;
    for (size_t i = 0; i < self->count; i++) {
        free (self->entries [i].id);
        free (self->entries [i].word);
        free (self->entries [i].chars);
    }
    free (self->entries);
    for (size_t i = 0; i < self->list_count; i++)
        free (self->lists [i]);
    free (self->lists);
    free (self->nodes);
    free (self->edge_cp);
    free (self->edge_to);
    free (self->outs);
    free (self);
}

static uint32_t
s_list_index (const mesh_wordfilter_t *self, const char *name)
{
    for (size_t i = 0; i < self->list_count; i++)
        if (strcmp (self->lists [i], name) == 0)
            return (uint32_t) i;
    return NO_LIST;
}

static bool
s_id_valid (const char *id)
{
    size_t len = strlen (id);
    if (len < 1 || len > MESH_WORDFILTER_MAX_ID)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
        ||    *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

int
mesh_wordfilter_add (mesh_wordfilter_t *self, const mesh_wordentry_t *given, char *why, size_t why_size)
{
    assert (!self->compiled);
    if (self->count >= MESH_WORDFILTER_MAX_ENTRIES)
        return mesh_fail (why, why_size, "more than %d entries", MESH_WORDFILTER_MAX_ENTRIES);
    if (!given->id || !s_id_valid (given->id))
        return mesh_fail (why, why_size, "an entry id is 1-%d letters, digits and . _ -",
                          MESH_WORDFILTER_MAX_ID);
    const char *list = given->list ? given->list : "";
    if (strlen (list) > MESH_WORDFILTER_MAX_LIST || !mesh_utf8_valid (list, strlen (list)))
        return mesh_fail (why, why_size, "entry %s: the tenant is not a name", given->id);
    if (given->action != MESH_WORD_BLOCK && given->action != MESH_WORD_MASK)
        return mesh_fail (why, why_size, "entry %s: the action is block or mask", given->id);
    const char *word = given->word ? given->word : "";
    size_t word_len = strlen (word);
    if (word_len > MESH_WORDFILTER_MAX_WORD || !mesh_utf8_valid (word, word_len))
        return mesh_fail (why, why_size, "entry %s: a word is UTF-8 text of at most %d bytes",
                          given->id, MESH_WORDFILTER_MAX_WORD);
    uint32_t chars [MESH_WORDFILTER_MAX_CHARS];
    size_t count = mesh_wordfilter_normalise (word, word_len, chars, MESH_WORDFILTER_MAX_CHARS);
    if (count == 0 || count > MESH_WORDFILTER_MAX_CHARS)
        return mesh_fail (why, why_size, "entry %s: a word has 1 to %d letters (spaces, punctuation "
                          "and zero-width characters do not count)", given->id, MESH_WORDFILTER_MAX_CHARS);
    uint32_t list_index = s_list_index (self, list);
    if (list_index == NO_LIST) {
        self->lists = realloc (self->lists, (self->list_count + 1) * sizeof *self->lists);
        assert (self->lists);
        self->lists [self->list_count] = strdup (list);
        list_index = (uint32_t) self->list_count++;
    }
    if ((self->count & (self->count - 1)) == 0) {
        self->entries = realloc (self->entries, (self->count ? self->count * 2 : 1) * sizeof *self->entries);
        assert (self->entries);
    }
    entry_t *entry = &self->entries [self->count++];
    entry->id = strdup (given->id);
    entry->list = list_index;
    entry->word = strdup (word);
    entry->action = given->action;
    entry->len = (uint32_t) count;
    entry->chars = malloc (count * sizeof *entry->chars);
    assert (entry->id && entry->word && entry->chars);
    memcpy (entry->chars, chars, count * sizeof *chars);
    uint32_t folded;
    bool first, last;
    mesh_wordfilter_classify (chars [0], &folded, &first);
    mesh_wordfilter_classify (chars [count - 1], &folded, &last);
    entry->first_word = first;
    entry->last_word = last;
    if (count > self->longest)
        self->longest = count;
    return 0;
}

//  The trie while it is built: children kept sorted
typedef struct {
    uint32_t *cps, *kids;
    uint32_t count, cap;
} build_node_t;

static uint32_t
s_build_child (build_node_t **nodes, size_t *node_count, size_t *node_cap, uint32_t parent,
               uint32_t cp)
{
    build_node_t *node = &(*nodes) [parent];
    uint32_t low = 0, high = node->count;
    while (low < high) {
        uint32_t mid = (low + high) / 2;
        if (node->cps [mid] < cp)
            low = mid + 1;
        else
            high = mid;
    }
    if (low < node->count && node->cps [low] == cp)
        return node->kids [low];
    if (*node_count == *node_cap) {
        *node_cap *= 2;
        *nodes = realloc (*nodes, *node_cap * sizeof **nodes);
        assert (*nodes);
        node = &(*nodes) [parent];
    }
    uint32_t child = (uint32_t) (*node_count)++;
    memset (&(*nodes) [child], 0, sizeof **nodes);
    if (node->count == node->cap) {
        node->cap = node->cap ? node->cap * 2 : 2;
        node->cps = realloc (node->cps, node->cap * sizeof *node->cps);
        node->kids = realloc (node->kids, node->cap * sizeof *node->kids);
        assert (node->cps && node->kids);
    }
    memmove (node->cps + low + 1, node->cps + low, (node->count - low) * sizeof *node->cps);
    memmove (node->kids + low + 1, node->kids + low, (node->count - low) * sizeof *node->kids);
    node->cps [low] = cp;
    node->kids [low] = child;
    node->count++;
    return child;
}

static uint32_t
s_goto (const mesh_wordfilter_t *self, uint32_t node, uint32_t cp)
{
    const node_t *n = &self->nodes [node];
    uint32_t low = n->edge_first, high = n->edge_first + n->edge_count;
    while (low < high) {
        uint32_t mid = (low + high) / 2;
        if (self->edge_cp [mid] < cp)
            low = mid + 1;
        else
            high = mid;
    }
    if (low < n->edge_first + n->edge_count && self->edge_cp [low] == cp)
        return self->edge_to [low];
    return NONE;
}

void
mesh_wordfilter_compile (mesh_wordfilter_t *self)
{
    assert (!self->compiled);
    size_t cap = 64, count = 1;
    build_node_t *build = calloc (cap, sizeof *build);
    assert (build);
    uint32_t *terminal = malloc ((self->count + 1) * sizeof *terminal);
    assert (terminal);
    size_t edges = 0;
    for (size_t i = 0; i < self->count; i++) {
        uint32_t node = 0;
        for (uint32_t k = 0; k < self->entries [i].len; k++) {
            size_t before = count;
            node = s_build_child (&build, &count, &cap, node, self->entries [i].chars [k]);
            edges += count - before;
        }
        terminal [i] = node;
    }
    //  Flatten: node n's edges at [edge_first, + edge_count), sorted
    self->node_count = count;
    self->nodes = calloc (count, sizeof *self->nodes);
    self->edge_cp = malloc ((edges + 1) * sizeof *self->edge_cp);
    self->edge_to = malloc ((edges + 1) * sizeof *self->edge_to);
    self->outs = malloc ((self->count + 1) * sizeof *self->outs);
    assert (self->nodes && self->edge_cp && self->edge_to && self->outs);
    uint32_t at = 0;
    for (size_t n = 0; n < count; n++) {
        self->nodes [n].edge_first = at;
        self->nodes [n].edge_count = build [n].count;
        if (build [n].count) {
            memcpy (self->edge_cp + at, build [n].cps, build [n].count * sizeof *self->edge_cp);
            memcpy (self->edge_to + at, build [n].kids, build [n].count * sizeof *self->edge_to);
        }
        at += build [n].count;
        free (build [n].cps);
        free (build [n].kids);
    }
    free (build);
    //  Entries by the node where they end, in the order they were added
    for (size_t i = 0; i < self->count; i++)
        self->nodes [terminal [i]].out_count++;
    uint32_t first = 0;
    for (size_t n = 0; n < count; n++) {
        self->nodes [n].out_first = first;
        first += self->nodes [n].out_count;
        self->nodes [n].out_count = 0;
    }
    for (size_t i = 0; i < self->count; i++) {
        node_t *node = &self->nodes [terminal [i]];
        self->outs [node->out_first + node->out_count++] = (uint32_t) i;
    }
    free (terminal);
    //  Failure and dictionary links, breadth first
    uint32_t *queue = malloc (count * sizeof *queue);
    assert (queue);
    size_t head = 0, tail = 0;
    queue [tail++] = 0;
    while (head < tail) {
        uint32_t u = queue [head++];
        node_t *node = &self->nodes [u];
        for (uint32_t e = node->edge_first; e < node->edge_first + node->edge_count; e++) {
            uint32_t v = self->edge_to [e], cp = self->edge_cp [e];
            uint32_t fail = 0;
            if (u != 0) {
                uint32_t f = node->fail;
                while (true) {
                    uint32_t next = s_goto (self, f, cp);
                    if (next != NONE) {
                        fail = next;
                        break;
                    }
                    if (f == 0)
                        break;
                    f = self->nodes [f].fail;
                }
            }
            self->nodes [v].fail = fail;
            self->nodes [v].depth = node->depth + 1;
            self->nodes [v].dict = self->nodes [fail].out_count ? fail : self->nodes [fail].dict;
            queue [tail++] = v;
        }
    }
    free (queue);
    self->compiled = true;
}

static uint32_t
s_step (const mesh_wordfilter_t *self, uint32_t state, uint32_t cp)
{
    while (true) {
        uint32_t next = s_goto (self, state, cp);
        if (next != NONE)
            return next;
        if (state == 0)
            return 0;
        state = self->nodes [state].fail;
    }
}

mesh_wordfilter_t *
mesh_wordfilter_parse (const char *text, size_t len, char *why, size_t why_size)
{
    json_error_t error;
    json_t *root = json_loadb (text, len, 0, &error);
    if (!root) {
        mesh_fail (why, why_size, "not JSON: %s", error.text);
        return NULL;
    }
    mesh_wordfilter_t *self = NULL;
    json_t *version = json_object_get (root, "version");
    json_t *words = json_object_get (root, "words");
    if (!json_is_object (root) || !json_is_integer (version) || json_integer_value (version) < 0
    ||  !json_is_array (words)) {
        mesh_fail (why, why_size, "expected {\"version\": N, \"words\": [...]}");
        goto done;
    }
    self = mesh_wordfilter_new ();
    self->version = (uint64_t) json_integer_value (version);
    size_t index;
    json_t *item;
    json_array_foreach (words, index, item) {
        json_t *tenant = json_object_get (item, "tenant");
        const char *action = json_string_value (json_object_get (item, "action"));
        mesh_wordentry_t entry = {
            .id = json_string_value (json_object_get (item, "id")),
            .list = json_is_string (tenant) ? json_string_value (tenant) : "",
            .word = json_string_value (json_object_get (item, "word")),
            .action = !action ? 0 : mesh_streq (action, "block") ? MESH_WORD_BLOCK
                    : mesh_streq (action, "mask") ? MESH_WORD_MASK : 0
        };
        char reason [256];
        if (!json_is_object (item) || (tenant && !json_is_null (tenant) && !json_is_string (tenant))
        ||  (json_is_string (tenant) && json_string_length (tenant) == 0)
        ||  !entry.word || mesh_wordfilter_add (self, &entry, reason, sizeof reason) < 0) {
            mesh_fail (why, why_size, "words[%zu]: %s", index,
                       json_is_object (item) && entry.word ? reason : "not an entry");
            mesh_wordfilter_unref (&self);
            goto done;
        }
    }
    mesh_wordfilter_compile (self);
done:
    json_decref (root);
    return self;
}

uint64_t
mesh_wordfilter_version (const mesh_wordfilter_t *self)
{
    return self->version;
}

size_t
mesh_wordfilter_count (const mesh_wordfilter_t *self)
{
    return self->count;
}

size_t
mesh_wordfilter_longest (const mesh_wordfilter_t *self)
{
    return self->longest;
}

mesh_wordentry_t
mesh_wordfilter_entry (const mesh_wordfilter_t *self, size_t i)
{
    assert (i < self->count);
    const entry_t *entry = &self->entries [i];
    return (mesh_wordentry_t) { entry->id, self->lists [entry->list], entry->word, entry->action };
}

bool
mesh_wordfilter_applies (const mesh_wordfilter_t *self, const char *tenant)
{
    if (!self || self->count == 0)
        return false;
    if (!tenant)
        return true;
    for (size_t i = 0; i < self->count; i++)
        if (self->entries [i].list == 0)
            return true;
    return s_list_index (self, tenant) != NO_LIST && *tenant;
}

//  Streams ------------------------------------------------------------------------

//  One code point held back
typedef struct {
    uint64_t offset;            //  of its bytes, in the stream's bytes ever held
    uint8_t len;
    uint8_t field;
    uint8_t cls;                //  MESH_WORD_SIGNIFICANT ...
    bool word;                  //  a letter or digit of a spaced script
    bool after_word;            //  the code point before it (not transparent) was one
    bool masked;
    uint64_t sig;               //  its index among significant code points
} unit_t;

//  A match that waits for the next code point to say whether the word ends
typedef struct {
    uint32_t entry;
    uint64_t start;             //  significant index of its first character
} pending_t;

struct mesh_wordstream_t {
    mesh_wordfilter_t *filter;
    uint32_t list;              //  the tenant's list, NO_LIST, or ALL_LISTS
    uint32_t state;             //  in the automaton
    uint64_t sig_count;         //  significant code points so far
    bool last_word;             //  the last code point that was not transparent was a word character
    bool blocked;
    unit_t *units;              //  held back, in order: [head, count)
    size_t head, count, cap;
    mesh_buf_t bytes;           //  their bytes; bytes_base is the offset of its first
    uint64_t bytes_base;
    pending_t *pending;
    size_t pending_count, pending_cap;
    char tail [4];              //  an incomplete UTF-8 sequence
    size_t tail_len;
    int tail_field;
    size_t matches [3];         //  by action
    uint32_t matched [MESH_WORDFILTER_MATCHES];
    size_t matched_count;
    //  Decided by the current code point
    uint64_t cut;               //  earliest start of a block, or UINT64_MAX
};

mesh_wordstream_t *
mesh_wordstream_new (mesh_wordfilter_t *filter, const char *tenant)
{
    assert (filter && filter->compiled);
    mesh_wordstream_t *self = calloc (1, sizeof *self);
    assert (self);
    self->filter = mesh_wordfilter_ref (filter);
    self->list = !tenant ? ALL_LISTS : *tenant ? s_list_index (filter, tenant) : NO_LIST;
    if (self->list == 0)
        self->list = NO_LIST;       //  a tenant named "" has the global list only
    self->cut = UINT64_MAX;
    mesh_buf_init (&self->bytes);
    return self;
}

void
mesh_wordstream_destroy (mesh_wordstream_t **self_p)
{
    assert (self_p);
    mesh_wordstream_t *self = *self_p;
    if (!self)
        return;
    mesh_wordfilter_unref (&self->filter);
    free (self->units);
    free (self->pending);
    mesh_buf_free (&self->bytes);
    free (self);
    *self_p = NULL;
}

static bool
s_applies (const mesh_wordstream_t *self, const entry_t *entry)
{
    return entry->list == 0 || self->list == ALL_LISTS || entry->list == self->list;
}

//  The held unit of significant index sig (which must be held)
static unit_t *
s_unit_of (mesh_wordstream_t *self, uint64_t sig)
{
    for (size_t i = self->head; i < self->count; i++)
        if (self->units [i].cls == MESH_WORD_SIGNIFICANT && self->units [i].sig == sig)
            return &self->units [i];
    return NULL;
}

static void
s_accept (mesh_wordstream_t *self, uint32_t index, uint64_t start, uint64_t end)
{
    const entry_t *entry = &self->filter->entries [index];
    self->matches [entry->action]++;
    bool known = false;
    for (size_t i = 0; i < self->matched_count; i++)
        known = known || self->matched [i] == index;
    if (!known && self->matched_count < MESH_WORDFILTER_MATCHES)
        self->matched [self->matched_count++] = index;
    if (entry->action == MESH_WORD_BLOCK) {
        if (start < self->cut)
            self->cut = start;
        return;
    }
    for (size_t i = self->head; i < self->count; i++) {
        unit_t *unit = &self->units [i];
        if (unit->cls == MESH_WORD_SIGNIFICANT && unit->sig >= start && unit->sig <= end)
            unit->masked = true;
    }
}

//  Every waiting match is decided by a code point that is not transparent:
//  the word ended there unless it is a word character
static void
s_decide_pending (mesh_wordstream_t *self, bool next_is_word)
{
    for (size_t i = 0; i < self->pending_count; i++) {
        const pending_t *p = &self->pending [i];
        if (!next_is_word)
            s_accept (self, p->entry, p->start, p->start + self->filter->entries [p->entry].len - 1);
    }
    self->pending_count = 0;
}

static unit_t *
s_push_unit (mesh_wordstream_t *self, int field, const char *data, size_t len)
{
    if (self->count == self->cap) {
        if (self->head > 0) {
            memmove (self->units, self->units + self->head, (self->count - self->head) * sizeof *self->units);
            self->count -= self->head;
            self->head = 0;
        }
        if (self->count == self->cap) {
            self->cap = self->cap ? self->cap * 2 : 16;
            self->units = realloc (self->units, self->cap * sizeof *self->units);
            assert (self->units);
        }
    }
    unit_t *unit = &self->units [self->count++];
    memset (unit, 0, sizeof *unit);
    unit->offset = self->bytes_base + mesh_buf_size (&self->bytes);
    unit->len = (uint8_t) len;
    unit->field = (uint8_t) field;
    mesh_buf_append (&self->bytes, data, len);
    return unit;
}

//  Sends units [head, end) to out and forgets them
static void
s_release (mesh_wordstream_t *self, size_t end, mesh_buf_t out [MESH_WORDFILTER_FIELDS])
{
    size_t consumed = 0;
    for (size_t i = self->head; i < end; i++) {
        unit_t *unit = &self->units [i];
        const char *bytes = mesh_buf_head (&self->bytes) + (unit->offset - self->bytes_base);
        if (unit->masked)
            mesh_buf_append (&out [unit->field], "*", 1);
        else
            mesh_buf_append (&out [unit->field], bytes, unit->len);
        consumed += unit->len;
    }
    mesh_buf_consume (&self->bytes, consumed);
    self->bytes_base += consumed;
    self->head = end;
    if (self->head == self->count) {
        self->head = self->count = 0;
        mesh_buf_reset (&self->bytes);
    }
}

//  After a code point: a block cuts the text; otherwise what no match can
//  reach any more goes out
static void
s_settle (mesh_wordstream_t *self, bool final, mesh_buf_t out [MESH_WORDFILTER_FIELDS])
{
    if (self->cut != UINT64_MAX) {
        size_t end = self->head;
        while (end < self->count && !(self->units [end].cls == MESH_WORD_SIGNIFICANT
                                      && self->units [end].sig == self->cut))
            end++;
        s_release (self, end, out);
        self->blocked = true;
        self->head = self->count = 0;
        self->pending_count = 0;
        mesh_buf_reset (&self->bytes);
        return;
    }
    uint64_t keep = final ? UINT64_MAX : self->sig_count - self->filter->nodes [self->state].depth;
    for (size_t i = 0; i < self->pending_count; i++)
        if (self->pending [i].start < keep)
            keep = self->pending [i].start;
    size_t end = self->head;
    while (end < self->count && !(self->units [end].cls == MESH_WORD_SIGNIFICANT
                                  && self->units [end].sig >= keep))
        end++;
    if (end > self->head)
        s_release (self, end, out);
}

//  One code point of field
static void
s_take (mesh_wordstream_t *self, int field, const char *data, size_t len, uint32_t cp,
        mesh_buf_t out [MESH_WORDFILTER_FIELDS])
{
    const mesh_wordfilter_t *filter = self->filter;
    uint32_t folded;
    bool word;
    int cls = mesh_wordfilter_classify (cp, &folded, &word);
    if (cls != MESH_WORD_TRANSPARENT)
        s_decide_pending (self, cls == MESH_WORD_SIGNIFICANT && word);
    unit_t *unit = s_push_unit (self, field, data, len);
    unit->cls = (uint8_t) cls;
    unit->word = word;
    if (cls == MESH_WORD_SIGNIFICANT) {
        unit->after_word = self->last_word;
        unit->sig = self->sig_count++;
        uint64_t end = unit->sig;
        self->state = s_step (filter, self->state, folded);
        for (uint32_t node = self->state; node; node = filter->nodes [node].dict) {
            const node_t *n = &filter->nodes [node];
            for (uint32_t k = 0; k < n->out_count; k++) {
                uint32_t index = filter->outs [n->out_first + k];
                const entry_t *entry = &filter->entries [index];
                if (!s_applies (self, entry))
                    continue;
                uint64_t start = end + 1 - entry->len;
                if (entry->first_word) {
                    unit_t *first = s_unit_of (self, start);
                    assert (first);
                    if (first->after_word)
                        continue;       //  inside a word of the text
                }
                if (entry->last_word) {
                    if (self->pending_count == self->pending_cap) {
                        self->pending_cap = self->pending_cap ? self->pending_cap * 2 : 4;
                        self->pending = realloc (self->pending, self->pending_cap * sizeof *self->pending);
                        assert (self->pending);
                    }
                    self->pending [self->pending_count++] = (pending_t) { index, start };
                }
                else
                    s_accept (self, index, start, end);
            }
        }
    }
    if (cls != MESH_WORD_TRANSPARENT)
        self->last_word = cls == MESH_WORD_SIGNIFICANT && word;
    s_settle (self, false, out);
}

//  The held incomplete sequence, as it is: its bytes one by one
static void
s_flush_tail (mesh_wordstream_t *self, mesh_buf_t out [MESH_WORDFILTER_FIELDS])
{
    size_t at = 0;
    while (at < self->tail_len && !self->blocked) {
        uint32_t cp;
        size_t n = mesh_wordfilter_decode (self->tail + at, self->tail_len - at, true, &cp);
        s_take (self, self->tail_field, self->tail + at, n, cp, out);
        at += n;
    }
    self->tail_len = 0;
}

bool
mesh_wordstream_feed (mesh_wordstream_t *self, int field, const char *text, size_t len,
                      mesh_buf_t out [MESH_WORDFILTER_FIELDS])
{
    assert (field >= 0 && field < MESH_WORDFILTER_FIELDS);
    if (self->blocked)
        return false;
    if (self->tail_len && self->tail_field != field)
        s_flush_tail (self, out);
    size_t at = 0;
    //  A sequence cut by the last piece: decode on from it
    while (self->tail_len && !self->blocked) {
        char joined [8];
        size_t more = MESH_MIN (len - at, (size_t) 4);
        memcpy (joined, self->tail, self->tail_len);
        memcpy (joined + self->tail_len, text + at, more);
        uint32_t cp;
        size_t n = mesh_wordfilter_decode (joined, self->tail_len + more, false, &cp);
        if (n == 0) {
            //  Still short: the whole piece joins the tail
            memcpy (self->tail + self->tail_len, text + at, more);
            self->tail_len += more;
            return true;
        }
        s_take (self, field, joined, n, cp, out);
        if (n >= self->tail_len) {
            at += n - self->tail_len;
            self->tail_len = 0;
        }
        else {
            memmove (self->tail, self->tail + n, self->tail_len - n);
            self->tail_len -= n;
        }
    }
    while (at < len && !self->blocked) {
        uint32_t cp;
        size_t n = mesh_wordfilter_decode (text + at, len - at, false, &cp);
        if (n == 0) {
            memcpy (self->tail, text + at, len - at);
            self->tail_len = len - at;
            self->tail_field = field;
            break;
        }
        s_take (self, field, text + at, n, cp, out);
        at += n;
    }
    return !self->blocked;
}

bool
mesh_wordstream_finish (mesh_wordstream_t *self, mesh_buf_t out [MESH_WORDFILTER_FIELDS])
{
    if (self->blocked)
        return false;
    s_flush_tail (self, out);
    if (self->blocked)
        return false;
    //  The end of the text ends every word
    s_decide_pending (self, false);
    s_settle (self, true, out);
    return !self->blocked;
}

bool
mesh_wordstream_blocked (const mesh_wordstream_t *self)
{
    return self->blocked;
}

size_t
mesh_wordstream_held (const mesh_wordstream_t *self)
{
    return mesh_buf_size (&self->bytes) + self->tail_len;
}

size_t
mesh_wordstream_match_count (const mesh_wordstream_t *self, int action)
{
    return action == MESH_WORD_BLOCK || action == MESH_WORD_MASK ? self->matches [action] : 0;
}

size_t
mesh_wordstream_matched (const mesh_wordstream_t *self, const uint32_t **entries)
{
    *entries = self->matched;
    return self->matched_count;
}

mesh_wordfilter_t *
mesh_wordstream_filter (const mesh_wordstream_t *self)
{
    return self->filter;
}

bool
mesh_wordfilter_text (mesh_wordfilter_t *self, const char *tenant, const char *text, size_t len,
                      mesh_buf_t *out, uint32_t *matched, size_t *matched_count)
{
    mesh_wordstream_t *stream = mesh_wordstream_new (self, tenant);
    mesh_buf_t outs [MESH_WORDFILTER_FIELDS];
    outs [0] = *out;
    mesh_buf_init (&outs [1]);
    bool ok = mesh_wordstream_feed (stream, MESH_WORD_CONTENT, text, len, outs)
           && mesh_wordstream_finish (stream, outs);
    *out = outs [0];
    mesh_buf_free (&outs [1]);
    const uint32_t *entries;
    size_t count = mesh_wordstream_matched (stream, &entries);
    if (matched && count)
        memcpy (matched, entries, count * sizeof *entries);
    if (matched_count)
        *matched_count = count;
    mesh_wordstream_destroy (&stream);
    return ok;
}

//  Selftest ---------------------------------------------------------------------

static mesh_wordfilter_t *
s_test_filter (void)
{
    const char *json =
        "{\"version\":7,\"words\":["
        "{\"id\":\"w1\",\"word\":\"darn\",\"action\":\"block\"},"
        "{\"id\":\"w2\",\"word\":\"heck\",\"action\":\"mask\"},"
        "{\"id\":\"w3\",\"word\":\"\\u574f\\u86cb\",\"action\":\"mask\"},"          //  坏蛋
        "{\"id\":\"w4\",\"tenant\":\"acme\",\"word\":\"widget\",\"action\":\"block\"},"
        "{\"id\":\"w5\",\"word\":\"Bad Word\",\"action\":\"mask\"},"
        "{\"id\":\"w6\",\"word\":\"ass\",\"action\":\"mask\"},"
        "{\"id\":\"w7\",\"tenant\":null,\"word\":\"\\u7981\\u8bcd\",\"action\":\"block\"}"   //  禁词
        "]}";
    char why [256];
    mesh_wordfilter_t *filter = mesh_wordfilter_parse (json, strlen (json), why, sizeof why);
    assert (filter);
    return filter;
}

//  Filters text whole (tenant NULL: every list) and compares
static void
s_test_whole (mesh_wordfilter_t *filter, const char *tenant, const char *text, const char *expect,
              bool ok)
{
    mesh_buf_t out;
    mesh_buf_init (&out);
    bool passed = mesh_wordfilter_text (filter, tenant, text, strlen (text), &out, NULL, NULL);
    mesh_buf_append (&out, "", 1);
    if (passed != ok || strcmp (mesh_buf_head (&out), expect) != 0) {
        fprintf (stderr, "mesh_wordfilter: \"%s\" gave \"%s\" (%s), expected \"%s\" (%s)\n", text,
                 mesh_buf_head (&out), passed ? "passed" : "blocked", expect, ok ? "passed" : "blocked");
        assert (false);
    }
    mesh_buf_free (&out);
}

void
mesh_wordfilter_test (bool verbose)
{
    (void) verbose;
    uint32_t cp, folded;
    bool word;
    //  The decoder: complete, cut (more may come), invalid
    assert (mesh_wordfilter_decode ("\xe5\x9d\x8f", 3, false, &cp) == 3 && cp == 0x574f);
    assert (mesh_wordfilter_decode ("\xe5\x9d", 2, false, &cp) == 0);
    assert (mesh_wordfilter_decode ("\xe5\x9d", 2, true, &cp) == 1 && cp == 0x110000 + 0xe5);
    assert (mesh_wordfilter_decode ("\xc0\x80", 2, false, &cp) == 1 && cp == 0x1100c0);
    assert (mesh_wordfilter_decode ("\xed\xa0\x80", 3, false, &cp) == 1);
    //  Classes and folding
    assert (mesh_wordfilter_classify ('Q', &folded, &word) == MESH_WORD_SIGNIFICANT && folded == 'q' && word);
    assert (mesh_wordfilter_classify (0xff31, &folded, &word) == MESH_WORD_SIGNIFICANT && folded == 'q');
    assert (mesh_wordfilter_classify (0xff0c, &folded, &word) == MESH_WORD_SEPARATOR);   //  ，
    assert (mesh_wordfilter_classify (0x3002, &folded, &word) == MESH_WORD_SEPARATOR);   //  。
    assert (mesh_wordfilter_classify (0x200b, &folded, &word) == MESH_WORD_TRANSPARENT);
    assert (mesh_wordfilter_classify (0x574f, &folded, &word) == MESH_WORD_SIGNIFICANT && !word);
    assert (mesh_wordfilter_classify (0x0416, &folded, &word) == MESH_WORD_SIGNIFICANT
            && folded == 0x0436 && word);
    uint32_t chars [8];
    assert (mesh_wordfilter_normalise ("B-a\xe2\x80\x8b" "D!", 8, chars, 8) == 3);
    assert (chars [0] == 'b' && chars [1] == 'a' && chars [2] == 'd');

    mesh_wordfilter_t *filter = s_test_filter ();
    assert (mesh_wordfilter_version (filter) == 7 && mesh_wordfilter_count (filter) == 7);
    assert (mesh_wordfilter_longest (filter) == 7);
    assert (mesh_wordfilter_applies (filter, "anyone") && mesh_wordfilter_applies (filter, NULL));
    mesh_wordentry_t entry = mesh_wordfilter_entry (filter, 3);
    assert (mesh_streq (entry.id, "w4") && mesh_streq (entry.list, "acme") && entry.action == MESH_WORD_BLOCK);

    //  Whole texts: masks, blocks, normalisation, boundaries, tenants
    s_test_whole (filter, "acme", "all fine", "all fine", true);
    s_test_whole (filter, "acme", "oh heck!", "oh ****!", true);
    s_test_whole (filter, "acme", "oh HECK and h e c k", "oh **** and * * * *", true);
    s_test_whole (filter, "acme", "a \xef\xbd\x88\xef\xbd\x85\xef\xbd\x83\xef\xbd\x8b b",     //  ｈｅｃｋ
                  "a **** b", true);
    s_test_whole (filter, "acme", "h\xe2\x80\x8b" "eck", "*\xe2\x80\x8b***", true);
    s_test_whole (filter, "acme", "well darn it", "well ", false);
    s_test_whole (filter, "acme", "well d.a.r.n it", "well ", false);
    s_test_whole (filter, "acme", "darned", "darned", true);           //  not a word of its own
    s_test_whole (filter, "acme", "class, was sent, an ass.", "class, was sent, an ***.", true);
    s_test_whole (filter, "acme", "\xe4\xbd\xa0\xe8\xbf\x99\xe4\xb8\xaa\xe5\x9d\x8f\xe8\x9b\x8b",
                  "\xe4\xbd\xa0\xe8\xbf\x99\xe4\xb8\xaa**", true);        //  你这个坏蛋
    s_test_whole (filter, "acme", "\xe5\x9d\x8f \xe8\x9b\x8b", "* *", true);
    s_test_whole (filter, "acme", "x\xe7\xa6\x81\xe8\xaf\x8dy", "x", false);
    s_test_whole (filter, "acme", "buy a widget", "buy a ", false);
    s_test_whole (filter, "other", "buy a widget", "buy a widget", true);
    s_test_whole (filter, NULL, "buy a widget", "buy a ", false);
    s_test_whole (filter, "acme", "a bad word here; BADWORD", "a *** **** here; *******", true);

    //  A stream: a word spelled one character a piece, across reasoning
    //  and content, never leaves before it is decided
    mesh_buf_t out [2];
    mesh_buf_init (&out [0]);
    mesh_buf_init (&out [1]);
    mesh_wordstream_t *stream = mesh_wordstream_new (filter, "acme");
    assert (mesh_wordstream_feed (stream, MESH_WORD_REASONING, "think: he", 9, out));
    assert (mesh_buf_size (&out [1]) == 7 && memcmp (mesh_buf_head (&out [1]), "think: ", 7) == 0);
    assert (mesh_wordstream_held (stream) == 2);
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "c", 1, out));
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "k", 1, out));
    assert (mesh_buf_size (&out [0]) == 0 && mesh_wordstream_held (stream) == 4);
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, " d", 2, out));
    assert (mesh_buf_size (&out [1]) == 9 && memcmp (mesh_buf_head (&out [1]), "think: **", 9) == 0);
    assert (mesh_buf_size (&out [0]) == 3 && memcmp (mesh_buf_head (&out [0]), "** ", 3) == 0);
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "\xe2\x80", 2, out));     //  a cut ZWSP
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "\x8b" "ar", 3, out));
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "n", 1, out));     //  "darned"?
    assert (!mesh_wordstream_feed (stream, MESH_WORD_CONTENT, " it", 3, out));
    assert (mesh_wordstream_blocked (stream) && !mesh_wordstream_finish (stream, out));
    assert (mesh_buf_size (&out [0]) == 3);
    assert (mesh_wordstream_match_count (stream, MESH_WORD_MASK) == 1);
    assert (mesh_wordstream_match_count (stream, MESH_WORD_BLOCK) == 1);
    const uint32_t *matched;
    assert (mesh_wordstream_matched (stream, &matched) == 2);
    assert (mesh_streq (mesh_wordfilter_entry (filter, matched [0]).id, "w2"));
    assert (mesh_streq (mesh_wordfilter_entry (filter, matched [1]).id, "w1"));
    mesh_wordstream_destroy (&stream);
    mesh_wordstream_destroy (&stream);
    //  A word that may go on is held until it cannot; the rest flows
    mesh_buf_reset (&out [0]);
    stream = mesh_wordstream_new (filter, "acme");
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "hello dar", 9, out));
    assert (mesh_buf_size (&out [0]) == 6 && mesh_wordstream_held (stream) == 3);
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "k", 1, out));
    assert (mesh_buf_size (&out [0]) == 10 && mesh_wordstream_held (stream) == 0);
    assert (mesh_wordstream_feed (stream, MESH_WORD_CONTENT, "ness ass", 8, out));
    assert (mesh_wordstream_held (stream) == 3);          //  "ass" may be "assets"
    assert (mesh_wordstream_finish (stream, out));
    assert (mesh_buf_size (&out [0]) == 18 && memcmp (mesh_buf_head (&out [0]), "hello darkness ***", 18) == 0);
    mesh_wordstream_destroy (&stream);

    //  Refusals
    char why [256];
    const char *bad [] = {
        "[]", "{\"version\":1}", "{\"version\":-1,\"words\":[]}",
        "{\"version\":1,\"words\":[{\"id\":\"a\",\"word\":\"...\",\"action\":\"block\"}]}",
        "{\"version\":1,\"words\":[{\"id\":\"a b\",\"word\":\"x\",\"action\":\"block\"}]}",
        "{\"version\":1,\"words\":[{\"id\":\"a\",\"word\":\"x\",\"action\":\"drop\"}]}",
        "{\"version\":1,\"words\":[{\"id\":\"a\",\"word\":\"x\",\"action\":\"mask\",\"tenant\":7}]}",
        "{\"version\":1,\"words\":[{\"id\":\"a\",\"word\":\"x\",\"action\":\"mask\",\"tenant\":\"\"}]}",
        "{\"version\":1,\"words\":[5]}",
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++)
        assert (!mesh_wordfilter_parse (bad [i], strlen (bad [i]), why, sizeof why) && *why);
    mesh_wordfilter_unref (&filter);
    mesh_wordfilter_unref (&filter);
    mesh_buf_free (&out [0]);
    mesh_buf_free (&out [1]);
}
