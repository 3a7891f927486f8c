"""The PTQ chain's float-vs-int8 gate gives the same verdict, with the same numbers, run after run.

The lite training is bit-reproducible with ``--seed`` (tests/test_dy2static_train.py: same
param_checksum twice), calibration reads the images in sorted order in a fixed number of
batches, and abs_max thresholds are a deterministic function of them. So one trained
checkpoint is quantized three times here, with the chain's flags
(test_tipc/configs/mobilenet_v3_small/train_ptq_infer_python.txt).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.export.atomic import file_digest
from tests.fixtures.processes import run_python

MODEL = "mobilenet_v3_small"


def checked(*args: str) -> str:
    result = run_python(*args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_ptq_gate_gives_the_same_answer_three_runs_in_a_row(lite_data: Path, tmp_path: Path) -> None:
    checked("train.py", "--model", MODEL, "--device", "cpu", "--epochs", "2", "--batch-size", "8", "--workers", "0",
            "--seed", "1234", "--bn-recalibration-batches", "2", "--data-path", str(lite_data),
            "--output-dir", str(tmp_path / "train"))
    checked("tools/export_model.py", "--model", MODEL, "--legacy-format", "--pretrained",
            str(tmp_path / "train" / "latest.pdparams"), "--save-inference-dir", str(tmp_path / "float"))
    verdicts, weights = [], []
    for run in range(3):
        int8 = tmp_path / f"int8_{run}"
        checked("deploy/ptq_python/post_quant.py", "--model-dir", str(tmp_path / "float"), "--data-dir",
                str(lite_data / "train"), "--batch-size", "4", "--batch-num", "4", "--algo", "abs_max",
                "--output-dir", str(int8))
        gate = run_python("deploy/ptq_python/compare_int8.py", "--float-model-dir", str(tmp_path / "float"),
                          "--int8-model-dir", str(int8), "--img-path", str(lite_data / "val"), "--cpu-threads", "2",
                          "--latency-runs", "0", "--min-top1-agreement", "0.75", "--max-mean-abs-diff", "0.02")
        numbers = re.findall(r"^(top-1 agreement|mean \|dprob\||max \|dprob\|): (.*)$", gate.stdout, re.MULTILINE)
        verdicts.append((gate.returncode, numbers))
        weights.append(file_digest(int8 / layout.PARAMS))
    assert verdicts[0][0] == 0, verdicts  # a correct build passes ...
    assert len(verdicts[0][1]) == 3
    assert verdicts[1] == verdicts[0] and verdicts[2] == verdicts[0]  # ... every time, with the same numbers
    assert weights[1] == weights[0] and weights[2] == weights[0]  # the calibration itself is deterministic
