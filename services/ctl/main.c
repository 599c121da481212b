/*  seekmeshctl: the operators' command line for the router's admin API.
    See ctl.h for the modules and --help (s_help below) for the commands.

        seekmeshctl [--admin HOST:PORT] [--token TOKEN] [--json] GROUP [COMMAND] ARGS

    main only wires: it takes the global options out of argv (they may come
    anywhere, so `models list --json` works), finds the command in the
    table below, settles the address and token and runs the command.       */
#include "ctl.h"
#include "ctl_http.h"
#include "mesh_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ADMIN "127.0.0.1:9081"

typedef struct {
    const char *group;
    const char *command;        //  NULL: the group is the whole command
    ctl_fn *fn;
    const char *synopsis;
    const char *summary;
} command_t;

//  Every command.  A new group (audit ...) is a few more rows.
static const command_t s_commands [] = {
    { "models", "list",   ctl_models_list,   "models list",
      "the models (config and admin ones) with their aliases" },
    { "models", "get",    ctl_models_get,    "models get NAME",
      "one model's entry, as JSON" },
    { "models", "add",    ctl_models_add,
      "models add NAME (--endpoint URL... | --file ENTRY.json) [MODEL OPTIONS]",
      "create or replace a model (PUT)" },
    { "models", "set",    ctl_models_set,    "models set NAME MODEL OPTIONS",
      "change only the fields given (PATCH)" },
    { "models", "remove", ctl_models_remove, "models remove NAME",
      "remove a model" },
    { "models", "reset",  ctl_models_reset,  "models reset NAME",
      "undo every run-time change of NAME: the config file's entry is back (a model\n"
      "      made at run time is removed)" },
    { "keys",   "list",   ctl_keys_list,     "keys list",
      "the API keys (never their secrets)" },
    { "keys",   "add",    ctl_keys_add,
      "keys add --tenant T [--id ID] [KEY OPTIONS] [--key SECRET]",
      "create a key; its secret is printed once" },
    { "keys",   "set",    ctl_keys_set,      "keys set ID KEY OPTIONS",
      "change only the fields given (PATCH)" },
    { "keys",   "remove", ctl_keys_remove,   "keys remove ID",
      "revoke a key" },
    { "keys",   "reset",  ctl_keys_reset,    "keys reset ID",
      "undo every run-time change of ID: the config file's entry is back (a key\n"
      "      made at run time is revoked)" },
    { "registry", "reset", ctl_registry_reset, "registry reset",
      "undo every run-time change of models and keys: the config file's registry" },
    { "reload", NULL,     ctl_reload,        "reload",
      "have the router re-read its config file" },
    { "sessions", "list", ctl_sessions_list, "sessions list",
      "the live sessions: id, tenant, last activity, turns, the operator who has it" },
    { "sessions", "watch", ctl_sessions_watch, "sessions watch ID",
      "a live transcript of session ID: its history, then each message as it comes" },
    { "sessions", "takeover", ctl_sessions_takeover, "sessions takeover ID [--operator NAME]",
      "take session ID over: its requests wait for your answers instead of the model's" },
    { "sessions", "say", ctl_sessions_say, "sessions say ID \"TEXT\" [--operator NAME]",
      "answer in session ID (taken over): the waiting request, or the next one, gets TEXT" },
    { "sessions", "release", ctl_sessions_release, "sessions release ID [--operator NAME]",
      "hand session ID back to the model (NAME: --operator, $SEEKMESH_OPERATOR or $USER)" },
    { "filters", "list",  ctl_filters_list,  "filters list [--tenant T]",
      "the sensitive-word lists (the global one and every tenant's, or T's)" },
    { "filters", "add",   ctl_filters_add,   "filters add WORD [--tenant T] [--action block|mask]",
      "add a word or phrase to T's list (default: the global list); block (the default)\n"
      "      refuses a request that has it and ends an answer before it, mask stars it out" },
    { "filters", "remove", ctl_filters_remove, "filters remove ID",
      "remove an entry" },
    { "filters", "test",  ctl_filters_test,  "filters test \"TEXT\" [--tenant T]",
      "what the lists in force make of TEXT (T's and the global one; default every list)" },
    { "faq",    "add",    ctl_faq_add,
      "faq add --tenant T (--exact Q | --keyword K... | --regex P) --answer A [--model M] [--id ID]",
      "an answer the cache gives without the model, to the last user message of the\n"
      "      tenant's requests (on model M only, with --model); matched exactly once\n"
      "      normalised, by every keyword, or by a case-insensitive POSIX regex" },
    { "faq",    "list",   ctl_faq_list,      "faq list [--tenant T]",
      "the FAQ entries" },
    { "faq",    "get",    ctl_faq_get,       "faq get ID",
      "one FAQ entry, as JSON" },
    { "faq",    "remove", ctl_faq_remove,    "faq remove ID",
      "remove a FAQ entry" },
    { "faq",    "test",   ctl_faq_test,      "faq test \"QUESTION\" --tenant T [--model M]",
      "the FAQ entry that would answer QUESTION, if any" },
    { "audit",  "query",  ctl_audit_query,
      "audit query [--since 1h|30m|2d|DATE] [--until ...] [--tenant T] [--model M] [--status N]\n"
      "      [--outcome X] [--limit N] [--decrypt] [--dir DIR] [--key-file FILE]",
      "the audit records, oldest first (--json: one object a line); --decrypt adds the\n"
      "      prompt and the response text (needs the key file)" },
    { "audit",  "verify", ctl_audit_verify,
      "audit verify [--from YYYY-MM-DD] [--tail-wait MS] [--dir DIR] [--public-key FILE]",
      "check the records' hash chain and the signed checkpoints, each naming the one\n"
      "      before: exit 0 sound, 1 with the first bad thing named, 2 unreadable.  Records\n"
      "      after the last checkpoint pass only while the service runs and signs them\n"
      "      within MS (default 5000; 0: never wait)" },
    { "audit",  "export", ctl_audit_export,
      "audit export [--format ndjson] [QUERY OPTIONS]",
      "the records as NDJSON with Elastic Common Schema names, for Filebeat or Loki" },
    { "audit",  "rotate-key", ctl_audit_rotate_key,
      "audit rotate-key [--key-file FILE] [--dir DIR]",
      "add a new key to the audit key file and print its id; it encrypts from now on\n"
      "      (the running service picks it up); old records stay readable.  The audit\n"
      "      commands read the store's files: DIR is $SEEKMESH_AUDIT_DIR, else run/audit;\n"
      "      FILE is $SEEKMESH_AUDIT_KEY_FILE, else DIR/keys; the public key\n"
      "      DIR/signing.pub.pem" },
    { "curve",  "keygen", ctl_curve_keygen,
      "curve keygen [--dir DIR [--role ROLE]...]",
      "a new CURVE keypair (public and secret, Z85); with --dir, the certificates a\n"
      "      mesh reads (mesh.curve_dir): DIR/<role>.cert and <role>.cert_secret (mode\n"
      "      0600) for every role (ingress, router, connector, audit, cache), or those given" },
};

static void
s_help (FILE *out)
{
    fputs ("usage: seekmeshctl [--admin HOST:PORT] [--token TOKEN] [--json] COMMAND ...\n"
           "\nManages a seekmesh router's models, API keys, sessions, word lists and FAQ answers\n"
           "through its admin API, and reads the audit store.\n"
           "\ncommands:\n", out);
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_commands); i++)
        fprintf (out, "  %s\n      %s\n", s_commands [i].synopsis, s_commands [i].summary);
    fputs ("\nmodel options (add, set):\n"
           "  --endpoint URL        where the model is served; repeat for several\n"
           "  --upstream-model M    the model name sent upstream (default: NAME)\n"
           "  --fallback F          the model tried when this one fails\n"
           "  --max-concurrency N   requests in flight at most\n"
           "  --key-env ENV         send the upstream key held in the connector's ENV\n"
           "                        (auth api_key, header Authorization)\n"
           "  --no-auth             send no upstream credentials\n"
           "  --alias A             another name for the model; repeat for several\n"
           "  --file ENTRY.json     start from this entry; the options override it\n"
           "  --no-fallback, --no-upstream-model, --no-max-concurrency, --no-alias\n"
           "                        set: take that setting away\n"
           "\nkey options (add, set):\n"
           "  --tenant T            who the key belongs to (add: required)\n"
           "  --rpm N, --tpm N      requests, tokens per minute at most\n"
           "  --budget N            tokens per budget period at most\n"
           "  --budget-period P     hour, day or month (default: day)\n"
           "  --model M             a model the key may use; repeat (default: every model)\n"
           "  --no-rpm, --no-tpm, --no-budget, --no-budget-period, --no-model\n"
           "                        set: take that limit or list away\n"
           "  --id ID, --key SECRET add only; by default the router makes both\n"
           "\nglobal options (anywhere on the line):\n"
           "  --admin HOST:PORT     the router's admin address, also http://HOST:PORT\n"
           "                        (default: $SEEKMESH_ADMIN_URL, else " DEFAULT_ADMIN ")\n"
           "  --token TOKEN         the admin token (default: $SEEKMESH_ADMIN_TOKEN, which\n"
           "                        keeps it out of ps and shell history, else the one\n"
           "                        make run keeps in $SEEKMESH_RUN_DIR/admin-token, by\n"
           "                        default run/admin-token)\n"
           "  --json                print the API's JSON instead of tables and messages\n"
           "  -h, --help            this text\n"
           "\nNumbers are positive integers.  Exit status: 0 done, 1 the API refused (its\n"
           "message on stderr), 2 the admin API could not be reached, 64 usage error.\n", out);
}

//  The value of a global option at argv [*i]: "--name=value" or
//  "--name value"; NULL when arg is another option.  Sets *missing when
//  arg is this option but has no value.
static const char *
s_global_value (const char *name, int argc, char **argv, int *i, bool *missing)
{
    const char *arg = argv [*i];
    size_t len = strlen (name);
    if (strncmp (arg, name, len) != 0)
        return NULL;
    if (arg [len] == '=')
        return arg + len + 1;
    if (arg [len] != 0)
        return NULL;
    if (*i + 1 < argc)
        return argv [++*i];
    *missing = true;
    return NULL;
}

//  The token make run keeps in the run directory ($SEEKMESH_RUN_DIR, else
//  run/ of the current directory): its first line.  0, or -1 if none.
static int
s_kept_token (char *token, size_t size)
{
    const char *dir = getenv ("SEEKMESH_RUN_DIR");
    char path [4096];
    snprintf (path, sizeof path, "%s/admin-token", dir && *dir ? dir : "run");
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    bool got = fgets (token, (int) size, file) != NULL;
    fclose (file);
    if (!got)
        return -1;
    token [strcspn (token, "\r\n")] = 0;
    return *token ? 0 : -1;
}

int
main (int argc, char *argv [])
{
    ctl_t ctl = { .timeout_ms = CTL_TIMEOUT_MS };
    const char *admin = NULL, *token = NULL;
    bool help = false, missing = false;

    //  Take the global options out; the rest move down to argv [0 ..)
    int count = 0;
    bool ended = false;
    for (int i = 1; i < argc; i++) {
        const char *value;
        if (!ended && mesh_streq (argv [i], "--json"))
            ctl.json = true;
        else
        if (!ended && (mesh_streq (argv [i], "--help") || mesh_streq (argv [i], "-h")))
            help = true;
        else
        if (!ended && (value = s_global_value ("--admin", argc, argv, &i, &missing)))
            admin = value;
        else
        if (!ended && (value = s_global_value ("--token", argc, argv, &i, &missing)))
            token = value;
        else
        if (missing)
            return ctl_usage (&ctl, "%s needs a value", argv [i]);
        else {
            ended |= mesh_streq (argv [i], "--");
            argv [count++] = argv [i];
        }
    }
    if (help) {
        s_help (stdout);
        return CTL_EXIT_OK;
    }
    if (count == 0) {
        s_help (stderr);
        return CTL_EXIT_USAGE;
    }

    const command_t *command = NULL;
    char choices [256] = "";
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_commands); i++) {
        const command_t *row = &s_commands [i];
        if (!mesh_streq (row->group, argv [0]))
            continue;
        if (!row->command || (count > 1 && mesh_streq (row->command, argv [1])))
            command = row;
        else
            snprintf (choices + strlen (choices), sizeof choices - strlen (choices), "%s%s",
                      *choices ? ", " : "", row->command);
    }
    if (!command && !*choices)
        return ctl_usage (&ctl, "unknown command '%s'", argv [0]);
    if (!command && count == 1)
        return ctl_usage (&ctl, "%s: which one? %s", argv [0], choices);
    if (!command)
        return ctl_usage (&ctl, "%s: unknown command '%s' (%s)", argv [0], argv [1], choices);
    ctl.synopsis = command->synopsis;

    const char *source = admin ? "--admin" : "SEEKMESH_ADMIN_URL";
    if (!admin && !((admin = getenv ("SEEKMESH_ADMIN_URL")) && *admin)) {
        admin = DEFAULT_ADMIN;
        source = "default";
    }
    char why [512];
    if (ctl_http_parse_address (admin, ctl.host, sizeof ctl.host, ctl.port, sizeof ctl.port,
                                why, sizeof why) < 0)
        return ctl_usage (&ctl, "%s: %s", source, why);
    ctl.token = token ? token : getenv ("SEEKMESH_ADMIN_TOKEN");
    static char kept [256];
    if ((!ctl.token || !*ctl.token) && s_kept_token (kept, sizeof kept) == 0)
        ctl.token = kept;

    int words = command->command ? 2 : 1;
    return command->fn (&ctl, count - words, argv + words);
}
