"""A client of seekmesh's OpenAI-compatible chat API, on the standard library.

POST {base_url}/chat/completions with "Authorization: Bearer <key>", one
JSON body, one JSON answer (no streaming: the application needs the whole
tool call before it can act).  Connections are kept alive in a pool shared
by every thread.  Like the openai SDKs, it retries a connection failure,
408, 409, 429 and 5xx up to max_retries times unless the gateway says
x-should-retry: false, waiting what retry-after-ms / Retry-After say (at
most 10 s) or 0.5 s doubling.
"""
import http.client
import json
import random
import socket
import threading
import time
import urllib.parse


class LLMError(Exception):
    """The gateway or the model failed; status is the HTTP status (0: no answer)."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


class ChatClient:
    def __init__(self, base_url, api_key, model, timeout_s=120.0, max_retries=2, pool_size=256):
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("base URL must be http(s)://host[:port]/path, not %r" % base_url)
        self.base_url = base_url.rstrip("/")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path = url.path + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.pool_size = pool_size
        self._idle = []
        self._lock = threading.Lock()

    # --- connections -----------------------------------------------------------
    def _connection(self):
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout_s), False

    def _release(self, conn):
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _post(self, body):
        """(status, headers, parsed JSON or text).  A kept-alive connection the
        gateway closed meanwhile is retried once on a new one at once."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + self.api_key,
                   "Accept": "application/json", "User-Agent": "seekmesh-analyst/1"}
        while True:
            conn, reused = self._connection()
            try:
                conn.request("POST", self.path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused and not isinstance(e, socket.timeout):
                    continue
                raise LLMError("cannot reach the model gateway at %s: %s"
                               % (self.base_url, e or type(e).__name__)) from None
            if response.will_close:
                conn.close()
            else:
                self._release(conn)
            text = raw.decode("utf-8", "replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return response.status, response.headers, parsed

    # --- the call --------------------------------------------------------------
    def chat(self, messages, **fields):
        """The chat.completion for messages (fields: tools, tool_choice,
        temperature, response_format, ...).  LLMError when it fails."""
        body = {"model": self.model, "messages": messages}
        body.update(fields)
        attempt = 0
        while True:
            try:
                status, headers, answer = self._post(body)
            except LLMError:
                if attempt >= self.max_retries:
                    raise
                status, headers, answer = 0, {}, None
            if status == 200 and isinstance(answer, dict) and answer.get("choices"):
                return answer
            retry = status in (0, 408, 409, 429) or status >= 500
            if headers and headers.get("x-should-retry") == "false":
                retry = False
            elif headers and headers.get("x-should-retry") == "true":
                retry = True
            if not retry or attempt >= self.max_retries:
                raise LLMError(_describe(status, answer), status)
            time.sleep(_delay(headers, attempt))
            attempt += 1


def _describe(status, answer):
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = answer["error"]
        return "the model gateway answered %d: %s" % (status, error.get("message") or
                                                      error.get("code") or "no message")
    if status == 200:
        return "the model's answer has no choices"
    return "the model gateway answered %d" % status


def _delay(headers, attempt):
    try:
        if headers and headers.get("retry-after-ms"):
            return min(float(headers["retry-after-ms"]) / 1000.0, 10.0)
        if headers and headers.get("retry-after"):
            return min(float(headers["retry-after"]), 10.0)
    except ValueError:
        pass
    return min(0.5 * 2 ** attempt, 8.0) * (0.75 + random.random() / 2)
