"""ONNX Runtime inference (deploy/onnx_python): predictor, infer.py CLI and the ONNX model check.

The model is a real paddle2onnx conversion of an exported MobileNetV3-small whose BN
statistics come from the lite images and whose classifier is scaled so outputs are
peaked and depend on the image: the session fixture ``onnx_model`` of tests/conftest.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.onnx_model import NUM_CLASSES, OnnxModel
from tests.fixtures.processes import DEMO, run_python


def _result_lines(stdout: str) -> list[str]:
    return [ln for ln in stdout.splitlines() if ln.startswith("class_id: ")]


def test_infer_on_one_file_prints_the_upstream_format(onnx_model: OnnxModel,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from deploy.onnx_python import infer

    image = onnx_model.lite_data / "test" / "demo.jpg"
    assert infer.main(["--onnx_file", str(onnx_model.onnx_file), "--img_path", str(image)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert re.fullmatch(r"inference engine: onnxruntime \(device=cpu, providers=CPUExecutionProvider, threads=\d+\)",
                        lines[0]), lines
    assert lines[1] == "ONNXRuntime predict:"
    assert len(lines) == 3 and re.fullmatch(r"class_id: [0-3], prob: [0-9.e-]+", lines[2]), lines


def test_infer_on_a_folder_matches_the_predictor(onnx_model: OnnxModel) -> None:
    """The CLI as CI runs it (a subprocess): a folder, batch 3, benchmark report."""
    from mobilenetv3_tipc.data.preprocess import list_images, preprocess_batch
    from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor

    folder = onnx_model.lite_data / "val" / "n07920052"
    result = run_python("deploy/onnx_python/infer.py", "--onnx-file", str(onnx_model.onnx_file),
                        "--img-path", str(folder), "--batch-size", "3", "--benchmark", "True", "--topk", "2")
    assert result.returncode == 0, result.stderr
    lines = _result_lines(result.stdout)
    assert result.stdout.startswith("inference engine: onnxruntime (")
    assert "\nONNXRuntime predict:\n" in result.stdout
    assert len(lines) == 4
    assert result.stdout.count("image_name: ") == 4
    assert "ips:" in result.stdout and "onnxruntime" in result.stdout
    expected = OnnxPredictor(onnx_model.onnx_file).run(preprocess_batch(list_images(folder))).argmax(axis=1)
    got = [int(re.match(r"class_id: (\d+)", ln).group(1)) for ln in lines]
    assert got == [int(c) for c in expected]


def test_infer_on_class_folders_lists_every_image(onnx_model: OnnxModel,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from deploy.onnx_python import infer

    code = infer.main(["--onnx-file", str(onnx_model.onnx_file), "--img-path", str(onnx_model.lite_data / "val"),
                       "--batch-size", "2"])
    assert code == 0
    assert len(_result_lines(capsys.readouterr().out)) == 16


def test_missing_model_is_a_usage_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from deploy.onnx_python import infer

    missing = tmp_path / "nope" / "model.onnx"
    assert infer.main(["--onnx-file", str(missing), "--img-path", str(DEMO)]) == 2
    assert f"{missing}: ONNX model not found" in caplog.text


def test_missing_images_are_a_usage_error(onnx_model: OnnxModel, tmp_path: Path) -> None:
    from deploy.onnx_python import infer

    assert infer.main(["--onnx-file", str(onnx_model.onnx_file), "--img-path", str(tmp_path / "none")]) == 2


def test_corrupt_model_fails_with_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from deploy.onnx_python import infer

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    assert infer.main(["--onnx-file", str(bad), "--img-path", str(DEMO)]) == 1
    assert "onnxruntime cannot load this model" in caplog.text


def test_use_gpu_is_skipped_without_a_gpu_provider(onnx_model: OnnxModel,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    from deploy.onnx_python import infer

    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("this onnxruntime has a GPU provider")
    assert infer.main(["--onnx-file", str(onnx_model.onnx_file), "--img-path", str(DEMO), "--use-gpu"]) == 77
    err = capsys.readouterr().err
    assert re.search(r"^SKIPPED: .*onnxruntime", err, re.MULTILINE), err


def test_select_providers() -> None:
    from mobilenetv3_tipc.cli import UnsupportedConfig
    from mobilenetv3_tipc.inference.onnx_predictor import select_providers

    assert select_providers(False, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    both = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(True, list(reversed(both))) == both
    assert select_providers(True, ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == "CUDAExecutionProvider"
    with pytest.raises(UnsupportedConfig, match="onnxruntime-gpu"):
        select_providers(True, ["AzureExecutionProvider", "CPUExecutionProvider"])


def test_predictor_has_a_dynamic_batch(onnx_model: OnnxModel) -> None:
    from mobilenetv3_tipc.data.preprocess import list_images, preprocess_batch
    from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor(onnx_model.onnx_file, threads=1)
    assert not isinstance(predictor.input_shape[0], int) or predictor.input_shape[0] <= 0
    batch = preprocess_batch(list_images(onnx_model.lite_data / "val")[:5])
    probs = predictor.run(batch)
    assert probs.shape == (5, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([predictor.run(batch[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(probs, singles, atol=1e-6)
    assert float(probs.max(axis=1).mean()) > 0.4  # peaked outputs: the agreement checks mean something


def test_check_model_accepts_the_conversion(onnx_model: OnnxModel, capsys: pytest.CaptureFixture[str]) -> None:
    from deploy.onnx_python import check_model

    assert check_model.main(["--onnx-file", str(onnx_model.onnx_file), "--expect-opset", "13"]) == 0
    out = capsys.readouterr().out
    assert "dynamic batch" in out and "batch 2: output [2, 4]" in out


def test_check_model_rejects_a_fixed_batch_and_a_wrong_opset(onnx_model: OnnxModel, tmp_path: Path) -> None:
    import onnx

    from deploy.onnx_python import check_model

    assert check_model.main(["--onnx-file", str(onnx_model.onnx_file), "--expect-opset", "10"]) == 1
    fixed = onnx.load(str(onnx_model.onnx_file))
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "fixed.onnx"
    onnx.save(fixed, str(path))
    assert check_model.main(["--onnx-file", str(path)]) == 1
    assert check_model.main(["--onnx-file", str(tmp_path / "missing.onnx")]) == 2
