"""The routers' Redis with a password and an ACL user (issue 11): AUTH as
redis.username with the password from redis.password_file; a refusal is the
degraded mode (requests keep being served by the local limiter, a metric
and a log line say why, the password is in no log), and once the password
is right the limits are exact again.  A real redis-server, `requirepass`
and `user` lines in its config."""
import os
import shutil
import socket
import subprocess
import time

from meshlib import KEY

LIMITED = "sk-redis-auth-limited"


def user(text):
    return {"model": "deepseek-chat", "messages": [{"role": "user", "content": text}]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_auth_refused_is_degraded_mode_then_exact_again(make_mesh, tmp_path):
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text("bind 127.0.0.1\nport %d\nsave \"\"\nappendonly no\ndir %s\n"
                    "requirepass default-pw-4d1c\n"
                    "user seekmesh on >quota-pw-77e2 ~seekmesh:* &* +@all\n" % (port, tmp_path))
    server = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 5
        while subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "-a",
                              "default-pw-4d1c", "PING"], capture_output=True, text=True).stdout.strip() != "PONG":
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.05)
        password = tmp_path / "redis-password"
        password.write_text("not-the-pw-9a0b\n")
        os.chmod(password, 0o600)
        # (the url in the environment: the harness moves the config's ports)
        mesh = make_mesh({"redis": {"username": "seekmesh", "password_file": str(password)},
                          "keys": [{"id": "dev", "key": KEY, "tenant": "dev"},
                                   {"id": "limited", "key": LIMITED, "tenant": "t", "rpm": 100000}]},
                         env={"SEEKMESH_MESH_SERVICES": "mock audit router connector ingress",
                              "SEEKMESH_REDIS_URL": "redis://localhost:%d" % port})

        # Refused: degraded, counted, said, and still serving
        mesh.wait_metric("router", 'seekmesh_redis_failures_total{reason="auth"}', lambda v: v >= 1)
        mesh.wait_metric("router", "seekmesh_ratelimit_degraded", lambda v: v == 1)
        assert mesh.metric("router", "seekmesh_redis_up") == 0
        for i in range(5):
            status, _, body = mesh.chat(user("degraded %d" % i), key=LIMITED)
            assert status == 200, body
        assert mesh.metric("router", "seekmesh_router_quota_local_total") >= 5
        log = mesh.logs("router-0")
        assert "AUTH as seekmesh refused: WRONGPASS" in log, log
        assert "redis localhost:%d" % port in log
        assert "not-the-pw" not in mesh.logs() and "quota-pw" not in mesh.logs()

        # The right password, a rolling restart: exact again, in Redis
        password.write_text("quota-pw-77e2\n")
        mesh.mesh("restart", "router", timeout=60)
        mesh.wait_metric("router", "seekmesh_redis_up", lambda v: v == 1)
        mesh.wait_metric("router", "seekmesh_ratelimit_degraded", lambda v: v == 0)
        assert mesh.chat(user("exact"), key=LIMITED)[0] == 200
        exists = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", "--user", "seekmesh",
                                 "--pass", "quota-pw-77e2", "EXISTS", "seekmesh:q:{limited}:rpm"],
                                capture_output=True, text=True).stdout.strip()
        assert exists == "1"
        assert "quota-pw" not in mesh.logs()

        # A password file every user may read is refused at start
        os.chmod(password, 0o644)
        result = subprocess.run([str(mesh.env["SEEKMESH_BIN"] + "/seekmesh-router"), "-c",
                                 str(mesh.config_path)],
                                env=dict(mesh.env, SEEKMESH_INSTANCE="5",
                                         SEEKMESH_MESH_CURVE_DIR=str(mesh.run_dir / "curve")),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode != 0 and "readable by every user" in result.stderr, result.stderr
    finally:
        server.kill()
        server.wait()
