"""The fast default inference settings stay correct.

* ``tools/export_model.py`` writes the legacy ``inference.pdmodel`` next to the PIR
  ``inference.json`` (one shared ``.pdiparams``), so the default CPU predictor runs
  Paddle Inference's OpenVINO engine; every named engine agrees with the dygraph
  model within the agreement gate's 1e-4 (measured: about 1e-7).
* A model without ``inference.pdmodel`` falls back to oneDNN; a quantized model
  stays on oneDNN int8.
* With 2 threads the default is one 2-thread OpenVINO engine, equal to the dygraph model
  at every batch size.
* A batch of the wrong shape is refused (the OpenVINO engine itself would only log
  the error and return the previous output).
* The ONNX wrapper returns exactly what a raw ``InferenceSession.run`` returns.

The model is the session's shared paddle2onnx conversion (the ``onnx_model`` fixture).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mobilenetv3_tipc.cli import UnsupportedConfig
from mobilenetv3_tipc.data.preprocess import list_images, preprocess_batch
from mobilenetv3_tipc.inference.agreement import DEFAULT_TOLERANCE, DygraphReference
from mobilenetv3_tipc.inference.paddle_predictor import (
    CPU_VARIANTS,
    InferenceOptions,
    PaddlePredictor,
    create_cpu_predictor,
    variant_options,
)
from tests.fixtures.onnx_model import OnnxModel
from tests.fixtures.processes import run_python


@pytest.fixture(scope="module")
def batch_and_reference(onnx_model: OnnxModel) -> tuple[np.ndarray, np.ndarray]:
    images = preprocess_batch(list_images(onnx_model.lite_data / "val"))
    reference = DygraphReference("mobilenet_v3_small", onnx_model.weights).run(images)
    assert float(reference.max(axis=1).min()) > 0.3  # peaked outputs: the comparison means something
    return images, reference


def test_export_writes_a_legacy_program_sharing_the_parameters(onnx_model: OnnxModel) -> None:
    from mobilenetv3_tipc.export.legacy_program import read_input_dims

    out = onnx_model.infer_dir
    for name in ("inference.json", "inference.pdmodel", "inference.pdiparams"):
        assert (out / name).is_file(), name
    assert not list(out.glob("legacy_export_*")), "scratch directory left behind"
    assert read_input_dims(out / "inference.pdmodel") == [-1, 3, 224, 224]  # the feed op's variable
    assert read_input_dims(out / "inference.pdmodel", "input") == [-1, 3, 224, 224]
    assert read_input_dims(out / "inference.pdmodel", "no_such_var") is None


def test_default_cpu_predictor_is_openvino_and_agrees_with_dygraph(
        onnx_model: OnnxModel, batch_and_reference: tuple[np.ndarray, np.ndarray]) -> None:
    images, reference = batch_and_reference
    predictor = PaddlePredictor(onnx_model.infer_dir, InferenceOptions(cpu_threads=2))
    assert predictor.engine == "openvino"
    info = predictor.describe()
    assert info["cpu_engine"] == "openvino" and info["enable_openvino"] is True
    assert info["enable_mkldnn"] is False and info["model_file"] == "inference.pdmodel"
    assert info["cpu_math_library_num_threads"] == 2
    np.testing.assert_allclose(predictor.run(images), reference, atol=DEFAULT_TOLERANCE)
    # the batch size changes between calls: every size gets its own, correct rows
    for size in (1, 3, len(images), 1):
        np.testing.assert_allclose(predictor.run(images[:size]), reference[:size], atol=DEFAULT_TOLERANCE)


@pytest.mark.parametrize("variant", CPU_VARIANTS)
def test_every_named_variant_agrees_with_dygraph(onnx_model: OnnxModel, variant: str,
                                                 batch_and_reference: tuple[np.ndarray, np.ndarray]) -> None:
    images, reference = batch_and_reference
    predictor = create_cpu_predictor(onnx_model.infer_dir, variant, cpu_threads=1)
    expected = {"default": "openvino", "openvino": "openvino", "onednn": "onednn", "native": "native"}[variant]
    assert predictor.engine == expected
    assert predictor.describe()["cpu_engine"] == expected
    assert predictor.describe()["enable_mkldnn"] is (expected == "onednn")
    np.testing.assert_allclose(predictor.run(images), reference, atol=DEFAULT_TOLERANCE)


def test_two_thread_default_is_one_openvino_engine_at_every_batch_size(
        onnx_model: OnnxModel, batch_and_reference: tuple[np.ndarray, np.ndarray]) -> None:
    images, reference = batch_and_reference
    predictor = PaddlePredictor(onnx_model.infer_dir, InferenceOptions(cpu_threads=2))
    assert predictor.describe()["cpu_engine"] == "openvino"
    assert predictor.describe()["cpu_math_library_num_threads"] == 2
    for size in (1, 2, 3, len(images)):
        np.testing.assert_allclose(predictor.run(images[:size]), reference[:size], atol=DEFAULT_TOLERANCE)


def test_wrong_input_shape_is_refused_not_answered_with_stale_output(onnx_model: OnnxModel) -> None:
    predictor = create_cpu_predictor(onnx_model.infer_dir, "openvino", cpu_threads=1)
    predictor.run(np.zeros((2, 3, 224, 224), np.float32))
    for shape in ((2, 3, 192, 192), (2, 1, 224, 224), (3, 224, 224)):
        with pytest.raises(ValueError, match=r"does not match the model's \[-1, 3, 224, 224\]"):
            predictor.run(np.zeros(shape, np.float32))


def test_infer_cli_rejects_a_crop_size_the_model_was_not_exported_for(onnx_model: OnnxModel) -> None:
    image = onnx_model.lite_data / "test" / "demo.jpg"
    result = run_python("deploy/inference_python/infer.py", "--model-dir", str(onnx_model.infer_dir),
                        "--img-path", str(image), "--crop-size", "192", "--cpu-threads", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not match the model's [-1, 3, 224, 224]" in result.stderr


def test_without_a_legacy_program_the_default_falls_back_to_onednn(
        onnx_model: OnnxModel, batch_and_reference: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    images, reference = batch_and_reference
    for name in ("inference.json", "inference.pdiparams"):
        shutil.copy(onnx_model.infer_dir / name, tmp_path / name)
    predictor = PaddlePredictor(tmp_path, InferenceOptions(cpu_threads=1))
    assert predictor.engine == "onednn" and predictor.describe()["model_file"] == "inference.json"
    np.testing.assert_allclose(predictor.run(images[:2]), reference[:2], atol=DEFAULT_TOLERANCE)
    with pytest.raises(UnsupportedConfig, match="OpenVINO needs a float model with inference.pdmodel"):
        create_cpu_predictor(tmp_path, "openvino")


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        variant_options("tensorrt")


def test_infer_prints_the_engine_line_and_honours_enable_mkldnn(onnx_model: OnnxModel) -> None:
    image = onnx_model.lite_data / "test" / "demo.jpg"
    common = ("deploy/inference_python/infer.py", "--model-dir", str(onnx_model.infer_dir), "--img-path", str(image),
              "--cpu-threads", "1")
    auto = run_python(*common)
    assert auto.returncode == 0, auto.stderr
    assert re.search(r"^inference engine: openvino \(device=cpu, precision=fp32, threads=1, ", auto.stdout, re.M)
    onednn = run_python(*common, "--enable-mkldnn", "True")
    assert onednn.returncode == 0, onednn.stderr
    assert re.search(r"^inference engine: onednn \(", onednn.stdout, re.M), onednn.stdout
    native = run_python(*common, "--enable_mkldnn", "False", "--use-openvino", "auto")
    assert native.returncode == 0, native.stderr
    assert re.search(r"^inference engine: native \(", native.stdout, re.M), native.stdout


def test_onnx_wrapper_returns_exactly_what_raw_onnxruntime_returns(
        onnx_model: OnnxModel, batch_and_reference: tuple[np.ndarray, np.ndarray]) -> None:
    import onnxruntime as ort

    from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor

    images, reference = batch_and_reference
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    raw = ort.InferenceSession(str(onnx_model.onnx_file), sess_options=options, providers=["CPUExecutionProvider"])
    wrapper = OnnxPredictor(onnx_model.onnx_file, threads=1)
    expected = raw.run(None, {raw.get_inputs()[0].name: images})[0]
    np.testing.assert_array_equal(wrapper.run(images), expected)
    np.testing.assert_allclose(expected, reference, atol=DEFAULT_TOLERANCE)
    # a float64 or non-contiguous batch is converted, not rejected
    np.testing.assert_array_equal(wrapper.run(images[:, :, :, :].astype(np.float64)), expected)
    flipped = np.ascontiguousarray(images[::-1])[::-1]
    assert not flipped.flags.c_contiguous
    np.testing.assert_array_equal(wrapper.run(flipped), expected)
