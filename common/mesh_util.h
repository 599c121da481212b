/*  mesh_util: small helpers shared by every module.                          */
#ifndef MESH_UTIL_H
#define MESH_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
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

//  The value of the four hex digits at p (a JSON \uXXXX escape's), or -1
static inline int
mesh_hex4 (const char *p)
{
    int value = 0;
    for (int i = 0; i < 4; i++) {
        char c = p [i];
        int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0)
            return -1;
        value = value << 4 | digit;
    }
    return value;
}

//  True when [s, s + len) is UTF-8 as JSON parsers take it: no NUL, no
//  overlong form, no surrogate, nothing past U+10FFFF
static inline bool
mesh_utf8_valid (const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0;
    while (i < len) {
        if (p [i] == 0)
            return false;
        if (p [i] < 0x80) {
            i++;
            continue;
        }
        size_t n = (p [i] & 0xe0) == 0xc0 ? 1 : (p [i] & 0xf0) == 0xe0 ? 2 : (p [i] & 0xf8) == 0xf0 ? 3 : 0;
        if (n == 0 || len - i <= n || (p [i] == 0xc0 || p [i] == 0xc1 || p [i] > 0xf4))
            return false;
        for (size_t k = 1; k <= n; k++)
            if ((p [i + k] & 0xc0) != 0x80)
                return false;
        if ((p [i] == 0xe0 && p [i + 1] < 0xa0) || (p [i] == 0xed && p [i + 1] >= 0xa0)
        ||  (p [i] == 0xf0 && p [i + 1] < 0x90) || (p [i] == 0xf4 && p [i + 1] >= 0x90))
            return false;
        i += n + 1;
    }
    return true;
}

//  Writes why (when given) and returns -1: the tail of a failing call
static inline int
mesh_fail (char *why, size_t why_size, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static inline int
mesh_fail (char *why, size_t why_size, const char *fmt, ...)
{
    if (why && why_size) {
        va_list args;
        va_start (args, fmt);
        vsnprintf (why, why_size, fmt, args);
        va_end (args);
    }
    return -1;
}

#define MESH_ARRAY_SIZE(a) (sizeof (a) / sizeof ((a) [0]))
#define MESH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MESH_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
