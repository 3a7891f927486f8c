"""``python -m benchmark --quick``: it runs, and writes every figure, plot and target (no timing assertions)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmark import report, timing
from benchmark.paths import PATHS

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROW = re.compile(r"^(model_only|end_to_end|training|serving)\s+(.+?)\s{2,}(\S+)\s+([0-9.]+) (ms/image|images/s)\s+"
                 r"([0-9.]+)$")


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench") / "out"
    done = subprocess.run([sys.executable, "-m", "benchmark", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done, out


@pytest.mark.slow
def test_results_hold_every_path_batch_and_target(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    results = json.loads((quick_run[1] / "results.json").read_text(encoding="utf-8"))
    meta = results["meta"]
    assert meta["mode"] == "quick" and meta["batches"] == [1, 8]
    for section in ("model_only", "end_to_end"):
        assert set(results[section]) == set(PATHS), section
        for path in PATHS:
            for threads in meta["threads"] if section == "model_only" else [max(meta["threads"])]:
                for batch in meta["batches"]:
                    fig = results[section][path][f"t{threads}"][f"b{batch}"]
                    for key in ("median_ms", "ms_per_image", "images_per_s"):
                        assert positive(fig[key]), (section, path, threads, batch, key, fig)
    assert set(results["preprocess_ms"]) == {"decode", "resize_crop", "normalize"}
    for path in report.DEPLOY_PATHS:
        assert positive(results["single_image_latency"][path]["median_ms"]), path
    assert positive(results["preprocess_only"]["b8"]["images_per_s"])
    assert all(positive(v) for v in results["preprocess_ms"].values()), results["preprocess_ms"]
    for path in PATHS:  # every path computes the same probabilities as the dygraph model
        assert meta["max_abs_diff_vs_dygraph"][path] < 1e-4, (path, meta["max_abs_diff_vs_dygraph"])
    for key in ("paddle-dygraph/mobilenet_v3_small", "paddle-dygraph/mobilenet_v3_large",
                "paddle-to_static/mobilenet_v3_small"):
        assert positive(results["training"][key]["images_per_s"]), key
    torch_fig = results["training"]["torch-eager/mobilenet_v3_small"]
    assert positive(torch_fig["images_per_s"]) if isinstance(torch_fig, dict) else torch_fig.startswith("unavailable")
    for level in ("c1", "c8"):
        row = results["serving"]["paddle"][level]
        assert row["errors"] == 0 and all(positive(row[k]) for k in ("images_per_s", "p50_ms", "p99_ms")), row
        assert positive(row["server_cpu_ms_per_request"]) and positive(row["client_cpu_ms_per_request"]), row
    side = results["serving_side_by_side"]  # ours vs real Paddle Serving, or why it was not measured
    if "skipped" in side:
        assert side["skipped"].startswith("real Paddle Serving: "), side
    else:
        for level in ("c1", "c8"):
            for name in ("ours", "paddle_serving"):
                row = side[name][level]
                assert row["errors"] == 0 and all(positive(row[k]) for k in ("requests_per_s", "p50_ms", "p99_ms"))
            assert positive(side["ratio"][level]["requests_per_s"]), side["ratio"]
    targets = results["targets"]
    assert sorted(targets) == ["1", "2", "3", "4", "5", "6"]
    for key, target in targets.items():
        assert target["status"] in ("met", "missed", "not measured"), target
        if key in ("1", "2", "3", "4"):
            assert positive(target["measured"]) and target["status"] != "not measured", (key, target)
    for path, ceiling in targets["3"]["cpu_ceiling"].items():
        assert 0.0 < ceiling < 1.0, (path, ceiling)
    assert targets["6"]["status"] == "not measured"  # the TIPC chain is timed in full mode only


@pytest.mark.slow
def test_plots_are_valid_pngs(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    for name in ("model_only.png", "end_to_end.png", "training.png", "serving.png"):
        path = quick_run[1] / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 100, name


@pytest.mark.slow
def test_table_prints_ratios_to_the_fastest(quick_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    stdout = quick_run[0].stdout
    rows = [m.groups() for line in stdout.splitlines() if (m := ROW.match(line))]
    groups: dict[tuple[str, str], list[float]] = {}
    for section, group, _path, _value, _unit, ratio in rows:
        groups.setdefault((section, group), []).append(float(ratio))
    assert ("model_only", "threads 2 batch 8") in groups and ("end_to_end", "threads 2 batch 1") in groups, groups
    for key, ratios in groups.items():
        assert min(ratios) == 1.0 and all(r >= 1.0 for r in ratios), (key, ratios)
    for key in ("1", "2", "3", "4", "5", "6"):
        assert re.search(rf"^  {key}\. (met|missed|not measured) ", stdout, re.MULTILINE), key


def test_ratio_is_relative_to_the_fastest_of_each_group() -> None:
    fig = {"t2": {"b1": {"ms_per_image": 0.0, "images_per_s": 0.0}}}
    results = {"model_only": {"a": fig, "b": json.loads(json.dumps(fig))}, "end_to_end": {}}
    results["model_only"]["a"]["t2"]["b1"].update(ms_per_image=2.0, images_per_s=500.0)
    results["model_only"]["b"]["t2"]["b1"].update(ms_per_image=5.0, images_per_s=200.0)
    results["training"] = {"paddle-dygraph/m": {"images_per_s": 10.0}, "torch-eager/m": {"images_per_s": 40.0}}
    rows = {(r[0], r[2]): r[5] for r in report.table_rows(results)}
    assert rows[("model_only", "a")] == 1.0 and rows[("model_only", "b")] == 2.5
    assert rows[("training", "torch-eager")] == 1.0 and rows[("training", "paddle-dygraph")] == 4.0


def test_summarize_reports_the_median() -> None:
    fig = timing.summarize([0.004, 0.001, 0.002, 0.003, 0.100], images=2)
    assert fig["median_ms"] == 3.0 and fig["ms_per_image"] == 1.5 and fig["images_per_s"] == pytest.approx(666.667)
    assert fig["runs"] == 5
    with pytest.raises(ValueError, match="no timing samples"):
        timing.summarize([])


def test_process_cpu_seconds_counts_this_process_and_rejects_a_missing_pid() -> None:
    import os
    import time

    from benchmark.serving import process_cpu_seconds

    if not Path("/proc/self/stat").exists():
        pytest.skip("needs Linux /proc")
    before = process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = process_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before >= 0.2
    assert process_cpu_seconds(2**22 + 12345) is None  # above Linux's pid_max: no such process
