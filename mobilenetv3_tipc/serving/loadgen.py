"""Bounded HTTP load generator for the pipeline service: throughput and latency percentiles.

    python -m mobilenetv3_tipc.serving.loadgen --url http://127.0.0.1:18080/imagenet/prediction \
        --image images/demo.jpg --concurrency 1,2,4,8 --requests 200 --duration 30

For each concurrency level, that many client threads (one keep-alive connection
each) send the same request until ``--requests`` requests were sent or
``--duration`` seconds passed, whichever comes first; ``--warmup`` requests are
sent before each level and not counted. Reports requests/s, images/s, p50/p90/p99
latency, errors (HTTP errors or ``err_no != 0``) and, read from the server's
``/metrics``, how many images each model call took on average (dynamic batching).
Targets loopback only unless ``--allow-remote``; counts and durations are capped.

From Python (``benchmark/serving.py``): :func:`run_benchmark` measures a running server and
returns ``{"url", "image", "images_per_request", "levels": [row, ...]}``, one row per
concurrency level as :meth:`LevelResult.as_dict` describes.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MAX_REQUESTS = 20_000
MAX_DURATION_S = 600.0
MAX_CONCURRENCY = 128
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "images" / "demo.jpg"
DEFAULT_LEVELS = (1, 4, 8, 16)


@dataclass
class LevelResult:
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    images_per_request: int = 1
    mean_batch: float | None = None

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies)
        if not data:
            return float("nan")
        rank = min(len(data) - 1, max(0, int(round(q / 100.0 * len(data) + 0.5)) - 1))
        return data[rank] * 1000.0

    def as_dict(self) -> dict[str, object]:
        """``concurrency``, ``requests`` (sent), ``errors``, ``seconds``, ``requests_per_s`` and
        ``images_per_s`` (successful ones), ``p50_ms``/``p90_ms``/``p99_ms``/``max_ms`` (successful
        requests' latency as the client saw it), ``mean_images_per_model_call`` (from the server's
        ``/metrics``; ``None`` if unavailable) and ``first_error`` (``""`` if none)."""
        ok = len(self.latencies)
        return {
            "concurrency": self.concurrency, "requests": ok + self.errors, "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(ok / self.seconds, 2) if self.seconds else 0.0,
            "images_per_s": round(ok * self.images_per_request / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(self.percentile(50), 2), "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies) * 1000.0, 2) if self.latencies else float("nan"),
            "mean_images_per_model_call": None if self.mean_batch is None else round(self.mean_batch, 2),
            "first_error": self.first_error,
        }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:18080/imagenet/prediction", help="default: %(default)s")
    parser.add_argument("--image", default="images/demo.jpg", help="image sent in every request")
    parser.add_argument("--images-per-request", type=int, default=1, help="key/value pairs per request (default 1)")
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=200, help=f"per level, at most {MAX_REQUESTS} (default 200)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help=f"seconds per level, at most {MAX_DURATION_S:.0f} (default 30)")
    parser.add_argument("--warmup", type=int, default=10, help="uncounted requests before each level (default 10)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")
    return parser


class Client:
    def __init__(self, url: str, body: bytes, timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.body, self.timeout = body, timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self) -> tuple[bool, str]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", self.path, body=self.body, headers={"Content-Type": "application/json"})
                reply = self.conn.getresponse()
                data = reply.read()
            except (http.client.HTTPException, OSError) as exc:
                self.conn.close()
                self.conn = None
                if attempt:
                    return False, f"{type(exc).__name__}: {exc}"
                continue
            if reply.status != 200:
                return False, f"HTTP {reply.status}: {data[:200]!r}"
            try:
                payload = json.loads(data)
            except ValueError:
                return False, f"not JSON: {data[:200]!r}"
            if payload.get("err_no") != 0:
                return False, f"err_no {payload.get('err_no')}: {payload.get('err_msg')}"
            return True, ""
        return False, "unreachable"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def scrape_batches(metrics_url: str) -> tuple[float, float] | None:
    """(sum, count) of serving_batch_size from /metrics, or None if unavailable."""
    parts = urlsplit(metrics_url)
    try:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
        conn.request("GET", parts.path)
        text = conn.getresponse().read().decode("utf-8", "replace")
        conn.close()
    except (http.client.HTTPException, OSError):
        return None
    values = {}
    for name in ("serving_batch_size_sum", "serving_batch_size_count"):
        match = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.eE+-]+)$", text, re.MULTILINE)
        if not match:
            return None
        values[name] = float(match.group(1))
    return values["serving_batch_size_sum"], values["serving_batch_size_count"]


def run_level(url: str, body: bytes, concurrency: int, requests: int, duration: float, warmup: int,
              timeout: float, metrics_url: str) -> LevelResult:
    result = LevelResult(concurrency)
    warm = Client(url, body, timeout)
    for _ in range(warmup):
        warm.post()
    warm.close()
    lock = threading.Lock()
    tickets = iter(range(requests))  # one per request to send, shared by the client threads
    before = scrape_batches(metrics_url)
    start = time.perf_counter()
    stop_at = start + duration

    def worker() -> None:
        client = Client(url, body, timeout)
        try:
            while time.perf_counter() < stop_at:
                with lock:
                    if next(tickets, None) is None:
                        return
                t0 = time.perf_counter()
                ok, error = client.post()
                elapsed = time.perf_counter() - t0
                with lock:
                    if ok:
                        result.latencies.append(elapsed)
                    else:
                        result.errors += 1
                        result.first_error = result.first_error or error
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    result.seconds = time.perf_counter() - start
    after = scrape_batches(metrics_url)
    if before and after and after[1] > before[1]:
        result.mean_batch = (after[0] - before[0]) / (after[1] - before[1])
    return result


def request_body(image: Path, images_per_request: int = 1) -> bytes:
    """The pipeline request the load generator sends: ``image`` base64-encoded, repeated."""
    encoded = base64.b64encode(image.read_bytes()).decode("ascii")
    count = max(1, images_per_request)
    return json.dumps({"key": ["image"] * count, "value": [encoded] * count, "logid": 1}).encode()


def run_benchmark(url: str, image: str | Path = DEFAULT_IMAGE, levels: Sequence[int] = DEFAULT_LEVELS, *,
                  requests: int = 200, duration_s: float = 10.0, warmup: int = 10, timeout_s: float = 30.0,
                  images_per_request: int = 1, allow_remote: bool = False,
                  on_level: Callable[[dict[str, object]], None] | None = None) -> dict[str, object]:
    """Load-test the prediction ``url`` of a running server at each concurrency level in turn.

    Each level sends ``warmup`` uncounted requests, then ``concurrency`` client threads (one
    keep-alive connection each) send until ``requests`` were sent or ``duration_s`` passed
    (capped at MAX_REQUESTS / MAX_DURATION_S). Raises ``ValueError`` for a non-loopback URL
    (unless ``allow_remote``), a level outside 1..MAX_CONCURRENCY or a missing image.
    """
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK and not allow_remote:
        raise ValueError(f"refusing to load-test {parts.hostname}: loopback only unless allow_remote")
    if not levels or any(not 1 <= c <= MAX_CONCURRENCY for c in levels):
        raise ValueError(f"concurrency levels must be in 1..{MAX_CONCURRENCY}, got {list(levels)}")
    image = Path(image)
    if not image.is_file():
        raise ValueError(f"{image}: no such image")
    body = request_body(image, images_per_request)
    requests = max(1, min(requests, MAX_REQUESTS))
    duration_s = max(0.1, min(duration_s, MAX_DURATION_S))
    metrics_url = f"{parts.scheme}://{parts.netloc}/metrics"
    rows = []
    for level in levels:
        res = run_level(url, body, level, requests, duration_s, warmup, timeout_s, metrics_url)
        res.images_per_request = max(1, images_per_request)
        rows.append(res.as_dict())
        if on_level is not None:
            on_level(rows[-1])
    return {"url": url, "image": str(image), "images_per_request": max(1, images_per_request), "levels": rows}


HEADER = (f"{'conc':>4} {'reqs':>6} {'errs':>5} {'req/s':>8} {'img/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
          f"{'p99 ms':>8} {'max ms':>8} {'img/call':>8}")


def format_row(row: dict[str, object]) -> str:
    batch = row["mean_images_per_model_call"]
    line = (f"{row['concurrency']:>4} {row['requests']:>6} {row['errors']:>5} {row['requests_per_s']:>8.1f} "
            f"{row['images_per_s']:>8.1f} {row['p50_ms']:>8.1f} {row['p90_ms']:>8.1f} {row['p99_ms']:>8.1f} "
            f"{row['max_ms']:>8.1f} {'-' if batch is None else f'{batch:.2f}':>8}")
    return line + (f"\n     first error: {row['first_error']}" if row["errors"] else "")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        print(f"--concurrency: expected comma-separated ints, got {args.concurrency!r}", file=sys.stderr)
        return 2
    print(f"{args.url}: {args.image} x{max(1, args.images_per_request)} per request; at most {args.requests} "
          f"requests or {args.duration:.0f} s per level")
    print(HEADER)
    try:
        result = run_benchmark(args.url, args.image, levels, requests=args.requests, duration_s=args.duration,
                               warmup=args.warmup, timeout_s=args.timeout,
                               images_per_request=args.images_per_request, allow_remote=args.allow_remote,
                               on_level=lambda row: print(format_row(row), flush=True))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if any(row["errors"] for row in result["levels"]) else 0


if __name__ == "__main__":
    sys.exit(main())
