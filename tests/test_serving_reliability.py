"""The server under abuse: idle and slow connections, disconnects, huge images, timeouts, SIGTERM, parent death.

Loopback only; every server process is started in its own process group and stopped by it;
every wait is bounded. In-process tests use a fake backend (class = dominant colour) to
see exactly which requests reached the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mobilenetv3_tipc.serving import process
from mobilenetv3_tipc.serving.protocol import CLOSED_ERROR, INPUT_PARAMS_ERROR, TIMEOUT
from tests.fixtures.serving import (
    COLOURS,
    REPO,
    FakeBackend,
    FakeServers,
    b64,
    make_jpeg,
    make_png,
    make_png_bomb,
    make_unsupported_dds,
    request_body,
    subprocess_env,
    tiny_models,
    write_config,
)

SERVING = REPO / "deploy" / "serving_python"
URL = "/imagenet/prediction"
GRACE_S = 3.0
LIMITS = {"header_timeout_s": 2, "body_timeout_s": 2, "keep_alive_timeout_s": 2, "max_connections_per_client": 16,
          "max_connections": 48, "graceful_shutdown_timeout_s": GRACE_S}


@contextlib.contextmanager
def guarded_server(work: Path, model_dir: Path, **top: object) -> Iterator[tuple[process.ServerProcess, str]]:
    port = process.free_port()
    config = write_config(work / "config.yml", model_dir, http_port=port, **{**LIMITS, **top})
    cmd = [sys.executable, str(SERVING / "web_service.py"), "--config", str(config), "--watch-parent", str(os.getpid())]
    with process.ServerProcess(cmd, work / "server.log", f"http://127.0.0.1:{port}/health",
                               env=subprocess_env()) as server:
        server.wait_ready(120)
        yield server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models(tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[tuple[process.ServerProcess, str]]:
    with guarded_server(tmp_path_factory.mktemp("guarded"), model_dir) as running:
        yield running


@pytest.fixture
def fakes() -> Iterator[FakeServers]:
    with FakeServers() as servers:
        yield servers


def good_body() -> bytes:
    return json.dumps(request_body([b64(make_jpeg())])).encode()


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def raw_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def read_reply(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


# -- connections ------------------------------------------------------------------------------------------------


def test_80_idle_connections_do_not_stop_a_request_or_health(guarded: tuple[process.ServerProcess, str]) -> None:
    _, base = guarded
    evicted_before = metric(base, 'serving_connections_closed_total{reason="evicted_idle"')
    idle = [raw_connection(port_of(base)) for _ in range(80)]
    try:
        idle[0].sendall(b"POST /imagenet/prediction HTTP/1.1\r\nHost: x\r\n")  # and a slow head among them
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").status_code == 200
            assert http.get("/metrics").status_code == 200
            reply = http.post(URL, content=good_body()).json()
        assert reply["err_no"] == 0, reply
    finally:
        for sock in idle:
            sock.close()
    assert metric(base, 'serving_connections_closed_total{reason="evicted_idle"') > evicted_before


def test_slow_head_and_trickled_body_are_cut_off(guarded: tuple[process.ServerProcess, str]) -> None:
    _, base = guarded
    with raw_connection(port_of(base)) as slow_head:
        slow_head.sendall(b"POST /imagenet/prediction HTTP/1.1\r\nHost: x\r\n")
        assert read_reply(slow_head) == b""  # closed after header_timeout_s, no request ran
    with raw_connection(port_of(base)) as trickle:
        trickle.sendall(b"POST /imagenet/prediction HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"key\"")
        reply = read_reply(trickle)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:200]
    answer = json.loads(body)
    assert answer["err_no"] == INPUT_PARAMS_ERROR and "body_timeout_s" in answer["err_msg"]
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200


def test_health_and_metrics_answer_at_the_request_limit(fakes: FakeServers) -> None:
    url, _, runtime = fakes.start(FakeBackend(delay=0.6), auto_batching_timeout=0, batch_size=1,
                                  top={"max_concurrent_requests": 2})
    replies: list[dict[str, object]] = []

    def post() -> None:
        with httpx.Client(timeout=30) as http:
            replies.append(http.post(f"{url}{URL}", content=good_body()).json())

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: runtime.active_requests == 2)  # the limit is reached
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{url}/health").status_code == 200
        assert http.get(f"{url}/metrics").status_code == 200
        busy = http.post(f"{url}{URL}", content=good_body())
    for thread in threads:
        thread.join(30)
    assert busy.status_code == 503 and busy.json()["err_no"] == CLOSED_ERROR, busy.text
    assert [r["err_no"] for r in replies] == [0, 0]


# -- disconnects and cancellation ---------------------------------------------------------------------------------


def test_disconnect_mid_body_is_one_line_and_no_model_call(guarded: tuple[process.ServerProcess, str]) -> None:
    server, base = guarded
    calls_before = metric(base, "serving_batch_size_count")
    gone_before = metric(base, "serving_client_disconnects_total")
    with raw_connection(port_of(base)) as sock:
        sock.sendall(b"POST /imagenet/prediction HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n"
                     + b'{"key": ["image"], "value": ["' + b"A" * 1000)
        time.sleep(0.2)
    assert wait_for(lambda: metric(base, "serving_client_disconnects_total") == gone_before + 1)
    assert metric(base, "serving_batch_size_count") == calls_before
    log = server.log_path.read_text()
    assert "Traceback" not in log and "10000" not in log
    assert '"outcome": "client_disconnected"' in log


def test_disconnect_while_queued_drops_the_work(fakes: FakeServers) -> None:
    url, backend, runtime = fakes.start(FakeBackend(first_delay=1.0), auto_batching_timeout=0, batch_size=1)
    first: list[dict[str, object]] = []
    blocker = threading.Thread(target=lambda: first.append(
        httpx.post(f"{url}{URL}", content=json.dumps(request_body([b64(make_jpeg(color=COLOURS[0]))])),
                   timeout=30).json()))
    blocker.start()
    assert wait_for(lambda: len(backend.sizes) == 1)  # the model is busy with the first request
    body = json.dumps(request_body([b64(make_jpeg(color=COLOURS[1]))])).encode()
    with raw_connection(port_of(url)) as sock:
        sock.sendall(f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert wait_for(lambda: runtime.batcher.queue_depth() == 1)  # queued behind the first
    blocker.join(30)
    assert first and first[0]["err_no"] == 0
    assert wait_for(lambda: metric(url, "serving_client_disconnects_total") == 1)
    assert runtime.batcher.queue_depth() == 0
    assert backend.sizes == [1]  # the abandoned request never reached the model


def test_request_timeout_cancels_the_queued_rest(fakes: FakeServers) -> None:
    url, backend, _ = fakes.start(FakeBackend(first_delay=1.2), timeout=400, auto_batching_timeout=0, batch_size=1)
    bodies = [json.dumps(request_body([b64(make_jpeg(color=COLOURS[i]))])) for i in range(2)]
    replies: list[dict[str, object]] = []
    threads = [threading.Thread(target=lambda b=b: replies.append(httpx.post(f"{url}{URL}", content=b,
                                                                              timeout=30).json()))
               for b in bodies]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(30)
    assert [r["err_no"] for r in replies] == [TIMEOUT, TIMEOUT], replies
    time.sleep(1.2)  # the first model call ends; the second request must not run after it
    assert backend.sizes == [1]


# -- images ---------------------------------------------------------------------------------------------------


def test_pixel_cap_per_request(fakes: FakeServers) -> None:
    url, backend, _ = fakes.start(FakeBackend(), auto_batching_timeout=0, max_request_pixels=2_000_000)
    big = b64(make_jpeg(1200, 1000))  # 1.2 M pixels
    with httpx.Client(timeout=30) as http:
        assert http.post(f"{url}{URL}", content=json.dumps(request_body([big]))).json()["err_no"] == 0
        # over the budget, a JPEG is draft-decoded at 1/2 (600x500) while its short side stays >= 256
        assert http.post(f"{url}{URL}", content=json.dumps(request_body([big, big]))).json()["err_no"] == 0
        refused = http.post(f"{url}{URL}", content=json.dumps(request_body([big] * 4))).json()
        png = b64(make_png(1200, 1000))  # PNG has no draft mode: over the budget it is refused
        refused_png = http.post(f"{url}{URL}", content=json.dumps(request_body([png, png]))).json()
        bomb = http.post(f"{url}{URL}", content=json.dumps(request_body([b64(make_png_bomb())]))).json()
    assert refused["err_no"] == INPUT_PARAMS_ERROR and "value[3]" in refused["err_msg"]
    assert "max_request_pixels = 2,000,000" in refused["err_msg"]
    assert refused_png["err_no"] == INPUT_PARAMS_ERROR and "value[1]" in refused_png["err_msg"]
    assert bomb["err_no"] == INPUT_PARAMS_ERROR and "64,000,000" in bomb["err_msg"]
    assert "178956970" not in bomb["err_msg"] and "178,956,970" not in bomb["err_msg"]
    assert backend.sizes == [1, 2]  # only the requests within the cap ran


def test_any_decoder_failure_is_bad_input(fakes: FakeServers, caplog: pytest.LogCaptureFixture) -> None:
    url, backend, _ = fakes.start(FakeBackend(), auto_batching_timeout=0)
    reply = httpx.post(f"{url}{URL}", content=json.dumps(request_body([b64(make_unsupported_dds())])),
                       timeout=30).json()
    assert reply["err_no"] == INPUT_PARAMS_ERROR and "value[0]" in reply["err_msg"], reply
    assert backend.sizes == []
    assert not [r for r in caplog.records if r.exc_info], "no traceback for bad input"


def test_err_msg_never_carries_heap_addresses(fakes: FakeServers) -> None:
    url, _, _ = fakes.start(FakeBackend(), auto_batching_timeout=0)
    reply = httpx.post(f"{url}{URL}", content=json.dumps(request_body([b64(b"\x00not an image at all")])),
                       timeout=30).json()
    assert reply["err_no"] == INPUT_PARAMS_ERROR
    assert not re.search(r"0x[0-9a-fA-F]{6,}", reply["err_msg"]), reply["err_msg"]


def test_non_utf8_label_list_names_the_file(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    for item in model_dir.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "label_list.txt").write_bytes(b"0 caf\xe9\n1 b\n2 c\n3 d\n")
    config = write_config(tmp_path / "c.yml", broken, http_port=process.free_port())
    result = subprocess.run([sys.executable, str(SERVING / "web_service.py"), "-c", str(config)], capture_output=True,
                            text=True, timeout=120, check=False, cwd=REPO, env=subprocess_env())
    assert result.returncode == 2, result.stderr
    assert f"{broken / 'label_list.txt'}: not UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


# -- shutdown ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_with_requests_in_flight_answers_them_within_the_grace_period(
        tmp_path: Path, model_dir: Path) -> None:
    with guarded_server(tmp_path, model_dir, body_timeout_s=30) as (server, base):
        waiting = raw_connection(port_of(base))  # in flight: its body never completes
        waiting.sendall(f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{{".encode())
        time.sleep(0.3)
        os.kill(server.pid, signal.SIGTERM)
        reply = read_reply(waiting)
        waiting.close()
        code = server.proc.wait(60)  # hang guard only; the verdict is the reply, the exit code and the log
    # The body would time out only after 30 s: a 503 naming the grace period is the grace cutoff's answer.
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), reply[:300]
    answer = json.loads(body)
    assert answer["err_no"] == CLOSED_ERROR and "graceful_shutdown_timeout_s" in answer["err_msg"]
    # A server still busy when the grace period runs out is hard-exited with code 1 and logs "exiting now".
    log = server.log_path.read_text()
    assert code == 0, (code, log[-2000:])
    assert "exiting now" not in log, log[-2000:]
    assert "server stopped" in log and "Traceback" not in log and "Internal Server Error" not in log


@pytest.mark.slow
def test_server_exits_when_its_watched_parent_dies(tmp_path: Path, model_dir: Path) -> None:
    port = process.free_port()
    config = write_config(tmp_path / "config.yml", model_dir, http_port=port)
    parent_code = (f"import subprocess, sys, time\n"
                   f"p = subprocess.Popen([sys.executable, {str(SERVING / 'web_service.py')!r}, '-c', {str(config)!r},"
                   f" '--watch-parent'])\nprint(p.pid, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True,
                              env=subprocess_env(), cwd=REPO, start_new_session=True)
    server_pid = None
    try:
        server_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        code, message = process.wait_ready(server_pid, f"http://127.0.0.1:{port}/health", None, 120)
        assert code == 0, message
        parent.kill()
        parent.wait(10)
        assert wait_for(lambda: not process.process_alive(server_pid), 20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(10)


def start_hard_exit_watchdog(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], Any, Any]:
    """A GracefulServer (grace 0.2 s, margin 0.1 s) told to shut down, with os._exit recorded instead of run."""
    import asyncio
    import types

    import uvicorn

    from mobilenetv3_tipc.serving import server as server_module

    exits: list[int] = []
    monkeypatch.setattr(server_module, "HARD_EXIT_MARGIN_S", 0.1)
    monkeypatch.setattr(server_module.os, "_exit", exits.append)
    runtime = types.SimpleNamespace(shutting_down=False, stop_by=None, cutoff=asyncio.Event())
    graceful = server_module.GracefulServer(uvicorn.Config(app=None), runtime, grace_s=0.2)
    graceful.begin_shutdown("test")
    return exits, runtime, graceful


def test_hard_exit_when_the_grace_period_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server still alive after its grace period (a model call that never returns) ends itself with exit 1."""
    exits, runtime, graceful = start_hard_exit_watchdog(monkeypatch)
    graceful.begin_shutdown("again")  # idempotent: one watchdog
    assert runtime.shutting_down and graceful.should_exit
    assert wait_for(lambda: exits == [1], 5)
    time.sleep(0.3)
    assert exits == [1]


def test_hard_exit_happens_even_when_the_log_stream_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A root handler whose stream is gone (a closed stderr) must not stop the hard exit."""
    import io
    import logging

    handler = logging.StreamHandler(io.StringIO())
    handler.stream = open(os.devnull, "w")  # noqa: SIM115 - closed on purpose: a stderr that went away
    handler.stream.close()
    monkeypatch.setattr(logging, "raiseExceptions", False)  # no "--- Logging error ---" noise from emit
    logging.getLogger().addHandler(handler)
    try:
        exits, _, _ = start_hard_exit_watchdog(monkeypatch)
        assert wait_for(lambda: exits == [1], 5)
    finally:
        logging.getLogger().removeHandler(handler)


def test_connection_caps_evict_the_longest_idle_and_refuse_only_when_all_are_busy() -> None:
    from mobilenetv3_tipc.serving.connections import ConnectionGuard, ConnectionLimits

    closed: list[str] = []

    class Conn:
        def __init__(self, host: str, last_active: float, busy: bool = False) -> None:
            self.client, self.last_active, self.busy = (host, 1), last_active, busy

        def close_for(self, reason: str) -> None:
            closed.append(f"{self.client[0]}@{self.last_active}:{reason}")

    guard = ConnectionGuard(ConnectionLimits(max_connections=3, max_connections_per_client=2))
    assert guard.admit(Conn("a", 1.0)) and guard.admit(Conn("a", 2.0, busy=True))
    assert guard.admit(Conn("a", 3.0))  # a's cap: the idle one (1.0) goes
    assert closed == ["a@1.0:evicted_idle"]
    assert guard.admit(Conn("b", 4.0)) and len(closed) == 1  # 3 open: at the total cap
    assert guard.admit(Conn("c", 5.0))  # total cap: the longest idle (a@3.0) goes, not the busy a@2.0
    assert closed[-1] == "a@3.0:evicted_idle"
    for conn in list(guard._all):
        conn.busy = True
    assert not guard.admit(Conn("d", 6.0))  # every slot busy: refused
    assert len(guard) == 3 and len(closed) == 2
