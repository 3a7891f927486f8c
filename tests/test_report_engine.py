"""What the TIPC engine gives the report: results names, times, the grouped console, the refresh."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc import results, runner
from mobilenetv3_tipc.tipc.results import results_name

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.mark.parametrize(("config", "expected"), [
    ("test_tipc/configs/m/train_infer_python.txt", "results_python.log"),
    ("test_tipc/configs/m/train_amp_infer_python.txt", "results_python.train_amp_infer_python.log"),
    ("test_tipc/configs/m/train_fleet_infer_python.txt", "results_python.train_fleet_infer_python.log"),
    ("test_tipc/configs/m/train_pact_infer_python.txt", "results_python.train_pact_infer_python.log"),
    ("MobileNetV3_large_x1_0_train_infer_python.txt", "results_python.log"),
    ("MobileNetV3_large_x1_0_train_linux_gpu_normal_normal_infer_python_linux_gpu_cpu.txt", "results_python.log"),
    ("MobileNetV3_large_x1_0_train_amp_infer_python.txt",
     "results_python.MobileNetV3_large_x1_0_train_amp_infer_python.log"),
    ("test_tipc/configs/_pytest/amp.txt", "results_python.log"),
])
def test_train_variants_get_their_own_results_file(config: str, expected: str) -> None:
    assert results_name("results_python.log", config) == expected


def test_other_chains_keep_upstream_names() -> None:
    assert results_name("results_ptq.log", "x/train_ptq_infer_python.txt") == "results_ptq.log"
    assert results_name("results_ptq.log", "x/train_infer_python.txt") == "results_ptq.log"
    assert results_name("results_paddle2onnx.log", "x/paddle2onnx_infer_python.txt") == "results_paddle2onnx.log"
    assert results_name("results_serving.log", "x/serving_infer_python.txt") == "results_serving.log"
    assert results_name("results_dy2static.log", "x/train_dy2static_python.txt") == "results_dy2static.log"


def _run(tmp_path: Path, report_root: Path | None = None) -> runner.Run:
    out = tmp_path / "out" / "m" / "mode"
    res = results.Results(out / "results_python.log", "m", "tipc.m.mode", config="cfg/train_infer_python.txt",
                          report_root=report_root)
    return runner.Run(out, res, cwd=tmp_path)


def test_json_has_config_and_times_and_junit_a_timestamp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    with run:
        run.step(["true"], run.out_dir / "ok.log")
        data = json.loads(run.results.path.with_suffix(".json").read_text())
        assert data["config"] == "cfg/train_infer_python.txt" and ISO_Z.match(data["started"])
        assert data["finished"] == ""
        assert run.results.finish() == 0
    data = json.loads(run.results.path.with_suffix(".json").read_text())
    assert ISO_Z.match(data["finished"]) and data["finished"] >= data["started"]
    suite = ET.parse(run.results.path.with_suffix(".xml")).getroot().find("testsuite")
    assert suite is not None and suite.get("timestamp") == data["started"].rstrip("Z")
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed, 0 skipped"


def test_console_groups_skips_by_reason_and_the_log_keeps_every_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    with run:
        for batch in (1, 2, 4):
            run.skip(f"infer --use-gpu=True --batch-size={batch}", "GPU inference needs CUDA", hardware=True)
        run.step(["true"], run.out_dir / "ok.log")
        run.skip("infer --precision=int8", "int8 needs a quantized model")
        run.skip("infer --use-gpu=True --batch-size=8", "GPU inference needs CUDA", hardware=True)
        run.step(["bash", "-c", "exit 3"], run.out_dir / "bad.log")
        assert run.results.finish() == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Run successfully with command - m - true - ")
    assert out[1].startswith("Run failed with command - m - bash -c 'exit 3' - ")
    assert out[2] == "skipped 4: GPU inference needs CUDA"
    assert out[3] == "Run skipped with command - m - infer --precision=int8 - (not run)! (int8 needs a quantized model)"
    assert out[4] == "1 passed, 1 failed, 5 skipped"
    lines = run.results.path.read_text().splitlines()
    assert len(lines) == 7 and sum(line.startswith("Run skipped") for line in lines) == 5


def test_finish_refreshes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, report_root=tmp_path / "out")
    with run:
        run.step(["true"], run.out_dir / "ok.log")
        assert run.results.finish() == 0
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "train_infer_python" in html
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == f"report: {tmp_path / 'out' / 'report.html'}" and out[-1] == "1 passed, 0 failed, 0 skipped"


def test_a_failing_report_is_one_warning_and_keeps_the_verdict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPC_REPORT_PYTHON", "false")  # an interpreter that always fails
    run = _run(tmp_path, report_root=tmp_path / "out")
    with run:
        run.step(["true"], run.out_dir / "ok.log")
        assert run.results.finish() == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: ") and "not refreshed: exit code 1" in warnings[0]
    assert captured.out.splitlines()[-1] == "1 passed, 0 failed, 0 skipped"
    assert not (tmp_path / "out" / "report.html").exists()
