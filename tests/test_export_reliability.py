"""Exports are written whole or not at all, and a folder mixing two exports is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mobilenetv3_tipc.export import exporter, layout
from mobilenetv3_tipc.export.atomic import file_digest, replace_dir_atomic
from mobilenetv3_tipc.export.manifest import ModelFilesMismatch, check_model_files
from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, ModelLoadError, PaddlePredictor
from tests.fixtures.processes import run_python

ONEDNN = InferenceOptions(enable_mkldnn=True, use_openvino=False, cpu_threads=1)
OPENVINO = InferenceOptions(use_openvino=True, cpu_threads=1)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two exports of random mobilenet_v3_small weights, 4 and 10 classes."""
    root = tmp_path_factory.mktemp("exports")
    for classes in (4, 10):
        assert exporter.main(["--model", "mobilenet_v3_small", "--num-classes", str(classes),
                              "--save-inference-dir", str(root / f"m{classes}")]) == 0
    return {4: root / "m4", 10: root / "m10"}


def mixed(exports: dict[int, Path], tmp_path: Path, foreign: str) -> Path:
    folder = tmp_path / "mixed"
    shutil.copytree(exports[4], folder)
    shutil.copyfile(exports[10] / foreign, folder / foreign)
    return folder


def test_export_records_its_files_and_leaves_no_temp_folder(exports: dict[int, Path]) -> None:
    folder = exports[4]
    info = json.loads((folder / layout.MODEL_INFO).read_text())
    assert set(info["files"]) == {layout.PIR_PROGRAM, layout.LEGACY_PROGRAM, layout.PARAMS}
    for name, record in info["files"].items():
        assert file_digest(folder / name) == record
    assert info["export_id"] != json.loads((exports[10] / layout.MODEL_INFO).read_text())["export_id"]
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_weights_of_another_export_are_refused_for_every_engine(exports: dict[int, Path], tmp_path: Path) -> None:
    folder = mixed(exports, tmp_path, layout.PARAMS)
    # Paddle itself loads these without a word and answers with 10 classes for a 4-class program
    for options, program in ((ONEDNN, layout.PIR_PROGRAM), (OPENVINO, layout.LEGACY_PROGRAM)):
        with pytest.raises(ModelFilesMismatch, match=f"{layout.PARAMS} does not belong to {program}: "
                                                     "written by different exports"):
            PaddlePredictor(folder, options)


def test_a_program_of_another_export_is_named(exports: dict[int, Path], tmp_path: Path) -> None:
    folder = mixed(exports, tmp_path, layout.LEGACY_PROGRAM)
    with pytest.raises(ModelFilesMismatch, match=f"{layout.LEGACY_PROGRAM} does not belong to {layout.PARAMS}: "
                                                 "written by different exports"):
        PaddlePredictor(folder, OPENVINO)
    predictor = PaddlePredictor(folder, ONEDNN)  # inference.json and the params still belong together
    assert predictor.run(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 4)


def test_infer_cli_names_the_mismatch_without_paddle_internals(exports: dict[int, Path], tmp_path: Path) -> None:
    folder = mixed(exports, tmp_path, layout.PARAMS)
    result = run_python("deploy/inference_python/infer.py", "--model-dir", str(folder), "--img-path",
                        "images/demo.jpg", "--use-gpu", "False", "--enable-mkldnn", "True")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert f"{layout.PARAMS} does not belong to {layout.PIR_PROGRAM}: written by different exports" in output
    assert "load_combine" not in output and "Traceback" not in output


def test_damaged_params_of_an_unrecorded_export_name_the_files(exports: dict[int, Path], tmp_path: Path) -> None:
    folder = tmp_path / "old_export"
    shutil.copytree(exports[4], folder)
    info = json.loads((folder / layout.MODEL_INFO).read_text())
    del info["files"]  # as written before exports recorded their files: not checked
    (folder / layout.MODEL_INFO).write_text(json.dumps(info))
    check_model_files(folder, layout.PIR_PROGRAM)
    params = folder / layout.PARAMS
    params.write_bytes(params.read_bytes()[: params.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=f"cannot load {layout.PIR_PROGRAM} with {layout.PARAMS} "
                                             r"\(incomplete, damaged, or from different exports"):
        PaddlePredictor(folder, ONEDNN)


def test_a_failed_re_export_leaves_the_previous_folder_whole(exports: dict[int, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exports[4], folder)
    before = {p.name: file_digest(p) for p in folder.iterdir()}

    def interrupted(model_dir: Path, info: dict | None = None) -> dict:
        raise KeyboardInterrupt  # e.g. Ctrl-C after the program and params were written

    monkeypatch.setattr(exporter, "record_model_files", interrupted)
    with pytest.raises(KeyboardInterrupt):
        exporter.export(exporter.get_args_parser().parse_args(
            ["--num-classes", "10", "--save-inference-dir", str(folder)]))
    assert {p.name: file_digest(p) for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folder left
    PaddlePredictor(folder, ONEDNN)


def test_replace_dir_atomic_swaps_whole_folders(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    replace_dir_atomic(lambda folder: (folder / "new.txt").write_text("new"), target)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
