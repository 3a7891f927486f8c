"""The Paddle2ONNX TIPC chain end to end (prepare.sh + test_tipc/test_paddle2onnx.sh).

Runs inside the ``tipc_workspace`` fixture (tests/conftest.py): an isolated repo copy
where the small-model lite chain has already run.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.tipc]

MODEL = "mobilenet_v3_small"
CONFIG = f"test_tipc/configs/{MODEL}/paddle2onnx_infer_python.txt"
LOG_DIR = Path("test_tipc/output") / MODEL / "paddle2onnx_infer"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.MULTILINE)


def run_bash(env: dict[str, str], *args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``bash ARGS`` from ``cwd`` with the ``tipc_env`` environment (this venv first on PATH, offline)."""
    return subprocess.run(["bash", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def summary(stdout: str) -> tuple[int, int, int]:
    found = SUMMARY.findall(stdout)
    assert found, stdout
    passed, failed, skipped = (int(x) for x in found[-1])
    return passed, failed, skipped


def derived_config(workspace: Path, dest: Path, name: str, **values: str) -> Path:
    """The small config with ``model_name`` = name, its own ONNX path, and keys replaced by ``values``."""
    onnx_file = f"./inference/{name}_onnx/model.onnx"
    replace = {"model_name": name, "--save_file": onnx_file, "--onnx_file": onnx_file}
    replace.update(values)
    lines = []
    for line in (workspace / CONFIG).read_text(encoding="utf-8").splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{key}:{replace[key]}" if ":" in line and key in replace else line)
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def chain(tipc_workspace: Path, tipc_env: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    prepared = run_bash(tipc_env, "test_tipc/prepare.sh", CONFIG, "paddle2onnx_infer", cwd=tipc_workspace)
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    for path in (f"inference/{MODEL}_infer/inference.json", f"pretrain_models/{MODEL}_pretrained.pdparams",
                 "lite_data/val"):
        assert (tipc_workspace / path).exists(), f"prepare.sh did not leave {path}"
    result = run_bash(tipc_env, "test_tipc/test_paddle2onnx.sh", CONFIG, cwd=tipc_workspace)
    return tipc_workspace, result


def test_chain_ends_with_0_failed(chain: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    workspace, result = chain
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed, skipped = summary(result.stdout)
    assert failed == 0 and passed >= 5

    status = (workspace / LOG_DIR / "results_paddle2onnx.log").read_text(encoding="utf-8").splitlines()
    assert len(status) == passed + failed + skipped
    assert not [line for line in status if line.startswith("Run failed")]

    def line_for(log_name: str) -> str:
        matches = [line for line in status if f"/{log_name}!" in line]
        assert len(matches) == 1, (log_name, status)
        return matches[0]

    assert line_for("trans_model.log").startswith(f"Run successfully with command - {MODEL} - paddle2onnx ")
    assert "--model_filename=inference.json" in line_for("trans_model.log")
    assert line_for("check_onnx.log").startswith("Run successfully")
    import onnxruntime as ort

    has_gpu = bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))
    for bs in (1, 2):
        assert line_for(f"paddle2onnx_infer_cpu_batchsize_{bs}.log").startswith("Run successfully")
        # Without a GPU build of onnxruntime: recorded as skipped (exit 77), never as passed.
        gpu = line_for(f"paddle2onnx_infer_gpu_batchsize_{bs}.log")
        assert gpu.startswith("Run successfully" if has_gpu else "Run skipped with command"), gpu
    assert line_for("agreement.log").startswith("Run successfully")

    junit = ET.parse(workspace / LOG_DIR / "results_paddle2onnx.xml").getroot()
    suite = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert suite is not None and suite.get("failures") == "0"

    agreement = (workspace / LOG_DIR / "agreement.log").read_text(encoding="utf-8")
    for backend in ("dygraph (reference)", "paddle_inference", "onnxruntime"):
        assert re.search(rf"^{re.escape(backend)}\s+16/16\s+\S+\s+(ok|reference)$", agreement, re.MULTILINE), agreement
    assert "AGREE:" in agreement

    infer_log = (workspace / LOG_DIR / "paddle2onnx_infer_cpu_batchsize_2.log").read_text(encoding="utf-8")
    assert "ONNXRuntime predict:" in infer_log
    assert len(re.findall(r"^class_id: \d+, prob: \S+$", infer_log, re.MULTILINE)) == 16


def test_converted_model_keeps_a_dynamic_batch(chain: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    import onnx

    workspace, _ = chain
    model = onnx.load(str(workspace / "inference" / f"{MODEL}_onnx" / "model.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed size
    assert {op.version for op in model.opset_import if op.domain in ("", "ai.onnx")} == {13}


def test_perturbed_weights_turn_the_chain_red(chain: tuple[Path, subprocess.CompletedProcess[str]],
                                              tipc_env: dict[str, str], tmp_path: Path) -> None:
    """The reference weights no longer match the exported model: agreement fails, the chain exits 1."""
    import numpy as np
    import paddle

    workspace, _ = chain
    state = paddle.load(str(workspace / "pretrain_models" / f"{MODEL}_pretrained.pdparams"))
    bias = state["classifier.3.bias"]
    state["classifier.3.bias"] = paddle.to_tensor(bias.numpy() + np.linspace(0.0, 1.0, bias.shape[0], dtype="float32"))
    perturbed = tmp_path / "perturbed.pdparams"
    paddle.save(state, str(perturbed))
    name = f"{MODEL}_perturbed"
    config = derived_config(workspace, tmp_path / "perturbed.txt", name, **{"--pretrained": str(perturbed)})

    result = run_bash(tipc_env, "test_tipc/test_paddle2onnx.sh", str(config), cwd=workspace)
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary(result.stdout)[1] == 1
    status = (workspace / "test_tipc/output" / name / "paddle2onnx_infer" / "results_paddle2onnx.log").read_text()
    failed = [line for line in status.splitlines() if line.startswith("Run failed")]
    assert len(failed) == 1 and "/agreement.log!" in failed[0], status
    agreement = (workspace / "test_tipc/output" / name / "paddle2onnx_infer" / "agreement.log").read_text()
    assert "DISAGREE:" in agreement and re.search(r"^onnxruntime\s+.*FAIL$", agreement, re.MULTILINE)


def test_missing_paddle_model_fails_clearly(chain: tuple[Path, subprocess.CompletedProcess[str]],
                                            tipc_env: dict[str, str], tmp_path: Path) -> None:
    workspace, _ = chain
    name = f"{MODEL}_missing"
    config = derived_config(workspace, tmp_path / "missing.txt", name,
                            **{"--model_dir": "./inference/does_not_exist/"})
    result = run_bash(tipc_env, "test_tipc/test_paddle2onnx.sh", str(config), "paddle2onnx_infer", cwd=workspace)
    assert result.returncode == 1
    assert summary(result.stdout) == (0, 1, 3)
    status = (workspace / "test_tipc/output" / name / "paddle2onnx_infer" / "results_paddle2onnx.log").read_text()
    assert "inference/does_not_exist/inference.json not found: run bash test_tipc/prepare.sh" in status


def test_a_mismatched_onnx_path_is_ignored_as_upstream(chain: tuple[Path, subprocess.CompletedProcess[str]],
                                                       tipc_env: dict[str, str], tmp_path: Path) -> None:
    """Upstream's --onnx_file names another file than --save_file; its value is ignored (said in one line)."""
    workspace, _ = chain
    name = f"{MODEL}_mismatch"
    config = derived_config(workspace, tmp_path / "mismatch.txt", name,
                            **{"--onnx_file": "./inference/elsewhere/model.onnx", "onnx_check": "null",
                               "agreement": "null", "--batch_size": "1", "--use_gpu": "False"})
    result = run_bash(tipc_env, "test_tipc/test_paddle2onnx.sh", str(config), cwd=workspace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--onnx_file './inference/elsewhere/model.onnx' ignored" in result.stdout
    status = (workspace / "test_tipc/output" / name / "paddle2onnx_infer" / "results_paddle2onnx.log").read_text()
    infer = [line for line in status.splitlines() if "deploy/onnx_python/infer.py" in line]
    assert len(infer) == 1 and infer[0].startswith("Run successfully")
    assert f"--onnx_file=./inference/{name}_onnx/model.onnx" in infer[0]


def test_usage_errors_exit_2(tipc_workspace: Path, tipc_env: dict[str, str]) -> None:
    assert run_bash(tipc_env, "test_tipc/test_paddle2onnx.sh", "no/such/config.txt", cwd=tipc_workspace).returncode == 2
    not_p2o = "test_tipc/configs/mobilenet_v3_small/train_infer_python.txt"
    assert run_bash(tipc_env, "test_tipc/test_paddle2onnx.sh", not_p2o, cwd=tipc_workspace).returncode == 2
