"""Wait for a started server to become ready, or stop it gracefully, by PID.

    python deploy/serving_python/server_control.py wait-ready --pid PID \
        --url http://127.0.0.1:PORT/health [--server-log LOG] [--timeout 180]
    python deploy/serving_python/server_control.py stop --pid PID [--server-log LOG] [--timeout 20]

Used by ``test_tipc/test_serving.sh`` (which starts the server with ``&`` and
keeps ``$!``); works for any server process.

``wait-ready`` polls ``GET /health`` until it answers 200 (exit 0). If the
process exits first it reports why: when the server printed ``SKIPPED: <reason>``
(exit code 77: the device is not available) the same line is printed and the
exit code is 77, so the TIPC step is recorded as skipped; otherwise exit 1 with
the tail of the server log. Timeout: exit 1.

``stop`` sends SIGTERM, waits for the process to end (a zombie counts as ended),
sends SIGKILL after ``--timeout``. Exit 0 when the server stopped by itself
and, with ``--server-log``, logged a clean shutdown; 1 otherwise.

From Python, :func:`running_server` starts ``web_service.py`` on a free loopback
port, waits until it is ready, yields its base URL and stops it (by its PID) on exit;
``deploy/serving_python/benchmark.py``'s :func:`benchmark_model` measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

CLEAN_STOP_MARK = "server stopped"
EXIT_SKIPPED = 77
WEB_SERVICE = Path(__file__).with_name("web_service.py")
DEFAULT_CONFIG = Path(__file__).with_name("config.yml")
REPO_ROOT = Path(__file__).resolve().parents[2]

logger = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The server exited or did not become ready; ``exit_code`` 77 means the device is not available."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited child its parent has not reaped yet (zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def log_tail(path: str | None, lines: int = 30) -> str:
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def skip_reason(path: str | None) -> str | None:
    if not path:
        return None
    found = None
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            for line in log:
                if line.startswith("SKIPPED:"):
                    found = line.strip()
    except OSError:
        return None
    return found


def health_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(pid: int, url: str, server_log: str | None, timeout: float, interval: float = 0.25) -> int:
    start = time.monotonic()
    print(f"waiting for {url} (server pid {pid}, timeout {timeout:.0f} s)")
    while time.monotonic() - start < timeout:
        if health_ok(url):
            print(f"ready after {time.monotonic() - start:.1f} s")
            return 0
        if not process_alive(pid):
            reason = skip_reason(server_log)
            if reason:
                print(reason)
                return EXIT_SKIPPED
            print(f"the server (pid {pid}) exited before becoming ready; last lines of {server_log}:")
            print(log_tail(server_log))
            return 1
        time.sleep(interval)
    print(f"not ready after {timeout:.0f} s; last lines of {server_log}:")
    print(log_tail(server_log))
    return 1


def stop(pid: int, server_log: str | None, timeout: float) -> int:
    if not process_alive(pid):
        print(f"pid {pid} is not running")
        return 1
    os.kill(pid, signal.SIGTERM)
    start = time.monotonic()
    while process_alive(pid) and time.monotonic() - start < timeout:
        time.sleep(0.1)
    if process_alive(pid):
        print(f"pid {pid} still running {timeout:.0f} s after SIGTERM: sending SIGKILL")
        os.kill(pid, signal.SIGKILL)
        return 1
    print(f"pid {pid} stopped {time.monotonic() - start:.1f} s after SIGTERM")
    if server_log and CLEAN_STOP_MARK not in log_tail(server_log, 50):
        print(f"{server_log} does not show a clean shutdown ({CLEAN_STOP_MARK!r}); last lines:")
        print(log_tail(server_log))
        return 1
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(model_config: str | Path, *, backend: str = "paddle", opts: Sequence[str] = (),
                   port: int | None = None, config: str | Path = DEFAULT_CONFIG, log_path: str | Path | None = None,
                   ready_timeout_s: float = 180.0, stop_timeout_s: float = 20.0) -> Iterator[str]:
    """Start ``web_service.py`` on 127.0.0.1, yield its base URL once ready, stop it on exit.

    ``model_config``/``backend`` fill ``op.imagenet.local_service_conf``; ``opts`` are more
    ``--opt KEY=VALUE`` overrides of ``config`` (default: the shipped ``config.yml``). The
    server's output goes to ``log_path`` (a temporary file if ``None``). Raises
    :class:`ServerStartError` when it exits or is not ready within ``ready_timeout_s``
    (``exit_code`` 77: the configured device is not available). Only the started PID is
    stopped: SIGTERM, then SIGKILL after ``stop_timeout_s``.
    """
    port = free_port() if port is None else port
    prefix = "op.imagenet.local_service_conf"
    cmd = [sys.executable, str(WEB_SERVICE), "--config", str(config), "--opt", f"http_port={port}",
           "http_host=127.0.0.1", f"{prefix}.model_config={model_config}", f"{prefix}.backend={backend}", *opts]
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serving_"))) / "server.log"
        log_path = Path(log_path)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        try:
            url = f"http://127.0.0.1:{port}"
            with contextlib.redirect_stdout(sys.stderr):  # wait_ready reports progress on stdout
                code = wait_ready(proc.pid, f"{url}/health", str(log_path), ready_timeout_s)
            if code != 0:
                raise ServerStartError(f"the server did not start (exit code {proc.poll()}); last lines of "
                                       f"{log_path}:\n{log_tail(str(log_path))}", code)
            logger.info("server pid %d ready at %s", proc.pid, url)
            yield url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(stop_timeout_s)
                except subprocess.TimeoutExpired:
                    logger.warning("server pid %d still running %.0f s after SIGTERM: killing it", proc.pid,
                                   stop_timeout_s)
                    proc.kill()
                    proc.wait(10)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    ready = sub.add_parser("wait-ready", help="poll /health until 200, the process exits, or the timeout")
    ready.add_argument("--pid", type=int, required=True)
    ready.add_argument("--url", required=True, help="health URL, e.g. http://127.0.0.1:18080/health")
    ready.add_argument("--server-log", default=None, help="the server's log (for SKIPPED: lines and errors)")
    ready.add_argument("--timeout", type=float, default=180.0, help="seconds (default: 180)")
    halt = sub.add_parser("stop", help="SIGTERM, wait, SIGKILL after --timeout")
    halt.add_argument("--pid", type=int, required=True)
    halt.add_argument("--server-log", default=None, help="check the log shows a clean shutdown")
    halt.add_argument("--timeout", type=float, default=20.0, help="seconds before SIGKILL (default: 20)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.action == "wait-ready":
        return wait_ready(args.pid, args.url, args.server_log, args.timeout)
    return stop(args.pid, args.server_log, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
