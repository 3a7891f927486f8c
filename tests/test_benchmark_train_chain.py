"""benchmark_train.sh on a fresh workspace: one small combination plus a skipped fp16 one.

Checks what the chain promises: a speed log per combination (the skipped one with its reason),
the profiler's trace and summary table, the summary table and the ips plot, status lines in the
shared results format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc.results import read_steps
from tests.fixtures.workspace import REPO_ROOT, SMALL_CONFIG, copy_repo, green_summary, run_script

pytestmark = [pytest.mark.slow, pytest.mark.tipc]
OUT = "test_tipc/output/mobilenet_v3_small/benchmark_train"


def test_benchmark_train_one_combination(tmp_path: Path) -> None:
    root = copy_repo(REPO_ROOT, tmp_path / "repo")
    prepare = run_script(root, "test_tipc/prepare.sh", SMALL_CONFIG, "benchmark_train")
    assert prepare.returncode == 0, prepare.stdout[-3000:] + prepare.stderr[-3000:]
    assert "benchmark data: ./benchmark_data/ with 256 training images" in prepare.stdout
    chain = run_script(root, "test_tipc/benchmark_train.sh", SMALL_CONFIG, "benchmark_train",
                       "dynamic_bs8_fp32_DP_N1C1", "dynamic_bs8_fp16_DP_N1C1")
    # the run and the profiling run passed; fp16 skipped for the missing GPU
    assert green_summary(chain) == (2, 1)
    steps = read_steps(root / OUT / "results_benchmark_train.log")
    assert [(s.status, s.group) for s in steps] == [("passed", "benchmark"), ("skipped", "benchmark"),
                                                    ("passed", "profiling")]
    assert steps[1].hardware and "CUDA" in steps[1].reason
    assert steps[0].command.count("--batch-size=") == 1  # the benchmark's value replaces the lite chain's
    assert (root / OUT / "results_benchmark_train.xml").is_file()

    index = root / OUT / "index"
    ok = json.loads((index / "mobilenet_v3_small_dynamic_bs8_fp32_DP_N1C1_speed.json").read_text(encoding="utf-8"))
    assert ok["status"] == "ok" and ok["ips"] > 0 and ok["batch_size"] == 8
    assert ok["steps"] == 7  # max_steps 10 - skip_steps 3 of the config
    assert (ok["fp_item"], ok["run_mode"], ok["device_num"], ok["speed_unit"]) == ("fp32", "DP", "N1C1", "images/s")
    assert ok["reader_cost"] >= 0 and ok["batch_cost"] > 0
    skipped = json.loads((index / "mobilenet_v3_small_dynamic_bs8_fp16_DP_N1C1_speed.json").read_text(encoding="utf-8"))
    assert skipped["status"] == "skipped" and "CUDA" in skipped["reason"]
    table = (index / "speed_summary.md").read_text(encoding="utf-8")
    assert "| dynamic_bs8_fp16_DP_N1C1 | skipped |" in table and "| dynamic_bs8_fp32_DP_N1C1 | ok |" in table
    assert (index / "speed_ips.png").read_bytes()[:4] == b"\x89PNG"

    profiling = root / OUT / "dynamic_bs8_fp32_DP_N1C1_profiling"
    assert '"traceEvents"' in (profiling / "model.profile").read_text(encoding="utf-8")
    assert "Overview Summary" in (profiling / "model.profile.summary.txt").read_text(encoding="utf-8")


def test_unknown_benchmark_key_is_a_file_line_error(tmp_path: Path) -> None:
    root = copy_repo(REPO_ROOT, tmp_path / "repo")
    config = root / SMALL_CONFIG
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("skip_steps:3\n", "skip_steps:3\nwarmup_steps:3\n"), encoding="utf-8")
    line = config.read_text(encoding="utf-8").splitlines().index("warmup_steps:3") + 1
    chain = run_script(root, "test_tipc/benchmark_train.sh", SMALL_CONFIG, "benchmark_train")
    assert chain.returncode == 2
    assert f"{SMALL_CONFIG}:{line}: unknown key 'warmup_steps' in train_benchmark_params" in chain.stderr
    assert not (root / OUT).exists()  # nothing ran, nothing was written
