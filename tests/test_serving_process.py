"""mobilenetv3_tipc.serving.process: start in a process group, wait for readiness, stop by group.

Figures only (no timing assertions): the load generator's rows have every field, counts are
bounded, and every server process is gone afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenetv3_tipc.serving import process
from mobilenetv3_tipc.serving.loadgen import run_benchmark
from tests.fixtures.serving import DEMO_JPG, REPO, subprocess_env, tiny_models

ROW_KEYS = {"concurrency", "requests", "errors", "seconds", "requests_per_s", "images_per_s", "p50_ms", "p90_ms",
            "p99_ms", "max_ms", "mean_images_per_model_call", "first_error"}


def run_process_cli(*args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mobilenetv3_tipc.serving.process", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=REPO, env=subprocess_env())


def test_serving_measures_and_stops_its_process_group(tmp_path_factory: pytest.TempPathFactory,
                                                      tmp_path: Path) -> None:
    model_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    log = tmp_path / "server.log"
    with process.serving(model_dir, log, process.free_port(), opts=["op.imagenet.batch_size=4"],
                         env=subprocess_env()) as server:
        assert os.getpgid(server.pid) == server.pid  # its own process group
        url = server.health_url.rsplit("/", 1)[0]
        result = run_benchmark(f"{url}/imagenet/prediction", DEMO_JPG, [1, 2], requests=6, warmup=1)
        port = int(url.rsplit(":", 1)[1])
    for row in result["levels"]:
        assert set(row) == ROW_KEYS
        assert row["requests"] == 6 and row["errors"] == 0 and row["first_error"] == ""
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert not process.process_alive(server.pid)
    assert "server stopped" in log.read_text()  # stopped with SIGTERM and drained, not killed
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_failed_start_is_reported(tmp_path: Path) -> None:
    with pytest.raises(process.ServerStartError) as info, \
            process.serving(tmp_path / "no_model", tmp_path / "server.log", process.free_port(),
                            ready_timeout_s=60, env=subprocess_env()):
        pytest.fail("a server without a model must not become ready")
    assert info.value.exit_code == 1 and "model_config" in str(info.value)


def test_cli_start_wait_stop(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """What a shell chain does: start (own group, PID on stdout), wait-ready, stop with a clean-stop check."""
    model_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    port = process.free_port()
    log = tmp_path / "server.log"
    cmd = process.web_service_command(model_dir, port, watch_parent=False)
    started = run_process_cli("start", "--log", str(log), "--", *cmd)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.strip())
    try:
        ready = run_process_cli("wait-ready", "--pid", str(pid), "--url", f"http://127.0.0.1:{port}/health",
                                "--server-log", str(log))
        assert ready.returncode == 0, ready.stdout
        stopped = run_process_cli("stop", "--pid", str(pid), "--server-log", str(log), "--timeout", "20")
        assert stopped.returncode == 0, stopped.stdout
    finally:
        if process.process_alive(pid):
            os.killpg(pid, 9)
    assert not process.process_alive(pid)
    assert run_process_cli("stop", "--pid", str(pid)).returncode == 1  # not running any more


def test_cli_start_reports_a_skip(tmp_path: Path) -> None:
    """A server that exits 77 (SKIPPED: ...) makes start --ready-url exit 77 with the reason."""
    script = tmp_path / "skip.py"
    script.write_text("import sys\nprint('SKIPPED: no such device here', file=sys.stderr)\nsys.exit(77)\n")
    result = run_process_cli("start", "--log", str(tmp_path / "log"), "--ready-url",
                             f"http://127.0.0.1:{process.free_port()}/health", "--timeout", "60", "--",
                             sys.executable, str(script))
    assert result.returncode == 77 and "SKIPPED: no such device here" in result.stderr


def test_run_benchmark_refuses_remote_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        run_benchmark("http://192.0.2.1:18080/imagenet/prediction", DEMO_JPG, [1])
    with pytest.raises(ValueError, match="concurrency levels"):
        run_benchmark("http://127.0.0.1:1/imagenet/prediction", DEMO_JPG, [0])
