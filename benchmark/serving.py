"""Serving throughput and latency: start web_service.py on a free loopback port, load it, stop it.

Uses the service's own tools: :mod:`mobilenetv3_tipc.serving.process` (start in its own
process group, wait for ``/health``, graceful stop of the group) and
:mod:`mobilenetv3_tipc.serving.loadgen` (bounded closed-loop clients, p50/p99, batch sizes
read from ``/metrics``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from pathlib import Path

from mobilenetv3_tipc.serving import loadgen, process

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


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
    """``{"c<level>": the load generator's row}`` for one backend (``paddle`` or ``onnxruntime``)."""
    port = process.free_port()
    base = f"http://{HOST}:{port}"
    opts = [f"op.imagenet.local_service_conf.thread_num={threads}"]
    body = json.dumps({"key": ["image"], "value": [base64.b64encode(image).decode("ascii")], "logid": 1}).encode()
    results: dict[str, dict[str, object]] = {}
    log_file.unlink(missing_ok=True)
    with process.serving(model, log_file, port, backend=backend, opts=opts, args=["--log-level", "WARNING"]) as server:
        for level in levels:
            server_cpu, client_cpu = process_cpu_seconds(server.pid), time.process_time()
            row = loadgen.run_level(f"{base}/imagenet/prediction", body, level, requests, duration, warmup,
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
    return results
