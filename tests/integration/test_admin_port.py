"""Every service's admin port takes what probes and scrapers do to it: a TCP
connection that closes before sending a request (a Kubernetes tcpSocket
probe, a load balancer's check, a scraper's idle keep-alive), then the
HTTP probes, and the service keeps running and answering."""
import socket
import time

import pytest

SERVICES = ("ingress", "router", "connector", "audit", "mock")


@pytest.mark.parametrize("service", SERVICES)
def test_admin_port_survives_a_connection_closed_without_a_request(mesh, service):
    host, port = mesh.admin_address(service)
    pid = mesh.pid("%s-0" % service)
    for _ in range(3):
        with socket.create_connection((host, port), timeout=2):
            pass
        # half a request, then gone
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"GET /hea")
    time.sleep(0.3)
    assert mesh.pid("%s-0" % service) == pid, "%s was restarted: it died" % service
    assert mesh.admin_get(service, "/healthz")[0] == 200
    assert mesh.admin_get(service, "/readyz")[0] in (200, 503)
    status, body = mesh.chat({"model": "deepseek-chat", "messages": [{"role": "user", "content": "still here"}]})[:2]
    assert status == 200, body
