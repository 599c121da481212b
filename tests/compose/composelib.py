"""The compose test's tools: a private podman API socket for docker-compose,
the compose project, podman's healthchecks on a machine without systemd,
and a load of chats and streams checked byte for byte, retried the way
the openai SDKs retry.

Only podman is driven (its Docker-compatible API serves Debian's
docker-compose 1.29); a Docker engine is not needed.  Every request goes to
the ingress's published port on 127.0.0.1."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import http.client
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
TEST_OVERRIDE = Path(__file__).resolve().parent / "docker-compose.test.yml"
CONTAINERS_CONF = Path(__file__).resolve().parent / "containers.conf"
KEY = "sk-seekmesh-dev"
BASE_IMAGE = "localhost/seekmesh-base:bookworm"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman_env():
    return dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))


def podman(*args, check=True, timeout=600, **kw):
    result = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                            timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError("podman %s: exit %d\n%s%s" % (" ".join(args), result.returncode,
                                                           result.stdout[-3000:], result.stderr[-3000:]))
    return result


class PodmanService:
    """`podman system service` on a socket of ours, for docker-compose."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="seekmesh-podman-"))
        self.socket = self.dir / "podman.sock"
        self.log = open(self.dir / "service.log", "w")
        self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", "unix://%s" % self.socket],
                                     env=podman_env(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("podman system service did not start:\n" +
                                     (self.dir / "service.log").read_text()[-2000:])
            time.sleep(0.1)

    @property
    def docker_host(self):
        return "unix://%s" % self.socket

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class HealthChecks(threading.Thread):
    """Runs the containers' healthchecks every second.  podman schedules
    them with systemd timers; where systemd is not running (a container,
    a CI runner), nothing would, and depends_on: service_healthy would wait
    forever.  On a systemd machine this thread is not started."""

    def __init__(self, project):
        super().__init__(daemon=True)
        self.project = project
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            ids = podman("ps", "-q", "--filter", "label=com.docker.compose.project=%s" % self.project,
                         check=False).stdout.split()
            for cid in ids:
                podman("healthcheck", "run", cid, check=False, timeout=30)
            self.done.wait(1)

    def stop(self):
        self.done.set()
        self.join(35)


def systemd_runs():
    return Path("/run/systemd/system").is_dir()


class Project:
    """One compose project of compose/docker-compose.yml."""

    def __init__(self, service, image, name=None):
        self.name = name or "seekmesh-ct-%d" % os.getpid()
        self.port = free_port()
        self.env = dict(os.environ, DOCKER_HOST=service.docker_host, SEEKMESH_IMAGE=image,
                        SEEKMESH_PUBLISH="127.0.0.1:%d" % self.port, COMPOSE_HTTP_TIMEOUT="300")
        #  compose/.env decides the profiles: the test takes what a user gets
        self.env.pop("COMPOSE_PROFILES", None)
        self.health = None
        if not systemd_runs():
            self.health = HealthChecks(self.name)
            self.health.start()

    def pin_bridge_mac(self):
        """Gives the project network's bridge a fixed MAC address.  A Linux
        bridge without one takes the lowest MAC of its ports, so it changes
        when containers come and go (netavark 1.4 leaves it so); containers
        that reach the gateway (the published port's traffic, DNS) keep
        sending to the old address until their ARP entry expires, up to
        ~45 s of lost packets after any restart.  Docker sets the bridge's
        MAC itself."""
        name = "%s_mesh" % self.name
        iface = podman("network", "inspect", name, "--format", "{{.NetworkInterface}}").stdout.strip()
        mac = Path("/sys/class/net/%s/address" % iface).read_text().strip()
        subprocess.run(["ip", "link", "set", "dev", iface, "address", mac], check=True)
        assert Path("/sys/class/net/%s/addr_assign_type" % iface).read_text().strip() == "3"

    def compose(self, *args, check=True, timeout=600):
        result = subprocess.run(["docker-compose", "-p", self.name, "-f", str(COMPOSE_FILE),
                                 "-f", str(TEST_OVERRIDE), *args],
                                env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError("docker-compose %s: exit %d\n%s%s" % (
                " ".join(args), result.returncode, result.stdout[-3000:], result.stderr[-3000:]))
        return result

    def containers(self, service=None, all=False):
        """{name: inspect dict} of the project's containers (of one service)."""
        args = ["ps", "-q", "--filter", "label=com.docker.compose.project=%s" % self.name]
        if all:
            args.append("-a")
        if service:
            args += ["--filter", "label=com.docker.compose.service=%s" % service]
        ids = podman(*args).stdout.split()
        if not ids:
            return {}
        return {c["Name"]: c for c in json.loads(podman("inspect", *ids).stdout)}

    def health_of(self, service=None):
        return {name: c["State"].get("Health", {}).get("Status", "") or c["State"]["Status"]
                for name, c in self.containers(service).items()}

    def wait_healthy(self, counts, timeout=120):
        """Waits until each service has its count of running, healthy
        containers; counts is {service: n}."""
        deadline = time.monotonic() + timeout
        while True:
            health = {s: self.health_of(s) for s in counts}
            if all(len(h) == counts[s] and all(v == "healthy" for v in h.values())
                   for s, h in health.items()):
                return health
            if time.monotonic() > deadline:
                raise AssertionError("not healthy after %d s: %s\n%s" % (timeout, health, self.logs_tail()))
            time.sleep(0.5)

    def logs_tail(self, lines=30):
        out = []
        for name in self.containers(all=True):
            r = podman("logs", "--tail", str(lines), name, check=False)
            out.append("--- %s\n%s%s" % (name, r.stdout, r.stderr))
        return "\n".join(out)

    def admin_get(self, container, port, path="/metrics"):
        """GET on a container's admin port, from inside it (nothing but the
        ingress is published)."""
        script = ('exec 3<>/dev/tcp/127.0.0.1/%d; printf "GET %s HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3'
                  % (port, path))
        r = podman("exec", container, "bash", "-c", script, check=False, timeout=30)
        #  (text mode has turned CRLF into LF)
        head, _, body = r.stdout.partition("\n\n")
        return body if " 200 " in head.split("\n")[0] else None

    def metrics(self, container, port):
        """{series: value} of a container's /metrics."""
        body = self.admin_get(container, port) or ""
        values = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def down(self):
        if self.health:
            self.health.stop()
        return self.compose("down", "-v", "--remove-orphans", "-t", "15", check=False)


# --- load --------------------------------------------------------------------

RETRY_STATUSES = {408, 409, 429}


def retry_delay(headers, attempt):
    """What the openai SDKs wait before a retry: retry-after-ms, else
    Retry-After seconds when it is between 0 and 60, else exponential
    backoff from 0.5 s with jitter."""
    try:
        ms = float(headers.get("retry-after-ms", ""))
        if 0 <= ms < 60000:
            return ms / 1000
    except ValueError:
        pass
    try:
        seconds = float(headers.get("retry-after", ""))
        if 0 <= seconds <= 60:
            return seconds
    except ValueError:
        pass
    return min(0.5 * 2 ** attempt, 8.0) * (1 - 0.25 * random.random())


class Attempt:
    """One HTTP exchange: status, headers, the answer's text and whether the
    response was complete and right; kind names what went wrong."""

    def __init__(self):
        self.status = 0
        self.headers = {}
        self.kind = ""           # "" ok, or what failed: connect, reset, status, stream, content, timeout
        self.detail = ""
        self.request_id = ""


def _sse_content(raw):
    """The deltas' content of an SSE body, and a reason if the stream is not
    well formed (every event 'data: <json>' or a comment, ending with
    [DONE], no error event)."""
    content = []
    events = raw.split("\n\n")
    if events[-1] != "":
        return None, "the stream does not end with a blank line"
    events = events[:-1]
    if not events or events[-1] != "data: [DONE]":
        return None, "no data: [DONE] at the end (last: %r)" % (events[-1][:200] if events else "")
    for event in events[:-1]:
        if event.startswith(":"):
            continue
        if not event.startswith("data: ") or "\n" in event:
            return None, "malformed event %r" % event[:200]
        data = json.loads(event[6:])
        if "error" in data:
            return None, "error event %s" % event[:300]
        for choice in data.get("choices", []):
            content.append(choice.get("delta", {}).get("content") or "")
    return "".join(content), ""


def one_request(port, model, stream, message, tokens, delay_ms, timeout=30):
    attempt = Attempt()
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": message}],
            "mock": {"tokens": tokens, "delay_ms": delay_ms}}
    expected = "Echo: " + message + "".join(" t%d" % i for i in range(1, tokens))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.request("POST", "/v1/chat/completions", json.dumps(body),
                         {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
        except (ConnectionError, OSError) as e:
            attempt.kind, attempt.detail = "connect", repr(e)
            return attempt
        try:
            response = conn.getresponse()
            attempt.status = response.status
            attempt.headers = {k.lower(): v for k, v in response.getheaders()}
            attempt.request_id = attempt.headers.get("x-request-id", "")
            raw = response.read().decode()
        except socket.timeout as e:
            attempt.kind, attempt.detail = "timeout", repr(e)
            return attempt
        except (ConnectionError, OSError, http.client.HTTPException) as e:
            attempt.kind, attempt.detail = "reset", repr(e)
            return attempt
    finally:
        conn.close()
    if attempt.status != 200:
        attempt.kind = "status"
        attempt.detail = "%d %s" % (attempt.status, raw[:300])
        try:
            error = json.loads(raw)["error"]
            assert isinstance(error["message"], str) and "type" in error
        except (ValueError, KeyError, TypeError, AssertionError):
            attempt.detail += " (not the OpenAI error envelope)"
            attempt.kind = "envelope"
        return attempt
    if stream:
        content, why = _sse_content(raw)
        if why:
            attempt.kind, attempt.detail = "stream", why
            return attempt
    else:
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            attempt.kind, attempt.detail = "content", raw[:300]
            return attempt
    if content != expected:
        attempt.kind, attempt.detail = "content", "%r != %r" % (content[:200], expected[:200])
    return attempt


class Outcome:
    def __init__(self, what):
        self.what = what
        self.attempts = []

    @property
    def ok(self):
        return bool(self.attempts) and self.attempts[-1].kind == ""

    def __repr__(self):
        return "%s: %s" % (self.what, ["%s %s" % (a.kind or "ok", a.detail[:200]) for a in self.attempts])


def sdk_request(port, model, stream, message, tokens, delay_ms, max_retries=2):
    """A request as the openai SDKs make it: connection errors, timeouts,
    408, 409, 429 and 5xx retried up to twice unless x-should-retry says
    false, after retry-after(-ms) or a backoff.  A stream that broke after
    its 200 is not retried (the SDK has handed it to the caller)."""
    outcome = Outcome("%s %s %r" % (model, "stream" if stream else "chat", message))
    for n in range(max_retries + 1):
        attempt = one_request(port, model, stream, message, tokens, delay_ms)
        outcome.attempts.append(attempt)
        if attempt.kind == "":
            break
        retryable = attempt.kind in ("connect", "reset", "timeout") or (
            attempt.kind in ("status", "envelope")
            and (attempt.status in RETRY_STATUSES or attempt.status >= 500))
        should = attempt.headers.get("x-should-retry")
        if should == "true":
            retryable = True
        elif should == "false":
            retryable = False
        if not retryable or n == max_retries:
            break
        time.sleep(retry_delay(attempt.headers, n))
    return outcome


class Load:
    """Clients looping on chats and streams (both upstream kinds) until
    stopped; every answer checked exactly."""

    KINDS = [("deepseek-chat", False, 3, 0), ("deepseek-chat", True, 8, 25),
             ("deepseek-chat-ws", True, 8, 25), ("deepseek-reasoner", False, 2, 0)]

    def __init__(self, port, clients=4):
        self.port = port
        self.clients = clients
        self.stop_event = threading.Event()
        self.outcomes = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(clients)]
        self.started = time.monotonic()

    def _loop(self, client):
        n = 0
        while not self.stop_event.is_set():
            model, stream, tokens, delay = self.KINDS[(client + n) % len(self.KINDS)]
            began = time.monotonic() - self.started
            outcome = sdk_request(self.port, model, stream, "c%d n%d" % (client, n), tokens, delay)
            outcome.began = began
            outcome.at = time.monotonic() - self.started
            with self.lock:
                self.outcomes.append(outcome)
            n += 1

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(120)
        return self

    def count(self):
        with self.lock:
            return len(self.outcomes)

    def wait_for(self, more, timeout=60):
        """Until `more` further requests have ended."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if time.monotonic() > deadline:
                raise AssertionError("the load made no progress: %d of %d requests in %d s"
                                     % (self.count(), target, timeout))
            time.sleep(0.1)

    def failed(self):
        return [o for o in self.outcomes if not o.ok]

    def first_attempt_failures(self):
        return [o for o in self.outcomes if o.attempts[0].kind]

    def summary(self):
        first = self.first_attempt_failures()
        kinds = {}
        for o in first:
            a = o.attempts[0]
            key = a.kind + (" %d" % a.status if a.status else "")
            kinds[key] = kinds.get(key, 0) + 1
        return "%d requests, %d failed after retries, %d retried (%s)" % (
            len(self.outcomes), len(self.failed()), len(first),
            ", ".join("%s: %d" % kv for kv in sorted(kinds.items())) or "none")
