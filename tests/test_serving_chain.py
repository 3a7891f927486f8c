"""test_tipc/test_serving.sh end to end: the lite chain's model, and the server cleanup on every exit path.

* ``test_serving_chain_after_lite_train``: in the session's ``tipc_workspace`` (the lite
  train chain already ran there), ``prepare.sh CONFIG serving_infer`` then
  ``test_serving.sh CONFIG`` must end with ``0 failed``.
  Both backends run there: the real Paddle Serving steps must pass (when a Python 3.9 is
  found), the differential and gRPC steps too.
* The other tests run test_serving.sh in a small copy of the scripts with the tiny model,
  where a step fails or the script is interrupted, and check no server is left behind;
  with both backends (the tiny model exported as a legacy program for the real server):
  nothing listens on either server's ports and no process of either is left afterwards,
  also after SIGTERM; with ``PADDLE_SERVING_PYTHON`` naming a missing interpreter the real
  backend's steps are skipped with that reason and the chain is green on ours.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mobilenetv3_tipc.hardware import cuda_available
from mobilenetv3_tipc.serving import paddle_serving_process as ps
from tests.fixtures.serving import REPO, serving_workspace

pytestmark = [pytest.mark.slow, pytest.mark.tipc]

SMALL_CONFIG = "test_tipc/configs/mobilenet_v3_small/serving_infer_python.txt"
RESULTS = "test_tipc/output/mobilenet_v3_small/serving_infer/results_serving.log"


def server_pids(workspace: Path, script: str = "web_service.py") -> list[int]:
    """PIDs of ``script`` processes whose working folder is ``workspace`` or inside it (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if script in cmdline and (Path(cwd) == workspace.resolve() or workspace.resolve() in Path(cwd).parents):
            found.append(int(entry.name))
    return found


REAL_SCRIPT = "paddle_serving_service.py"


def real_serving_unavailable() -> str:
    """Why no Python 3.9 for real Paddle Serving is found here ("" when one is)."""
    found = subprocess.run(["python", "-m", "mobilenetv3_tipc.serving.paddle_serving_env", "find"], cwd=REPO,
                           capture_output=True, text=True, check=False, timeout=120)
    return "" if found.returncode == 0 else (found.stderr.strip().splitlines() or ["no interpreter"])[-1]


def assert_ports_free(results: str) -> None:
    """No socket listens on any port a server of the chain used (ours: the URL; real: http + rpc)."""
    ports = {int(p) for p in re.findall(r"(?:--(?:http|rpc)-port |\b(?:http|rpc)_port=)(\d+)", results)}
    ports |= {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", results)}
    assert ports, results
    assert [p for p in sorted(ports) if ps.listening(p)] == []


def run_bash(workspace: Path, env: dict[str, str], *args: str,
             timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", *args], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_serving_chain_after_lite_train(tipc_workspace: Path, tipc_env: dict[str, str]) -> None:
    prepare = run_bash(tipc_workspace, tipc_env, "test_tipc/prepare.sh", SMALL_CONFIG, "serving_infer")
    assert prepare.returncode == 0, prepare.stdout[-3000:] + prepare.stderr[-3000:]
    chain = run_bash(tipc_workspace, tipc_env, "test_tipc/test_serving.sh", SMALL_CONFIG)
    output = chain.stdout + chain.stderr
    assert chain.returncode == 0, output[-6000:]
    assert re.search(r"(?m)^\d+ passed, 0 failed, \d+ skipped$", chain.stdout), output[-3000:]
    results = (tipc_workspace / RESULTS).read_text()
    for step in ("server_cpu_ready.log", "client_cpu.log", "check_cpu.log", "server_cpu_stop.log"):
        assert re.search(rf"(?m)^Run successfully with command - mobilenet_v3_small - .* - \S*{step}!$", results), \
            (step, results)
    gpu_state = "successfully" if cuda_available() else "skipped"
    assert re.search(rf"(?m)^Run {gpu_state} with command - .*server_gpu0_ready\.log!", results), results
    assert (tipc_workspace / RESULTS.replace(".log", ".xml")).is_file()
    check_log = (tipc_workspace / RESULTS).parent / "check_cpu.log"
    assert "16/16 image(s) match Paddle Inference" in check_log.read_text()
    assert server_pids(tipc_workspace) == []
    assert server_pids(tipc_workspace, REAL_SCRIPT) == []
    if real_serving_unavailable():
        assert re.search(r"(?m)^Run skipped .*\(real Paddle Serving, cpu\).*unavailable", results), results
        return
    for step in ("trans_model.log", "server_paddle_serving_cpu_ready.log", "client_paddle_serving_cpu.log",
                 "check_paddle_serving_cpu.log", "rpc_paddle_serving_cpu.log", "differential.log",
                 "server_paddle_serving_cpu_stop.log"):
        assert re.search(rf"(?m)^Run successfully with command - .* - \S*{step}!$", results), (step, results)
    out = (tipc_workspace / RESULTS).parent
    assert (out / "PipelineServingLogs").is_dir() and (out / "ProcessInfo.json").is_file()
    assert not (tipc_workspace / "PipelineServingLogs").exists()
    assert_ports_free(results)


# -- cleanup on failure paths (small workspace, tiny model) ---------------------------------------------------


@pytest.fixture(scope="module")
def small_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_workspace(tmp_path_factory, "serving_chain")


def write_chain_config(workspace: Path, name: str, **values: str) -> str:
    settings = {
        "model_name": "tiny", "python": "python",
        "export": "tools/export_model.py --model mobilenet_v3_small",
        "--pretrained": "./pretrain_models/tiny_pretrained.pdparams",
        "web_service": "deploy/serving_python/web_service.py --config deploy/serving_python/config.yml",
        "--opt op.imagenet.local_service_conf.model_config": "./inference/tiny_infer/",
        "--opt op.imagenet.local_service_conf.devices": '""',
        "--opt op.imagenet.local_service_conf.use_mkldnn": "False",
        "ready_timeout": "120",
        "pipeline": "deploy/serving_python/pipeline_http_client.py",
        "--image_dir": "./lite_data/val/",
        "check": "deploy/serving_python/check_responses.py",
        **values,
    }
    path = workspace / "test_tipc" / "configs" / f"{name}.txt"
    lines = ["===========================serving_params==========================="]
    lines += [f"{key}:{value}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path.relative_to(workspace))


def results_of(workspace: Path, mode: str) -> str:
    return (workspace / "test_tipc/output/tiny" / mode / "results_serving.log").read_text()


def test_small_chain_passes(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "ok")
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "ok_mode")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "0 failed" in chain.stdout
    assert server_pids(small_workspace) == []


def test_failed_client_still_stops_server(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "bad_images", **{"--image_dir": "./no_such_images/"})
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "bad_images")
    assert chain.returncode == 1, chain.stdout + chain.stderr
    results = results_of(small_workspace, "bad_images")
    assert re.search(r"(?m)^Run failed with command - tiny - .*client_cpu\.log! \(exit code 2\)$", results), results
    assert re.search(r"(?m)^Run successfully with command - .*server_cpu_stop\.log!$", results), results
    assert server_pids(small_workspace) == []


def test_server_that_never_gets_ready_is_recorded_failed(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "bad_opt", **{
        "--opt op.imagenet.local_service_conf.thread_num": "many"})
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "bad_opt")
    assert chain.returncode == 1
    results = results_of(small_workspace, "bad_opt")
    assert re.search(r"(?m)^Run failed with command - .*server_cpu_ready\.log! \(exit code 1\)$", results), results
    assert "expected an int" in (small_workspace / "test_tipc/output/tiny/bad_opt/server_cpu_ready.log").read_text()
    assert server_pids(small_workspace) == []


def test_missing_model_without_weights_fails_cleanly(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "no_model", **{
        "--opt op.imagenet.local_service_conf.model_config": "./inference/missing_infer/"})
    chain = run_bash(small_workspace, tipc_env, "test_tipc/test_serving.sh", config, "no_model")
    assert chain.returncode == 1
    results = results_of(small_workspace, "no_model")
    assert "run bash test_tipc/prepare.sh" in results
    assert "served predictions did not run" in results


def test_interrupted_chain_stops_its_server(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_chain_config(small_workspace, "interrupted", ready_timeout="120")
    proc = subprocess.Popen(["bash", "test_tipc/test_serving.sh", config, "interrupted"], cwd=small_workspace,
                            env=tipc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_pid = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"started the cpu server: pid (\d+)", line)
            if match:
                server_pid = int(match.group(1))
                break
        assert server_pid is not None
        deadline = time.monotonic() + 60
        while server_pid not in server_pids(small_workspace) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert server_pids(small_workspace) == []
    results = results_of(small_workspace, "interrupted").splitlines()
    assert results[-1].endswith("(interrupted by SIGTERM)"), results
    assert (small_workspace / "test_tipc/output/tiny/interrupted/results_serving.xml").is_file()


def test_killed_chain_leaves_no_server(small_workspace: Path, tipc_env: dict[str, str]) -> None:
    """SIGKILL of the chain: the server gets PR_SET_PDEATHSIG / --watch-parent and exits by itself."""
    config = write_chain_config(small_workspace, "killed", ready_timeout="120")
    proc = subprocess.Popen(["bash", "test_tipc/test_serving.sh", config, "killed"], cwd=small_workspace,
                            env=tipc_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_pid = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"started the cpu server: pid (\d+)", line)
            if match:
                server_pid = int(match.group(1))
                break
        assert server_pid is not None
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    deadline = time.monotonic() + 60
    while server_pids(small_workspace) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_pids(small_workspace) == []


# -- both backends (real Paddle Serving in its Python 3.9 env, our service) -----------------------------------


@pytest.fixture(scope="module")
def both_workspace(small_workspace: Path) -> Path:
    """The small workspace plus the tiny model as a legacy program (what the serving converter reads)."""
    reason = real_serving_unavailable()
    legacy = small_workspace / "inference" / "tiny_legacy_infer"
    build = subprocess.run(
        ["python", "-c", "import sys; from pathlib import Path; from tests.fixtures.serving import "
         "build_tiny_paddle_model; build_tiny_paddle_model(Path(sys.argv[1]))", str(legacy)],
        cwd=REPO, env={**os.environ, "FLAGS_enable_pir_api": "0", "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, check=False, timeout=300)
    assert build.returncode == 0 and (legacy / "inference.pdmodel").is_file(), build.stderr[-3000:]
    shutil.copytree(REPO / "images", small_workspace / "images", dirs_exist_ok=True)
    shutil.copy2(REPO / "requirements-paddle-serving.txt", small_workspace)  # names the cached env
    (small_workspace / "unavailable_reason").write_text(reason)
    return small_workspace


def both_config(workspace: Path, name: str) -> str:
    model = {"--opt op.imagenet.local_service_conf.model_config": "./inference/tiny_legacy_infer/"}
    return write_chain_config(workspace, name, serving_backend="paddle_serving|ours",
                              trans_model="tools/export_serving_model.py", **model)


def test_both_backends_pass_and_leave_nothing(both_workspace: Path, tipc_env: dict[str, str]) -> None:
    reason = (both_workspace / "unavailable_reason").read_text()
    if reason:
        pytest.skip(f"no Python 3.9 for real Paddle Serving here: {reason}")
    chain = run_bash(both_workspace, tipc_env, "test_tipc/test_serving.sh", both_config(both_workspace, "both"), "both")
    results = results_of(both_workspace, "both")
    assert chain.returncode == 0, chain.stdout[-6000:] + chain.stderr[-3000:]
    for step in ("paddle_serving_env.log", "trans_model.log", "client_paddle_serving_cpu.log",
                 "check_paddle_serving_cpu.log", "rpc_paddle_serving_cpu.log", "differential.log",
                 "server_paddle_serving_cpu_stop.log", "check_cpu.log", "server_cpu_stop.log"):
        assert re.search(rf"(?m)^Run successfully with command - tiny - .* - \S*{step}!$", results), (step, results)
    differential = (both_workspace / "test_tipc/output/tiny/both/differential.log").read_text()
    assert re.search(r"differential: \d+ passed, 0 failed", differential), differential[-3000:]
    assert server_pids(both_workspace) == [] and server_pids(both_workspace, REAL_SCRIPT) == []
    assert_ports_free(results)
    assert (both_workspace / "test_tipc/output/tiny/both/PipelineServingLogs").is_dir()
    assert not (both_workspace / "PipelineServingLogs").exists()


def test_missing_interpreter_skips_real_backend_green_on_ours(both_workspace: Path,
                                                              tipc_env: dict[str, str]) -> None:
    env = {**tipc_env, "PADDLE_SERVING_PYTHON": str(both_workspace / "no_such_python3.9")}
    chain = run_bash(both_workspace, env, "test_tipc/test_serving.sh", both_config(both_workspace, "no_py39"),
                     "no_py39")
    results = results_of(both_workspace, "no_py39")
    assert chain.returncode == 0, chain.stdout[-6000:]
    assert "0 failed" in chain.stdout.splitlines()[-1]
    skipped = [line for line in results.splitlines() if "real Paddle Serving" in line]
    assert skipped and all(line.startswith("Run skipped") and "PADDLE_SERVING_PYTHON" in line for line in skipped), \
        results
    assert re.search(r"(?m)^Run skipped .*paddle_serving_env\.log!", results), results
    assert re.search(r"(?m)^Run skipped .*differential \(our service vs real Paddle Serving\)", results), results
    assert re.search(r"(?m)^Run successfully with command - tiny - .*check_cpu\.log!$", results), results
    assert server_pids(both_workspace) == []


def signal_chain_once_real_server_forked(workspace: Path, env: dict[str, str], mode: str,
                                         sig: signal.Signals) -> tuple[int, int]:
    """Run the both-backends chain, send SIG once the real server forked its 4 processes: (its pgid, chain rc)."""
    reason = (workspace / "unavailable_reason").read_text()
    if reason:
        pytest.skip(f"no Python 3.9 for real Paddle Serving here: {reason}")
    proc = subprocess.Popen(["bash", "test_tipc/test_serving.sh", both_config(workspace, mode), mode], cwd=workspace,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pgid = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"started the paddle_serving cpu server: pid (\d+)", line)
            if match:
                pgid = int(match.group(1))
                break
        assert pgid is not None
        deadline = time.monotonic() + 120  # parent, op process, HTTP gateway, gRPC side
        while len(ps.group_members(pgid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(ps.group_members(pgid)) >= 2
        proc.send_signal(sig)
        return pgid, proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def assert_real_server_gone(workspace: Path, mode: str, pgid: int) -> str:
    log = (workspace / f"test_tipc/output/tiny/{mode}/server_paddle_serving_cpu.log").read_text()
    deadline = time.monotonic() + 60  # after a SIGKILLed chain the group ends on its own (PDEATHSIG)
    while (ps.group_members(pgid) or server_pids(workspace, REAL_SCRIPT)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: Path(f"/proc/{pid}/stat").read_text() for pid in ps.group_members(pgid)}
    assert left == {} and server_pids(workspace, REAL_SCRIPT) == [], (left, log[-3000:])
    assert_ports_free(log)
    return log


def test_sigterm_of_the_chain_stops_the_real_server_group(both_workspace: Path, tipc_env: dict[str, str]) -> None:
    pgid, rc = signal_chain_once_real_server_forked(both_workspace, tipc_env, "both_sigterm", signal.SIGTERM)
    assert rc == 143
    assert_real_server_gone(both_workspace, "both_sigterm", pgid)
    results = results_of(both_workspace, "both_sigterm")
    assert results.splitlines()[-1].endswith("(interrupted by SIGTERM)"), results


def test_killed_chain_leaves_no_real_server(both_workspace: Path, tipc_env: dict[str, str]) -> None:
    """SIGKILL of the chain: PR_SET_PDEATHSIG tells the real server's leader, which ends its whole group."""
    pgid, rc = signal_chain_once_real_server_forked(both_workspace, tipc_env, "both_killed", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert_real_server_gone(both_workspace, "both_killed", pgid)
