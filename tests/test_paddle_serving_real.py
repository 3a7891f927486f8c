"""Real Paddle Serving 0.9 (Python 3.9 env) against our own service on a lite-trained export.

Builds (or reuses) the cached env, trains one lite epoch, exports, converts to serving_server/,
starts the real pipeline in its own process group with an output folder as working directory,
starts our service (web_service.py), runs the differential and the gRPC PipelineClient check,
and checks that no process and no listening port is left, also when the real server fails.
Skipped (with the reason) when no Python 3.9 or no network for the first install.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import pytest

from mobilenetv3_tipc.serving import paddle_serving_env as env_mod
from mobilenetv3_tipc.serving import paddle_serving_process as ps
from mobilenetv3_tipc.serving import process
from mobilenetv3_tipc.serving.differential import run_differential
from tests.fixtures.processes import REPO, run_python

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

REAL_HTTP, REAL_RPC, OURS_HTTP = 18310, 9310, 18311
FAIL_HTTP, FAIL_RPC = 18312, 9312


@pytest.fixture(scope="module")
def serving_python() -> Path:
    start = time.monotonic()
    try:
        python = env_mod.ensure_env()
    except env_mod.EnvUnavailable as exc:
        pytest.skip(f"real Paddle Serving: {exc}")
    info = env_mod.env_info(python)
    logger.info("Paddle Serving env %s ready in %.1f s (built in %s s, %s MB)", python, time.monotonic() - start,
                info.get("build_seconds"), info.get("size_mb"))
    return python


@pytest.fixture(scope="module")
def lite_export(tmp_path_factory: pytest.TempPathFactory, lite_data: Path) -> Path:
    work = tmp_path_factory.mktemp("paddle_serving_model")
    train = run_python("train.py", "--model", "mobilenet_v3_small", "--data-path", str(lite_data), "--epochs", "1",
                       "--batch-size", "8", "--workers", "0", "--device", "cpu", "--output-dir", str(work / "train"),
                       "--bn-recalibration-batches", "2")
    assert train.returncode == 0, train.stderr[-3000:]
    export = run_python("tools/export_model.py", "--model", "mobilenet_v3_small", "--pretrained",
                        str(work / "train" / "latest.pdparams"), "--save-inference-dir", str(work / "export"))
    assert export.returncode == 0, export.stderr[-3000:]
    convert = run_python("tools/export_serving_model.py", "--dirname", str(work / "export"),
                         "--model_filename", "inference.pdmodel", "--params_filename", "inference.pdiparams",
                         "--serving_server", str(work / "serving_server"),
                         "--serving_client", str(work / "serving_client"))
    assert convert.returncode == 0, convert.stderr[-3000:]
    assert "replaces `python -m paddle_serving_client.convert`" in convert.stderr
    return work


def _nothing_left(pgid: int, *ports: int) -> None:
    assert ps.group_members(pgid) == []
    assert [p for p in ports if ps.listening(p)] == []


def test_project_data_modules_import_in_the_serving_env(serving_python: Path, tmp_path: Path) -> None:
    """The real server's Op runs the project's preprocessing and labels on Python 3.9."""
    script = (
        "import sys\n"
        "from mobilenetv3_tipc.data import labels, preprocess\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "print(preprocess.__name__, labels.__name__, preprocess.preprocess(data).shape)\n"
    )
    done = subprocess.run([str(serving_python), "-c", script, str(REPO / "images" / "demo.jpg")],
                          capture_output=True, text=True, env=env_mod.subprocess_env(), timeout=120,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, f"the project's data modules do not import on Python 3.9:\n{done.stderr[-2000:]}"
    assert done.stdout.strip().endswith("(3, 224, 224)")


def test_converted_config_parses_with_the_real_client(serving_python: Path, lite_export: Path,
                                                      tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from google.protobuf import text_format\n"
        "from paddle_serving_client.proto import general_model_config_pb2 as m\n"
        "folder = sys.argv[1]\n"
        "text = open(folder + '/serving_server_conf.prototxt').read()\n"
        "conf = text_format.Parse(text, m.GeneralModelConfig())\n"
        "binary = m.GeneralModelConfig.FromString(open(folder + '/serving_server_conf.stream.prototxt', 'rb').read())\n"
        "assert conf == binary and str(conf) == text, (str(conf), text)\n"
        "print(conf.feed_var[0].name, conf.fetch_var[0].name, list(conf.fetch_var[0].shape))\n"
    )
    done = subprocess.run([str(serving_python), "-c", script, str(lite_export / "serving_server")],
                          capture_output=True, text=True, env=env_mod.subprocess_env(), timeout=120,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    feed, fetch, shape = done.stdout.split(maxsplit=2)
    assert feed == "input" and fetch.startswith("softmax") and shape.strip() == "[4]"


def test_real_paddle_serving_matches_our_service(serving_python: Path, lite_export: Path, lite_data: Path,
                                                 tmp_path: Path) -> None:
    before = {p.name for p in REPO.iterdir()}
    workdir = tmp_path / "paddle_serving_output"
    start = time.monotonic()
    server = ps.start(serving_python, lite_export / "serving_server", workdir, REAL_HTTP, REAL_RPC)
    try:
        ready_s = ps.wait_ready(server, timeout=240)
        with process.serving(lite_export / "export", tmp_path / "ours.log", OURS_HTTP):
            report = run_differential(f"http://127.0.0.1:{OURS_HTTP}", f"http://127.0.0.1:{REAL_HTTP}",
                                      sorted((lite_data / "val").rglob("*.*")))
        rpc = subprocess.run(
            [str(serving_python), "-m", "mobilenetv3_tipc.serving.differential", "rpc", "--address",
             server.rpc_address, "--image", str(REPO / "images" / "demo.jpg"), "--compare-url",
             f"http://127.0.0.1:{REAL_HTTP}", "--workdir", str(workdir)],
            capture_output=True, text=True, env=env_mod.subprocess_env(), timeout=120, check=False, cwd=tmp_path)
    finally:
        clean = ps.stop(server, timeout=30)
    logger.info("real Paddle Serving ready in %.1f s (%.1f s with start); latency %s", ready_s,
                time.monotonic() - start, json.dumps(report.latency_ms()))
    print(report.to_markdown())
    assert report.passed, report.to_markdown()
    assert rpc.returncode == 0, rpc.stdout + rpc.stderr[-3000:]
    assert "pass: gRPC and HTTP agree" in rpc.stdout
    assert clean, "the process group needed SIGKILL"
    _nothing_left(server.pgid, REAL_HTTP, REAL_RPC, OURS_HTTP)
    assert (workdir / "PipelineServingLogs").is_dir() and (workdir / "ProcessInfo.json").is_file()
    assert {p.name for p in REPO.iterdir()} == before  # nothing written into the repository


def test_a_failed_start_leaves_nothing(serving_python: Path, tmp_path: Path) -> None:
    empty_model = tmp_path / "not_a_model"
    empty_model.mkdir()
    server = ps.start(serving_python, empty_model, tmp_path / "out", FAIL_HTTP, FAIL_RPC)
    try:
        with pytest.raises(ps.PaddleServingError):
            ps.wait_ready(server, timeout=120)
    finally:
        ps.stop(server, timeout=30)
    _nothing_left(server.pgid, FAIL_HTTP, FAIL_RPC)
