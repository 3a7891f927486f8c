"""Quant-aware training (PACT): ``train.py --pact_quant``, ``tools/export_model.py --pact_quant``
and the TIPC PACT chain (``train_pact_infer_python.txt``) on lite data.

The chain runs in its own repository copy (its results_python.log would otherwise replace the
lite chain's in the shared ``tipc_workspace``), starting from the lite chain's float weights.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.processes import run_python
from tests.fixtures.workspace import LITE_MODE, LITE_RUN_DIR, REPO_ROOT, copy_repo, green_summary, run_script

MODEL = "mobilenet_v3_small"
CONFIG = f"test_tipc/configs/{MODEL}/train_pact_infer_python.txt"
RUN_DIR = Path("test_tipc/output") / MODEL / LITE_MODE / "pact_train_gpus_-1_autocast_False_nodes_1"
START_WEIGHTS = Path("pretrain_models") / f"{MODEL}_pretrained.pdparams"
# Measured on the 16 lite_data/val images (2 QAT epochs from the lite chain's weights): top-1
# agreement with the float start model 16/16, mean |dprob| 0.019 (the QAT run fine-tunes, so the
# probabilities move). The bounds leave room for that fine-tuning, not for a broken int8 model
# (random-looking outputs agree on about 1/4 of the images with 4 classes).
MIN_AGREEMENT = 0.75
MAX_MEAN_ABS_DIFF = 0.05


@pytest.fixture(scope="module")
def pact_workspace(tipc_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = copy_repo(REPO_ROOT, tmp_path_factory.mktemp("pact_workspace") / "repo")
    (workspace / START_WEIGHTS).parent.mkdir(parents=True)
    source = tipc_workspace / LITE_RUN_DIR
    shutil.copyfile(source / "latest.pdparams", workspace / START_WEIGHTS)
    shutil.copyfile(source / "label_list.txt", workspace / START_WEIGHTS.parent / "label_list.txt")
    return workspace


@pytest.fixture(scope="module")
def pact_chain(pact_workspace: Path) -> subprocess.CompletedProcess[str]:
    prepared = run_script(pact_workspace, "test_tipc/prepare.sh", CONFIG, LITE_MODE)
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    return run_script(pact_workspace, "test_tipc/test_train_inference_python.sh", CONFIG, LITE_MODE)


@pytest.mark.slow
@pytest.mark.tipc
def test_pact_chain_ends_with_0_failed(pact_chain: subprocess.CompletedProcess[str], pact_workspace: Path) -> None:
    passed, skipped_count = green_summary(pact_chain)
    status = (pact_workspace / RUN_DIR.parent / "results_python.log").read_text(encoding="utf-8").splitlines()
    assert len(status) == passed + skipped_count
    ran = [line for line in status if line.startswith("Run successfully")]
    assert any("train.py" in line and "--pact_quant" in line for line in ran), status
    assert any("export_model.py" in line and "--pact_quant" in line for line in ran), status
    infer = [line for line in ran if "infer.py" in line]
    # CPU, oneDNN, int8: 2 thread counts x 2 batch sizes; everything else is skipped with a reason
    assert len(infer) == 4, infer
    assert all("--precision=int8" in line and "--enable-mkldnn=True" in line for line in infer)
    skipped = [line for line in status if line.startswith("Run skipped")]
    assert skipped and all(line.endswith(")") for line in skipped)


@pytest.mark.slow
@pytest.mark.tipc
def test_pact_run_records_quant_mode_and_exports_int8(pact_chain: subprocess.CompletedProcess[str],
                                                      pact_workspace: Path) -> None:
    args = json.loads((pact_workspace / RUN_DIR / "args.json").read_text(encoding="utf-8"))
    assert args["quant_mode"] == "pact"
    marker = json.loads((pact_workspace / RUN_DIR / "inference" / "quantization.json").read_text(encoding="utf-8"))
    assert marker["quantized"] is True and marker["quant"] == "pact"
    info = json.loads((pact_workspace / RUN_DIR / "inference" / "model_info.json").read_text(encoding="utf-8"))
    assert info["quantized"] == "pact"
    assert (pact_workspace / RUN_DIR / "inference" / "label_list.txt").is_file()


@pytest.mark.slow
@pytest.mark.tipc
def test_pact_int8_agrees_with_the_float_start_model(pact_chain: subprocess.CompletedProcess[str],
                                                     pact_workspace: Path, tmp_path: Path) -> None:
    float_dir = tmp_path / "float"
    exported = run_python("tools/export_model.py", "--model", MODEL, "--legacy-format",
                          f"--pretrained={pact_workspace / START_WEIGHTS}", f"--save-inference-dir={float_dir}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    compared = run_python(
        "deploy/ptq_python/compare_int8.py", f"--float-model-dir={float_dir}",
        f"--int8-model-dir={pact_workspace / RUN_DIR / 'inference'}",
        f"--img-path={pact_workspace / 'lite_data' / 'val'}", "--latency-runs=0",
        f"--min-top1-agreement={MIN_AGREEMENT}", f"--max-mean-abs-diff={MAX_MEAN_ABS_DIFF}",
    )
    assert compared.returncode == 0, compared.stdout[-3000:] + compared.stderr[-3000:]
    assert "images: 16" in compared.stdout


@pytest.mark.slow
def test_quant_checkpoint_needs_the_quant_flag(pact_chain: subprocess.CompletedProcess[str],
                                               pact_workspace: Path) -> None:
    result = run_python("train.py", "--test-only", "--device=cpu", f"--data-path={pact_workspace / 'lite_data'}",
                        f"--pretrained={pact_workspace / RUN_DIR / 'latest.pdparams'}", "--workers=0")
    assert result.returncode == 1
    assert "saved by quant-aware training; add --pact_quant or --quant" in result.stdout + result.stderr


@pytest.mark.slow
def test_pact_export_refuses_float_weights(pact_workspace: Path, tmp_path: Path) -> None:
    result = run_python("tools/export_model.py", "--pact_quant", f"--pretrained={pact_workspace / START_WEIGHTS}",
                        f"--save-inference-dir={tmp_path / 'out'}")
    assert result.returncode == 1
    assert "holds float weights" in result.stderr
    assert not (tmp_path / "out").exists()


def test_pact_export_needs_weights(tmp_path: Path) -> None:
    result = run_python("tools/export_model.py", "--pact_quant", f"--save-inference-dir={tmp_path / 'out'}")
    assert result.returncode == 1
    assert "--pact_quant needs --pretrained" in result.stderr


def test_pact_quant_and_amp_are_refused() -> None:
    result = run_python("train.py", "--pact_quant", "--amp", "--device=cpu")
    assert result.returncode == 2
    assert "--pact_quant/--quant cannot be combined with --amp" in result.stderr


def test_qat_refuses_pir_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenetv3_tipc.training import quant_aware as qat

    monkeypatch.delenv("FLAGS_enable_pir_api", raising=False)
    with pytest.raises(RuntimeError, match="FLAGS_enable_pir_api=0"):
        qat.require_legacy_mode()
