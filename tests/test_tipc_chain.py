"""End-to-end TIPC chains on CPU (real train.py, export and Paddle Inference).

The small-model lite chain runs once per session (conftest ``tipc_lite_run``) in an
isolated copy of the repository; the AMP, fleet and failing-step chains run in the
same copy with test-only configs derived from the shipped ones (1 epoch, a one-run
inference matrix, their own ``model_name`` so they never touch the lite results).
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fixtures.workspace import ChainRun, run_script

pytestmark = [pytest.mark.slow, pytest.mark.tipc]

LINE_RE = re.compile(r"^Run (successfully|failed|skipped) with command - (\S+) - (.+) - (.+?)!( \((.+)\))?$")
SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")
MODE = "lite_train_lite_infer"
RUN = "norm_train_gpus_-1_autocast_False_nodes_1"
NO_CUDA = "needs CUDA; this Paddle build or machine has no GPU"
TINY_MATRIX = {
    ("infer_params", "--use-gpu"): "True|False",
    ("infer_params", "--enable-mkldnn"): "True",
    ("infer_params", "--cpu-threads"): "2",
    ("infer_params", "--batch-size"): "2",
    ("infer_params", "--use-tensorrt"): "False",
    ("infer_params", "--precision"): "fp32",
    ("train_params", "--epochs"): "lite_train_lite_infer=1",
}


def parse_results(path: Path) -> list[tuple[str, str, str, str, str]]:
    """(status word, model, command, log, reason) per line; every line must be a status line."""
    text = path.read_text(encoding="utf-8")
    assert "\x1b" not in text, "ANSI escape codes in the results file"
    rows = []
    for line in text.splitlines():
        match = LINE_RE.match(line)
        assert match, f"not a status line: {line!r}"
        rows.append((match.group(1), match.group(2), match.group(3), match.group(4), match.group(6) or ""))
    return rows


def summary(stdout: str) -> tuple[int, int, int]:
    lines = [line for line in stdout.splitlines() if SUMMARY_RE.match(line)]
    assert lines, f"no summary line in:\n{stdout[-3000:]}"
    match = SUMMARY_RE.match(lines[-1])
    assert match
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def check_junit(results: Path, rows: list[tuple[str, str, str, str, str]]) -> ET.Element:
    suite = ET.parse(results.with_suffix(".xml")).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", "-1")) == len(rows)
    assert int(suite.get("failures", "-1")) == sum(r[0] == "failed" for r in rows)
    assert int(suite.get("skipped", "-1")) == sum(r[0] == "skipped" for r in rows)
    assert len(suite.findall("testcase")) == len(rows)
    return suite


def derive_config(source: Path, dest: Path, model_name: str, values: dict[tuple[str, str], str],
                  after: dict[str, str] | None = None) -> Path:
    """Copy a config, replacing the first KEY in SECTION, and inserting lines after a key."""
    section = ""
    done: set[tuple[str, str]] = set()
    out = []
    for line in source.read_text(encoding="utf-8").splitlines():
        header = re.match(r"^=+([^=]*)=+$", line.strip())
        if header:
            section = header.group(1)
        elif ":" in line and not line.startswith("#"):
            key = line.split(":", 1)[0].strip()
            if key == "model_name":
                line = f"model_name:{model_name}"
            elif (section, key) in values and (section, key) not in done:
                line = f"{key}:{values[(section, key)]}"
                done.add((section, key))
            out.append(line)
            if after and key in after:
                out.append(after[key])
            continue
        out.append(line)
    missing = set(values) - done
    assert not missing, f"keys not in {source}: {missing}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dest


def run_chain(workspace: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return run_script(workspace, "test_tipc/test_train_inference_python.sh", str(config.relative_to(workspace)), MODE)


def cuda_in(rows: list[tuple[str, str, str, str, str]]) -> bool:
    return not any(NO_CUDA in r[4] for r in rows)


# ---------------------------------------------------------------- the lite chain (the two commands)


def test_lite_chain_small_passes_on_cpu(tipc_lite_run: ChainRun) -> None:
    run = tipc_lite_run
    assert run.prepare.returncode == 0, run.prepare.stdout + run.prepare.stderr
    assert run.chain.returncode == 0, run.chain.stdout[-5000:] + run.chain.stderr[-3000:]
    passed, failed, skipped = summary(run.chain.stdout)
    assert failed == 0
    rows = parse_results(run.results)
    assert (passed, failed, skipped) == (sum(r[0] == "successfully" for r in rows), 0,
                                         sum(r[0] == "skipped" for r in rows))
    assert all(r[1] == "mobilenet_v3_small" for r in rows)
    print(f"lite chain (prepare + chain) wall time: {run.seconds:.1f} s")  # noqa: T201 - shown with -s

    out = f"test_tipc/output/mobilenet_v3_small/{MODE}"
    by_log = {r[3]: r for r in rows}
    for step in ("train", "eval", "export"):
        row = by_log[f"{out}/{RUN}_{step}.log"]
        assert row[0] == "successfully", row
    train_cmd = by_log[f"{out}/{RUN}_train.log"][2]
    for flag in ("train.py", "--device=cpu", "--epochs=2", "--batch-size=8", "--data-path=./lite_data",
                 f"--output-dir={out}/{RUN}"):
        assert flag in train_cmd.split(), (flag, train_cmd)
    assert f"--pretrained={out}/{RUN}/latest.pdparams" in by_log[f"{out}/{RUN}_eval.log"][2]

    # CPU fp32: mkldnn x threads x batch size all run and pass.
    for mkldnn in ("True", "False"):
        for threads in ("1", "2"):
            for bs in ("1", "2"):
                log = f"{out}/{RUN}_infer_cpu_usemkldnn_{mkldnn}_threads_{threads}_precision_fp32_batchsize_{bs}.log"
                assert by_log[log][0] == "successfully", log
                assert (run.workspace / log).is_file()
                assert "image_name:" in (run.workspace / log).read_text()
    infer_rows = [r for r in rows if "infer.py" in r[2]]
    assert len(infer_rows) == 2 * 2 * 2 * 3 + 2 * 3 * 2  # CPU matrix + GPU (trt x precision x bs)
    if not cuda_in(rows):
        for row in infer_rows:
            if "--use-gpu=True" in row[2] or "--use-tensorrt=True" in row[2]:
                assert row[0] == "skipped", row
        gpu_trains = [r for r in rows if "train.py" in r[2] and "--device=gpu" in r[2]]
        assert len(gpu_trains) == 2  # gpu_list entries 0 and 0,1
        assert all(r[0] == "skipped" and NO_CUDA in r[4] for r in gpu_trains)
    # int8 on the float model and fp16 without MKLDNN are skipped by the harness.
    for row in infer_rows:
        if "--precision=int8" in row[2] or ("--precision=fp16" in row[2] and "--enable-mkldnn=False" in row[2]):
            assert row[0] == "skipped" and row[3] == "(not run)", row

    suite = check_junit(run.results, rows)
    assert suite.get("name") == f"tipc.mobilenet_v3_small.{MODE}"
    for case in suite.findall("testcase"):
        assert case.find("failure") is None


def test_rerun_prepare_is_idempotent(tipc_workspace: Path) -> None:
    result = run_script(tipc_workspace, "test_tipc/prepare.sh",
                        "test_tipc/configs/mobilenet_v3_small/train_infer_python.txt", MODE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lite_data/ is up to date" in result.stdout


# ---------------------------------------------------------------- AMP and fleet chains


def test_amp_chain_on_cpu(tipc_workspace: Path) -> None:
    config = derive_config(tipc_workspace / "test_tipc/configs/mobilenet_v3_small/train_amp_infer_python.txt",
                           tipc_workspace / "test_tipc/configs/_pytest/amp.txt", "pytest_amp", TINY_MATRIX)
    result = run_chain(tipc_workspace, config)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    results = tipc_workspace / f"test_tipc/output/pytest_amp/{MODE}/results_python.log"
    rows = parse_results(results)
    run = "amp_train_gpus_-1_autocast_True_nodes_1"
    trains = [r for r in rows if r[3].endswith(f"{run}_train.log")]
    assert len(trains) == 1, rows
    assert "--amp --amp-level O1" in trains[0][2]
    args = json.loads((tipc_workspace / f"test_tipc/output/pytest_amp/{MODE}/{run}/args.json").read_text())
    assert args["amp"] is True
    assert args["amp_level"] == "O1"
    # on CPU Paddle trains in float32 (amp_applied false): the train step is a hardware skip,
    # and eval, export and one CPU inference run on its weights
    applied = args["amp_applied"]
    assert trains[0][0] == ("successfully" if applied else "skipped"), rows
    assert [r[0] for r in rows if r[3].startswith(f"test_tipc/output/pytest_amp/{MODE}/{run}_")][1:] == [
        "successfully"] * 3
    if not cuda_in(rows):
        assert any("amp_train_gpus_0_" in r[2] and r[0] == "skipped" for r in rows)
    ran = 4 if applied else 3
    assert summary(result.stdout) == (ran, 0, len(rows) - ran)
    check_junit(results, rows)


def test_fleet_chain_two_cpu_processes(tipc_workspace: Path) -> None:
    config = derive_config(tipc_workspace / "test_tipc/configs/mobilenet_v3_small/train_fleet_infer_python.txt",
                           tipc_workspace / "test_tipc/configs/_pytest/fleet.txt", "pytest_fleet", TINY_MATRIX)
    result = run_chain(tipc_workspace, config)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    out = tipc_workspace / f"test_tipc/output/pytest_fleet/{MODE}"
    rows = parse_results(out / "results_python.log")
    run = "fleet_train_gpus_-1,-1_autocast_False_nodes_1"
    train = [r for r in rows if r[3].endswith(f"{run}_train.log")]
    assert len(train) == 1 and train[0][0] == "successfully", rows
    assert "-m paddle.distributed.launch --nproc_per_node 2" in train[0][2]
    args = json.loads((out / run / "args.json").read_text())
    assert args["world_size"] == 2
    assert (out / run / "launch_log" / "workerlog.0").is_file()
    assert (out / run / "launch_log" / "workerlog.1").is_file()
    multinode = [r for r in rows if "--ips=192.168.0.1,192.168.0.2" in r[2]]
    assert len(multinode) == 1
    assert multinode[0][0] == "skipped" and multinode[0][4] == (
        "multi-node needs hosts: 192.168.0.1, 192.168.0.2 are not reachable here; run the same command on each host")
    assert summary(result.stdout)[:2] == (4, 0)


# ---------------------------------------------------------------- failure paths


def test_failing_steps_turn_the_run_red_and_later_steps_still_run(tipc_workspace: Path) -> None:
    values = dict(TINY_MATRIX)
    values[("train_params", "gpu_list")] = "-1"
    values[("train_params", "trainer")] = "broken_train|norm_train"
    values[("eval_params", "eval")] = "train.py --test-only --model mobilenet_v3_small --no-such-flag"
    config = derive_config(tipc_workspace / "test_tipc/configs/mobilenet_v3_small/train_infer_python.txt",
                           tipc_workspace / "test_tipc/configs/_pytest/failing.txt", "pytest_failing", values,
                           after={"trainer": "broken_train:train.py --model mobilenet_v3_small --no-such-flag"})
    result = run_chain(tipc_workspace, config)
    assert result.returncode == 1, result.stdout[-5000:] + result.stderr[-2000:]
    results = tipc_workspace / f"test_tipc/output/pytest_failing/{MODE}/results_python.log"
    rows = parse_results(results)
    statuses = {Path(r[3]).name if r[3] != "(not run)" else r[2]: (r[0], r[4]) for r in rows}
    broken = "broken_train_gpus_-1_autocast_False_nodes_1"
    assert statuses[f"{broken}_train.log"] == ("failed", "exit code 2")
    assert any(r[0] == "skipped" and "eval, export and inference of " + broken in r[2] for r in rows)
    # The next trainer still runs; its eval fails; export and inference after it still run and pass.
    assert statuses[f"{RUN}_train.log"][0] == "successfully"
    assert statuses[f"{RUN}_eval.log"] == ("failed", "exit code 2")
    assert statuses[f"{RUN}_export.log"][0] == "successfully"
    assert statuses[f"{RUN}_infer_cpu_usemkldnn_True_threads_2_precision_fp32_batchsize_2.log"][0] == "successfully"
    assert summary(result.stdout) == (3, 2, len(rows) - 5)
    suite = check_junit(results, rows)
    failures = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert sorted(c.get("name") for c in failures) == sorted([f"{broken}_train", f"{RUN}_eval"])
    system_out = failures[0].find("system-out")
    assert system_out is not None and "--no-such-flag" in (system_out.text or "")


def test_whole_infer_without_weights_fails_clearly(tipc_workspace: Path, tmp_path: Path) -> None:
    values = dict(TINY_MATRIX)
    values[("infer_params", "train_model")] = "./pretrain_models/does_not_exist.pdparams"
    config = derive_config(tipc_workspace / "test_tipc/configs/mobilenet_v3_small/train_infer_python.txt",
                           tipc_workspace / "test_tipc/configs/_pytest/noweights.txt", "pytest_noweights", values)
    result = run_script(tipc_workspace, "test_tipc/test_train_inference_python.sh",
                        str(config.relative_to(tipc_workspace)), "whole_infer")
    assert result.returncode == 1
    rows = parse_results(tipc_workspace / "test_tipc/output/pytest_noweights/whole_infer/results_python.log")
    assert rows[0][0] == "failed"
    assert "does_not_exist.pdparams not found: run bash test_tipc/prepare.sh" in rows[0][4]
    assert rows[-1][0] == "skipped" and "the export step failed" in rows[-1][4]
