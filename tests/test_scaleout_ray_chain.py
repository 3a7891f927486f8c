"""The serving chain's optional Ray Serve step (``serving_ray_replicas:N`` / ``TIPC_SERVING_RAY_REPLICAS``).

* With 2 replicas (Ray installed): test_serving.sh in a small workspace (tiny model, lite
  images) ends ``0 failed``; the Ray steps (ready, client, check, stop) passed, the check
  matched Paddle Inference on every image, and no process of the app's session or using its
  Ray temp dir is left.
* With Ray made unimportable (a stub ``ray`` package first on PYTHONPATH): the app exits 77,
  the Ray steps are skipped with its reason and the chain stays green on our service.

Measured on the shared 2-core machine: the Ray chain ~60 s, the stubbed one ~20 s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc.serving_chain import session_processes
from tests.fixtures.serving import serving_workspace

pytestmark = [pytest.mark.scaleout, pytest.mark.slow, pytest.mark.tipc]

RAY_STEPS = ("server_ray_ready.log", "client_ray.log", "check_ray.log", "server_ray_stop.log")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serving_workspace(tmp_path_factory, "ray_chain")


def write_config(workspace: Path, name: str, **values: str) -> str:
    settings = {
        "model_name": "tiny", "python": "python",
        "serving_backend": "ours",
        "web_service": "deploy/serving_python/web_service.py --config deploy/serving_python/config.yml",
        "--opt op.imagenet.local_service_conf.model_config": "./inference/tiny_infer/",
        "--opt op.imagenet.local_service_conf.devices": '""',
        "--opt op.imagenet.local_service_conf.thread_num": "1",
        "ready_timeout": "240",
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


def run_chain(workspace: Path, env: dict[str, str], config: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "test_tipc/test_serving.sh", config, mode], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


def results_of(workspace: Path, mode: str) -> str:
    return (workspace / "test_tipc/output/tiny" / mode / "results_serving.log").read_text()


def class_ids(jsonl: Path) -> dict[str, tuple[int, str]]:
    """image -> (err_no, class_id list) of pipeline_http_client.py --output."""
    answers = {}
    for line in jsonl.read_text().splitlines():
        item = json.loads(line)
        response = item["response"]
        ids = dict(zip(response.get("key", []), response.get("value", []), strict=False)).get("class_id", "")
        answers[",".join(item["images"])] = (response["err_no"], ids)
    return answers


def processes_using(path: Path) -> list[int]:
    """PIDs whose command line, working folder or an open file is inside PATH."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(entry / "cwd"), *(os.readlink(fd) for fd in (entry / "fd").iterdir())]
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline or any(link.startswith(str(path)) for link in links):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="Ray is not installed (optional: pip install -r requirements-ray.txt)")
def test_chain_with_two_ray_replicas_passes_and_leaves_nothing(workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_config(workspace, "ray2", serving_ray_replicas="2")
    chain = run_chain(workspace, tipc_env, config, "ray2")
    output = chain.stdout + chain.stderr
    started = re.search(r"started the Ray Serve app: pid (\d+), port \d+, Ray temp dir (\S+),", chain.stdout)
    assert started, output[-6000:]
    sid, temp_dir = int(started[1]), Path(started[2])
    left = session_processes(sid), processes_using(temp_dir)
    for pid in {*left[0], *left[1]}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    assert chain.returncode == 0, output[-6000:]
    assert re.search(r"(?m)^\d+ passed, 0 failed, \d+ skipped$", chain.stdout), output[-3000:]
    results = results_of(workspace, "ray2")
    for step in (*RAY_STEPS, "check_cpu.log", "server_cpu_stop.log"):
        assert re.search(rf"(?m)^Run successfully with command - tiny - .* - \S*{step}!$", results), (step, results)
    out = workspace / "test_tipc/output/tiny/ray2"
    check = (out / "check_ray.log").read_text()
    assert re.search(r"(\d+)/\1 image\(s\) match Paddle Inference", check), check
    ray, ours = class_ids(out / "client_ray.jsonl"), class_ids(out / "client_cpu.jsonl")
    assert len(ray) == 16 and ray == ours and {err for err, _ in ray.values()} == {0}, (ray, ours)
    assert "Ray Serve: 2 replica(s) on" in (out / "server_ray.log").read_text()
    assert left == ([], []), f"Ray processes left: session {left[0]}, using {temp_dir}: {left[1]}"


def test_ray_unimportable_skips_the_ray_steps_chain_green(workspace: Path, tipc_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    stub = tmp_path / "no_ray"
    (stub / "ray").mkdir(parents=True)
    (stub / "ray" / "__init__.py").write_text('raise ImportError("ray is stubbed out by the test")\n')
    env = {**tipc_env, "PYTHONPATH": os.pathsep.join(p for p in (str(stub), tipc_env.get("PYTHONPATH")) if p),
           "TIPC_SERVING_RAY_REPLICAS": "2"}  # the env switch; the config says null
    chain = run_chain(workspace, env, write_config(workspace, "no_ray", serving_ray_replicas="null"), "no_ray")
    assert chain.returncode == 0, (chain.stdout + chain.stderr)[-6000:]
    assert "0 failed" in chain.stdout.splitlines()[-1]
    results = results_of(workspace, "no_ray")
    ray_lines = [line for line in results.splitlines() if "server_ray" in line or "(Ray Serve," in line]
    assert len(ray_lines) == 3, results  # ready, client, check: nothing left to stop
    assert all(line.startswith("Run skipped") and "Ray Serve is not installed" in line for line in ray_lines), results
    assert re.search(r"(?m)^Run successfully with command - tiny - .*check_cpu\.log!$", results), results


def test_bad_replica_count_is_a_config_error(workspace: Path, tipc_env: dict[str, str]) -> None:
    config = write_config(workspace, "bad_ray", serving_ray_replicas="two")
    chain = run_chain(workspace, tipc_env, config, "bad_ray")
    assert chain.returncode == 2, chain.stdout + chain.stderr
    assert re.search(r"bad_ray\.txt:\d+.*serving_ray_replicas 'two'", chain.stderr), chain.stderr
