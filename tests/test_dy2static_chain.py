"""test_train_dy2static_python.sh on lite data: the two runs agree; a difference turns the chain red."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc.results import read_steps
from tests.fixtures.workspace import REPO_ROOT, copy_repo, green_summary, run_script

pytestmark = [pytest.mark.slow, pytest.mark.tipc]
CONFIG = "test_tipc/configs/mobilenet_v3_small/train_dy2static_python.txt"
OUT = "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer"
STATIC_LINE = "to_static_train:--to_static=True\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(REPO_ROOT, tmp_path_factory.mktemp("dy2static") / "repo")
    prepare = run_script(root, "test_tipc/prepare.sh", CONFIG, "lite_train_lite_infer")
    assert prepare.returncode == 0, prepare.stdout[-3000:] + prepare.stderr[-3000:]
    return root


def variant(workspace: Path, name: str, static_line: str) -> str:
    """A copy of the shipped config whose to_static run differs by STATIC_LINE."""
    text = (workspace / CONFIG).read_text(encoding="utf-8")
    assert STATIC_LINE in text
    path = workspace / CONFIG.replace("train_dy2static_python", name)
    path.write_text(text.replace(STATIC_LINE, static_line), encoding="utf-8")
    return str(path.relative_to(workspace))


def test_dy2static_chain_passes_with_matching_losses(workspace: Path) -> None:
    chain = run_script(workspace, "test_tipc/test_train_dy2static_python.sh", CONFIG)  # lone CONFIG form
    assert green_summary(chain) == (3, 0)
    result = json.loads((workspace / OUT / "dy2static_compare.json").read_text(encoding="utf-8"))
    assert result["passed"] and result["steps"] == 8  # 2 epochs x 16 images / batch 4
    assert result["max_abs_diff"] <= result["tolerance"]
    assert result["dygraph_ips"] > 0 and result["static_ips"] > 0
    static_log = (workspace / OUT / "to_static_train_train.log").read_text(encoding="utf-8")
    assert "to_static: training through paddle.jit.to_static, full graph" in static_log
    assert (workspace / OUT / "results_dy2static.xml").is_file()


def test_dy2static_chain_fails_when_the_losses_diverge(workspace: Path) -> None:
    # the injected difference: a 10 % higher learning rate in the to_static run only
    config = variant(workspace, "diverged_dy2static_python", "to_static_train:--to_static=True --lr=0.11\n")
    chain = run_script(workspace, "test_tipc/test_train_dy2static_python.sh", config, "lite_train_lite_infer")
    assert chain.returncode == 1, chain.stdout[-4000:]
    assert chain.stdout.strip().splitlines()[-1] == "2 passed, 1 failed, 0 skipped"
    compare = (workspace / OUT / "loss_compare.log").read_text(encoding="utf-8")
    assert compare.startswith("FAIL: losses diverge at step")


def test_dy2static_chain_is_red_when_the_to_static_run_fails(workspace: Path) -> None:
    config = variant(workspace, "broken_dy2static_python", "to_static_train:--to_static=True --no-such-flag\n")
    chain = run_script(workspace, "test_tipc/test_train_dy2static_python.sh", config)
    assert chain.returncode == 1, chain.stdout[-4000:]
    steps = read_steps(workspace / OUT / "results_dy2static.log")
    assert [s.status for s in steps] == ["passed", "failed", "failed"]  # never skipped
    assert "to_static_train failed:" in steps[2].reason and "--no-such-flag" in steps[2].reason
