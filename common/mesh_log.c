/*  mesh_log: timestamped single-line logging to stderr.                      */
#include "mesh_log.h"
#include "mesh_util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char s_service [32] = "seekmesh";
static int s_level = MESH_LOG_INFO;

void
mesh_log_init (const char *service)
{
    snprintf (s_service, sizeof s_service, "%s", service);
    const char *level = getenv ("SEEKMESH_LOG_LEVEL");
    if (level) {
        if (strcasecmp (level, "debug") == 0)
            s_level = MESH_LOG_DEBUG;
        else if (strcasecmp (level, "warn") == 0)
            s_level = MESH_LOG_WARN;
        else if (strcasecmp (level, "error") == 0)
            s_level = MESH_LOG_ERROR;
        else
            s_level = MESH_LOG_INFO;
    }
}

void
mesh_log_set_level (int level)
{
    s_level = level;
}

int
mesh_log_level (void)
{
    return s_level;
}

static void
s_vlog (int level, const char *func, const char *fmt, va_list args)
{
    static const char letters [] = "DIWEF";
    char line [1024], message [1024];
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r (&ts.tv_sec, &tm);
    int n = snprintf (line, sizeof line,
                      "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %c %s: ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                      tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, s_service,
                      (int) getpid (), letters [level], func);
    if (n < 0 || (size_t) n >= sizeof line)
        n = 0;
    int m = vsnprintf (message, sizeof message, fmt, args);
    if (m < 0)
        m = 0;
    //  Client or upstream text inside a message can hold anything: a line
    //  break or an escape sequence would forge a log line or drive a
    //  terminal, so control characters are written as \xNN
    size_t len = (size_t) n, end = MESH_MIN ((size_t) m, sizeof message - 1);
    for (size_t i = 0; i < end && len < sizeof line - 6; i++) {
        unsigned char c = (unsigned char) message [i];
        if (c < 0x20 || c == 0x7f)
            len += (size_t) snprintf (line + len, sizeof line - len, "\\x%02x", c);
        else
            line [len++] = (char) c;
    }
    line [len++] = '\n';
    ssize_t rc = write (STDERR_FILENO, line, len);
    (void) rc;
}

void
mesh_log_at (int level, const char *func, const char *fmt, ...)
{
    if (level < s_level)
        return;
    va_list args;
    va_start (args, fmt);
    s_vlog (level, func, fmt, args);
    va_end (args);
}

void
mesh_die (const char *func, const char *fmt, ...)
{
    va_list args, copy;
    va_start (args, fmt);
    va_copy (copy, args);
    char head [8];
    vsnprintf (head, sizeof head, fmt, copy);
    va_end (copy);
    s_vlog (MESH_LOG_FATAL, func, fmt, args);
    va_end (args);
    bool config = strncmp (head, "config", 6) == 0 && (head [6] == ' ' || head [6] == ':');
    //  _exit: a dying process runs no exit handlers (threads may still hold
    //  what they would free), and its status is ours, not a leak checker's
    fflush (NULL);
    _exit (config ? MESH_EXIT_CONFIG : 1);
}
