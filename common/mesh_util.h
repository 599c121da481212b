/*  mesh_util: small helpers shared by every module.                          */
#ifndef MESH_UTIL_H
#define MESH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

static inline bool
mesh_streq (const char *a, const char *b)
{
    return a && b && strcmp (a, b) == 0;
}

//  Compares a counted string with a C string.
static inline bool
mesh_memeq (const char *data, size_t len, const char *s)
{
    return strlen (s) == len && memcmp (data, s, len) == 0;
}

static inline bool
mesh_memcaseeq (const char *data, size_t len, const char *s)
{
    return strlen (s) == len && strncasecmp (data, s, len) == 0;
}

#define MESH_ARRAY_SIZE(a) (sizeof (a) / sizeof ((a) [0]))
#define MESH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MESH_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
