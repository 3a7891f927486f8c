"""Serving scale-out on Ray Serve: 2 replicas answer exactly as the single-process service.

``deploy/serving_python/ray_serve_app.py`` starts a local Ray on CPU (``--ray-num-cpus 2``,
a short ``--ray-temp-dir``: Ray's socket paths are limited to ~107 characters) in its own
session, with 2 replicas of an exported MobileNetV3-small (random weights, BN statistics from
the lite images, peaked outputs: tests/fixtures/onnx_model.py). Our single-process service
(``web_service.py`` via mobilenetv3_tipc.serving.process) serves the same model with the same
config. Every good and bad request of the protocol goes to both; status and JSON answers must be
equal. The Ray app is stopped by SIGTERM to its process group; afterwards no process of its
session and none using its Ray temp dir may be left.

Measured on the 2-core machine (shared): ~10 s until Ray Serve is ready, ~5 s to stop, ~2.2 GB
RSS in the app's session (each replica ~510 MB with OpenVINO); the module ~40 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mobilenetv3_tipc.serving import process
from tests.fixtures.bad_requests import BAD_INPUTS, MAX_BODY_MB, MAX_IMAGES
from tests.fixtures.onnx_model import write_peaked_weights
from tests.fixtures.processes import run_python
from tests.fixtures.serving import REPO, b64_file, lite_images, request_body, shared_dir, subprocess_env

RAY_APP = REPO / "deploy" / "serving_python" / "ray_serve_app.py"
PORTS = range(18500, 18550)  # the scale-out helper's port range
REPLICAS = 2
READY_TIMEOUT = 240.0
STOP_TIMEOUT = 60.0  # Ray Serve's controller shutdown alone may take ~33 s
READY_MARK = f"Ray Serve: {REPLICAS} replica(s) on"
RAY_ACCESS_MARK = "POST /{name}/{method}"  # a replica's access log line (its route pattern)
# The same settings for both servers (the BAD_INPUTS limits of tests/fixtures/bad_requests.py).
OPTS = ["op.imagenet.local_service_conf.thread_num=1", f"op.imagenet.max_images_per_request={MAX_IMAGES}",
        f"max_body_size_mb={MAX_BODY_MB}"]

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="Ray is not installed (optional: pip install -r requirements-ray.txt)"),
]


@dataclass(frozen=True)
class Answer:
    status: int
    body: object  # the JSON answer, or the raw text when it is not JSON

    def short(self) -> str:
        return f"HTTP {self.status} {json.dumps(self.body)[:300]}"


def lite_model(base: Path, lite_data: Path) -> Path:
    """An exported MobileNetV3-small whose top-1 depends on the image, built once per session."""
    root = shared_dir(base, "scaleout_lite_model")
    model_dir = root / "infer"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (model_dir / "inference.pdiparams").is_file():
            from mobilenetv3_tipc.data.preprocess import list_images, preprocess_batch

            write_peaked_weights(root / "weights.pdparams", preprocess_batch(list_images(lite_data / "train")))
            result = run_python("tools/export_model.py", "--model", "mobilenet_v3_small", "--pretrained",
                                str(root / "weights.pdparams"), "--save-inference-dir", str(model_dir))
            assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def port_in_range() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind((process.HOST, port))
            except OSError:
                continue
            return port
    pytest.skip(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def session_processes(sid: int) -> list[int]:
    """PIDs (not zombies) whose session id is ``sid``."""
    return process.live_processes(session=sid)


def processes_using(path: Path) -> list[int]:
    """PIDs whose command line, working directory or an open file is inside ``path``."""
    prefix = str(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(entry / "cwd")]
            links += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if prefix in cmdline or any(link.startswith(prefix) for link in links):
            found.append(int(entry.name))
    return found


def describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            lines.append(f"{pid}: {cmdline[:200].decode(errors='replace')}")
    return "\n".join(lines)


def session_rss_mb(sid: int) -> float:
    total = 0
    for pid in session_processes(sid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total / 2**20


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until_gone(sid: int, temp_dir: Path, seconds: float = 15.0) -> tuple[list[int], list[int]]:
    """Ray's workers exit shortly after the driver: wait for them, then report what is left."""
    deadline = time.monotonic() + seconds
    while True:
        left = session_processes(sid), processes_using(temp_dir)
        if not any(left) or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def requests_to_send(images: list[Path]) -> list[tuple[str, str, bytes]]:
    """(name, path, body): good single and batched images, every bad input of the protocol tests."""
    good = [(f"single {p.name}", "/imagenet/prediction",
             json.dumps(request_body([b64_file(p)], logid=i)).encode()) for i, p in enumerate(images[:6])]
    good.append(("batch of 3", "/imagenet/prediction",
                 json.dumps(request_body([b64_file(p) for p in images[6:9]], logid=77)).encode()))
    good.append(("upstream /predict method", "/imagenet/predict",
                 json.dumps(request_body([b64_file(images[9])])).encode()))
    bad = [(f"bad: {name}", "/imagenet/prediction", body if isinstance(body, bytes) else json.dumps(body).encode())
           for name, (body, _, _) in sorted(BAD_INPUTS.items())]
    bad.append(("bad: wrong service", "/resnet/prediction", json.dumps(request_body([b64_file(images[0])])).encode()))
    bad.append(("bad: body over the size limit", "/imagenet/prediction",
                json.dumps({"key": ["image"], "value": ["A" * (MAX_BODY_MB * 2**20 + 10)]}).encode()))
    return good + bad + [("good after the bad ones", "/imagenet/prediction",
                          json.dumps(request_body([b64_file(images[10])], logid=99)).encode())]


def ask(base_url: str, path: str, body: bytes) -> Answer:
    reply = requests.post(base_url + path, data=body, headers={"Content-Type": "application/json"}, timeout=60)
    try:
        return Answer(reply.status_code, reply.json())
    except ValueError:
        return Answer(reply.status_code, reply.text)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, lite_data: Path) -> Path:
    return lite_model(tmp_path_factory.getbasetemp(), lite_data)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    found = lite_images(tmp_path_factory.getbasetemp())
    assert len(found) >= 11, found
    return found


@pytest.fixture(scope="module")
def single_process_answers(model_dir: Path, images: list[Path],
                           tmp_path_factory: pytest.TempPathFactory) -> list[Answer]:
    log = tmp_path_factory.mktemp("scaleout_single") / "server.log"
    port = port_in_range()
    with process.serving(model_dir, log, port, opts=OPTS, env=subprocess_env()):
        return [ask(f"http://{process.HOST}:{port}", path, body) for _, path, body in requests_to_send(images)]


@contextlib.contextmanager
def ray_serve(model_dir: Path, log: Path) -> Iterator[tuple[process.ServerProcess, str, Path]]:
    """ray_serve_app.py with REPLICAS replicas in its own session; yields (server, base URL, Ray temp dir)."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's unix socket paths
    port = port_in_range()
    cmd = [sys.executable, str(RAY_APP), "--num-replicas", str(REPLICAS), "--num-cpus", "1", "--ray-num-cpus", "2",
           "--ray-temp-dir", str(temp_dir), "--host", process.HOST, "--port", str(port),
           "--opt", f"op.imagenet.local_service_conf.model_config={model_dir}", *OPTS]
    env = dict(subprocess_env(), RAY_USAGE_STATS_ENABLED="0")
    server = process.ServerProcess(cmd, log, f"http://{process.HOST}:{port}/health", env=env)
    try:
        yield server, f"http://{process.HOST}:{port}", temp_dir
    finally:
        if server.proc.poll() is None:
            server.stop(STOP_TIMEOUT)
        kill_leftovers(sorted(set(session_processes(server.pid)) | set(processes_using(temp_dir))))
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for_replicas(server: process.ServerProcess, timeout: float) -> None:
    """Health answers once one replica runs; the driver logs READY_MARK when serve.run saw all of them."""
    try:
        server.wait_ready(timeout)
    except process.ServerStartError as exc:
        if exc.exit_code == 77:
            pytest.skip(str(exc))
        raise
    deadline = time.monotonic() + timeout
    while READY_MARK not in server.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {READY_MARK!r} line:\n{process.log_tail(server.log_path)}"
        time.sleep(0.2)


def test_two_ray_replicas_answer_as_the_single_process_service(model_dir: Path, images: list[Path],
                                                              single_process_answers: list[Answer],
                                                              tmp_path: Path) -> None:
    cases = requests_to_send(images)
    log = tmp_path / "ray_serve.log"
    t0 = time.monotonic()
    with ray_serve(model_dir, log) as (server, url, temp_dir):
        wait_for_replicas(server, READY_TIMEOUT)
        ready_s = time.monotonic() - t0
        answers = [ask(url, path, body) for _, path, body in cases]
        rss_mb = session_rss_mb(server.pid)
        served = {path.name: path.read_text(errors="replace").count(RAY_ACCESS_MARK)
                  for path in (temp_dir / "session_latest" / "logs" / "serve").glob("replica_imagenet_*.log")}

        t1 = time.monotonic()
        code, message = process.stop(server.pid, STOP_TIMEOUT)
        stop_s = time.monotonic() - t1
        assert code == 0, f"{message}\n{process.log_tail(log)}"
        left_in_session, using_temp_dir = wait_until_gone(server.pid, temp_dir)
    print(f"Ray Serve: ready {ready_s:.1f} s, stop {stop_s:.1f} s, {rss_mb:.0f} MB RSS in its session, "
          f"requests per replica {sorted(served.values())}")

    # Ray's router picks the less busy of two replicas, at random when both are idle: each replica
    # gets some (31 requests: P(one gets none) = 2**-30).
    assert len(served) == REPLICAS and min(served.values()) > 0, served
    differences = [f"{name}:\n  single process: {ours.short()}\n  Ray Serve:      {theirs.short()}"
                   for (name, _, _), ours, theirs in zip(cases, single_process_answers, answers, strict=True)
                   if ours != theirs]
    assert not differences, "\n".join(differences)
    good = [a for a in answers if isinstance(a.body, dict) and a.body.get("err_no") == 0]
    assert len(good) == 9, [a.short() for a in answers]  # 6 single, the batch, /predict, the last one

    assert not left_in_session, f"processes of the Ray app's session left:\n{describe(left_in_session)}"
    assert not using_temp_dir, f"processes still using {temp_dir}:\n{describe(using_temp_dir)}"
    assert server.proc.returncode == 0, process.log_tail(log)


def test_sigkill_of_the_app_group_leaves_no_ray_process(model_dir: Path, tmp_path: Path) -> None:
    """The stop's last resort (SIGKILL to the group it started) must not orphan the Ray cluster."""
    with ray_serve(model_dir, tmp_path / "ray_serve.log") as (server, _, temp_dir):
        wait_for_replicas(server, READY_TIMEOUT)
        os.killpg(server.pid, signal.SIGKILL)
        server.proc.wait(10)
        left_in_session, using_temp_dir = wait_until_gone(server.pid, temp_dir, STOP_TIMEOUT)
    assert not left_in_session, f"processes of the Ray app's session left:\n{describe(left_in_session)}"
    assert not using_temp_dir, f"processes still using {temp_dir}:\n{describe(using_temp_dir)}"
