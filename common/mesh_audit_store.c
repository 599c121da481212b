/*  mesh_audit_store: the audit store on disk (see mesh_audit_store.h).

    On disk, per day file audit-YYYY-MM-DD.db:
        records      seq, the record's plain fields (s_columns), enc_key_id,
                     prompt and response sealed, chain
        checkpoints  seq, chain, time_ms, signature
        meta         format, day, start_seq, start_chain

    A sealed field is  1 (format) | key id length | key id | nonce (12) |
    AES-256-GCM ciphertext | tag (16),  with AAD = request id | 0 | key id |
    0 | field name ("prompt" or "response"), so a ciphertext moved to
    another record, field or key fails its tag.  Nonces are a 96-bit
    counter that starts at a random value when the store opens and goes up
    by one per field: they never repeat within a session, and two sessions
    collide only if two random 96-bit starts land within a session's length
    of each other, so a key is good for far more than the 2^32 fields that
    random nonces would allow (NIST SP 800-38D 8.3).  (One nonce shared by
    a record's two fields "with distinct AADs" would not do: GCM under a
    repeated key and nonce leaks the XOR of the plaintexts and the
    authentication key, whatever the AAD.)

    The chain hashes the record's canonical bytes: the record as
    mesh_audit_encode writes it with the prompt and response replaced by
    their sealed forms, so every column, the key id and the nonces are
    covered:
        chain = SHA-256 (previous chain | seq (8 bytes, big-endian) |
                         SHA-256 (canonical bytes))
    The canonical bytes are not stored: they are a function of the columns
    (the encoder is deterministic), and storing them would add a tenth to
    what every record costs the disk, which is what bounds the store's rate.
    The chain starts from 32 zero bytes and continues across days; each
    file's meta holds the seq and chain value it starts from.  A checkpoint
    signs "seekmesh-audit-checkpoint/1" | seq | chain | time_ms (Ed25519).

    Writer: the thread that owns a store.  Readers: any thread, their own
    read-only connections.                                                    */
#include "mesh_audit_store.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <openssl/pem.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_BYTES        32
#define KEY_ID_MAX       32
#define NONCE_BYTES      12
#define TAG_BYTES        16
#define CHAIN_BYTES      32
#define SEAL_FORMAT      1
#define STORE_FORMAT     1
#define DAY_MS           86400000LL
#define SKEW_MS          3600000LL      //  clocks of ingress and audit may differ this much
#define KEY_FILE_MAX     (1 << 20)
#define PAGE_SIZE        65536          //  rows of a few KiB: several to a page
#define CHECKPOINT_TEXT  "seekmesh-audit-checkpoint/1"
#define WAL_PAGES_KICK   256            //  16 MiB in the WAL: wake the checkpointer
#define WAL_PAGES_MAX    4096           //  256 MiB: it fell behind, the writer helps
#define WAL_IDLE_MS      1000           //  a WAL with anything in it is copied this often

//  Key ring -------------------------------------------------------------------

typedef struct {
    char id [KEY_ID_MAX + 1];
    unsigned char key [KEY_BYTES];
} audit_key_t;

struct mesh_audit_keyring_t {
    audit_key_t *keys;
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

static const audit_key_t *
s_keyring_find (const mesh_audit_keyring_t *self, const char *id, size_t len)
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
    size_t number = 0;
    const char *at = text, *end = text + size;
    while (at < end) {
        size_t line_len = 0;
        while (at + line_len < end && !strchr (seps, at [line_len]))
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
        audit_key_t key;
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
        const audit_key_t *known = s_keyring_find (self, key.id, strlen (key.id));
        if (known && memcmp (known->key, key.key, KEY_BYTES) != 0) {
            OPENSSL_cleanse (&key, sizeof key);
            return mesh_fail (why, why_size, "%s: %s %zu: key id '%s' is taken by another key",
                              source, unit, number, known->id);
        }
        if (!known) {
            audit_key_t *keys = realloc (self->keys, (self->count + 1) * sizeof *keys);
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
    assert (self && self->count);
    return self->keys [self->count - 1].id;
}

//  fsyncs the directory holding path, so a file created there survives
static void
s_sync_parent (const char *path)
{
    char dir [4096];
    snprintf (dir, sizeof dir, "%s", path);
    char *slash = strrchr (dir, '/');
    if (slash == dir)
        slash [1] = 0;
    else
    if (slash)
        *slash = 0;
    else
        strcpy (dir, ".");
    int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync (fd);
        close (fd);
    }
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
    for (unsigned n = 2; s_keyring_find (&ring, id, strlen (id)) && n < 100000; n++)
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
        s_sync_parent (path);
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

//  Signer ---------------------------------------------------------------------

static EVP_PKEY *
s_read_pem (const char *path, bool private_key, char *why, size_t why_size)
{
    FILE *file = fopen (path, "re");
    if (!file) {
        mesh_fail (why, why_size, "%s: %s", path, strerror (errno));
        return NULL;
    }
    EVP_PKEY *key = private_key ? PEM_read_PrivateKey (file, NULL, NULL, NULL)
                                : PEM_read_PUBKEY (file, NULL, NULL, NULL);
    fclose (file);
    if (!key)
        mesh_fail (why, why_size, "%s: not a PEM %s key", path, private_key ? "private" : "public");
    else
    if (EVP_PKEY_get_id (key) != EVP_PKEY_ED25519) {
        mesh_fail (why, why_size, "%s: not an Ed25519 key", path);
        EVP_PKEY_free (key);
        key = NULL;
    }
    return key;
}

//  Writes key (its private part if private_key) to a new file at path.
static int
s_write_pem (const char *path, EVP_PKEY *key, bool private_key, char *why, size_t why_size)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, private_key ? 0600 : 0644);
    if (fd < 0)
        return mesh_fail (why, why_size, "%s: %s", path, strerror (errno));
    FILE *file = fdopen (fd, "w");
    assert (file);
    bool ok = private_key ? PEM_write_PrivateKey (file, key, NULL, NULL, 0, NULL, NULL)
                          : PEM_write_PUBKEY (file, key);
    ok = fflush (file) == 0 && ok && fsync (fd) == 0;
    fclose (file);
    if (!ok) {
        unlink (path);
        return mesh_fail (why, why_size, "%s: cannot write the key", path);
    }
    s_sync_parent (path);
    return 0;
}

EVP_PKEY *
mesh_audit_signer_load (const char *private_path, const char *public_path,
                        char *why, size_t why_size)
{
    EVP_PKEY *key = NULL;
    if (access (private_path, F_OK) == 0) {
        if (!(key = s_read_pem (private_path, true, why, why_size)))
            return NULL;
    }
    else {
        key = EVP_PKEY_Q_keygen (NULL, NULL, "ED25519");
        if (!key) {
            mesh_fail (why, why_size, "cannot make an Ed25519 key");
            return NULL;
        }
        if (s_write_pem (private_path, key, true, why, why_size) < 0) {
            EVP_PKEY_free (key);
            return NULL;
        }
    }
    if (public_path) {
        if (access (public_path, F_OK) != 0) {
            if (s_write_pem (public_path, key, false, why, why_size) < 0) {
                EVP_PKEY_free (key);
                return NULL;
            }
        }
        else {
            //  A public key that does not match would fail every verify
            EVP_PKEY *public_key = s_read_pem (public_path, false, why, why_size);
            bool same = public_key && EVP_PKEY_eq (key, public_key) == 1;
            EVP_PKEY_free (public_key);
            if (!same) {
                if (public_key)
                    mesh_fail (why, why_size, "%s: not the public key of %s", public_path,
                               private_path);
                EVP_PKEY_free (key);
                return NULL;
            }
        }
    }
    return key;
}

EVP_PKEY *
mesh_audit_public_key_load (const char *path, char *why, size_t why_size)
{
    return s_read_pem (path, false, why, why_size);
}

//  The columns ----------------------------------------------------------------

typedef enum { COL_TEXT, COL_U32, COL_U64, COL_BOOL } col_kind_t;
typedef struct {
    const char *name;
    col_kind_t kind;
    size_t offset;
} column_t;

#define COL(member, kind) { #member, kind, offsetof (mesh_audit_record_t, member) }
//  The record's plain fields, stored as columns (prompt and response are sealed)
static const column_t s_columns [] = {
    COL (id, COL_TEXT), COL (start_ms, COL_U64), COL (end_ms, COL_U64),
    COL (tenant, COL_TEXT), COL (key_id, COL_TEXT), COL (model_requested, COL_TEXT),
    COL (model, COL_TEXT), COL (endpoint, COL_TEXT), COL (region, COL_TEXT),
    COL (params, COL_TEXT), COL (stream, COL_BOOL), COL (status, COL_U32),
    COL (outcome, COL_TEXT), COL (error_code, COL_TEXT), COL (attempts, COL_U32),
    COL (cache_hit, COL_BOOL), COL (queue_us, COL_U64), COL (ttft_us, COL_U64),
    COL (total_us, COL_U64), COL (upstream_ttfb_us, COL_U64), COL (prompt_tokens, COL_U64),
    COL (completion_tokens, COL_U64), COL (cached_tokens, COL_U64),
    COL (reasoning_tokens, COL_U64), COL (bytes_out, COL_U64), COL (truncated, COL_BOOL),
};
#define NCOLS         MESH_ARRAY_SIZE (s_columns)
//  Positions in a row of "SELECT seq, <columns>, enc_key_id, prompt, response, chain"
#define AT_SEQ        0
#define AT_ENC_KEY_ID ((int) NCOLS + 1)
#define AT_PROMPT     ((int) NCOLS + 2)
#define AT_RESPONSE   ((int) NCOLS + 3)
#define AT_CHAIN      ((int) NCOLS + 4)

static void
s_column_list (mesh_buf_t *sql)
{
    mesh_buf_append_str (sql, "seq");
    for (size_t i = 0; i < NCOLS; i++)
        mesh_buf_printf (sql, ", %s", s_columns [i].name);
    mesh_buf_append_str (sql, ", enc_key_id, prompt, response, chain");
}

static uint64_t
s_get_number (const mesh_audit_record_t *record, const column_t *column)
{
    const char *at = (const char *) record + column->offset;
    switch (column->kind) {
        case COL_U32:  return *(const uint32_t *) at;
        case COL_U64:  return *(const uint64_t *) at;
        case COL_BOOL: return *(const bool *) at;
        default:       return 0;
    }
}

static void
s_set_number (mesh_audit_record_t *record, const column_t *column, uint64_t value)
{
    char *at = (char *) record + column->offset;
    switch (column->kind) {
        case COL_U32:  *(uint32_t *) at = (uint32_t) value; break;
        case COL_U64:  *(uint64_t *) at = value; break;
        case COL_BOOL: *(bool *) at = value != 0; break;
        default:       break;
    }
}

//  Day files --------------------------------------------------------------------

#define DAY_FILE_LEN 19                 //  audit-YYYY-MM-DD.db

static void
s_day_of (int64_t ms, char day [11])
{
    time_t seconds = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&seconds, &tm);
    strftime (day, 11, "%Y-%m-%d", &tm);
}

//  Milliseconds at the start of day ("YYYY-MM-DD", UTC); -1 if not a date
static int64_t
s_day_start_ms (const char *day)
{
    int y, m, d;
    char tail;
    if (strlen (day) != 10 || sscanf (day, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3
    ||  m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d };
    time_t t = timegm (&tm);
    struct tm back;
    gmtime_r (&t, &back);
    if (back.tm_mday != d)              //  2026-02-31
        return -1;
    return (int64_t) t * 1000;
}

static int
s_day_file_filter (const struct dirent *entry)
{
    const char *name = entry->d_name;
    if (strlen (name) != DAY_FILE_LEN || strncmp (name, "audit-", 6) != 0
    ||  strcmp (name + 16, ".db") != 0)
        return 0;
    char day [11];
    memcpy (day, name + 6, 10);
    day [10] = 0;
    return s_day_start_ms (day) >= 0;
}

//  The day files in dir, oldest first; -1 with a reason if dir is unreadable
static int
s_day_files (const char *dir, struct dirent ***names, char *why, size_t why_size)
{
    int count = scandir (dir, names, s_day_file_filter, alphasort);
    if (count < 0)
        return mesh_fail (why, why_size, "%s: %s", dir, strerror (errno));
    return count;
}

static void
s_free_names (struct dirent **names, int count)
{
    for (int i = 0; i < count; i++)
        free (names [i]);
    free (names);
}

static void
s_path (char *path, size_t size, const char *dir, const char *name)
{
    snprintf (path, size, "%s/%s", dir, name);
}

//  Hashing and sealing ---------------------------------------------------------

typedef struct {
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    EVP_CIPHER *aes;
    EVP_CIPHER_CTX *cipher;
    unsigned char key [KEY_BYTES];      //  the key cipher holds
    bool keyed;
} crypto_t;

static void
s_crypto_init (crypto_t *self)
{
    memset (self, 0, sizeof *self);
    self->sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
    self->md = EVP_MD_CTX_new ();
    self->aes = EVP_CIPHER_fetch (NULL, "AES-256-GCM", NULL);
    self->cipher = EVP_CIPHER_CTX_new ();
    assert (self->sha256 && self->md && self->aes && self->cipher);
}

static void
s_crypto_free (crypto_t *self)
{
    EVP_MD_free (self->sha256);
    EVP_MD_CTX_free (self->md);
    EVP_CIPHER_free (self->aes);
    EVP_CIPHER_CTX_free (self->cipher);
    OPENSSL_cleanse (self->key, sizeof self->key);
    memset (self, 0, sizeof *self);
}

//  Writes the msgpack bin header for size bytes, as msgpack-c's packer does
static size_t
s_bin_header (unsigned char out [5], size_t size)
{
    if (size < 256) {
        out [0] = 0xc4;
        out [1] = (unsigned char) size;
        return 2;
    }
    if (size < 65536) {
        out [0] = 0xc5;
        out [1] = (unsigned char) (size >> 8);
        out [2] = (unsigned char) size;
        return 3;
    }
    out [0] = 0xc6;
    for (int i = 0; i < 4; i++)
        out [1 + i] = (unsigned char) (size >> (24 - 8 * i));
    return 5;
}

//  How the encoding of a record with an empty prompt and response ends:
//  the two empty bins, then the truncated flag
#define PLAIN_TAIL 5

//  Encodes record's plain fields (prompt and response empty) into out;
//  -1 if the record breaks the codec's limits
static int
s_encode_plain (const mesh_audit_record_t *record, mesh_buf_t *out)
{
    mesh_audit_record_t plain = *record;
    plain.prompt = plain.response = (mesh_bytes_t) { NULL, 0 };
    mesh_buf_reset (out);
    if (mesh_audit_encode (&plain, out) < 0)
        return -1;
    const char *end = mesh_buf_head (out) + mesh_buf_size (out) - PLAIN_TAIL;
    assert (mesh_buf_size (out) > PLAIN_TAIL && memcmp (end, "\xc4\x00\xc4\x00", 4) == 0);
    return 0;
}

//  digest = SHA-256 (canonical bytes): the plain encoding with the sealed
//  prompt and response in place of its empty ones, hashed in pieces so
//  the ciphertexts are not copied again
static void
s_digest (crypto_t *self, const char *body, size_t body_size, const void *prompt,
          size_t prompt_size, const void *response, size_t response_size,
          unsigned char digest [CHAIN_BYTES])
{
    unsigned char header [5];
    assert (body_size > PLAIN_TAIL);
    EVP_DigestInit_ex (self->md, self->sha256, NULL);
    EVP_DigestUpdate (self->md, body, body_size - PLAIN_TAIL);
    EVP_DigestUpdate (self->md, header, s_bin_header (header, prompt_size));
    EVP_DigestUpdate (self->md, prompt, prompt_size);
    EVP_DigestUpdate (self->md, header, s_bin_header (header, response_size));
    EVP_DigestUpdate (self->md, response, response_size);
    EVP_DigestUpdate (self->md, body + body_size - 1, 1);
    EVP_DigestFinal_ex (self->md, digest, NULL);
}

//  out = SHA-256 (chain | seq | digest)
static void
s_chain_step (crypto_t *self, const unsigned char chain [CHAIN_BYTES], uint64_t seq,
              const unsigned char digest [CHAIN_BYTES], unsigned char out [CHAIN_BYTES])
{
    unsigned char seq_be [8];
    for (int i = 0; i < 8; i++)
        seq_be [i] = (unsigned char) (seq >> (56 - 8 * i));
    EVP_DigestInit_ex (self->md, self->sha256, NULL);
    EVP_DigestUpdate (self->md, chain, CHAIN_BYTES);
    EVP_DigestUpdate (self->md, seq_be, sizeof seq_be);
    EVP_DigestUpdate (self->md, digest, CHAIN_BYTES);
    EVP_DigestFinal_ex (self->md, out, NULL);
}

static void
s_crypto_set_key (crypto_t *self, const unsigned char key [KEY_BYTES], bool encrypt)
{
    //  The key schedule costs more than a small field: redo it only on a change
    if (self->keyed && memcmp (self->key, key, KEY_BYTES) == 0)
        return;
    if (encrypt)
        EVP_EncryptInit_ex (self->cipher, self->aes, NULL, key, NULL);
    else
        EVP_DecryptInit_ex (self->cipher, self->aes, NULL, key, NULL);
    memcpy (self->key, key, KEY_BYTES);
    self->keyed = true;
}

static size_t
s_aad (unsigned char *aad, const mesh_bytes_t *id, const char *key_id, size_t key_id_len,
       const char *field)
{
    size_t len = 0;
    memcpy (aad, id->data, id->size);
    len += id->size;
    aad [len++] = 0;
    memcpy (aad + len, key_id, key_id_len);
    len += key_id_len;
    aad [len++] = 0;
    memcpy (aad + len, field, strlen (field));
    return len + strlen (field);
}

//  Seals plain into out (replacing what it held).  0, or -1 if OpenSSL fails.
static int
s_seal (crypto_t *self, const audit_key_t *key, unsigned char nonce [NONCE_BYTES],
        const mesh_bytes_t *id, const char *field, const mesh_bytes_t *plain, mesh_buf_t *out)
{
    size_t id_len = strlen (key->id);
    size_t total = 2 + id_len + NONCE_BYTES + plain->size + TAG_BYTES;
    mesh_buf_reset (out);
    unsigned char *at = (unsigned char *) mesh_buf_reserve (out, total);
    at [0] = SEAL_FORMAT;
    at [1] = (unsigned char) id_len;
    memcpy (at + 2, key->id, id_len);
    //  The next nonce: the 96-bit counter, big-endian, plus one
    for (int i = NONCE_BYTES - 1; i >= 0 && ++nonce [i] == 0; i--)
        ;
    unsigned char *iv = at + 2 + id_len;
    memcpy (iv, nonce, NONCE_BYTES);
    unsigned char aad [MESH_ID_LEN + KEY_ID_MAX + 16];
    size_t aad_len = s_aad (aad, id, key->id, id_len, field);
    unsigned char *cipher_text = iv + NONCE_BYTES;
    int n = 0, tail = 0;
    s_crypto_set_key (self, key->key, true);
    if (EVP_EncryptInit_ex (self->cipher, NULL, NULL, NULL, iv) != 1
    ||  EVP_EncryptUpdate (self->cipher, NULL, &n, aad, (int) aad_len) != 1
    ||  (plain->size
         && EVP_EncryptUpdate (self->cipher, cipher_text, &n, (const unsigned char *) plain->data,
                               (int) plain->size) != 1)
    ||  EVP_EncryptFinal_ex (self->cipher, cipher_text + plain->size, &tail) != 1
    ||  EVP_CIPHER_CTX_ctrl (self->cipher, EVP_CTRL_GCM_GET_TAG, TAG_BYTES,
                             cipher_text + plain->size) != 1)
        return -1;
    mesh_buf_commit (out, total);
    return 0;
}

//  A sealed field's parts; -1 if it has not the shape of one.
typedef struct {
    const char *key_id;
    size_t key_id_len;
    const unsigned char *nonce;
    const unsigned char *cipher_text;
    size_t cipher_size;
    const unsigned char *tag;
} sealed_t;

static int
s_sealed_parse (const void *blob, size_t size, sealed_t *sealed)
{
    const unsigned char *at = blob;
    if (!blob || size < 2 || at [0] != SEAL_FORMAT || at [1] < 1 || at [1] > KEY_ID_MAX
    ||  size < 2u + at [1] + NONCE_BYTES + TAG_BYTES)
        return -1;
    sealed->key_id = (const char *) at + 2;
    sealed->key_id_len = at [1];
    sealed->nonce = at + 2 + at [1];
    sealed->cipher_text = sealed->nonce + NONCE_BYTES;
    sealed->cipher_size = size - 2 - at [1] - NONCE_BYTES - TAG_BYTES;
    sealed->tag = sealed->cipher_text + sealed->cipher_size;
    return 0;
}

//  Opens a sealed field of record id into out (NUL-terminated after its
//  size).  NULL, or why it could not.
static const char *
s_open_sealed (crypto_t *self, mesh_audit_keyring_t *keys, const mesh_bytes_t *id,
               const char *field, const void *blob, size_t size, mesh_buf_t *out)
{
    sealed_t sealed;
    if (s_sealed_parse (blob, size, &sealed) < 0)
        return "not a sealed field";
    const audit_key_t *key = s_keyring_find (keys, sealed.key_id, sealed.key_id_len);
    if (!key)
        return "unknown key id (not in the key file)";
    if (!mesh_id_valid (id->data, id->size))
        return "the record's id is not a request id";
    unsigned char aad [MESH_ID_LEN + KEY_ID_MAX + 16];
    size_t aad_len = s_aad (aad, id, sealed.key_id, sealed.key_id_len, field);
    mesh_buf_reset (out);
    unsigned char *plain = (unsigned char *) mesh_buf_reserve (out, sealed.cipher_size + 1);
    int n = 0, tail = 0;
    unsigned char tag [TAG_BYTES];
    memcpy (tag, sealed.tag, TAG_BYTES);
    s_crypto_set_key (self, key->key, false);
    if (EVP_DecryptInit_ex (self->cipher, NULL, NULL, NULL, sealed.nonce) != 1
    ||  EVP_DecryptUpdate (self->cipher, NULL, &n, aad, (int) aad_len) != 1
    ||  (sealed.cipher_size
         && EVP_DecryptUpdate (self->cipher, plain, &n, sealed.cipher_text,
                               (int) sealed.cipher_size) != 1)
    ||  EVP_CIPHER_CTX_ctrl (self->cipher, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) != 1
    ||  EVP_DecryptFinal_ex (self->cipher, plain + sealed.cipher_size, &tail) != 1) {
        OPENSSL_cleanse (plain, sealed.cipher_size);
        return "authentication failed: the ciphertext, its record id or its key id was altered";
    }
    plain [sealed.cipher_size] = 0;
    mesh_buf_commit (out, sealed.cipher_size);
    return NULL;
}

//  Checkpoints ------------------------------------------------------------------

static size_t
s_checkpoint_text (unsigned char *out, uint64_t seq, const unsigned char chain [CHAIN_BYTES],
                   int64_t time_ms)
{
    size_t len = sizeof CHECKPOINT_TEXT;             //  with its NUL
    memcpy (out, CHECKPOINT_TEXT, len);
    for (int i = 0; i < 8; i++)
        out [len++] = (unsigned char) (seq >> (56 - 8 * i));
    memcpy (out + len, chain, CHAIN_BYTES);
    len += CHAIN_BYTES;
    for (int i = 0; i < 8; i++)
        out [len++] = (unsigned char) ((uint64_t) time_ms >> (56 - 8 * i));
    return len;
}

#define CHECKPOINT_TEXT_MAX (sizeof CHECKPOINT_TEXT + 8 + CHAIN_BYTES + 8)
#define SIGNATURE_BYTES     64

static bool
s_checkpoint_valid (EVP_PKEY *public_key, uint64_t seq, const unsigned char *chain,
                    int64_t time_ms, const void *signature, size_t signature_size)
{
    unsigned char text [CHECKPOINT_TEXT_MAX];
    size_t len = s_checkpoint_text (text, seq, chain, time_ms);
    EVP_MD_CTX *md = EVP_MD_CTX_new ();
    bool valid = md && EVP_DigestVerifyInit (md, NULL, NULL, NULL, public_key) == 1
              && EVP_DigestVerify (md, signature, signature_size, text, len) == 1;
    EVP_MD_CTX_free (md);
    return valid;
}

//  The WAL checkpointer -------------------------------------------------------------
//
//  Copying the WAL into the database file (and syncing that) costs about as
//  much as writing the WAL.  A thread of the store does it with a
//  connection of its own and PASSIVE checkpoints, which never block the
//  writer, so that the writer's thread only writes the WAL.  The writer's
//  wal hook wakes it every WAL_PAGES_KICK pages; if it falls WAL_PAGES_MAX
//  behind the writer checkpoints too.

typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;                //  for the thread
    pthread_cond_t released;            //  for the writer: held went false
    char path [4096];                   //  the day file written now ("": none)
    bool kicked;
    bool held;                          //  the thread has a day file open
    bool stop;
} checkpointer_t;

static void *
s_checkpointer_run (void *arg)
{
    checkpointer_t *self = arg;
    sqlite3 *db = NULL;
    char open_path [4096] = "";
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        if (!self->kicked) {
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            until.tv_sec += WAL_IDLE_MS / 1000;
            pthread_cond_timedwait (&self->wake, &self->lock, &until);
            if (self->stop)
                break;
        }
        self->kicked = false;
        char path [4096];
        snprintf (path, sizeof path, "%s", self->path);
        pthread_mutex_unlock (&self->lock);
        if (db && strcmp (path, open_path) != 0) {
            sqlite3_close (db);
            db = NULL;
            pthread_mutex_lock (&self->lock);
            self->held = false;
            pthread_cond_broadcast (&self->released);
            pthread_mutex_unlock (&self->lock);
        }
        if (!db && *path) {
            if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
                != SQLITE_OK) {
                sqlite3_close (db);
                db = NULL;
            }
            else {
                sqlite3_busy_timeout (db, 100);
                sqlite3_exec (db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
                snprintf (open_path, sizeof open_path, "%s", path);
                pthread_mutex_lock (&self->lock);
                self->held = true;
                pthread_mutex_unlock (&self->lock);
            }
        }
        if (db) {
            int frames = 0, copied = 0;
            sqlite3_wal_checkpoint_v2 (db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied);
        }
        pthread_mutex_lock (&self->lock);
    }
    pthread_mutex_unlock (&self->lock);
    sqlite3_close (db);
    return NULL;
}

static void
s_checkpointer_start (checkpointer_t *self)
{
    memset (self, 0, sizeof *self);
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    pthread_cond_init (&self->released, NULL);
    int rc = pthread_create (&self->thread, NULL, s_checkpointer_run, self);
    assert (rc == 0);
}

static void
s_checkpointer_stop (checkpointer_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    pthread_cond_destroy (&self->wake);
    pthread_cond_destroy (&self->released);
    pthread_mutex_destroy (&self->lock);
}

//  Has the thread close its connection and waits for that, so that the
//  writer's is the last one to the file and closing it folds the WAL back
//  and removes it (rather than leave it to a reader of the old day)
static void
s_checkpointer_release (checkpointer_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->path [0] = 0;
    self->kicked = true;
    pthread_cond_signal (&self->wake);
    while (self->held)
        pthread_cond_wait (&self->released, &self->lock);
    pthread_mutex_unlock (&self->lock);
}

//  path NULL: only wake it
static void
s_checkpointer_kick (checkpointer_t *self, const char *path)
{
    pthread_mutex_lock (&self->lock);
    if (path)
        snprintf (self->path, sizeof self->path, "%s", path);
    self->kicked = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
}

//  The sealer ------------------------------------------------------------------------
//
//  Encoding, sealing and hashing a record does not depend on the records
//  before it (only the chain step does), and costs about a third of what
//  inserting it costs.  A thread of the store does it for the next chunk
//  while the writer inserts this one: two chunks, each at most
//  CHUNK_RECORDS records or CHUNK_BYTES of text (so a batch of large
//  records holds two chunks' worth in memory, not the batch's).

#define CHUNK_RECORDS 64
#define CHUNK_BYTES   (4u << 20)

typedef struct {
    mesh_buf_t body, prompt, response;  //  the plain encoding, the sealed fields
    unsigned char digest [CHAIN_BYTES];
} slot_t;

typedef struct {
    size_t first, count;                //  records [first, first + count)
    bool full;                          //  sealed, for the writer
    bool failed;                        //  the last record of it could not be
    char why [128];
    slot_t slots [CHUNK_RECORDS];
} chunk_t;

typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;                //  either side's change
    bool stop;
    //  The job: one append's records; busy until the sealer let go of them
    uint64_t job;
    const mesh_audit_record_t *records;
    size_t count;
    const audit_key_t *key;
    bool abort;
    bool busy;
    chunk_t chunks [2];
    //  The sealer's own (the writer touches them only while it is idle)
    crypto_t crypto;
    unsigned char nonce [NONCE_BYTES];
} sealer_t;

//  Fills chunk from record first on (sealer thread)
static void
s_sealer_fill (sealer_t *self, chunk_t *chunk, size_t first)
{
    chunk->first = first;
    chunk->count = 0;
    chunk->failed = false;
    size_t bytes = 0;
    while (first + chunk->count < self->count && chunk->count < CHUNK_RECORDS
    &&     (chunk->count == 0 || bytes < CHUNK_BYTES)) {
        const mesh_audit_record_t *record = &self->records [first + chunk->count];
        slot_t *slot = &chunk->slots [chunk->count++];
        if (s_encode_plain (record, &slot->body) < 0
        ||  record->prompt.size > MESH_AUDIT_MAX_TEXT || record->response.size > MESH_AUDIT_MAX_TEXT
        ||  (record->prompt.size && !record->prompt.data)
        ||  (record->response.size && !record->response.data)) {
            snprintf (chunk->why, sizeof chunk->why, "record %zu breaks the limits of "
                      "mesh_audit.h", first + chunk->count - 1);
            chunk->failed = true;
            return;
        }
        if (s_seal (&self->crypto, self->key, self->nonce, &record->id, "prompt",
                    &record->prompt, &slot->prompt) < 0
        ||  s_seal (&self->crypto, self->key, self->nonce, &record->id, "response",
                    &record->response, &slot->response) < 0) {
            snprintf (chunk->why, sizeof chunk->why, "AES-256-GCM failed");
            chunk->failed = true;
            return;
        }
        s_digest (&self->crypto, mesh_buf_head (&slot->body), mesh_buf_size (&slot->body),
                  mesh_buf_head (&slot->prompt), mesh_buf_size (&slot->prompt),
                  mesh_buf_head (&slot->response), mesh_buf_size (&slot->response),
                  slot->digest);
        bytes += record->prompt.size + record->response.size;
    }
}

static void *
s_sealer_run (void *arg)
{
    sealer_t *self = arg;
    uint64_t seen = 0;
    pthread_mutex_lock (&self->lock);
    for (;;) {
        while (!self->stop && self->job == seen)
            pthread_cond_wait (&self->cond, &self->lock);
        if (self->stop)
            break;
        seen = self->job;
        size_t next = 0;
        for (int c = 0; next < self->count && !self->abort; c ^= 1) {
            chunk_t *chunk = &self->chunks [c];
            while (chunk->full && !self->abort)
                pthread_cond_wait (&self->cond, &self->lock);
            if (self->abort)
                break;
            pthread_mutex_unlock (&self->lock);
            s_sealer_fill (self, chunk, next);
            pthread_mutex_lock (&self->lock);
            chunk->full = true;
            pthread_cond_broadcast (&self->cond);
            next += chunk->count;
            if (chunk->failed)
                break;
        }
        self->busy = false;
        pthread_cond_broadcast (&self->cond);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

static void
s_sealer_start (sealer_t *self)
{
    memset (self, 0, sizeof *self);
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->cond, NULL);
    s_crypto_init (&self->crypto);
    mesh_random (self->nonce, sizeof self->nonce);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < CHUNK_RECORDS; i++) {
            mesh_buf_init (&self->chunks [c].slots [i].body);
            mesh_buf_init (&self->chunks [c].slots [i].prompt);
            mesh_buf_init (&self->chunks [c].slots [i].response);
        }
    int rc = pthread_create (&self->thread, NULL, s_sealer_run, self);
    assert (rc == 0);
}

static void
s_sealer_stop (sealer_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    s_crypto_free (&self->crypto);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < CHUNK_RECORDS; i++) {
            slot_t *slot = &self->chunks [c].slots [i];
            if (slot->prompt.data)
                OPENSSL_cleanse (slot->prompt.data, slot->prompt.cap);
            mesh_buf_free (&slot->body);
            mesh_buf_free (&slot->prompt);
            mesh_buf_free (&slot->response);
        }
}

//  Hands records to the sealer (writer thread)
static void
s_sealer_begin (sealer_t *self, const mesh_audit_record_t *records, size_t count,
                const audit_key_t *key)
{
    pthread_mutex_lock (&self->lock);
    self->records = records;
    self->count = count;
    self->key = key;
    self->abort = false;
    self->busy = true;
    self->chunks [0].full = self->chunks [1].full = false;
    self->job++;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

//  The next sealed chunk, c (0, 1, 0, ...), once it is ready
static chunk_t *
s_sealer_take (sealer_t *self, int c)
{
    chunk_t *chunk = &self->chunks [c];
    pthread_mutex_lock (&self->lock);
    while (!chunk->full)
        pthread_cond_wait (&self->cond, &self->lock);
    pthread_mutex_unlock (&self->lock);
    return chunk;
}

//  Gives a chunk back to be filled again
static void
s_sealer_give (sealer_t *self, chunk_t *chunk)
{
    //  Keep one large record from pinning its size in memory
    for (size_t i = 0; i < chunk->count; i++) {
        mesh_buf_trim (&chunk->slots [i].prompt, 1 << 20);
        mesh_buf_trim (&chunk->slots [i].response, 1 << 20);
    }
    pthread_mutex_lock (&self->lock);
    chunk->full = false;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

//  Waits until the sealer has let go of the records; abort: stop it first
static void
s_sealer_end (sealer_t *self, bool abort)
{
    pthread_mutex_lock (&self->lock);
    self->abort |= abort;
    pthread_cond_broadcast (&self->cond);
    while (self->busy)
        pthread_cond_wait (&self->cond, &self->lock);
    pthread_mutex_unlock (&self->lock);
}

//  Writing ----------------------------------------------------------------------

struct mesh_audit_store_t {
    char *dir;
    mesh_audit_keyring_t *keys;         //  borrowed
    EVP_PKEY *signer;                   //  borrowed
    //  The day file written to
    sqlite3 *db;
    char day [11];
    int64_t day_start_ms;
    sqlite3_stmt *insert;
    sqlite3_stmt *insert_checkpoint;
    //  The day file before it, for finding records resent across midnight
    sqlite3 *prev_db;
    sqlite3_stmt *prev_lookup;
    //  The chain's head
    uint64_t seq;
    unsigned char chain [CHAIN_BYTES];
    uint64_t checkpoint_seq;            //  the last checkpoint's
    crypto_t crypto;                    //  the chain's steps
    mesh_buf_t sql;
    sealer_t sealer;
    checkpointer_t checkpointer;
    int lock_fd;                        //  writer.lock, held while open
};

//  After each commit of the writer (its thread), with the WAL's size
static int
s_on_wal (void *arg, sqlite3 *db, const char *name, int pages)
{
    mesh_audit_store_t *self = arg;
    if (pages >= WAL_PAGES_MAX)
        sqlite3_wal_checkpoint_v2 (db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    else
    if (pages >= WAL_PAGES_KICK)
        s_checkpointer_kick (&self->checkpointer, NULL);
    return SQLITE_OK;
}

static int
s_sql_fail (sqlite3 *db, const char *what, char *why, size_t why_size)
{
    return mesh_fail (why, why_size, "%s: %s", what, db ? sqlite3_errmsg (db) : "out of memory");
}

static int
s_exec (sqlite3 *db, const char *sql, const char *what, char *why, size_t why_size)
{
    char *error = NULL;
    if (sqlite3_exec (db, sql, NULL, NULL, &error) == SQLITE_OK)
        return 0;
    mesh_fail (why, why_size, "%s: %s", what, error ? error : sqlite3_errmsg (db));
    sqlite3_free (error);
    return -1;
}

static void
s_close_db (sqlite3 **db_p, sqlite3_stmt **stmts [], size_t count)
{
    for (size_t i = 0; i < count; i++) {
        sqlite3_finalize (*stmts [i]);
        *stmts [i] = NULL;
    }
    if (*db_p)
        sqlite3_close (*db_p);
    *db_p = NULL;
}

static void
s_close_day (mesh_audit_store_t *self)
{
    sqlite3_stmt **stmts [] = { &self->insert, &self->insert_checkpoint };
    s_close_db (&self->db, stmts, MESH_ARRAY_SIZE (stmts));
}

static void
s_close_prev (mesh_audit_store_t *self)
{
    sqlite3_stmt **stmts [] = { &self->prev_lookup };
    s_close_db (&self->prev_db, stmts, MESH_ARRAY_SIZE (stmts));
}

//  A read-only connection to a day file.  Where the directory is not
//  writable and no WAL is left (the service is stopped) SQLite cannot make
//  the -shm it wants, so the file is opened as immutable.
static sqlite3 *
s_open_read (const char *dir, const char *path, char *why, size_t why_size)
{
    sqlite3 *db = NULL;
    char wal [4200], uri [8400];
    snprintf (wal, sizeof wal, "%s-wal", path);
    int rc;
    if (access (dir, W_OK) != 0 && access (wal, F_OK) != 0) {
        snprintf (uri, sizeof uri, "file:%s?immutable=1", path);
        rc = sqlite3_open_v2 (uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
                              | SQLITE_OPEN_NOMUTEX, NULL);
    }
    else
        rc = sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        s_sql_fail (db, path, why, why_size);
        sqlite3_close (db);
        return NULL;
    }
    sqlite3_busy_timeout (db, 5000);
    return db;
}

//  Reads the file's meta: its start seq and chain.  -1 if it has none.
static int
s_read_meta (sqlite3 *db, const char *path, uint64_t *start_seq, unsigned char *start_chain,
             char *why, size_t why_size)
{
    sqlite3_stmt *stmt = NULL;
    int found = 0, format = 0;
    if (sqlite3_prepare_v2 (db, "SELECT name, value FROM meta", -1, &stmt, NULL) != SQLITE_OK)
        return s_sql_fail (db, path, why, why_size);
    while (sqlite3_step (stmt) == SQLITE_ROW) {
        const char *name = (const char *) sqlite3_column_text (stmt, 0);
        if (mesh_streq (name, "format"))
            format = sqlite3_column_int (stmt, 1);
        else
        if (mesh_streq (name, "start_seq") && sqlite3_column_type (stmt, 1) == SQLITE_INTEGER
        &&  sqlite3_column_int64 (stmt, 1) > 0) {
            *start_seq = (uint64_t) sqlite3_column_int64 (stmt, 1);
            found |= 1;
        }
        else
        if (mesh_streq (name, "start_chain") && sqlite3_column_type (stmt, 1) == SQLITE_BLOB
        &&  sqlite3_column_bytes (stmt, 1) == CHAIN_BYTES) {
            memcpy (start_chain, sqlite3_column_blob (stmt, 1), CHAIN_BYTES);
            found |= 2;
        }
    }
    sqlite3_finalize (stmt);
    if (format != STORE_FORMAT)
        return mesh_fail (why, why_size, "%s: not an audit store file of format %d", path,
                          STORE_FORMAT);
    if (found != 3)
        return mesh_fail (why, why_size, "%s: its meta table lacks the start seq or chain", path);
    return 0;
}

static int
s_prepare_day (mesh_audit_store_t *self, const char *path, char *why, size_t why_size)
{
    mesh_buf_reset (&self->sql);
    mesh_buf_append_str (&self->sql, "INSERT INTO records (");
    s_column_list (&self->sql);
    mesh_buf_append_str (&self->sql, ") VALUES (?");
    for (size_t i = 0; i < NCOLS + 4; i++)
        mesh_buf_append_str (&self->sql, ", ?");
    mesh_buf_append_str (&self->sql, ") ON CONFLICT (id) DO NOTHING");
    mesh_buf_append (&self->sql, "", 1);
    if (sqlite3_prepare_v3 (self->db, mesh_buf_head (&self->sql), -1, SQLITE_PREPARE_PERSISTENT,
                            &self->insert, NULL) != SQLITE_OK
    ||  sqlite3_prepare_v3 (self->db, "INSERT OR IGNORE INTO checkpoints (seq, chain, time_ms, "
                            "signature) VALUES (?, ?, ?, ?)", -1, SQLITE_PREPARE_PERSISTENT,
                            &self->insert_checkpoint, NULL) != SQLITE_OK)
        return s_sql_fail (self->db, path, why, why_size);
    return 0;
}

static int
s_open_prev (mesh_audit_store_t *self, const char *name, char *why, size_t why_size)
{
    char path [4096];
    s_path (path, sizeof path, self->dir, name);
    //  Read-write although it only reads: a read-only connection leaves the
    //  -wal and -shm it makes behind, and cannot recover a WAL left by a crash
    if (sqlite3_open_v2 (path, &self->prev_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
        != SQLITE_OK) {
        s_sql_fail (self->prev_db, path, why, why_size);
        s_close_prev (self);
        return -1;
    }
    sqlite3_busy_timeout (self->prev_db, 5000);
    if (sqlite3_prepare_v2 (self->prev_db, "SELECT 1 FROM records WHERE id = ?", -1,
                            &self->prev_lookup, NULL) != SQLITE_OK) {
        s_sql_fail (self->prev_db, path, why, why_size);
        s_close_prev (self);
        return -1;
    }
    return 0;
}

//  Opens (creating) the day file of day for writing.  A new file starts
//  where the chain is now; an existing one tells where the chain is.
static int
s_open_day (mesh_audit_store_t *self, const char *day, char *why, size_t why_size)
{
    char name [32], path [4096];
    snprintf (name, sizeof name, "audit-%s.db", day);
    s_path (path, sizeof path, self->dir, name);
    bool existed = access (path, F_OK) == 0;
    if (sqlite3_open_v2 (path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                         | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        s_sql_fail (self->db, path, why, why_size);
        s_close_day (self);
        return -1;
    }
    sqlite3_busy_timeout (self->db, 5000);
    //  synchronous=FULL: in WAL mode NORMAL syncs the WAL only at
    //  checkpoints, so a commit could be lost to a power cut after the
    //  service has acknowledged it and the ingress has forgotten the
    //  record.  FULL syncs the WAL at every commit, one fsync per batch.
    //  An 8 MiB page cache: appends touch the tail of each index only
    //  (64 MiB gave the same records/s at twice the RSS).
    mesh_buf_reset (&self->sql);
    mesh_buf_printf (&self->sql,
        "PRAGMA page_size = %d; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
        "PRAGMA cache_size = -8192; PRAGMA journal_size_limit = 67108864;", PAGE_SIZE);
    mesh_buf_append (&self->sql, "", 1);
    if (s_exec (self->db, mesh_buf_head (&self->sql), path, why, why_size) < 0)
        goto failed;

    uint64_t start_seq = 0;
    unsigned char start_chain [CHAIN_BYTES];
    char ignored [256];
    if (!existed
    ||  s_read_meta (self->db, path, &start_seq, start_chain, ignored, sizeof ignored) < 0) {
        sqlite3_stmt *stmt = NULL;
        if (existed) {
            //  A file with tables but no meta is not ours to write into
            int tables = 0;
            if (sqlite3_prepare_v2 (self->db, "SELECT count(*) FROM sqlite_master", -1, &stmt,
                                    NULL) == SQLITE_OK && sqlite3_step (stmt) == SQLITE_ROW)
                tables = sqlite3_column_int (stmt, 0);
            sqlite3_finalize (stmt);
            stmt = NULL;
            if (tables) {
                mesh_fail (why, why_size, "%s: %s", path, ignored);
                goto failed;
            }
        }
        mesh_buf_reset (&self->sql);
        mesh_buf_append_str (&self->sql, "BEGIN IMMEDIATE; CREATE TABLE records (seq INTEGER "
                             "PRIMARY KEY");
        for (size_t i = 0; i < NCOLS; i++)
            mesh_buf_printf (&self->sql, ", %s %s NOT NULL%s", s_columns [i].name,
                             s_columns [i].kind == COL_TEXT ? "TEXT" : "INTEGER",
                             i == 0 ? " UNIQUE" : "");
        mesh_buf_append_str (&self->sql,
            ", enc_key_id TEXT NOT NULL, prompt BLOB NOT NULL, response BLOB NOT NULL,"
            " chain BLOB NOT NULL);"
            "CREATE INDEX records_time ON records (start_ms);"
            "CREATE INDEX records_tenant ON records (tenant, start_ms);"
            "CREATE INDEX records_model ON records (model, start_ms);"
            "CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, chain BLOB NOT NULL,"
            " time_ms INTEGER NOT NULL, signature BLOB NOT NULL);"
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value);");
        mesh_buf_append (&self->sql, "", 1);
        if (s_exec (self->db, mesh_buf_head (&self->sql), path, why, why_size) < 0)
            goto failed;
        if (sqlite3_prepare_v2 (self->db, "INSERT INTO meta (name, value) VALUES ('format', ?),"
                                " ('day', ?), ('start_seq', ?), ('start_chain', ?)", -1, &stmt,
                                NULL) != SQLITE_OK) {
            s_sql_fail (self->db, path, why, why_size);
            goto failed;
        }
        sqlite3_bind_int (stmt, 1, STORE_FORMAT);
        sqlite3_bind_text (stmt, 2, day, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64 (stmt, 3, (int64_t) self->seq + 1);
        sqlite3_bind_blob (stmt, 4, self->chain, CHAIN_BYTES, SQLITE_TRANSIENT);
        int rc = sqlite3_step (stmt);
        sqlite3_finalize (stmt);
        if (rc != SQLITE_DONE || s_exec (self->db, "COMMIT", path, why, why_size) < 0) {
            if (rc != SQLITE_DONE)
                s_sql_fail (self->db, path, why, why_size);
            goto failed;
        }
        s_sync_parent (path);
    }
    else {
        //  The head: the last record, else where the file starts
        sqlite3_stmt *stmt = NULL;
        uint64_t seq = start_seq - 1;
        unsigned char chain [CHAIN_BYTES];
        memcpy (chain, start_chain, CHAIN_BYTES);
        if (sqlite3_prepare_v2 (self->db, "SELECT seq, chain FROM records ORDER BY seq DESC "
                                "LIMIT 1", -1, &stmt, NULL) != SQLITE_OK) {
            s_sql_fail (self->db, path, why, why_size);
            goto failed;
        }
        if (sqlite3_step (stmt) == SQLITE_ROW) {
            seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
            if (sqlite3_column_bytes (stmt, 1) != CHAIN_BYTES) {
                sqlite3_finalize (stmt);
                mesh_fail (why, why_size, "%s: seq %llu has no chain value", path,
                           (unsigned long long) seq);
                goto failed;
            }
            memcpy (chain, sqlite3_column_blob (stmt, 1), CHAIN_BYTES);
        }
        sqlite3_finalize (stmt);
        if (self->seq && (seq < self->seq || start_seq != self->seq + 1
                          || memcmp (start_chain, self->chain, CHAIN_BYTES) != 0)) {
            mesh_fail (why, why_size, "%s: does not continue the chain of the day before", path);
            goto failed;
        }
        self->seq = seq;
        memcpy (self->chain, chain, CHAIN_BYTES);
        if (sqlite3_prepare_v2 (self->db, "SELECT max(seq) FROM checkpoints", -1, &stmt,
                                NULL) == SQLITE_OK && sqlite3_step (stmt) == SQLITE_ROW)
            self->checkpoint_seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
        sqlite3_finalize (stmt);
    }
    if (s_prepare_day (self, path, why, why_size) < 0)
        goto failed;
    //  Replaces SQLite's own automatic checkpoints (s_on_wal)
    sqlite3_wal_hook (self->db, s_on_wal, self);
    s_checkpointer_kick (&self->checkpointer, path);
    snprintf (self->day, sizeof self->day, "%s", day);
    self->day_start_ms = s_day_start_ms (day);
    return 0;
failed:
    s_close_day (self);
    return -1;
}

//  True when the day file at path holds no table: made by a writer that
//  stopped before its first commit
static bool
s_empty_shell (const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int tables = -1;
    if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK
    &&  sqlite3_prepare_v2 (db, "SELECT count(*) FROM sqlite_master", -1, &stmt, NULL) == SQLITE_OK
    &&  sqlite3_step (stmt) == SQLITE_ROW)
        tables = sqlite3_column_int (stmt, 0);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
    return tables == 0;
}

static void
s_unlink_day (const char *path)
{
    char extra [4200];
    unlink (path);
    snprintf (extra, sizeof extra, "%s-wal", path);
    unlink (extra);
    snprintf (extra, sizeof extra, "%s-shm", path);
    unlink (extra);
}

mesh_audit_store_t *
mesh_audit_store_open (const char *dir, mesh_audit_keyring_t *keys, EVP_PKEY *signer,
                       char *why, size_t why_size)
{
    if (!keys) {
        mesh_fail (why, why_size, "no key ring: the audit store encrypts every record");
        return NULL;
    }
    if (mkdir (dir, 0700) < 0 && errno != EEXIST) {
        mesh_fail (why, why_size, "%s: %s", dir, strerror (errno));
        return NULL;
    }
    if (access (dir, W_OK | X_OK) != 0) {
        mesh_fail (why, why_size, "%s: %s", dir, strerror (errno));
        return NULL;
    }
    //  One writer a store: two would fork the chain
    char path [4096];
    snprintf (path, sizeof path, "%s/writer.lock", dir);
    int lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock (lock_fd, LOCK_EX | LOCK_NB) < 0) {
        mesh_fail (why, why_size, "%s: %s", path, errno == EWOULDBLOCK
                   ? "another process writes to this audit store" : strerror (errno));
        if (lock_fd >= 0)
            close (lock_fd);
        return NULL;
    }
    mesh_audit_store_t *self = calloc (1, sizeof *self);
    assert (self);
    self->lock_fd = lock_fd;
    self->dir = strdup (dir);
    self->keys = keys;
    self->signer = signer;
    s_crypto_init (&self->crypto);
    mesh_buf_init (&self->sql);
    s_sealer_start (&self->sealer);
    s_checkpointer_start (&self->checkpointer);

    //  The newest day file holds the head; the one before it, ids that
    //  may be resent
    struct dirent **names = NULL;
    int count = s_day_files (dir, &names, why, why_size);
    if (count < 0)
        goto failed;
    //  A newest file without tables: the chain is in the one before
    while (count > 0) {
        s_path (path, sizeof path, dir, names [count - 1]->d_name);
        if (!s_empty_shell (path))
            break;
        mesh_warn ("%s: empty, removed", path);
        s_unlink_day (path);
        free (names [--count]);
    }
    int rc = 0;
    if (count > 0) {
        char day [11];
        memcpy (day, names [count - 1]->d_name + 6, 10);
        day [10] = 0;
        rc = s_open_day (self, day, why, why_size);
        if (rc == 0 && count > 1)
            rc = s_open_prev (self, names [count - 2]->d_name, why, why_size);
    }
    s_free_names (names, count);
    if (rc < 0)
        goto failed;
    return self;
failed:
    mesh_audit_store_close (&self);
    return NULL;
}

void
mesh_audit_store_close (mesh_audit_store_t **self_p)
{
    assert (self_p);
    mesh_audit_store_t *self = *self_p;
    if (!self)
        return;
    //  The checkpointer's connection first, so that closing the writer's
    //  (the last) copies the WAL back and removes it
    s_checkpointer_stop (&self->checkpointer);
    s_sealer_stop (&self->sealer);
    s_close_day (self);
    s_close_prev (self);
    s_crypto_free (&self->crypto);
    mesh_buf_free (&self->sql);
    free (self->dir);
    close (self->lock_fd);              //  and with it the lock
    free (self);
    *self_p = NULL;
}

void
mesh_audit_store_set_keys (mesh_audit_store_t *self, mesh_audit_keyring_t *keys)
{
    assert (self && keys);
    self->keys = keys;
}

uint64_t
mesh_audit_store_seq (mesh_audit_store_t *self)
{
    return self->seq;
}

//  Writes a checkpoint of the head into the open day file, outside any
//  transaction of ours (SQLite makes the insert its own).
static int
s_write_checkpoint (mesh_audit_store_t *self, int64_t now_ms, char *why, size_t why_size)
{
    if (!self->signer)
        return mesh_fail (why, why_size, "no signing key");
    unsigned char text [CHECKPOINT_TEXT_MAX], signature [SIGNATURE_BYTES];
    size_t len = s_checkpoint_text (text, self->seq, self->chain, now_ms);
    size_t signature_size = sizeof signature;
    EVP_MD_CTX *md = EVP_MD_CTX_new ();
    bool signed_ok = md && EVP_DigestSignInit (md, NULL, NULL, NULL, self->signer) == 1
                  && EVP_DigestSign (md, signature, &signature_size, text, len) == 1;
    EVP_MD_CTX_free (md);
    if (!signed_ok)
        return mesh_fail (why, why_size, "cannot sign the checkpoint (not an Ed25519 key?)");
    sqlite3_stmt *stmt = self->insert_checkpoint;
    sqlite3_bind_int64 (stmt, 1, (int64_t) self->seq);
    sqlite3_bind_blob (stmt, 2, self->chain, CHAIN_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 3, now_ms);
    sqlite3_bind_blob (stmt, 4, signature, (int) signature_size, SQLITE_STATIC);
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    if (rc != SQLITE_DONE)
        return s_sql_fail (self->db, "checkpoint", why, why_size);
    self->checkpoint_seq = self->seq;
    return 0;
}

int
mesh_audit_store_checkpoint (mesh_audit_store_t *self, int64_t now_ms, char *why, size_t why_size)
{
    assert (self);
    if (self->seq == self->checkpoint_seq || !self->db)
        return 0;
    return s_write_checkpoint (self, now_ms, why, why_size);
}

//  Moves writing to the day file of now_ms when that day is later than the
//  open one's (never back: the files' order is the chain's).
static int
s_roll (mesh_audit_store_t *self, int64_t now_ms, char *why, size_t why_size)
{
    char day [11];
    s_day_of (now_ms, day);
    if (self->db && strcmp (day, self->day) <= 0)
        return 0;
    if (self->db) {
        //  Close the day with a checkpoint of its last record
        char reason [256];
        if (self->signer && self->seq != self->checkpoint_seq
        &&  s_write_checkpoint (self, now_ms, reason, sizeof reason) < 0)
            mesh_warn ("day %s closed without a checkpoint: %s", self->day, reason);
        char name [32];
        snprintf (name, sizeof name, "audit-%s.db", self->day);
        s_checkpointer_release (&self->checkpointer);
        s_close_day (self);
        s_close_prev (self);
        if (s_open_prev (self, name, reason, sizeof reason) < 0)
            mesh_warn ("cannot read %s for resent records: %s", name, reason);
    }
    return s_open_day (self, day, why, why_size);
}

static void
s_bind_text (sqlite3_stmt *stmt, int at, const mesh_bytes_t *text)
{
    sqlite3_bind_text (stmt, at, text->size ? text->data : "", (int) text->size, SQLITE_STATIC);
}

//  True when id is stored in the day file before the open one
static bool
s_stored_before (mesh_audit_store_t *self, const mesh_audit_record_t *record)
{
    if (!self->prev_lookup || (int64_t) record->start_ms >= self->day_start_ms + SKEW_MS)
        return false;
    sqlite3_bind_text (self->prev_lookup, 1, record->id.data, (int) record->id.size,
                       SQLITE_STATIC);
    bool found = sqlite3_step (self->prev_lookup) == SQLITE_ROW;
    sqlite3_reset (self->prev_lookup);
    return found;
}

int
mesh_audit_store_append (mesh_audit_store_t *self, const mesh_audit_record_t *records,
                         size_t count, int64_t now_ms, char *why, size_t why_size)
{
    assert (self);
    if (count == 0)
        return 0;
    if (s_roll (self, now_ms, why, why_size) < 0)
        return -1;
    const audit_key_t *key = &self->keys->keys [self->keys->count - 1];
    uint64_t seq = self->seq;
    unsigned char chain [CHAIN_BYTES];
    memcpy (chain, self->chain, CHAIN_BYTES);
    if (s_exec (self->db, "BEGIN IMMEDIATE", "begin", why, why_size) < 0)
        return -1;
    s_sealer_begin (&self->sealer, records, count, key);
    int stored = 0;
    sqlite3_stmt *stmt = self->insert;
    for (size_t done = 0, c = 0; done < count; c ^= 1) {
        chunk_t *chunk = s_sealer_take (&self->sealer, (int) c);
        for (size_t i = 0; i < chunk->count; i++) {
            if (chunk->failed && i == chunk->count - 1) {
                mesh_fail (why, why_size, "%s", chunk->why);
                goto failed;
            }
            const mesh_audit_record_t *record = &records [chunk->first + i];
            const slot_t *slot = &chunk->slots [i];
            if (s_stored_before (self, record))
                continue;
            unsigned char next [CHAIN_BYTES];
            s_chain_step (&self->crypto, chain, seq + 1, slot->digest, next);
            sqlite3_bind_int64 (stmt, 1, (int64_t) (seq + 1));
            for (size_t n = 0; n < NCOLS; n++) {
                const column_t *column = &s_columns [n];
                if (column->kind == COL_TEXT)
                    s_bind_text (stmt, (int) n + 2,
                                 (const mesh_bytes_t *) ((const char *) record + column->offset));
                else
                    sqlite3_bind_int64 (stmt, (int) n + 2,
                                        (int64_t) s_get_number (record, column));
            }
            sqlite3_bind_text (stmt, AT_ENC_KEY_ID + 1, key->id, -1, SQLITE_STATIC);
            sqlite3_bind_blob (stmt, AT_PROMPT + 1, mesh_buf_head (&slot->prompt),
                               (int) mesh_buf_size (&slot->prompt), SQLITE_STATIC);
            sqlite3_bind_blob (stmt, AT_RESPONSE + 1, mesh_buf_head (&slot->response),
                               (int) mesh_buf_size (&slot->response), SQLITE_STATIC);
            sqlite3_bind_blob (stmt, AT_CHAIN + 1, next, CHAIN_BYTES, SQLITE_STATIC);
            int rc = sqlite3_step (stmt);
            sqlite3_reset (stmt);
            if (rc != SQLITE_DONE) {
                s_sql_fail (self->db, "insert", why, why_size);
                goto failed;
            }
            if (sqlite3_changes (self->db) == 0)
                continue;               //  this request id is stored already
            seq++;
            memcpy (chain, next, CHAIN_BYTES);
            stored++;
        }
        done += chunk->count;
        s_sealer_give (&self->sealer, chunk);
    }
    sqlite3_clear_bindings (stmt);
    s_sealer_end (&self->sealer, false);
    if (s_exec (self->db, "COMMIT", "commit", why, why_size) < 0)
        goto failed;
    self->seq = seq;
    memcpy (self->chain, chain, CHAIN_BYTES);
    return stored;
failed:
    sqlite3_clear_bindings (stmt);
    s_sealer_end (&self->sealer, true);
    sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int
mesh_audit_store_retain (mesh_audit_store_t *self, int64_t now_ms, int64_t days)
{
    assert (self);
    if (days <= 0)
        return 0;
    char today [11], cutoff [11];
    s_day_of (now_ms, today);
    s_day_of (s_day_start_ms (today) - days * DAY_MS, cutoff);
    struct dirent **names = NULL;
    char why [256];
    int count = s_day_files (self->dir, &names, why, sizeof why);
    if (count < 0) {
        mesh_warn ("retention: %s", why);
        return 0;
    }
    int deleted = 0;
    for (int i = 0; i < count; i++) {
        const char *name = names [i]->d_name;
        //  Older than the cutoff day, and never the file being written
        if (strncmp (name + 6, cutoff, 10) >= 0 || (self->db && strncmp (name + 6, self->day, 10) == 0))
            continue;
        if (self->prev_db) {
            const char *prev = sqlite3_db_filename (self->prev_db, "main");
            if (prev && strstr (prev, name))
                s_close_prev (self);
        }
        char path [4096];
        s_path (path, sizeof path, self->dir, name);
        if (access (path, F_OK) < 0)
            continue;
        s_unlink_day (path);
        if (access (path, F_OK) == 0) {
            mesh_warn ("retention: %s: %s", path, strerror (errno));
            continue;
        }
        deleted++;
    }
    s_free_names (names, count);
    if (deleted) {
        char path [4096];
        s_path (path, sizeof path, self->dir, "x");
        s_sync_parent (path);
    }
    return deleted;
}

//  Reading ------------------------------------------------------------------------

//  A day file open for reading, with its statement stepped to a row
typedef struct {
    char name [DAY_FILE_LEN + 1];
    sqlite3 *db;
    sqlite3_stmt *stmt;
    bool has_row;
} reader_t;

static void
s_reader_close (reader_t *reader)
{
    sqlite3_finalize (reader->stmt);
    sqlite3_close (reader->db);
    reader->stmt = NULL;
    reader->db = NULL;
}

//  Fills record's plain fields from a row (text NUL-terminated, NULL read as "")
static void
s_row_record (sqlite3_stmt *stmt, mesh_audit_record_t *record)
{
    memset (record, 0, sizeof *record);
    for (size_t c = 0; c < NCOLS; c++) {
        const column_t *column = &s_columns [c];
        int at = (int) c + 1;
        if (column->kind == COL_TEXT) {
            const char *text = (const char *) sqlite3_column_text (stmt, at);
            mesh_bytes_t *bytes = (mesh_bytes_t *) ((char *) record + column->offset);
            *bytes = (mesh_bytes_t) { text ? text : "",
                                      text ? (size_t) sqlite3_column_bytes (stmt, at) : 0 };
        }
        else
            s_set_number (record, column, (uint64_t) sqlite3_column_int64 (stmt, at));
    }
}

int
mesh_audit_query (const char *dir, const mesh_audit_filter_t *filter, mesh_audit_keyring_t *keys,
                  mesh_audit_row_fn *fn, void *arg, char *why, size_t why_size)
{
    static const mesh_audit_filter_t none;
    if (!filter)
        filter = &none;
    struct dirent **names = NULL;
    int count = s_day_files (dir, &names, why, why_size);
    if (count < 0)
        return -1;
    reader_t *readers = calloc ((size_t) count + 1, sizeof *readers);
    assert (readers);
    size_t open_count = 0;
    int rc = 0;
    mesh_buf_t sql, prompt, response;
    mesh_buf_init (&sql);
    mesh_buf_init (&prompt);
    mesh_buf_init (&response);
    crypto_t crypto;
    s_crypto_init (&crypto);

    mesh_buf_append_str (&sql, "SELECT ");
    s_column_list (&sql);
    mesh_buf_append_str (&sql, " FROM records WHERE start_ms >= ?1 AND start_ms < ?2");
    if (filter->tenant)
        mesh_buf_append_str (&sql, " AND tenant = ?3");
    if (filter->model)
        mesh_buf_append_str (&sql, " AND (model = ?4 OR model_requested = ?4)");
    if (filter->outcome)
        mesh_buf_append_str (&sql, " AND outcome = ?5");
    if (filter->status)
        mesh_buf_append_str (&sql, " AND status = ?6");
    mesh_buf_append_str (&sql, " ORDER BY start_ms, seq");
    mesh_buf_append (&sql, "", 1);

    for (int i = 0; i < count; i++) {
        const char *name = names [i]->d_name;
        char day [11];
        memcpy (day, name + 6, 10);
        day [10] = 0;
        //  A file holds what was committed that day, which started before
        //  its end (give or take the clocks' skew)
        if (filter->since_ms && s_day_start_ms (day) + DAY_MS + SKEW_MS < filter->since_ms)
            continue;
        reader_t *reader = &readers [open_count];
        snprintf (reader->name, sizeof reader->name, "%.*s", DAY_FILE_LEN, name);
        char path [4096];
        s_path (path, sizeof path, dir, name);
        if (!(reader->db = s_open_read (dir, path, why, why_size))) {
            rc = -1;
            goto done;
        }
        open_count++;
        if (sqlite3_prepare_v2 (reader->db, mesh_buf_head (&sql), -1, &reader->stmt, NULL)
            != SQLITE_OK) {
            rc = s_sql_fail (reader->db, path, why, why_size);
            goto done;
        }
        sqlite3_bind_int64 (reader->stmt, 1, filter->since_ms);
        sqlite3_bind_int64 (reader->stmt, 2, filter->until_ms ? filter->until_ms : INT64_MAX);
        if (filter->tenant)
            sqlite3_bind_text (reader->stmt, 3, filter->tenant, -1, SQLITE_STATIC);
        if (filter->model)
            sqlite3_bind_text (reader->stmt, 4, filter->model, -1, SQLITE_STATIC);
        if (filter->outcome)
            sqlite3_bind_text (reader->stmt, 5, filter->outcome, -1, SQLITE_STATIC);
        if (filter->status)
            sqlite3_bind_int64 (reader->stmt, 6, filter->status);
        int step = sqlite3_step (reader->stmt);
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = s_sql_fail (reader->db, path, why, why_size);
            goto done;
        }
        reader->has_row = step == SQLITE_ROW;
    }

    //  Merge the files by time
    size_t emitted = 0;
    while (!filter->limit || emitted < filter->limit) {
        reader_t *next = NULL;
        for (size_t i = 0; i < open_count; i++) {
            reader_t *reader = &readers [i];
            if (!reader->has_row)
                continue;
            if (!next
            ||  sqlite3_column_int64 (reader->stmt, 2) < sqlite3_column_int64 (next->stmt, 2)
            ||  (sqlite3_column_int64 (reader->stmt, 2) == sqlite3_column_int64 (next->stmt, 2)
                 && sqlite3_column_int64 (reader->stmt, 0) < sqlite3_column_int64 (next->stmt, 0)))
                next = reader;
        }
        if (!next)
            break;
        mesh_audit_row_t row = { .seq = (uint64_t) sqlite3_column_int64 (next->stmt, AT_SEQ),
                                 .file = next->name };
        s_row_record (next->stmt, &row.record);
        const char *enc_key_id = (const char *) sqlite3_column_text (next->stmt, AT_ENC_KEY_ID);
        row.enc_key_id = enc_key_id ? enc_key_id : "";
        if (keys) {
            const char *error = s_open_sealed (&crypto, keys, &row.record.id, "prompt",
                                               sqlite3_column_blob (next->stmt, AT_PROMPT),
                                               (size_t) sqlite3_column_bytes (next->stmt, AT_PROMPT),
                                               &prompt);
            if (!error)
                error = s_open_sealed (&crypto, keys, &row.record.id, "response",
                                       sqlite3_column_blob (next->stmt, AT_RESPONSE),
                                       (size_t) sqlite3_column_bytes (next->stmt, AT_RESPONSE),
                                       &response);
            if (error)
                row.decrypt_error = error;
            else {
                row.decrypted = true;
                row.record.prompt = (mesh_bytes_t) { mesh_buf_head (&prompt), mesh_buf_size (&prompt) };
                row.record.response = (mesh_bytes_t) { mesh_buf_head (&response),
                                                       mesh_buf_size (&response) };
            }
        }
        rc = fn (arg, &row);
        if (prompt.data)
            OPENSSL_cleanse (prompt.data, prompt.cap);
        if (response.data)
            OPENSSL_cleanse (response.data, response.cap);
        if (rc != 0)
            goto done;
        emitted++;
        int step = sqlite3_step (next->stmt);
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = s_sql_fail (next->db, next->name, why, why_size);
            goto done;
        }
        next->has_row = step == SQLITE_ROW;
    }
done:
    for (size_t i = 0; i < open_count; i++)
        s_reader_close (&readers [i]);
    free (readers);
    s_free_names (names, count);
    s_crypto_free (&crypto);
    mesh_buf_free (&sql);
    mesh_buf_free (&prompt);
    mesh_buf_free (&response);
    return rc;
}

//  Verification ---------------------------------------------------------------------

typedef struct {
    uint64_t seq;
    unsigned char chain [CHAIN_BYTES];
    int64_t time_ms;
    bool signature_ok;
    char file [DAY_FILE_LEN + 1];       //  the day file that holds it
} checkpoint_t;

//  Checkpoints by seq; a file's own order breaks ties
static int
s_checkpoint_order (const void *a, const void *b)
{
    const checkpoint_t *left = a, *right = b;
    if (left->seq != right->seq)
        return left->seq < right->seq ? -1 : 1;
    int by_file = strcmp (left->file, right->file);
    if (by_file)
        return by_file;
    return left->time_ms < right->time_ms ? -1 : left->time_ms > right->time_ms;
}

static int
s_bad (mesh_buf_t *report, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

//  Writes the first bad record's line into report; returns 1
static int
s_bad (mesh_buf_t *report, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char line [1024];
    vsnprintf (line, sizeof line, fmt, args);
    va_end (args);
    mesh_buf_append_str (report, line);
    mesh_buf_append (report, "\n", 1);
    return 1;
}

//  Checks that a row's columns have their types and its sealed fields
//  their shape under the key id the row names; NULL, or what is wrong
static const char *
s_check_columns (sqlite3_stmt *stmt, char *what, size_t what_size)
{
    for (size_t c = 0; c < NCOLS; c++) {
        const column_t *column = &s_columns [c];
        int type = sqlite3_column_type (stmt, (int) c + 1);
        if (type != (column->kind == COL_TEXT ? SQLITE_TEXT : SQLITE_INTEGER)) {
            snprintf (what, what_size, "column %s is not %s", column->name,
                      column->kind == COL_TEXT ? "text" : "an integer");
            return what;
        }
    }
    const char *enc_key_id = sqlite3_column_type (stmt, AT_ENC_KEY_ID) == SQLITE_TEXT
                           ? (const char *) sqlite3_column_text (stmt, AT_ENC_KEY_ID) : NULL;
    for (int at = AT_PROMPT; at <= AT_RESPONSE; at++) {
        sealed_t sealed;
        if (sqlite3_column_type (stmt, at) != SQLITE_BLOB
        ||  s_sealed_parse (sqlite3_column_blob (stmt, at), (size_t) sqlite3_column_bytes (stmt, at),
                            &sealed) < 0) {
            snprintf (what, what_size, "column %s is not a sealed field",
                      at == AT_PROMPT ? "prompt" : "response");
            return what;
        }
        if (!enc_key_id || !mesh_memeq (sealed.key_id, sealed.key_id_len, enc_key_id)) {
            snprintf (what, what_size, "column enc_key_id is not the key id of its %s",
                      at == AT_PROMPT ? "prompt" : "response");
            return what;
        }
    }
    return NULL;
}

int
mesh_audit_verify (const char *dir, const char *from_date, EVP_PKEY *public_key,
                   mesh_buf_t *report, char *why, size_t why_size)
{
    if (from_date && s_day_start_ms (from_date) < 0)
        return mesh_fail (why, why_size, "'%s' is not a date (YYYY-MM-DD)", from_date);
    struct dirent **names = NULL;
    int count = s_day_files (dir, &names, why, why_size);
    if (count < 0)
        return -1;
    int first = 0;
    while (from_date && first < count && strncmp (names [first]->d_name + 6, from_date, 10) < 0)
        first++;

    int rc = 0;
    reader_t *readers = calloc ((size_t) (count - first) + 1, sizeof *readers);
    assert (readers);
    size_t files = 0, checkpoint_count = 0;
    checkpoint_t *checkpoints = NULL;
    uint64_t *start_seqs = calloc ((size_t) (count - first) + 1, sizeof *start_seqs);
    unsigned char (*start_chains) [CHAIN_BYTES] =
        calloc ((size_t) (count - first) + 1, CHAIN_BYTES);
    assert (start_seqs && start_chains);
    crypto_t crypto;
    s_crypto_init (&crypto);
    mesh_buf_t sql, plain;
    mesh_buf_init (&sql);
    mesh_buf_init (&plain);
    mesh_buf_append_str (&sql, "SELECT ");
    s_column_list (&sql);
    mesh_buf_append_str (&sql, " FROM records ORDER BY seq");
    mesh_buf_append (&sql, "", 1);

    //  Every file's meta and checkpoints first: a checkpoint may sit in a
    //  later file than its record, and one past the last record is a cut
    for (int i = first; i < count; i++) {
        reader_t *reader = &readers [files];
        snprintf (reader->name, sizeof reader->name, "%.*s", DAY_FILE_LEN, names [i]->d_name);
        char path [4096];
        s_path (path, sizeof path, dir, reader->name);
        if (!(reader->db = s_open_read (dir, path, why, why_size))) {
            rc = -1;
            goto done;
        }
        files++;
        //  One snapshot per file, while the service may append
        if (s_exec (reader->db, "BEGIN", path, why, why_size) < 0
        ||  s_read_meta (reader->db, path, &start_seqs [files - 1], start_chains [files - 1],
                         why, why_size) < 0) {
            rc = -1;
            goto done;
        }
        sqlite3_stmt *stmt = NULL;
        if (sqlite3_prepare_v2 (reader->db, "SELECT seq, chain, time_ms, signature FROM "
                                "checkpoints ORDER BY seq", -1, &stmt, NULL) != SQLITE_OK) {
            rc = s_sql_fail (reader->db, path, why, why_size);
            goto done;
        }
        while (sqlite3_step (stmt) == SQLITE_ROW) {
            checkpoints = realloc (checkpoints, (checkpoint_count + 1) * sizeof *checkpoints);
            assert (checkpoints);
            checkpoint_t *checkpoint = &checkpoints [checkpoint_count++];
            memset (checkpoint, 0, sizeof *checkpoint);
            checkpoint->seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
            if (sqlite3_column_bytes (stmt, 1) == CHAIN_BYTES)
                memcpy (checkpoint->chain, sqlite3_column_blob (stmt, 1), CHAIN_BYTES);
            checkpoint->time_ms = sqlite3_column_int64 (stmt, 2);
            checkpoint->signature_ok = !public_key
                || (sqlite3_column_bytes (stmt, 1) == CHAIN_BYTES
                    && s_checkpoint_valid (public_key, checkpoint->seq, checkpoint->chain,
                                           checkpoint->time_ms, sqlite3_column_blob (stmt, 3),
                                           (size_t) sqlite3_column_bytes (stmt, 3)));
            snprintf (checkpoint->file, sizeof checkpoint->file, "%s", reader->name);
        }
        sqlite3_finalize (stmt);
        if (sqlite3_prepare_v2 (reader->db, mesh_buf_head (&sql), -1, &reader->stmt, NULL)
            != SQLITE_OK) {
            rc = s_sql_fail (reader->db, path, why, why_size);
            goto done;
        }
    }
    if (checkpoint_count)
        qsort (checkpoints, checkpoint_count, sizeof *checkpoints, s_checkpoint_order);

    uint64_t expected = files ? start_seqs [0] : 1, records = 0;
    uint64_t first_seq = expected;
    unsigned char chain [CHAIN_BYTES];
    if (files)
        memcpy (chain, start_chains [0], CHAIN_BYTES);
    size_t next_checkpoint = 0;
    //  Checkpoints of records before the files verified: signatures only
    for (; next_checkpoint < checkpoint_count && checkpoints [next_checkpoint].seq < expected;
           next_checkpoint++)
        if (!checkpoints [next_checkpoint].signature_ok) {
            rc = s_bad (report, "%s checkpoint of seq %llu: bad signature",
                        checkpoints [next_checkpoint].file,
                        (unsigned long long) checkpoints [next_checkpoint].seq);
            goto done;
        }
    uint64_t last_good_checkpoint = expected - 1;
    char what [256];

    for (size_t f = 0; f < files; f++) {
        reader_t *reader = &readers [f];
        if (start_seqs [f] != expected) {
            rc = s_bad (report, "%s seq %llu: missing (this file starts at seq %llu; a day "
                        "file or the end of the one before was deleted)",
                        start_seqs [f] > expected ? reader->name : readers [f - 1].name,
                        (unsigned long long) MESH_MIN (expected, start_seqs [f]),
                        (unsigned long long) start_seqs [f]);
            goto done;
        }
        if (memcmp (start_chains [f], chain, CHAIN_BYTES) != 0) {
            rc = s_bad (report, "%s seq %llu: the file's start chain value is not the end of "
                        "%s (its meta was changed)", reader->name,
                        (unsigned long long) expected, readers [f - 1].name);
            goto done;
        }
        int step;
        while ((step = sqlite3_step (reader->stmt)) == SQLITE_ROW) {
            sqlite3_stmt *stmt = reader->stmt;
            uint64_t seq = (uint64_t) sqlite3_column_int64 (stmt, AT_SEQ);
            //  Its id, for naming it (the type first: reading converts)
            char id [MESH_ID_LEN + 1] = "?";
            if (sqlite3_column_type (stmt, 1) == SQLITE_TEXT)
                snprintf (id, sizeof id, "%s", (const char *) sqlite3_column_text (stmt, 1));
            if (seq > expected) {
                rc = s_bad (report, "%s seq %llu: missing (the next record stored is seq %llu, "
                            "id %.26s)", reader->name, (unsigned long long) expected,
                            (unsigned long long) seq, id);
                goto done;
            }
            if (seq < expected) {
                rc = s_bad (report, "%s seq %llu (id %.26s): out of place: seq %llu was "
                            "expected (its seq or the file's start was changed)", reader->name,
                            (unsigned long long) seq, id, (unsigned long long) expected);
                goto done;
            }
            //  Its columns' types, then its canonical bytes against its chain
            const char *wrong = s_check_columns (stmt, what, sizeof what);
            if (wrong) {
                rc = s_bad (report, "%s seq %llu (id %.26s): %s", reader->name,
                            (unsigned long long) seq, id, wrong);
                goto done;
            }
            mesh_audit_record_t record;
            s_row_record (stmt, &record);
            if (s_encode_plain (&record, &plain) < 0) {
                rc = s_bad (report, "%s seq %llu (id %.26s): its columns break the limits of a "
                            "record: a column was changed", reader->name,
                            (unsigned long long) seq, id);
                goto done;
            }
            unsigned char digest [CHAIN_BYTES], next [CHAIN_BYTES];
            s_digest (&crypto, mesh_buf_head (&plain), mesh_buf_size (&plain),
                      sqlite3_column_blob (stmt, AT_PROMPT),
                      (size_t) sqlite3_column_bytes (stmt, AT_PROMPT),
                      sqlite3_column_blob (stmt, AT_RESPONSE),
                      (size_t) sqlite3_column_bytes (stmt, AT_RESPONSE), digest);
            s_chain_step (&crypto, chain, seq, digest, next);
            if (sqlite3_column_bytes (stmt, AT_CHAIN) != CHAIN_BYTES
            ||  memcmp (sqlite3_column_blob (stmt, AT_CHAIN), next, CHAIN_BYTES) != 0) {
                rc = s_bad (report, "%s seq %llu (id %.26s): its chain value does not match its "
                            "contents: the record was changed, moved or replaced", reader->name,
                            (unsigned long long) seq, id);
                goto done;
            }
            memcpy (chain, next, CHAIN_BYTES);
            records++;
            expected++;
            for (; next_checkpoint < checkpoint_count
                   && checkpoints [next_checkpoint].seq == seq; next_checkpoint++) {
                const checkpoint_t *checkpoint = &checkpoints [next_checkpoint];
                if (!checkpoint->signature_ok) {
                    rc = s_bad (report, "%s checkpoint of seq %llu: bad signature",
                                checkpoint->file, (unsigned long long) seq);
                    goto done;
                }
                if (memcmp (checkpoint->chain, chain, CHAIN_BYTES) != 0) {
                    rc = s_bad (report, "%s seq %llu: the records do not give the chain value "
                                "its checkpoint signed: a record from seq %llu to %llu was "
                                "changed and the chain rewritten", reader->name,
                                (unsigned long long) seq,
                                (unsigned long long) last_good_checkpoint + 1,
                                (unsigned long long) seq);
                    goto done;
                }
                last_good_checkpoint = seq;
            }
        }
        if (step != SQLITE_DONE) {
            rc = s_sql_fail (reader->db, reader->name, why, why_size);
            goto done;
        }
    }
    //  A checkpoint past the last record: the tail was cut
    if (next_checkpoint < checkpoint_count) {
        const checkpoint_t *checkpoint = &checkpoints [next_checkpoint];
        if (!checkpoint->signature_ok)
            rc = s_bad (report, "%s checkpoint of seq %llu: bad signature", checkpoint->file,
                        (unsigned long long) checkpoint->seq);
        else
            rc = s_bad (report, "%s seq %llu: missing (a signed checkpoint names records up to "
                        "seq %llu: the tail was cut)", files ? readers [files - 1].name : "-",
                        (unsigned long long) expected, (unsigned long long) checkpoint->seq);
        goto done;
    }
    if (records)
        mesh_buf_printf (report, "ok: %llu records, seq %llu to %llu, %zu day files, %zu "
                         "checkpoints%s\n", (unsigned long long) records,
                         (unsigned long long) first_seq, (unsigned long long) expected - 1, files,
                         checkpoint_count, public_key ? "" : " (signatures not checked)");
    else
        mesh_buf_printf (report, "ok: no records in %zu day files\n", files);
done:
    for (size_t i = 0; i < files; i++)
        s_reader_close (&readers [i]);
    free (readers);
    free (checkpoints);
    free (start_seqs);
    free (start_chains);
    s_free_names (names, count);
    s_crypto_free (&crypto);
    mesh_buf_free (&sql);
    mesh_buf_free (&plain);
    return rc;
}

//  NDJSON ---------------------------------------------------------------------------

//  A JSON string of bytes that should be UTF-8: invalid bytes become U+FFFD
static json_t *
s_json_text (const char *data, size_t size)
{
    json_t *text = json_stringn (data ? data : "", size);
    if (text)
        return text;
    mesh_buf_t clean;
    mesh_buf_init (&clean);
    const unsigned char *p = (const unsigned char *) data;
    for (size_t i = 0; i < size; ) {
        //  The longest prefix that is valid, one sequence at a time
        size_t n = p [i] < 0x80 ? 1 : (p [i] & 0xe0) == 0xc0 ? 2 : (p [i] & 0xf0) == 0xe0 ? 3
                 : (p [i] & 0xf8) == 0xf0 ? 4 : 0;
        json_t *one = n && i + n <= size ? json_stringn ((const char *) p + i, n) : NULL;
        if (one) {
            mesh_buf_append (&clean, p + i, n);
            json_decref (one);
            i += n;
        }
        else {
            mesh_buf_append (&clean, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    text = json_stringn (clean.data ? clean.data : "", clean.len);
    mesh_buf_free (&clean);
    return text;
}

static void
s_iso_time (int64_t ms, char out [32])
{
    time_t seconds = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&seconds, &tm);
    size_t len = strftime (out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (out + len, 32 - len, ".%03dZ", (int) (ms % 1000));
}

//  Sets path ("a.b.c") in object, making the objects on the way
static void
s_set (json_t *object, const char *path, json_t *value)
{
    char key [64];
    const char *dot;
    while ((dot = strchr (path, '.'))) {
        snprintf (key, sizeof key, "%.*s", (int) (dot - path), path);
        json_t *inner = json_object_get (object, key);
        if (!json_is_object (inner))
            json_object_set_new (object, key, inner = json_object ());
        object = inner;
        path = dot + 1;
    }
    json_object_set_new (object, path, value ? value : json_null ());
}

static json_t *
s_json_bytes (const mesh_bytes_t *bytes)
{
    return s_json_text (bytes->data, bytes->size);
}

void
mesh_audit_row_ndjson (const mesh_audit_row_t *row, mesh_buf_t *out)
{
    const mesh_audit_record_t *r = &row->record;
    json_t *doc = json_object ();
    char time [32];
    s_iso_time ((int64_t) r->start_ms, time);
    s_set (doc, "@timestamp", json_string (time));
    s_set (doc, "ecs.version", json_string ("8.11.0"));
    s_set (doc, "event.kind", json_string ("event"));
    s_set (doc, "event.category", json_pack ("[s]", "web"));
    s_set (doc, "event.type", json_pack ("[s]", "access"));
    s_set (doc, "event.dataset", json_string ("seekmesh.audit"));
    s_set (doc, "event.id", s_json_bytes (&r->id));
    s_set (doc, "event.sequence", json_integer ((json_int_t) row->seq));
    s_set (doc, "event.start", json_string (time));
    s_iso_time ((int64_t) r->end_ms, time);
    s_set (doc, "event.end", json_string (time));
    s_set (doc, "event.duration", json_integer (r->total_us > INT64_MAX / 1000 ? INT64_MAX
                                                : (json_int_t) r->total_us * 1000));
    bool ok = mesh_memeq (r->outcome.data, r->outcome.size, MESH_AUDIT_OK);
    s_set (doc, "event.outcome", json_string (ok ? "success" : "failure"));
    s_set (doc, "event.reason", s_json_bytes (&r->outcome));
    s_set (doc, "http.request.id", s_json_bytes (&r->id));
    if (r->status)
        s_set (doc, "http.response.status_code", json_integer (r->status));
    s_set (doc, "http.response.body.bytes", json_integer ((json_int_t) r->bytes_out));
    if (r->error_code.size)
        s_set (doc, "error.code", s_json_bytes (&r->error_code));
    if (r->tenant.size)
        s_set (doc, "organization.id", s_json_bytes (&r->tenant));
    if (r->key_id.size)
        s_set (doc, "user.id", s_json_bytes (&r->key_id));
    if (r->endpoint.size)
        s_set (doc, "url.original", s_json_bytes (&r->endpoint));
    if (r->region.size)
        s_set (doc, "cloud.region", s_json_bytes (&r->region));
    s_set (doc, "gen_ai.system", json_string ("openai"));
    s_set (doc, "gen_ai.operation.name", json_string ("chat"));
    s_set (doc, "gen_ai.request.model", s_json_bytes (&r->model_requested));
    s_set (doc, "gen_ai.response.model", s_json_bytes (&r->model));
    s_set (doc, "gen_ai.usage.input_tokens", json_integer ((json_int_t) r->prompt_tokens));
    s_set (doc, "gen_ai.usage.output_tokens", json_integer ((json_int_t) r->completion_tokens));
    //  The request's parameters: ECS names for those it has, all of them
    //  under seekmesh.params
    json_t *params = json_loadb (r->params.data ? r->params.data : "", r->params.size, 0, NULL);
    if (json_is_object (params)) {
        const char *names [] = { "temperature", "top_p", "max_tokens", "seed",
                                 "frequency_penalty", "presence_penalty" };
        for (size_t i = 0; i < MESH_ARRAY_SIZE (names); i++) {
            json_t *value = json_object_get (params, names [i]);
            if (json_is_number (value)) {
                char path [64];
                snprintf (path, sizeof path, "gen_ai.request.%s", names [i]);
                s_set (doc, path, json_incref (value));
            }
        }
        s_set (doc, "seekmesh.params", params);
    }
    else
        json_decref (params);
    s_set (doc, "seekmesh.seq", json_integer ((json_int_t) row->seq));
    s_set (doc, "seekmesh.file", json_string (row->file ? row->file : ""));
    s_set (doc, "seekmesh.outcome", s_json_bytes (&r->outcome));
    s_set (doc, "seekmesh.stream", json_boolean (r->stream));
    s_set (doc, "seekmesh.attempts", json_integer (r->attempts));
    s_set (doc, "seekmesh.cache_hit", json_boolean (r->cache_hit));
    s_set (doc, "seekmesh.queue_us", json_integer ((json_int_t) r->queue_us));
    s_set (doc, "seekmesh.ttft_us", json_integer ((json_int_t) r->ttft_us));
    s_set (doc, "seekmesh.total_us", json_integer ((json_int_t) r->total_us));
    s_set (doc, "seekmesh.upstream_ttfb_us", json_integer ((json_int_t) r->upstream_ttfb_us));
    s_set (doc, "seekmesh.usage.cached_tokens", json_integer ((json_int_t) r->cached_tokens));
    s_set (doc, "seekmesh.usage.reasoning_tokens",
           json_integer ((json_int_t) r->reasoning_tokens));
    s_set (doc, "seekmesh.truncated", json_boolean (r->truncated));
    s_set (doc, "seekmesh.enc_key_id", json_string (row->enc_key_id ? row->enc_key_id : ""));
    if (row->decrypted) {
        s_set (doc, "gen_ai.prompt", s_json_bytes (&r->prompt));
        s_set (doc, "gen_ai.completion", s_json_bytes (&r->response));
    }
    if (row->decrypt_error)
        s_set (doc, "seekmesh.decrypt_error", json_string (row->decrypt_error));
    char *text = json_dumps (doc, JSON_COMPACT);
    assert (text);
    mesh_buf_append_str (out, text);
    mesh_buf_append (out, "\n", 1);
    free (text);
    json_decref (doc);
}

//  Selftest ---------------------------------------------------------------------------

#include <ftw.h>

#define T_KEY1 "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define T_KEY2 "k2 ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define T_DAY1 "2026-03-01"
#define T_DAY2 "2026-03-02"
#define T_DAY3 "2026-03-03"

typedef struct {
    char ids [400][MESH_ID_LEN + 1];
    char prompts [400][96];
    char responses [400][160];
    mesh_audit_record_t records [400];
} t_data_t;

static mesh_bytes_t
s_t_text (const char *text)
{
    return (mesh_bytes_t) { text, strlen (text) };
}

//  Makes record i (of data), starting at start_ms
static mesh_audit_record_t *
s_t_record (t_data_t *data, size_t i, int64_t start_ms)
{
    mesh_id_new (data->ids [i]);
    snprintf (data->prompts [i], sizeof data->prompts [i],
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"secret %zu\"}]}", i);
    snprintf (data->responses [i], sizeof data->responses [i],
              "{\"choices\":[{\"delta\":{\"content\":\"Echo:\"}}]}\n"
              "{\"choices\":[{\"delta\":{\"content\":\" secret %zu\"}}]}", i);
    bool failed = i % 5 == 4;
    data->records [i] = (mesh_audit_record_t) {
        .id = s_t_text (data->ids [i]), .start_ms = (uint64_t) start_ms,
        .end_ms = (uint64_t) start_ms + 150, .tenant = s_t_text (i % 2 ? "t1" : "t0"),
        .key_id = s_t_text ("key-a"), .model_requested = s_t_text (i % 3 ? "m-a" : "alias-b"),
        .model = s_t_text (i % 3 ? "m-a" : "m-b"),
        .endpoint = s_t_text ("https://api.example.com/v1/chat/completions"),
        .region = s_t_text ("eu"), .params = s_t_text ("{\"temperature\":0.5,\"stream\":true}"),
        .stream = true, .status = failed ? 429 : 200,
        .outcome = s_t_text (failed ? MESH_AUDIT_UPSTREAM_ERROR : MESH_AUDIT_OK),
        .error_code = s_t_text (failed ? "rate_limit_exceeded" : ""), .attempts = 1,
        .ttft_us = 5000 + i, .total_us = 150000, .prompt_tokens = 10 + i,
        .completion_tokens = 20 + i, .bytes_out = 300,
        .prompt = s_t_text (data->prompts [i]), .response = s_t_text (data->responses [i])
    };
    return &data->records [i];
}

static int64_t
s_t_at (const char *day, int64_t offset_ms)
{
    return s_day_start_ms (day) + offset_ms;
}

static int
s_t_unlink (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove (path);
}

static void
s_t_rmtree (const char *dir)
{
    nftw (dir, s_t_unlink, 16, FTW_DEPTH | FTW_PHYS);
}

//  Runs sql on a day file of dir (the store closed)
static void
s_t_sql (const char *dir, const char *day, const char *sql)
{
    char path [4096];
    snprintf (path, sizeof path, "%.2000s/audit-%.10s.db", dir, day);
    sqlite3 *db = NULL;
    assert (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)
            == SQLITE_OK);
    char *error = NULL;
    if (sqlite3_exec (db, sql, NULL, NULL, &error) != SQLITE_OK) {
        fprintf (stderr, "mesh_audit_store_test: %s: %s\n", sql, error);
        assert (false);
    }
    sqlite3_close (db);
}

typedef struct {
    size_t rows, decrypted, failed;
    uint64_t seqs [400];
    const char *errors [400];
    char first_prompt [128];
    int64_t last_start;
    bool ordered;
    size_t stop_after;                  //  0: never
    mesh_buf_t ndjson;
} t_seen_t;

static int
s_t_collect (void *arg, const mesh_audit_row_t *row)
{
    t_seen_t *seen = arg;
    if (row->record.start_ms < (uint64_t) seen->last_start)
        seen->ordered = false;
    seen->last_start = (int64_t) row->record.start_ms;
    //  Text columns come NUL-terminated
    assert (row->record.tenant.data [row->record.tenant.size] == 0);
    assert (row->file && strncmp (row->file, "audit-", 6) == 0 && row->enc_key_id);
    seen->seqs [seen->rows] = row->seq;
    seen->errors [seen->rows] = row->decrypt_error;
    if (row->decrypted) {
        seen->decrypted++;
        assert (row->record.prompt.data [row->record.prompt.size] == 0);
        if (seen->decrypted == 1)
            snprintf (seen->first_prompt, sizeof seen->first_prompt, "%s", row->record.prompt.data);
    }
    else {
        assert (row->record.prompt.size == 0 && row->record.response.size == 0);
        if (row->decrypt_error)
            seen->failed++;
    }
    if (seen->ndjson.data || seen->rows == 0)
        mesh_audit_row_ndjson (row, &seen->ndjson);
    seen->rows++;
    return seen->stop_after && seen->rows == seen->stop_after ? 7 : 0;
}

static t_seen_t *
s_t_query (const char *dir, const mesh_audit_filter_t *filter, mesh_audit_keyring_t *keys)
{
    static t_seen_t seen;
    mesh_buf_free (&seen.ndjson);
    memset (&seen, 0, sizeof seen);
    seen.ordered = true;
    char why [256];
    int rc = mesh_audit_query (dir, filter, keys, s_t_collect, &seen, why, sizeof why);
    if (rc != 0)
        fprintf (stderr, "mesh_audit_store_test: query: %d %s\n", rc, why);
    assert (rc == 0);
    return &seen;
}

//  Verifies dir: the result, and that the report holds want (NULL: "ok")
static void
s_t_verify (const char *dir, const char *from, EVP_PKEY *public_key, int want_rc,
            const char *want, bool verbose)
{
    mesh_buf_t report;
    mesh_buf_init (&report);
    char why [256] = "";
    int rc = mesh_audit_verify (dir, from, public_key, &report, why, sizeof why);
    mesh_buf_append (&report, "", 1);
    if (verbose)
        printf ("    verify: %d %s%s", rc, report.data, rc < 0 ? why : "");
    if (rc != want_rc || !strstr (report.data, want ? want : "ok:")) {
        fprintf (stderr, "mesh_audit_store_test: verify: want %d '%s', got %d '%s' %s\n",
                 want_rc, want ? want : "ok:", rc, report.data, why);
        assert (false);
    }
    mesh_buf_free (&report);
}

//  A fresh store of count records in dir on T_DAY1, checkpointed after
//  every 10th record
static void
s_t_make (const char *dir, t_data_t *data, size_t count, mesh_audit_keyring_t *keys,
          EVP_PKEY *signer)
{
    char why [256];
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    for (size_t i = 0; i < count; i++) {
        s_t_record (data, i, s_t_at (T_DAY1, 3600000 + (int64_t) i * 1000));
        assert (mesh_audit_store_append (store, &data->records [i], 1,
                                         s_t_at (T_DAY1, 3600000 + (int64_t) i * 1000 + 500),
                                         why, sizeof why) == 1);
        if (i % 10 == 9)
            assert (mesh_audit_store_checkpoint (store, s_t_at (T_DAY1, 3600000 + (int64_t) i
                                                 * 1000 + 600), why, sizeof why) == 0);
    }
    mesh_audit_store_close (&store);
}

//  Recomputes the chain from seq on, as someone who edited a record
//  without the signing key would
static void
s_t_rechain (const char *dir, const char *day, uint64_t from_seq)
{
    char path [4096];
    snprintf (path, sizeof path, "%.2000s/audit-%.10s.db", dir, day);
    sqlite3 *db = NULL;
    assert (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    mesh_buf_t sql, plain;
    mesh_buf_init (&sql);
    mesh_buf_init (&plain);
    mesh_buf_append_str (&sql, "SELECT ");
    s_column_list (&sql);
    mesh_buf_append_str (&sql, " FROM records ORDER BY seq");
    mesh_buf_append (&sql, "", 1);
    sqlite3_stmt *select = NULL, *update = NULL;
    assert (sqlite3_prepare_v2 (db, sql.data, -1, &select, NULL) == SQLITE_OK);
    assert (sqlite3_prepare_v2 (db, "UPDATE records SET chain = ? WHERE seq = ?", -1, &update,
                                NULL) == SQLITE_OK);
    crypto_t crypto;
    s_crypto_init (&crypto);
    unsigned char chain [CHAIN_BYTES];
    memset (chain, 0, sizeof chain);
    typedef struct { uint64_t seq; unsigned char chain [CHAIN_BYTES]; } change_t;
    change_t *changes = calloc (400, sizeof *changes);
    size_t count = 0;
    while (sqlite3_step (select) == SQLITE_ROW) {
        uint64_t seq = (uint64_t) sqlite3_column_int64 (select, AT_SEQ);
        if (seq < from_seq) {
            memcpy (chain, sqlite3_column_blob (select, AT_CHAIN), CHAIN_BYTES);
            continue;
        }
        mesh_audit_record_t record;
        s_row_record (select, &record);
        assert (s_encode_plain (&record, &plain) == 0);
        unsigned char digest [CHAIN_BYTES];
        s_digest (&crypto, plain.data, plain.len, sqlite3_column_blob (select, AT_PROMPT),
                  (size_t) sqlite3_column_bytes (select, AT_PROMPT),
                  sqlite3_column_blob (select, AT_RESPONSE),
                  (size_t) sqlite3_column_bytes (select, AT_RESPONSE), digest);
        s_chain_step (&crypto, chain, seq, digest, chain);
        changes [count].seq = seq;
        memcpy (changes [count++].chain, chain, CHAIN_BYTES);
    }
    sqlite3_finalize (select);
    for (size_t i = 0; i < count; i++) {
        sqlite3_bind_blob (update, 1, changes [i].chain, CHAIN_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64 (update, 2, (int64_t) changes [i].seq);
        assert (sqlite3_step (update) == SQLITE_DONE);
        sqlite3_reset (update);
    }
    sqlite3_finalize (update);
    sqlite3_close (db);
    free (changes);
    s_crypto_free (&crypto);
    mesh_buf_free (&sql);
    mesh_buf_free (&plain);
}

static void
s_t_write (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    assert (file);
    fputs (text, file);
    fclose (file);
}

//  SEEKMESH_AUDIT_BENCH=N: appends N records of ~1 KiB prompt and ~1 KiB
//  response in batches of 4096 (SEEKMESH_AUDIT_BENCH_BATCH) and prints
//  the durable rate
static void
s_t_bench (const char *dir, mesh_audit_keyring_t *keys, EVP_PKEY *signer, size_t total)
{
    const char *batch_text = getenv ("SEEKMESH_AUDIT_BENCH_BATCH");
    size_t batch = batch_text && atoi (batch_text) > 0 ? (size_t) atoi (batch_text) : 4096;
    char why [256];
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    mesh_audit_record_t *records = calloc (batch, sizeof *records);
    char (*ids) [MESH_ID_LEN + 1] = calloc (batch, MESH_ID_LEN + 1);
    char *prompt = malloc (1024), *response = malloc (1024);
    assert (records && ids && prompt && response);
    static const char words [] = "the quick brown fox jumps over the lazy dog ";
    for (size_t i = 0; i < 1024; i++) {
        prompt [i] = words [i % (sizeof words - 1)];
        response [i] = words [(i * 7) % (sizeof words - 1)];
    }
    int64_t start_us = mesh_mono_us (), slowest_us = 0;
    for (size_t done = 0; done < total; ) {
        size_t count = MESH_MIN (batch, total - done);
        int64_t now = mesh_wall_ms ();
        for (size_t i = 0; i < count; i++) {
            mesh_id_new (ids [i]);
            records [i] = (mesh_audit_record_t) {
                .id = { ids [i], MESH_ID_LEN }, .start_ms = (uint64_t) now - 200,
                .end_ms = (uint64_t) now, .tenant = s_t_text (i % 2 ? "acme" : "globex"),
                .key_id = s_t_text ("key-1"), .model_requested = s_t_text ("deepseek-chat"),
                .model = s_t_text (i % 3 ? "deepseek-chat" : "deepseek-reasoner"),
                .endpoint = s_t_text ("https://api.deepseek.com/v1/chat/completions"),
                .region = s_t_text ("eu-west"),
                .params = s_t_text ("{\"temperature\":0.7,\"stream\":true,\"max_tokens\":512}"),
                .stream = true, .status = 200, .outcome = s_t_text (MESH_AUDIT_OK),
                .error_code = s_t_text (""), .attempts = 1, .ttft_us = 80000,
                .total_us = 200000, .prompt_tokens = 250, .completion_tokens = 250,
                .bytes_out = 2100, .prompt = { prompt, 1024 }, .response = { response, 1024 } };
        }
        int64_t batch_us = mesh_mono_us ();
        int stored = mesh_audit_store_append (store, records, count, now, why, sizeof why);
        assert (stored == (int) count);
        slowest_us = MESH_MAX (slowest_us, mesh_mono_us () - batch_us);
        assert (mesh_audit_store_checkpoint (store, now, why, sizeof why) == 0);
        done += count;
    }
    double seconds = (double) (mesh_mono_us () - start_us) / 1e6;
    printf ("    bench: %zu records (1 KiB prompt, 1 KiB response) in batches of %zu: "
            "%.2f s, %.0f durable records/s, slowest batch %.1f ms\n", total, batch, seconds,
            (double) total / seconds, (double) slowest_us / 1000);
    mesh_audit_store_close (&store);
    free (records);
    free (ids);
    free (prompt);
    free (response);
}

void
mesh_audit_store_test (bool verbose)
{
    char root [1024];
    const char *tmp = getenv ("TMPDIR");
    snprintf (root, sizeof root, "%s/mesh-audit-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert (mkdtemp (root));
    char path [4096], other [4096], dir [2048], why [256];
    t_data_t *data = calloc (1, sizeof *data);
    assert (data);

    //  Key ring: a file with comments and blank lines, the last key active
    snprintf (path, sizeof path, "%s/keys", root);
    s_t_write (path, "# audit keys\n\n" T_KEY1 "  # the first\n\t" T_KEY2 "\n");
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (path, NULL, why, sizeof why);
    assert (keys && keys->count == 2 && mesh_streq (mesh_audit_keyring_active (keys), "k2"));
    mesh_audit_keyring_destroy (&keys);
    mesh_audit_keyring_destroy (&keys);
    assert (keys == NULL);
    //  The same lines in an environment variable, ';'-separated
    keys = mesh_audit_keyring_load (NULL, T_KEY2 ";" T_KEY1 ";", why, sizeof why);
    assert (keys && mesh_streq (mesh_audit_keyring_active (keys), "k1"));
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
        s_t_write (path, text);
        assert (!mesh_audit_keyring_load (path, NULL, why, sizeof why));
        assert (strstr (why, "line 2"));
    }
    s_t_write (path, "# nothing\n\n");
    assert (!mesh_audit_keyring_load (path, NULL, why, sizeof why) && strstr (why, "no key"));
    assert (!mesh_audit_keyring_load (NULL, "", why, sizeof why) && strstr (why, "no key"));
    assert (!mesh_audit_keyring_load (NULL, "k1 00", why, sizeof why) && strstr (why, "entry 1"));
    snprintf (other, sizeof other, "%s/missing", root);
    assert (!mesh_audit_keyring_load (other, NULL, why, sizeof why) && strstr (why, other));

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
    s_t_write (path, T_KEY1);
    assert (mesh_audit_keyring_rotate (path, id1, sizeof id1, why, sizeof why) == 0);
    keys = mesh_audit_keyring_load (path, NULL, why, sizeof why);
    assert (keys && keys->count == 2 && mesh_streq (mesh_audit_keyring_active (keys), id1));
    mesh_audit_keyring_destroy (&keys);
    s_t_write (path, "k1 zz\n");
    assert (mesh_audit_keyring_rotate (path, id1, sizeof id1, why, sizeof why) == -1);
    assert (strstr (why, "line 1"));

    //  Signer: made once (private 0600), read back; its public key checked
    char private_path [4096], public_path [4096];
    snprintf (private_path, sizeof private_path, "%s/signing.pem", root);
    snprintf (public_path, sizeof public_path, "%s/signing.pub.pem", root);
    EVP_PKEY *signer = mesh_audit_signer_load (private_path, public_path, why, sizeof why);
    assert (signer);
    assert (stat (private_path, &st) == 0 && (st.st_mode & 0777) == 0600);
    EVP_PKEY *again = mesh_audit_signer_load (private_path, public_path, why, sizeof why);
    assert (again && EVP_PKEY_eq (signer, again) == 1);
    EVP_PKEY_free (again);
    EVP_PKEY *public_key = mesh_audit_public_key_load (public_path, why, sizeof why);
    assert (public_key && EVP_PKEY_eq (signer, public_key) == 1);
    snprintf (path, sizeof path, "%s/other.pem", root);
    snprintf (other, sizeof other, "%s/other.pub.pem", root);
    EVP_PKEY *stranger = mesh_audit_signer_load (path, other, why, sizeof why);
    assert (stranger);
    assert (!mesh_audit_signer_load (private_path, other, why, sizeof why));
    assert (strstr (why, "not the public key"));
    EVP_PKEY *stranger_public = mesh_audit_public_key_load (other, why, sizeof why);
    assert (stranger_public);
    assert (!mesh_audit_public_key_load (private_path, why, sizeof why));
    EVP_PKEY *ec = EVP_PKEY_Q_keygen (NULL, NULL, "EC", "P-256");
    snprintf (path, sizeof path, "%s/ec.pem", root);
    assert (ec && s_write_pem (path, ec, true, why, sizeof why) == 0);
    EVP_PKEY_free (ec);
    assert (!mesh_audit_signer_load (path, NULL, why, sizeof why) && strstr (why, "Ed25519"));

    keys = mesh_audit_keyring_load (NULL, T_KEY1, why, sizeof why);
    assert (keys);
    assert (!mesh_audit_store_open (root, NULL, signer, why, sizeof why));

    //  A store over three days: records, resends, a checkpoint per day
    snprintf (dir, sizeof dir, "%s/store", root);
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 0);
    assert (mesh_audit_store_checkpoint (store, s_t_at (T_DAY1, 0), why, sizeof why) == 0);
    assert (mesh_audit_store_append (store, NULL, 0, s_t_at (T_DAY1, 0), why, sizeof why) == 0);
    for (size_t i = 0; i < 300; i++)
        s_t_record (data, i, s_t_at (T_DAY1, 3600000 + (int64_t) i * 1000));
    //  One batch of 300 (several sealed chunks), then the same again: all resent
    assert (mesh_audit_store_append (store, data->records, 300, s_t_at (T_DAY1, 7200000),
                                     why, sizeof why) == 300);
    assert (mesh_audit_store_seq (store) == 300);
    assert (mesh_audit_store_append (store, data->records, 300, s_t_at (T_DAY1, 7300000),
                                     why, sizeof why) == 0);
    //  Duplicates within one batch: the first is kept
    s_t_record (data, 300, s_t_at (T_DAY1, 7400000));
    mesh_audit_record_t pair [2] = { data->records [300], data->records [300] };
    assert (mesh_audit_store_append (store, pair, 2, s_t_at (T_DAY1, 7400500), why, sizeof why) == 1);
    assert (mesh_audit_store_checkpoint (store, s_t_at (T_DAY1, 7500000), why, sizeof why) == 0);
    //  A record that breaks the codec's limits fails its whole batch
    s_t_record (data, 301, s_t_at (T_DAY1, 7600000));
    s_t_record (data, 302, s_t_at (T_DAY1, 7600000));
    data->records [302].tenant = s_t_text ("bad\xff");
    assert (mesh_audit_store_append (store, &data->records [301], 2, s_t_at (T_DAY1, 7600500),
                                     why, sizeof why) == -1);
    assert (strstr (why, "record 1") && mesh_audit_store_seq (store) == 301);
    data->records [302].tenant = s_t_text ("t0");
    //  Day two: the chain goes on; a record of day one resent is skipped
    assert (mesh_audit_store_append (store, &data->records [301], 2, s_t_at (T_DAY2, 1000),
                                     why, sizeof why) == 2);
    assert (mesh_audit_store_append (store, &data->records [7], 1, s_t_at (T_DAY2, 2000),
                                     why, sizeof why) == 0);
    //  A clock that steps back keeps writing into the newest day
    s_t_record (data, 303, s_t_at (T_DAY2, 3000));
    assert (mesh_audit_store_append (store, &data->records [303], 1, s_t_at (T_DAY1, 9000),
                                     why, sizeof why) == 1);
    assert (mesh_audit_store_seq (store) == 304);
    mesh_audit_store_close (&store);
    mesh_audit_store_close (&store);
    snprintf (path, sizeof path, "%s/audit-" T_DAY1 ".db-wal", dir);
    assert (access (path, F_OK) != 0);  //  closed cleanly: the WAL folded back

    //  Reopened, it goes on from the head, with a large record and the
    //  second key (rotation)
    mesh_audit_keyring_t *both = mesh_audit_keyring_load (NULL, T_KEY1 ";" T_KEY2, why, sizeof why);
    assert (both);
    store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 304);
    //  One writer at a time
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why));
    assert (strstr (why, "another process writes"));
    mesh_audit_store_set_keys (store, both);
    size_t large = 9u << 20;
    char *big = malloc (large);
    assert (big);
    memset (big, 'z', large);
    s_t_record (data, 304, s_t_at (T_DAY2, 4000));
    s_t_record (data, 305, s_t_at (T_DAY2, 4000));
    data->records [304].response = (mesh_bytes_t) { big, large };
    data->records [305].prompt = (mesh_bytes_t) { big, large };
    assert (mesh_audit_store_append (store, &data->records [304], 2, s_t_at (T_DAY2, 5000),
                                     why, sizeof why) == 2);
    assert (mesh_audit_store_checkpoint (store, s_t_at (T_DAY2, 6000), why, sizeof why) == 0);
    assert (mesh_audit_store_checkpoint (store, s_t_at (T_DAY2, 6000), why, sizeof why) == 0);
    //  Day three
    s_t_record (data, 306, s_t_at (T_DAY3, 1000));
    assert (mesh_audit_store_append (store, &data->records [306], 1, s_t_at (T_DAY3, 1500),
                                     why, sizeof why) == 1);
    assert (mesh_audit_store_seq (store) == 307);
    //  A writer's connection sees what a reader does not need to wait for
    s_t_verify (dir, NULL, public_key, 0, "307 records", verbose);
    assert (mesh_audit_store_checkpoint (store, s_t_at (T_DAY3, 2000), why, sizeof why) == 0);
    mesh_audit_store_close (&store);
    s_t_verify (dir, NULL, public_key, 0, "seq 1 to 307, 3 day files", verbose);
    s_t_verify (dir, NULL, NULL, 0, "signatures not checked", verbose);
    s_t_verify (dir, T_DAY2, public_key, 0, "seq 302 to 307", verbose);
    s_t_verify (dir, "2026-04-01", public_key, 0, "no records", verbose);
    s_t_verify (dir, NULL, stranger_public, 1, "bad signature", verbose);
    assert (mesh_audit_verify (dir, "2026-02-30", public_key, NULL, why, sizeof why) == -1);
    snprintf (path, sizeof path, "%s/nowhere", root);
    mesh_buf_t report;
    mesh_buf_init (&report);
    assert (mesh_audit_verify (path, NULL, public_key, &report, why, sizeof why) == -1);

    //  Query: everything, in time order, ciphertext only without keys
    t_seen_t *seen = s_t_query (dir, NULL, NULL);
    assert (seen->rows == 307 && seen->ordered && seen->decrypted == 0 && seen->failed == 0);
    //  Filters
    mesh_audit_filter_t filter = { .tenant = "t1" };
    assert (s_t_query (dir, &filter, NULL)->rows == 153);     //  odd i of 0..306, 7 resent once
    filter = (mesh_audit_filter_t) { .model = "m-b" };        //  i % 3 == 0: model m-b
    size_t m_b = s_t_query (dir, &filter, NULL)->rows;
    filter = (mesh_audit_filter_t) { .model = "alias-b" };    //  the name asked for matches too
    assert (s_t_query (dir, &filter, NULL)->rows == m_b && m_b == 103);
    filter = (mesh_audit_filter_t) { .status = 429, .outcome = MESH_AUDIT_UPSTREAM_ERROR };
    assert (s_t_query (dir, &filter, NULL)->rows == 61);
    filter = (mesh_audit_filter_t) { .since_ms = s_t_at (T_DAY1, 3600000 + 10 * 1000),
                                     .until_ms = s_t_at (T_DAY1, 3600000 + 20 * 1000) };
    seen = s_t_query (dir, &filter, NULL);
    assert (seen->rows == 10 && seen->seqs [0] == 11);
    //  Records 301 and 302 started on day one, were stored on day two
    filter = (mesh_audit_filter_t) { .since_ms = s_t_at (T_DAY2, 0) };
    assert (s_t_query (dir, &filter, NULL)->rows == 4);
    filter = (mesh_audit_filter_t) { .since_ms = s_t_at (T_DAY1, 7600000) };
    assert (s_t_query (dir, &filter, NULL)->rows == 6);
    filter = (mesh_audit_filter_t) { .limit = 5 };
    assert (s_t_query (dir, &filter, NULL)->rows == 5);
    filter = (mesh_audit_filter_t) { .tenant = "nobody" };
    assert (s_t_query (dir, &filter, NULL)->rows == 0);
    //  The callback stops it
    static t_seen_t stopper;
    stopper.ordered = true;
    stopper.stop_after = 3;
    assert (mesh_audit_query (dir, NULL, NULL, s_t_collect, &stopper, why, sizeof why) == 7);
    assert (stopper.rows == 3);
    mesh_buf_free (&stopper.ndjson);
    assert (mesh_audit_query (path, NULL, NULL, s_t_collect, &stopper, why, sizeof why) == -1);

    //  With the keys: every record decrypts, old key and new
    seen = s_t_query (dir, NULL, both);
    assert (seen->rows == 307 && seen->decrypted == 307);
    assert (strstr (seen->first_prompt, "\"secret 0\""));
    //  With only the first key, the records sealed under the second fail
    //  cleanly, the others decrypt
    seen = s_t_query (dir, NULL, keys);
    assert (seen->decrypted == 304 && seen->failed == 3);
    assert (strstr (seen->errors [306], "unknown key"));

    //  NDJSON with Elastic Common Schema names, one object a line
    filter = (mesh_audit_filter_t) { .limit = 1 };
    seen = s_t_query (dir, &filter, both);
    mesh_buf_append (&seen->ndjson, "", 1);
    assert (seen->ndjson.len > 2 && seen->ndjson.data [seen->ndjson.len - 2] == '\n');
    json_error_t error;
    json_t *doc = json_loads (seen->ndjson.data, 0, &error);
    assert (doc);
    assert (json_object_get (doc, "@timestamp"));
    json_t *event = json_object_get (doc, "event");
    assert (mesh_streq (json_string_value (json_object_get (event, "id")), data->ids [0]));
    assert (mesh_streq (json_string_value (json_object_get (event, "outcome")), "success"));
    assert (json_integer_value (json_object_get (event, "duration")) == 150000000);
    assert (json_integer_value (json_object_get (json_object_get (json_object_get (doc, "http"),
            "response"), "status_code")) == 200);
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (doc, "organization"),
            "id")), "t0"));
    json_t *gen_ai = json_object_get (doc, "gen_ai");
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (gen_ai, "request"),
            "model")), "alias-b"));
    assert (json_real_value (json_object_get (json_object_get (gen_ai, "request"),
            "temperature")) == 0.5);
    assert (json_integer_value (json_object_get (json_object_get (gen_ai, "usage"),
            "input_tokens")) == 10);
    assert (strstr (json_string_value (json_object_get (gen_ai, "prompt")), "secret 0"));
    json_decref (doc);
    //  Text that is not UTF-8 still makes a JSON line
    mesh_audit_row_t row = { .seq = 1, .file = "f", .enc_key_id = "k1", .decrypted = true,
                             .record = { .id = s_t_text (data->ids [0]),
                                         .prompt = s_t_text ("a\xff" "b\xe2\x82"),
                                         .response = { "x\0y", 3 } } };
    mesh_buf_reset (&seen->ndjson);
    mesh_audit_row_ndjson (&row, &seen->ndjson);
    mesh_buf_append (&seen->ndjson, "", 1);
    assert ((doc = json_loads (seen->ndjson.data, JSON_ALLOW_NUL, &error)));
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (doc, "gen_ai"),
            "prompt")), "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"));
    json_decref (doc);

    //  Retention: day one goes, with its WAL and shm; the chain still
    //  verifies from where day two starts
    store = mesh_audit_store_open (dir, both, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 307);
    snprintf (path, sizeof path, "%s/audit-" T_DAY1 ".db-wal", dir);
    s_t_write (path, "");
    assert (mesh_audit_store_retain (store, s_t_at (T_DAY3, 5000), 0) == 0);
    assert (mesh_audit_store_retain (store, s_t_at (T_DAY3, 5000), 2) == 0);
    assert (mesh_audit_store_retain (store, s_t_at (T_DAY3, 5000), 1) == 1);
    assert (access (path, F_OK) != 0);
    snprintf (path, sizeof path, "%s/audit-" T_DAY1 ".db", dir);
    assert (access (path, F_OK) != 0);
    //  The file written to is never deleted
    assert (mesh_audit_store_retain (store, s_t_at ("2026-06-01", 0), 1) == 1);
    mesh_audit_store_close (&store);
    s_t_verify (dir, NULL, public_key, 0, "seq 307 to 307", verbose);
    s_t_rmtree (dir);

    //  Scenario 19: one record edited, deleted or reordered on disk; the
    //  verifier names the first bad record
    struct { const char *what; const char *sql; const char *want; int rc; } tampers [] = {
        { "an edited column", "UPDATE records SET status = 500 WHERE seq = 5",
          "seq 5 (id ", 1 },
        { "an edited text column", "UPDATE records SET tenant = 'evil' WHERE seq = 6",
          "seq 6 (id ", 1 },
        { "a column of another type", "UPDATE records SET status = 'two hundred' WHERE seq = 7",
          "seq 7 (id ", 1 },
        { "a flipped bit in a ciphertext",
          "UPDATE records SET prompt = CAST (substr (prompt, 1, 30) || "
          "(CASE WHEN substr (prompt, 31, 1) = x'41' THEN x'40' ELSE x'41' END) || "
          "substr (prompt, 32) AS BLOB) WHERE seq = 8", "seq 8 (id ", 1 },
        { "a ciphertext made text", "UPDATE records SET response = CAST (response AS TEXT) "
          "WHERE seq = 8", "seq 8 (id ", 1 },
        { "a ciphertext moved", "UPDATE records SET response = "
          "(SELECT response FROM records WHERE seq = 3) WHERE seq = 9", "seq 9 (id ", 1 },
        { "an edited key id", "UPDATE records SET enc_key_id = 'k2' WHERE seq = 10",
          "seq 10 (id ", 1 },
        { "a deleted row", "DELETE FROM records WHERE seq = 5", "seq 5: missing", 1 },
        { "two rows swapped",
          "UPDATE records SET seq = -1 WHERE seq = 5; UPDATE records SET seq = 5 WHERE seq = 6;"
          "UPDATE records SET seq = 6 WHERE seq = -1", "seq 5 (id ", 1 },
        { "the tail cut before the last checkpoint", "DELETE FROM records WHERE seq > 15",
          "seq 16: missing", 1 },
        //  The limit: a tail cut with the checkpoints after it is only found
        //  with a copy of the last checkpoint kept elsewhere
        { "the tail cut after a checkpoint, with the later ones",
          "DELETE FROM records WHERE seq > 12; DELETE FROM checkpoints WHERE seq > 12",
          "ok: 12 records", 0 },
        { "a bad checkpoint signature",
          "UPDATE checkpoints SET signature = zeroblob (64) WHERE seq = 10",
          "checkpoint of seq 10: bad signature", 1 },
        { "a checkpoint moved", "UPDATE checkpoints SET seq = 11 WHERE seq = 10",
          "checkpoint of seq 11: bad signature", 1 },
        { "the start of the chain", "UPDATE meta SET value = CAST (zeroblob (31) || x'01' AS BLOB) "
          "WHERE name = 'start_chain'", "seq 1 (id ", 1 },
        { "the meta's start seq", "UPDATE meta SET value = 2 WHERE name = 'start_seq'",
          "seq 1 (id ", 1 },
        { "the meta gone", "DELETE FROM meta WHERE name = 'start_chain'", "lacks the start", -1 },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (tampers); i++) {
        if (verbose)
            printf ("  scenario 19: %s\n", tampers [i].what);
        snprintf (dir, sizeof dir, "%s/tamper-%zu", root, i);
        s_t_make (dir, data, 20, keys, signer);
        s_t_verify (dir, NULL, public_key, 0, "20 records", false);
        s_t_sql (dir, T_DAY1, tampers [i].sql);
        int want_rc = tampers [i].rc;
        if (want_rc == -1) {
            mesh_buf_reset (&report);
            assert (mesh_audit_verify (dir, NULL, public_key, &report, why, sizeof why) == -1);
            assert (strstr (why, tampers [i].want));
        }
        else
            s_t_verify (dir, NULL, public_key, want_rc, tampers [i].want, verbose);
        s_t_rmtree (dir);
    }
    //  An edit with the chain recomputed after it: the checkpoint catches it
    snprintf (dir, sizeof dir, "%s/rechained", root);
    s_t_make (dir, data, 20, keys, signer);
    s_t_sql (dir, T_DAY1, "UPDATE records SET status = 500 WHERE seq = 14");
    s_t_rechain (dir, T_DAY1, 14);
    s_t_verify (dir, NULL, public_key, 1, "seq 20: the records do not give the chain value its "
                "checkpoint signed: a record from seq 11 to 20", verbose);
    s_t_rmtree (dir);

    //  A day file deleted between two others
    snprintf (dir, sizeof dir, "%s/days", root);
    store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    const char *days [] = { T_DAY1, T_DAY2, T_DAY3 };
    for (size_t d = 0; d < 3; d++) {
        for (size_t i = 0; i < 4; i++)
            s_t_record (data, d * 4 + i, s_t_at (days [d], (int64_t) i * 1000));
        assert (mesh_audit_store_append (store, &data->records [d * 4], 4,
                                         s_t_at (days [d], 5000), why, sizeof why) == 4);
    }
    mesh_audit_store_close (&store);
    s_t_verify (dir, NULL, public_key, 0, "12 records", verbose);
    snprintf (path, sizeof path, "%s/audit-" T_DAY2 ".db", dir);
    assert (unlink (path) == 0);
    s_t_verify (dir, NULL, public_key, 1, "seq 5: missing", verbose);
    //  The next day's file no longer continues the chain: it is not
    //  written to
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why) || true);
    s_t_rmtree (dir);

    //  Scenario 20: a flipped bit in an encrypted field fails that
    //  record's decryption cleanly; the others decrypt
    snprintf (dir, sizeof dir, "%s/flipped", root);
    s_t_make (dir, data, 20, keys, signer);
    s_t_sql (dir, T_DAY1, "UPDATE records SET response = CAST (substr (response, 1, 40) || "
             "(CASE WHEN substr (response, 41, 1) = x'41' THEN x'40' ELSE x'41' END) || "
             "substr (response, 42) AS BLOB) WHERE seq = 12");
    seen = s_t_query (dir, NULL, keys);
    assert (seen->rows == 20 && seen->decrypted == 19 && seen->failed == 1);
    assert (seen->seqs [11] == 12 && strstr (seen->errors [11], "authentication failed"));
    s_t_rmtree (dir);

    //  A writer that stopped before its first commit in a new day left an
    //  empty file: the chain goes on from the day before
    snprintf (dir, sizeof dir, "%s/shell", root);
    s_t_make (dir, data, 3, keys, signer);
    snprintf (path, sizeof path, "%s/audit-" T_DAY2 ".db", dir);
    s_t_write (path, "");
    store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 3 && access (path, F_OK) != 0);
    s_t_record (data, 3, s_t_at (T_DAY2, 0));
    assert (mesh_audit_store_append (store, &data->records [3], 1, s_t_at (T_DAY2, 10), why,
                                     sizeof why) == 1);
    mesh_audit_store_close (&store);
    s_t_verify (dir, NULL, public_key, 0, "seq 1 to 4, 2 day files", verbose);
    s_t_rmtree (dir);

    //  A store made with no signer writes no checkpoint
    snprintf (dir, sizeof dir, "%s/unsigned", root);
    store = mesh_audit_store_open (dir, keys, NULL, why, sizeof why);
    assert (store);
    s_t_record (data, 0, s_t_at (T_DAY1, 0));
    assert (mesh_audit_store_append (store, data->records, 1, s_t_at (T_DAY1, 10), why,
                                     sizeof why) == 1);
    assert (mesh_audit_store_checkpoint (store, s_t_at (T_DAY1, 20), why, sizeof why) == -1);
    assert (strstr (why, "signing key"));
    mesh_audit_store_close (&store);
    s_t_rmtree (dir);

    //  Not a store: a day file of someone else's
    snprintf (dir, sizeof dir, "%s/foreign", root);
    assert (mkdir (dir, 0700) == 0);
    s_t_sql (dir, T_DAY1, "CREATE TABLE t (x)");
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why));
    mesh_buf_reset (&report);
    assert (mesh_audit_verify (dir, NULL, public_key, &report, why, sizeof why) == -1);
    s_t_rmtree (dir);

    const char *bench = getenv ("SEEKMESH_AUDIT_BENCH");
    if (bench && atol (bench) > 0) {
        snprintf (dir, sizeof dir, "%s/bench", root);
        s_t_bench (dir, keys, signer, (size_t) atol (bench));
        s_t_verify (dir, NULL, public_key, 0, "ok:", verbose);
    }

    free (big);
    mesh_buf_free (&report);
    mesh_buf_free (&s_t_query (root, NULL, NULL)->ndjson);
    mesh_audit_keyring_destroy (&keys);
    mesh_audit_keyring_destroy (&both);
    EVP_PKEY_free (signer);
    EVP_PKEY_free (public_key);
    EVP_PKEY_free (stranger);
    EVP_PKEY_free (stranger_public);
    free (data);
    s_t_rmtree (root);
    assert (access (root, F_OK) != 0);
}
