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
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL_CONFIG = "test_tipc/configs/mobilenet_v3_small/train_infer_python.txt"
LITE_MODE = "lite_train_lite_infer"
LITE_RUN_DIR = f"test_tipc/output/mobilenet_v3_small/{LITE_MODE}/norm_train_gpus_-1_autocast_False_nodes_1"
# Not copied into a workspace even when git is unavailable (they are .gitignored anyway).
IGNORED_NAMES = {".git", "lite_data", "output", "inference", "pretrain_models", "__pycache__", ".pytest_cache",
                 ".ruff_cache", ".venv", "venv", "data"}


@dataclass(frozen=True)
class ChainRun:
    """One prepare + chain run in a workspace."""

    workspace: Path
    prepare: subprocess.CompletedProcess[str]
    chain: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def results(self) -> Path:
        return self.workspace / "test_tipc/output/mobilenet_v3_small" / LITE_MODE / "results_python.log"


def make_tipc_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TIPC_OFFLINE"] = "1"
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def repo_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files (what a fresh clone plus work in progress has)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root, capture_output=True, check=True, timeout=60,
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        files = []
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if path.is_file() and not IGNORED_NAMES.intersection(rel.parts):
                files.append(str(rel))
        return files
    return [name for name in out.split("\0") if name]


def copy_repo(root: Path, dest: Path) -> Path:
    """Copy the repository's files (not its outputs) to ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in repo_files(root):
        source = root / name
        if not source.is_file():  # deleted in the working tree but still in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def run_script(workspace: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``bash ARGS`` from the workspace root with :func:`make_tipc_env`."""
    return subprocess.run(
        ["bash", *args], cwd=workspace, env=make_tipc_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


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
