"""The agreement gate (mobilenetv3_tipc/inference/agreement.py, tools/check_agreement.py).

Passes on a real paddle2onnx conversion; fails when the ONNX file is perturbed
(one initializer rewritten) or corrupted, and when the reference weights differ
from the exported ones. The converted model is shared with tests/test_onnx_infer.py.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from mobilenetv3_tipc.inference.agreement import BackendResult, all_agree, compare, format_table, verdict
from tests.fixtures.onnx_model import OnnxModel
from tests.fixtures.processes import run_python

TABLE_ROW = re.compile(r"^(?P<name>\S+)(?: \(reference\))?\s+(?P<top1>\d+/\d+)\s+(?P<diff>\S+)\s+(?P<result>\S+)$")



def _gate_args(model: OnnxModel, onnx_file: Path | None = None, weights: Path | None = None) -> list[str]:
    return ["--model", "mobilenet_v3_small", "--pretrained", str(weights or model.weights),
            "--model-dir", str(model.infer_dir), "--onnx-file", str(onnx_file or model.onnx_file),
            "--img-path", str(model.lite_data / "val"), "--batch-size", "8"]


def _table(stdout: str) -> dict[str, dict[str, str]]:
    rows = {}
    for line in stdout.splitlines():
        match = TABLE_ROW.match(line.strip())
        if match and match["name"] != "backend":
            rows[match["name"]] = match.groupdict()
    return rows


def _perturb_initializer(src: Path, dst: Path) -> str:
    """Scale the weight of the last MatMul/Gemm (the classifier) by 1.5; returns its name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    inits = {init.name: init for init in model.graph.initializer}
    node = next(n for n in reversed(model.graph.node) if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits)
    init = inits[node.input[1]]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.5), init.name))
    onnx.save(model, str(dst))
    return init.name


def test_gate_cli_passes_on_a_real_conversion(onnx_model: OnnxModel, tmp_path: Path) -> None:
    """The CLI as the chain runs it (a subprocess): three backends, a table, exit 0."""
    report = tmp_path / "agreement.json"
    result = run_python("tools/check_agreement.py", *_gate_args(onnx_model), "--save-json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _table(result.stdout)
    assert set(rows) == {"dygraph", "paddle_inference", "onnxruntime"}, result.stdout
    for name in ("paddle_inference", "onnxruntime"):
        assert rows[name]["top1"] == "16/16" and rows[name]["result"] == "ok"
        assert float(rows[name]["diff"]) <= 1e-4
    assert "max |Δp| <= 1e-04" in result.stdout
    assert "AGREE:" in result.stdout
    data = json.loads(report.read_text())
    assert data["agree"] is True and len(data["backends"]) == 3


def test_gate_fails_on_a_perturbed_onnx_initializer(onnx_model: OnnxModel, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenetv3_tipc.inference import agreement_gate as check_agreement

    perturbed = tmp_path / "perturbed.onnx"
    _perturb_initializer(onnx_model.onnx_file, perturbed)
    assert check_agreement.main(_gate_args(onnx_model, onnx_file=perturbed)) == 1
    out = capsys.readouterr().out
    rows = _table(out)
    assert rows["onnxruntime"]["result"] == "FAIL"
    assert float(rows["onnxruntime"]["diff"]) > 1e-4
    assert rows["paddle_inference"]["result"] == "ok"
    assert "DISAGREE: onnxruntime: " in out


def test_gate_fails_on_a_corrupted_onnx_file(onnx_model: OnnxModel, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenetv3_tipc.inference import agreement_gate as check_agreement

    corrupted = tmp_path / "corrupted.onnx"
    data = bytearray(onnx_model.onnx_file.read_bytes())
    corrupted.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    assert check_agreement.main(_gate_args(onnx_model, onnx_file=corrupted)) == 1
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "could not load" in out


def test_gate_fails_when_the_weights_differ_from_the_exported_model(onnx_model: OnnxModel, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import paddle

    from mobilenetv3_tipc.inference import agreement_gate as check_agreement

    state = paddle.load(str(onnx_model.weights))
    bias = state["classifier.3.bias"]
    state["classifier.3.bias"] = paddle.to_tensor(bias.numpy() + np.linspace(0.0, 1.0, bias.shape[0], dtype="float32"))
    other = tmp_path / "other.pdparams"
    paddle.save(state, str(other))
    assert check_agreement.main(_gate_args(onnx_model, weights=other)) == 1
    rows = _table(capsys.readouterr().out)
    assert rows["paddle_inference"]["result"] == "FAIL" and rows["onnxruntime"]["result"] == "FAIL"


def test_gate_usage_errors(onnx_model: OnnxModel, tmp_path: Path) -> None:
    from mobilenetv3_tipc.inference import agreement_gate as check_agreement

    base = ["--pretrained", str(onnx_model.weights), "--img-path", str(onnx_model.lite_data / "val")]
    assert check_agreement.main(base) == 2  # nothing to compare
    assert check_agreement.main([*base, "--onnx-file", str(tmp_path / "missing.onnx")]) == 2
    assert check_agreement.main(["--pretrained", str(tmp_path / "missing.pdparams"),
                                 "--onnx-file", str(onnx_model.onnx_file)]) == 2
    assert check_agreement.main([*base, "--onnx-file", str(onnx_model.onnx_file), "--tolerance", "-1"]) == 2
    with pytest.raises(SystemExit) as exc:
        check_agreement.main(["--onnx-file", str(onnx_model.onnx_file)])  # --pretrained is required
    assert exc.value.code == 2


# ---- comparison logic (no models) ----

def test_compare_counts_ties_within_tolerance_as_agreement() -> None:
    ref = np.array([[0.50004, 0.49996], [0.9, 0.1]], dtype=np.float32)
    got = np.array([[0.49998, 0.50002], [0.9, 0.1]], dtype=np.float32)
    result = compare("b", ref, got, ["a.jpg", "b.jpg"], tolerance=1e-4)
    assert result.passed and result.ties == 1 and result.top1_agree == 2


def test_compare_fails_on_top1_or_tolerance_or_shape_or_nan() -> None:
    ref = np.array([[0.6, 0.4], [0.9, 0.1]], dtype=np.float32)
    flipped = compare("b", ref, ref[:, ::-1].copy(), ["a", "b"])
    assert not flipped.passed and flipped.top1_agree == 0 and len(flipped.mismatches) == 2
    assert "top-1 differs on 2/2 images" in flipped.reasons()
    close = compare("b", ref, ref + np.float32(5e-4), ["a", "b"])
    assert not close.passed and close.top1_agree == 2 and math.isclose(close.max_abs_diff, 5e-4, rel_tol=1e-3)
    assert not compare("b", ref, ref[:1], ["a", "b"]).passed
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert not compare("b", ref, nan, ["a", "b"]).passed


def test_table_and_verdict() -> None:
    ref = BackendResult(name="dygraph", images=2, top1_agree=2, max_abs_diff=0.0, is_reference=True)
    good = BackendResult(name="onnxruntime", images=2, top1_agree=2, max_abs_diff=1e-6)
    bad = BackendResult(name="paddle_inference", images=2, top1_agree=1, max_abs_diff=0.2)
    table = format_table([ref, good, bad], 1e-4)
    lines = table.splitlines()
    assert lines[0].startswith("tolerance: max |Δp| <= 1e-04")
    assert lines[1].split() == ["backend", "top-1", "max", "|Δp|", "result"]
    assert lines[3].split() == ["onnxruntime", "2/2", "1.00e-06", "ok"]
    assert lines[4].split() == ["paddle_inference", "1/2", "2.00e-01", "FAIL"]
    assert not all_agree([ref, good, bad]) and all_agree([ref, good])
    assert not all_agree([ref])  # nothing compared
    assert verdict([ref, good, bad]).startswith("DISAGREE: paddle_inference: top-1 differs on 1/2 images")
