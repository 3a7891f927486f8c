"""Serving throughput and latency: start web_service.py on a free loopback port, load it, stop it.

:func:`measure_side_by_side` does the same for our service and real Paddle Serving 0.9 (its
Python 3.9 env, :mod:`mobilenetv3_tipc.serving.paddle_serving_env`) together, and the ratio.

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
import subprocess
import sys
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


def measure_side_by_side(model: Path, image: bytes, levels: list[int], *, threads: int, requests: int,
                         duration: float, warmup: int, out: Path) -> dict[str, object]:
    """Our service and real Paddle Serving 0.9, same export, same image, same machine, level by level.

    Both servers are up for the whole run and measured in turn at each concurrency (ours, then
    real), so a load change on the shared machine hits both alike. Returns ``{"ours": {c1: row},
    "paddle_serving": {...}, "ratio": {c1: {"requests_per_s": ours/real, "p50": real/ours,
    "p99": ...}}}`` or ``{"skipped": reason}`` when the Python 3.9 env is unavailable.
    """
    from mobilenetv3_tipc.serving import paddle_serving_env, paddle_serving_process

    try:
        python = paddle_serving_env.ensure_env()
    except paddle_serving_env.EnvUnavailable as exc:
        logger.info("real Paddle Serving side by side: skipped (%s)", exc)
        return {"skipped": f"real Paddle Serving: {exc}"}
    work = out / "paddle_serving"
    convert = subprocess.run([sys.executable, str(process.REPO_ROOT / "tools" / "export_serving_model.py"),
                              "--dirname", str(model), "--serving_server", str(work / "serving_server"),
                              "--serving_client", str(work / "serving_client")],
                             capture_output=True, text=True, timeout=600, check=False)
    if convert.returncode != 0:
        raise RuntimeError(f"tools/export_serving_model.py failed (exit {convert.returncode}):\n"
                           f"{convert.stderr[-3000:]}")
    body = json.dumps({"key": ["image"], "value": [base64.b64encode(image).decode("ascii")], "logid": 1}).encode()
    port, real_port, rpc_port = process.free_port(), process.free_port(), process.free_port()
    opts = [f"op.imagenet.local_service_conf.thread_num={threads}"]
    rows: dict[str, dict[str, object]] = {"ours": {}, "paddle_serving": {}}
    with process.serving(model, out / "server_ours_side_by_side.log", port, opts=opts,
                         args=["--log-level", "WARNING"]), \
            paddle_serving_process.running(python, work / "serving_server", work, real_port, rpc_port) as real:
        urls = {"ours": (f"http://{HOST}:{port}/imagenet/prediction", f"http://{HOST}:{port}/metrics"),
                "paddle_serving": (real.url, "")}
        for level in levels:
            for name, (url, metrics) in urls.items():
                row = loadgen.run_level(url, body, level, requests, duration, warmup, 30.0, metrics).as_dict()
                if row["errors"]:
                    raise RuntimeError(f"{name} server, concurrency {level}: {row['errors']} errors, "
                                       f"first: {row['first_error']}")
                logger.info("side by side %s c=%d: %.1f req/s, p50 %.1f ms, p99 %.1f ms", name, level,
                            row["requests_per_s"], row["p50_ms"], row["p99_ms"])
                rows[name][f"c{level}"] = row
    ratio = {}
    for key, ours in rows["ours"].items():
        theirs = rows["paddle_serving"][key]
        ratio[key] = {"requests_per_s": _ratio(ours["requests_per_s"], theirs["requests_per_s"]),
                      "p50_ms": _ratio(theirs["p50_ms"], ours["p50_ms"]),
                      "p99_ms": _ratio(theirs["p99_ms"], ours["p99_ms"])}
    return {**rows, "ratio": ratio, "paddle_serving_env": str(python)}


def _ratio(numerator: object, denominator: object) -> float | None:
    return round(float(numerator) / float(denominator), 2) if denominator else None  # type: ignore[arg-type]


def format_side_by_side(figures: dict[str, object]) -> str:
    """The side-by-side table: requests/s and p50/p99 of both servers and ours/real per concurrency."""
    if "skipped" in figures:
        return f"serving side by side: skipped ({figures['skipped']})"
    lines = ["serving side by side (same export, same image): ours (Starlette, 3.11) vs real Paddle Serving 0.9 (3.9)",
             f"{'concurrency':>11}  {'ours req/s':>10}  {'real req/s':>10}  {'ratio':>6}  "
             f"{'ours p50/p99 ms':>16}  {'real p50/p99 ms':>16}"]
    for key, ratio in figures["ratio"].items():  # type: ignore[union-attr]
        ours, real = figures["ours"][key], figures["paddle_serving"][key]  # type: ignore[index]
        lines.append(f"{key[1:]:>11}  {ours['requests_per_s']:>10.1f}  {real['requests_per_s']:>10.1f}  "
                     f"{ratio['requests_per_s']:>5.2f}x  {ours['p50_ms']:>7.1f}/{ours['p99_ms']:<8.1f}  "
                     f"{real['p50_ms']:>7.1f}/{real['p99_ms']:<8.1f}")
    return "\n".join(lines)
