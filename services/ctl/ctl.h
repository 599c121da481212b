/*  seekmeshctl: the operators' command line for the router's admin API.

        ctl_http    one blocking HTTP/1.1 exchange over TCP
        ctl_api     a call as the commands see it (token, status, error
                    envelope, --json), option parsing, tables; reload
        ctl_models  models list | get | add | set | remove | reset
        ctl_keys    keys list | add | set | remove | reset
        ctl_filters filters list | add | remove | test: the word lists
        ctl_sessions sessions list | watch | takeover | say | release
        ctl_faq     faq add | list | get | remove | test: the cache stage's
                    FAQ answers
        ctl_audit   audit query | verify | export | rotate-key, on the audit
                    store's files (no admin API)
        ctl_export  an audit record as an NDJSON line with Elastic Common
                    Schema names (audit export)
        ctl_curve   curve keygen: the mesh's CURVE keys (no admin API)
        main        global options and the table of commands

    A command runs once and exits with one of the CTL_EXIT_ codes; its
    messages are plain "seekmeshctl: ..." lines on stderr, not mesh_log
    lines, since a person reads them.  Single-threaded.                     */
#ifndef CTL_H
#define CTL_H

#include "mesh_buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_API = 1,           //  the API answered with an error (or nonsense)
    CTL_EXIT_UNREACHABLE = 2,   //  no answer: connect, send or read failed
    CTL_EXIT_USAGE = 64         //  bad command line (sysexits' EX_USAGE)
};

#define CTL_TIMEOUT_MS 5000

typedef struct {
    char host [256];            //  the admin API: numeric or a name
    char port [8];
    const char *token;          //  NULL: none given (each call refuses to start)
    bool json;                  //  print the API's JSON, not tables
    int timeout_ms;             //  connect, and each send or receive
    const char *synopsis;       //  of the running command, for usage errors
} ctl_t;

//  A command gets the arguments after its words ("models add": argv [0] is
//  what follows "add") and returns the exit code.
typedef int (ctl_fn) (ctl_t *ctl, int argc, char **argv);

//  The options of a command.  Each one given sets `field` of a JSON object:
//  a string, a positive integer, a limit (0 or more: 0 lifts it), an
//  array of strings (the option may be repeated), true, or null (UNSET:
//  "--no-X" takes the setting X away; with X on the same line it is a
//  usage error).  A list ends with an entry whose name is NULL.
typedef enum { CTL_STRING, CTL_COUNT, CTL_LIMIT, CTL_LIST, CTL_FLAG, CTL_UNSET } ctl_kind_t;
typedef struct {
    const char *name;           //  without the leading "--"
    ctl_kind_t kind;
    const char *field;
} ctl_option_t;

//  Reads argv ("--name value", "--name=value" or a positional; "--" ends
//  the options) into fields and exactly `count` positionals, none empty.
//  options may be NULL (then so may fields).  CTL_EXIT_OK, or
//  CTL_EXIT_USAGE after saying why.
int  ctl_parse (ctl_t *ctl, int argc, char **argv, const ctl_option_t *options,
                json_t *fields, const char **positional, int count);
//  Prints "seekmeshctl: <why>" and the command's synopsis on stderr;
//  returns CTL_EXIT_USAGE.
int  ctl_usage (ctl_t *ctl, const char *format, ...) __attribute__ ((format (printf, 2, 3)));
//  True when text is a positive integer that fits in int64; sets *value.
bool ctl_parse_count (const char *text, long long *value);

//  Calls method on prefix + segment (segment percent-encoded; NULL for
//  none) with body (NULL: none; not consumed).  On a 2xx: CTL_EXIT_OK and,
//  with --json, the body printed as it came and *reply NULL; otherwise
//  *reply is the parsed body (json_null () when empty; the caller
//  decrefs).  On failure: the message printed, *reply NULL, the exit code.
int  ctl_call (ctl_t *ctl, const char *method, const char *prefix, const char *segment,
               json_t *body, json_t **reply);
//  The same on prefix + segment + suffix ("/admin/models/" NAME "/reset").
int  ctl_call_at (ctl_t *ctl, const char *method, const char *prefix, const char *segment,
                  const char *suffix, json_t *body, json_t **reply);

//  Prints rows (an array of arrays, the first the header) in aligned
//  columns on stdout.  A cell is a string, a number, an array of strings
//  (joined with ",") or null ("-").  Text from the API is printed with
//  control characters replaced, so a reply cannot drive the terminal.
void ctl_table_print (json_t *rows);
//  Prints value on stdout, indented.
void ctl_print_json (json_t *value);
//  After a list: the config file's entries removed at run time (names, a
//  JSON array), with the command that brings one back; nothing if none.
void ctl_print_removed (const char *group, json_t *names);
//  Prints text from the API on stdout, control characters replaced
void ctl_print_clean (const char *text);
//  Appends the Authorization header line; CTL_EXIT_USAGE (said why) when
//  there is no usable token
int  ctl_auth_headers (ctl_t *ctl, mesh_buf_t *headers);
//  Prints an API error as ctl_call does
void ctl_print_error (int status, const char *data, size_t size);

//  Commands (the table is in main.c)
int  ctl_models_list (ctl_t *ctl, int argc, char **argv);
int  ctl_models_get (ctl_t *ctl, int argc, char **argv);
int  ctl_models_add (ctl_t *ctl, int argc, char **argv);
int  ctl_models_set (ctl_t *ctl, int argc, char **argv);
int  ctl_models_remove (ctl_t *ctl, int argc, char **argv);
int  ctl_models_reset (ctl_t *ctl, int argc, char **argv);
int  ctl_keys_list (ctl_t *ctl, int argc, char **argv);
int  ctl_keys_add (ctl_t *ctl, int argc, char **argv);
int  ctl_keys_set (ctl_t *ctl, int argc, char **argv);
int  ctl_keys_remove (ctl_t *ctl, int argc, char **argv);
int  ctl_keys_reset (ctl_t *ctl, int argc, char **argv);
int  ctl_registry_reset (ctl_t *ctl, int argc, char **argv);
int  ctl_reload (ctl_t *ctl, int argc, char **argv);
int  ctl_filters_list (ctl_t *ctl, int argc, char **argv);
int  ctl_filters_add (ctl_t *ctl, int argc, char **argv);
int  ctl_filters_remove (ctl_t *ctl, int argc, char **argv);
int  ctl_filters_test (ctl_t *ctl, int argc, char **argv);
int  ctl_sessions_list (ctl_t *ctl, int argc, char **argv);
int  ctl_sessions_watch (ctl_t *ctl, int argc, char **argv);
int  ctl_sessions_takeover (ctl_t *ctl, int argc, char **argv);
int  ctl_sessions_say (ctl_t *ctl, int argc, char **argv);
int  ctl_sessions_release (ctl_t *ctl, int argc, char **argv);
int  ctl_faq_add (ctl_t *ctl, int argc, char **argv);
int  ctl_faq_list (ctl_t *ctl, int argc, char **argv);
int  ctl_faq_get (ctl_t *ctl, int argc, char **argv);
int  ctl_faq_remove (ctl_t *ctl, int argc, char **argv);
int  ctl_faq_test (ctl_t *ctl, int argc, char **argv);
int  ctl_audit_query (ctl_t *ctl, int argc, char **argv);
int  ctl_audit_verify (ctl_t *ctl, int argc, char **argv);
int  ctl_audit_export (ctl_t *ctl, int argc, char **argv);
int  ctl_audit_rotate_key (ctl_t *ctl, int argc, char **argv);
int  ctl_curve_keygen (ctl_t *ctl, int argc, char **argv);

void ctl_api_test (bool verbose);
void ctl_audit_test (bool verbose);

#endif
