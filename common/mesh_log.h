/*  mesh_log: one line format for every service, on stderr.

    2026-11-26T23:30:01.123Z router[4711] W s_on_request: unknown model "gpt-9" req=01JD...

    Each line is written with one write(2) so lines from several threads never
    interleave.  Never log prompts, completions, keys or tokens: lengths and ids.
    Any thread may call these functions.                                      */
#ifndef MESH_LOG_H
#define MESH_LOG_H

enum { MESH_LOG_DEBUG, MESH_LOG_INFO, MESH_LOG_WARN, MESH_LOG_ERROR, MESH_LOG_FATAL };

//  Sets the service name printed on every line and the level from
//  SEEKMESH_LOG_LEVEL (debug|info|warn|error), default info.
void mesh_log_init (const char *service);
void mesh_log_set_level (int level);
int  mesh_log_level (void);

void mesh_log_at (int level, const char *func, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define mesh_debug(...)                                                       \
    do { if (mesh_log_level () <= MESH_LOG_DEBUG)                             \
             mesh_log_at (MESH_LOG_DEBUG, __func__, __VA_ARGS__); } while (0)
#define mesh_info(...)  mesh_log_at (MESH_LOG_INFO, __func__, __VA_ARGS__)
#define mesh_warn(...)  mesh_log_at (MESH_LOG_WARN, __func__, __VA_ARGS__)
#define mesh_error(...) mesh_log_at (MESH_LOG_ERROR, __func__, __VA_ARGS__)

//  Cannot start: logs one line and exits 1 (tier 2 of STYLE.md); a line
//  that begins "config " or "config:" (how mesh_config words every error of
//  the file, its fields and their environment overrides) exits
//  MESH_EXIT_CONFIG instead,
//  so that a supervisor waits for the file to change rather than start the
//  service again into the same error.
#define MESH_EXIT_CONFIG 78     //  sysexits.h's EX_CONFIG
void mesh_die (const char *func, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3), noreturn));
#define mesh_fatal(...) mesh_die (__func__, __VA_ARGS__)

#endif
