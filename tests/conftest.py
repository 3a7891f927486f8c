"""Session fixtures shared by the test suite.

* ``repo_root``      the repository (Path).
* ``lite_data``      an extracted ``lite_data/`` (from ``test_images/lite_data.tar``) in a tmp dir.
* ``tipc_env``       environment for running the TIPC shell scripts: this interpreter's
                     directory first on PATH (so ``python`` in the configs is this venv),
                     ``TIPC_OFFLINE=1`` (prepare.sh never tries to download), no colour.
* ``tipc_lite_run``  the small-model lite chain, run once per session in an isolated copy
                     of the repository: ``prepare.sh ... lite_train_lite_infer`` and
                     ``test_train_inference_python.sh ... lite_train_lite_infer``
                     (:class:`ChainRun` with both processes' output and the wall time).
* ``tipc_workspace`` the Path of that copy, once the lite chain produced its weights:
                     ``test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/...`` and
                     ``.../norm_train_gpus_-1_autocast_False_nodes_1/latest.pdparams`` exist.
                     Other tests run ``prepare.sh CONFIG paddle2onnx_infer|serving_infer``
                     inside it. Tests never write into the working tree.
* ``onnx_model``     an exported MobileNetV3-small with peaked outputs and its paddle2onnx
                     conversion (:class:`tests.fixtures.onnx_model.OnnxModel`), built once.

Helpers live in ``tests/fixtures/`` (workspace copies, subprocess runs, the ONNX model).
"""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest

from tests.fixtures.onnx_model import OnnxModel, build_onnx_model
from tests.fixtures.workspace import (
    LITE_MODE,
    LITE_RUN_DIR,
    REPO_ROOT,
    SMALL_CONFIG,
    ChainRun,
    copy_repo,
    make_tipc_env,
    run_script,
)

# Re-exported for tests that still import them from here; new code imports tests.fixtures.*.
__all__ = ["LITE_MODE", "LITE_RUN_DIR", "REPO_ROOT", "SMALL_CONFIG", "ChainRun", "copy_repo", "make_tipc_env",
           "run_script"]

@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tipc_env() -> dict[str, str]:
    return make_tipc_env()


@pytest.fixture(scope="session")
def lite_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("lite_data_session")
    with tarfile.open(REPO_ROOT / "test_images" / "lite_data.tar") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without extraction filters
            tar.extractall(dest)
    root = dest / "lite_data"
    assert (root / "train").is_dir() and (root / "val").is_dir(), root
    return root


@pytest.fixture(scope="session")
def tipc_lite_run(tmp_path_factory: pytest.TempPathFactory) -> ChainRun:
    workspace = copy_repo(REPO_ROOT, tmp_path_factory.mktemp("tipc_workspace") / "repo")
    start = time.monotonic()
    prepare = run_script(workspace, "test_tipc/prepare.sh", SMALL_CONFIG, LITE_MODE)
    chain = run_script(workspace, "test_tipc/test_train_inference_python.sh", SMALL_CONFIG, LITE_MODE)
    return ChainRun(workspace, prepare, chain, time.monotonic() - start)


@pytest.fixture(scope="session")
def tipc_workspace(tipc_lite_run: ChainRun) -> Path:
    weights = tipc_lite_run.workspace / LITE_RUN_DIR / "latest.pdparams"
    if not weights.is_file():
        pytest.fail(
            "the small-model lite TIPC chain did not produce "
            f"{LITE_RUN_DIR}/latest.pdparams\n--- prepare.sh ---\n{tipc_lite_run.prepare.stdout[-3000:]}"
            f"{tipc_lite_run.prepare.stderr[-3000:]}\n--- chain ---\n{tipc_lite_run.chain.stdout[-5000:]}"
            f"{tipc_lite_run.chain.stderr[-3000:]}"
        )
    return tipc_lite_run.workspace


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, lite_data: Path) -> OnnxModel:
    return build_onnx_model(tmp_path_factory.getbasetemp(), lite_data)
