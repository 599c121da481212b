"""Shared by examples/analyst's tests: where things are, and the real
seekmesh-mock started on free ports with recorded answers."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "analyst"))


class Mock:
    """seekmesh-mock on free loopback ports, replaying the given recordings."""

    def __init__(self, tmp, recordings):
        import json
        import os
        import socket
        import subprocess
        import time
        binary = os.environ.get("MOCK_BINARY") or str(REPO / "build" / "bin" / "seekmesh-mock")
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.port, self.admin_port = ports
        replay = Path(tmp) / "replay.json"
        replay.write_text(json.dumps({"recordings": recordings}))
        config = Path(tmp) / "mock.json"
        config.write_text(json.dumps({"mock": {
            "listen": "127.0.0.1:%d" % self.port, "admin_listen": "127.0.0.1:%d" % self.admin_port,
            "replay_file": str(replay)}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
        self.log = Path(tmp) / "mock.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([binary, "-c", str(config)], stderr=log, env=env)
        deadline = time.time() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.admin_port), 0.2).close()
                break
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                assert time.time() < deadline, "seekmesh-mock did not start"
                time.sleep(0.02)
        self.base_url = "http://127.0.0.1:%d/v1" % self.port

    def admin(self, method, path, body=None):
        import http.client
        import json
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body))
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def requests(self):
        """Chat requests the mock has answered so far."""
        _, text = self.admin("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith('seekmesh_mock_requests_total{transport="http"}'):
                return int(float(line.split()[-1]))
        return 0

    def stop(self):
        self.proc.terminate()
        assert self.proc.wait(5) == 0
