/*  mesh_audit_seal: sealing, the chain and checkpoints (see
    mesh_audit_seal.h).  A mesh_audit_seal_t is one thread's; the rest is
    any thread.                                                             */
#include "mesh_audit_seal.h"
#include "mesh_audit_file.h"
#include "mesh_id.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_BYTES       MESH_AUDIT_KEYRING_KEY_BYTES
#define KEY_ID_MAX      MESH_AUDIT_KEYRING_ID_MAX
#define NONCE_BYTES     MESH_AUDIT_SEAL_NONCE_BYTES
#define TAG_BYTES       MESH_AUDIT_SEAL_TAG_BYTES
#define CHAIN_BYTES     MESH_AUDIT_SEAL_CHAIN_BYTES
#define SIGNATURE_BYTES MESH_AUDIT_SEAL_SIGNATURE_BYTES
#define SEAL_FORMAT     1
#define CHECKPOINT_TEXT "seekmesh-audit-checkpoint/2"

//  Sealing and hashing ----------------------------------------------------------

struct mesh_audit_seal_t {
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    EVP_CIPHER *aes;
    EVP_CIPHER_CTX *cipher;
    unsigned char key [KEY_BYTES];      //  the key cipher holds
    bool keyed;
};

mesh_audit_seal_t *
mesh_audit_seal_new (void)
{
    mesh_audit_seal_t *self = calloc (1, sizeof *self);
    assert (self);
    self->sha256 = EVP_MD_fetch (NULL, "SHA256", NULL);
    self->md = EVP_MD_CTX_new ();
    self->aes = EVP_CIPHER_fetch (NULL, "AES-256-GCM", NULL);
    self->cipher = EVP_CIPHER_CTX_new ();
    assert (self->sha256 && self->md && self->aes && self->cipher);
    return self;
}

void
mesh_audit_seal_destroy (mesh_audit_seal_t **self_p)
{
    assert (self_p);
    mesh_audit_seal_t *self = *self_p;
    if (self) {
        EVP_MD_free (self->sha256);
        EVP_MD_CTX_free (self->md);
        EVP_CIPHER_free (self->aes);
        EVP_CIPHER_CTX_free (self->cipher);
        OPENSSL_cleanse (self->key, sizeof self->key);
        free (self);
        *self_p = NULL;
    }
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

int
mesh_audit_seal_plain (const mesh_audit_record_t *record, mesh_buf_t *out)
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

void
mesh_audit_seal_digest (mesh_audit_seal_t *self, const char *body, size_t body_size,
                        const void *prompt, size_t prompt_size, const void *response,
                        size_t response_size, unsigned char digest [CHAIN_BYTES])
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

void
mesh_audit_seal_chain (mesh_audit_seal_t *self, const unsigned char chain [CHAIN_BYTES],
                       uint64_t seq, const unsigned char digest [CHAIN_BYTES],
                       unsigned char out [CHAIN_BYTES])
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
s_set_key (mesh_audit_seal_t *self, const unsigned char key [KEY_BYTES], bool encrypt)
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

int
mesh_audit_seal_field (mesh_audit_seal_t *self, const mesh_audit_keyring_key_t *key,
                       unsigned char nonce [NONCE_BYTES], const mesh_bytes_t *id,
                       const char *field, const mesh_bytes_t *plain, mesh_buf_t *out)
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
    s_set_key (self, key->key, true);
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

int
mesh_audit_seal_parse (const void *blob, size_t size, mesh_audit_seal_parts_t *sealed)
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

const char *
mesh_audit_seal_open (mesh_audit_seal_t *self, const mesh_audit_keyring_t *keys,
                      const mesh_bytes_t *id, const char *field, const void *blob, size_t size,
                      mesh_buf_t *out)
{
    mesh_audit_seal_parts_t sealed;
    if (mesh_audit_seal_parse (blob, size, &sealed) < 0)
        return "not a sealed field";
    const mesh_audit_keyring_key_t *key = mesh_audit_keyring_find (keys, sealed.key_id,
                                                                    sealed.key_id_len);
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
    s_set_key (self, key->key, false);
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
s_put_u64 (unsigned char *out, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        out [i] = (unsigned char) (value >> (56 - 8 * i));
    return 8;
}

static size_t
s_checkpoint_text (unsigned char *out, const mesh_audit_seal_checkpoint_t *checkpoint)
{
    size_t len = sizeof CHECKPOINT_TEXT;             //  with its NUL
    memcpy (out, CHECKPOINT_TEXT, len);
    len += s_put_u64 (out + len, checkpoint->seq);
    memcpy (out + len, checkpoint->chain, CHAIN_BYTES);
    len += CHAIN_BYTES;
    len += s_put_u64 (out + len, (uint64_t) checkpoint->time_ms);
    len += s_put_u64 (out + len, checkpoint->prev_seq);
    memcpy (out + len, checkpoint->prev_digest, CHAIN_BYTES);
    return len + CHAIN_BYTES;
}

#define CHECKPOINT_TEXT_MAX (sizeof CHECKPOINT_TEXT + 3 * 8 + 2 * CHAIN_BYTES)

int
mesh_audit_seal_checkpoint_sign (EVP_PKEY *signer, const mesh_audit_seal_checkpoint_t *checkpoint,
                                 unsigned char *signature, size_t *signature_size,
                                 char *why, size_t why_size)
{
    unsigned char text [CHECKPOINT_TEXT_MAX];
    size_t len = s_checkpoint_text (text, checkpoint);
    *signature_size = SIGNATURE_BYTES;
    EVP_MD_CTX *md = EVP_MD_CTX_new ();
    bool signed_ok = md && EVP_DigestSignInit (md, NULL, NULL, NULL, signer) == 1
                  && EVP_DigestSign (md, signature, signature_size, text, len) == 1;
    EVP_MD_CTX_free (md);
    if (!signed_ok)
        return mesh_fail (why, why_size, "cannot sign the checkpoint (not an Ed25519 key?)");
    return 0;
}

bool
mesh_audit_seal_checkpoint_valid (EVP_PKEY *public_key,
                                  const mesh_audit_seal_checkpoint_t *checkpoint,
                                  const void *signature, size_t signature_size)
{
    unsigned char text [CHECKPOINT_TEXT_MAX];
    size_t len = s_checkpoint_text (text, checkpoint);
    EVP_MD_CTX *md = EVP_MD_CTX_new ();
    bool valid = md && EVP_DigestVerifyInit (md, NULL, NULL, NULL, public_key) == 1
              && EVP_DigestVerify (md, signature, signature_size, text, len) == 1;
    EVP_MD_CTX_free (md);
    return valid;
}

void
mesh_audit_seal_signature_digest (const void *signature, size_t size,
                                  unsigned char digest [CHAIN_BYTES])
{
    unsigned int out = 0;
    bool ok = EVP_Digest (signature, size, digest, &out, EVP_sha256 (), NULL) == 1;
    assert (ok && out == CHAIN_BYTES);
}

//  The signing key --------------------------------------------------------------

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
    mesh_audit_file_sync_parent (path);
    return 0;
}

EVP_PKEY *
mesh_audit_seal_signer_load (const char *private_path, const char *public_path,
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
mesh_audit_seal_public_key_load (const char *path, char *why, size_t why_size)
{
    return s_read_pem (path, false, why, why_size);
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"

#include <sys/stat.h>

//  The signing key: made once, read back, checked; checkpoints signed
static void
s_test_signer (const char *root)
{
    char path [4096], other [4096], why [256];
    struct stat st;
    //  Signer: made once (private 0600), read back; its public key checked
    char private_path [4096], public_path [4096];
    snprintf (private_path, sizeof private_path, "%s/signing.pem", root);
    snprintf (public_path, sizeof public_path, "%s/signing.pub.pem", root);
    EVP_PKEY *signer = mesh_audit_seal_signer_load (private_path, public_path, why, sizeof why);
    assert (signer);
    assert (stat (private_path, &st) == 0 && (st.st_mode & 0777) == 0600);
    EVP_PKEY *again = mesh_audit_seal_signer_load (private_path, public_path, why, sizeof why);
    assert (again && EVP_PKEY_eq (signer, again) == 1);
    EVP_PKEY_free (again);
    EVP_PKEY *public_key = mesh_audit_seal_public_key_load (public_path, why, sizeof why);
    assert (public_key && EVP_PKEY_eq (signer, public_key) == 1);
    snprintf (path, sizeof path, "%s/other.pem", root);
    snprintf (other, sizeof other, "%s/other.pub.pem", root);
    EVP_PKEY *stranger = mesh_audit_seal_signer_load (path, other, why, sizeof why);
    assert (stranger);
    assert (!mesh_audit_seal_signer_load (private_path, other, why, sizeof why));
    assert (strstr (why, "not the public key"));
    EVP_PKEY *stranger_public = mesh_audit_seal_public_key_load (other, why, sizeof why);
    assert (stranger_public);
    assert (!mesh_audit_seal_public_key_load (private_path, why, sizeof why));
    EVP_PKEY *ec = EVP_PKEY_Q_keygen (NULL, NULL, "EC", "P-256");
    snprintf (path, sizeof path, "%s/ec.pem", root);
    assert (ec && s_write_pem (path, ec, true, why, sizeof why) == 0);
    EVP_PKEY_free (ec);
    assert (!mesh_audit_seal_signer_load (path, NULL, why, sizeof why) && strstr (why, "Ed25519"));

    //  A checkpoint's signature covers its seq, chain value, time and the
    //  checkpoint before it (seq and signature digest)
    mesh_audit_seal_checkpoint_t checkpoint = { .seq = 10, .time_ms = 1000, .prev_seq = 5 };
    memset (checkpoint.chain, 7, CHAIN_BYTES);
    memset (checkpoint.prev_digest, 9, CHAIN_BYTES);
    unsigned char signature [SIGNATURE_BYTES];
    size_t size = 0;
    assert (mesh_audit_seal_checkpoint_sign (signer, &checkpoint, signature, &size,
                                             why, sizeof why) == 0);
    assert (size == SIGNATURE_BYTES);
    assert (mesh_audit_seal_checkpoint_valid (public_key, &checkpoint, signature, size));
    assert (!mesh_audit_seal_checkpoint_valid (stranger_public, &checkpoint, signature, size));
    assert (!mesh_audit_seal_checkpoint_valid (public_key, &checkpoint, signature, size - 1));
    for (int part = 0; part < 5; part++) {
        mesh_audit_seal_checkpoint_t changed = checkpoint;
        switch (part) {
            case 0: changed.seq++; break;
            case 1: changed.chain [31] ^= 1; break;
            case 2: changed.time_ms++; break;
            case 3: changed.prev_seq++; break;
            default: changed.prev_digest [0] ^= 0x80; break;
        }
        assert (!mesh_audit_seal_checkpoint_valid (public_key, &changed, signature, size));
    }
    //  The digest the next checkpoint names: SHA-256 of the signature
    unsigned char digest [CHAIN_BYTES], want [CHAIN_BYTES];
    mesh_audit_seal_signature_digest (signature, size, digest);
    assert (EVP_Digest (signature, size, want, NULL, EVP_sha256 (), NULL) == 1);
    assert (memcmp (digest, want, CHAIN_BYTES) == 0);
    assert (mesh_audit_seal_checkpoint_sign (public_key, &checkpoint, signature, &size,
                                             why, sizeof why) == -1);
    assert (strstr (why, "cannot sign"));
    EVP_PKEY_free (signer);
    EVP_PKEY_free (public_key);
    EVP_PKEY_free (stranger);
    EVP_PKEY_free (stranger_public);
}

//  Sealed fields open only with their key, record id and field name
static void
s_test_seal (void)
{
    char why [256];
    mesh_audit_keyring_t *both = mesh_audit_keyring_load (NULL, MESH_AUDIT_SAMPLE_KEY1 ";"
                                                          MESH_AUDIT_SAMPLE_KEY2, why, sizeof why);
    mesh_audit_keyring_t *first = mesh_audit_keyring_load (NULL, MESH_AUDIT_SAMPLE_KEY1,
                                                           why, sizeof why);
    assert (both && first);
    const mesh_audit_keyring_key_t *key = mesh_audit_keyring_active_key (both);
    mesh_audit_seal_t *seal = mesh_audit_seal_new ();
    char id_text [MESH_ID_LEN + 1], other_text [MESH_ID_LEN + 1];
    mesh_id_new (id_text);
    mesh_id_new (other_text);
    mesh_bytes_t id = { id_text, MESH_ID_LEN }, other = { other_text, MESH_ID_LEN };
    mesh_bytes_t plain = { "a secret prompt", 15 };
    mesh_buf_t sealed, again, opened;
    mesh_buf_init (&sealed);
    mesh_buf_init (&again);
    mesh_buf_init (&opened);
    //  The nonce counter goes up by one per field, carrying
    unsigned char nonce [NONCE_BYTES] = { 0 };
    nonce [NONCE_BYTES - 1] = 0xff;
    assert (mesh_audit_seal_field (seal, key, nonce, &id, "prompt", &plain, &sealed) == 0);
    assert (nonce [NONCE_BYTES - 1] == 0 && nonce [NONCE_BYTES - 2] == 1);
    mesh_audit_seal_parts_t parts;
    assert (mesh_audit_seal_parse (sealed.data, sealed.len, &parts) == 0);
    assert (parts.key_id_len == 2 && memcmp (parts.key_id, "k2", 2) == 0);
    assert (memcmp (parts.nonce, nonce, NONCE_BYTES) == 0 && parts.cipher_size == plain.size);
    assert (sealed.len == 2 + 2 + NONCE_BYTES + plain.size + TAG_BYTES);
    assert (mesh_audit_seal_field (seal, key, nonce, &id, "prompt", &plain, &again) == 0);
    assert (again.len == sealed.len && memcmp (again.data, sealed.data, sealed.len) != 0);

    assert (mesh_audit_seal_open (seal, both, &id, "prompt", sealed.data, sealed.len,
                                  &opened) == NULL);
    assert (opened.len == plain.size && mesh_streq (opened.data, "a secret prompt"));
    assert (strstr (mesh_audit_seal_open (seal, both, &id, "response", sealed.data, sealed.len,
                                          &opened), "authentication failed"));
    assert (strstr (mesh_audit_seal_open (seal, both, &other, "prompt", sealed.data, sealed.len,
                                          &opened), "authentication failed"));
    assert (strstr (mesh_audit_seal_open (seal, first, &id, "prompt", sealed.data, sealed.len,
                                          &opened), "unknown key id"));
    mesh_bytes_t not_id = { "not a request id at all!!!", MESH_ID_LEN };
    assert (strstr (mesh_audit_seal_open (seal, both, &not_id, "prompt", sealed.data, sealed.len,
                                          &opened), "not a request id"));
    assert (strstr (mesh_audit_seal_open (seal, both, &id, "prompt", sealed.data, 10, &opened),
                    "not a sealed field"));
    assert (mesh_audit_seal_parse (NULL, 0, &parts) == -1);
    sealed.data [sealed.len - 1] ^= 1;                      //  the tag
    assert (strstr (mesh_audit_seal_open (seal, both, &id, "prompt", sealed.data, sealed.len,
                                          &opened), "authentication failed"));
    //  An empty field seals and opens too, under the older key
    mesh_bytes_t empty = { NULL, 0 };
    assert (mesh_audit_seal_field (seal, mesh_audit_keyring_active_key (first), nonce, &id,
                                   "response", &empty, &sealed) == 0);
    assert (mesh_audit_seal_open (seal, both, &id, "response", sealed.data, sealed.len,
                                  &opened) == NULL);
    assert (opened.len == 0 && opened.data [0] == 0);
    mesh_buf_free (&sealed);
    mesh_buf_free (&again);
    mesh_buf_free (&opened);
    mesh_audit_seal_destroy (&seal);
    mesh_audit_seal_destroy (&seal);
    assert (seal == NULL);
    mesh_audit_keyring_destroy (&both);
    mesh_audit_keyring_destroy (&first);
}

//  The digest is SHA-256 of the record encoded with its sealed fields, for
//  every size of bin header; the chain step is SHA-256 (chain | seq | digest)
static void
s_test_hash (void)
{
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    mesh_audit_seal_t *seal = mesh_audit_seal_new ();
    mesh_buf_t body, canonical;
    mesh_buf_init (&body);
    mesh_buf_init (&canonical);
    size_t sizes [] = { 0, 40, 255, 256, 65535, 65536, 200000 };
    char *blob = malloc (200001);              //  the prompt from 0, the response from 1
    assert (blob);
    for (size_t i = 0; i < 200001; i++)
        blob [i] = (char) (i * 31);
    for (size_t i = 0; i < MESH_ARRAY_SIZE (sizes); i++) {
        mesh_audit_record_t record = *mesh_audit_sample_record (data, i, 1772323200000LL);
        assert (mesh_audit_seal_plain (&record, &body) == 0);
        size_t prompt_size = sizes [i], response_size = sizes [MESH_ARRAY_SIZE (sizes) - 1 - i];
        unsigned char digest [CHAIN_BYTES], want [CHAIN_BYTES];
        mesh_audit_seal_digest (seal, body.data, body.len, blob, prompt_size, blob + 1,
                                response_size, digest);
        record.prompt = (mesh_bytes_t) { blob, prompt_size };
        record.response = (mesh_bytes_t) { blob + 1, response_size };
        mesh_buf_reset (&canonical);
        assert (mesh_audit_encode (&record, &canonical) == 0);
        assert (EVP_Digest (canonical.data, canonical.len, want, NULL, EVP_sha256 (), NULL) == 1);
        assert (memcmp (digest, want, CHAIN_BYTES) == 0);

        unsigned char chain [CHAIN_BYTES], step [8 + 2 * CHAIN_BYTES];
        memset (step, 0, sizeof step);
        memcpy (step, want, CHAIN_BYTES);           //  as the previous chain value
        uint64_t seq = 0x0102030405060708ULL + i;
        for (int b = 0; b < 8; b++)
            step [CHAIN_BYTES + b] = (unsigned char) (seq >> (56 - 8 * b));
        memcpy (step + CHAIN_BYTES + 8, digest, CHAIN_BYTES);
        assert (EVP_Digest (step, sizeof step, want, NULL, EVP_sha256 (), NULL) == 1);
        memcpy (chain, digest, CHAIN_BYTES);
        mesh_audit_seal_chain (seal, chain, seq, digest, chain);
        assert (memcmp (chain, want, CHAIN_BYTES) == 0);
    }
    //  A record the codec refuses has no canonical bytes
    mesh_audit_record_t bad = *mesh_audit_sample_record (data, 0, 1772323200000LL);
    bad.tenant = (mesh_bytes_t) { "bad\xff", 4 };
    assert (mesh_audit_seal_plain (&bad, &body) == -1);
    free (blob);
    free (data);
    mesh_buf_free (&body);
    mesh_buf_free (&canonical);
    mesh_audit_seal_destroy (&seal);
}

void
mesh_audit_seal_test (bool verbose)
{
    (void) verbose;
    char root [1024];
    mesh_audit_sample_tmpdir (root, sizeof root);
    s_test_signer (root);
    s_test_seal ();
    s_test_hash ();
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
