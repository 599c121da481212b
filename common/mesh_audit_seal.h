/*  mesh_audit_seal: what makes an audit record tamper-evident and its
    prompt and response secret: AES-256-GCM sealing, the hash chain, and
    the Ed25519 checkpoints that sign it.

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
    The chain starts from 32 zero bytes and continues across days.

    A checkpoint signs (Ed25519, with a key made once and kept in a PEM
    file) the chain head and the checkpoint before it:
        "seekmesh-audit-checkpoint/2" 0 | seq | chain | time_ms |
        prev_seq | prev_digest
    (numbers 8 bytes, big-endian), where prev_seq is the previous
    checkpoint's seq and prev_digest SHA-256 of its signature (0 and 32
    zero bytes for the store's first).  So the checkpoints are a chain of
    their own: one removed, or put in another's place, breaks the link of
    the one after it.

    A mesh_audit_seal_t holds OpenSSL contexts: one per thread (the
    writer's, the sealer's, a reader's).  The rest is any thread.            */
#ifndef MESH_AUDIT_SEAL_H
#define MESH_AUDIT_SEAL_H

#include "mesh_audit.h"
#include "mesh_audit_keyring.h"
#include "mesh_buf.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_AUDIT_SEAL_NONCE_BYTES     12
#define MESH_AUDIT_SEAL_TAG_BYTES       16
#define MESH_AUDIT_SEAL_CHAIN_BYTES     32      //  a chain value or a digest (SHA-256)
#define MESH_AUDIT_SEAL_SIGNATURE_BYTES 64      //  Ed25519

typedef struct mesh_audit_seal_t mesh_audit_seal_t;

mesh_audit_seal_t *mesh_audit_seal_new (void);
void        mesh_audit_seal_destroy (mesh_audit_seal_t **self_p);

//  Sealing --------------------------------------------------------------------

//  Seals plain, the field named field ("prompt", "response") of request
//  id, under key into out (replacing what it held); nonce is the counter,
//  advanced first.  0, or -1 if OpenSSL fails.
int         mesh_audit_seal_field (mesh_audit_seal_t *self, const mesh_audit_keyring_key_t *key,
                                   unsigned char nonce [MESH_AUDIT_SEAL_NONCE_BYTES],
                                   const mesh_bytes_t *id, const char *field,
                                   const mesh_bytes_t *plain, mesh_buf_t *out);
//  Opens a sealed field of request id with the key it names from keys,
//  into out (NUL-terminated after its size).  NULL, or why it could not
//  (not a sealed field, unknown key id, failed authentication).
const char *mesh_audit_seal_open (mesh_audit_seal_t *self, const mesh_audit_keyring_t *keys,
                                  const mesh_bytes_t *id, const char *field,
                                  const void *blob, size_t size, mesh_buf_t *out);

//  A sealed field's parts, pointing into it
typedef struct {
    const char *key_id;
    size_t key_id_len;
    const unsigned char *nonce;
    const unsigned char *cipher_text;
    size_t cipher_size;
    const unsigned char *tag;
} mesh_audit_seal_parts_t;

//  0, or -1 if blob has not the shape of a sealed field
int         mesh_audit_seal_parse (const void *blob, size_t size, mesh_audit_seal_parts_t *parts);

//  Hashing --------------------------------------------------------------------

//  Encodes record's plain fields (prompt and response empty) into out,
//  replacing what it held; -1 if the record breaks the codec's limits
int         mesh_audit_seal_plain (const mesh_audit_record_t *record, mesh_buf_t *out);
//  digest = SHA-256 (canonical bytes): body (a mesh_audit_seal_plain
//  encoding) with the sealed prompt and response in place of its empty
//  ones, hashed in pieces so the ciphertexts are not copied again
void        mesh_audit_seal_digest (mesh_audit_seal_t *self, const char *body, size_t body_size,
                                    const void *prompt, size_t prompt_size,
                                    const void *response, size_t response_size,
                                    unsigned char digest [MESH_AUDIT_SEAL_CHAIN_BYTES]);
//  out = SHA-256 (chain | seq | digest); out may be chain
void        mesh_audit_seal_chain (mesh_audit_seal_t *self,
                                   const unsigned char chain [MESH_AUDIT_SEAL_CHAIN_BYTES],
                                   uint64_t seq,
                                   const unsigned char digest [MESH_AUDIT_SEAL_CHAIN_BYTES],
                                   unsigned char out [MESH_AUDIT_SEAL_CHAIN_BYTES]);

//  Checkpoints ----------------------------------------------------------------

//  What a checkpoint signs
typedef struct {
    uint64_t seq;                                       //  the record it signs
    unsigned char chain [MESH_AUDIT_SEAL_CHAIN_BYTES];  //  the chain value at seq
    int64_t time_ms;                                    //  when it was signed
    uint64_t prev_seq;                                  //  the checkpoint before (0: none)
    unsigned char prev_digest [MESH_AUDIT_SEAL_CHAIN_BYTES];    //  SHA-256 of its signature
} mesh_audit_seal_checkpoint_t;

//  Signs checkpoint into signature (room for MESH_AUDIT_SEAL_SIGNATURE_BYTES),
//  its size into *signature_size.  -1 with a reason.
int         mesh_audit_seal_checkpoint_sign (EVP_PKEY *signer,
                                             const mesh_audit_seal_checkpoint_t *checkpoint,
                                             unsigned char *signature, size_t *signature_size,
                                             char *why, size_t why_size);
//  True when signature is public_key's over checkpoint
bool        mesh_audit_seal_checkpoint_valid (EVP_PKEY *public_key,
                                              const mesh_audit_seal_checkpoint_t *checkpoint,
                                              const void *signature, size_t signature_size);
//  digest = SHA-256 (signature): what the next checkpoint names as prev_digest
void        mesh_audit_seal_signature_digest (const void *signature, size_t size,
                                              unsigned char digest [MESH_AUDIT_SEAL_CHAIN_BYTES]);
//  The Ed25519 key that signs checkpoints: read from private_path (PEM),
//  or made there (mode 0600) if the file does not exist, with its public
//  key written to public_path (PEM; NULL: none).  NULL with a reason.
EVP_PKEY   *mesh_audit_seal_signer_load (const char *private_path, const char *public_path,
                                         char *why, size_t why_size);
//  A public key (PEM) for verifying.  NULL with a reason.
EVP_PKEY   *mesh_audit_seal_public_key_load (const char *path, char *why, size_t why_size);

void        mesh_audit_seal_test (bool verbose);

#endif
