"""web_service.py as a real process: clients, checker, load generator, robustness, graceful SIGTERM.

One server (tiny exported Paddle model) per module, started and stopped by its process group
(mobilenetv3_tipc.serving.process); the SIGTERM test starts its own.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mobilenetv3_tipc.serving import process
from mobilenetv3_tipc.serving.process import free_port
from tests.fixtures.serving import REPO, lite_images, subprocess_env, tiny_models, write_config

SERVING = REPO / "deploy" / "serving_python"


@dataclass
class Server:
    proc: process.ServerProcess
    port: int
    log: Path
    model_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def run_tool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=REPO, env=subprocess_env())


@contextlib.contextmanager
def started_server(work: Path, model_dir: Path, **top: object) -> Iterator[Server]:
    port = free_port()
    config = write_config(work / "config.yml", model_dir, http_port=port, **top)
    log = work / "server.log"
    cmd = [sys.executable, str(SERVING / "web_service.py"), "--config", str(config), "--watch-parent", str(os.getpid())]
    with process.ServerProcess(cmd, log, f"http://127.0.0.1:{port}/health", env=subprocess_env()) as proc:
        proc.wait_ready(120)
        yield Server(proc, port, log, model_dir)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    with started_server(tmp_path_factory.mktemp("serving_server"), model_dir) as running:
        yield running


def test_ready_and_metrics(server: Server) -> None:
    health = requests.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    assert "serving_requests_total" in requests.get(f"{server.url}/metrics", timeout=10).text


def test_keep_alive_responses_are_not_delayed(server: Server) -> None:
    """Regression: without TCP_NODELAY each keep-alive response waited ~40 ms for a delayed ACK."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    times = []
    try:
        for _ in range(7):
            start = time.perf_counter()
            conn.request("GET", "/health")
            conn.getresponse().read()
            times.append(time.perf_counter() - start)
    finally:
        conn.close()
    assert sorted(times[1:])[len(times[1:]) // 2] < 0.025, times


def test_paddle_serving_style_client(server: Server) -> None:
    """A client written only from the protocol, as upstream's pipeline_http_client.py is."""
    url = f"{server.url}/imagenet/prediction"
    with open(REPO / "images" / "demo.jpg", "rb") as file:
        image = base64.b64encode(file.read()).decode("utf8")
    data = {"key": ["image"], "value": [image], "logid": 10000}
    reply = requests.post(url=url, data=json.dumps(data), timeout=30)
    result = reply.json()
    assert result["err_no"] == 0, result
    assert result["key"][:2] == ["label", "prob"]
    assert ast.literal_eval(result["value"][1])[0] > 0


def test_pipeline_client_and_checker(server: Server, tmp_path_factory: pytest.TempPathFactory,
                                     tmp_path: Path) -> None:
    images = lite_images(tmp_path_factory.getbasetemp())
    out = tmp_path / "client.jsonl"
    result = run_tool(str(SERVING / "pipeline_http_client.py"), "--image_dir", str(images[0].parents[1]),
                      "--url", f"{server.url}/imagenet/prediction", "--output", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("image_name:")]
    assert len(lines) == len(images) and all('"err_no": 0' in line for line in lines)
    check = run_tool(str(SERVING / "check_responses.py"), "--responses", str(out), "--model-dir",
                     str(server.model_dir))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(images)}/{len(images)} image(s) match" in check.stdout
    # batched requests (several key/value pairs) from the client
    batched = run_tool(str(SERVING / "pipeline_http_client.py"), "--image_dir", str(images[0].parents[1]),
                       "--url", f"{server.url}/imagenet/prediction", "--batch_size", "5")
    assert batched.returncode == 0 and batched.stdout.count("image_name:") == 4


def test_checker_rejects_wrong_answers(server: Server, tmp_path: Path,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    image = str(lite_images(tmp_path_factory.getbasetemp())[0])
    wrong = {"err_no": 0, "err_msg": "", "key": ["label", "prob", "class_id"],
             "value": ["['espresso']", "[0.9]", "[3]"], "tensors": []}
    failed = {"err_no": 5000, "err_msg": "bad", "key": [], "value": [], "tensors": []}
    out = tmp_path / "wrong.jsonl"
    out.write_text(json.dumps({"images": [image], "response": wrong}) + "\n"
                   + json.dumps({"images": [image], "response": failed}) + "\n"
                   + json.dumps({"images": [image], "error": "ConnectionError: refused"}) + "\n")
    check = run_tool(str(SERVING / "check_responses.py"), "--responses", str(out), "--model-dir",
                     str(server.model_dir))
    assert check.returncode == 1
    assert "err_no 5000" in check.stdout and "the request failed: ConnectionError" in check.stdout
    assert "0/3 image(s) match" in check.stdout


def test_client_exit_code_reflects_err_no(server: Server) -> None:
    demo = str(REPO / "images" / "demo.jpg")
    wrong_name = run_tool(str(SERVING / "pipeline_http_client.py"), "--image_dir", demo,
                          "--url", f"{server.url}/resnet/prediction")
    assert wrong_name.returncode == 1 and '"err_no": 3002' in wrong_name.stdout
    refused = run_tool(str(SERVING / "pipeline_http_client.py"), "--image_dir", demo,
                       "--url", f"http://127.0.0.1:{free_port()}/imagenet/prediction", "--timeout", "5")
    assert refused.returncode == 1 and "error:" in refused.stdout


def test_garbage_on_the_wire_does_not_hurt(server: Server) -> None:
    for garbage in (b"\x00\x01\x02 not http\r\n\r\n", b"POST /imagenet/prediction HTTP/1.1\r\nContent-Length: 100\r\n"
                    b"\r\n{\"key\": [", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(1024)
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    test_paddle_serving_style_client(server)


def test_load_generator_is_bounded(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_tool("-m", "mobilenetv3_tipc.serving.loadgen", "--url", f"{server.url}/imagenet/prediction",
                      "--image", str(REPO / "images" / "demo.jpg"), "--concurrency", "1,4", "--requests", "12",
                      "--duration", "20", "--warmup", "2", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    levels = json.loads(out.read_text())["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    for level in levels:
        assert level["requests"] == 12 and level["errors"] == 0
        assert 0 < level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"]
        assert level["requests_per_s"] > 0 and level["mean_images_per_model_call"] >= 1
    remote = run_tool("-m", "mobilenetv3_tipc.serving.loadgen", "--url", "http://192.0.2.1:18080/imagenet/prediction")
    assert remote.returncode == 2 and "loopback only" in remote.stderr


def test_sigterm_drains_and_exits_0(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Stop a server the way the chain does: SIGTERM, exit 0, port free again."""
    model_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    with started_server(tmp_path, model_dir) as running:
        pid = running.proc.pid
        os.kill(pid, signal.SIGTERM)
        assert running.proc.proc.wait(30) == 0
        assert not process.process_alive(pid)
    log = running.log.read_text()
    assert "received SIGTERM" in log and "server stopped" in log
    with pytest.raises(ConnectionRefusedError):  # nothing listens on the port any more
        socket.create_connection(("127.0.0.1", running.port), timeout=5).close()
    with socket.socket() as sock:  # and a restarted server can bind it (as web_service.py does)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", running.port))
