"""Serve MobileNetV3 with Paddle Serving's pipeline HTTP protocol (FastAPI + uvicorn).

    python deploy/serving_python/web_service.py --config deploy/serving_python/config.yml \
        --opt op.imagenet.local_service_conf.devices="" --opt http_port=18080

Upstream spellings work too: ``-c config.yml -o key=value [key=value ...]``.
``POST http://127.0.0.1:<http_port>/imagenet/prediction`` with
``{"key": ["image"], "value": ["<base64>"], "logid": 10000}``; ``GET /health``,
``GET /metrics``. See ``deploy/serving_python/README.md``.

Exit codes (``deploy/options.py``): 0 stopped normally (SIGTERM/SIGINT), 1 failed
(model load, port in use), 2 bad config/arguments or missing model, 77 the config
needs a device this machine lacks (GPU without CUDA): ``SKIPPED: <reason>`` on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.options import EXIT_FAILED, EXIT_OK, EXIT_UNSUPPORTED, EXIT_USAGE, UnsupportedConfig  # noqa: E402
from deploy.serving_python.serving_config import (  # noqa: E402
    ConfigError,
    DeviceUnavailable,
    ServingConfig,
    load_config,
)

logger = logging.getLogger("web_service")
DEFAULT_CONFIG = Path(__file__).with_name("config.yml")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG),
                        help="pipeline config.yml (default: %(default)s)")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override a config value by dotted path, e.g. "
                             "op.imagenet.local_service_conf.devices=\"\" (repeatable)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="default: %(default)s")
    return parser


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket before loading the model, so a busy port fails fast."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP;
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class GracefulServer(uvicorn.Server):
    """A uvicorn server that drains and then *returns* on SIGTERM/SIGINT, so ``main`` exits 0.

    Stock uvicorn re-raises the signal after its graceful shutdown, so the process
    would die with status 143 and a supervisor (or the TIPC stop step) could not
    tell a clean stop from a crash.
    """

    stop_signal: int | None = None

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
        if self.stop_signal is None:
            logger.info("received %s: stopping (in-flight requests finish first)", signal.Signals(sig).name)
        self.stop_signal = sig
        self.handle_exit(sig, frame)


def serve(config: ServingConfig, sock: socket.socket) -> int:
    from deploy.serving_python.app import build_runtime, create_app

    runtime = build_runtime(config)
    app = create_app(runtime)
    uv_config = uvicorn.Config(
        app, host=config.http_host, port=config.http_port, log_config=None, access_log=False,
        limit_concurrency=config.max_concurrent_requests,
        timeout_graceful_shutdown=max(1, int(round(config.graceful_shutdown_timeout_s))),
        timeout_keep_alive=15,
    )
    server = GracefulServer(uv_config)
    logger.info("serving %s on http://%s:%d/%s/prediction (stop with SIGTERM)",
                config.op.name, config.http_host, config.http_port, config.op.name)
    try:
        server.run(sockets=[sock])
    finally:
        if not runtime.shutting_down:
            runtime.stop(config.graceful_shutdown_timeout_s)
    logger.info("server stopped")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format=LOG_FORMAT, force=True)
    try:
        config = load_config(args.config, args.opt)
    except DeviceUnavailable as exc:
        print(f"SKIPPED: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    for warning in config.warnings:
        logger.warning("%s", warning)
    try:
        sock = bind_socket(config.http_host, config.http_port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", config.http_host, config.http_port, exc)
        return EXIT_FAILED
    try:
        return serve(config, sock)
    except UnsupportedConfig as exc:
        print(f"SKIPPED: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - any model-loading failure is reported as exit 1
        logger.error("the service failed to start: %s: %s", type(exc).__name__, exc)
        return EXIT_FAILED
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
