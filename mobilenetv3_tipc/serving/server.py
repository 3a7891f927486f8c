"""Serve MobileNetV3 with Paddle Serving's pipeline HTTP protocol (Starlette + uvicorn).

    python deploy/serving_python/web_service.py --config deploy/serving_python/config.yml \
        --opt op.imagenet.local_service_conf.devices="" --opt http_port=18080

Upstream spellings work too: ``-c config.yml -o key=value [key=value ...]``.
``POST http://127.0.0.1:<http_port>/imagenet/prediction`` with
``{"key": ["image"], "value": ["<base64>"], "logid": 10000}``; ``GET /health``,
``GET /metrics``. See ``deploy/serving_python/README.md``.

``--watch-parent [PID]``: shut down (as on SIGTERM) when process PID (default: the
parent at start-up) is gone, so a server started by a script that is killed does not
outlive it.

Exit codes: 0 stopped normally (SIGTERM/SIGINT/parent gone, drained within
``graceful_shutdown_timeout_s``), 1 failed (model load, port in use, or still busy when
the grace period ran out: hard exit), 2 bad config/arguments or missing model, 77 the
config needs a device this machine lacks (GPU without CUDA): ``SKIPPED: <reason>`` on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, add_flag, run_main
from mobilenetv3_tipc.serving.config import ConfigError, ServingConfig, load_config
from mobilenetv3_tipc.serving.process import CLEAN_STOP_MARK, process_alive

logger = logging.getLogger("web_service")
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serving_python" / "config.yml"
HARD_EXIT_MARGIN_S = 2.0  # after the grace period: time for the last log lines before os._exit
PARENT_POLL_S = 0.5


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG),
                        help="pipeline config.yml (default: %(default)s)")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override a config value by dotted path, e.g. "
                             "op.imagenet.local_service_conf.devices=\"\" (repeatable)")
    add_flag(parser, "log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
             help="default: %(default)s")
    add_flag(parser, "watch-parent", nargs="?", const=0, type=int, default=None, metavar="PID",
             help="shut down when process PID (default: the parent process) is gone")
    return parser


def bind_socket(host: str, port: int) -> socket.socket:
    """Listen before the model loads, so a busy port fails in a second (not after the load)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class GracefulServer(uvicorn.Server):
    """A uvicorn server with one shutdown path (signal or parent gone) and a grace period that holds.

    On shutdown: new predictions are answered err_no 3001 at once; in-flight ones may finish
    until shortly before ``grace_s`` runs out, then are answered err_no 3001 (protocol JSON, not
    uvicorn's plain-text 500); the batcher gets what is left of the period; a watchdog ends the
    process (exit 1) if it is still alive ``HARD_EXIT_MARGIN_S`` after the period. Returns
    normally (exit 0) instead of re-raising the signal as stock uvicorn does.
    """

    def __init__(self, config: uvicorn.Config, runtime: object, grace_s: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.grace_s = grace_s
        self.stop_reason: str | None = None
        self.deadline: float | None = None
        self.loop = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.begin_shutdown(f"received {signal.Signals(sig).name}")

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def begin_shutdown(self, reason: str) -> None:
        """From any thread: start the graceful shutdown (idempotent)."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        logger.info("%s: stopping (in-flight requests finish within %g s)", reason, self.grace_s)
        self.deadline = time.monotonic() + self.grace_s
        runtime = self.runtime
        runtime.shutting_down = True  # type: ignore[attr-defined]
        runtime.stop_by = self.deadline  # type: ignore[attr-defined]
        if self.loop is not None:
            cutoff_in = max(0.0, self.grace_s - min(1.0, self.grace_s / 4))
            self.loop.call_soon_threadsafe(self.loop.call_later, cutoff_in, runtime.cutoff.set)  # type: ignore
        threading.Thread(target=self._hard_exit_watchdog, name="hard-exit", daemon=True).start()
        self.should_exit = True

    def _hard_exit_watchdog(self) -> None:
        time.sleep(self.grace_s + HARD_EXIT_MARGIN_S)
        try:
            logger.error("still running %.0f s after %s (graceful_shutdown_timeout_s = %g): exiting now",
                         self.grace_s + HARD_EXIT_MARGIN_S, self.stop_reason, self.grace_s)
            for handler in logging.getLogger().handlers:
                handler.flush()
        except (OSError, ValueError):  # a closed or broken log stream must not keep the process alive
            pass
        finally:
            os._exit(EXIT_FAILED)


def watch_parent(server: GracefulServer, pid: int) -> None:
    """Shut ``server`` down when ``pid`` exits (a daemon thread polling every PARENT_POLL_S)."""
    original_ppid = os.getppid()

    def gone() -> bool:
        if pid:
            return not process_alive(pid)
        return os.getppid() != original_ppid  # re-parented: the parent died

    def loop() -> None:
        while server.stop_reason is None:
            if gone():
                server.begin_shutdown(f"the watched process {pid or original_ppid} is gone")
                return
            time.sleep(PARENT_POLL_S)

    threading.Thread(target=loop, name="watch-parent", daemon=True).start()


def serve(config: ServingConfig, sock: socket.socket, parent_pid: int | None = None) -> int:
    from mobilenetv3_tipc.serving.app import build_runtime, create_app
    from mobilenetv3_tipc.serving.connections import ConnectionGuard, ConnectionLimits, guarded_protocol

    runtime = build_runtime(config)
    app = create_app(runtime)
    closed = runtime.metrics.connections_closed
    guard = ConnectionGuard(
        ConnectionLimits(header_timeout_s=config.header_timeout_s, body_timeout_s=config.body_timeout_s,
                         max_connections=config.max_connections,
                         max_connections_per_client=config.max_connections_per_client),
        on_close=lambda reason: closed.labels(runtime.metrics.service, reason).inc(),
    )
    uv_config = uvicorn.Config(
        app, host=config.http_host, port=config.http_port, log_config=None, access_log=False,
        http=guarded_protocol(guard), limit_concurrency=None,
        timeout_graceful_shutdown=max(1, int(round(config.graceful_shutdown_timeout_s))),
        timeout_keep_alive=max(1, int(round(config.keep_alive_timeout_s))),
    )
    server = GracefulServer(uv_config, runtime, config.graceful_shutdown_timeout_s)
    if parent_pid is not None:
        watch_parent(server, parent_pid)
    logger.info("serving %s on http://%s:%d/%s/prediction (stop with SIGTERM)",
                config.service.name, config.http_host, config.http_port, config.service.name)
    try:
        server.run(sockets=[sock])
    finally:
        if not runtime.shutting_down:
            runtime.stop(config.graceful_shutdown_timeout_s)
    logger.info(CLEAN_STOP_MARK)
    return EXIT_OK


class ServerError(RuntimeError):
    """The server cannot run (e.g. its port is taken): exit 1."""


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.getLogger().setLevel(args.log_level)
    config = load_config(args.config, args.opt)
    for warning in config.warnings:
        logger.warning("%s", warning)
    try:
        sock = bind_socket(config.http_host, config.http_port)
    except OSError as exc:
        raise ServerError(f"cannot listen on {config.http_host}:{config.http_port}: {exc}") from None
    with contextlib.closing(sock):
        return serve(config, sock, args.watch_parent)


def run(argv: list[str] | None = None) -> int:
    """``main`` with the exit-code contract: 2 for a bad config, 77 (``SKIPPED:``) for a missing device, else 1."""
    return run_main(main, argv, usage_errors=(ConfigError,))
