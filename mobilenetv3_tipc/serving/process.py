"""Start a server in its own process group, wait until it is ready, stop it by its group: the one place.

Used by ``benchmark/serving.py``, the tests' server fixture and, through the command
line, the shell chains::

    python -m mobilenetv3_tipc.serving.process start --log LOG [--ready-url URL] [--timeout 180] -- CMD ...
    python -m mobilenetv3_tipc.serving.process wait-ready --pid PID --url URL [--server-log LOG] [--timeout 180]
    python -m mobilenetv3_tipc.serving.process stop --pid PID [--server-log LOG] [--timeout 20]

``start`` runs ``CMD`` in a new session (so its process group id is its PID), output to
``LOG``, and prints the PID on stdout; with ``--ready-url`` it then waits as ``wait-ready``
does (a failed start is stopped before returning). Add ``--watch-parent PID`` to a
``web_service.py`` command so the server exits when the calling script dies.

``wait-ready`` polls the URL (``GET /health``) until it answers 200 (exit 0), with a short
interval that grows to 0.5 s. If the process exits first: when its log has a
``SKIPPED: <reason>`` line (exit code 77: the device is not available) the line is printed
and the exit code is 77, otherwise exit 1 with the tail of the log. Timeout: exit 1.

``stop`` sends SIGTERM to the process group the PID leads (to the PID alone when it leads
none), waits for the process to end (a zombie counts as ended), then SIGKILLs the group
after ``--timeout``. Exit 0 when the server stopped by itself and, with ``--server-log``,
logged a clean shutdown; 1 otherwise.
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
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, EXIT_UNSUPPORTED, add_flag

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_SERVICE = REPO_ROOT / "deploy" / "serving_python" / "web_service.py"
HOST = "127.0.0.1"
CLEAN_STOP_MARK = "server stopped"  # the server's last log line after a graceful stop


class ServerStartError(RuntimeError):
    """The server exited or did not become ready; ``exit_code`` 77 means the device is not available."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code



def live_processes(*, group: int | None = None, session: int | None = None) -> list[int]:
    """PIDs of the live (not zombie) processes in process group ``group`` or session ``session``, from ``/proc``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) < 4 or fields[0] in ("Z", "X"):
            continue
        if (group is not None and int(fields[2]) == group) or (session is not None and int(fields[3]) == session):
            found.append(int(entry.name))
    return sorted(found)


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
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def log_tail(path: str | Path | None, lines: int = 30) -> str:
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def skip_reason(path: str | Path | None) -> str | None:
    found = None
    for line in log_tail(path, 10_000).splitlines():
        if line.startswith("SKIPPED:"):
            found = line.strip()
    return found


def health_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(cmd: Sequence[str], log_path: str | Path, cwd: str | Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Run ``cmd`` in a new session (its own process group), stdout and stderr appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)


def wait_ready(pid: int, url: str, server_log: str | Path | None, timeout: float) -> tuple[int, str]:
    """``(exit code, message)``: 0 once ``url`` answers 200, 77 when the server skipped, 1 otherwise."""
    begin = time.monotonic()
    interval = 0.02
    while time.monotonic() - begin < timeout:
        if health_ok(url):
            return EXIT_OK, f"ready after {time.monotonic() - begin:.1f} s"
        if not process_alive(pid):
            reason = skip_reason(server_log)
            if reason:
                return EXIT_UNSUPPORTED, reason
            return EXIT_FAILED, (f"the server (pid {pid}) exited before becoming ready; last lines of "
                                 f"{server_log}:\n{log_tail(server_log)}")
        time.sleep(interval)
        interval = min(0.5, interval * 1.5)
    return EXIT_FAILED, f"not ready after {timeout:.0f} s; last lines of {server_log}:\n{log_tail(server_log)}"


def _signal_group(pid: int, sig: int) -> None:
    """``sig`` to the process group ``pid`` leads, or to ``pid`` alone when it leads none."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(pid: int, timeout: float, server_log: str | Path | None = None) -> tuple[int, str]:
    """SIGTERM the server's group, wait up to ``timeout`` s, then SIGKILL it: ``(exit code, message)``."""
    if not process_alive(pid):
        return EXIT_FAILED, f"pid {pid} is not running"
    _signal_group(pid, signal.SIGTERM)
    begin = time.monotonic()
    interval = 0.02
    while process_alive(pid) and time.monotonic() - begin < timeout:
        time.sleep(interval)
        interval = min(0.2, interval * 1.5)
    if process_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        return EXIT_FAILED, f"pid {pid} still running {timeout:.0f} s after SIGTERM: sent SIGKILL to its group"
    message = f"pid {pid} stopped {time.monotonic() - begin:.1f} s after SIGTERM"
    if server_log and CLEAN_STOP_MARK not in log_tail(server_log, 50):
        return EXIT_FAILED, (f"{message}, but {server_log} does not show a clean shutdown ({CLEAN_STOP_MARK!r}); "
                             f"last lines:\n{log_tail(server_log)}")
    return EXIT_OK, message


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def web_service_command(model_config: str | Path, port: int, *, backend: str = "paddle", opts: Sequence[str] = (),
                        config: str | Path | None = None, args: Sequence[str] = (),
                        watch_parent: bool = True) -> list[str]:
    """The ``web_service.py`` command serving ``model_config`` on 127.0.0.1:``port`` (``args``: more flags)."""
    prefix = "op.imagenet.local_service_conf"
    cmd = [sys.executable, str(WEB_SERVICE), *args]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += ["--opt", f"http_port={port}", f"http_host={HOST}", f"{prefix}.model_config={model_config}",
            f"{prefix}.backend={backend}", *opts]
    if watch_parent:
        cmd += ["--watch-parent", str(os.getpid())]
    return cmd


class ServerProcess:
    """A server started by :func:`start`; a context manager that stops its group on exit."""

    def __init__(self, cmd: Sequence[str], log_path: str | Path, health_url: str, *, cwd: str | Path = REPO_ROOT,
                 env: dict[str, str] | None = None) -> None:
        self.cmd, self.log_path, self.health_url = list(cmd), Path(log_path), health_url
        self.proc = start(self.cmd, self.log_path, cwd=cwd, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 180.0) -> None:
        code, message = wait_ready(self.pid, self.health_url, self.log_path, timeout)
        if code != EXIT_OK:
            self.stop()
            raise ServerStartError(f"the server did not start (exit code {self.proc.poll()}): {message}", code)
        logger.info("server pid %d: %s", self.pid, message)

    def stop(self, timeout: float = 20.0) -> tuple[int, str]:
        """Stop the group (if still running) and reap the process."""
        result = (EXIT_OK, "already stopped") if self.proc.poll() is not None else stop(self.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        return result

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(model_config: str | Path, log_path: str | Path, port: int, *, backend: str = "paddle",
            opts: Sequence[str] = (), config: str | Path | None = None, args: Sequence[str] = (),
            ready_timeout_s: float = 180.0, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``web_service.py`` for ``model_config`` on 127.0.0.1:``port``, ready; stopped by its group on exit.

    Raises :class:`ServerStartError` when it does not become ready (``exit_code`` 77: device not available).
    """
    cmd = web_service_command(model_config, port, backend=backend, opts=opts, config=config, args=args)
    with ServerProcess(cmd, log_path, f"http://{HOST}:{port}/health", env=env) as server:
        server.wait_ready(ready_timeout_s)
        yield server


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mobilenetv3_tipc.serving.process", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    begin = sub.add_parser("start", help="start CMD in its own process group; print its PID")
    begin.add_argument("--log", required=True, help="the server's output goes here (appended)")
    add_flag(begin, "ready-url", default=None, help="then wait until this URL answers 200")
    begin.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for --ready-url (default 180)")
    begin.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the server command")
    ready = sub.add_parser("wait-ready", help="poll the health URL until 200, the process exits, or the timeout")
    ready.add_argument("--pid", type=int, required=True)
    ready.add_argument("--url", required=True, help="health URL, e.g. http://127.0.0.1:18080/health")
    add_flag(ready, "server-log", default=None, help="the server's log (for SKIPPED: lines and errors)")
    ready.add_argument("--timeout", type=float, default=180.0, help="seconds (default: 180)")
    halt = sub.add_parser("stop", help="SIGTERM the process group, wait, SIGKILL after --timeout")
    halt.add_argument("--pid", type=int, required=True)
    add_flag(halt, "server-log", default=None, help="check the log shows a clean shutdown")
    halt.add_argument("--timeout", type=float, default=20.0, help="seconds before SIGKILL (default: 20)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.action == "start":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            print("start: give the server command after --", file=sys.stderr)
            return 2
        proc = start(cmd, args.log)
        print(proc.pid, flush=True)
        if args.ready_url is None:
            return EXIT_OK
        code, message = wait_ready(proc.pid, args.ready_url, args.log, args.timeout)
        print(message, file=sys.stderr)
        if code != EXIT_OK and process_alive(proc.pid):
            stop(proc.pid, 20.0)
        return code
    if args.action == "wait-ready":
        print(f"waiting for {args.url} (server pid {args.pid}, timeout {args.timeout:.0f} s)")
        code, message = wait_ready(args.pid, args.url, args.server_log, args.timeout)
    else:
        code, message = stop(args.pid, args.timeout, args.server_log)
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
