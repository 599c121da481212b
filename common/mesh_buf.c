/*  mesh_buf: growable byte buffer.                                           */
#include "mesh_buf.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
mesh_buf_init (mesh_buf_t *self)
{
    memset (self, 0, sizeof *self);
}

void
mesh_buf_free (mesh_buf_t *self)
{
    free (self->data);
    memset (self, 0, sizeof *self);
}

char *
mesh_buf_reserve (mesh_buf_t *self, size_t need)
{
    if (self->off > 0 && self->off == self->len)
        self->off = self->len = 0;          //  empty: start over at the front
    if (self->cap - self->len >= need)
        return self->data + self->len;
    //  Compact first when that alone makes room
    if (self->off > 0 && self->cap - (self->len - self->off) >= need) {
        memmove (self->data, self->data + self->off, self->len - self->off);
        self->len -= self->off;
        self->off = 0;
        return self->data + self->len;
    }
    size_t cap = self->cap ? self->cap : 256;
    while (cap - self->len < need)
        cap *= 2;
    char *data = realloc (self->data, cap);
    assert (data);                          //  out of memory is fatal
    self->data = data;
    self->cap = cap;
    return self->data + self->len;
}

void
mesh_buf_commit (mesh_buf_t *self, size_t n)
{
    assert (self->len + n <= self->cap);
    self->len += n;
}

void
mesh_buf_append (mesh_buf_t *self, const void *data, size_t n)
{
    if (n == 0)
        return;
    memcpy (mesh_buf_reserve (self, n), data, n);
    self->len += n;
}

void
mesh_buf_append_str (mesh_buf_t *self, const char *s)
{
    mesh_buf_append (self, s, strlen (s));
}

void
mesh_buf_append_utf8 (mesh_buf_t *self, uint32_t cp)
{
    char bytes [4];
    size_t n;
    if (cp < 0x80) {
        bytes [0] = (char) cp;
        n = 1;
    }
    else
    if (cp < 0x800) {
        bytes [0] = (char) (0xc0 | cp >> 6);
        bytes [1] = (char) (0x80 | (cp & 0x3f));
        n = 2;
    }
    else
    if (cp < 0x10000) {
        bytes [0] = (char) (0xe0 | cp >> 12);
        bytes [1] = (char) (0x80 | (cp >> 6 & 0x3f));
        bytes [2] = (char) (0x80 | (cp & 0x3f));
        n = 3;
    }
    else {
        bytes [0] = (char) (0xf0 | cp >> 18);
        bytes [1] = (char) (0x80 | (cp >> 12 & 0x3f));
        bytes [2] = (char) (0x80 | (cp >> 6 & 0x3f));
        bytes [3] = (char) (0x80 | (cp & 0x3f));
        n = 4;
    }
    mesh_buf_append (self, bytes, n);
}

void
mesh_buf_printf (mesh_buf_t *self, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (NULL, 0, fmt, args);
    va_end (args);
    assert (n >= 0);
    char *at = mesh_buf_reserve (self, (size_t) n + 1);
    va_start (args, fmt);
    vsnprintf (at, (size_t) n + 1, fmt, args);
    va_end (args);
    self->len += (size_t) n;
}

void
mesh_buf_consume (mesh_buf_t *self, size_t n)
{
    assert (n <= self->len - self->off);
    self->off += n;
    if (self->off == self->len)
        self->off = self->len = 0;
}

void
mesh_buf_reset (mesh_buf_t *self)
{
    self->off = self->len = 0;
}

void
mesh_buf_trim (mesh_buf_t *self, size_t keep)
{
    if (self->cap > keep && self->off == self->len)
        mesh_buf_free (self);
}

void
mesh_buf_test (bool verbose)
{
    (void) verbose;
    mesh_buf_t buf;
    mesh_buf_init (&buf);
    mesh_buf_append_str (&buf, "hello ");
    mesh_buf_printf (&buf, "%s %d", "world", 42);
    assert (mesh_buf_size (&buf) == 14);
    assert (memcmp (mesh_buf_head (&buf), "hello world 42", 14) == 0);
    mesh_buf_consume (&buf, 6);
    assert (mesh_buf_size (&buf) == 8);
    assert (memcmp (mesh_buf_head (&buf), "world 42", 8) == 0);
    //  Grow well past the first allocation; the unread bytes survive
    for (int i = 0; i < 1000; i++)
        mesh_buf_append (&buf, "0123456789", 10);
    assert (mesh_buf_size (&buf) == 8 + 10000);
    assert (memcmp (mesh_buf_head (&buf), "world 42", 8) == 0);
    mesh_buf_consume (&buf, mesh_buf_size (&buf));
    assert (mesh_buf_size (&buf) == 0 && buf.off == 0);
    mesh_buf_trim (&buf, 4096);
    assert (buf.data == NULL);
    mesh_buf_free (&buf);
    //  One code point of each UTF-8 length
    mesh_buf_reset (&buf);
    mesh_buf_append_utf8 (&buf, 'A');
    mesh_buf_append_utf8 (&buf, 0xe9);
    mesh_buf_append_utf8 (&buf, 0x4f60);
    mesh_buf_append_utf8 (&buf, 0x1f600);
    assert (mesh_buf_size (&buf) == 10);
    assert (memcmp (mesh_buf_head (&buf), "A\xc3\xa9\xe4\xbd\xa0\xf0\x9f\x98\x80", 10) == 0);
    assert (mesh_hex4 ("00e9") == 0xe9 && mesh_hex4 ("D83D") == 0xd83d && mesh_hex4 ("12g4") == -1);
    mesh_buf_free (&buf);           //  safe twice
}
