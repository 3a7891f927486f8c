"""Post-training quantization: post_quant.py argument checks and the TIPC PTQ chain.

The chain tests run in the session's ``tipc_workspace`` (a repository copy where the lite
chain trained weights) after ``prepare.sh train_ptq_infer_python.txt whole_infer``.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import pytest

from mobilenetv3_tipc.quantization import compare_int8, post_quant
from tests.fixtures.workspace import run_script

MODEL = "mobilenet_v3_small"
CONFIG = f"test_tipc/configs/{MODEL}/train_ptq_infer_python.txt"
MODE = "whole_infer"
LOG_DIR = Path("test_tipc/output") / MODEL / MODE
QUANT_DIR = Path("inference") / f"{MODEL}_infer_ptq"
# The config's bound (measured spread over fresh runs in its comment): the gate the chain applies.
MIN_AGREEMENT = 0.5


def fake_legacy_model(root: Path) -> Path:
    """A folder with the file names post_quant.py checks for (contents never read)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "inference.pdmodel").write_bytes(b"")
    (root / "inference.pdiparams").write_bytes(b"")
    return root


def test_empty_calibration_folder_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = fake_legacy_model(tmp_path / "float")
    empty = tmp_path / "calib"
    (empty / "class_a").mkdir(parents=True)
    (empty / "notes.txt").write_text("not an image\n")
    with caplog.at_level(logging.ERROR, logger="post_quant"):
        rc = post_quant.main(["--model-dir", str(model), "--data-dir", str(empty),
                              "--output-dir", str(tmp_path / "out")])
    assert rc == 2
    assert "no calibration images" in caplog.text
    assert str(empty) in caplog.text
    assert not (tmp_path / "out").exists()


def test_missing_calibration_folder_is_a_usage_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = fake_legacy_model(tmp_path / "float")
    with caplog.at_level(logging.ERROR, logger="post_quant"):
        rc = post_quant.main(["--model-dir", str(model), "--data-dir", str(tmp_path / "nope"),
                              "--output-dir", str(tmp_path / "out")])
    assert rc == 2
    assert "no such image file or folder" in caplog.text


def test_pir_only_model_points_to_legacy_export(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = tmp_path / "pir"
    model.mkdir()
    (model / "inference.json").write_text("{}")
    (model / "inference.pdiparams").write_bytes(b"")
    with caplog.at_level(logging.ERROR, logger="post_quant"):
        rc = post_quant.main(["--model-dir", str(model), "--data-dir", str(tmp_path),
                              "--output-dir", str(tmp_path / "out")])
    assert rc == 2
    assert "--legacy-format" in caplog.text


@pytest.mark.parametrize("flag", ["--batch-size", "--batch-num"])
def test_non_positive_sizes_are_usage_errors(tmp_path: Path, flag: str) -> None:
    model = fake_legacy_model(tmp_path / "float")
    assert post_quant.main(["--model-dir", str(model), "--data-dir", str(tmp_path), "--output-dir",
                            str(tmp_path / "out"), flag, "0"]) == 2


def test_output_dir_must_differ_from_model_dir(tmp_path: Path) -> None:
    model = fake_legacy_model(tmp_path / "float")
    assert post_quant.main(["--model-dir", str(model), "--data-dir", str(tmp_path),
                            "--output-dir", str(model)]) == 2


def test_compare_rejects_a_bad_batch_size(tmp_path: Path) -> None:
    assert compare_int8.main(["--float-model-dir", str(tmp_path), "--int8-model-dir", str(tmp_path),
                              "--img-path", str(tmp_path), "--batch-size", "0"]) == 2


@pytest.fixture(scope="module")
def ptq_chain(tipc_workspace: Path) -> subprocess.CompletedProcess[str]:
    prepared = run_script(tipc_workspace, "test_tipc/prepare.sh", CONFIG, MODE, timeout=600)
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    return run_script(tipc_workspace, "test_tipc/test_ptq_inference_python.sh", CONFIG, MODE, timeout=600)


@pytest.mark.slow
@pytest.mark.tipc
def test_ptq_chain_ends_with_0_failed(ptq_chain: subprocess.CompletedProcess[str], tipc_workspace: Path) -> None:
    out = ptq_chain.stdout + ptq_chain.stderr
    assert ptq_chain.returncode == 0, out[-6000:]
    summary = ptq_chain.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"(\d+) passed, 0 failed, (\d+) skipped", summary)
    assert match, summary
    status = (tipc_workspace / LOG_DIR / "results_ptq.log").read_text(encoding="utf-8").splitlines()
    assert len(status) == int(match[1]) + int(match[2])
    assert (tipc_workspace / LOG_DIR / "results_ptq.xml").is_file()
    assert status[0].startswith("Run successfully") and "--legacy-format" in status[0]
    assert status[1].startswith("Run successfully") and "post_quant.py" in status[1]
    ran = [line for line in status if "infer.py" in line and line.startswith("Run successfully")]
    # CPU, oneDNN, int8: 2 thread counts x 2 batch sizes
    assert len(ran) == 4
    assert all("--precision=int8" in line and "--enable-mkldnn=True" in line for line in ran)
    skipped = [line for line in status if "infer.py" in line and line.startswith("Run skipped")]
    assert skipped and all(line.endswith(")") for line in skipped)
    # the skip reasons are infer.py's own refusals (inference/engine.py)
    assert any("a quantized model runs only with --precision int8" in line for line in skipped)
    assert any("int8 on CPU needs oneDNN (--enable-mkldnn True)" in line for line in skipped)
    assert status[-1].startswith("Run successfully") and "compare_int8.py" in status[-1]


@pytest.mark.slow
@pytest.mark.tipc
def test_int8_model_is_marked_and_agrees_with_float(ptq_chain: subprocess.CompletedProcess[str],
                                                     tipc_workspace: Path) -> None:
    assert ptq_chain.returncode == 0
    quant = tipc_workspace / QUANT_DIR
    summary = json.loads((quant / "quantization.json").read_text(encoding="utf-8"))
    assert summary["quantized"] is True
    assert summary["calibration"]["images_used"] == 16
    assert summary["quantize_linear_ops"] > 0
    assert (quant / "inference.pdmodel").is_file() and (quant / "inference.pdiparams").is_file()
    report = (tipc_workspace / LOG_DIR / "compare_int8.log").read_text(encoding="utf-8")
    agreement = float(re.search(r"top-1 agreement: ([0-9.]+)", report)[1])
    mean_diff = float(re.search(r"mean \|dprob\|: ([0-9.]+)", report)[1])
    assert agreement >= MIN_AGREEMENT, report
    assert mean_diff <= 0.02, report
    sizes = re.findall(r"model size: ([0-9.]+) MB", report)
    assert float(sizes[1]) < 0.5 * float(sizes[0]), report
    infer_log = tipc_workspace / LOG_DIR / "python_infer_cpu_usemkldnn_True_threads_2_precision_int8_batchsize_8.log"
    assert "class_id:" in infer_log.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.tipc
def test_empty_calibration_folder_turns_the_chain_red(ptq_chain: subprocess.CompletedProcess[str],
                                                      tipc_workspace: Path) -> None:
    assert ptq_chain.returncode == 0
    empty = tipc_workspace / "empty_calibration"
    empty.mkdir(exist_ok=True)
    text = (tipc_workspace / CONFIG).read_text(encoding="utf-8")
    text = text.replace("model_name:mobilenet_v3_small", "model_name:ptq_empty_calib")
    text = text.replace("--data-dir:./lite_data/train", "--data-dir:./empty_calibration")
    text = text.replace("--output-dir:./inference/mobilenet_v3_small_infer_ptq",
                        "--output-dir:./inference/ptq_empty_calib_infer_ptq")
    text = text.replace("ptq_export:", "ptq_export:null\n# ")
    config = tipc_workspace / "ptq_empty_calib.txt"
    config.write_text(text, encoding="utf-8")
    result = run_script(tipc_workspace, "test_tipc/test_ptq_inference_python.sh", str(config.name), MODE,
                        timeout=600)
    assert result.returncode == 1, result.stdout[-3000:]
    # PTQ failed; float export (null: used as is), int8 inference and gate skipped; the defining step
    # (int8 inference) did not run -> one more failed line
    assert result.stdout.strip().splitlines()[-1].endswith("2 failed, 3 skipped")
    log_dir = tipc_workspace / "test_tipc/output/ptq_empty_calib" / MODE
    status = (log_dir / "results_ptq.log").read_text(encoding="utf-8")
    assert "Run failed with command" in status and "post_quant.py" in status
    assert "no int8 model: the PTQ step failed" in status
    assert "int8 inference did not run: every cell was skipped" in status
    assert "no calibration images" in (log_dir / "ptq.log").read_text(encoding="utf-8")
    assert not (tipc_workspace / "inference/ptq_empty_calib_infer_ptq").exists()


def test_usage_errors_exit_2(repo_root: Path, tmp_path: Path) -> None:
    script = repo_root / "test_tipc/test_ptq_inference_python.sh"
    assert run_script(repo_root, str(script), str(repo_root / "no_such.txt"), timeout=600).returncode == 2
    not_ptq = repo_root / "test_tipc/configs" / MODEL / "train_infer_python.txt"
    result = run_script(repo_root, str(script), str(not_ptq), timeout=600)
    assert result.returncode == 2
    assert "is a train config: run bash test_tipc/test_train_inference_python.sh" in result.stderr
    result = run_script(repo_root, str(script), str(not_ptq), "lite_train_lite_infer", timeout=600)
    assert result.returncode == 2
