/*  fuzz_keys: the audit key ring's parser on arbitrary text, as the audit
    service and seekmeshctl read $SEEKMESH_AUDIT_KEYS (entries separated by
    ';' or newlines) and the key file.

    Property: no crash, leak or UB; a refusal always says why; an accepted
    ring has an active key whose id is one of the text's words, 1-32
    letters, digits, '.', '_' or '-'.                                      */
#include "fuzz.h"
#include "mesh_audit_keyring.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  The environment's text is a C string: up to the first NUL
    char *text = malloc (size + 1);
    FUZZ_ASSERT (text);
    memcpy (text, data, size);
    text [size] = 0;
    char why [512] = "";
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL, text, why, sizeof why);
    if (!keys)
        FUZZ_ASSERT (why [0]);
    else {
        const char *id = mesh_audit_keyring_active (keys);
        size_t len = strlen (id);
        FUZZ_ASSERT (len >= 1 && len <= 32);
        FUZZ_ASSERT (strspn (id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789._-") == len);
        FUZZ_ASSERT (strstr (text, id) != NULL);
        mesh_audit_keyring_destroy (&keys);
        FUZZ_ASSERT (keys == NULL);
    }
    free (text);
    return 0;
}
