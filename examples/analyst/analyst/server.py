"""The web application: the page, and the JSON API it calls.

    GET  /                  the page (static/index.html, app.js, app.css)
    GET  /api/info          the database, its tables, the model
    POST /api/ask           {"question"}        -> the answer (pipeline.ask)
    POST /api/run           {"sql"}             -> the result of edited SQL
    POST /api/summary       {"question", "sql"} -> {"summary"}
    GET  /healthz           "ok"

One thread per connection (ThreadingHTTPServer) with HTTP/1.1 keep-alive:
a thread spends almost all its time waiting for the gateway or in SQLite,
both of which release the GIL, so one process serves hundreds of analysts.
The history of questions lives in the browser (localStorage), so the
server keeps no per-user state.  Errors are {"error": "..."}: 400 for a
bad request, 413 for a body over 64 KiB, 502 when the model gateway
failed (the body still says which attempts were made).
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .llm import LLMError

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/index.html": ("index.html", "text/html; charset=utf-8"),
         "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/static/app.css": ("app.css", "text/css; charset=utf-8")}
MAX_BODY_BYTES = 64 * 1024


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, analyst, access_log=False):
        self.analyst = analyst
        self.access_log = access_log
        self.files = {}
        for path, (name, kind) in FILES.items():
            with open(os.path.join(STATIC, name), "rb") as f:
                self.files[path] = (f.read(), kind)
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "seekmesh-analyst/1"
    timeout = 300                       # an idle keep-alive connection ends

    def log_message(self, fmt, *args):
        if self.server.access_log:
            sys.stderr.write("analyst: %s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, kind="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status, message):
        self._send(status, {"error": message})

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in self.server.files:
            data, kind = self.server.files[path]
            self._send(200, data, kind)
        elif path == "/api/info":
            self._send(200, self.server.analyst.info())
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        else:
            self._error(404, "no such page: %s" % path)

    do_HEAD = do_GET

    def _body(self):
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._error(411, "send the body with a Content-Length")
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(413, "the body is over %d bytes" % MAX_BODY_BYTES)
            return None
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            self._error(400, "the body is not JSON")
            return None
        if not isinstance(body, dict):
            self._error(400, "the body must be a JSON object")
            return None
        return body

    def _text(self, body, field):
        value = body.get(field)
        if not isinstance(value, str) or not value.strip():
            self._error(400, "\"%s\" must be a non-empty string" % field)
            return None
        if len(value) > 20000:
            self._error(400, "\"%s\" is too long" % field)
            return None
        return value

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path not in ("/api/ask", "/api/run", "/api/summary"):
            self._error(404, "no such endpoint: %s" % path)
            return
        body = self._body()
        if body is None:
            return
        analyst = self.server.analyst
        try:
            if path == "/api/ask":
                question = self._text(body, "question")
                if question is None:
                    return
                answer = analyst.ask(question)
            elif path == "/api/run":
                sql = self._text(body, "sql")
                if sql is None:
                    return
                answer = analyst.run(sql)
            else:
                question, sql = self._text(body, "question"), None
                if question is None:
                    return
                sql = self._text(body, "sql")
                if sql is None:
                    return
                answer = analyst.summarise(question, sql)
        except LLMError as e:               # not expected: the pipeline reports these
            answer = {"error": str(e), "upstream_status": e.status}
        self._send(502 if "upstream_status" in answer else 200, answer)


def serve(analyst, host, port, access_log=False):
    server = Server((host, port), analyst, access_log)
    sys.stderr.write("analyst: serving http://%s:%d/ (database %s, model %s via %s)\n"
                     % (host, server.server_address[1], analyst.db.name, analyst.client.model,
                        analyst.client.base_url))
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
