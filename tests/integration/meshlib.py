"""Test harness: a whole seekmesh mesh of real processes on loopback.

Mesh(tmp, overrides) writes a config derived from compose/config/local.json
with every port moved by a free offset (so tests never collide with a mesh
someone runs by hand), starts it with scripts/mesh in its own run
directory, and offers what the scenarios need: raw HTTP requests, SSE
streams read event by event with timestamps, process ids to kill, Prometheus
metrics, logs.  Only the standard library.
"""
import copy
import http.client
import json
import os
import random
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SEEKMESH_BIN") or REPO / "build" / "bin")
KEY = "sk-seekmesh-dev"
ADMIN_TOKEN = "test-admin-token"
# The ASan + UBSan build (make asan) runs a few times slower and holds freed
# memory in its quarantine: latency bounds are multiplied by SLOWER and
# memory bounds allow QUARANTINE_KIB more.  The normal build is held to the
# figures themselves.
SANITIZED = bool(os.environ.get("SEEKMESH_SANITIZED"))
SLOWER = 3 if SANITIZED else 1
QUARANTINE_KIB = 32 * 1024 if SANITIZED else 0
CHAT = "/v1/chat/completions"

PORT_KEYS = ("listen", "tls_listen", "admin_listen", "reply_endpoint", "connector_listen", "url",
             "audit_endpoint")
SECTIONS = ("ingress", "router", "connector", "mock", "redis", "audit", "cache")


def _port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _shift(value, offset):
    """'tcp://127.0.0.1:5555' or '127.0.0.1:8080' with the port moved."""
    m = re.match(r"^(.*:)(\d+)$", value)
    return "%s%d" % (m.group(1), int(m.group(2)) + offset) if m else value


def _merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class Mesh:
    def __init__(self, tmp, overrides=None, env=None):
        self.tmp = Path(tmp)
        self.config_path = self.tmp / "config.json"
        self.run_dir = self.tmp / "run"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
        self.env.update({"SEEKMESH_RUN_DIR": str(self.run_dir), "SEEKMESH_BIN": str(BIN),
                         "SEEKMESH_CONFIG": str(self.config_path),
                         "SEEKMESH_ADMIN_TOKEN": ADMIN_TOKEN})
        self.env.update(env or {})
        self.killed = set()         # pids the test killed itself
        base = json.loads((REPO / "compose/config/local.json").read_text())
        _merge(base, copy.deepcopy(overrides or {}))
        #  The whole config moved to free ports: every port below the
        #  kernel's ephemeral range (32768 and up), since a service restarted
        #  in a test must find its port free, and while it is down the tests'
        #  own client connections take ephemeral ports.  Which ports each
        #  instance binds is the services' to say (--print-config).
        for _ in range(200):
            self.offset = random.randrange(100, 236) * 100
            self.config = self._moved(base)
            self.config_path.write_text(json.dumps(self.config, indent=1))
            self._effective = {}
            if all(_port_free(p) for p in self._bound_ports()):
                break
        else:
            raise RuntimeError("no free port range")
        host, port = self.config["ingress"]["listen"].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.stride = self.effective()["mesh"]["port_stride"]

    def _moved(self, base):
        config = copy.deepcopy(base)
        for section in SECTIONS:
            for key in PORT_KEYS:
                if config.get(section, {}).get(key):
                    config[section][key] = _shift(config[section][key], self.offset)
        for model in config.get("models", []):
            if "endpoint" in model:
                model["endpoint"] = self.shift_url(model["endpoint"])
            for endpoint in model.get("endpoints", []):
                endpoint["url"] = self.shift_url(endpoint["url"])
        return config

    def effective(self, instance=0):
        """The configuration instance `instance` of the services runs with
        (seekmesh-router --print-config: defaults, environment, its ports)."""
        if instance not in self._effective:
            env = dict(self.env, SEEKMESH_INSTANCE=str(instance))
            result = subprocess.run([str(BIN / "seekmesh-router"), "--print-config", "-c",
                                     str(self.config_path)], env=env, capture_output=True,
                                    text=True, timeout=30)
            assert result.returncode == 0, "--print-config failed: " + result.stderr
            self._effective[instance] = json.loads(result.stdout)
        return self._effective[instance]

    def _bound_ports(self):
        """Every port an instance of this mesh would bind."""
        ports = set()
        instances = max(self.effective()["mesh"]["instances"].values())
        for i in range(max(instances, 1)):
            for section in SECTIONS:
                for key, value in self.effective(i).get(section, {}).items():
                    if isinstance(value, str) and re.match(r"^(tcp://)?[\w.\-]+:\d+$", value):
                        ports.add(int(value.rsplit(":", 1)[1]))
        return ports

    def shift_url(self, url):
        """A loopback URL of the unshifted config (mock on 9100, …) moved to
        this mesh's ports."""
        return re.sub(r"127\.0\.0\.1:(\d+)",
                      lambda m: "127.0.0.1:%d" % (int(m.group(1)) + self.offset), url)

    # --- processes --------------------------------------------------------
    def mesh(self, *args, check=True, timeout=30):
        result = subprocess.run([str(REPO / "scripts/mesh"), *args], env=self.env, cwd=REPO,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError("scripts/mesh %s failed (%d):\n%s%s\n%s" % (
                " ".join(args), result.returncode, result.stdout, result.stderr, self.logs()))
        return result

    def up(self):
        try:
            self.mesh("up", "-c", str(self.config_path))
        except AssertionError:
            self.mesh("down", check=False)     # leave nothing running behind a failed start
            raise
        # `up` waits for /healthz; requests need routers that have a connector
        # (and have read the registry): wait for their /readyz too
        instances = self.config.get("mesh", {}).get("instances", {})
        started = self.env.get("SEEKMESH_MESH_SERVICES",
                               "redis router connector").replace(",", " ").split()
        if "router" in started and "connector" in started and instances.get("connector", 1) > 0:
            try:
                for i in range(instances.get("router", 1)):
                    self.wait_ready("router", i)
                    # and connected to the mesh's Redis, when it runs one
                    if "redis" in started and instances.get("redis", 1) > 0:
                        self.wait_metric("router", "seekmesh_redis_up", lambda v: v == 1,
                                         instance=i)
                # and each ingress connected to every router (it spreads
                # requests over those it is connected to)
                if "ingress" in started:
                    for i in range(instances.get("ingress", 1)):
                        self.wait_routers_connected(i, instances.get("router", 1))
            except AssertionError:
                self.mesh("down", check=False)
                raise
        return self

    def wait_routers_connected(self, instance, routers, timeout=10):
        deadline = time.time() + timeout
        while True:
            connected = len(set(re.findall(r"router ((?:tcp|ipc)://\S+) connected",
                                           self.logs("ingress-%d" % instance))))
            if connected >= routers:
                return
            if time.time() > deadline:
                raise AssertionError("ingress-%d connected to %d of %d routers after %ss"
                                     % (instance, connected, routers, timeout))
            time.sleep(0.02)

    def wait_ready(self, service, instance=0, timeout=5):
        deadline = time.time() + timeout
        status, body = None, ""
        while time.time() < deadline:
            try:
                status, body = self.admin_get(service, "/readyz", instance)
                if status == 200:
                    return time.time()
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("%s-%d not ready after %ss: %s %s" % (service, instance, timeout,
                                                                   status, body))

    def down(self):
        """Stops the mesh; fails if any process logged a sanitizer report
        (the asan build), crashed with a signal, or exited by itself (the
        supervisor restarted it), unless the test killed that pid itself;
        or if a process did not stop cleanly (status 0) when told to."""
        self.mesh("down", check=False)
        problems = self.unexpected_exits()
        assert not problems, "processes ended that the test did not end:\n" + "\n".join(problems) \
            + "\n" + self.logs("supervisor")
        reports = []
        for log in sorted((self.run_dir / "logs").glob("*.log")):
            text = log.read_text(errors="replace")
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "SUMMARY: UndefinedBehaviorSanitizer"):
                for m in re.finditer(re.escape(marker), text):
                    at = m.start()
                    # ASan's report of a signal the test sent (==PID==ERROR:
                    # AddressSanitizer: SEGV ...) is the test's doing too
                    pid = re.search(r"==(\d+)==$", text[max(0, at - 20):at])
                    if pid and int(pid.group(1)) in self.killed:
                        continue
                    reports.append("%s: %s" % (log.name, text[max(0, at - 200):at + 3000]))
        assert not reports, "sanitizer reports:\n" + "\n".join(reports)

    def pid(self, name):
        return int(self.mesh("pid", name).stdout.strip())

    def kill(self, name, sig=9):
        """Sends sig to an instance, and remembers that its end (if it ends)
        was the test's doing."""
        pid = self.pid(name)
        self.killed.add(pid)
        os.kill(pid, sig)
        return pid

    def unexpected_exits(self):
        """What the supervisor's log says ended that the test did not end:
        a crash (a signal other than the test's), an exit that led to a
        restart, a non-zero status when the mesh was being stopped."""
        log = self.run_dir / "logs" / "supervisor.log"
        if not log.exists():
            return []
        problems, stopping = [], False
        lines = log.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if " stopping: SIGTERM to " in line:
                stopping = True
            m = re.search(r" exit (\S+) pid=(\d+) (.*) after ", line)
            if not m:
                continue
            name, pid, how = m.group(1), int(m.group(2)), m.group(3)
            if pid in self.killed:
                continue
            crashed = re.search(r"killed by SIG(\w+)", how)
            restarted = i + 1 < len(lines) and (" restart %s in " % name) in lines[i + 1]
            if crashed and crashed.group(1) not in ("TERM", "KILL"):
                problems.append("%s pid %d %s" % (name, pid, how))
            elif restarted:
                problems.append("%s pid %d %s (and was restarted)" % (name, pid, how))
            elif stopping and how != "exited with status 0":
                problems.append("%s pid %d %s when the mesh stopped" % (name, pid, how))
        return problems

    def logs(self, name=None):
        logs = self.run_dir / "logs"
        if not logs.exists():
            return ""
        files = [logs / ("%s.log" % name)] if name else sorted(logs.glob("*.log"))
        return "\n".join("== %s ==\n%s" % (f.name, f.read_text()[-4000:]) for f in files if f.exists())

    def wait_healthy(self, service, instance=0, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.admin_get(service, "/healthz", instance)[0] == 200:
                    return time.time()
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("%s-%d not healthy after %ss" % (service, instance, timeout))

    # --- admin ports --------------------------------------------------------
    def admin_address(self, service, instance=0):
        host, port = self.effective(instance)[service]["admin_listen"].rsplit(":", 1)
        return host, int(port)

    def admin_get(self, service, path, instance=0):
        host, port = self.admin_address(service, instance)
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def admin_call(self, method, path, body=None, token=ADMIN_TOKEN, instance=0, service="router"):
        """An admin API call: (status, parsed JSON or text)."""
        host, port = self.admin_address(service, instance)
        conn = http.client.HTTPConnection(host, port, timeout=5)
        headers = {"Authorization": "Bearer " + token} if token else {}
        data = None
        if body is not None:
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
        finally:
            conn.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    def redis_port(self):
        return int(self.config["redis"]["listen"].rsplit(":", 1)[1])

    def redis_server_pid(self, instance=0):
        """The redis-server process itself (redis-N is the wrapper that
        scripts/mesh supervises; SIGSTOP must reach the server)."""
        wrapper = self.pid("redis-%d" % instance)
        children = subprocess.run(["pgrep", "-P", str(wrapper)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 1, children
        return int(children[0])

    def redis_cli(self, *args):
        """Runs redis-cli against this mesh's Redis; returns its output."""
        result = subprocess.run(["redis-cli", "-p", str(self.redis_port()), *map(str, args)],
                                capture_output=True, text=True, timeout=5)
        return result.stdout.strip()

    def metrics(self, service, instance=0):
        """{'name{labels}': value}"""
        status, text = self.admin_get(service, "/metrics", instance)
        assert status == 200
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def metric(self, service, name, instance=0):
        return self.metrics(service, instance).get(name, 0.0)

    def wait_metric(self, service, name, predicate, timeout=5, instance=0):
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            try:
                value = self.metric(service, name, instance)
                if predicate(value):
                    return value
            except (OSError, AssertionError):
                pass
            time.sleep(0.02)
        raise AssertionError("%s %s: %r never satisfied the condition" % (service, name, value))

    # --- clients ------------------------------------------------------------
    def connection(self, timeout=30):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, key=KEY, headers=None, timeout=30):
        """(status, headers dict (lower-case), body bytes)"""
        conn = self.connection(timeout)
        try:
            all_headers = {"Content-Type": "application/json"}
            if key:
                all_headers["Authorization"] = "Bearer " + key
            all_headers.update(headers or {})
            data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read())
        finally:
            conn.close()

    def chat(self, body, **kwargs):
        status, headers, data = self.request("POST", CHAT, body, **kwargs)
        return status, headers, json.loads(data) if data else None

    def stream(self, body, key=KEY, timeout=30, headers=None):
        return Stream(self, body, key, timeout, headers)


class Stream:
    """A streaming chat request, read event by event over a raw socket so the
    exact bytes on the wire (after HTTP chunked decoding) can be checked."""

    def __init__(self, mesh, body, key, timeout, headers=None):
        self.started = time.time()
        self.sock = socket.create_connection((mesh.host, mesh.port), timeout)
        payload = json.dumps(dict(body, stream=True)).encode()
        extra = "".join("%s: %s\r\n" % item for item in (headers or {}).items())
        head = ("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
                % (CHAT, mesh.host, key, extra, len(payload)))
        self.sock.sendall(head.encode() + payload)
        self.raw = b""
        self.status = None
        self.headers = {}
        self.body = b""             # the decoded SSE bytes
        self.events = []            # (time, text of one event without the blank line)
        self.closed = False
        self.reset = False          # closed by a reset, not a clean FIN
        self.ended = False          # the terminating chunk arrived
        self._chunk_buf = b""
        self._event_buf = b""

    def _recv(self):
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise
        except ConnectionResetError:
            self.reset = True
            data = b""
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.raw += data
        return True

    def read_head(self):
        while b"\r\n\r\n" not in self.raw:
            if not self._recv():
                raise AssertionError("closed before the response head: %r" % self.raw)
        head, rest = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        self._chunk_buf = rest
        self._decode_chunks()       # events that came with the head
        return self.status

    def _decode_chunks(self):
        """Moves complete chunks from _chunk_buf into body/events."""
        now = time.time()
        chunked = self.headers.get("transfer-encoding") == "chunked"
        if not chunked:
            self._feed(self._chunk_buf, now)
            self._chunk_buf = b""
            # an error answer has a length: the response ends with it
            length = self.headers.get("content-length")
            if length is not None and len(self.body) >= int(length):
                self.ended = True
            return
        while True:
            line_end = self._chunk_buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(self._chunk_buf[:line_end].split(b";")[0], 16)
            if size == 0:
                if self._chunk_buf[line_end + 2:line_end + 4] == b"\r\n":
                    self.ended = True
                    self._chunk_buf = b""
                return
            if len(self._chunk_buf) < line_end + 2 + size + 2:
                return
            data = self._chunk_buf[line_end + 2:line_end + 2 + size]
            assert self._chunk_buf[line_end + 2 + size:line_end + 4 + size] == b"\r\n"
            self._chunk_buf = self._chunk_buf[line_end + 4 + size:]
            self._feed(data, now)

    def _feed(self, data, now):
        self.body += data
        self._event_buf += data
        while b"\n\n" in self._event_buf:
            event, self._event_buf = self._event_buf.split(b"\n\n", 1)
            self.events.append((now, event.decode()))

    def next_event(self, timeout=10):
        """The next event's text, or None if the stream ended or closed."""
        if self.status is None:
            self.read_head()
        deadline = time.time() + timeout
        self.sock.settimeout(timeout)
        consumed = getattr(self, "_consumed", 0)
        while len(self.events) <= consumed:
            if self.ended or self.closed or time.time() > deadline:
                return None
            before = len(self.raw)
            if not self._recv():
                return None
            self._chunk_buf += self.raw[before:]
            self._decode_chunks()
        self._consumed = consumed + 1
        return self.events[consumed][1]

    def read_all(self, timeout=30):
        while self.next_event(timeout) is not None:
            pass
        return self.events

    def close(self):
        self.sock.close()

    # what the tests want to know
    def data_events(self):
        return [e for _, e in self.events if e.startswith("data: ")]

    def chunks(self):
        return [json.loads(e[6:]) for e in self.data_events() if e != "data: [DONE]" and '"error"' not in e[:12]]

    def content(self, field="content"):
        return "".join((c["choices"][0]["delta"].get(field) or "") for c in self.chunks() if c.get("choices"))


class Load:
    """Clients looping on chats and streams until stopped: half on a fresh
    connection for every request, half on kept-alive ones, each alternating
    a whole answer and a stream.  A request fails when its connection is
    refused or cut, its status is not 200, or its answer is not the mock's
    echo (a stream: ending in [DONE]).  `thread_init` runs first in each
    client's thread (test_hosts enters the clients' network namespace)."""

    def __init__(self, mesh, clients=4, tokens=8, delay_ms=15, host=None, port=None,
                 thread_init=None, timeout=20):
        self.mesh = mesh
        self.host = host or mesh.host
        self.port = port or mesh.port
        self.thread_init = thread_init
        self.timeout = timeout
        self.tokens, self.delay_ms = tokens, delay_ms
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []          # (time, client, what)
        self.served = []            # times of successful answers
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(clients)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)
        return self

    def _fail(self, client, what):
        with self.lock:
            self.failures.append((time.time(), client, what))

    def _one(self, conn, client, n, stream):
        prompt = "client %d request %d" % (client, n)
        body = {"model": "deepseek-chat", "stream": stream,
                "messages": [{"role": "user", "content": prompt}],
                "mock": {"tokens": self.tokens, "delay_ms": self.delay_ms}}
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Authorization": "Bearer sk-seekmesh-dev",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        closing = (response.getheader("connection") or "").lower() == "close"
        if response.status != 200:
            return "status %d: %s" % (response.status, data[:200]), closing
        if stream:
            text = data.decode()
            content = ""
            for event in text.split("\n\n"):
                if event.startswith("data: {"):
                    chunk = json.loads(event[6:])
                    if "error" in chunk:
                        return "stream error: %s" % event[:200], closing
                    if chunk.get("choices"):
                        content += chunk["choices"][0]["delta"].get("content") or ""
            if not text.rstrip().endswith("data: [DONE]") or content != echo(prompt, self.tokens):
                return "stream cut or wrong: %r" % text[-200:], closing
        else:
            answer = json.loads(data)["choices"][0]["message"]["content"]
            if answer != echo(prompt, self.tokens):
                return "wrong answer %r" % answer[:100], closing
        return None, closing

    def _client(self, client):
        if self.thread_init:
            self.thread_init()
        keep_alive = client >= len(self.threads) // 2
        conn = None
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                problem, closing = self._one(conn, client, n, stream=n % 2 == 0)
            except (OSError, http.client.HTTPException, ValueError) as e:
                problem, closing = "%s: %s" % (type(e).__name__, e), True
            if problem:
                self._fail(client, problem)
                time.sleep(0.05)        # a client's pause before it tries again
            else:
                with self.lock:
                    self.ok += 1
                    self.served.append(time.time())
            if closing or problem or not keep_alive:
                conn.close()
                conn = None
        if conn:
            conn.close()

    def total(self):
        return self.ok + len(self.failures)

    def report(self):
        return "%d requests, %d failed: %s" % (self.total(), len(self.failures),
                                               self.failures[:10])


def echo(prompt, tokens=None):
    """What the mock answers to prompt (see services/mock/mock_reply.c)."""
    text = "Echo: " + prompt
    if tokens:
        text += "".join(" t%d" % i for i in range(1, tokens))
    return text


def parallel(functions):
    """Runs callables in threads; returns their results (exceptions raise)."""
    results = [None] * len(functions)
    errors = []

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: B902 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
