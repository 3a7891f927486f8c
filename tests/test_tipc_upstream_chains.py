"""Upstream-layout configs (written from the TIPC conventions) run their chains on CPU.

Each Step6 layout in tests/fixtures/upstream_layouts/ (``python:python3.7`` as upstream;
``TIPC_PYTHON`` points at this interpreter) runs with the real scripts in the session's
workspace and must run its defining step (training, int8 inference, ONNX Runtime
inference, served predictions). The fresh-clone test runs the PTQ chain first in a new
copy of the repository: no weights, no earlier chain, offline.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc.results import results_name
from tests.fixtures.workspace import copy_repo, make_tipc_env

pytestmark = [pytest.mark.slow, pytest.mark.tipc]

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = REPO_ROOT / "tests" / "fixtures" / "upstream_layouts"
SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.MULTILINE)


def run(workspace: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = make_tipc_env(workspace)
    env["TIPC_PYTHON"] = sys.executable
    return subprocess.run(["bash", *args], cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def layout(workspace: Path, name: str) -> str:
    dest = workspace / "upstream_layouts" / name
    dest.parent.mkdir(exist_ok=True)
    shutil.copy(LAYOUTS / name, dest)
    return str(dest.relative_to(workspace))


def results(workspace: Path, mode: str, name: str) -> list[str]:
    return (workspace / "test_tipc/output/mobilenet_v3_small" / mode / name).read_text().splitlines()


def green(result: subprocess.CompletedProcess[str]) -> tuple[int, int, int]:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    found = SUMMARY_RE.findall(result.stdout)
    assert found, result.stdout[-3000:]
    passed, failed, skipped = map(int, found[-1])
    assert failed == 0 and passed > 0
    return passed, failed, skipped


def test_step6_pact_layout_runs_int8_inference(tipc_workspace: Path) -> None:
    config = layout(tipc_workspace, "step6_train_pact_infer_python.txt")
    assert run(tipc_workspace, "test_tipc/prepare.sh", config, "lite_train_lite_infer").returncode == 0
    green(run(tipc_workspace, "test_tipc/test_train_inference_python.sh", config, "lite_train_lite_infer"))
    lines = results(tipc_workspace, "lite_train_lite_infer", results_name("results_python.log", config))
    int8 = [line for line in lines if "infer.py" in line and "--precision=int8" in line]
    assert any(line.startswith("Run successfully") for line in int8), lines


def test_step6_ptq_layout_with_kl(tipc_workspace: Path) -> None:
    config = layout(tipc_workspace, "step6_train_ptq_infer_python.txt")
    assert run(tipc_workspace, "test_tipc/prepare.sh", config, "klquant_whole_infer").returncode == 0
    green(run(tipc_workspace, "test_tipc/test_ptq_inference_python.sh", config, "klquant_whole_infer"))
    lines = results(tipc_workspace, "klquant_whole_infer", "results_ptq.log")
    ptq = [line for line in lines if "post_quant.py" in line]
    assert len(ptq) == 1 and ptq[0].startswith("Run successfully") and "--algo=KL" in ptq[0]
    assert any(line.startswith("Run successfully") and "--precision=int8" in line for line in lines)


def test_step6_paddle2onnx_layout_runs_onnx_inference(tipc_workspace: Path) -> None:
    config = layout(tipc_workspace, "step6_paddle2onnx_infer_python.txt")
    assert run(tipc_workspace, "test_tipc/prepare.sh", config, "paddle2onnx_infer").returncode == 0
    green(run(tipc_workspace, "test_tipc/test_paddle2onnx.sh", config))
    lines = results(tipc_workspace, "paddle2onnx_infer", "results_paddle2onnx.log")
    infer = [line for line in lines if "deploy/onnx_python/infer.py" in line]
    assert len(infer) == 1 and infer[0].startswith("Run successfully"), lines
    assert "--onnx_file=./inference/mobilenet_v3_small_onnx/model.onnx" in infer[0]


def test_step6_serving_layout_serves(tipc_workspace: Path) -> None:
    config = layout(tipc_workspace, "step6_serving_infer_python.txt")
    assert run(tipc_workspace, "test_tipc/prepare.sh", config, "serving_infer").returncode == 0
    green(run(tipc_workspace, "test_tipc/test_serving_infer_python.sh", config))
    lines = results(tipc_workspace, "serving_infer", "results_serving.log")
    # trans_model (paddle_serving_client.convert) runs our converter, so both backends serve
    assert any(line.startswith("Run successfully") and "trans_model.log" in line for line in lines), lines
    assert any(line.startswith("Run successfully") and "check_cpu.log" in line for line in lines), lines
    assert any(line.startswith("Run successfully") and "check_paddle_serving_cpu.log" in line
               or line.startswith("Run skipped") and "(real Paddle Serving, cpu)" in line for line in lines), lines


def test_step6_train_layout(tipc_workspace: Path) -> None:
    config = layout(tipc_workspace, "step6_train_infer_python.txt")
    passed, _, _ = green(run(tipc_workspace, "test_tipc/test_train_inference_python.sh", config,
                             "lite_train_lite_infer"))
    assert passed == 4  # train, eval, export, CPU inference


def test_fresh_clone_ptq_chain_first(tmp_path: Path) -> None:
    """No weights, no earlier chain: prepare.sh trains the lite weights itself and says so."""
    workspace = copy_repo(REPO_ROOT, tmp_path / "fresh")
    config = "test_tipc/configs/mobilenet_v3_small/train_ptq_infer_python.txt"
    prepare = run(workspace, "test_tipc/prepare.sh", config)
    assert prepare.returncode == 0, prepare.stdout[-3000:] + prepare.stderr[-3000:]
    said = [line for line in prepare.stdout.splitlines() if "training them now" in line]
    assert len(said) == 1, prepare.stdout
    green(run(workspace, "test_tipc/test_ptq_inference_python.sh", config))
