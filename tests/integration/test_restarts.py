"""Restarts and crashes under steady load (RELIABILITY.md scenarios 3, 5, 23).

Two routers, two connectors, one ingress; four clients loop on chats and
streams (two on fresh connections for every request, two on kept-alive
ones) while `scripts/mesh restart SERVICE` restarts one service after the
other, or a router is killed with SIGKILL.  A request fails when its
connection is refused or cut, its status is not 200, or its answer is not
the mock's echo ending in [DONE].

 5  rolling_restarts_fail_nothing: every service restarted, zero failures
23  ingress_restart_is_hitless: the single ingress restarted three times,
    zero refused connections and zero failed requests
 3  router_killed_under_load: requests keep being served by the other
    router within 1 s; the dead router's requests are not left hanging
"""
import os
import signal
import threading
import time

from meshlib import Load, echo

TWO_EACH = {"mesh": {"instances": {"router": 2, "connector": 2}, "drain_ms": 4000},
            "mock": {"token_delay_ms": 0}}


def test_rolling_restarts_fail_nothing(make_mesh):
    mesh = make_mesh(TWO_EACH)
    with Load(mesh) as load:
        time.sleep(1)
        phases = []
        for service in ("connector", "router", "audit", "ingress"):
            before, failed = load.total(), len(load.failures)
            mesh.mesh("restart", service, timeout=120)
            time.sleep(0.5)
            phases.append("%s: %d of %d failed" % (service, len(load.failures) - failed,
                                                    load.total() - before))
            assert load.total() > before, "the load went on during the restart of " + service
        time.sleep(1)
        load.stop()
    print("restarts under load: " + "; ".join(phases))
    assert load.total() > 200, load.report()
    assert not load.failures, "; ".join(phases) + "\n" + load.report()


def test_ingress_restart_is_hitless(make_mesh):
    mesh = make_mesh({"mesh": {"drain_ms": 4000}})
    with Load(mesh) as load:
        time.sleep(0.5)
        pids = {mesh.pid("ingress-0")}
        for _ in range(3):
            before = load.total()
            mesh.mesh("restart", "ingress", timeout=60)
            pids.add(mesh.pid("ingress-0"))
            time.sleep(0.5)
            assert load.total() > before + 5, "served across the restart"
        load.stop()
    assert len(pids) == 4, "three new ingress processes"
    assert load.total() > 50, load.report()
    assert not load.failures, load.report()
    # each new process took the listening socket over: the old ones handed
    # it on and drained, none was stopped from outside
    log = mesh.logs("supervisor")
    assert log.count("after its successor took over (retired)") == 3, log
    assert "was not taken over" not in log


def test_router_killed_under_load(make_mesh):
    mesh = make_mesh(TWO_EACH)
    with Load(mesh) as load:
        time.sleep(1)
        killed_at = time.time()
        mesh.kill("router-0")
        time.sleep(3)
        load.stop()
    after = [t for t in load.served if t > killed_at]
    assert after and after[0] - killed_at < 1.0, "served by the other router within 1 s"
    # nothing stops being served for a second
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert not gaps or max(gaps) < 1.0, max(gaps)
    assert load.total() > 50, load.report()
    # requests the dead router held are retried or answered, never left hanging
    late = [f for f in load.failures if "timed out" in f[2]]
    assert not late, load.report()


def test_two_ingresses_share_the_port_and_restart_in_turn(make_mesh):
    """Instances of the ingress share its client port (SO_REUSEPORT); a
    rolling restart hands each one's socket to its successor in turn."""
    mesh = make_mesh({"mesh": {"instances": {"ingress": 2}, "drain_ms": 4000}})
    with Load(mesh) as load:
        time.sleep(1)
        # both take connections from the one port
        for i in range(2):
            mesh.wait_metric("ingress", "seekmesh_ingress_responses_total{code=\"2xx\"}",
                             lambda v: v > 0, instance=i)
        mesh.mesh("restart", "ingress", timeout=90)
        time.sleep(1)
        load.stop()
    assert load.total() > 50 and not load.failures, load.report()
    log = mesh.logs("supervisor")
    assert log.count("after its successor took over (retired)") == 2, log


def test_requests_inside_a_killed_router_are_sent_again(make_mesh):
    """Requests a router had taken and not passed on die with it; its
    supervisor restarts it at once.  The ingress sends them again after the
    grace (router.heartbeat_ms x heartbeat_liveness), though the router is
    back by then: the new process knows none of them."""
    mesh = make_mesh()
    router = mesh.pid("router-0")
    os.kill(router, signal.SIGSTOP)         # what comes now waits in its socket
    try:
        bodies = [{"model": "deepseek-chat", "messages": [{"role": "user", "content": "inside %d" % i}]}
                  for i in range(4)]
        started = time.time()
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.update({i: mesh.chat(bodies[i], timeout=20)}))
                   for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
    finally:
        mesh.kill("router-0")               # SIGKILL: those requests are gone
        os.kill(router, signal.SIGCONT)
    for t in threads:
        t.join(20)
    took = time.time() - started
    for i in range(4):
        status, _, body = results[i]
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == echo("inside %d" % i)
    router_config = mesh.config["router"]
    grace = router_config.get("heartbeat_ms", 500) * router_config.get("heartbeat_liveness", 3) / 1000
    assert took < grace + 3, took
    assert mesh.metric("ingress", "seekmesh_ingress_router_lost_resent_total") == 4
