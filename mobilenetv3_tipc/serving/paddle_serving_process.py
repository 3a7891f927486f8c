"""Start, wait for and stop REAL Paddle Serving (``paddle_serving_service.py``) as one process group.

    python -m mobilenetv3_tipc.serving.paddle_serving_process start --python PY \
        --model-dir OUT/serving_server --workdir OUT --http-port 18300 --rpc-port 9300 --pid-file OUT/ps.pid
    python -m mobilenetv3_tipc.serving.paddle_serving_process wait-ready --pid-file OUT/ps.pid --timeout 180
    python -m mobilenetv3_tipc.serving.paddle_serving_process stop --pid-file OUT/ps.pid
    (wait-ready/stop also take --pid PGID --http-port N --rpc-port N [--server-log LOG] instead of --pid-file)

Measured facts this is built on: the pipeline forks (a parent, the op process, the HTTP
gateway, the gRPC side), binds all interfaces (``*:http_port``, ``*:rpc_port``), and SIGTERM to
the parent alone leaves the three children holding both ports. So it is started in its own
session (``setsid``: process group id = its PID) with the working directory it should write
``PipelineServingLogs/`` and ``ProcessInfo.json`` into, and stopped by signalling the whole
group; ``stop`` returns only when no member of the group is alive (zombies count as gone) and
neither port is listening (read from ``/proc/net/tcp*``), SIGKILL-ing the group after the timeout.
Readiness is polled: the group leader alive, both ports listening, then a prediction of a real
image answering ``err_no`` 0 (the gateway and gRPC side listen before the op has loaded the
model). No fixed sleeps.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mobilenetv3_tipc.serving import process
from mobilenetv3_tipc.serving.paddle_serving_env import ROOT, subprocess_env
from mobilenetv3_tipc.serving.process import log_tail

logger = logging.getLogger(__name__)

SERVICE = ROOT / "deploy" / "serving_python" / "paddle_serving_service.py"
CONFIG = ROOT / "deploy" / "serving_python" / "config_paddle_serving.yml"
PROBE_IMAGE = ROOT / "images" / "demo.jpg"
SERVICE_NAME = "imagenet"
LOG_NAME = "paddle_serving.log"
_TCP_LISTEN = "0A"


class PaddleServingError(RuntimeError):
    """The server did not start, did not become ready, or did not stop cleanly."""


@dataclasses.dataclass(frozen=True)
class PaddleServing:
    """A started server: its process group (= the leader's PID), ports, working directory and log."""

    pgid: int
    http_port: int
    rpc_port: int
    workdir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/{SERVICE_NAME}/prediction"

    @property
    def rpc_address(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "workdir": str(self.workdir), "log_path": str(self.log_path)})

    @classmethod
    def from_json(cls, text: str) -> PaddleServing:
        data = json.loads(text)
        return cls(int(data["pgid"]), int(data["http_port"]), int(data["rpc_port"]), Path(data["workdir"]),
                   Path(data["log_path"]))


def group_members(pgid: int) -> list[int]:
    """PIDs of the live processes of process group ``pgid``."""
    return process.live_processes(group=pgid)


def listening(port: int) -> bool:
    """True while any socket listens on TCP ``port`` (IPv4 or IPv6, any address)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def service_command(python: str | Path, model_dir: str | Path, http_port: int, rpc_port: int, *,
                    config: str | Path = CONFIG, opts: Sequence[str] = (), service: str | Path = SERVICE) -> list[str]:
    """The ``paddle_serving_service.py`` command serving ``model_dir`` (``serving_server/``) on both ports."""
    return [str(python), str(service), "--config", str(config), "--opt",
            f"op.{SERVICE_NAME}.local_service_conf.model_config={Path(model_dir).resolve()}",
            f"http_port={http_port}", f"rpc_port={rpc_port}", *opts]


def start(python: str | Path, model_dir: str | Path, workdir: str | Path, http_port: int, rpc_port: int, *,
          config: str | Path = CONFIG, opts: Sequence[str] = (), service: str | Path = SERVICE,
          repo_root: Path = ROOT) -> PaddleServing:
    """Start the service in its own session, cwd ``workdir``; returns at once (see :func:`wait_ready`)."""
    for port in (http_port, rpc_port):
        if listening(port):
            raise PaddleServingError(f"port {port} is already in use: stop what listens there first")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / LOG_NAME
    cmd = service_command(python, model_dir, http_port, rpc_port, config=config, opts=opts, service=service)
    logger.info("starting real Paddle Serving in %s: %s", workdir, " ".join(cmd))
    proc = process.start(cmd, log_path, cwd=workdir, env=subprocess_env(repo_root))
    return PaddleServing(proc.pid, http_port, rpc_port, workdir, log_path)


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """``(HTTP status, body)`` of a POST; an HTTP error status is an answer too."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def image_request(image: Path, logid: int = 1) -> bytes:
    data = base64.b64encode(image.read_bytes()).decode()
    return json.dumps({"key": ["image"], "value": [data], "logid": logid}).encode()


def wait_ready(server: PaddleServing, timeout: float = 180.0, probe_image: Path = PROBE_IMAGE,
               interval: float = 0.25) -> float:
    """Seconds until the server answered a real prediction with ``err_no`` 0; raises if it died or timed out."""
    start_time = time.monotonic()
    deadline = start_time + timeout
    body = image_request(probe_image)
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not process.process_alive(server.pgid):
            raise PaddleServingError(f"real Paddle Serving exited before it was ready; last lines of "
                                     f"{server.log_path}:\n{log_tail(server.log_path)}")
        if listening(server.http_port) and listening(server.rpc_port):
            try:
                status, answer = post(server.url, body, timeout=max(1.0, min(30.0, deadline - time.monotonic())))
                reply = json.loads(answer)
                if status == 200 and reply.get("err_no") == 0:
                    return time.monotonic() - start_time
                last = f"HTTP {status}: {answer[:300]!r}"
            except (OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        time.sleep(interval)
    raise PaddleServingError(f"real Paddle Serving not ready after {timeout:.0f} s ({last}); last lines of "
                             f"{server.log_path}:\n{log_tail(server.log_path)}")


def stop(server: PaddleServing, timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Stop the group (:func:`process.stop`: SIGTERM, SIGKILL after ``timeout``). True when it ended on SIGTERM.

    Returns only once no group member is alive and neither port listens (the leader can exit
    while a child still holds a port); raises :class:`PaddleServingError` if that is still
    not so 10 s later, after SIGKILL-ing the group.
    """
    ports = (server.http_port, server.rpc_port)

    def settled() -> bool:
        with contextlib.suppress(ChildProcessError, OSError):  # reap the leader when it is our child
            os.waitpid(server.pgid, os.WNOHANG)
        return not group_members(server.pgid) and not any(listening(p) for p in ports)

    clean = True
    if process.process_alive(server.pgid):
        code, message = process.stop(server.pgid, timeout)
        logger.info("real Paddle Serving: %s", message)
        clean = code == EXIT_OK
    deadline = time.monotonic() + 10.0
    while not settled():
        if time.monotonic() > deadline:
            raise PaddleServingError(f"process group {server.pgid} still has {group_members(server.pgid)} or ports "
                                     f"{[p for p in ports if listening(p)]} listening after the stop")
        if time.monotonic() > deadline - 5.0:
            clean = False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pgid, signal.SIGKILL)
        time.sleep(interval)
    logger.info("real Paddle Serving (process group %d) stopped; ports %s free", server.pgid, ports)
    return clean


@contextlib.contextmanager
def running(python: str | Path, model_dir: str | Path, workdir: str | Path, http_port: int, rpc_port: int, *,
            ready_timeout: float = 180.0, stop_timeout: float = 30.0, **kwargs: object) -> Iterator[PaddleServing]:
    """Start, wait until ready, yield the server, and always stop its whole group (also on failure)."""
    server = start(python, model_dir, workdir, http_port, rpc_port, **kwargs)  # type: ignore[arg-type]
    try:
        seconds = wait_ready(server, ready_timeout)
        logger.info("real Paddle Serving ready at %s (gRPC %s) after %.1f s", server.url, server.rpc_address, seconds)
        yield server
    finally:
        stop(server, stop_timeout)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    begin = sub.add_parser("start", help="start in its own session; write --pid-file; return at once")
    begin.add_argument("--python", required=True, help="the Paddle Serving env's python (paddle_serving_env ensure)")
    begin.add_argument("--model-dir", "--model_dir", required=True, help="serving_server/ (export_serving_model.py)")
    begin.add_argument("--workdir", required=True, help="receives PipelineServingLogs/, ProcessInfo.json, the log")
    begin.add_argument("--http-port", "--http_port", type=int, required=True)
    begin.add_argument("--rpc-port", "--rpc_port", type=int, required=True)
    begin.add_argument("--config", default=str(CONFIG), help="default: %(default)s")
    begin.add_argument("--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="more Paddle Serving --opt overrides")
    for name, help_text in (("wait-ready", "poll until a prediction answers err_no 0"),
                            ("stop", "signal the process group; wait until no process or port is left")):
        sub.add_parser(name, help=help_text)
    for name, action in sub.choices.items():
        action.add_argument("--pid-file", "--pid_file", type=Path, required=name == "start",
                            help="JSON record of the started server (written by start)")
        action.add_argument("--timeout", type=float, default=180.0, help="seconds (default: %(default)s)")
        if name != "start":  # or name the server directly (a harness that started it itself)
            action.add_argument("--pid", type=int, help="the server's PID (= its process group) instead of --pid-file")
            action.add_argument("--http-port", "--http_port", type=int)
            action.add_argument("--rpc-port", "--rpc_port", type=int)
            action.add_argument("--server-log", "--server_log", type=Path, help="the server's log (error tails)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = get_args_parser().parse_args(argv)
    try:
        if args.action == "start":
            server = start(args.python, args.model_dir, args.workdir, args.http_port, args.rpc_port,
                           config=args.config, opts=args.opt)
            args.pid_file.write_text(server.to_json() + "\n", encoding="utf-8")
            print(server.pgid)
            return EXIT_OK
        if args.pid is not None:
            if args.http_port is None or args.rpc_port is None:
                logger.error("--pid needs --http-port and --rpc-port")
                return EXIT_USAGE
            log = args.server_log or Path(LOG_NAME)
            server = PaddleServing(args.pid, args.http_port, args.rpc_port, log.resolve().parent, log.resolve())
        elif args.pid_file is None or not args.pid_file.is_file():
            logger.error("%s: no such pid file (was the server started?); or give --pid", args.pid_file)
            return EXIT_USAGE
        else:
            server = PaddleServing.from_json(args.pid_file.read_text(encoding="utf-8"))
        if args.action == "wait-ready":
            seconds = wait_ready(server, args.timeout)
            logger.info("ready at %s (gRPC %s) after %.1f s", server.url, server.rpc_address, seconds)
            return EXIT_OK
        clean = stop(server, args.timeout)
        return EXIT_OK if clean else EXIT_FAILED
    except (PaddleServingError, OSError) as exc:
        logger.error("%s", exc)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
