"""test_tipc/test_serving.sh end to end: the lite chain's model, and the server cleanup on every exit path.

* ``test_serving_chain_after_lite_train``: in the session's ``tipc_workspace`` (the lite
  train chain already ran there), ``prepare.sh CONFIG serving_infer`` then
  ``test_serving.sh CONFIG`` must end with ``0 failed``.
* The other tests run test_serving.sh in a small copy of the scripts with the tiny model,
  where a step fails or the script is interrupted, and check no server is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mobilenetv3_tipc.hardware import cuda_available
from tests.fixtures.serving import REPO, lite_images, tiny_models

pytestmark = [pytest.mark.slow, pytest.mark.tipc]

SMALL_CONFIG = "test_tipc/configs/mobilenet_v3_small/serving_infer_python.txt"
RESULTS = "test_tipc/output/mobilenet_v3_small/serving_infer/results_serving.log"


def server_pids(workspace: Path) -> list[int]:
    """PIDs of web_service.py processes running in ``workspace`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if "web_service.py" in cmdline and Path(cwd) == workspace.resolve():
            found.append(int(entry.name))
    return found


def run_bash(workspace: Path, env: dict[str, str], *args: str,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", *args], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_serving_chain_after_lite_train(tipc_workspace: Path, tipc_env: dict[str, str]) -> None:
    prepare = run_bash(tipc_workspace, tipc_env, "test_tipc/prepare.sh", SMALL_CONFIG, "serving_infer")
    assert prepare.returncode == 0, prepare.stdout[-3000:] + prepare.stderr[-3000:]
    chain = run_bash(tipc_workspace, tipc_env, "test_tipc/test_serving.sh", SMALL_CONFIG)
    output = chain.stdout + chain.stderr
    assert chain.returncode == 0, output[-6000:]
    assert re.search(r"(?m)^\d+ passed, 0 failed, \d+ skipped$", chain.stdout), output[-3000:]
    results = (tipc_workspace / RESULTS).read_text()
    for step in ("server_cpu_ready.log", "client_cpu.log", "check_cpu.log", "server_cpu_stop.log"):
        assert re.search(rf"(?m)^Run successfully with command - mobilenet_v3_small - .* - \S*{step}!$", results), \
            (step, results)
    gpu_state = "successfully" if cuda_available() else "skipped"
    assert re.search(rf"(?m)^Run {gpu_state} with command - .*server_gpu0_ready\.log!", results), results
    assert (tipc_workspace / RESULTS.replace(".log", ".xml")).is_file()
    check_log = (tipc_workspace / RESULTS).parent / "check_cpu.log"
    assert "16/16 image(s) match Paddle Inference" in check_log.read_text()
    assert server_pids(tipc_workspace) == []


# -- cleanup on failure paths (small workspace, tiny model) ---------------------------------------------------


@pytest.fixture(scope="module")
def small_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    model_dir, _ = tiny_models(base)
    images = lite_images(base)
    work = tmp_path_factory.mktemp("serving_chain") / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "output")
    for name in ("deploy", "test_tipc", "tools", "mobilenetv3_tipc"):
        shutil.copytree(REPO / name, work / name, ignore=ignore)
    shutil.copytree(model_dir, work / "inference" / "tiny_infer")
    shutil.copytree(images[0].parents[1], work / "lite_data" / "val")
    return work


def write_chain_config(workspace: Path, name: str, **values: str) -> str:
    settings = {
        "model_name": "tiny", "python": "python",
        "export": "tools/export_model.py --model mobilenet_v3_small",
        "--pretrained": "./pretrain_models/tiny_pretrained.pdparams",
        "web_service": "deploy/serving_python/web_service.py --config deploy/serving_python/config.yml",
        "--opt op.imagenet.local_service_conf.model_config": "./inference/tiny_infer/",
        "--opt op.imagenet.local_service_conf.devices": '""',
        "--opt op.imagenet.local_service_conf.use_mkldnn": "False",
        "ready_timeout": "120",
        "pipeline": "deploy/serving_python/pipeline_http_client.py",
        "--image_dir": "./lite_data/val/",
        "check": "deploy/serving_python/check_responses.py",
        **values,
    }
    path = workspace / "test_tipc" / "configs" / f"{name}.txt"
    lines = ["===========================serving_params==========================="]
    lines += [f"{key}:{value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path.relative_to(workspace))


def results_of(workspace: Path, mode: str) -> str:
    return (workspace / "test_tipc/output/tiny" / mode / "results_serving.log").read_text()


def test_small_chain_passes(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "ok")
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "ok_mode")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "0 failed" in chain.stdout
    assert server_pids(small_workspace) == []


def test_failed_client_still_stops_server(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "bad_images", **{"--image_dir": "./no_such_images/"})
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "bad_images")
    assert chain.returncode == 1, chain.stdout + chain.stderr
    results = results_of(small_workspace, "bad_images")
    assert re.search(r"(?m)^Run failed with command - tiny - .*client_cpu\.log! \(exit code 2\)$", results), results
    assert re.search(r"(?m)^Run successfully with command - .*server_cpu_stop\.log!$", results), results
    assert server_pids(small_workspace) == []


def test_server_that_never_gets_ready_is_recorded_failed(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "bad_opt", **{
        "--opt op.imagenet.local_service_conf.thread_num": "many"})
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "bad_opt")
    assert chain.returncode == 1
    results = results_of(small_workspace, "bad_opt")
    assert re.search(r"(?m)^Run failed with command - .*server_cpu_ready\.log! \(exit code 1\)$", results), results
    assert "expected an int" in (small_workspace / "test_tipc/output/tiny/bad_opt/server_cpu_ready.log").read_text()
    assert server_pids(small_workspace) == []


def test_missing_model_without_weights_fails_cleanly(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "no_model", **{
        "--opt op.imagenet.local_service_conf.model_config": "./inference/missing_infer/"})
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "no_model")
    assert chain.returncode == 1
    results = results_of(small_workspace, "no_model")
    assert "run bash test_tipc/prepare.sh" in results
    assert "served predictions did not run" in results


def test_interrupted_chain_stops_its_server(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "interrupted", ready_timeout="120")
    proc = subprocess.Popen(["bash", "test_tipc/test_serving.sh", config, "interrupted"], cwd=small_workspace,
                            env=tipc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_pid = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"started the cpu server: pid (\d+)", line)
            if match:
                server_pid = int(match.group(1))
                break
        assert server_pid is not None
        deadline = time.monotonic() + 60
        while server_pid not in server_pids(small_workspace) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert server_pids(small_workspace) == []
    results = results_of(small_workspace, "interrupted").splitlines()
    assert results[-1].endswith("(interrupted by SIGTERM)"), results
    assert (small_workspace / "test_tipc/output/tiny/interrupted/results_serving.xml").is_file()


def test_killed_chain_leaves_no_server(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    """SIGKILL of the chain: the server gets PR_SET_PDEATHSIG / --watch-parent and exits by itself."""
    config = write_chain_config(small_workspace, "killed", ready_timeout="120")
    proc = subprocess.Popen(["bash", "test_tipc/test_serving.sh", config, "killed"], cwd=small_workspace,
                            env=tipc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_pid = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"started the cpu server: pid (\d+)", line)
            if match:
                server_pid = int(match.group(1))
                break
        assert server_pid is not None
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    deadline = time.monotonic() + 60
    while server_pids(small_workspace) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_pids(small_workspace) == []
