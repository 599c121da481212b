#!/usr/bin/env python3
"""make_seeds: writes the hand-made seed inputs of every fuzz target.

    python3 tests/fuzz/make_seeds.py [CORPUS_DIR]      (default tests/fuzz/corpus)

Each seed is a small valid or edge-case input, named for what it is.  Files
libFuzzer added (hex names) and crash reproducers (finding-*) are left
alone; seeds this script writes are overwritten, so it can be run again.

Input formats (see the targets' header comments):
  http_request, http_response, validate, config, msg, audit: the bytes as they are.
  http_chunked: one byte choosing the cut point, then the chunked body.
  sse, ws_sse:  a cut prefix, byte 0 (low 3 bits: how many piece-size
                bytes follow; upper 5 bits: the small limit of the target),
                the piece sizes (each 0..255 means 1..256 bytes), the stream.

msgpack is written by hand here from proto/mesh_msg.def (and the audit record's
field list below), so the seeds do not depend on the codec they test.
"""
import json
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
written = {}


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    written.setdefault(target, {})[name] = data


def cut_prefix(sizes=(), limit=0):
    """byte 0 + piece sizes for sse and ws_sse; sizes are 1..256."""
    assert len(sizes) <= 7 and all(1 <= s <= 256 for s in sizes)
    return bytes([len(sizes) | (limit << 3)] + [s - 1 for s in sizes])


# --- HTTP requests ---------------------------------------------------------

CHAT = '{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}],"stream":true}'


def request(head_lines, body=""):
    return "\r\n".join(head_lines) + "\r\n\r\n" + body


def http_request_seeds():
    t = "http_request"
    put(t, "empty", b"")
    put(t, "get_minimal", request(["GET / HTTP/1.1", "Host: x"]))
    put(t, "get_bare_lf_http10", "GET /x HTTP/1.0\n\n")
    put(t, "get_http10_keep_alive", request(["GET /healthz HTTP/1.0", "Connection: keep-alive"]))
    put(t, "get_metrics_admin", request(["GET /metrics HTTP/1.1", "Host: 127.0.0.1:9080",
                                         "Accept: */*", "Connection: close"]))
    put(t, "post_chat_content_length", request(
        ["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1:8080",
         "Authorization: Bearer sk-seekmesh-dev", "Content-Type: application/json",
         "Accept: text/event-stream", "Content-Length: %d" % len(CHAT)], CHAT))
    put(t, "post_chat_chunked", request(
        ["POST /v1/chat/completions HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"],
        "%x\r\n%s\r\n0\r\n\r\n" % (len(CHAT), CHAT)))
    put(t, "post_expect_100_continue", request(
        ["POST /v1/chat/completions HTTP/1.1", "Host: x", "Expect: 100-continue",
         "Content-Length: 2"], "{}"))
    put(t, "ws_upgrade", request(
        ["GET /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1:9100", "Upgrade: websocket",
         "Connection: keep-alive, Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
         "Sec-WebSocket-Version: 13"]))
    put(t, "pipelined_two_requests", request(["GET /a HTTP/1.1", "Host: x"]) +
        request(["GET /b HTTP/1.1", "Host: x"]))
    put(t, "absolute_form_target", request(["GET http://x.example/v1/models?a=b HTTP/1.1", "Host: x"]))
    put(t, "options_asterisk", request(["OPTIONS * HTTP/1.1", "Host: x"]))
    put(t, "method_all_tchars", request(["!#$%&'*+-.^_`|~09azAZ / HTTP/1.1"]))
    put(t, "header_value_tabs_and_obs_text", request(
        ["GET / HTTP/1.1", "X-A:\t v\xe9lue \t", "X-Empty:", "X-B:   "]).encode("latin-1"))
    put(t, "content_length_same_twice", request(
        ["POST / HTTP/1.1", "Content-Length: 2", "content-length: 2"], "{}"))
    put(t, "content_length_15_digits", request(["POST / HTTP/1.1", "Content-Length: 999999999999999"]))
    put(t, "headers_64", request(["GET / HTTP/1.1"] + ["X-%d: %d" % (i, i) for i in range(64)]))
    put(t, "incomplete_head", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    put(t, "incomplete_cr_lf_cr", "GET / HTTP/1.1\r\nHost: x\r\n\r")
    # A head of exactly 8192 bytes (the targets' max_head), and one byte over
    base = "GET / HTTP/1.1\r\nX-Pad: "
    pad = 8192 - len(base) - 4
    put(t, "head_exactly_8192", base + "a" * pad + "\r\n\r\n")
    put(t, "head_8193", base + "a" * (pad + 1) + "\r\n\r\n")
    # What request smugglers send: every one must be refused
    smuggle = {
        "smuggle_cl_and_te": ["POST / HTTP/1.1", "Content-Length: 4", "Transfer-Encoding: chunked"],
        "smuggle_te_and_cl": ["POST / HTTP/1.1", "Transfer-Encoding: chunked", "Content-Length: 4"],
        "smuggle_cl_twice_differs": ["POST / HTTP/1.1", "Content-Length: 4", "Content-Length: 5"],
        "smuggle_cl_list": ["POST / HTTP/1.1", "Content-Length: 4, 4"],
        "smuggle_cl_plus_sign": ["POST / HTTP/1.1", "Content-Length: +4"],
        "smuggle_cl_negative": ["POST / HTTP/1.1", "Content-Length: -1"],
        "smuggle_cl_hex": ["POST / HTTP/1.1", "Content-Length: 0x10"],
        "smuggle_cl_16_digits": ["POST / HTTP/1.1", "Content-Length: 9999999999999999"],
        "smuggle_te_gzip_chunked": ["POST / HTTP/1.1", "Transfer-Encoding: gzip, chunked"],
        "smuggle_te_twice": ["POST / HTTP/1.1", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
        "smuggle_te_identity": ["POST / HTTP/1.1", "Transfer-Encoding: identity"],
        "smuggle_te_chunked_upper_tab": ["POST / HTTP/1.1", "Transfer-Encoding:\tCHUNKED\t"],
        "smuggle_te_xchunked": ["POST / HTTP/1.1", "Transfer-Encoding: xchunked"],
        "smuggle_space_before_colon": ["POST / HTTP/1.1", "Transfer-Encoding : chunked"],
        "smuggle_obs_fold": ["POST / HTTP/1.1", "X-A: a", " Transfer-Encoding: chunked"],
        "smuggle_tab_fold": ["POST / HTTP/1.1", "X-A: a", "\tb"],
        "smuggle_empty_name": ["POST / HTTP/1.1", ": x"],
        "smuggle_no_colon": ["POST / HTTP/1.1", "Transfer-Encoding chunked"],
        "smuggle_nul_in_value": ["POST / HTTP/1.1", "X-A: a\0b"],
        "smuggle_cr_in_value": ["POST / HTTP/1.1", "X-A: a\rTransfer-Encoding: chunked"],
        "smuggle_headers_65": ["GET / HTTP/1.1"] + ["X-%d: %d" % (i, i) for i in range(65)],
    }
    for name, lines in smuggle.items():
        put(t, name, request(lines, "0\r\n\r\n"))
    bad_lines = {
        "bad_two_spaces": "GET  / HTTP/1.1",
        "bad_no_target": "GET HTTP/1.1",
        "bad_http2": "GET / HTTP/2.0",
        "bad_http_1_10": "GET / HTTP/1.10",
        "bad_lowercase_http": "GET / http/1.1",
        "bad_method_paren": "G(T / HTTP/1.1",
        "bad_target_del": "GET /\x7f HTTP/1.1",
        "bad_trailing_space": "GET / HTTP/1.1 ",
        "bad_leading_crlf": "\r\nGET / HTTP/1.1",
    }
    for name, line in bad_lines.items():
        put(t, name, request([line, "Host: x"]))
    put(t, "bad_bare_cr_lines", "GET / HTTP/1.1\rHost: x\r\r")
    put(t, "bad_blank_first", "\n\n")


# --- HTTP responses --------------------------------------------------------

DEEPSEEK_EVENTS = [
    {"id": "0a1b2c3d", "object": "chat.completion.chunk", "created": 1764200000,
     "model": "deepseek-chat", "system_fingerprint": "fp_ffc7281d48_prod0820_fp8_kvcache",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                  "logprobs": None, "finish_reason": None}]},
    {"id": "0a1b2c3d", "object": "chat.completion.chunk", "created": 1764200000,
     "model": "deepseek-chat", "system_fingerprint": "fp_ffc7281d48_prod0820_fp8_kvcache",
     "choices": [{"index": 0, "delta": {"content": "Hello"}, "logprobs": None,
                  "finish_reason": None}]},
    {"id": "0a1b2c3d", "object": "chat.completion.chunk", "created": 1764200000,
     "model": "deepseek-chat", "system_fingerprint": "fp_ffc7281d48_prod0820_fp8_kvcache",
     "choices": [{"index": 0, "delta": {"content": "!"}, "logprobs": None,
                  "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
               "prompt_tokens_details": {"cached_tokens": 0},
               "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 9}},
]
REASONER_EVENT = {"id": "r1", "object": "chat.completion.chunk", "created": 1764200001,
                  "model": "deepseek-reasoner",
                  "choices": [{"index": 0, "delta": {"role": "assistant", "content": None,
                                                     "reasoning_content": "Let me think"},
                               "logprobs": None, "finish_reason": None}]}
TOOL_EVENT = {"id": "t1", "object": "chat.completion.chunk", "created": 1764200002,
              "model": "deepseek-chat",
              "choices": [{"index": 0, "delta": {"tool_calls": [
                  {"index": 0, "id": "call_0_5e1f", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                  "logprobs": None, "finish_reason": "tool_calls"}]}


def sse_event(obj):
    return "data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n\n"


DEEPSEEK_STREAM = (": keep-alive\n\n" + "".join(sse_event(e) for e in DEEPSEEK_EVENTS)
                   + "data: [DONE]\n\n")


def chunked(body, size=64):
    body = body.encode() if isinstance(body, str) else body
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def http_response_seeds():
    t = "http_response"
    put(t, "ok_content_length", request(["HTTP/1.1 200 OK", "Content-Type: application/json",
                                         "Content-Length: 2"], "{}"))
    put(t, "deepseek_sse_chunked", request(
        ["HTTP/1.1 200 OK", "Date: Wed, 26 Nov 2025 23:30:01 GMT",
         "Content-Type: text/event-stream; charset=utf-8", "Transfer-Encoding: chunked",
         "Connection: keep-alive", "Cache-Control: no-cache", "x-ds-trace-id: 4f1e"]).encode()
        + chunked(DEEPSEEK_STREAM, 100))
    put(t, "chunked_ext_and_trailers", request(["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"])
        + "5;name=value\r\nhello\r\n7 ; x\r\n, world\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n")
    put(t, "chunked_bare_lf", "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5\nhello\n0\n\n")
    put(t, "chunked_bad_size", request(["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"]) + "zz\r\n")
    limited = '{"error":{"message":"Rate limit reached","type":"rate_limit_error","code":null}}'
    put(t, "status_429_retry_after", request(
        ["HTTP/1.1 429 Too Many Requests", "Retry-After: 3", "Content-Type: application/json",
         "Content-Length: %d" % len(limited)], limited))
    put(t, "status_503_close", request(["HTTP/1.1 503 Service Unavailable", "Connection: close"]))
    balance = '{"error":{"message":"Insufficient Balance","type":"unknown_error"}}'
    put(t, "status_402_balance", request(
        ["HTTP/1.1 402 Payment Required", "Content-Length: %d" % len(balance)], balance))
    put(t, "switching_protocols_101", request(
        ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]).encode() + b"\x81\x05hello")
    put(t, "continue_100_then_200", request(["HTTP/1.1 100 Continue"])
        + request(["HTTP/1.1 200 OK", "Content-Length: 0"]))
    put(t, "no_reason_phrase", "HTTP/1.1 204\r\n\r\n")
    put(t, "http10_until_close", "HTTP/1.0 200 OK\nContent-Type: text/plain\n\nbody until close")
    put(t, "status_999", "HTTP/1.1 999 Weird\r\n\r\n")
    put(t, "bad_status_099", "HTTP/1.1 099 Low\r\n\r\n")
    put(t, "bad_status_20x", "HTTP/1.1 20x OK\r\n\r\n")
    put(t, "bad_status_2000", "HTTP/1.1 2000 OK\r\n\r\n")
    put(t, "bad_short_line", "HTTP/1.1 20\r\n\r\n")
    put(t, "bad_no_space", "HTTP/1.1200 OK\r\n\r\n")
    put(t, "smuggle_cl_and_te", request(["HTTP/1.1 200 OK", "Content-Length: 5",
                                         "Transfer-Encoding: chunked"], "0\r\n\r\n"))
    put(t, "smuggle_te_gzip", request(["HTTP/1.1 200 OK", "Transfer-Encoding: gzip"]))
    put(t, "smuggle_cl_differs", request(["HTTP/1.1 200 OK", "Content-Length: 1",
                                          "Content-Length: 2"], "ab"))
    put(t, "incomplete", "HTTP/1.1 200 OK\r\nContent-Type: text/event-str")
    put(t, "empty", b"")


# --- Chunked bodies --------------------------------------------------------

def http_chunked_seeds():
    t = "http_chunked"
    simple = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    for cut in (0, 0x30, 0x80, 0xff):
        put(t, "two_chunks_cut_%02x" % cut, bytes([cut]) + simple)
    put(t, "extension_and_trailers", b"\x60" + b"5;ext=1;q=\"a b\"\r\nhello\r\n0\r\nTrailer: x\r\nT2: y\r\n\r\n")
    put(t, "bare_lf", b"\x40" + b"5\nhello\n0\n\n")
    put(t, "uppercase_hex_leading_zeros", b"\x20" + b"000A\r\n0123456789\r\n0000\r\n\r\n")
    put(t, "size_15_digits_short_data", b"\x10" + b"fffffffffffffff\r\nabc")
    put(t, "size_16_digits", b"\x10" + b"1000000000000000\r\nabc")
    put(t, "size_space_then_cr", b"\x90" + b"5 \r\nhello\r\n0\r\n\r\n")
    put(t, "size_cr_without_lf", b"\x90" + b"5\rhello\r\n0\r\n\r\n")
    put(t, "next_message_after_last_chunk", b"\x70" + b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    put(t, "missing_crlf_after_data", b"\x50" + b"3\r\nabcX\r\n0\r\n\r\n")
    put(t, "data_lf_only_after", b"\x50" + b"3\r\nabc\n0\r\n\r\n")
    put(t, "negative_size", b"\x01" + b"-5\r\nhello\r\n")
    put(t, "no_digits", b"\x01" + b"\r\n")
    put(t, "last_chunk_only", b"\x00" + b"0\r\n\r\n")
    put(t, "last_chunk_cr_then_junk", b"\x00" + b"0\r\n\rX")
    put(t, "empty", b"\x00")
    put(t, "many_one_byte_chunks", b"\xc0" + b"".join(b"1\r\n%c\r\n" % c for c in b"abcdefghij") + b"0\r\n\r\n")
    put(t, "deepseek_sse_64_byte_chunks", b"\x99" + chunked(DEEPSEEK_STREAM, 64))


# --- SSE streams ----------------------------------------------------------

def sse_seeds():
    t = "sse"
    ds = DEEPSEEK_STREAM.encode()
    put(t, "deepseek_whole", cut_prefix() + ds)
    put(t, "deepseek_1_byte_pieces", cut_prefix([1]) + ds)
    put(t, "deepseek_mixed_pieces", cut_prefix([7, 1, 64, 3, 200, 2, 13]) + ds)
    put(t, "deepseek_crlf", cut_prefix([5, 2]) + ds.replace(b"\n", b"\r\n"))
    put(t, "deepseek_cr_only", cut_prefix([4, 9]) + ds.replace(b"\n", b"\r"))
    put(t, "reasoner_and_tool_calls", cut_prefix([30, 1]) +
        (sse_event(REASONER_EVENT) + sse_event(TOOL_EVENT) + "data: [DONE]\n\n").encode())
    put(t, "error_event", cut_prefix([11]) +
        b'data: {"error":{"message":"upstream overloaded","type":"server_error"},"status":503}\n\n')
    put(t, "multi_line_data_and_fields", cut_prefix([3, 1]) +
        b"event: message\r\nid: 7\r\nretry: 1000\r\ndata: line one\r\ndata:line two\r\n"
        b"data\r\ndata:  two spaces\r\nunknown: x\r\nnocolon\r\n\r\n")
    put(t, "comments_and_keepalive", cut_prefix([2]) + b":\n: keep-alive\n:no space\n\n: x\r\n\r\n")
    put(t, "empty_data_events", cut_prefix() + b"data\n\ndata:\n\ndata: \n\n")
    put(t, "blank_lines_only", cut_prefix([1]) + b"\n\n\r\n\r\r\n\n")
    put(t, "cr_at_piece_end_then_lf", cut_prefix([7, 1]) + b"data: a\r\n\r\ndata: b\r\n\r\n")
    put(t, "unterminated_event", cut_prefix([4]) + b"data: {\"partial\":")
    put(t, "bom_and_nul", cut_prefix([2]) + b"\xef\xbb\xbfdata: x\n\ndata: a\0b\n\n")
    put(t, "long_line_over_small_limit", cut_prefix([50], limit=1) + b"data: " + b"x" * 60 + b"\n\n")
    put(t, "long_comment_one_piece", cut_prefix([], limit=0) + b": " + b"c" * 100 + b"\n\n")
    put(t, "long_comment_cut", cut_prefix([10], limit=0) + b": " + b"c" * 100 + b"\n\n")
    put(t, "many_data_lines_over_small_limit", cut_prefix([1], limit=2) + b"data: abcd\n" * 12 + b"\n")
    put(t, "empty", b"")


# --- WebSocket frames -----------------------------------------------------

def ws_frame(opcode, payload=b"", fin=True, mask=None, rsv=0, length_form=None):
    """A frame; mask is 4 bytes for a client's frame; length_form forces
    the 7-bit, 16-bit (126) or 64-bit (127) length encoding."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if mask else 0
    form = length_form or (7 if n < 126 else 16 if n <= 0xffff else 64)
    if form == 7:
        head = bytes([b0, mbit | n])
    elif form == 16:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + payload


TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def ws_sse_seeds():
    t = "ws_sse"
    ds = DEEPSEEK_STREAM.encode()
    # The mock's shape: the SSE stream in frames of 64 bytes cut anywhere
    frames = b"".join(ws_frame(TEXT, ds[i:i + 64]) for i in range(0, len(ds), 64))
    put(t, "deepseek_64_byte_frames", cut_prefix() + frames)
    put(t, "deepseek_64_byte_frames_cut", cut_prefix([3, 1, 100, 7]) + frames)
    put(t, "deepseek_one_frame_16bit_length", cut_prefix([200, 9]) + ws_frame(TEXT, ds))
    put(t, "deepseek_binary_frames", cut_prefix([33]) +
        b"".join(ws_frame(BINARY, ds[i:i + 100]) for i in range(0, len(ds), 100)))
    fragmented = (ws_frame(TEXT, "data: {\"a\"", fin=False) + ws_frame(PING, "seekmesh")
                  + ws_frame(CONT, ":1}\n", fin=False) + ws_frame(PONG)
                  + ws_frame(CONT, "\ndata: [DONE]\n\n") + ws_frame(CLOSE, b"\x03\xe8bye"))
    put(t, "fragmented_with_ping_pong_close", cut_prefix() + fragmented)
    put(t, "fragmented_1_byte_pieces", cut_prefix([1]) + fragmented)
    put(t, "empty_frames", cut_prefix([2]) + ws_frame(TEXT, fin=False) + ws_frame(CONT, fin=False)
        + ws_frame(CONT) + ws_frame(BINARY) + ws_frame(CLOSE))
    put(t, "length_64bit_form_small", cut_prefix([5]) + ws_frame(TEXT, "data: x\n\n", length_form=64))
    put(t, "length_16bit_form_small", cut_prefix([5]) + ws_frame(TEXT, "data: x\n\n", length_form=16))
    put(t, "ping_125_bytes", cut_prefix([60]) + ws_frame(PING, b"p" * 125))
    put(t, "close_empty", cut_prefix() + ws_frame(CLOSE))
    put(t, "partial_header_left", cut_prefix() + ws_frame(TEXT, "data: a\n\n") + b"\x81")
    put(t, "partial_control_left", cut_prefix() + ws_frame(PING, "abcdef")[:5])
    put(t, "message_over_small_limit", cut_prefix([10], limit=1) + ws_frame(TEXT, "x" * 70))
    put(t, "declared_huge_never_sent", cut_prefix() + bytes([0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0]) + b"abc")
    # What a client sends: masked frames, read by the server pass
    mask = b"\x37\xfa\x21\x3d"
    put(t, "client_masked_text", cut_prefix([3]) + ws_frame(TEXT, CHAT, mask=mask)
        + ws_frame(PING, "seekmesh", mask=mask) + ws_frame(CLOSE, b"\x03\xe8", mask=mask))
    put(t, "client_masked_fragmented", cut_prefix([1, 4]) + ws_frame(TEXT, "data: a", fin=False, mask=mask)
        + ws_frame(CONT, "bc\n\n", mask=mask))
    # Protocol errors
    errors = {
        "error_reserved_bits": ws_frame(TEXT, "x", rsv=0x40),
        "error_opcode_3": bytes([0x83, 0x00]),
        "error_opcode_b": bytes([0x8b, 0x00]),
        "error_ping_126_bytes": ws_frame(PING, b"p" * 126),
        "error_ping_not_fin": ws_frame(PING, "x", fin=False),
        "error_orphan_continuation": ws_frame(CONT, "x"),
        "error_new_message_inside_fragmented": ws_frame(TEXT, "a", fin=False) + ws_frame(TEXT, "b"),
        "error_close_1_byte": ws_frame(CLOSE, b"\x03"),
        "error_length_top_bit": bytes([0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        "error_masked_to_client_after_data": ws_frame(TEXT, "data: ok\n\n") + ws_frame(TEXT, "x", mask=mask),
    }
    for name, wire in errors.items():
        put(t, name, cut_prefix([2]) + wire)
    put(t, "empty", b"")


# --- msgpack wire messages --------------------------------------------------

def mp_uint(v, width=None):
    if width is None:
        width = 0 if v < 128 else 1 if v < 256 else 2 if v < 65536 else 4 if v < 2 ** 32 else 8
    return {0: lambda: bytes([v]), 1: lambda: b"\xcc" + struct.pack(">B", v),
            2: lambda: b"\xcd" + struct.pack(">H", v), 4: lambda: b"\xce" + struct.pack(">I", v),
            8: lambda: b"\xcf" + struct.pack(">Q", v)}[width]()


def mp_str(s, form=None):
    if isinstance(s, str):
        s = s.encode()
    n = len(s)
    form = form or ("fix" if n < 32 else "8" if n < 256 else "16" if n < 65536 else "32")
    return {"fix": lambda: bytes([0xa0 | n]), "8": lambda: b"\xd9" + struct.pack(">B", n),
            "16": lambda: b"\xda" + struct.pack(">H", n), "32": lambda: b"\xdb" + struct.pack(">I", n)}[form]() + s


def mp_bin(b, form=None):
    n = len(b)
    form = form or ("8" if n < 256 else "16" if n < 65536 else "32")
    return {"8": lambda: b"\xc4" + struct.pack(">B", n), "16": lambda: b"\xc5" + struct.pack(">H", n),
            "32": lambda: b"\xc6" + struct.pack(">I", n)}[form]() + b


def mp_array(n, form=None):
    form = form or ("fix" if n < 16 else "16")
    return {"fix": lambda: bytes([0x90 | n]), "16": lambda: b"\xdc" + struct.pack(">H", n),
            "32": lambda: b"\xdd" + struct.pack(">I", n)}[form]()


def load_schema():
    """The fields and messages of proto/mesh_msg.def."""
    text = open(os.path.join(ROOT, "proto", "mesh_msg.def")).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S).replace("\\\n", " ")
    fields = {m[0]: (m[1], m[2], m[3]) for m in
              re.findall(r"F \((\w+),\s*(\w+),\s*(\w+),\s*([\w ]+?)\)", text)}
    usage = re.findall(r"F \((\w+)\)", re.search(r"#define MESH_USAGE_FIELDS(.*)", text).group(1))
    messages = {}
    block = re.search(r"#define MESH_MESSAGES\(M\)(.*)", text).group(1)
    for name, code, idkind, rest in re.findall(r"M \((\w+),\s*(\d+),\s*(\w+),(.*?)\)\s*(?=M \(|$)", block):
        names = []
        for field, macro in re.findall(r"F \((\w+)\)|(MESH_USAGE_FIELDS)", rest):
            names += usage if macro else [field]
        messages[name] = (int(code), idkind == "REQ", names)
    return fields, messages


REQ_ID = "01JD3Z8K4Q7W2X5N6M9P0R1S2T"
VERSION = int(re.search(r"#define MESH_PROTO_VERSION\s+(\d+)",
                        open(os.path.join(ROOT, "proto", "mesh_msg.h")).read()).group(1))


def sample_value(kind, member, maxlen):
    if kind == "U32":
        return {"status": 200, "attempt": 1, "kind": 1, "capacity": 4096, "inflight": 3,
                "retry_after_ms": 1000, "flags": 1}.get(member, 7)
    if kind == "U64":
        return {"token": 0x1122334455667788}.get(member, 42)
    if kind == "BOOL":
        return True
    if kind == "STR":
        return {"reply_to": "tcp://127.0.0.1:5559", "model": "deepseek-chat", "requested": "deepseek-v4-flash",
                "sender": "connector-1", "tenant": "dev", "err_type": "rate_limit_error",
                "err_code": "rate_limit_exceeded", "message": "The upstream is rate limiting requests.",
                "param": "messages.[0].content", "finish": "stop", "outcome": "ok",
                "content_type": "application/json", "avoid": "connector-2"}.get(member, "x")
    if kind == "BIN":
        return {"key_hash": bytes(range(32)), "body": CHAT.encode(),
                "data": b'{"choices":[{"delta":{"content":"Hi"}}]}'}.get(member, b"")


def encode(fields, messages, type_name, values=None, id_=None, count=None, sig="SM", version=None,
           override=None):
    code, has_id, names = messages[type_name]
    values = values or {}
    out = mp_array(count if count is not None else 4 + len(names))
    out += mp_str(sig) + mp_uint(VERSION if version is None else version) + mp_uint(code)
    out += mp_str(id_ if id_ is not None else (REQ_ID if has_id else ""))
    for name in names:
        kind, member, maxlen = fields[name]
        if override and name in override:
            out += override[name]
            continue
        v = values.get(member, sample_value(kind, member, maxlen))
        out += (mp_uint(v) if kind in ("U32", "U64") else (b"\xc3" if v else b"\xc2") if kind == "BOOL"
                else mp_str(v) if kind == "STR" else mp_bin(v))
    return out


def msg_seeds():
    t = "msg"
    fields, messages = load_schema()
    assert len(messages) >= 12, messages
    for name in messages:
        put(t, "valid_%s" % name.lower(), encode(fields, messages, name))
    # Edges the decoder accepts: limits, UTF-8, non-minimal forms
    put(t, "valid_request_model_255", encode(fields, messages, "REQUEST", {"model": "m" * 255}))
    put(t, "valid_error_message_1023_utf8", encode(fields, messages, "ERROR",
                                                   {"message": "\u00e9" * 511 + "x"}))
    put(t, "valid_chunk_empty_data", encode(fields, messages, "CHUNK", {"data": b"", "flags": 0}))
    put(t, "valid_heartbeat_utf8_sender", encode(fields, messages, "HEARTBEAT",
                                                 {"sender": "conn-\u20ac-\U0001f600"}))
    put(t, "valid_done_max_u64", encode(fields, messages, "DONE",
                                        {"prompt_tokens": 2 ** 64 - 1, "total_us": 2 ** 32}))
    put(t, "valid_head_u32_max", encode(fields, messages, "HEAD", {"status": 2 ** 32 - 1}))
    put(t, "valid_stream_false", encode(fields, messages, "DISPATCH", {"stream": False}))
    put(t, "noncanonical_uint64_forms", encode(fields, messages, "READY",
                                               override={"CAPACITY": mp_uint(5, 8), "INFLIGHT": mp_uint(0, 4)}))
    put(t, "noncanonical_str8_short", encode(fields, messages, "CANCEL",
                                             override={"OUTCOME": mp_str("client_gone", "8")}))
    put(t, "noncanonical_bin32", encode(fields, messages, "CHUNK", override={"DATA": mp_bin(b"x", "32")}))
    put(t, "noncanonical_array16", encode(fields, messages, "LOST").replace(b"\x97", b"\xdc\x00\x07", 1))
    # Rejections
    put(t, "bad_version_next", encode(fields, messages, "HEARTBEAT", version=VERSION + 1))
    put(t, "bad_signature", encode(fields, messages, "HEARTBEAT", sig="SN"))
    heartbeat = bytes([VERSION, 0x0a])
    put(t, "bad_type_0", encode(fields, messages, "HEARTBEAT").replace(heartbeat, bytes([VERSION, 0]), 1))
    put(t, "bad_type_past_last", encode(fields, messages, "HEARTBEAT").replace(
        heartbeat, bytes([VERSION, max(code for code, _, _ in messages.values()) + 1]), 1))
    put(t, "bad_count", encode(fields, messages, "HEARTBEAT", count=6))
    put(t, "bad_id_lowercase", encode(fields, messages, "CHUNK", id_=REQ_ID.lower()))
    put(t, "bad_id_letter_i", encode(fields, messages, "CHUNK", id_="0" * 25 + "I"))
    put(t, "bad_id_first_8", encode(fields, messages, "CHUNK", id_="8" + REQ_ID[1:]))
    put(t, "bad_id_on_heartbeat", encode(fields, messages, "HEARTBEAT", id_=REQ_ID))
    put(t, "bad_model_256", encode(fields, messages, "REQUEST", {"model": "m" * 256}))
    put(t, "bad_utf8_surrogate", encode(fields, messages, "READY",
                                        override={"SENDER": mp_str(b"\xed\xa0\x80")}))
    put(t, "bad_utf8_overlong", encode(fields, messages, "READY", override={"SENDER": mp_str(b"\xc0\xaf")}))
    put(t, "bad_utf8_truncated", encode(fields, messages, "READY", override={"SENDER": mp_str(b"ab\xe2\x82")}))
    put(t, "bad_utf8_above_10ffff", encode(fields, messages, "READY",
                                           override={"SENDER": mp_str(b"\xf4\x90\x80\x80")}))
    put(t, "bad_nul_in_string", encode(fields, messages, "READY", override={"SENDER": mp_str(b"a\0b")}))
    put(t, "bad_u32_overflow", encode(fields, messages, "READY", override={"CAPACITY": mp_uint(2 ** 32)}))
    put(t, "bad_negative_int", encode(fields, messages, "READY", override={"CAPACITY": b"\xff"}))
    put(t, "bad_bool_marker", encode(fields, messages, "DISPATCH", override={"STREAM": b"\x01"}))
    put(t, "bad_str_as_bin", encode(fields, messages, "CHUNK", override={"DATA": mp_str("x")}))
    put(t, "bad_bin_as_str", encode(fields, messages, "READY", override={"SENDER": mp_bin(b"x")}))
    put(t, "bad_trailing_byte", encode(fields, messages, "HEARTBEAT") + b"\xc0")
    whole = encode(fields, messages, "REQUEST")
    put(t, "bad_truncated_request", whole[:len(whole) // 2])
    put(t, "bad_bin32_declared_4g", encode(fields, messages, "CHUNK", override={"DATA": b"\xc6\xff\xff\xff\xff"}))
    put(t, "bad_array32_huge", b"\xdd\xff\xff\xff\xff")
    put(t, "bad_map", b"\x81\xa2SM" + bytes([VERSION]))
    put(t, "empty", b"")


# --- Audit records (proto/mesh_audit.h) --------------------------------------

AUDIT_VERSION = int(re.search(r"#define MESH_AUDIT_VERSION\s+(\d+)",
                              open(os.path.join(ROOT, "proto", "mesh_audit.h")).read()).group(1))
#  The record's fields in wire order: (member, kind, max); the order of
#  mesh_audit_record_t, restated here so the seeds do not come from the codec
AUDIT_FIELDS = [("id", "ID", 26), ("start_ms", "U64", 0), ("end_ms", "U64", 0),
                ("tenant", "STR", 127), ("key_id", "STR", 64), ("model_requested", "STR", 255),
                ("model", "STR", 255), ("endpoint", "STR", 511), ("region", "STR", 63),
                ("params", "STR", 4096), ("stream", "BOOL", 0), ("status", "U32", 0),
                ("outcome", "STR", 31), ("error_code", "STR", 63), ("attempts", "U32", 0),
                ("cache_hit", "BOOL", 0), ("queue_us", "U64", 0), ("ttft_us", "U64", 0),
                ("total_us", "U64", 0), ("upstream_ttfb_us", "U64", 0),
                ("prompt_tokens", "U64", 0), ("completion_tokens", "U64", 0),
                ("cached_tokens", "U64", 0), ("reasoning_tokens", "U64", 0),
                ("bytes_out", "U64", 0), ("prompt", "BIN", 64 << 20), ("response", "BIN", 64 << 20),
                ("truncated", "BOOL", 0)]
AUDIT_SAMPLE = {
    "id": REQ_ID, "start_ms": 1780000000000, "end_ms": 1780000000250, "tenant": "acme",
    "key_id": "key-1", "model_requested": "deepseek-v4-flash", "model": "deepseek-chat",
    "endpoint": "https://api.deepseek.com/v1/chat/completions", "region": "eu-west",
    "params": '{"temperature":0.2,"stream":true,"max_tokens":512}', "stream": True, "status": 200,
    "outcome": "ok", "error_code": "", "attempts": 1, "cache_hit": False, "queue_us": 1200,
    "ttft_us": 80000, "total_us": 250000, "upstream_ttfb_us": 78000, "prompt_tokens": 12,
    "completion_tokens": 34, "cached_tokens": 0, "reasoning_tokens": 0, "bytes_out": 812,
    "prompt": CHAT.encode(),
    "response": b'{"choices":[{"delta":{"content":"Echo:"}}]}\n{"choices":[{"delta":{"content":" hi"}}]}',
    "truncated": False,
}


def audit_record(values=None, override=None, count=None, sig="SA", version=None):
    values = dict(AUDIT_SAMPLE, **(values or {}))
    out = mp_array(count if count is not None else 2 + len(AUDIT_FIELDS), "16")
    out += mp_str(sig) + mp_uint(AUDIT_VERSION if version is None else version)
    for member, kind, _ in AUDIT_FIELDS:
        if override and member in override:
            out += override[member]
            continue
        v = values[member]
        out += (mp_uint(v) if kind in ("U32", "U64") else (b"\xc3" if v else b"\xc2") if kind == "BOOL"
                else mp_bin(v) if kind == "BIN" else mp_str(v))
    return out


def audit_seeds():
    t = "audit"
    put(t, "valid_stream_ok", audit_record())
    put(t, "valid_non_stream", audit_record({"stream": False, "response": b'{"id":"x","choices":[{"message":'
                                             b'{"role":"assistant","content":"Echo: hi"}}]}'}))
    put(t, "valid_refused_before_key", audit_record({
        "tenant": "", "key_id": "", "model": "", "endpoint": "", "region": "", "status": 401,
        "outcome": "refused", "error_code": "invalid_api_key", "attempts": 0, "ttft_us": 0,
        "upstream_ttfb_us": 0, "prompt_tokens": 0, "completion_tokens": 0, "response": b""}))
    put(t, "valid_all_empty", audit_record({m: (0 if k in ("U32", "U64") else False if k == "BOOL"
                                                else b"" if k == "BIN" else "")
                                            for m, k, _ in AUDIT_FIELDS if m != "id"}))
    put(t, "valid_limits", audit_record({m: "x" * mx for m, k, mx in AUDIT_FIELDS if k == "STR"}))
    put(t, "valid_max_numbers", audit_record({"status": 2 ** 32 - 1, "attempts": 2 ** 32 - 1,
                                              "reasoning_tokens": 2 ** 64 - 1, "bytes_out": 2 ** 63}))
    put(t, "valid_utf8_everywhere", audit_record({"tenant": "\u00e9quipe-\u20ac", "model": "\U0001f600",
                                                  "params": '{"user":"\u00fc\u00df"}'}))
    put(t, "valid_binary_prompt", audit_record({"prompt": bytes(range(256)), "truncated": True}))
    put(t, "valid_bin16_response", audit_record({"response": b"data" * 100}))
    put(t, "noncanonical_forms", audit_record(override={
        "status": mp_uint(200, 8), "attempts": mp_uint(1, 4), "tenant": mp_str("acme", "16"),
        "prompt": mp_bin(b"{}", "32"), "region": mp_str("", "8")}))
    put(t, "noncanonical_array32", b"\xdd\0\0\0\x1e" + audit_record()[3:])
    # Rejections
    put(t, "bad_signature", audit_record(sig="SM"))
    put(t, "bad_version_next", audit_record(version=AUDIT_VERSION + 1))
    put(t, "bad_count_29", audit_record(count=29))
    put(t, "bad_count_31", audit_record(count=31) + b"\xc0")
    put(t, "bad_id_lowercase", audit_record({"id": REQ_ID.lower()}))
    put(t, "bad_id_empty", audit_record({"id": ""}))
    put(t, "bad_id_first_8", audit_record({"id": "8" + REQ_ID[1:]}))
    put(t, "bad_tenant_128", audit_record({"tenant": "t" * 128}))
    put(t, "bad_params_4097", audit_record({"params": "p" * 4097}))
    put(t, "bad_outcome_32", audit_record({"outcome": "o" * 32}))
    put(t, "bad_utf8_surrogate", audit_record(override={"model": mp_str(b"\xed\xa0\x80")}))
    put(t, "bad_utf8_overlong", audit_record(override={"region": mp_str(b"\xc0\xaf")}))
    put(t, "bad_utf8_truncated", audit_record(override={"endpoint": mp_str(b"ab\xe2\x82")}))
    put(t, "bad_nul_in_key_id", audit_record(override={"key_id": mp_str(b"k\0y")}))
    put(t, "bad_status_u32_overflow", audit_record(override={"status": mp_uint(2 ** 32)}))
    put(t, "bad_negative_tokens", audit_record(override={"prompt_tokens": b"\xff"}))
    put(t, "bad_int64_marker", audit_record(override={"total_us": b"\xd3" + struct.pack(">q", 5)}))
    put(t, "bad_float_ttft", audit_record(override={"ttft_us": b"\xcb" + struct.pack(">d", 1.5)}))
    put(t, "bad_bool_as_int", audit_record(override={"stream": b"\x01"}))
    put(t, "bad_nil_truncated", audit_record(override={"truncated": b"\xc0"}))
    put(t, "bad_prompt_as_str", audit_record(override={"prompt": mp_str("{}")}))
    put(t, "bad_tenant_as_bin", audit_record(override={"tenant": mp_bin(b"acme")}))
    put(t, "bad_bin32_declared_4g", audit_record(override={"response": b"\xc6\xff\xff\xff\xff"}))
    put(t, "bad_trailing_byte", audit_record() + b"\xc0")
    whole = audit_record()
    put(t, "bad_truncated_half", whole[:len(whole) // 2])
    put(t, "bad_array32_huge", b"\xdd\xff\xff\xff\xff")
    put(t, "bad_mesh_msg_frame", mp_array(4) + mp_str("SM") + mp_uint(3) + mp_uint(16) + mp_str(""))
    put(t, "empty", b"")


# --- Chat request bodies ----------------------------------------------------

def body(**fields):
    base = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}]}
    base.update(fields)
    return json.dumps(base, ensure_ascii=False)


def validate_seeds():
    t = "validate"
    put(t, "valid_minimal", body())
    put(t, "valid_stream_usage", body(stream=True, stream_options={"include_usage": True}))
    put(t, "valid_full_conversation_tools", body(
        messages=[{"role": "system", "content": "You are helpful."},
                  {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                               {"type": "image_url", "image_url": {"url": "data:,"}}]},
                  {"role": "assistant", "content": None, "reasoning_content": "think",
                   "tool_calls": [{"id": "call_0", "type": "function",
                                   "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                  {"role": "tool", "tool_call_id": "call_0", "content": "18C"},
                  {"role": "developer", "content": "be brief"},
                  {"role": "function", "name": "f", "content": "x"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        tool_choice="auto", parallel_tool_calls=True))
    put(t, "valid_deepseek_params", body(
        model="deepseek-reasoner", thinking={"type": "enabled"}, reasoning_effort="high",
        temperature=0.0, top_p=1, presence_penalty=-2, frequency_penalty=2, max_tokens=8192,
        logprobs=True, top_logprobs=20, n=1, seed=7, stop=["\n\n", "END"], user="u-1",
        response_format={"type": "json_object"}))
    put(t, "valid_prefix_completion", body(messages=[{"role": "user", "content": "Write"},
                                                     {"role": "assistant", "content": "```python\n", "prefix": True}]))
    put(t, "valid_unicode", body(messages=[{"role": "user", "content": "h\u00e9llo \u4f60\u597d \U0001f600 \u202e"}]))
    put(t, "valid_unicode_escapes", '{"model":"m","messages":[{"role":"user","content":"\\u00e9\\ud83d\\ude00\\n"}]}')
    put(t, "valid_model_255", body(model="m" * 255))
    put(t, "valid_json_schema", body(response_format={"type": "json_schema", "json_schema": {"name": "x"}}))
    put(t, "valid_stop_16", body(stop=["s%d" % i for i in range(16)]))
    put(t, "valid_nulls", body(stream=None, temperature=None, tools=None, stop=None, max_tokens=None))
    put(t, "valid_whitespace_around", "\r\n\t " + body() + " \n")
    # Errors: each field's wrong type and range
    bad = {
        "bad_empty": "",
        "bad_null": "null",
        "bad_array": "[1]",
        "bad_truncated": body()[:-3],
        "bad_trailing_garbage": body() + "x",
        "bad_two_objects": body() + body(),
        "bad_duplicate_model": '{"model":"a","model":"b","messages":[{"role":"user","content":"x"}]}',
        "bad_duplicate_nested": '{"model":"a","messages":[{"role":"user","role":"system","content":"x"}]}',
        "bad_no_model": '{"messages":[{"role":"user","content":"x"}]}',
        "bad_model_number": body(model=5),
        "bad_model_empty": body(model=""),
        "bad_model_256": body(model="m" * 256),
        "bad_no_messages": '{"model":"m"}',
        "bad_messages_string": body(messages="hi"),
        "bad_messages_empty": body(messages=[]),
        "bad_message_not_object": body(messages=[7]),
        "bad_role_missing": body(messages=[{"content": "x"}]),
        "bad_role_unknown": body(messages=[{"role": "bot" * 40, "content": "x"}]),
        "bad_content_missing": body(messages=[{"role": "user"}]),
        "bad_content_number": body(messages=[{"role": "user", "content": 7}]),
        "bad_content_part": body(messages=[{"role": "user", "content": [{"text": "x"}]}]),
        "bad_tool_no_call_id": body(messages=[{"role": "tool", "content": "x"}]),
        "bad_tool_calls_object": body(messages=[{"role": "assistant", "tool_calls": {}}]),
        "bad_stream_string": body(stream="yes"),
        "bad_stream_options": body(stream_options=[]),
        "bad_temperature_high": body(temperature=2.0001),
        "bad_top_p_negative": body(top_p=-0.1),
        "bad_max_tokens_zero": body(max_tokens=0),
        "bad_max_tokens_over": body(max_tokens=(1 << 24) + 1),
        "bad_max_tokens_real": body(max_tokens=1.5),
        "bad_n_129": body(n=129),
        "bad_stop_17": body(stop=["s"] * 17),
        "bad_stop_item": body(stop=[1]),
        "bad_stop_object": body(stop={}),
        "bad_tools_object": body(tools={}),
        "bad_tool_no_name": body(tools=[{"type": "function", "function": {}}]),
        "bad_tool_not_object": body(tools=["f"]),
        "bad_response_format_xml": body(response_format={"type": "xml" * 30}),
        "bad_response_format_string": body(response_format="json"),
        "bad_integer_too_big": '{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":9223372036854775808}',
        "bad_real_overflow": '{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1e400}',
        "bad_nan": '{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":NaN}',
        "bad_escaped_nul": '{"model":"m\\u0000x","messages":[{"role":"user","content":"x"}]}',
        "bad_lone_surrogate": '{"model":"m","messages":[{"role":"user","content":"\\ud800"}]}',
        "bad_deep_nesting": '{"model":"m","messages":[{"role":"user","content":"x"}],"x":' + "[" * 3000 + "]" * 3000 + "}",
    }
    for name, text in bad.items():
        put(t, name, text)
    put(t, "bad_invalid_utf8", b'{"model":"m","messages":[{"role":"user","content":"\xff\xfe"}]}')
    put(t, "bad_overlong_utf8", b'{"model":"m","messages":[{"role":"user","content":"\xc0\xaf"}]}')
    put(t, "bad_utf8_bom", b"\xef\xbb\xbf" + body().encode())


# --- Config files -----------------------------------------------------------

def model(**fields):
    base = {"name": "deepseek-chat", "type": "llm", "endpoint": "https://api.deepseek.com/chat/completions",
            "auth": {"type": "api_key", "key_name": "Authorization", "key_env": "DEEPSEEK_API_KEY"}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def config_seeds():
    t = "config"
    for name in ("local", "deepseek"):
        path = os.path.join(ROOT, "compose", "config", name + ".json")
        if os.path.exists(path):
            put(t, "compose_%s" % name, open(path, "rb").read())
    conf = lambda *models, **top: json.dumps(dict({"models": list(models)}, **top), indent=1)
    put(t, "empty_object", "{}")
    put(t, "every_scheme_and_alias", conf(
        model(aliases=["chat", "deepseek-v4-flash"], fallback="qwen", max_concurrency=64,
              stream_config={"chunk_size": 1024, "delimiter": "\r\n\r\n"}),
        model(name="qwen", endpoint="wss://qwen.local/ws", auth={"type": "none"},
              upstream_model="Qwen/Qwen2.5-7B", idle_timeout_ms=99),
        model(name="plain", endpoint="http://[::1]:8000", auth={"type": "none"}, ca_file="/etc/ca.pem"),
        model(name="ws", endpoint="ws://127.0.0.1:9100/v1/chat/completions?x=1", stream_only=True),
        aliases={"fast": "qwen"}, connector={"connect_timeout_ms": 1, "idle_timeout_ms": 2}))
    cases = {
        "url_port_65535": model(endpoint="http://h:65535/"),
        "url_port_65536": model(endpoint="http://h:65536/"),
        "url_port_0": model(endpoint="http://h:0/"),
        "url_port_empty": model(endpoint="http://h:/"),
        "url_port_letters": model(endpoint="http://h:8o/"),
        "url_ipv6_unterminated": model(endpoint="http://[::1/"),
        "url_ipv6_bad_port": model(endpoint="http://[::1]x/"),
        "url_ipv6_empty": model(endpoint="http://[]/"),
        "url_userinfo": model(endpoint="http://user@h/"),
        "url_space_in_path": model(endpoint="http://h/a b"),
        "url_gopher": model(endpoint="gopher://h/"),
        "url_no_host": model(endpoint="https:///path"),
        "url_host_255": model(endpoint="http://" + "h" * 255 + ":1/"),
        "url_host_256": model(endpoint="http://" + "h" * 256 + "/"),
        "url_path_511": model(endpoint="http://h/" + "p" * 510),
        "url_path_512": model(endpoint="http://h/" + "p" * 511),
        "ws_not_stream_only": model(endpoint="ws://h/", stream_only=False),
        "auth_none": model(auth={"type": "none"}),
        "auth_unknown_type": model(auth={"type": "oauth"}),
        "auth_no_key_env": model(auth={"type": "api_key"}),
        "auth_bad_key_name": model(auth={"key_name": "X Key:", "key_env": "K"}),
        "delimiter_bad": model(stream_config={"delimiter": "\n"}),
        "chunk_size_zero": model(stream_config={"chunk_size": 0}),
        "chunk_size_string": model(stream_config={"chunk_size": "1024"}),
        "negative_concurrency": model(max_concurrency=-1),
        "negative_timeout": model(first_byte_timeout_ms=-5),
        "name_missing": model(name=None),
        "name_empty": model(name=""),
        "name_number": model(name=7),
        "endpoint_missing": model(endpoint=None),
        "fallback_dangling": model(fallback="nobody"),
        "aliases_not_array": model(aliases="chat"),
        "aliases_not_strings": model(aliases=[1, "", None]),
    }
    for name, m in cases.items():
        put(t, name, conf(m))
    put(t, "duplicate_model_names", conf(model(), model()))
    put(t, "alias_names_a_model", conf(model(), model(name="b", aliases=["deepseek-chat"])))
    put(t, "alias_twice", conf(model(aliases=["x", "x"])))
    put(t, "alias_map_dangling", conf(model(), aliases={"fast": "nobody", "n": 5}))
    put(t, "alias_map_not_object", conf(model(), aliases=["fast"]))
    # A model that fails, then one that does not: the registry's slots and
    # config indexes part here
    put(t, "invalid_then_valid_with_aliases", conf(
        model(name="bad", endpoint="ftp://x/", aliases=["old"]),
        model(name="good", auth={"type": "none"}, aliases=["new"])))
    # A slot reused after a model failed keeps the failed model's auth header
    put(t, "auth_invalid_then_none", conf(
        model(name="a", auth={"key_name": "X-Key"}),
        model(name="b", auth={"type": "none"})))
    # Control characters in the host reach the Host header line
    put(t, "url_host_with_crlf", conf(model(endpoint="http://upstream\r\nX-Injected 1/v1")))
    put(t, "models_not_array", '{"models": {"name": "x"}}')
    put(t, "model_not_object", '{"models": [7, "x", null, []]}')
    put(t, "connector_timeout_wrong_type", conf(model(), connector={"connect_timeout_ms": "5s"}))
    put(t, "top_level_array", "[{}]")
    put(t, "duplicate_keys", '{"models": [], "models": []}')
    put(t, "syntax_error_line_3", '{\n "models": [\n  {"name": }\n ]\n}')
    put(t, "deep_nesting", '{"x":' + "[" * 3000 + "]" * 3000 + "}")
    put(t, "invalid_utf8", b'{"models": [{"name": "\xff"}]}')
    put(t, "empty", b"")


def keys_seeds():
    t = "keys"
    k1, k2 = "00" * 32, "a5" * 16 + "5A" * 16
    put(t, "one", "key-1 %s" % k1)
    put(t, "two_env", "key-1 %s;key-2 %s" % (k1, k2))
    put(t, "two_lines_comments", "# the ring\nkey-1 %s   # old\n\n\tkey-2\t%s\r\n" % (k1, k2))
    put(t, "same_twice", "k %s;k %s" % (k1, k1))
    put(t, "id_taken", "k %s;k %s" % (k1, k2))
    put(t, "short_key", "k " + "0" * 63)
    put(t, "bad_hex", "k " + "g" * 64)
    put(t, "three_words", "k %s extra" % k1)
    put(t, "long_id", "x" * 33 + " " + k1)
    put(t, "bad_id", "k/1 " + k1)
    put(t, "only_comments", "# nothing\n;;\n")
    put(t, "empty", b"")
    put(t, "nul_inside", b"k " + k1.encode() + b"\0junk")


def completion_seeds():
    t = "completion"
    head = ('{"id":"a","object":"chat.completion.chunk","created":1,"model":"deepseek-chat",'
            '"system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            '"logprobs":null,"finish_reason":null}]}')
    delta = ('{"id":"a","object":"chat.completion.chunk","created":1,"model":"deepseek-chat",'
             '"choices":[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]}')
    end = ('{"id":"a","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],'
           '"usage":{"prompt_tokens":3,"completion_tokens":4}}')
    put(t, "deepseek", b"\xff" + "\n".join([head, delta % '"Hel"', delta % '"lo \\u00e9\\n"', end]).encode())
    put(t, "cut", b"\x01" + "\n".join([head, delta % '"0123456789abcdef"', delta % '"\u00e9\u00e9"']).encode())
    put(t, "reasoning", b"\x80" + "\n".join([head.replace('"content":""', '"content":null,"reasoning_content":"Th"'),
        delta.replace('"content":%s', '"content":null,"reasoning_content":"ink"') % (), end]).encode())
    put(t, "tools", b"\x80" + "\n".join([head,
        '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function",'
        '"function":{"name":"f","arguments":"{\\"a\\""}}]}}]}',
        '{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}',
        end]).encode())
    put(t, "escapes", b"\x80" + "\n".join([head, delta % '"\\ud83d\\ude00 \\" \\\\ \\/ \\b\\f\\r\\t"',
        delta % '"\\ud800"', delta % '"a\\u0000"', delta % '"\\x"']).encode())
    put(t, "odd", b"\x80" + "\n".join([head, '{"error":{"message":"stalled"}}', "not json", "[DONE]",
        '{"choices":[{"index":7,"delta":{"content":"s"}},{"index":8,"delta":{"content":"t"}}]}',
        '{"ch\\u006fices":[{"index":0,"delta":{"content":"y"}}]}',
        '{"created":1e3,"choices":[{"index":0,"delta":{"content":"z"}}]}',
        '{"choices":[{"index":01,"delta":{"content":"n"}}]}', ""]).encode())
    put(t, "extras", b"\x80" + "\n".join([head,
        '{"id":"b","extra":1,"choices":[{"index":0,"delta":{"content":"x","custom":true},"other":2}]}',
        '{"choices":[{"index":0,"logprobs":{"content":[{"token":"x","logprob":-0.1}]},"delta":{"refusal":"no"}}]}',
        '{"choices":[{"index":0,"delta":{"function_call":{"name":"f","arguments":"{"}}}]}',
        '{"choices":[{"index":0,"delta":{"function_call":{"arguments":"}"}},"finish_reason":"function_call"}]}',
        '{"choices":[],"usage":{"prompt_tokens":1}}', end]).encode())


def replay_seeds():
    t = "replay"
    put(t, "analyst", open(os.path.join(ROOT, "examples", "analyst", "eval", "replay.json"),
                           "rb").read())
    put(t, "forms", json.dumps({"recordings": [
        {"prompt": "p", "tool_call": {"name": "run_sql", "arguments": {"sql": "SELECT 1", "n": [1]}}},
        {"prompt": "p", "after_tool": "error", "tool_call": {"name": "f", "arguments": "{}"}},
        {"prompt": "p", "after_tool": "", "content": "text \u00e9"},
        {"prompt": "", "content": ""}]}))
    put(t, "nul_and_unicode", '{"recordings":[{"prompt":"a\\u0000b","content":"\\ud83d\\ude00"}]}')
    put(t, "no_answer", '{"recordings":[{"prompt":"p"}]}')
    put(t, "both_answers", '{"recordings":[{"prompt":"p","content":"x","tool_call":{"name":"f"}}]}')
    put(t, "bad_arguments", '{"recordings":[{"prompt":"p","tool_call":{"name":"f","arguments":[1]}}]}')
    put(t, "not_an_object", '[{"prompt":"p","content":"x"}]')
    put(t, "cut", '{"recordings":[{"prompt":"p","content":"x"')
    put(t, "empty", b"")


def wordfilter_seeds():
    t = "wordfilter"
    put(t, "spelled", "b:g:darn|m:g:heck\n\nhello \x01d\x01a\x01r\x01n\x01 there")
    put(t, "across_fields", "b:g:darn\n\n\x02think da\x01rn it")
    put(t, "zero_width", "m:g:heck\n\nh\u200be\u200bc\u200bk! H E-C.K")
    put(t, "full_width", "b:g:darn\n\nsay \uff24\uff41\x01\uff52\uff4e.")
    put(t, "cjk", "m:g:\u574f\u86cb|b:x:\u7981\u8bcd\nx\n\u4f60\u662f\u574f\x01\u86cb \u7981\x02\u8bcd")
    put(t, "boundaries", "m:g:ass|b:g:darn\n\nclass, was sent, an ass. darned")
    put(t, "cut_utf8", "m:g:\u00e9t\u00e9\n\n".encode() + b"\xc3\x01\xa9t\xc3\xa9 \xc3")
    put(t, "tenants", "b:x:widget|b:y:gadget|m:g:gizmo\ny\nwidget gadget gizmo")
    put(t, "every_list", "b:x:widget|m:y:gadget\n\ngad\x02get widget")
    put(t, "overlap", "m:g:abc|b:g:bcd|m:g:cdef|m:g:c\n\nab\x01cdefg")
    put(t, "empty", "\n\n")


def wordchunk_seeds():
    t = "wordchunk"

    def chunk(delta, finish=None, **extra):
        body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        body.update(extra)
        return json.dumps(body, ensure_ascii=False)
    words = "b:darn|m:heck|m:\u574f\u86cb"
    put(t, "stream", "\n".join([words, chunk({"role": "assistant", "content": ""}),
                                chunk({"content": "oh he"}), chunk({"content": "ck! d"}), chunk({"content": "a"}),
                                chunk({"content": "rn"}), chunk({"content": " more"}),
                                chunk({}, "stop", usage={"prompt_tokens": 1})]))
    put(t, "reasoning", "\n".join([words, chunk({"content": None, "reasoning_content": "think he"}),
                                   chunk({"content": "ck \u574f"}), chunk({"content": "\u86cb"}, "stop")]))
    put(t, "escapes", "\n".join([words, '{"choices":[{"index":0,"delta":{"content":"\\u0068eck \\"q\\"\\n"}}]}',
                                 '{"choices":[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[]}}]}',
                                 '{"choices":[{"index":1,"delta":{"content":"heck"}},{"index":0,"delta":{"content":"y"}}]}']))
    put(t, "tools", "\n".join([words, chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                               '{"error":{"message":"heck"}}', "not json", '{"choices":[]}']))
    put(t, "block_end", "\n".join([words, chunk({"content": "well da"}), chunk({"content": "rn"}, "stop")]))
    put(t, "empty", "\n")


def filters_seeds():
    t = "filters"
    put(t, "lists", json.dumps({"version": 7, "words": [
        {"id": "f1", "tenant": None, "word": "darn", "action": "block"},
        {"id": "f2", "tenant": "acme", "word": "bad word", "action": "mask"},
        {"id": "f3", "word": "\u574f\u86cb", "action": "mask", "added_ms": 1}]}, ensure_ascii=False))
    put(t, "empty", '{"version":0,"words":[]}')
    put(t, "bad_action", '{"version":1,"words":[{"id":"a","word":"x","action":"drop"}]}')
    put(t, "no_letters", '{"version":1,"words":[{"id":"a","word":"- . -","action":"block"}]}')
    put(t, "long_word", json.dumps({"version": 1, "words": [{"id": "a", "word": "x" * 65, "action": "block"}]}))
    put(t, "not_json", b"{\"version\":")


def history_seeds():
    t = "history"

    def seed(name, history, messages, bound=0):
        put(t, name, bytes([bound]) + json.dumps(history).encode() + b"\n" + json.dumps(messages).encode())
    sys_ = {"role": "system", "content": "be kind"}
    u1, a1 = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Echo: hi"}
    u2 = {"role": "user", "content": "again"}
    seed("new_session", None, [sys_, u1])
    seed("one_message", [sys_, u1, a1], [u2])
    seed("whole_again", [sys_, u1, a1], [sys_, u1, a1, u2])
    seed("tail_again", [sys_, u1, a1], [a1, u2])
    seed("new_prompt", [sys_, u1, a1], [{"role": "developer", "content": "be brief"}, u1])
    seed("tools", [u1, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "42"}, a1],
        [{"role": "user", "content": [{"type": "text", "text": "parts"}]}])
    seed("bounded", [sys_] + [u1, a1] * 8, [u2], bound=10)
    seed("not_objects", [sys_], [1, "x"])
    seed("not_arrays", {"a": 1}, {"b": 2})
    put(t, "not_json", b"\x00{\n[")
def canon_seeds():
    t = "canon"
    put(t, "chat", CHAT)
    put(t, "chat_reordered_spaced", '{ "stream" : true ,\n "messages" : [ { "content" : "hi", '
                                     '"role" : "user" } ], "model" : "deepseek-chat" }')
    put(t, "numbers", '{"temperature":0.70,"top_p":1e0,"n":1,"seed":-0,"x":-0.0,"big":1.5E+300,'
                      '"tiny":4.9e-324,"long":0.%s1}' % ("0" * 600))
    put(t, "escapes", '{"s":"\\u0041\\/\\u00e9\\ud83d\\ude00\\u001f\\n\\"","\\u00e9":1,"e":2}')
    put(t, "duplicates", '{"a":1,"b":{"z":1,"z":2},"a":[{"a":1,"a":null}]}')
    put(t, "parts", json.dumps({"temperature": 0, "user": "u", "stream_options": {"include_usage": True},
                                "messages": [{"role": "system", "content": "s"},
                                             {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                          {"type": "image_url"},
                                                                          {"type": "text", "text": "b"}]}]}))
    put(t, "deep", '{"a":' + "[" * 70 + "]" * 70 + "}")
    put(t, "bad_integer", '{"a":9223372036854775808}')
    put(t, "bad_real", '{"a":1e400}')
    put(t, "bad_nul", '{"a":"\\u0000"}')
    put(t, "bad_surrogate", '{"a":"\\ud800x"}')
    put(t, "bad_utf8", b'{"a":"\xc0\xaf"}')
    put(t, "bad_trailing", '{} {}')
    put(t, "array", '[1,2]')
    put(t, "empty", b"")


def faq_seeds():
    t = "faq"
    put(t, "exact", json.dumps({"tenant": "acme", "model": "deepseek-chat",
                                "exact": "What are your opening hours?", "answer": "9-17"}))
    put(t, "keywords", json.dumps({"id": "faq_1", "tenant": "acme", "keywords": ["refund", "order", "\u9000\u6b3e"],
                                   "answer": "Refunds take 5 days.", "created_ms": 1767225600000}))
    put(t, "regex", json.dumps({"tenant": "acme", "regex": "^(how|where) (do|can) i reset [a-z]{2,8}",
                                "answer": "Settings."}))
    put(t, "message_text", "  What are\tyour  OPENING hours?? \uff21\u200bB\u3002\u4f60\u597d")
    put(t, "bad_regex", '{"tenant":"a","answer":"x","regex":"(a{16}){16}{16}{16}{16}"}')
    put(t, "bad_two_kinds", '{"tenant":"a","answer":"x","exact":"q","regex":"q"}')
    put(t, "bad_duplicate", '{"tenant":"a","answer":"x","exact":"q","exact":"r"}')
    put(t, "bad_utf8_text", b"\xff\xfe what\xc0\xaf hours")
    put(t, "empty", b"")


def cache_entry_seeds():
    t = "cache_entry"
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1767225600,
                  "model": "deepseek-reasoner", "system_fingerprint": "fp_1",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello \u4f60\u597d world",
                                                       "reasoning_content": "Thinking about it"},
                               "logprobs": None, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                            "prompt_tokens_details": {"cached_tokens": 4},
                            "completion_tokens_details": {"reasoning_tokens": 3}}}
    tools = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [
                 {"index": 0, "id": "call_1", "type": "function",
                  "function": {"name": "run_sql", "arguments": "{\"sql\":\"SELECT 1\"}"}}]},
                 "finish_reason": "tool_calls"}]}
    two = dict(completion, choices=[dict(completion["choices"][0], index=1),
                                    dict(completion["choices"][0], index=0)])

    def entry(body, model="deepseek-reasoner", stored=1767225600000, expires=1767225900000, sig="SE", version=1):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        return (mp_array(6) + mp_str(sig) + mp_uint(version) + mp_str(model) + mp_uint(stored, 8)
                + mp_uint(expires, 8) + mp_bin(data))
    put(t, "reasoning", entry(completion))
    put(t, "tool_calls", entry(tools, "m"))
    put(t, "two_choices", entry(two))
    put(t, "body_reasoning", json.dumps(completion))
    put(t, "body_tool_calls", json.dumps(tools))
    put(t, "bad_signature", entry(completion, sig="SX"))
    put(t, "bad_version", entry(completion, version=2))
    put(t, "bad_not_finished", entry(dict(completion, choices=[dict(completion["choices"][0], finish_reason=None)])))
    put(t, "bad_body", entry(b"{not json"))
    put(t, "bad_trailing", entry(completion) + b"\x00")
    put(t, "bad_model_empty", entry(completion, model=""))
    put(t, "empty", b"")


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    for make in (http_request_seeds, http_response_seeds, http_chunked_seeds, sse_seeds,
                 ws_sse_seeds, msg_seeds, audit_seeds, keys_seeds, completion_seeds, validate_seeds, config_seeds,
                 replay_seeds, wordfilter_seeds, wordchunk_seeds, filters_seeds, history_seeds,
                 canon_seeds, faq_seeds, cache_entry_seeds):
        make()
    total = 0
    for target, seeds in sorted(written.items()):
        directory = os.path.join(corpus, target)
        os.makedirs(directory, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        total += len(seeds)
        print("%-14s %3d seeds" % (target, len(seeds)))
    print("%d seeds in %s" % (total, corpus))


if __name__ == "__main__":
    main()
