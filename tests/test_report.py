"""mobilenetv3_tipc.report on synthetic results: parsing, matrix, agreement, JUnit merge, the page.

The output folder comes from :func:`tests.fixtures.report_output.make_output`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mobilenetv3_tipc.report import build_report
from mobilenetv3_tipc.report.__main__ import main as report_main
from mobilenetv3_tipc.report.extras import parse_agreement_table
from mobilenetv3_tipc.report.matrix import build_grid, cell_for
from mobilenetv3_tipc.report.results import discover_chains, parse_line, totals
from tests.fixtures.report_output import (
    AGREEMENT_LOG,
    LITE,
    MODEL,
    RUN,
    failed_line,
    make_output,
    ok_line,
    skipped_line,
    write_chain,
)


@pytest.fixture
def output_root(tmp_path: Path) -> Path:
    return make_output(tmp_path / "repo")


# ----------------------------------------------------------------------------------------------
# status lines


def test_parse_today_lines() -> None:
    ok = parse_line(f"Run successfully with command - {MODEL} - python train.py --epochs=2 - ./out/train.log!")
    assert ok is not None
    assert (ok.status, ok.model, ok.command, ok.log, ok.reason) == (
        "passed", MODEL, "python train.py --epochs=2", "./out/train.log", "")
    bad = parse_line(f"Run failed with command - {MODEL} - python a.py - ./x.log! (exit code 3)")
    assert bad is not None and (bad.status, bad.reason) == ("failed", "exit code 3")
    skip = parse_line(f"Run skipped with command - {MODEL} - GPU run - (not run)! (needs CUDA)")
    assert skip is not None and (skip.status, skip.log, skip.reason, skip.ran) == (
        "skipped", "(not run)", "needs CUDA", False)


def test_parse_tolerates_colour_timestamps_seconds_and_dashes() -> None:
    line = ("\x1b[31m2026-12-02T13:55:25Z Run failed with command - m - python a.py --name=a - b!c - "
            "./o/a.log! (exit code 1) [12.5 s]\x1b[0m")
    step = parse_line(line)
    assert step is not None
    assert step.timestamp == "2026-12-02T13:55:25Z"
    assert step.command == "python a.py --name=a - b!c"
    assert step.log == "./o/a.log"
    assert step.reason == "exit code 1"
    assert step.seconds == 12.5
    bracketed = parse_line("[2026-12-02 13:55:25] Run successfully with command - m - cmd - ./l.log! (3 s)")
    assert bracketed is not None and bracketed.seconds == 3.0 and bracketed.reason == ""
    assert parse_line("11 passed, 0 failed, 32 skipped") is None
    assert parse_line("image_name: a.jpeg") is None


def test_engine_note_and_json_sidecar(tmp_path: Path) -> None:
    step = parse_line(f"Run successfully with command - m - python infer.py - ./{RUN}_infer_cpu_usemkldnn_True_"
                      "threads_1"
                      "_precision_fp32_batchsize_1.log! (inference engine: onednn)")
    assert step is not None and (step.engine, step.reason) == ("onednn", "")
    out = tmp_path / "test_tipc" / "output"
    lines = [(ok_line("python deploy/inference_python/infer.py --use-gpu=False --precision=fp32 --batch-size=1",
                  "(not run)"), 0),
             (skipped_line("python deploy/inference_python/infer.py --use-gpu=True", "(not run)", "needs CUDA"), 0)]
    results = write_chain(out, "whole_infer", "results_python", lines, {}, tmp_path, junit=False)
    results.with_suffix(".times").unlink()
    sidecar = {"model": MODEL, "suite": "s", "steps": [
        {"status": "passed", "command": "x", "log": "(not run)", "reason": "", "seconds": 2.5, "engine": "openvino",
         "hardware": False, "group": "inference"},
        {"status": "skipped", "command": "y", "log": "(not run)", "reason": "needs CUDA", "seconds": 0.0,
         "engine": "", "hardware": True, "group": "inference"}]}
    sidecar.update(config=f"test_tipc/configs/{MODEL}/train_infer_python.txt", started="2026-12-02T14:00:00Z",
                   finished="2026-12-02T14:01:10Z")
    results.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    (chain,) = discover_chains(out)
    assert (chain.label, chain.started, chain.finished) == (
        f"{MODEL} / whole_infer / train_infer_python", "2026-12-02T14:00:00Z", "2026-12-02T14:01:10Z")
    assert [(s.seconds, s.engine, s.hardware, s.group) for s in chain.steps] == [
        (2.5, "openvino", False, "inference"), (0.0, "", True, "inference")]
    cell = cell_for(chain.steps[0], tmp_path)
    assert cell is not None and cell.engine == "openvino"


def test_discover_joins_manifest_and_counts(output_root: Path) -> None:
    chains = discover_chains(output_root)
    labels = [c.label for c in chains]
    assert labels == [
        f"{MODEL} / {LITE} / train_infer_python",
        f"{MODEL} / {LITE} / train_amp_infer_python",
        f"{MODEL} / paddle2onnx_infer / paddle2onnx_infer_python",
        f"{MODEL} / serving_infer / serving_infer_python",
        f"{MODEL} / {LITE} / train_dy2static_python",
    ]
    status = {c.label.rsplit(" / ", 1)[1]: c.status for c in chains}
    assert status == {"train_infer_python": "passed", "train_amp_infer_python": "failed",
                      "paddle2onnx_infer_python": "passed", "serving_infer_python": "failed",
                      "train_dy2static_python": "skipped"}
    lite = chains[0]
    assert lite.counts() == {"passed": 11, "failed": 0, "skipped": 18}
    assert lite.seconds == 75.0  # the manifest's wall time
    assert lite.steps[0].seconds == 41.0  # from the .times sidecar
    assert chains[3].problem == "prepare.sh failed with exit code 1"
    # steps of every chain, + 1 failed for the red chain without a failed step, + 1 skipped for the missing script
    assert totals(chains) == {"passed": 11 + 4, "failed": 1 + 1, "skipped": 18 + 1 + 1 + 1}


def test_chain_without_manifest_or_passing_step_is_red(tmp_path: Path) -> None:
    out = tmp_path / "test_tipc" / "output"
    write_chain(out, "whole_infer", "results_ptq", [(skipped_line("x", "(not run)", "needs CUDA"), 0)], {}, tmp_path)
    (chain,) = discover_chains(out)
    assert (chain.status, chain.problem) == ("failed", "no step ran: every step was skipped")
    assert chain.label == f"{MODEL} / whole_infer / results_ptq"


# ----------------------------------------------------------------------------------------------
# matrix and agreement


def test_matrix_cells_from_commands_and_logs(output_root: Path) -> None:
    repo = output_root.parent.parent
    lite = discover_chains(output_root)[0]
    cells = [c for c in (cell_for(s, repo) for s in lite.steps) if c is not None]
    assert len(cells) == 24 + 2
    first = cells[0]
    assert (first.device, first.accel, first.threads, first.precision, first.batch, first.status) == (
        "cpu", "True", "1", "fp32", "1", "passed")
    assert (first.engine, first.engine_detail, first.infer_ms) == ("openvino", "fp32, 2 threads", 4.5)
    assert first.row == "Paddle CPU, MKLDNN True; threads 1"
    gpu = cells[-1]
    assert (gpu.device, gpu.accel, gpu.threads, gpu.status, gpu.row) == ("gpu", "False", "", "skipped",
                                                                         "Paddle GPU, TensorRT False")
    grid = build_grid(lite, repo)
    assert grid is not None
    assert grid.columns == [("fp32", "1"), ("fp32", "2"), ("fp16", "1"), ("fp16", "2"), ("int8", "1"), ("int8", "2")]
    assert grid.rows[0] == "Paddle CPU, MKLDNN True; threads 1" and grid.rows[-1] == "Paddle GPU, TensorRT False"
    assert len(grid.rows) == 5
    assert grid.counts() == {"passed": 8, "failed": 0, "skipped": 18}
    onnx = build_grid(discover_chains(output_root)[2], repo)
    assert onnx is not None and onnx.rows == ["ONNX Runtime CPU; threads 0", "ONNX Runtime GPU"]
    (cpu_cell,) = onnx.cells[("ONNX Runtime CPU; threads 0", ("fp32", "1"))]
    assert cpu_cell.engine == "onnxruntime"


def test_matrix_axes_from_log_name_only() -> None:
    step = parse_line(f"Run successfully with command - m - custom_runner --x - ./o/{RUN}_infer_gpu_usetrt_True_"
                      "precision_fp16_batchsize_8.log!")
    assert step is not None
    cell = cell_for(step, Path("/nonexistent"))
    assert cell is not None
    assert (cell.device, cell.accel, cell.precision, cell.batch) == ("gpu", "True", "fp16", "8")
    assert cell_for(parse_line("Run successfully with command - m - python train.py - ./t.log!"), Path(".")) is None


def test_agreement_table() -> None:
    rows = parse_agreement_table(AGREEMENT_LOG)
    assert rows == [("dygraph (reference)", "16/16", "0", "reference"),
                    ("paddle_inference", "16/16", "3.58e-07", "ok"),
                    ("onnxruntime", "16/16", "2.24e-07", "ok")]
    failing = AGREEMENT_LOG.replace("2.24e-07  ok", "3.10e-02  FAIL").replace("  -  ", "")
    assert parse_agreement_table(failing)[-1] == ("onnxruntime", "16/16", "3.10e-02", "FAIL")
    assert parse_agreement_table("no table here\n") == []


def test_agreement_from_save_json(tmp_path: Path) -> None:
    out = tmp_path / "test_tipc" / "output"
    log = f"./test_tipc/output/{MODEL}/paddle2onnx_infer/agreement.log"
    cmd = "python tools/check_agreement.py --tolerance=1e-4 --save-json=./agreement.json"
    write_chain(out, "paddle2onnx_infer", "results_paddle2onnx", [(failed_line(cmd, log), 9)], {log: "x\n"}, tmp_path)
    (tmp_path / "agreement.json").write_text(json.dumps({"tolerance": 1e-4, "backends": [
        {"name": "dygraph", "reference": True, "passed": True, "top1_agree": 16, "images": 16, "max_abs_diff": 0.0},
        {"name": "onnxruntime", "reference": False, "passed": False, "top1_agree": 15, "images": 16,
         "max_abs_diff": 0.031, "error": None}]}), encoding="utf-8")
    from mobilenetv3_tipc.report.extras import agreements

    rows = agreements(discover_chains(out), tmp_path)
    assert [(r.backend, r.top1, r.max_abs_diff, r.result, r.ok) for r in rows] == [
        ("dygraph", "16/16", "0", "reference", True), ("onnxruntime", "15/16", "3.10e-02", "FAIL", False)]


# ----------------------------------------------------------------------------------------------
# JUnit merge


def test_junit_merge(output_root: Path, tmp_path: Path) -> None:
    merged = tmp_path / "all.xml"
    build_report(output_root, junit_out=merged)
    root = ET.parse(merged).getroot()
    names = [s.get("name") for s in root.iter("testsuite")]
    assert names == [f"tipc.{MODEL}.{LITE}", f"tipc.{MODEL}.{LITE}.train_amp_infer_python",
                     f"tipc.{MODEL}.paddle2onnx_infer.paddle2onnx_infer_python",
                     f"tipc.{MODEL}.serving_infer.serving_infer_python",
                     f"tipc.{MODEL}.{LITE}.train_dy2static_python"]
    assert int(root.get("failures", "0")) == 2  # the AMP train step and the serving chain's prepare
    serving = [s for s in root.iter("testsuite") if "serving" in (s.get("name") or "")][0]
    assert serving.find("testcase/failure").get("message") == "prepare.sh failed with exit code 1"
    assert root.get("tests") == str(sum(1 for _ in root.iter("testcase")))


# ----------------------------------------------------------------------------------------------
# the page


class _Collector(HTMLParser):
    """Start tags with their attributes, in document order (stdlib only)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _tags(text: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Collector()
    parser.feed(text)
    return parser.tags


def test_page_failures_first_every_chain_and_links(output_root: Path) -> None:
    report = build_report(output_root)
    text = report.html.read_text(encoding="utf-8")
    tags = _tags(text)
    sections = [a.get("id") for t, a in tags if t == "section"]
    assert sections[0] == "failures"
    assert sections[:5] == ["failures", "chains-section", "matrix", "agreement-section", "steps"]
    failures = text[text.index('id="failures"'):text.index('id="chains-section"')]
    assert "train_amp_infer_python" in failures and "exit code 1" in failures
    assert "serving_infer_python" in failures and "prepare.sh failed" in failures
    assert "train_infer_python<" not in failures.replace(" / train_infer_python</a>", "")
    chain_rows = [a for t, a in tags if t == "tr" and "chain" in a.get("class", "").split()]
    assert [a["data-status"] for a in chain_rows] == ["passed", "failed", "passed", "failed", "skipped"]
    # every log link is relative and points at a file
    hrefs = [a["href"] for t, a in tags if t == "a" and "log" in a.get("class", "").split()]
    assert hrefs and all(not h.startswith(("/", "file:", "http")) for h in hrefs)
    for href in hrefs:
        assert (report.html.parent / href).is_file(), href
    # no script, no remote resource
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "<link" not in text
    # the skip reasons of one chain are grouped with their count
    groups = [a for t, a in tags if t == "tr" and "skip-group" in a.get("class", "")]
    assert any(a["data-count"] == "8" for a in groups)  # int8 on a float model: 2 mkldnn x 2 threads x 2 batches
    assert 'data-backend="onnxruntime"' in text and "2.24e-07" in text


def test_page_escapes_and_plots(output_root: Path) -> None:
    repo = output_root.parent.parent
    plots = repo / "benchmark" / "results"
    plots.mkdir(parents=True)
    (plots / "model_only.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 32)
    (output_root / "report_browser_test.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    lines = [(failed_line("python a.py --x='<b>&'", "./test_tipc/output/x.log", "exit code 2"), 1)]
    write_chain(output_root, "whole_infer", "results_evil", lines, {}, repo, junit=False)
    text = build_report(output_root).html.read_text(encoding="utf-8")
    assert "--x=&#x27;&lt;b&gt;&amp;&#x27;" in text
    assert 'src="data:image/png;base64,' in text and "benchmark/results/model_only.png" in text
    assert "report_browser_test.png" not in text


def test_cli(output_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(["--output-root", str(output_root)]) == 0
    assert (output_root / "report.html").is_file()
    assert report_main(["--output-root", str(output_root), "--summary", "--junit-out", str(tmp_path / "j.xml")]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed, \d+ failed, \d+ skipped", last)
    assert last == "15 passed, 2 failed, 21 skipped"
    assert report_main(["--output-root", str(tmp_path / "missing")]) == 2
