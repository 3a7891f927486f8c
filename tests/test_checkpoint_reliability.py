"""Checkpoints survive a kill mid-save, and --resume refuses a pair that does not belong together."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import paddle
import pytest

from mobilenetv3_tipc.model import build_model
from mobilenetv3_tipc.training.checkpoints import PAUSE_ENV, CheckpointFiles
from tests.fixtures.processes import REPO, run_python

TRAIN_ARGS = ("--device", "cpu", "--workers", "0", "--batch-size", "8", "--print-freq", "1", "--seed", "0")


def train_command(lite_data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "train.py", "--data-path", str(lite_data), "--output-dir", str(out), *TRAIN_ARGS, *extra]


def kill_during_save(lite_data: Path, out: Path, stage: str) -> str:
    """Train 2 epochs, SIGKILL the trainer once the epoch-2 save reaches ``stage``; returns its stderr."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1", **{PAUSE_ENV: f"2:{stage}"})
    proc = subprocess.Popen(train_command(lite_data, out, "--epochs", "2"), cwd=REPO, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    seen = []
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stderr, selectors.EVENT_READ)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and proc.poll() is None:
                if selector.select(timeout=1):
                    line = proc.stderr.readline()
                    seen.append(line)
                    if line.startswith("checkpoint save paused at"):
                        break
        assert seen and seen[-1].startswith(f"checkpoint save paused at {stage} (epoch 2"), "".join(seen)[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return "".join(seen)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("stage", "resumed_from"), [("params_written", "latest"), ("replacing", "latest.prev")])
def test_kill_during_a_checkpoint_save_keeps_a_complete_pair_and_resume_works(
        lite_data: Path, tmp_path: Path, stage: str, resumed_from: str) -> None:
    out = tmp_path / "out"
    kill_during_save(lite_data, out, stage)
    complete = CheckpointFiles(out / resumed_from)
    assert complete.is_complete()
    assert json.loads(complete.manifest.read_text())["epoch"] == 0  # the epoch-1 pair
    if stage == "replacing":  # latest.pdparams is already epoch 2's, latest.pdopt still epoch 1's
        assert CheckpointFiles(out / "latest").problems()
    result = run_python(*train_command(lite_data, out, "--epochs", "2", "--resume", str(out / "latest.pdparams"))[1:])
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"resumed from {complete.params} at epoch 2" in log
    if stage == "replacing":
        assert "incomplete checkpoint" in log and "resuming from the previous complete one" in log
    latest = CheckpointFiles(out / "latest")
    assert latest.is_complete() and json.loads(latest.manifest.read_text())["epoch"] == 1
    assert not latest.previous.params.exists() and not list(out.glob(".*.tmp-*"))  # cleaned up


@pytest.fixture(scope="module")
def small_run(lite_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small_run")
    result = run_python(*train_command(lite_data, out, "--epochs", "1")[1:])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def large_model_optimizer_state(path: Path, with_model_info: bool) -> None:
    """A train.py-style .pdopt of mobilenet_v3_large after one step."""
    model = build_model("mobilenet_v3_large", num_classes=1000)
    scheduler = paddle.optimizer.lr.StepDecay(0.1, step_size=30)
    optimizer = paddle.optimizer.Momentum(learning_rate=scheduler, momentum=0.9, parameters=model.parameters())
    model(paddle.randn([2, 3, 64, 64])).mean().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(), "epoch": 0}
    if with_model_info:
        state["model"] = {"model": "mobilenet_v3_large", "num_classes": 1000, "scale": 1.0, "quant_mode": None}
    paddle.save(state, str(path))


@pytest.mark.parametrize("case", ["manifest", "model_info", "legacy"])
def test_resume_with_another_models_optimizer_state_names_both(
        small_run: Path, lite_data: Path, tmp_path: Path, case: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(small_run, out)
    large_model_optimizer_state(out / "latest.pdopt", with_model_info=case != "legacy")
    if case != "manifest":
        (out / "latest.checkpoint.json").unlink()  # a checkpoint of an older run, or copied by hand
    result = run_python(*train_command(lite_data, out, "--epochs", "2", "--resume", str(out / "latest.pdparams"))[1:])
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    assert "AssertionError" not in log and "Traceback" not in log
    expected = {
        "manifest": f"{out / 'latest.pdparams'} and {out / 'latest.pdopt'} are not a complete checkpoint pair: "
                    "latest.pdopt has",
        "model_info": f"{out / 'latest.pdopt'} holds the state of mobilenet_v3_large (1000 classes, scale 1.0), "
                      "but this run trains mobilenet_v3_small",
        "legacy": f"{out / 'latest.pdopt'} is not the optimizer state of the model in {out / 'latest.pdparams'}",
    }[case]
    assert expected in log, log[-3000:]


def test_checkpoint_files_accept_every_spelling(tmp_path: Path) -> None:
    for name in ("latest", "latest.pdparams", "latest.pdopt", "latest.checkpoint.json"):
        files = CheckpointFiles.of(tmp_path / name)
        assert (files.params.name, files.opt.name, files.manifest.name) == (
            "latest.pdparams", "latest.pdopt", "latest.checkpoint.json")
    assert CheckpointFiles.of(tmp_path / "latest").previous.params.name == "latest.prev.pdparams"
