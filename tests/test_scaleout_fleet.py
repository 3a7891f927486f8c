"""Two-host data-parallel CPU training over a real network stack: each host a network namespace.

One ``paddle.distributed.launch --ips=IP0,IP1`` per host (the same command on both, as on two
real machines), gloo over the namespaces' veth/bridge network, 1 epoch of the lite data.
Measured on the 2-core CI machine: 8-13 s for the two-host run, ~14 s for the unreachable-host run
(its bound is INIT_TIMEOUT below, passed as train.py --dist-init-timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc.netns import TestNetwork, list_namespaces, unavailable_reason

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "train.py"
START_PORT = 18500  # the scale-out helper's port range (18500-18549); namespaces have their own ports
# Seconds a rank may wait for the others at the rendezvous before it exits 1 (--dist-init-timeout).
INIT_TIMEOUT = 10
# The harness's own bound on one launch: a hang past it is killed and reported as a failure.
RUN_TIMEOUT = 240

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"namespace hosts: {unavailable_reason()}"),
]


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
