"""train.py's bounded distributed rendezvous and its optional VisualDL logs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mobilenetv3_tipc.training.visualdl_log import VISUALDL_MISSING, visualdl_available
from tests.fixtures.processes import run_python

TRAIN_ARGS = ("--device", "cpu", "--workers", "0", "--batch-size", "8", "--print-freq", "1", "--seed", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_rendezvous_that_never_completes_ends_with_exit_1_naming_the_master(lite_data: Path,
                                                                            tmp_path: Path) -> None:
    # rank 0 of 2: it serves the store at PADDLE_MASTER and waits for a rank 1 that never starts
    master = f"127.0.0.1:{free_port()}"
    env = {"PADDLE_TRAINERS_NUM": "2", "PADDLE_TRAINER_ID": "0", "PADDLE_MASTER": master,
           "PADDLE_TRAINER_ENDPOINTS": f"{master},127.0.0.1:{free_port()}", "PADDLE_CURRENT_ENDPOINT": master,
           "PADDLE_DISTRI_BACKEND": "gloo"}
    # timeout=120 is a hang guard: Paddle alone waits for minutes; the watchdog's message is the verdict
    result = run_python("train.py", "--data-path", str(lite_data), "--output-dir", str(tmp_path), *TRAIN_ARGS,
                        "--epochs", "1", "--dist-init-timeout", "3", env=env, timeout=120)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"distributed init did not finish within 3 s (--dist-init-timeout): rank 0 of 2 waited for master {master}" \
        in result.stderr
    assert not (tmp_path / "latest.pdparams").exists()


def test_dist_init_timeout_must_be_positive(lite_data: Path) -> None:
    result = run_python("train.py", "--data-path", str(lite_data), "--device", "cpu", "--dist_init_timeout", "0")
    assert result.returncode == 2
    assert "--dist-init-timeout must be more than 0 seconds" in result.stderr


def test_use_visualdl_without_the_package_exits_2(lite_data: Path, tmp_path: Path) -> None:
    hidden = tmp_path / "no_visualdl" / "visualdl"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("No module named \'visualdl\'")\n', encoding="utf-8")
    result = run_python("train.py", "--data-path", str(lite_data), "--output-dir", str(tmp_path / "out"),
                        *TRAIN_ARGS, "--use_visualdl", env={"PYTHONPATH": str(hidden.parent)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert VISUALDL_MISSING in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not visualdl_available(), reason="visualdl is not installed (optional: requirements-dev.txt)")
def test_use_visualdl_logs_loss_top1_and_lr(lite_data: Path, tmp_path: Path) -> None:
    from visualdl import LogReader

    out = tmp_path / "out"
    result = run_python("train.py", "--data-path", str(lite_data), "--output-dir", str(out), *TRAIN_ARGS,
                        "--epochs", "2", "--use-visualdl", "True")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    logs = list((out / "vdl").glob("vdlrecords.*.log"))
    assert len(logs) == 1
    reader = LogReader(file_path=str(logs[0]))
    steps_per_epoch = 2  # 16 lite train images at batch 8
    for tag in ("train/loss", "train/acc1", "train/lr"):
        assert [r.id for r in reader.get_data("scalar", tag)] == list(range(1, 2 * steps_per_epoch + 1)), tag
    for tag in ("epoch/train_loss", "epoch/train_acc1", "epoch/lr", "eval/acc1", "eval/acc5"):
        assert [r.id for r in reader.get_data("scalar", tag)] == [1, 2], tag
