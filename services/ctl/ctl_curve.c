/*  ctl_curve: CURVE keys for the mesh's links (mesh_curve.h).

        curve keygen                        a new keypair: public and secret, Z85
        curve keygen --dir DIR [--role R]   the certificates a mesh reads:
                                            DIR/<role>.cert and .cert_secret
                                            (mode 0600) for each role, or R

    No admin API: it writes files, or prints.                               */
#include "ctl.h"
#include "mesh_curve.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const ctl_option_t s_keygen_options [] = {
    { "dir",  CTL_STRING, "dir" },
    { "role", CTL_LIST,   "roles" },
    { NULL, 0, NULL }
};

int
ctl_curve_keygen (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    int rc = ctl_parse (ctl, argc, argv, s_keygen_options, fields, NULL, 0);
    if (rc != CTL_EXIT_OK)
        goto done;
    const char *dir = json_string_value (json_object_get (fields, "dir"));
    if (!dir) {
        char public_key [41], secret_key [41];
        if (mesh_curve_keygen (public_key, secret_key) < 0) {
            fprintf (stderr, "seekmeshctl: this libzmq has no CURVE\n");
            rc = CTL_EXIT_API;
            goto done;
        }
        if (ctl->json) {
            json_t *object = json_pack ("{ss ss}", "public", public_key, "secret", secret_key);
            ctl_print_json (object);
            json_decref (object);
        }
        else
            printf ("public %s\nsecret %s\n", public_key, secret_key);
        goto done;
    }
    static const char *const all [] = { "ingress", "router", "connector", "audit", "cache", NULL };
    json_t *roles = json_object_get (fields, "roles");
    if (mkdir (dir, 0700) < 0 && errno != EEXIST) {
        fprintf (stderr, "seekmeshctl: cannot make %s: %s\n", dir, strerror (errno));
        rc = CTL_EXIT_API;
        goto done;
    }
    for (size_t i = 0; roles ? i < json_array_size (roles) : all [i] != NULL; i++) {
        const char *role = roles ? json_string_value (json_array_get (roles, i)) : all [i];
        char why [512];
        if (mesh_curve_save (dir, role, why, sizeof why) < 0) {
            fprintf (stderr, "seekmeshctl: %s\n", why);
            rc = CTL_EXIT_API;
            goto done;
        }
        printf ("%s/%s.cert\n", dir, role);
    }
done:
    json_decref (fields);
    return rc;
}
