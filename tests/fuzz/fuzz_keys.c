/*  fuzz_keys: the audit key ring's parser on arbitrary text, as the audit
    service and seekmeshctl read $SEEKMESH_AUDIT_KEYS (entries separated by
    ';' or newlines, the text up to its first NUL) and the key file (lines
    separated by newlines, every byte of the file).

    Property: the parser gives the answer of a second, simple
    implementation of the format written here from its description
    (mesh_audit_keyring.h): the same keys in the same order with the same
    bytes and the same active key, or a refusal naming the same line or
    entry for the same reason.  An accepted ring written back as a key
    file reads back the same (round trip).  And no crash, leak or UB.        */
#include "fuzz.h"
#include "mesh_audit_keyring.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KEY_BYTES MESH_AUDIT_KEYRING_KEY_BYTES
#define ID_MAX    MESH_AUDIT_KEYRING_ID_MAX
#define MAX_KEYS  1024

//  The reference ---------------------------------------------------------------

typedef enum { REF_OK, REF_SHAPE, REF_ID, REF_HEX, REF_TAKEN, REF_NO_KEY } ref_verdict_t;

typedef struct {
    ref_verdict_t verdict;
    size_t line;                        //  of a refusal (1-based)
    size_t count;
    char ids [MAX_KEYS][ID_MAX + 1];
    unsigned char keys [MAX_KEYS][KEY_BYTES];
} ref_t;

static bool
s_in (char c, const char *set, size_t set_len)
{
    for (size_t i = 0; i < set_len; i++)
        if (set [i] == c)
            return true;
    return false;
}

static int
s_hex (char c)
{
    const char *digits = "0123456789abcdef";
    for (int i = 0; i < 16; i++)
        if (c == digits [i] || c == (digits [i] >= 'a' ? digits [i] - 32 : digits [i]))
            return i;
    return -1;
}

//  One line: what it says to do with the ring
static ref_verdict_t
s_ref_line (ref_t *ref, const char *line, size_t len)
{
    //  A comment runs from '#' to the end of the line
    for (size_t i = 0; i < len; i++)
        if (line [i] == '#')
            len = i;
    //  Words: runs of bytes that are not space, tab or CR
    size_t starts [3], lens [3], words = 0;
    for (size_t i = 0; i < len; i++) {
        if (s_in (line [i], " \t\r", 3))
            continue;
        if (i == 0 || s_in (line [i - 1], " \t\r", 3)) {
            if (words < 3)
                starts [words] = i, lens [words] = 0;
            words++;
        }
        if (words <= 3)
            lens [words - 1]++;
    }
    if (words == 0)
        return REF_OK;
    if (words != 2)
        return REF_SHAPE;
    const char *id = line + starts [0];
    if (lens [0] < 1 || lens [0] > ID_MAX)
        return REF_ID;
    for (size_t i = 0; i < lens [0]; i++)
        if (!((id [i] | 32) >= 'a' && (id [i] | 32) <= 'z') && !(id [i] >= '0' && id [i] <= '9')
        &&  !s_in (id [i], "._-", 3))
            return REF_ID;
    if (lens [1] != 2 * KEY_BYTES)
        return REF_HEX;
    unsigned char key [KEY_BYTES];
    for (size_t i = 0; i < KEY_BYTES; i++) {
        int hi = s_hex (line [starts [1] + 2 * i]), lo = s_hex (line [starts [1] + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return REF_HEX;
        key [i] = (unsigned char) (hi * 16 + lo);
    }
    for (size_t k = 0; k < ref->count; k++)
        if (strlen (ref->ids [k]) == lens [0] && memcmp (ref->ids [k], id, lens [0]) == 0)
            return memcmp (ref->keys [k], key, KEY_BYTES) == 0 ? REF_OK : REF_TAKEN;
    FUZZ_ASSERT (ref->count < MAX_KEYS);
    memcpy (ref->ids [ref->count], id, lens [0]);
    ref->ids [ref->count][lens [0]] = 0;
    memcpy (ref->keys [ref->count++], key, KEY_BYTES);
    return REF_OK;
}

//  The whole text, its lines cut at any byte of seps
static void
s_ref_parse (ref_t *ref, const char *text, size_t size, const char *seps)
{
    memset (ref, 0, sizeof *ref);
    size_t line = 0, start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && !s_in (text [i], seps, strlen (seps)))
            continue;
        if (i == size && start == size && size > 0)
            break;                      //  nothing after the last separator
        line++;
        ref_verdict_t verdict = s_ref_line (ref, text + start, i - start);
        if (verdict != REF_OK) {
            ref->verdict = verdict;
            ref->line = line;
            return;
        }
        start = i + 1;
    }
    ref->verdict = ref->count ? REF_OK : REF_NO_KEY;
}

//  Comparing ---------------------------------------------------------------------

//  The words of the parser's reason for each verdict
static const char *s_reasons [] = {
    [REF_SHAPE] = "expected \"<key id> <64 hex digits>\"",
    [REF_ID] = "a key id is 1-32 letters",
    [REF_HEX] = "the key is not 64 hex digits",
    [REF_TAKEN] = "is taken by another key",
    [REF_NO_KEY] = "no key",
};

static void
s_compare (const ref_t *ref, mesh_audit_keyring_t *keys, const char *why, const char *unit)
{
    if (ref->verdict != REF_OK) {
        if (keys)
            fprintf (stderr, "fuzz: accepted %zu keys, the reference refuses %s %zu (%s)\n",
                     mesh_audit_keyring_count (keys), unit, ref->line, s_reasons [ref->verdict]);
        FUZZ_ASSERT (!keys);
        if (ref->verdict != REF_NO_KEY) {
            char where [64];
            snprintf (where, sizeof where, ": %s %zu: ", unit, ref->line);
            if (!strstr (why, where) || !strstr (why, s_reasons [ref->verdict]))
                fprintf (stderr, "fuzz: refused with \"%s\", the reference with \"%s%s\"\n",
                         why, where, s_reasons [ref->verdict]);
            FUZZ_ASSERT (strstr (why, where) && strstr (why, s_reasons [ref->verdict]));
        }
        else
            FUZZ_ASSERT (strstr (why, ": no key"));
        return;
    }
    if (!keys)
        fprintf (stderr, "fuzz: refused (%s), the reference accepts %zu keys\n", why, ref->count);
    FUZZ_ASSERT (keys);
    FUZZ_ASSERT (mesh_audit_keyring_count (keys) == ref->count);
    for (size_t k = 0; k < ref->count; k++) {
        const mesh_audit_keyring_key_t *key = mesh_audit_keyring_key (keys, k);
        FUZZ_ASSERT (strcmp (key->id, ref->ids [k]) == 0);
        FUZZ_ASSERT (memcmp (key->key, ref->keys [k], KEY_BYTES) == 0);
        FUZZ_ASSERT (mesh_audit_keyring_find (keys, ref->ids [k], strlen (ref->ids [k])) == key);
    }
    FUZZ_ASSERT (mesh_audit_keyring_active_key (keys)
                 == mesh_audit_keyring_key (keys, ref->count - 1));
}

//  An accepted ring written as a key file's text reads back the same
static void
s_round_trip (mesh_audit_keyring_t *keys)
{
    size_t count = mesh_audit_keyring_count (keys);
    char *text = malloc (count * (ID_MAX + 2 * KEY_BYTES + 2) + 1);
    FUZZ_ASSERT (text);
    size_t len = 0;
    for (size_t k = 0; k < count; k++) {
        const mesh_audit_keyring_key_t *key = mesh_audit_keyring_key (keys, k);
        len += (size_t) sprintf (text + len, "%s ", key->id);
        for (size_t i = 0; i < KEY_BYTES; i++)
            len += (size_t) sprintf (text + len, "%02x", key->key [i]);
        text [len++] = '\n';
    }
    text [len] = 0;
    char why [512] = "";
    mesh_audit_keyring_t *again = mesh_audit_keyring_load (NULL, text, why, sizeof why);
    FUZZ_ASSERT (again && mesh_audit_keyring_count (again) == count);
    for (size_t k = 0; k < count; k++) {
        const mesh_audit_keyring_key_t *one = mesh_audit_keyring_key (keys, k),
                                       *other = mesh_audit_keyring_key (again, k);
        FUZZ_ASSERT (strcmp (one->id, other->id) == 0);
        FUZZ_ASSERT (memcmp (one->key, other->key, KEY_BYTES) == 0);
    }
    mesh_audit_keyring_destroy (&again);
    free (text);
}

static void
s_check (const char *text, size_t size, const char *path, const char *seps, const char *unit)
{
    static ref_t ref;
    s_ref_parse (&ref, text, size, seps);
    char why [512] = "";
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (path, path ? NULL : text, why,
                                                          sizeof why);
    if (!keys)
        FUZZ_ASSERT (why [0]);
    s_compare (&ref, keys, why, unit);
    if (keys)
        s_round_trip (keys);
    mesh_audit_keyring_destroy (&keys);
    FUZZ_ASSERT (keys == NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  As the environment's text: up to the first NUL
    char *text = malloc (size + 1);
    FUZZ_ASSERT (text);
    memcpy (text, data, size);
    text [size] = 0;
    s_check (text, strlen (text), NULL, ";\n", "entry");
    //  As a key file: every byte
    int fd = memfd_create ("keys", MFD_CLOEXEC);
    FUZZ_ASSERT (fd >= 0);
    FUZZ_ASSERT (size == 0 || write (fd, data, size) == (ssize_t) size);
    char path [64];
    snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
    s_check (text, size, path, "\n", "line");
    close (fd);
    free (text);
    return 0;
}
