"""train.py --to_static / --max-steps / --profiler_options / the seed, on lite data (a few seconds each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.processes import run_python

COMMON = ["--device", "cpu", "--batch-size", "4", "--workers", "0", "--seed", "1234", "--print-freq", "1",
          "--lr", "0.1", "--eval-during-train", "False"]


def train(lite_data: Path, out: Path, *extra: str) -> str:
    result = run_python("train.py", "--data-path", str(lite_data), "--output-dir", str(out), *COMMON, *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def checksum(log: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in log.splitlines() if line.startswith("param_checksum:"))


def test_same_seed_same_weights_and_to_static_matches(lite_data: Path, tmp_path: Path) -> None:
    first = train(lite_data, tmp_path / "a", "--max-steps", "6", "--epochs", "5")
    again = train(lite_data, tmp_path / "b", "--max-steps", "6", "--epochs", "5")
    static = train(lite_data, tmp_path / "c", "--max-steps", "6", "--epochs", "5", "--to_static")
    assert "to_static: training through paddle.jit.to_static, full graph" in static
    assert checksum(first) == checksum(again)  # the augmentation is seeded too: bit-identical runs
    assert (tmp_path / "c" / "latest.pdparams").is_file()
    dy2static = pytest.importorskip("mobilenetv3_tipc.tipc.dy2static", reason="the TIPC engine is not on this branch")
    losses = dy2static.step_losses(first, "a")
    assert len(losses) == 6  # 4 steps per epoch here
    assert dy2static.compare(losses, dy2static.step_losses(static, "c"), tolerance=1e-4).passed


def test_profiler_options_write_trace_and_summary(lite_data: Path, tmp_path: Path) -> None:
    log = train(lite_data, tmp_path, "--epochs", "5", "--max-steps", "10",
                "--profiler_options", "batch_range=[2,4];state=CPU;profile_path=prof/model.profile")
    assert "stopping after epoch 1" in log  # exit_on_finished: the run ends once steps 2-3 are recorded
    assert '"traceEvents"' in (tmp_path / "prof/model.profile").read_text(encoding="utf-8")
    assert "Overview Summary" in (tmp_path / "prof/model.profile.summary.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(("options", "code", "text"), [
    ("batch_range=[5,2]", 2, "batch_range"),
    ("state=GPU", 77, "SKIPPED: --profiler_options state=GPU"),
    ("batch_range=[50,60]", 1, "ended after 2 steps, before step 50"),
])
def test_profiler_errors(lite_data: Path, tmp_path: Path, options: str, code: int, text: str) -> None:
    result = run_python("train.py", "--data-path", str(lite_data), "--output-dir", str(tmp_path), *COMMON,
                        "--max-steps", "2", "--profiler_options", options)
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
    assert text in result.stdout + result.stderr
