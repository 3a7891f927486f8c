"""Export -> Paddle Inference equals the dygraph model; infer.py and predict.py print the seed's formats."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import paddle
import pytest

from mobilenetv3_tipc.data.preprocess import list_images, preprocess_batch
from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, PaddlePredictor
from tests.fixtures.onnx_model import bn_calibrated_model
from tests.fixtures.processes import REPO, run_python

DEMO = REPO / "images" / "demo.jpg"


def calibrated_model(num_classes: int, images: np.ndarray) -> paddle.nn.Layer:
    """A random model whose BN statistics come from real images, so outputs are far from uniform."""
    model = bn_calibrated_model(images, num_classes)
    head = model.classifier[3].weight
    head.set_value(paddle.normal(0.0, 1.0, head.shape))  # peaked outputs instead of ~uniform ones
    return model


@pytest.fixture(scope="module")
def exported(lite_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("export")
    images = preprocess_batch(list_images(lite_data / "val" / "n02123045"))
    model = calibrated_model(4, images)
    weights = root / "weights.pdparams"
    paddle.save(model.state_dict(), str(weights))
    (root / "label_list.txt").write_text("0 cat\n1 missile\n2 tripod\n3 espresso\n")
    out = root / "infer"
    result = run_python("tools/export_model.py", "--model", "mobilenet_v3_small", "--pretrained", str(weights),
                        "--save-inference-dir", str(out))
    assert result.returncode == 0, result.stderr
    with paddle.no_grad():
        reference = paddle.nn.functional.softmax(model(paddle.to_tensor(images)), axis=-1).numpy()
    return weights, out, reference


def test_export_writes_the_documented_files(exported: tuple[Path, Path, np.ndarray]) -> None:
    _, out, _ = exported
    # inference.pdmodel: the same network as a legacy program, for Paddle Inference's OpenVINO engine
    for name in ("inference.json", "inference.pdmodel", "inference.pdiparams", "model_info.json", "label_list.txt"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize("mkldnn", [True, False])
def test_paddle_inference_equals_dygraph(exported: tuple[Path, Path, np.ndarray], lite_data: Path,
                                         mkldnn: bool) -> None:
    _, out, reference = exported
    images = preprocess_batch(list_images(lite_data / "val" / "n02123045"))
    predictor = PaddlePredictor(out, InferenceOptions(enable_mkldnn=mkldnn, cpu_threads=2))
    probs = predictor.run(images)
    assert probs.shape == (4, 4)
    assert float(np.abs(reference).max()) > 0.3  # not a uniform output: the check means something
    np.testing.assert_allclose(probs, reference, atol=1e-5)
    # dynamic batch: one image at a time gives the same rows
    np.testing.assert_allclose(predictor.run(images[:1]), reference[:1], atol=1e-5)


def test_infer_prints_result_lines(exported: tuple[Path, Path, np.ndarray], lite_data: Path) -> None:
    _, out, _ = exported
    folder = lite_data / "val" / "n07920052"
    result = run_python("deploy/inference_python/infer.py", "--model-dir", str(out), "--img-path", str(folder),
                        "--batch-size", "3", "--benchmark", "True", "--topk", "2")
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("image_name: ")]
    assert len(lines) == 4
    assert all(re.fullmatch(r"image_name: \S+, class_id: [0-3], prob: [0-9.e-]+", ln) for ln in lines)
    assert "top-k: " in result.stdout and ("cat" in result.stdout or "espresso" in result.stdout)
    for field in ("preprocess_time(ms)", "inference_time(ms)", "cpu_rss(MB)", "batch_size: 3", "data_num: 4"):
        assert field in result.stdout


@pytest.mark.parametrize("flags", [("--use-gpu", "True"), ("--use_tensorrt", "True"), ("--precision", "fp16")])
def test_infer_without_the_hardware_exits_77(exported: tuple[Path, Path, np.ndarray], flags: tuple) -> None:
    from mobilenetv3_tipc.hardware import cpu_has_flag, cuda_available

    if cuda_available() and "True" in flags:
        pytest.skip("this machine has a GPU")
    if "fp16" in flags and (cpu_has_flag("avx512_bf16") or cpu_has_flag("amx_bf16")):
        pytest.skip("this CPU runs bfloat16")
    _, out, _ = exported
    result = run_python("deploy/inference_python/infer.py", "--model-dir", str(out), "--img-path", str(DEMO),
                        *flags)
    assert result.returncode == 77, result.stdout + result.stderr
    assert "SKIPPED: " in result.stderr


@pytest.mark.parametrize("flags", [("--precision", "int8"), ("--precision", "fp16", "--enable-mkldnn", "False")])
def test_infer_combinations_no_machine_runs_are_usage_errors(exported: tuple[Path, Path, np.ndarray],
                                                             flags: tuple) -> None:
    _, out, _ = exported
    result = run_python("deploy/inference_python/infer.py", "--model-dir", str(out), "--img-path", str(DEMO),
                        *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SKIPPED: " not in result.stderr


def test_infer_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    result = run_python("deploy/inference_python/infer.py", "--model-dir", str(tmp_path), "--img-path", str(DEMO))
    assert result.returncode == 2
    assert "neither inference.json nor inference.pdmodel found" in result.stderr


def test_predict_prints_seed_format(exported: tuple[Path, Path, np.ndarray]) -> None:
    weights, _, _ = exported
    result = run_python("tools/predict.py", "--pretrained", str(weights), "--img-path", str(DEMO), "--topk", "3")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert re.fullmatch(r"class_id: [0-3], prob: 0\.\d+", first), first
    assert result.stdout.splitlines()[1].startswith("top-k: ")
    assert "espresso" in result.stdout  # names come from label_list.txt next to the weights


def test_predict_bad_weights_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "w.pdparams"
    bogus.write_bytes(b"garbage")
    result = run_python("tools/predict.py", "--pretrained", str(bogus), "--img-path", str(DEMO))
    assert result.returncode == 2 and "not a readable .pdparams file" in result.stderr
