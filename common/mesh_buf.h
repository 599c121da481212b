/*  mesh_buf: a growable byte buffer with a read offset, for I/O.

    Bytes live in data[off .. len).  Appending may move the bytes; never keep
    pointers into a buffer across an append.  Single-threaded.               */
#ifndef MESH_BUF_H
#define MESH_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t off;                 //  first unread byte
    size_t len;                 //  end of the bytes held
    size_t cap;
} mesh_buf_t;

void   mesh_buf_init (mesh_buf_t *self);
void   mesh_buf_free (mesh_buf_t *self);                  //  safe twice
//  Makes room for at least `need` more bytes; returns a pointer to them.
char  *mesh_buf_reserve (mesh_buf_t *self, size_t need);
void   mesh_buf_commit (mesh_buf_t *self, size_t n);      //  after reserve
void   mesh_buf_append (mesh_buf_t *self, const void *data, size_t n);
void   mesh_buf_append_str (mesh_buf_t *self, const char *s);
//  Appends code point cp (at most U+10FFFF, not a surrogate) as UTF-8
void   mesh_buf_append_utf8 (mesh_buf_t *self, uint32_t cp);
void   mesh_buf_printf (mesh_buf_t *self, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
void   mesh_buf_consume (mesh_buf_t *self, size_t n);
void   mesh_buf_reset (mesh_buf_t *self);                 //  empty, keeps memory
//  Shrinks the allocation back when it grew past `keep` bytes and is empty,
//  so one large response does not pin memory for a long-lived connection.
void   mesh_buf_trim (mesh_buf_t *self, size_t keep);
static inline size_t mesh_buf_size (const mesh_buf_t *self) { return self->len - self->off; }
static inline char  *mesh_buf_head (const mesh_buf_t *self) { return self->data + self->off; }

void   mesh_buf_test (bool verbose);

#endif
