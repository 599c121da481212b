"""The mesh across hosts (RELIABILITY.md scenario 24), each host a Linux
network namespace the test makes: ingress, two routers, two connectors,
the cache, audit, Redis (a password and an ACL user), the mock, and the
clients, each
with an address on one bridge (in a namespace of its own, so no packet
leaves the namespaces the test made) and a hosts file of its own
(/etc/netns/NAME/hosts, which `ip netns exec` puts in place of /etc/hosts).
Every address in the config is a name: `router` has two addresses, which
the ingress and the connectors find; the ingress binds 0.0.0.0 and tells
its peers its own interface address.  A cacheable request is answered by
the cache host the second time, whichever router and connector it crosses.

Under load (four clients looping on chats and streams), a router host and
a connector host are taken away, killed and then cut off (`ip link set
down`): no request fails beyond those in flight on the cut host, and
service resumes when the host returns.

Needs root and iproute2 (scripts/deps --test installs it; CI runs as root).
Removes its namespaces and files at the end, whatever happened.
"""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from meshlib import BIN, Load, echo

CLONE_NEWNET = 0x40000000
PORTS = {"ingress": 8080, "ingress_admin": 9080, "router_admin": 9081, "connector_admin": 9082,
         "cache": 5557, "cache_admin": 9083, "audit_admin": 9084, "mock": 9100, "mock_admin": 9109, "redis": 6379}

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and iproute2 (ip) to make network namespaces")

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def enter(ns):
    """Moves the calling thread into network namespace ns (sockets it makes
    from now on live there)."""
    fd = os.open("/var/run/netns/%s" % ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns %s" % ns)
    finally:
        os.close(fd)


def in_ns(ns, fn):
    """Runs fn in a thread inside namespace ns; returns its result."""
    result = {}

    def run():
        try:
            enter(ns)
            result["value"] = fn()
        except BaseException as e:  # noqa: B902 - raised in the caller
            result["error"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if "error" in result:
        raise result["error"]
    return result.get("value")


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Hosts:
    """The namespaces, the bridge, the hosts files and the processes."""

    ROLES = ("ingress", "router1", "router2", "connector1", "connector2", "cache", "audit", "redis",
             "mock", "client")

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        tag = "smh%d" % (os.getpid() % 100000)
        self.prefix = tag
        self.hub = tag + "-hub"
        subnet = 18 + os.getpid() % 200
        self.addr = {role: "198.18.%d.%d" % (subnet, 10 + i) for i, role in enumerate(self.ROLES)}
        self.ns = {role: "%s-%s" % (tag, role) for role in self.ROLES}
        self.procs = {}             # role -> Popen
        self.made = []

    # --- the network ------------------------------------------------------
    def build(self):
        ip("netns", "add", self.hub)
        self.made.append(self.hub)
        ip("-n", self.hub, "link", "set", "lo", "up")
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for i, role in enumerate(self.ROLES):
            ns = self.ns[role]
            ip("netns", "add", ns)
            self.made.append(ns)
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            self.name_routers(("router1", "router2"), [role])
            # nothing to ask but the hosts file: a lookup of another name
            # fails at once on the namespace's own loopback
            (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
            outer = "%s-v%d" % (self.prefix, i)
            ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", outer, "netns", self.hub)
            ip("-n", self.hub, "link", "set", outer, "master", "br0", "up")
            ip("-n", ns, "addr", "add", self.addr[role] + "/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def name_routers(self, routers, roles=None):
        """What the name `router` resolves to, in each host's hosts file
        (rewritten in place: `ip netns exec` mounted that very file)"""
        hosts = "127.0.0.1 localhost\n" + "".join(
            "%s %s\n" % (self.addr[r], r) for r in self.ROLES)
        hosts += "".join("%s router\n" % self.addr[r] for r in routers)
        for role in roles or self.ROLES:
            with open(Path("/etc/netns") / self.ns[role] / "hosts", "w") as f:
                f.write(hosts)

    def cut(self, role, down=True):
        """The host's link to the bridge, down (a partition) or up again."""
        i = self.ROLES.index(role)
        ip("-n", self.hub, "link", "set", "%s-v%d" % (self.prefix, i), "down" if down else "up")

    # --- processes --------------------------------------------------------
    def start(self, role, argv, env):
        log = open(self.tmp / ("%s.log" % role), "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[role], *argv], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[role] = proc
        return proc

    def kill(self, role, sig=signal.SIGKILL):
        proc = self.procs.get(role)
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log(self, role):
        path = self.tmp / ("%s.log" % role)
        return path.read_text(errors="replace") if path.exists() else ""

    def teardown(self):
        for role in list(self.procs):
            self.kill(role)
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)

    # --- their admin ports, from the clients' host ------------------------
    def http(self, role, port, path, timeout=2):
        def get():
            with urllib.request.urlopen("http://%s:%d%s" % (self.addr[role], port, path),
                                        timeout=timeout) as r:
                return r.status, r.read().decode()
        try:
            return in_ns(self.ns["client"], get)
        except OSError:
            return None, ""

    def metric(self, role, port, name):
        status, text = self.http(role, port, "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def wait(self, what, predicate, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError("not within %ss: %s\n%s" % (timeout, what, self.logs()))

    def logs(self):
        return "\n".join("== %s ==\n%s" % (r, self.log(r)[-2500:]) for r in self.ROLES if r in self.procs)


def config(hosts, tmp):
    """One config for every host: names everywhere, 0.0.0.0 to bind."""
    base = json.loads((Path(__file__).resolve().parents[2] / "compose/config/local.json").read_text())
    base["mesh"] = {"drain_ms": 2000, "resolve_interval_ms": 500, "curve_dir": str(tmp / "curve")}
    base["redis"] = {"url": "redis://redis:%d" % PORTS["redis"], "username": "seekmesh",
                     "password_file": str(tmp / "redis-password")}
    base["ingress"] = {"listen": "0.0.0.0:%d" % PORTS["ingress"],
                       "admin_listen": "0.0.0.0:%d" % PORTS["ingress_admin"],
                       "reply_endpoint": "tcp://0.0.0.0:5559", "routers": ["tcp://router:5555"],
                       "audit_endpoint": "tcp://audit:5558"}
    cache = "tcp://cache:%d" % PORTS["cache"]
    base["router"] = {"listen": "tcp://0.0.0.0:5555", "connector_listen": "tcp://0.0.0.0:5556",
                      "admin_listen": "0.0.0.0:%d" % PORTS["router_admin"], "caches": [cache]}
    base["cache"] = {"listen": "tcp://0.0.0.0:%d" % PORTS["cache"],
                     "admin_listen": "0.0.0.0:%d" % PORTS["cache_admin"]}
    base["connector"] = {"routers": ["tcp://router:5556"], "caches": [cache],
                         "admin_listen": "0.0.0.0:%d" % PORTS["connector_admin"],
                         "first_byte_timeout_ms": 5000, "idle_timeout_ms": 5000}
    base["audit"] = {"listen": "tcp://0.0.0.0:5558", "admin_listen": "0.0.0.0:%d" % PORTS["audit_admin"],
                     "dir": str(tmp / "audit")}
    base["mock"] = {"listen": "0.0.0.0:%d" % PORTS["mock"], "admin_listen": "0.0.0.0:%d" % PORTS["mock_admin"]}
    base.pop("models", None)
    base["models"] = [{"name": "deepseek-chat", "type": "llm",
                       "endpoint": "http://mock:%d/v1/chat/completions" % PORTS["mock"],
                       "auth": {"type": "none"}}]
    base.pop("aliases", None)
    path = tmp / "config.json"
    path.write_text(json.dumps(base, indent=1))
    return path


@pytest.fixture
def hosts(tmp_path):
    h = Hosts(tmp_path)
    try:
        h.build()
        yield h
    finally:
        h.teardown()
        # nothing of ours is left
        left = ip("netns", "list").stdout
        assert h.prefix not in left, left


def start_mesh(hosts, tmp):
    path = config(hosts, tmp)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    env.update({"SEEKMESH_CONFIG": str(path), "SEEKMESH_ADMIN_TOKEN": "hosts-test"})
    subprocess.run([str(BIN / "seekmeshctl"), "curve", "keygen", "--dir", str(tmp / "curve")],
                   check=True, capture_output=True)
    password = tmp / "redis-password"
    password.write_text("redis-%d-pw\n" % os.getpid())
    os.chmod(password, 0o600)
    # Redis wants a password; the mesh logs in as an ACL user of its own
    redis_conf = tmp / "redis.conf"
    redis_conf.write_text("bind 0.0.0.0\nport %d\nsave \"\"\nappendonly no\nprotected-mode no\n"
                          "dir %s\nuser default off\n"
                          "user seekmesh on >redis-%d-pw ~seekmesh:* &* +@all\n"
                          % (PORTS["redis"], tmp, os.getpid()))
    hosts.start("redis", [shutil.which("redis-server") or "/usr/bin/redis-server", str(redis_conf)], env)
    service = lambda name: [str(BIN / ("seekmesh-" + name)), "-c", str(path)]  # noqa: E731
    hosts.start("mock", service("mock"), env)
    hosts.start("audit", service("audit"), env)
    hosts.start("cache", service("cache"), env)
    for role in ("router1", "router2"):
        hosts.start(role, service("router"), env)
    for role in ("connector1", "connector2"):
        hosts.start(role, service("connector"), env)
    hosts.start("ingress", service("ingress"), env)
    for role in ("router1", "router2"):
        hosts.wait(role + " ready with both connectors and Redis",
                   lambda r=role: hosts.metric(r, PORTS["router_admin"], "seekmesh_router_connectors") == 2
                   and hosts.metric(r, PORTS["router_admin"], "seekmesh_redis_up") == 1
                   and hosts.metric(r, PORTS["router_admin"], "seekmesh_cache_up") == 1)
    hosts.wait("the ingress connected to both routers",
               lambda: hosts.metric("ingress", PORTS["ingress_admin"], "seekmesh_ingress_routers_connected") == 2)
    return path, env


def load(hosts, **kwargs):
    return Load(None, host=hosts.addr["ingress"], port=PORTS["ingress"],
                thread_init=lambda: enter(hosts.ns["client"]), **kwargs)


def admitted(hosts, role):
    status, text = hosts.http(role, PORTS["router_admin"], "/metrics")
    return sum(float(l.split()[-1]) for l in text.splitlines()
               if l.startswith("seekmesh_router_admitted_total"))


def served(hosts, role):
    return hosts.metric(role, PORTS["connector_admin"], 'seekmesh_connector_requests_total{outcome="ok"}')


def cached_chat(hosts, text):
    """A chat with x-seekmesh-cache: ttl=60 from the clients' host: (status,
    the x-seekmesh-cache verdict, the answer's text)."""
    import http.client

    def ask():
        conn = http.client.HTTPConnection(hosts.addr["ingress"], PORTS["ingress"], timeout=10)
        try:
            conn.request("POST", "/v1/chat/completions",
                         json.dumps({"model": "deepseek-chat", "messages": [{"role": "user", "content": text}]}),
                         {"Authorization": "Bearer sk-seekmesh-dev", "Content-Type": "application/json",
                          "x-seekmesh-cache": "ttl=60"})
            r = conn.getresponse()
            body = json.loads(r.read())
            content = body["choices"][0]["message"]["content"] if r.status == 200 else body
            return r.status, r.getheader("x-seekmesh-cache"), content
        finally:
            conn.close()
    return in_ns(hosts.ns["client"], ask)


def test_mesh_across_hosts_survives_losing_a_router_and_a_connector_host(hosts, tmp_path):
    path, env = start_mesh(hosts, tmp_path)

    # Names resolve into every router; the reply address is the ingress's own
    log = hosts.log("ingress")
    assert "router tcp://router:5555: tcp://%s:5555" % hosts.addr["router1"] in log, log
    assert "router tcp://router:5555: tcp://%s:5555" % hosts.addr["router2"] in log, log
    assert "replies on tcp://%s:5559" % hosts.addr["ingress"] in log, log
    # the routers count each other in Redis (for the local limiter)
    for role in ("router1", "router2"):
        hosts.wait(role + " counts two routers",
                   lambda r=role: hosts.metric(r, PORTS["router_admin"], "seekmesh_router_peers") == 2)
    assert "redis redis:6379 up" in hosts.log("router1")

    # Chats and streams through every host
    with load(hosts) as steady:
        time.sleep(3)
    assert steady.total() > 30 and not steady.failures, steady.report()
    for role in ("router1", "router2"):
        assert admitted(hosts, role) > 0, role
    for role in ("connector1", "connector2"):
        assert served(hosts, role) > 0, role

    # The cache host: a miss (the connector that served it gives the cache
    # the answer across the bridge), then hits for the same request, the
    # routers asking the cache host by its name
    verdicts = [cached_chat(hosts, "keep this across hosts") for _ in range(6)]
    assert [v[1] for v in verdicts] == ["miss"] + ["hit"] * 5, verdicts
    assert all(v[0] == 200 and v[2] == echo("keep this across hosts") for v in verdicts), verdicts
    assert hosts.metric("cache", PORTS["cache_admin"], 'seekmesh_cache_lookups_total{result="hit"}') == 5

    phases = []

    def phase(name, action, restore, holder, port, inflight_metric):
        """Under load: action takes a host away; the failures are at most
        what it held then; restore brings it back and it serves again."""
        with load(hosts) as run:
            time.sleep(1)
            held = hosts.metric(holder, port, inflight_metric)
            before = len(run.failures)
            taken_at = time.time()
            action()
            time.sleep(4)
            failed = len(run.failures) - before
            after = [t for t in run.served if t > taken_at]
            assert after and after[0] - taken_at < 2.0, (name, "served by the others")
            restore()
            time.sleep(4)
            run.stop()
        phases.append("%s: %d failed of %d (%d in flight on it)" % (name, failed, run.total(), held))
        assert failed <= held, (name, run.report(), hosts.logs())
        return run

    # The name `router` loses an address (scaled in), then has it again:
    # the ingress and the connectors let it go, then take it back
    with load(hosts) as run:
        time.sleep(1)
        hosts.name_routers(["router1"])
        hosts.wait("the ingress dropped router2",
                   lambda: hosts.metric("ingress", PORTS["ingress_admin"], "seekmesh_ingress_routers") == 1)
        hosts.wait("the connectors let router2 go",
                   lambda: hosts.metric("router2", PORTS["router_admin"], "seekmesh_router_connectors") == 0)
        time.sleep(0.5)
        dropped = admitted(hosts, "router2")
        time.sleep(1.5)
        assert admitted(hosts, "router2") == dropped, "no new work for a router that left the name"
        hosts.name_routers(["router1", "router2"])
        hosts.wait("router2 back in the name",
                   lambda: hosts.metric("ingress", PORTS["ingress_admin"], "seekmesh_ingress_routers_connected") == 2
                   and hosts.metric("router2", PORTS["router_admin"], "seekmesh_router_connectors") == 2)
        time.sleep(1.5)
        run.stop()
    assert not run.failures, run.report()
    assert admitted(hosts, "router2") > dropped, "router2 serves again"

    # A router host killed, then back
    def router_back():
        hosts.start("router1", [str(BIN / "seekmesh-router"), "-c", str(path)], env)
    before = admitted(hosts, "router1")
    phase("router host killed", lambda: hosts.kill("router1"), router_back,
          "router1", PORTS["router_admin"], "seekmesh_router_inflight")
    hosts.wait("router1 serving again", lambda: admitted(hosts, "router1") > 0)
    with load(hosts) as again:
        time.sleep(2)
    assert not again.failures and admitted(hosts, "router1") > 0, again.report()
    del before

    # A connector host killed, then back
    def connector_back():
        hosts.start("connector1", [str(BIN / "seekmesh-connector"), "-c", str(path)], env)
    phase("connector host killed", lambda: hosts.kill("connector1"), connector_back,
          "connector1", PORTS["connector_admin"], "seekmesh_connector_inflight")
    hosts.wait("connector1 joined both routers again",
               lambda: hosts.metric("connector1", PORTS["connector_admin"],
                                    "seekmesh_connector_routers_connected") == 2)
    before = served(hosts, "connector1")
    with load(hosts) as again:
        time.sleep(2)
    assert not again.failures and served(hosts, "connector1") > before, again.report()

    # A router host cut off (its link down), then back
    phase("router host cut off", lambda: hosts.cut("router2"), lambda: hosts.cut("router2", False),
          "router2", PORTS["router_admin"], "seekmesh_router_inflight")
    hosts.wait("the ingress reconnected to router2",
               lambda: hosts.metric("ingress", PORTS["ingress_admin"], "seekmesh_ingress_routers_connected") == 2)
    before = admitted(hosts, "router2")
    with load(hosts) as again:
        time.sleep(2)
    assert not again.failures and admitted(hosts, "router2") > before, again.report()

    # A connector host cut off, then back
    phase("connector host cut off", lambda: hosts.cut("connector2"),
          lambda: hosts.cut("connector2", False),
          "connector2", PORTS["connector_admin"], "seekmesh_connector_inflight")
    hosts.wait("connector2 joined again",
               lambda: hosts.metric("router1", PORTS["router_admin"], "seekmesh_router_connectors") == 2
               and hosts.metric("router2", PORTS["router_admin"], "seekmesh_router_connectors") == 2)
    before = served(hosts, "connector2")
    with load(hosts) as again:
        time.sleep(2)
    assert not again.failures and served(hosts, "connector2") > before, again.report()
    print("hosts: " + "; ".join(phases))
