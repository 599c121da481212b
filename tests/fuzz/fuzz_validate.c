/*  fuzz_validate: ingress_validate on arbitrary request bodies, as the
    ingress checks a client's chat completion request.

    Property: no crash, leak or UB; a valid body yields its model name (1 to
    255 bytes) and no error; an invalid one a 400 or 422 with a code and a
    message, every string NUL-terminated inside its field.  Reference:
    jansson.  What it cannot parse as a JSON object the validator refuses
    as 400 invalid_json; a body the validator takes jansson reads as an
    object whose "model" is the model it named; and that object written
    again by jansson (other spacing, \u escapes resolved) gets the same
    verdict and model: the validator reads JSON, not bytes.                 */
#include "fuzz.h"
#include "ingress/ingress_validate.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define TERMINATED(field) (memchr ((field), 0, sizeof (field)) != NULL)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    ingress_check_t check;
    memset (&check, 0x55, sizeof check);        //  prove it sets every field
    int rc = ingress_validate ((const char *) data, size, 4096, &check);
    FUZZ_ASSERT (TERMINATED (check.model) && TERMINATED (check.message));
    FUZZ_ASSERT (TERMINATED (check.param) && TERMINATED (check.code));
    if (rc == 0) {
        FUZZ_ASSERT (check.status == 0);
        FUZZ_ASSERT (check.model [0] != 0);
        FUZZ_ASSERT (check.message [0] == 0 && check.code [0] == 0);
    }
    else {
        FUZZ_ASSERT (rc == -1);
        FUZZ_ASSERT (check.status == 400 || check.status == 422);
        FUZZ_ASSERT (check.code [0] != 0 && check.message [0] != 0);
    }
    json_t *json = json_loadb ((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object (json)) {
        FUZZ_ASSERT (rc == -1 && check.status == 400);
        json_decref (json);
        return 0;
    }
    if (rc == 0) {
        json_t *model = json_object_get (json, "model");
        FUZZ_ASSERT (json_is_string (model) && strcmp (json_string_value (model), check.model) == 0);
    }
    char *again = json_dumps (json, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref (json);
    if (!again)
        return 0;
    ingress_check_t second;
    memset (&second, 0x55, sizeof second);
    int rc2 = ingress_validate (again, strlen (again), 4096, &second);
    FUZZ_ASSERT (rc2 == rc && second.status == check.status);
    FUZZ_ASSERT (strcmp (second.model, check.model) == 0 && strcmp (second.code, check.code) == 0);
    free (again);
    return 0;
}
