"""The dygraph / to_static loss comparison: equal runs pass, an injected difference fails at its step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc import dy2static
from mobilenetv3_tipc.tipc.dy2static import compare, step_losses
from mobilenetv3_tipc.tipc.speed_log import SpeedLogError

# per-step losses of train.py on lite data, batch 4, seed 1234, lr 0.1 (dygraph and --to_static agreed exactly)
LOSSES = [1.38360, 1.41327, 1.34130, 1.29693, 1.19653, 1.44292, 1.07732, 1.01903]


def log_text(losses: list[float], batch_cost: float = 0.2, first_cost: float | None = None) -> str:
    lines = ["INFO train: training mobilenet_v3_small (4 classes) on 16 images"]
    for step, loss in enumerate(losses):
        epoch, it = step // 4 + 1, step % 4 + 1
        cost = first_cost if step == 0 and first_cost is not None else batch_cost
        lines.append(f"INFO train: [Epoch {epoch}, iter: {it}] top1: 0.25000, top5: 1.00000, lr: 0.10000, "
                     f"loss: {loss:.5f}, avg_reader_cost: 0.00100 sec, avg_batch_cost: {cost:.5f} sec, "
                     f"avg_samples: 4.0, avg_ips: {4 / cost:.5f} images/sec.")
    return "\n".join(lines) + "\n"


def test_step_losses_needs_one_line_per_step() -> None:
    assert step_losses(log_text(LOSSES), "a.log") == LOSSES
    # --print-freq 2: a line every second step
    odd = ("iter: 1]", "iter: 3]")
    two_step_windows = "\n".join(x for x in log_text(LOSSES).splitlines() if not any(o in x for o in odd))
    with pytest.raises(SpeedLogError, match="--print-freq 1"):
        step_losses(two_step_windows, "a.log")
    with pytest.raises(SpeedLogError, match="a.log: no"):
        step_losses("Traceback (most recent call last):\n", "a.log")


def test_equal_runs_pass() -> None:
    result = compare(LOSSES, list(LOSSES))
    assert result.passed
    assert result.max_abs_diff == 0.0
    assert "8 steps" in result.message


def test_difference_within_tolerance_passes() -> None:
    nudged = [x + 0.00001 for x in LOSSES]  # one unit of the logged precision
    assert compare(LOSSES, nudged).passed


def test_injected_difference_fails_at_its_step() -> None:
    diverged = list(LOSSES)
    diverged[5] += 0.002
    result = compare(LOSSES, diverged)
    assert not result.passed
    assert result.first_bad_step == 6
    assert "diverge at step 6" in result.message
    assert compare(LOSSES, diverged, tolerance=0.01).passed


def test_missing_steps_or_nan_fail() -> None:
    assert "different numbers of steps" in compare(LOSSES, LOSSES[:-1]).message
    assert not compare(LOSSES, [*LOSSES[:-1], float("nan")]).passed
    assert not compare([], []).passed


def test_cli_writes_json_and_exit_codes(tmp_path: Path) -> None:
    dy, st = tmp_path / "dygraph.log", tmp_path / "static.log"
    dy.write_text(log_text(LOSSES), encoding="utf-8")
    st.write_text(log_text(LOSSES, batch_cost=0.25, first_cost=1.5), encoding="utf-8")
    out = tmp_path / "cmp.json"
    argv = ["--dygraph-log", str(dy), "--static-log", str(st), "--batch-size", "4", "--out", str(out)]
    assert dy2static.main(argv) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["passed"] is True
    assert data["dygraph_ips"] == pytest.approx(20.0)
    assert data["static_ips"] == pytest.approx(16.0)  # the 1.5 s compile step is left out
    diverged = list(LOSSES)
    diverged[2] -= 0.01
    st.write_text(log_text(diverged), encoding="utf-8")
    assert dy2static.main(argv) == 1
    assert json.loads(out.read_text(encoding="utf-8"))["first_bad_step"] == 3
