/*  replay: runs a fuzz target's LLVMFuzzerTestOneInput over every file in
    the directories and files named on the command line, so a seed corpus
    is replayed by any C11 compiler, without libFuzzer.

        replay_<target> DIR|FILE ...

    Prints "replayed N inputs" and exits 0, or names the input that failed
    and exits non-zero: a crash, a sanitizer report or a broken property
    kills the process with the input's name on stderr; an input that runs
    longer than REPLAY_TIMEOUT_S seconds counts as a hang.  Each input gets
    a heap block of its exact size, so a sanitizer sees any read past it.
    Single-threaded.                                                         */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef REPLAY_TIMEOUT_S
#   define REPLAY_TIMEOUT_S 25
#endif

#if defined (__has_feature)
#   if __has_feature (address_sanitizer) || __has_feature (undefined_behavior_sanitizer)
#       define REPLAY_SANITIZER 1
#   endif
#endif
#if defined (__SANITIZE_ADDRESS__)
#   define REPLAY_SANITIZER 1
#endif
#if defined (REPLAY_SANITIZER)
void __sanitizer_set_death_callback (void (*callback) (void));
#endif
#if defined (__SANITIZE_ADDRESS__)
#   define REPLAY_LEAK_CHECK 1
#elif defined (__has_feature)
#   if __has_feature (address_sanitizer)
#       define REPLAY_LEAK_CHECK 1
#   endif
#endif
#if defined (REPLAY_LEAK_CHECK)
//  LeakSanitizer, run after each input so a leak names its input
int __lsan_do_recoverable_leak_check (void);
#endif

static char s_current [4096];       //  the input being run, for the crash line

static void
s_say_current (const char *what)
{
    //  Only async-signal-safe calls: this runs from signal handlers
    const char *head = "replay: ";
    if (write (2, head, strlen (head)) < 0
    ||  write (2, what, strlen (what)) < 0
    ||  write (2, s_current, strlen (s_current)) < 0
    ||  write (2, "\n", 1) < 0)
        return;
}

static void
s_on_signal (int sig)
{
    s_say_current (sig == SIGALRM ? "hang (timeout) in " : "crash in ");
    if (sig == SIGALRM)
        _exit (70);
    signal (sig, SIG_DFL);
    raise (sig);
}

#if defined (REPLAY_SANITIZER)
static void
s_on_sanitizer_death (void)
{
    if (s_current [0])
        s_say_current ("sanitizer report for ");
    else
        s_say_current ("sanitizer report at exit");
}
#endif

//  Runs the target on one file; returns 0, or -1 if it cannot be read.
static int
s_run_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        fprintf (stderr, "replay: %s: %s\n", path, strerror (errno));
        return -1;
    }
    size_t cap = 4096, size = 0;
    uint8_t *data = malloc (cap);
    size_t got;
    while (data && (got = fread (data + size, 1, cap - size, file)) > 0) {
        size += got;
        if (size == cap) {
            cap *= 2;
            uint8_t *bigger = realloc (data, cap);
            if (!bigger)
                free (data);
            data = bigger;
        }
    }
    bool failed = !data || ferror (file);
    fclose (file);
    if (failed) {
        fprintf (stderr, "replay: %s: cannot read\n", path);
        free (data);
        return -1;
    }
    //  The exact size, so nothing past the input is addressable
    uint8_t *input = malloc (size ? size : 1);
    if (!input) {
        free (data);
        return -1;
    }
    memcpy (input, data, size);
    free (data);
    snprintf (s_current, sizeof s_current, "%s", path);
    alarm (REPLAY_TIMEOUT_S);
    int rc = LLVMFuzzerTestOneInput (input, size);
    alarm (0);
    free (input);
    if (rc != 0 && rc != -1) {
        fprintf (stderr, "replay: %s: the target returned %d\n", path, rc);
        return -1;
    }
#if defined (REPLAY_LEAK_CHECK)
    static bool leaked = false;         //  a leak is reported again each time
    if (!leaked && __lsan_do_recoverable_leak_check ()) {
        fprintf (stderr, "replay: leak in %s\n", path);
        leaked = true;
        return -1;
    }
#endif
    return 0;
}

static int
s_by_name (const struct dirent **a, const struct dirent **b)
{
    return strcmp ((*a)->d_name, (*b)->d_name);
}

//  Runs every regular file of a directory, in name order; counts them.
static int
s_run_dir (const char *dir, size_t *count)
{
    struct dirent **names;
    int n = scandir (dir, &names, NULL, s_by_name);
    if (n < 0) {
        fprintf (stderr, "replay: %s: %s\n", dir, strerror (errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char path [4096];
        snprintf (path, sizeof path, "%s/%s", dir, names [i]->d_name);
        struct stat st;
        if (names [i]->d_name [0] != '.' && stat (path, &st) == 0 && S_ISREG (st.st_mode)) {
            if (s_run_file (path) < 0)
                rc = -1;
            else
                (*count)++;
        }
        free (names [i]);
    }
    free (names);
    return rc;
}

int
main (int argc, char *argv [])
{
    if (argc < 2) {
        fprintf (stderr, "usage: %s DIR|FILE ...\n", argv [0]);
        return 2;
    }
    //  A sanitizer reports memory faults itself (and names the input
    //  through its death callback); a trap or an abort comes here
#if defined (REPLAY_SANITIZER)
    int signals [] = { SIGILL, SIGABRT, SIGALRM };
    __sanitizer_set_death_callback (s_on_sanitizer_death);
#else
    int signals [] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM };
#endif
    for (size_t i = 0; i < sizeof signals / sizeof signals [0]; i++)
        signal (signals [i], s_on_signal);
    size_t count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat (argv [i], &st) < 0) {
            fprintf (stderr, "replay: %s: %s\n", argv [i], strerror (errno));
            rc = -1;
        }
        else
        if (S_ISDIR (st.st_mode)) {
            if (s_run_dir (argv [i], &count) < 0)
                rc = -1;
        }
        else
        if (s_run_file (argv [i]) < 0)
            rc = -1;
        else
            count++;
    }
    s_current [0] = 0;
    printf ("replayed %zu inputs\n", count);
    fflush (stdout);            //  before an exit-time leak report ends us
    return rc < 0 ? 1 : 0;
}
