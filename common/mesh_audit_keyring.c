/*  mesh_audit_keyring: the audit store's AES-256 keys (see
    mesh_audit_keyring.h).  Any thread; a ring is not changed once loaded. */
#include "mesh_audit_keyring.h"
#include "mesh_audit_file.h"
#include "mesh_id.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_BYTES    MESH_AUDIT_KEYRING_KEY_BYTES
#define KEY_ID_MAX   MESH_AUDIT_KEYRING_ID_MAX
#define KEY_FILE_MAX (1 << 20)

struct mesh_audit_keyring_t {
    mesh_audit_keyring_key_t *keys;
    size_t count;
};

static bool
s_key_id_valid (const char *id, size_t len)
{
    if (len < 1 || len > KEY_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        ||    c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int
s_hex_value (char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t
mesh_audit_keyring_count (const mesh_audit_keyring_t *self)
{
    assert (self);
    return self->count;
}

const mesh_audit_keyring_key_t *
mesh_audit_keyring_key (const mesh_audit_keyring_t *self, size_t i)
{
    assert (self && i < self->count);
    return &self->keys [i];
}

const mesh_audit_keyring_key_t *
mesh_audit_keyring_find (const mesh_audit_keyring_t *self, const char *id, size_t len)
{
    for (size_t i = 0; self && i < self->count; i++)
        if (mesh_memeq (id, len, self->keys [i].id))
            return &self->keys [i];
    return NULL;
}

//  Parses text (lines cut at any of seps) into self.  source names it in
//  reasons ("FILE: line N", "key text: entry N").
static int
s_keyring_parse (mesh_audit_keyring_t *self, const char *text, size_t size, const char *seps,
                 const char *source, const char *unit, char *why, size_t why_size)
{
    size_t number = 0, seps_len = strlen (seps);
    const char *at = text, *end = text + size;
    while (at < end) {
        //  (memchr, not strchr: strchr finds a NUL byte in seps' end, and a
        //  NUL in a key file would cut its line in two)
        size_t line_len = 0;
        while (at + line_len < end && !memchr (seps, at [line_len], seps_len))
            line_len++;
        const char *line = at;
        at += line_len + 1;
        number++;
        const char *hash = memchr (line, '#', line_len);
        if (hash)
            line_len = (size_t) (hash - line);
        //  Two words: the id and 64 hex digits
        const char *words [3];
        size_t lens [3], count = 0;
        for (size_t i = 0; i < line_len; ) {
            while (i < line_len && (line [i] == ' ' || line [i] == '\t' || line [i] == '\r'))
                i++;
            if (i == line_len)
                break;
            size_t start = i;
            while (i < line_len && line [i] != ' ' && line [i] != '\t' && line [i] != '\r')
                i++;
            if (count < 3) {
                words [count] = line + start;
                lens [count] = i - start;
            }
            count++;
        }
        if (count == 0)
            continue;
        if (count != 2)
            return mesh_fail (why, why_size, "%s: %s %zu: expected \"<key id> <64 hex digits>\"",
                              source, unit, number);
        if (!s_key_id_valid (words [0], lens [0]))
            return mesh_fail (why, why_size, "%s: %s %zu: a key id is 1-%d letters, digits, "
                              ". _ or -", source, unit, number, KEY_ID_MAX);
        if (lens [1] != 2 * KEY_BYTES)
            return mesh_fail (why, why_size, "%s: %s %zu: the key is not %d hex digits", source,
                              unit, number, 2 * KEY_BYTES);
        mesh_audit_keyring_key_t key;
        memcpy (key.id, words [0], lens [0]);
        key.id [lens [0]] = 0;
        for (size_t i = 0; i < KEY_BYTES; i++) {
            int hi = s_hex_value (words [1][2 * i]), lo = s_hex_value (words [1][2 * i + 1]);
            if (hi < 0 || lo < 0) {
                OPENSSL_cleanse (&key, sizeof key);
                return mesh_fail (why, why_size, "%s: %s %zu: the key is not %d hex digits",
                                  source, unit, number, 2 * KEY_BYTES);
            }
            key.key [i] = (unsigned char) (hi << 4 | lo);
        }
        const mesh_audit_keyring_key_t *known = mesh_audit_keyring_find (self, key.id,
                                                                         strlen (key.id));
        if (known && memcmp (known->key, key.key, KEY_BYTES) != 0) {
            OPENSSL_cleanse (&key, sizeof key);
            return mesh_fail (why, why_size, "%s: %s %zu: key id '%s' is taken by another key",
                              source, unit, number, known->id);
        }
        if (!known) {
            mesh_audit_keyring_key_t *keys = realloc (self->keys, (self->count + 1) * sizeof *keys);
            assert (keys);
            self->keys = keys;
            self->keys [self->count++] = key;
        }
        OPENSSL_cleanse (&key, sizeof key);
    }
    return 0;
}

//  Reads a whole file of at most KEY_FILE_MAX bytes; the caller cleanses
//  and frees *text.
static int
s_read_file (int fd, const char *path, char **text, size_t *size, char *why, size_t why_size)
{
    *text = malloc (KEY_FILE_MAX + 1);
    assert (*text);
    *size = 0;
    for (;;) {
        ssize_t n = pread (fd, *text + *size, KEY_FILE_MAX + 1 - *size, (off_t) *size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mesh_fail (why, why_size, "%s: %s", path, strerror (errno));
        if (n == 0)
            break;
        *size += (size_t) n;
        if (*size > KEY_FILE_MAX)
            return mesh_fail (why, why_size, "%s: larger than %d bytes", path, KEY_FILE_MAX);
    }
    return 0;
}

static void
s_free_text (char **text, size_t size)
{
    if (*text) {
        OPENSSL_cleanse (*text, size);
        free (*text);
        *text = NULL;
    }
}

mesh_audit_keyring_t *
mesh_audit_keyring_load (const char *path, const char *env_text, char *why, size_t why_size)
{
    assert (path || env_text);
    mesh_audit_keyring_t *self = calloc (1, sizeof *self);
    assert (self);
    char *text = NULL;
    size_t size = 0;
    if (path) {
        int fd = open (path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            mesh_fail (why, why_size, "%s: %s", path, strerror (errno));
            goto failed;
        }
        int rc = s_read_file (fd, path, &text, &size, why, why_size);
        close (fd);
        if (rc < 0
        ||  s_keyring_parse (self, text, size, "\n", path, "line", why, why_size) < 0)
            goto failed;
        s_free_text (&text, size);
    }
    if (env_text
    &&  s_keyring_parse (self, env_text, strlen (env_text), ";\n", "key text", "entry",
                         why, why_size) < 0)
        goto failed;
    if (self->count == 0) {
        mesh_fail (why, why_size, "%s: no key", path ? path : "key text");
        goto failed;
    }
    return self;
failed:
    s_free_text (&text, size);
    mesh_audit_keyring_destroy (&self);
    return NULL;
}

void
mesh_audit_keyring_destroy (mesh_audit_keyring_t **self_p)
{
    assert (self_p);
    mesh_audit_keyring_t *self = *self_p;
    if (self) {
        if (self->keys) {
            OPENSSL_cleanse (self->keys, self->count * sizeof *self->keys);
            free (self->keys);
        }
        free (self);
        *self_p = NULL;
    }
}

const char *
mesh_audit_keyring_active (mesh_audit_keyring_t *self)
{
    return mesh_audit_keyring_active_key (self)->id;
}

const mesh_audit_keyring_key_t *
mesh_audit_keyring_active_key (const mesh_audit_keyring_t *self)
{
    assert (self && self->count);
    return &self->keys [self->count - 1];
}

static int
s_write_all (int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write (fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        size -= (size_t) n;
    }
    return 0;
}

int
mesh_audit_keyring_rotate (const char *path, char *new_id, size_t new_id_size,
                           char *why, size_t why_size)
{
    int fd = open (path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return mesh_fail (why, why_size, "%s: %s", path, strerror (errno));
    //  Two rotations at once must not pick the same id
    if (flock (fd, LOCK_EX) < 0) {
        int error = errno;
        close (fd);
        return mesh_fail (why, why_size, "%s: lock: %s", path, strerror (error));
    }
    char *text = NULL;
    size_t size = 0;
    int rc = -1;
    mesh_audit_keyring_t ring = { NULL, 0 };
    char line [KEY_ID_MAX + 2 * KEY_BYTES + 4];
    if (s_read_file (fd, path, &text, &size, why, why_size) < 0
    ||  s_keyring_parse (&ring, text, size, "\n", path, "line", why, why_size) < 0)
        goto done;

    //  key-YYYYMMDD-HHMMSS, with -2, -3 ... when that is taken
    char id [KEY_ID_MAX + 1];
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    char stamp [20];                    //  19 characters and a NUL
    strftime (stamp, sizeof stamp, "key-%Y%m%d-%H%M%S", &tm);
    snprintf (id, sizeof id, "%s", stamp);
    for (unsigned n = 2; mesh_audit_keyring_find (&ring, id, strlen (id)) && n < 100000; n++)
        snprintf (id, sizeof id, "%.19s-%u", stamp, n);
    if (strlen (id) + 1 > new_id_size) {
        mesh_fail (why, why_size, "key id buffer too small");
        goto done;
    }
    unsigned char key [KEY_BYTES];
    mesh_random (key, sizeof key);
    size_t len = (size_t) snprintf (line, sizeof line, "%s%s ",
                                    size && text [size - 1] != '\n' ? "\n" : "", id);
    for (size_t i = 0; i < KEY_BYTES; i++)
        len += (size_t) snprintf (line + len, sizeof line - len, "%02x", key [i]);
    line [len++] = '\n';
    OPENSSL_cleanse (key, sizeof key);
    if (s_write_all (fd, line, len) < 0 || fsync (fd) < 0) {
        mesh_fail (why, why_size, "%s: %s", path, strerror (errno));
        goto done;
    }
    if (size == 0)
        mesh_audit_file_sync_parent (path);
    snprintf (new_id, new_id_size, "%s", id);
    rc = 0;
done:
    OPENSSL_cleanse (line, sizeof line);
    s_free_text (&text, size);
    if (ring.keys) {
        OPENSSL_cleanse (ring.keys, ring.count * sizeof *ring.keys);
        free (ring.keys);
    }
    close (fd);
    return rc;
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"

#define T_KEY1 MESH_AUDIT_SAMPLE_KEY1
#define T_KEY2 MESH_AUDIT_SAMPLE_KEY2

//  Key ring: files, text, bad lines
static void
s_test_load (const char *root)
{
    char path [4096], other [4096], why [256];
    //  Key ring: a file with comments and blank lines, the last key active
    snprintf (path, sizeof path, "%s/keys", root);
    mesh_audit_sample_write (path, "# audit keys\n\n" T_KEY1 "  # the first\n\t" T_KEY2 "\n");
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (path, NULL, why, sizeof why);
    assert (keys && keys->count == 2 && mesh_streq (mesh_audit_keyring_active (keys), "k2"));
    mesh_audit_keyring_destroy (&keys);
    mesh_audit_keyring_destroy (&keys);
    assert (keys == NULL);
    //  The same lines in an environment variable, ';'-separated
    keys = mesh_audit_keyring_load (NULL, T_KEY2 ";" T_KEY1 ";", why, sizeof why);
    assert (keys && mesh_streq (mesh_audit_keyring_active (keys), "k1"));
    assert (mesh_audit_keyring_count (keys) == 2
            && mesh_streq (mesh_audit_keyring_key (keys, 0)->id, "k2")
            && mesh_audit_keyring_key (keys, 1) == mesh_audit_keyring_active_key (keys));
    mesh_audit_keyring_destroy (&keys);
    //  File then text: the text's last key is active; a repeated id is
    //  fine with its own key, refused with another
    keys = mesh_audit_keyring_load (path, T_KEY1, why, sizeof why);
    assert (keys && keys->count == 2);
    mesh_audit_keyring_destroy (&keys);
    assert (!mesh_audit_keyring_load (path, "k1 " "ff" "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                                      why, sizeof why));
    assert (strstr (why, "taken"));
    //  Bad lines are named by their number
    const char *bad [] = { "k1\n", "k1 00\n", "k/1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
                           "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n",
                           "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f x\n",
                           "k123456789012345678901234567890123 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        char text [512];
        snprintf (text, sizeof text, "# keys\n%s", bad [i]);
        mesh_audit_sample_write (path, text);
        assert (!mesh_audit_keyring_load (path, NULL, why, sizeof why));
        assert (strstr (why, "line 2"));
    }
    //  A NUL byte is not a line's end (it was, and two keys on one line
    //  loaded): the line is refused
    FILE *file = fopen (path, "w");
    assert (file);
    fputs (T_KEY1, file);
    fputc (0, file);
    fputs (T_KEY2 "\n", file);
    fclose (file);
    assert (!mesh_audit_keyring_load (path, NULL, why, sizeof why));
    assert (strstr (why, "line 1: expected"));
    mesh_audit_sample_write (path, "# nothing\n\n");
    assert (!mesh_audit_keyring_load (path, NULL, why, sizeof why) && strstr (why, "no key"));
    assert (!mesh_audit_keyring_load (NULL, "", why, sizeof why) && strstr (why, "no key"));
    assert (!mesh_audit_keyring_load (NULL, "k1 00", why, sizeof why) && strstr (why, "entry 1"));
    snprintf (other, sizeof other, "%s/missing", root);
    assert (!mesh_audit_keyring_load (other, NULL, why, sizeof why) && strstr (why, other));
}

static void
s_test_rotate (const char *root)
{
    char path [4096], why [256];
    mesh_audit_keyring_t *keys;
    //  Rotation: makes the file (0600), appends, the new key active
    snprintf (path, sizeof path, "%s/rotated", root);
    char id1 [64], id2 [64];
    assert (mesh_audit_keyring_rotate (path, id1, sizeof id1, why, sizeof why) == 0);
    struct stat st;
    assert (stat (path, &st) == 0 && (st.st_mode & 0777) == 0600);
    assert (mesh_audit_keyring_rotate (path, id2, sizeof id2, why, sizeof why) == 0);
    assert (!mesh_streq (id1, id2) && strncmp (id1, "key-", 4) == 0);
    keys = mesh_audit_keyring_load (path, NULL, why, sizeof why);
    assert (keys && keys->count == 2 && mesh_streq (mesh_audit_keyring_active (keys), id2));
    mesh_audit_keyring_destroy (&keys);
    //  A file without its last newline gets one; a broken file is left alone
    mesh_audit_sample_write (path, T_KEY1);
    assert (mesh_audit_keyring_rotate (path, id1, sizeof id1, why, sizeof why) == 0);
    keys = mesh_audit_keyring_load (path, NULL, why, sizeof why);
    assert (keys && keys->count == 2 && mesh_streq (mesh_audit_keyring_active (keys), id1));
    mesh_audit_keyring_destroy (&keys);
    mesh_audit_sample_write (path, "k1 zz\n");
    assert (mesh_audit_keyring_rotate (path, id1, sizeof id1, why, sizeof why) == -1);
    assert (strstr (why, "line 1"));
}

void
mesh_audit_keyring_test (bool verbose)
{
    (void) verbose;
    char root [1024];
    mesh_audit_sample_tmpdir (root, sizeof root);
    s_test_load (root);
    s_test_rotate (root);
    //  Lookup by id; a NULL ring has no key
    char why [256];
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL, T_KEY1 ";" T_KEY2, why, sizeof why);
    assert (keys);
    const mesh_audit_keyring_key_t *key = mesh_audit_keyring_find (keys, "k1x", 2);
    assert (key && mesh_streq (key->id, "k1") && key->key [31] == 0x1f);
    assert (mesh_audit_keyring_active_key (keys) == mesh_audit_keyring_find (keys, "k2", 2));
    assert (!mesh_audit_keyring_find (keys, "k", 1) && !mesh_audit_keyring_find (NULL, "k1", 2));
    mesh_audit_keyring_destroy (&keys);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
