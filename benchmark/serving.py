"""Serving throughput and latency: start web_service.py on a free loopback port, load it, stop it by PID.

Uses the service's own tools: ``deploy/serving_python/server_control.py`` (wait for
``/health``, graceful stop) and ``deploy/serving_python/benchmark.py`` (bounded
closed-loop clients, p50/p99, batch sizes read from ``/metrics``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def measure_serving(model: Path, backend: str, image: bytes, levels: list[int], *, threads: int,
                    requests: int, duration: float, warmup: int, log_file: Path) -> dict[str, dict[str, object]]:
    """``{"c<level>": benchmark.py's row}`` for one backend (``paddle`` or ``onnxruntime``)."""
    from deploy.serving_python import benchmark as load
    from deploy.serving_python import server_control

    port = free_port()
    base = f"http://{HOST}:{port}"
    cmd = [sys.executable, str(ROOT / "deploy/serving_python/web_service.py"), "--log-level", "WARNING",
           "--opt", f"http_port={port}", f"http_host={HOST}", f"op.imagenet.local_service_conf.model_config={model}",
           f"op.imagenet.local_service_conf.backend={backend}",
           f"op.imagenet.local_service_conf.thread_num={threads}"]
    body = json.dumps({"key": ["image"], "value": [base64.b64encode(image).decode("ascii")], "logid": 1}).encode()
    results: dict[str, dict[str, object]] = {}
    with open(log_file, "w", encoding="utf-8") as log:
        server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        said = io.StringIO()
        with contextlib.redirect_stdout(said):
            ready = server_control.wait_ready(server.pid, f"{base}/health", str(log_file), timeout=180)
        if ready != 0:
            raise RuntimeError(f"the {backend} server did not become ready:\n{said.getvalue()[-2000:]}")
        for level in levels:
            server_cpu, client_cpu = process_cpu_seconds(server.pid), time.process_time()
            row = load.run_level(f"{base}/imagenet/prediction", body, level, requests, duration, warmup,
                                 30.0, f"{base}/metrics").as_dict()
            # Where the 2 cores went: the server and the load generator (this process) share them.
            sent = int(row["requests"]) + warmup
            server_after = process_cpu_seconds(server.pid)
            row["client_cpu_ms_per_request"] = round((time.process_time() - client_cpu) * 1000.0 / sent, 3)
            row["server_cpu_ms_per_request"] = (None if server_cpu is None or server_after is None
                                                else round((server_after - server_cpu) * 1000.0 / sent, 3))
            if row["errors"]:
                raise RuntimeError(f"{backend} server, concurrency {level}: {row['errors']} errors, "
                                   f"first: {row['first_error']}")
            logger.info("serving %s c=%d: %.1f img/s, p50 %.1f ms, p99 %.1f ms, CPU ms per request: "
                        "server %s, client %s", backend, level, row["images_per_s"], row["p50_ms"], row["p99_ms"],
                        row["server_cpu_ms_per_request"], row["client_cpu_ms_per_request"])
            results[f"c{level}"] = row
    finally:
        if server.poll() is None:
            with contextlib.redirect_stdout(io.StringIO()):
                server_control.stop(server.pid, None, 20)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return results
