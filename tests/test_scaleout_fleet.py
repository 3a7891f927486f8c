"""Two-host data-parallel CPU training over a real network stack: each host a network namespace.

One ``paddle.distributed.launch --ips=IP0,IP1`` per host (the same command on both, as on two
real machines), gloo over the namespaces' veth/bridge network, 1 epoch of the lite data; first
by hand, then through the fleet chain (prepare.sh + test_train_inference_python.sh with a
``gpu_list:IP0,IP1;-1`` config).
Measured on the 2-core CI machine: 8-13 s for the two-host run, ~14 s for the unreachable-host run
(its bound is INIT_TIMEOUT below, passed as train.py --dist-init-timeout).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc.netns import TestNetwork, list_namespaces, namespace_pids, unavailable_reason
from tests.fixtures.workspace import copy_repo, make_tipc_env, run_script

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "train.py"
START_PORT = 18500  # the scale-out helper's port range (18500-18549); namespaces have their own ports
# Seconds a rank may wait for the others at the rendezvous before it exits 1 (--dist-init-timeout).
INIT_TIMEOUT = 10
# The harness's own bound on one launch: a hang past it is killed and reported as a failure.
RUN_TIMEOUT = 240

pytestmark = [pytest.mark.scaleout]
HOSTS_MISSING = unavailable_reason()


def needs_hosts(test):  # noqa: ANN001, ANN201 - a pytest decorator
    """A test that makes namespace hosts: slow, and skipped with the reason where they cannot be made."""
    test = pytest.mark.skipif(HOSTS_MISSING is not None, reason=f"namespace hosts: {HOSTS_MISSING}")(test)
    return pytest.mark.slow(test)


@dataclass
class HostRun:
    host: str
    returncode: int | None  # None: killed by the harness at RUN_TIMEOUT
    seconds: float
    launch_output: str
    worker_log: str
    out_dir: Path


@pytest.fixture
def network() -> Iterator[TestNetwork]:
    net = TestNetwork.create(2)
    yield net
    leftovers = net.teardown()
    assert not leftovers and not list_namespaces(net.prefix), f"namespaces left behind: {leftovers}"


def launch_everywhere(net: TestNetwork, lite_data: Path, work: Path, init_timeout: float = 300) -> list[HostRun]:
    """Start the same launch command on every host at once; wait for all, bounded by RUN_TIMEOUT."""
    ips = ",".join(host.ip for host in net.hosts)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", GLOO_SOCKET_IFNAME=net.hosts[0].ifname)
    started = []
    for host in net.hosts:
        home = work / host.name
        home.mkdir(parents=True)
        cmd = [
            sys.executable, "-m", "paddle.distributed.launch", f"--ips={ips}", "--host", host.ip,
            "--nproc_per_node", "1", "--start_port", str(START_PORT), "--log_dir", str(home / "log"),
            str(TRAIN_SCRIPT), "--device", "cpu", "--data-path", str(lite_data), "--epochs", "1",
            "--output-dir", str(home / "out"), "--workers", "0", "--batch-size", "4", "--seed", "1234",
            "--dist-init-timeout", str(init_timeout),
        ]
        output = (home / "launch.txt").open("w")
        started.append((host, home, output, net.popen(host, cmd, env=env, cwd=home, stdout=output,
                                                      stderr=subprocess.STDOUT)))
    t0 = time.monotonic()
    runs = []
    for host, home, output, proc in started:
        try:
            returncode = proc.wait(timeout=max(1.0, RUN_TIMEOUT - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            returncode = None
        seconds = time.monotonic() - t0
        output.close()
        worker_log = "\n".join(p.read_text(errors="replace") for p in sorted((home / "log").glob("workerlog.*")))
        runs.append(HostRun(host.name, returncode, seconds, (home / "launch.txt").read_text(errors="replace"),
                            worker_log, home / "out"))
    net.stop_processes()  # whatever the harness had to abandon
    return runs


def logged_checksums(log: str) -> list[str]:
    return [line.split("param_checksum:", 1)[1].strip() for line in log.splitlines() if "param_checksum:" in line]


def checkpoint_checksum(out_dir: Path) -> str:
    """train.py's param_checksum (trainable parameters only) of the checkpoint rank 0 wrote."""
    from mobilenetv3_tipc.model import build_model
    from mobilenetv3_tipc.model.weights import load_weights
    from mobilenetv3_tipc.training.engine import param_checksum

    info = json.loads((out_dir / "args.json").read_text())
    model = build_model(info["model"], num_classes=info["num_classes"])
    load_weights(model, out_dir / "latest.pdparams")
    return param_checksum(model)


def describe(runs: list[HostRun]) -> str:
    return "\n".join(f"--- {r.host}: rc={r.returncode} after {r.seconds:.1f} s\n{r.launch_output[-2000:]}\n"
                     f"{r.worker_log[-3000:]}" for r in runs)


@needs_hosts
def test_two_hosts_train_one_epoch_with_identical_parameters(network: TestNetwork, lite_data: Path,
                                                            tmp_path: Path) -> None:
    runs = launch_everywhere(network, lite_data, tmp_path)
    assert [r.returncode for r in runs] == [0, 0], describe(runs)
    rank0, rank1 = runs
    assert "world size 2" in rank0.worker_log, describe(runs)

    # Only rank 0 writes: its host has the checkpoint, the other host's output dir was never made.
    assert (rank0.out_dir / "latest.pdparams").is_file()
    assert json.loads((rank0.out_dir / "args.json").read_text())["world_size"] == 2
    assert not rank1.out_dir.exists(), sorted(rank1.out_dir.rglob("*"))

    sums0, sums1 = logged_checksums(rank0.worker_log), logged_checksums(rank1.worker_log)
    assert len(sums0) == len(sums1) == 1, describe(runs)
    assert sums0 == sums1, "the ranks' parameters differ after training"
    assert checkpoint_checksum(rank0.out_dir) == sums0[0]


@needs_hosts
def test_unreachable_host_fails_within_bound(network: TestNetwork, lite_data: Path, tmp_path: Path) -> None:
    network.set_link(network.hosts[1], up=False)  # host 1's cable out: neither side can reach the other
    runs = launch_everywhere(network, lite_data, tmp_path, init_timeout=INIT_TIMEOUT)
    for run in runs:
        assert run.returncode is not None, f"{run.host} hung past {RUN_TIMEOUT} s\n{describe(runs)}"
        assert run.returncode != 0, describe(runs)
        # the bound plus Paddle's start-up (~2 s) and train.py's exit after it (faulthandler: 1 s)
        assert run.seconds < INIT_TIMEOUT + 60, describe(runs)
        assert "distributed init did not finish within" in run.worker_log, describe(runs)
        assert not (run.out_dir / "latest.pdparams").exists()


# ---------------------------------------------------------------- the fleet chain on namespace hosts

FLEET_CONFIG = "test_tipc/configs/mobilenet_v3_small/train_fleet_infer_python.txt"
MODE = "lite_train_lite_infer"
TWO_HOST_RUN = "fleet_train_gpus_-1_autocast_False_nodes_2"
# The unreachable-host chain: its train step fails red within the rendezvous bound (CHAIN_INIT_TIMEOUT,
# train.py --dist-init-timeout) plus Paddle's start-up and exit; measured 17.7 s, asserted below
# CHAIN_RED_BOUND. TIPC_STEP_TIMEOUT (set to STEP_TIMEOUT here) stops any launch that still hangs.
CHAIN_INIT_TIMEOUT = 10
CHAIN_RED_BOUND = 60
STEP_TIMEOUT = 300
LINGER_S = 15
# One CPU inference cell; 1 epoch.
FLEET_VALUES = {
    ("train_params", "--epochs"): "lite_train_lite_infer=1",
    ("infer_params", "--use-gpu"): "False",
    ("infer_params", "--enable-mkldnn"): "True",
    ("infer_params", "--cpu-threads"): "1",
    ("infer_params", "--batch-size"): "1",
    ("infer_params", "--use-tensorrt"): "False",
    ("infer_params", "--precision"): "fp32",
}


def fleet_config(source: Path, dest: Path, model: str, gpu_list: str, init_timeout: int) -> Path:
    """The shipped fleet config with MODEL, GPU_LIST, a tiny matrix and train.py --dist-init-timeout."""
    values = dict(FLEET_VALUES)
    values[("train_params", "model_name")] = model
    values[("train_params", "gpu_list")] = gpu_list
    section, out = "", []
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("====="):
            section = line.strip("=")
        elif ":" in line and not line.startswith("#"):
            key = line.split(":", 1)[0]
            line = f"{key}:{values.pop((section, key))}" if (section, key) in values else line
            if section == "train_params" and key == "--seed":
                out.append(f"--dist-init-timeout:{init_timeout}")
        out.append(line)
    assert not values, f"not in {source}: {values}"
    dest.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def fleet_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository copy in which prepare.sh ran for the fleet config (lite_data extracted)."""
    workspace = copy_repo(REPO, tmp_path_factory.mktemp("fleet_chain") / "repo")
    prepare = run_script(workspace, "test_tipc/prepare.sh", FLEET_CONFIG, MODE, timeout=600)
    assert prepare.returncode == 0, prepare.stdout[-3000:] + prepare.stderr[-3000:]
    return workspace


def run_fleet_chain(workspace: Path, config: Path, net: TestNetwork) -> tuple[subprocess.CompletedProcess[str], float]:
    # TIPC_NETNS_PREFIX: this test's hosts, not those of another test network that runs at the same time
    env = dict(make_tipc_env(workspace), TIPC_STEP_TIMEOUT=str(STEP_TIMEOUT), TIPC_NETNS_PREFIX=net.prefix)
    t0 = time.monotonic()
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", str(config), MODE], cwd=workspace,
                            env=env, capture_output=True, text=True, timeout=900, check=False)
    return result, time.monotonic() - t0


def chain_steps(workspace: Path, model: str) -> list[dict]:
    results = workspace / "test_tipc/output" / model / MODE / "results_python.json"
    return json.loads(results.read_text(encoding="utf-8"))["steps"]


def assert_nothing_left(net: TestNetwork) -> None:
    """The chain stopped every process it started in the hosts; the test's teardown removes the hosts.

    train.py's rendezvous watchdog (a child of the trainer) outlives a trainer that timed out by up to
    10 s and then exits by itself (measured), so that long is allowed.
    """
    deadline = time.monotonic() + LINGER_S
    while True:
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
                for host in net.hosts for pid in namespace_pids(host.name) if Path(f"/proc/{pid}").exists()}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"processes left in the namespace hosts after {LINGER_S} s: {left}"


@needs_hosts
@pytest.mark.tipc
def test_fleet_chain_trains_on_two_namespace_hosts(network: TestNetwork, fleet_workspace: Path) -> None:
    ip0, ip1 = (host.ip for host in network.hosts)
    model = "pytest_fleet_hosts"
    config = fleet_config(fleet_workspace / FLEET_CONFIG, fleet_workspace.parent / "fleet_hosts.txt", model,
                          f"{ip0},{ip1};-1", init_timeout=120)
    result, seconds = run_fleet_chain(fleet_workspace, config, network)
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert_nothing_left(network)
    assert result.returncode == 0, output
    assert re.search(r"^\d+ passed, 0 failed, \d+ skipped$", result.stdout, re.MULTILINE), output

    steps = {Path(s["log"]).name: s for s in chain_steps(fleet_workspace, model) if s["log"] != "(not run)"}
    train = steps[f"{TWO_HOST_RUN}_train.log"]
    assert train["status"] == "passed", train
    for host in network.hosts:  # the status line names both hosts and how each ran
        assert f"ip netns exec {host.name} env GLOO_SOCKET_IFNAME={host.ifname}" in train["command"]
        assert f"--ips={ip0},{ip1} --host={host.ip} --nproc_per_node 1" in train["command"]
    # eval, export and inference ran after it on rank 0's checkpoint
    for step in ("eval", "export", "infer_cpu_usemkldnn_True_threads_1_precision_fp32_batchsize_1"):
        assert steps[f"{TWO_HOST_RUN}_{step}.log"]["status"] == "passed", steps
    run_dir = fleet_workspace / "test_tipc/output" / model / MODE / TWO_HOST_RUN
    assert f"--pretrained={run_dir.relative_to(fleet_workspace)}/latest.pdparams" in \
        steps[f"{TWO_HOST_RUN}_eval.log"]["command"]

    # both ranks finished, only rank 0 wrote, equal parameters on both ranks
    logs = [(run_dir / "launch_log" / ip / "workerlog.0").read_text(errors="replace") for ip in (ip0, ip1)]
    assert "world size 2" in logs[0], logs[0][-3000:]
    sums = [logged_checksums(log) for log in logs]
    assert len(sums[0]) == len(sums[1]) == 1, (sums, logs[1][-3000:])
    assert sums[0] == sums[1], "the ranks' parameters differ after training"
    assert (run_dir / "latest.pdparams").is_file()
    assert not (run_dir / "launch_log" / ip1 / "output").exists()
    assert checkpoint_checksum(run_dir) == sums[0][0]
    print(f"two-host fleet chain: {seconds:.1f} s, train step {train['seconds']} s")


@needs_hosts
@pytest.mark.tipc
def test_fleet_chain_fails_red_when_a_host_is_unreachable(network: TestNetwork, fleet_workspace: Path) -> None:
    ip0, ip1 = (host.ip for host in network.hosts)
    network.set_link(network.hosts[1], up=False)  # host 1 exists but nothing reaches it
    model = "pytest_fleet_unreachable"
    config = fleet_config(fleet_workspace / FLEET_CONFIG, fleet_workspace.parent / "fleet_unreachable.txt", model,
                          f"{ip0},{ip1};-1", init_timeout=CHAIN_INIT_TIMEOUT)
    result, seconds = run_fleet_chain(fleet_workspace, config, network)
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert_nothing_left(network)
    assert result.returncode == 1, output
    steps = chain_steps(fleet_workspace, model)
    train = [s for s in steps if s["log"].endswith(f"{TWO_HOST_RUN}_train.log")]
    assert len(train) == 1 and train[0]["status"] == "failed", steps
    assert f"{ip0}: exit code" in train[0]["reason"] or f"{ip1}: exit code" in train[0]["reason"], train
    assert train[0]["seconds"] < CHAIN_RED_BOUND, train
    assert "distributed init did not finish within" in Path(fleet_workspace / train[0]["log"]).read_text()
    after = [s for s in steps if s["command"] == f"eval, export and inference of {TWO_HOST_RUN}"]
    assert len(after) == 1 and after[0]["status"] == "skipped", steps
    assert re.search(r"^0 passed, 1 failed, \d+ skipped$", result.stdout, re.MULTILINE), output
    print(f"unreachable-host fleet chain: {seconds:.1f} s, train step {train[0]['seconds']} s")


# ---------------------------------------------------------------- planning (no hosts needed)


def plan_multi_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu_list: str):  # noqa: ANN201
    from mobilenetv3_tipc.tipc import chain
    from mobilenetv3_tipc.tipc.train_chain import TrainChain

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TIPC_PYTHON", sys.executable)
    config = fleet_config(REPO / FLEET_CONFIG, tmp_path / "fleet.txt", "pytest_plan", gpu_list, init_timeout=10)
    ctx = chain.make_context("train", str(config), MODE, "results_python.log")
    return [r for r in TrainChain(ctx).runs if r.device.nodes > 1]


def test_hosts_that_are_not_here_are_skipped_with_the_per_host_hint(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # TEST-NET-3 addresses: planning only tries to bind them locally, nothing is sent anywhere.
    from mobilenetv3_tipc.tipc.train_chain import is_local_ip

    ips = ["203.0.113.1", "203.0.113.2"]
    if any(is_local_ip(ip) for ip in ips):
        pytest.skip(f"{ips} are addresses of this machine")
    (run,) = plan_multi_node(tmp_path, monkeypatch, f"{','.join(ips)};0,1")
    assert run.skip == ("multi-node needs hosts: 203.0.113.1, 203.0.113.2 are not reachable here; "
                        "run the same command on each host")
    assert run.hardware and not run.hosts
    assert "--ips=203.0.113.1,203.0.113.2" in run.train


def test_local_addresses_get_one_launch_per_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Measured by hand through the whole chain (TIPC_FLEET_START_PORT=18510): 4 passed, equal checksums, 41 s.
    (run,) = plan_multi_node(tmp_path, monkeypatch, "127.0.0.2,127.0.0.3;-1")
    assert not run.skip and [h.ip for h in run.hosts] == ["127.0.0.2", "127.0.0.3"]
    for rank, host in enumerate(run.hosts):
        assert host.argv[:2] == ["env", "GLOO_SOCKET_IFNAME=lo"]
        assert "--ips=127.0.0.2,127.0.0.3" in host.argv and f"--host={host.ip}" in host.argv
        out = [a for a in host.argv if a.startswith("--output-dir=")]
        expected = run.hosts[0].log_dir.parents[1] if rank == 0 else host.log_dir / "output"
        assert out == [f"--output-dir={expected}"], host.argv
    assert run.train == run.hosts[0].argv


@pytest.mark.parametrize(("gpu_list", "message"), [("127.0.0.2,127.0.0.2;-1", "must be distinct"),
                                                     ("127.0.0.1,127.0.0.2;-1", "does not accept 127.0.0.1")])
def test_multi_node_entries_paddle_cannot_run_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               gpu_list: str, message: str) -> None:
    from mobilenetv3_tipc.tipc.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        plan_multi_node(tmp_path, monkeypatch, gpu_list)
