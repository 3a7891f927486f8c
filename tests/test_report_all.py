"""test_tipc/test_all.sh on a tiny fake repository: stub chain scripts, no training.

The stubs write results files in the harness's format, so the run-all's mapping, order,
results discovery, continuation past a red chain, summary line, merged JUnit file and report are
checked in a second, without Paddle.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# A chain stub: writes results_<kind>.log (+ .times) for CONFIG MODE; a config whose name has
# "amp" fails its first step; exit 1 on a failed step, like tipc_finish.
STUB = r"""#!/usr/bin/env bash
set -uo pipefail
config="$1"
mode="$2"
model="$(grep -m1 '^model_name:' "${config}" | cut -d: -f2)"
out="./test_tipc/output/${model}/${mode}"
mkdir -p "${out}"
stem="$(basename "${config}" .txt)"
name="results_KIND"  # the engine's naming: a trainer variant gets its own file
[[ "${stem}" =~ ^train_.+_infer_python$ ]] && name="results_KIND.${stem}"
status="${out}/${name}.log"
: >"${status}"
: >"${out}/${name}.times"
printf 'step one of %s\n' "${stem}" >"${out}/${stem}_one.log"
if [[ "${stem}" == *amp* ]]; then
  echo "Run failed with command - ${model} - python train.py --amp - ${out}/${stem}_one.log! (exit code 1)" \
    >>"${status}"
else
  echo "Run successfully with command - ${model} - python train.py - ${out}/${stem}_one.log!" >>"${status}"
fi
echo "Run skipped with command - ${model} - python infer.py --use-gpu=True - (not run)! (needs CUDA)" >>"${status}"
printf '3\n0\n' >>"${out}/${name}.times"
cat "${status}"
if grep -q '^Run failed' "${status}"; then echo "1 passed, 1 failed, 1 skipped"; exit 1; fi
echo "1 passed, 0 failed, 1 skipped"
"""
PREPARE = r"""#!/usr/bin/env bash
set -uo pipefail
echo "prepare $1 $2"
[[ "$1" != *badprep* ]]
"""


def _config(path: Path, model: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"===========================train_params===========================\nmodel_name:{model}\n",
                    encoding="utf-8")


def make_fake_repo(tmp_path: Path) -> Path:
    """Two fake models' configs, stub prepare.sh and chain scripts, and test_all.sh, under tmp_path/repo."""
    repo = tmp_path / "repo"
    tipc = repo / "test_tipc"
    tipc.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "test_tipc" / "test_all.sh", tipc / "test_all.sh")
    (tipc / "prepare.sh").write_text(PREPARE, encoding="utf-8")
    (tipc / "test_train_inference_python.sh").write_text(STUB.replace("KIND", "python"), encoding="utf-8")
    (tipc / "test_paddle2onnx.sh").write_text(STUB.replace("KIND", "paddle2onnx"), encoding="utf-8")
    configs = tipc / "configs"
    for name in ("train_infer_python", "train_amp_infer_python", "train_pact_infer_python", "train_ptq_infer_python",
                 "paddle2onnx_infer_python", "serving_infer_python", "notes"):
        _config(configs / "fake_small" / f"{name}.txt", "fake_small")
    _config(configs / "fake_badprep" / "train_infer_python.txt", "fake_badprep")
    # a stale hand-run results file of the lite MODE must not show up as this run's
    stale = repo / "test_tipc/output/fake_small/lite_train_lite_infer/results_python.log"
    stale.parent.mkdir(parents=True)
    stale.write_text("Run failed with command - fake_small - old - x.log! (exit code 1)\n", encoding="utf-8")
    return repo


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    return make_fake_repo(tmp_path)


def _run(repo: Path, *models: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["TIPC_REPORT_PYTHON"] = sys.executable
    env["CHROMIUM"] = "/nonexistent-chromium"  # no screenshot here: tests/test_report_browser.py does that
    env["NO_COLOR"] = "1"
    return subprocess.run(["bash", "test_tipc/test_all.sh", *models], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_run_all_maps_orders_continues_and_summarises(fake_repo: Path) -> None:
    done = _run(fake_repo)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    # fake_badprep: 1 failed (prepare); fake_small: train 1+1, amp 1 failed + 1 skipped, pact 1+1, p2o 1+1,
    # ptq/serving without scripts and notes.txt without a chain: 1 skipped each
    assert lines[-1] == "3 passed, 2 failed, 7 skipped"
    out = fake_repo / "test_tipc" / "output"
    rows = [line.split("\t") for line in (out / "test_all.tsv").read_text(encoding="utf-8").splitlines()]
    assert rows[0][:5] == ["model", "mode", "config", "script", "status"]
    order = [(Path(r[2]).stem, r[4]) for r in rows[1:]]
    assert order == [
        ("train_infer_python", "failed"),  # fake_badprep: prepare.sh failed
        ("train_infer_python", "passed"),
        ("train_ptq_infer_python", "skipped"),
        ("paddle2onnx_infer_python", "passed"),
        ("serving_infer_python", "skipped"),
        ("train_amp_infer_python", "failed"),
        ("train_pact_infer_python", "passed"),
        ("notes", "skipped"),
    ]
    assert "prepare.sh" in rows[1][-1] and "not found" in rows[3][-1]
    lite = out / "fake_small" / "lite_train_lite_infer"
    assert sorted(p.name for p in lite.glob("results_*")) == sorted(
        f"results_python{stem}.{ext}" for stem in ("", ".train_amp_infer_python", ".train_pact_infer_python")
        for ext in ("log", "times"))
    merged = ET.parse(out / "results_all.xml").getroot()
    assert len(merged.findall("testsuite")) == 8
    assert merged.get("failures") == "2"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<tr class="chain ') == 8
    assert re.search(r'id="failures".*train_amp_infer_python', html, re.S)
    assert "no screenshot" in done.stderr


def test_run_all_one_model_and_usage(fake_repo: Path) -> None:
    done = _run(fake_repo, "fake_badprep")
    assert done.returncode == 1
    assert done.stdout.strip().splitlines()[-1] == "0 passed, 1 failed, 0 skipped"
    missing = _run(fake_repo, "no_such_model")
    assert missing.returncode == 2 and "no model 'no_such_model'" in missing.stderr


def test_run_all_stops_the_running_chain_on_term(fake_repo: Path) -> None:
    import signal
    import time

    sleeper = fake_repo / "test_tipc" / "test_train_inference_python.sh"
    sleeper.write_text('#!/usr/bin/env bash\necho "$$" > chain.pid\nsleep 60 &\necho "$!" > sleep.pid\nwait\n',
                       encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TIPC_REPORT_PYTHON=sys.executable, NO_COLOR="1")
    proc = subprocess.Popen(["bash", "test_tipc/test_all.sh", "fake_small"], cwd=fake_repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (fake_repo / "sleep.pid").is_file() or not (fake_repo / "sleep.pid").read_text().strip():
            assert time.monotonic() < deadline, "the stub chain never started"
            time.sleep(0.1)
        pids = [int((fake_repo / name).read_text()) for name in ("chain.pid", "sleep.pid")]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "interrupted" in err
        deadline = time.monotonic() + 10
        for pid in pids:
            while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
                assert time.monotonic() < deadline, f"process {pid} of the chain still runs"
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_catalog_of_the_real_configs_is_the_engine_mapping() -> None:
    from mobilenetv3_tipc.tipc.chain import KINDS
    from mobilenetv3_tipc.tipc.runall import BENCHMARK_SPEC, catalog

    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        runs = catalog(["mobilenet_v3_small"])
    finally:
        os.chdir(cwd)
    names = [(r.config.name, r.script, r.mode) for r in runs]
    assert names[0] == ("train_infer_python.txt", KINDS["train"][3], "lite_train_lite_infer")  # trains the weights
    assert names[-1] == ("train_infer_python.txt", "benchmark_train.sh", "benchmark_train")
    assert runs[-1].args == [BENCHMARK_SPEC] and all(not r.args for r in runs[:-1])
    configs = sorted(p.name for p in (REPO_ROOT / "test_tipc/configs/mobilenet_v3_small").glob("*.txt"))
    assert sorted({n for n, _, _ in names}) == configs and "-" not in {s for _, s, _ in names}
