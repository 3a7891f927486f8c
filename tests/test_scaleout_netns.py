"""mobilenetv3_tipc/tipc/netns.py: namespace hosts reach each other, nothing else, and leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc import netns
from mobilenetv3_tipc.tipc.netns import TestNetwork, list_namespaces, unavailable_reason

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
PORT = 18501

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"namespace hosts: {unavailable_reason()}"),
]

# Listens on one host until one client connected, then prints the client's address.
SERVER = f"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], {PORT}))
s.listen()
s.settimeout(20)
conn, peer = s.accept()
print(peer[0], conn.recv(16).decode(), flush=True)
"""
# Connects to a host (retrying while the server starts); exit 3 when it cannot be reached.
CLIENT = f"""
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        socket.create_connection((sys.argv[1], {PORT}), timeout=2).sendall(b"hello")
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            print(type(exc).__name__, exc)
            sys.exit(3)
        time.sleep(0.2)
"""


def connect(net: TestNetwork, src: int, dst: int, wait: float = 10) -> tuple[subprocess.CompletedProcess, str]:
    server = net.popen(net.hosts[dst], [sys.executable, "-c", SERVER, net.hosts[dst].ip],
                       stdout=subprocess.PIPE, text=True)
    client = net.run(net.hosts[src], [sys.executable, "-c", CLIENT, net.hosts[dst].ip, str(wait)], timeout=60)
    if client.returncode != 0:
        server.kill()
    out, _ = server.communicate(timeout=30)
    return client, out


def test_three_hosts_reach_each_other_and_teardown_removes_all() -> None:
    with TestNetwork.create(3) as net:
        assert sorted(list_namespaces(net.prefix)) == sorted([net.switch, *(h.name for h in net.hosts)])
        assert [h.ip for h in net.hosts] == ["10.213.0.1", "10.213.0.2", "10.213.0.3"]
        for src, dst in ((0, 1), (2, 0)):
            client, out = connect(net, src, dst)
            assert client.returncode == 0, client.stdout + client.stderr
            assert out.split() == [net.hosts[src].ip, "hello"]
        # a host has its own stack: lo and eth0 only, and no route beyond the test subnet
        links = net.run(net.hosts[0], ["ip", "-o", "link"]).stdout
        assert [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()] == ["lo", "eth0"]
        assert "default" not in net.run(net.hosts[0], ["ip", "route"]).stdout
    assert list_namespaces(net.prefix) == []


def test_unplugged_host_is_unreachable() -> None:
    with TestNetwork.create(2) as net:
        net.set_link(net.hosts[1], up=False)
        client, _ = connect(net, 0, 1, wait=2)
        assert client.returncode == 3, client.stdout + client.stderr


def test_failed_setup_removes_what_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    real_ip = netns._ip
    prefix = netns.new_prefix()

    def failing_ip(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        if args[:2] == ("addr", "add") and kwargs.get("netns") == f"{prefix}h1":
            raise netns.NetnsError("injected failure")
        return real_ip(*args, **kwargs)

    monkeypatch.setattr(netns, "_ip", failing_ip)
    with pytest.raises(netns.NetnsError, match="injected failure"):
        TestNetwork.create(2, prefix=prefix)
    assert list_namespaces(prefix) == []


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mobilenetv3_tipc.tipc.netns", *args], capture_output=True,
                          text=True, timeout=60, check=False, env=ENV)


def test_cli_up_exec_down() -> None:
    prefix = netns.new_prefix()
    try:
        up = run_cli("up", "--hosts", "2", "--prefix", prefix)
        assert up.returncode == 0, up.stderr
        rows = [line.split() for line in up.stdout.splitlines()]
        assert rows == [[f"{prefix}h0", "10.213.0.1", "eth0"], [f"{prefix}h1", "10.213.0.2", "eth0"]]
        # the network outlives the `up` process, for the later steps of a shell chain
        assert len(list_namespaces(prefix)) == 3
        shown = run_cli("exec", f"{prefix}h1", "--", "ip", "-o", "-4", "addr", "show", "eth0")
        assert shown.returncode == 0 and "10.213.0.2/24" in shown.stdout, shown.stderr
        assert run_cli("exec", f"{prefix}nope", "--", "true").returncode == 2
        which = run_cli("which", "10.213.0.2", "--prefix", prefix)
        assert which.returncode == 0 and which.stdout.split() == [f"{prefix}h1", "10.213.0.2", "eth0"], which.stderr
        assert run_cli("which", "10.213.0.99").returncode == 1
        assert run_cli("up", "--prefix", "other-").returncode == 2  # never touches names not made here
    finally:
        down = run_cli("down", "--prefix", prefix)
    assert down.returncode == 0, down.stderr
    assert list_namespaces(prefix) == []


def test_a_process_that_exits_without_teardown_leaves_nothing() -> None:
    prefix = netns.new_prefix()
    code = f"import sys; from mobilenetv3_tipc.tipc import netns; netns.TestNetwork.create(2, prefix={prefix!r}); " \
           "sys.exit(1)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                            env=ENV)
    assert result.returncode == 1, result.stderr
    assert list_namespaces(prefix) == []  # removed by the atexit handler
