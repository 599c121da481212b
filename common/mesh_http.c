/*  mesh_http: HTTP/1.x head parser and chunked decoder.                     */
#include "mesh_http.h"
#include "mesh_util.h"

#include <assert.h>
#include <ctype.h>
#include <string.h>

//  RFC 9110 tchar
static bool
s_is_tchar (unsigned char c)
{
    if (isalnum (c))
        return true;
    return c && strchr ("!#$%&'*+-.^_`|~", c) != NULL;
}

//  Finds the end of the line starting at at; sets *next to the following
//  line.  Accepts CRLF and a bare LF.  Returns the line length or -1.
static int64_t
s_line (const char *at, const char *end, const char **next)
{
    const char *lf = memchr (at, '\n', (size_t) (end - at));
    if (!lf)
        return -1;
    *next = lf + 1;
    if (lf > at && lf [-1] == '\r')
        lf--;
    return lf - at;
}

static int
s_parse_headers (const char *at, const char *end, mesh_http_head_t *head)
{
    head->header_count = 0;
    head->content_length = -1;
    head->chunked = false;
    bool has_te = false;
    bool conn_close = false, conn_keep_alive = false;
    while (true) {
        const char *next;
        int64_t len = s_line (at, end, &next);
        if (len < 0)
            return -1;
        if (len == 0)
            break;                                  //  end of the head
        if (*at == ' ' || *at == '\t')
            return -1;                              //  obsolete line folding
        const char *colon = memchr (at, ':', (size_t) len);
        if (!colon || colon == at)
            return -1;
        for (const char *p = at; p < colon; p++)
            if (!s_is_tchar ((unsigned char) *p))
                return -1;                          //  includes space before colon
        const char *value = colon + 1;
        const char *value_end = at + len;
        while (value < value_end && (*value == ' ' || *value == '\t'))
            value++;
        while (value_end > value && (value_end [-1] == ' ' || value_end [-1] == '\t'))
            value_end--;
        for (const char *p = value; p < value_end; p++)
            if ((unsigned char) *p < 0x20 && *p != '\t')
                return -1;
        if (head->header_count == MESH_HTTP_MAX_HEADERS)
            return -1;
        mesh_http_header_t *h = &head->headers [head->header_count++];
        h->name = at;
        h->name_len = (size_t) (colon - at);
        h->value = value;
        h->value_len = (size_t) (value_end - value);

        if (mesh_memcaseeq (h->name, h->name_len, "content-length")) {
            if (h->value_len == 0 || h->value_len > 15)
                return -1;
            int64_t n = 0;
            for (size_t i = 0; i < h->value_len; i++) {
                if (!isdigit ((unsigned char) h->value [i]))
                    return -1;
                n = n * 10 + (h->value [i] - '0');
            }
            if (head->content_length >= 0 && head->content_length != n)
                return -1;
            head->content_length = n;
        }
        else
        if (mesh_memcaseeq (h->name, h->name_len, "transfer-encoding")) {
            //  Only "chunked", and only once
            if (has_te || !mesh_memcaseeq (h->value, h->value_len, "chunked"))
                return -1;
            has_te = true;
            head->chunked = true;
        }
        else
        if (mesh_memcaseeq (h->name, h->name_len, "connection")) {
            if (mesh_http_has_token (h->value, h->value_len, "close"))
                conn_close = true;
            if (mesh_http_has_token (h->value, h->value_len, "keep-alive"))
                conn_keep_alive = true;
            if (mesh_http_has_token (h->value, h->value_len, "upgrade"))
                head->upgrade = true;
        }
        at = next;
    }
    if (head->chunked && head->content_length >= 0)
        return -1;
    head->keep_alive = head->minor_version >= 1 ? !conn_close : conn_keep_alive;
    return 0;
}

static int
s_version (const char *at, size_t len, int *minor)
{
    if (len != 8 || memcmp (at, "HTTP/1.", 7) != 0 || !isdigit ((unsigned char) at [7]))
        return -1;
    *minor = at [7] - '0';
    return 0;
}

//  Returns the head length if buf holds "...\r\n\r\n" (or LF LF), else 0.
static size_t
s_head_end (const char *buf, size_t len)
{
    for (const char *at = buf; (at = memchr (at, '\n', (size_t) (buf + len - at))); at++) {
        const char *next = at + 1;
        if (next < buf + len && *next == '\n')
            return (size_t) (next + 1 - buf);
        if (next + 1 < buf + len && next [0] == '\r' && next [1] == '\n')
            return (size_t) (next + 2 - buf);
    }
    return 0;
}

int
mesh_http_parse_request (const char *buf, size_t len, size_t max_head, mesh_http_head_t *head)
{
    size_t head_len = s_head_end (buf, len);
    if (head_len == 0)
        return len >= max_head ? -1 : 0;
    if (head_len > max_head)
        return -1;
    memset (head, 0, offsetof (mesh_http_head_t, headers));
    head->upgrade = false;
    const char *end = buf + head_len;
    const char *next;
    int64_t line_len = s_line (buf, end, &next);
    if (line_len <= 0)
        return -1;
    //  method SP target SP version
    const char *sp1 = memchr (buf, ' ', (size_t) line_len);
    if (!sp1 || sp1 == buf)
        return -1;
    const char *sp2 = memchr (sp1 + 1, ' ', (size_t) (buf + line_len - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1)
        return -1;
    for (const char *p = buf; p < sp1; p++)
        if (!s_is_tchar ((unsigned char) *p))
            return -1;
    for (const char *p = sp1 + 1; p < sp2; p++)
        if ((unsigned char) *p <= 0x20 || (unsigned char) *p == 0x7f)
            return -1;
    if (s_version (sp2 + 1, (size_t) (buf + line_len - sp2 - 1), &head->minor_version) < 0)
        return -1;
    head->method = buf;
    head->method_len = (size_t) (sp1 - buf);
    head->target = sp1 + 1;
    head->target_len = (size_t) (sp2 - sp1 - 1);
    if (s_parse_headers (next, end, head) < 0)
        return -1;
    return (int) head_len;
}

int
mesh_http_parse_response (const char *buf, size_t len, size_t max_head, mesh_http_head_t *head)
{
    size_t head_len = s_head_end (buf, len);
    if (head_len == 0)
        return len >= max_head ? -1 : 0;
    if (head_len > max_head)
        return -1;
    memset (head, 0, offsetof (mesh_http_head_t, headers));
    head->upgrade = false;
    const char *end = buf + head_len;
    const char *next;
    int64_t line_len = s_line (buf, end, &next);
    //  version SP 3DIGIT [SP reason]
    if (line_len < 12 || s_version (buf, 8, &head->minor_version) < 0 || buf [8] != ' ')
        return -1;
    if (!isdigit ((unsigned char) buf [9]) || !isdigit ((unsigned char) buf [10])
    ||  !isdigit ((unsigned char) buf [11]) || (line_len > 12 && buf [12] != ' '))
        return -1;
    head->status = (buf [9] - '0') * 100 + (buf [10] - '0') * 10 + (buf [11] - '0');
    if (head->status < 100)
        return -1;
    if (s_parse_headers (next, end, head) < 0)
        return -1;
    return (int) head_len;
}

const char *
mesh_http_header (const mesh_http_head_t *head, const char *name, size_t *value_len)
{
    for (size_t i = 0; i < head->header_count; i++)
        if (mesh_memcaseeq (head->headers [i].name, head->headers [i].name_len, name)) {
            if (value_len)
                *value_len = head->headers [i].value_len;
            return head->headers [i].value;
        }
    return NULL;
}

bool
mesh_http_has_token (const char *value, size_t len, const char *token)
{
    size_t token_len = strlen (token);
    const char *at = value, *end = value + len;
    while (at < end) {
        while (at < end && (*at == ' ' || *at == '\t' || *at == ','))
            at++;
        const char *start = at;
        while (at < end && *at != ',')
            at++;
        const char *stop = at;
        while (stop > start && (stop [-1] == ' ' || stop [-1] == '\t'))
            stop--;
        if ((size_t) (stop - start) == token_len && strncasecmp (start, token, token_len) == 0)
            return true;
    }
    return false;
}

//  Chunked bodies -----------------------------------------------------------

enum {
    CH_SIZE,            //  hex digits of the chunk size
    CH_EXT,             //  chunk extension, up to LF
    CH_DATA,
    CH_DATA_CR,         //  CRLF after the data
    CH_DATA_LF,
    CH_TRAILER,         //  at the start of a trailer line
    CH_TRAILER_LINE,    //  inside a trailer line
    CH_LAST_LF,         //  CR seen on the final empty line
    CH_DONE
};

void
mesh_http_chunked_init (mesh_http_chunked_t *self)
{
    memset (self, 0, sizeof *self);
}

int64_t
mesh_http_chunked_decode (mesh_http_chunked_t *self, char *buf, size_t len, size_t *consumed)
{
    size_t in = 0, out = 0;
    while (in < len && self->state != CH_DONE) {
        char c = buf [in];
        switch (self->state) {
            case CH_SIZE:
                if (isxdigit ((unsigned char) c)) {
                    if (++self->digits > 15)
                        return -1;
                    self->remaining = self->remaining * 16
                        + (uint64_t) (isdigit ((unsigned char) c) ? c - '0' : (tolower (c) - 'a' + 10));
                    in++;
                }
                else
                if (self->digits == 0)
                    return -1;
                else
                if (c == ';' || c == ' ' || c == '\t' || c == '\r') {
                    self->state = CH_EXT;
                    in++;
                }
                else
                if (c == '\n') {
                    self->state = self->remaining ? CH_DATA : CH_TRAILER;
                    in++;
                }
                else
                    return -1;
                break;
            case CH_EXT:
                if (c == '\n')
                    self->state = self->remaining ? CH_DATA : CH_TRAILER;
                in++;
                break;
            case CH_DATA: {
                size_t n = MESH_MIN ((uint64_t) (len - in), self->remaining);
                memmove (buf + out, buf + in, n);
                out += n;
                in += n;
                self->remaining -= n;
                if (self->remaining == 0)
                    self->state = CH_DATA_CR;
                break;
            }
            case CH_DATA_CR:
                if (c == '\r')
                    self->state = CH_DATA_LF;
                else
                if (c == '\n') {
                    self->state = CH_SIZE;
                    self->digits = 0;
                }
                else
                    return -1;
                in++;
                break;
            case CH_DATA_LF:
                if (c != '\n')
                    return -1;
                self->state = CH_SIZE;
                self->digits = 0;
                in++;
                break;
            case CH_TRAILER:
                if (c == '\r')
                    self->state = CH_LAST_LF;
                else
                if (c == '\n')
                    self->state = CH_DONE;
                else
                    self->state = CH_TRAILER_LINE;
                in++;
                break;
            case CH_TRAILER_LINE:
                if (c == '\n')
                    self->state = CH_TRAILER;
                in++;
                break;
            case CH_LAST_LF:
                if (c != '\n')
                    return -1;
                self->state = CH_DONE;
                in++;
                break;
        }
    }
    self->done = self->state == CH_DONE;
    *consumed = in;
    return (int64_t) out;
}

const char *
mesh_http_reason (int status)
{
    switch (status) {
        case 101: return "Switching Protocols";
        case 200: return "OK";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 402: return "Payment Required";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 411: return "Length Required";
        case 413: return "Payload Too Large";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Entity";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default:  return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

bool
mesh_http_should_retry (int status, const char *code)
{
    //  The same request would meet the same refusal: these need a person
    //  (a budget raised, a balance topped up, an upstream key, model name,
    //  certificate or size limit fixed), not a client's retry
    static const char *settled [] = {
        "budget_exhausted", "insufficient_balance", "upstream_auth_failed",
        "upstream_not_found", "upstream_tls", "upstream_response_too_large"
    };
    for (size_t i = 0; code && i < MESH_ARRAY_SIZE (settled); i++)
        if (mesh_streq (code, settled [i]))
            return false;
    return status == 408 || status == 409 || status == 429 || (status >= 500 && status != 501);
}

//  Selftest -----------------------------------------------------------------

void
mesh_http_test (bool verbose)
{
    (void) verbose;
    mesh_http_head_t head;
    const char *req =
        "POST /v1/chat/completions HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "Content-Type:  application/json \r\n"
        "Content-Length: 12\r\n"
        "\r\n"
        "{\"a\":\"b\"}xyz";
    size_t req_len = strlen (req);
    int n = mesh_http_parse_request (req, req_len, 8192, &head);
    assert (n == (int) req_len - 12);
    assert (mesh_memeq (head.method, head.method_len, "POST"));
    assert (mesh_memeq (head.target, head.target_len, "/v1/chat/completions"));
    assert (head.minor_version == 1 && head.keep_alive && !head.chunked);
    assert (head.content_length == 12);
    size_t vlen;
    const char *v = mesh_http_header (&head, "content-type", &vlen);
    assert (v && mesh_memeq (v, vlen, "application/json"));
    //  Every prefix is incomplete, not an error
    for (size_t cut = 0; cut < (size_t) n; cut++)
        assert (mesh_http_parse_request (req, cut, 8192, &head) == 0);
    //  Too long a head
    assert (mesh_http_parse_request (req, req_len, 16, &head) == -1);

    //  Smuggling shapes are refused
    const char *bad [] = {
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++)
        assert (mesh_http_parse_request (bad [i], strlen (bad [i]), 8192, &head) == -1);

    //  HTTP/1.0 closes unless asked; upgrade is seen
    const char *old = "GET /x HTTP/1.0\n\n";
    assert (mesh_http_parse_request (old, strlen (old), 8192, &head) > 0 && !head.keep_alive);
    const char *up = "GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert (mesh_http_parse_request (up, strlen (up), 8192, &head) > 0 && head.upgrade);

    //  Responses
    const char *resp = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    assert (mesh_http_parse_response (resp, strlen (resp), 8192, &head) == (int) strlen (resp));
    assert (head.status == 429 && head.chunked && head.content_length == -1);
    const char *noreason = "HTTP/1.1 200\r\n\r\n";
    assert (mesh_http_parse_response (noreason, strlen (noreason), 8192, &head) > 0);
    assert (head.status == 200);
    assert (mesh_http_parse_response ("HTTP/1.1 20x OK\r\n\r\n", 19, 8192, &head) == -1);

    //  Chunked: split at every byte, the payload comes out whole
    const char *chunked = "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    for (size_t step = 1; step <= strlen (chunked); step++) {
        mesh_http_chunked_t ch;
        mesh_http_chunked_init (&ch);
        char out [64], work [64];
        size_t out_len = 0, at = 0, total = strlen (chunked);
        while (at < total && !ch.done) {
            size_t take = MESH_MIN (step, total - at);
            memcpy (work, chunked + at, take);
            size_t used;
            int64_t got = mesh_http_chunked_decode (&ch, work, take, &used);
            assert (got >= 0);
            memcpy (out + out_len, work, (size_t) got);
            out_len += (size_t) got;
            at += used;
        }
        assert (ch.done);
        assert (mesh_memeq (out, out_len, "hello, world"));
        assert (mesh_memeq (chunked + at, total - at, "NEXT"));
    }
    mesh_http_chunked_t ch;
    mesh_http_chunked_init (&ch);
    char junk [] = "zz\r\n";
    size_t used;
    assert (mesh_http_chunked_decode (&ch, junk, 4, &used) == -1);
    mesh_http_chunked_init (&ch);
    char huge [] = "ffffffffffffffff\r\n";
    assert (mesh_http_chunked_decode (&ch, huge, strlen (huge), &used) == -1);

    assert (mesh_http_has_token ("a, Close ,b", 11, "close"));
    assert (!mesh_http_has_token ("closed", 6, "close"));
    assert (mesh_streq (mesh_http_reason (429), "Too Many Requests"));
    assert (mesh_streq (mesh_http_reason (422), "Unprocessable Entity"));

    //  x-should-retry: what can change by itself, not what needs a person
    assert (mesh_http_should_retry (429, "rate_limit_exceeded"));
    assert (mesh_http_should_retry (503, "upstream_overloaded"));
    assert (mesh_http_should_retry (502, "upstream_error"));
    assert (mesh_http_should_retry (504, "upstream_timeout"));
    assert (mesh_http_should_retry (500, NULL));
    assert (!mesh_http_should_retry (502, "upstream_not_found"));
    assert (!mesh_http_should_retry (502, "upstream_auth_failed"));
    assert (!mesh_http_should_retry (402, "budget_exhausted"));
    assert (!mesh_http_should_retry (400, "invalid_json"));
    assert (!mesh_http_should_retry (404, "model_not_found"));
    assert (!mesh_http_should_retry (501, ""));
}
