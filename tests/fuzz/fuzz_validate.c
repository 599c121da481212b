/*  fuzz_validate: ingress_validate on arbitrary request bodies, as the
    ingress checks a client's chat completion request.

    Property: no crash, leak or UB; a valid body yields its model name (1 to
    255 bytes) and no error; an invalid one a 400 or 422 with a code and a
    message, every string NUL-terminated inside its field.                   */
#include "fuzz.h"
#include "ingress/ingress_validate.h"

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
    return 0;
}
