"""The basic chain: train -> eval -> export -> Paddle Inference (AMP, fleet, PACT, to_static, whole_infer).

Planned in full before anything runs (every config error first), then, per ``gpu_list``
entry x ``auto_cast`` value x trainer: train, eval, export, the inference matrix. A step
whose input is missing (eval after a failed train, ...) is recorded skipped with the
reason; independent steps still run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mobilenetv3_tipc.tipc.chain import (
    INFER_MODES,
    TRAIN_MODES,
    Context,
    cuda_available,
    defining_check,
    render_flag,
    safe_name,
)
from mobilenetv3_tipc.tipc.config import ConfigError, Entry, alternatives, is_null, mode_value, parse_bool
from mobilenetv3_tipc.tipc.paddle_infer import InferencePlan, check_infer_section, infer_entry, weights_name
from mobilenetv3_tipc.tipc.results import Step
from mobilenetv3_tipc.tipc.runner import (
    EXIT_SKIPPED,
    Run,
    die_with_parent,
    kill_group,
    quote_command,
    signal_group,
    step_timeout,
)

MODES = (*TRAIN_MODES, *INFER_MODES)
SECTIONS = ("train_params", "eval_params", "infer_params", "train_benchmark_params", "infer_benchmark_params")
TRAIN_KEYS = frozenset({"model_name", "python", "gpu_list", "use_gpu", "train_model_name", "train_infer_img_dir",
                        "trainer", "null"})
UNSUPPORTED_TRAINERS = {"fpgm_train": "this project has no FPGM pruning",
                        "distill_train": "this project has no knowledge distillation"}
SLOT_TRAINERS = frozenset({"pact_train", "fpgm_train", "distill_train", "to_static_train"})
# PaddleClas func_set_amp_params: the auto_cast value -> this project's train.py flags
AUTOCAST_FLAGS = {"null": [], "false": [], "amp": ["--amp", "--amp-level", "O1"],
                  "true": ["--amp", "--amp-level", "O1"], "fp16": ["--amp", "--amp-level", "O2"]}


@dataclass
class Device:
    entry: str
    kind: str  # cpu | gpu
    devices: str
    ips: str
    nproc: int
    nodes: int


@dataclass
class HostLaunch:
    """One host's part of a multi-node training: its own launch command and logs."""

    ip: str
    namespace: str  # the network namespace of a test-network host; "" for an address of this machine
    argv: list[str]
    log: Path  # the launcher's own output
    log_dir: Path  # paddle.distributed.launch --log_dir (workerlog.N)

    @property
    def label(self) -> str:
        return f"{self.ip} (namespace {self.namespace})" if self.namespace else f"{self.ip} (this machine)"


@dataclass
class TrainRun:
    name: str
    trainer: str
    device: Device
    train: list[str]
    export_entry: Entry | None
    quant: bool
    skip: str = ""
    hardware: bool = False
    gpu_env: dict[str, str] = field(default_factory=dict)
    hosts: list[HostLaunch] = field(default_factory=list)  # multi-node: one launch per host, run in parallel


AMP_ON_CPU = "AMP needs CUDA: ran in float32 here; eval/export/inference below use those weights"


def amp_check(step: Step, run_dir: Path) -> None:
    """A train step asked for AMP that trained in float32 (train.py's ``amp_applied`` in args.json)
    is skipped for missing hardware, not passed; its weights still feed the steps after it."""
    try:
        info = json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if info.get("amp") and info.get("amp_applied") is False:
        step.status, step.reason, step.hardware = "skipped", AMP_ON_CPU, True


def parse_device(ctx: Context, entry: Entry, text: str) -> Device:
    ips, _, devices = text.rpartition(";")
    items = devices.split(",")
    if all(item == "-1" for item in items):
        kind = "cpu"
    elif all(item.isdigit() for item in items):
        kind = "gpu"
    else:
        raise ctx.cfg.error(entry, f"gpu_list entry '{text}': expected -1, -1,-1, 0, 0,1 or ip1,ip2;0,1")
    listed = [ip.strip() for ip in ips.split(",")] if ips else []
    if any(not ip for ip in listed) or len(set(listed)) != len(listed):
        raise ctx.cfg.error(entry, f"gpu_list entry '{text}': the ips before ';' must be distinct and non-empty")
    if any(ip in ("127.0.0.1", "localhost") for ip in listed):  # paddle.distributed.launch refuses them
        raise ctx.cfg.error(entry, f"gpu_list entry '{text}': paddle.distributed.launch does not accept 127.0.0.1 "
                                   "in a multi-node --ips; use the hosts' own addresses (on one machine: 127.0.0.2,"
                                   "127.0.0.3 or namespace hosts)")
    return Device(text, kind, devices, ips, len(items), len(ips.split(",")) if ips else 1)


def is_local_ip(ip: str) -> bool:
    """Whether IP is an address of this host: binding to it succeeds only then (no DNS)."""
    import socket

    if ip == "localhost":
        return True
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((ip, 0))
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------- multi-node hosts
# A multi-node gpu_list entry (`ip1,ip2;-1`, upstream `ip1,ip2;0,1`) runs here only when every ip is a
# host of a namespace test network (python -m mobilenetv3_tipc.tipc.netns) or an address of this machine;
# real clusters run the printed per-host command on each machine (docs/scale-out.md).
MULTI_NODE_HINT = "run the same command on each host"
# After one host's launch failed, the others get this long to fail on their own (their logs then say
# what they waited for) before the chain stops them: the training cannot finish without every rank.
PEER_GRACE_S = 30.0


def local_ifname(ip: str) -> str:
    """The interface of this machine that holds IP ("" when `ip` cannot tell)."""
    if ip.startswith("127.") or ip in ("localhost", "::1"):
        return "lo"
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=30,
                             check=False, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():  # "2: eth0    inet 10.0.0.1/24 brd ... scope global eth0"
        words = line.split()
        if len(words) > 3 and words[2] in ("inet", "inet6") and words[3].split("/")[0] == ip:
            return words[1].split("@")[0]
    return ""


def namespace_hosts(ip: str) -> list[tuple[str, str]]:
    """(namespace, interface) of each test-network host that owns IP (needs root and iproute2).

    ``TIPC_NETNS_PREFIX`` limits the search to one network (``mtipc-<id>-``): test networks all use
    the same subnet, so two of them at once own the same addresses.
    """
    import ipaddress

    from mobilenetv3_tipc.tipc import netns

    try:
        ipaddress.ip_address(ip)
    except ValueError:  # a host name: never a namespace host
        return []
    if netns.unavailable_reason() is not None:
        return []
    prefix = os.environ.get("TIPC_NETNS_PREFIX", "").strip() or netns.PREFIX_STEM
    try:
        return [(host.name, host.ifname) for host in netns.hosts_of(ip, prefix)]
    except (netns.NetnsError, OSError, subprocess.SubprocessError):
        return []


def resolve_hosts(ips: list[str]) -> tuple[list[tuple[str, str, str]], str]:
    """Per ip (ip, namespace or "", interface), or a skip reason when the hosts cannot run here."""
    found: list[tuple[str, str, str]] = []
    missing: list[str] = []
    for ip in ips:
        hosts = namespace_hosts(ip)
        if len(hosts) > 1:
            return [], (f"multi-node hosts are ambiguous: {ip} is a host of {len(hosts)} test networks "
                        f"({', '.join(name for name, _ in hosts)}); set TIPC_NETNS_PREFIX to the one to use")
        if hosts:
            found.append((ip, *hosts[0]))
        elif is_local_ip(ip):
            found.append((ip, "", local_ifname(ip)))
        else:
            missing.append(ip)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return [], f"multi-node needs hosts: {', '.join(missing)} {verb} not reachable here; {MULTI_NODE_HINT}"
    spaces = {namespace for _, namespace, _ in found}
    if "" in spaces and len(spaces) > 1:
        inside = next(ip for ip, namespace, _ in found if namespace)
        local = next(ip for ip, namespace, _ in found if not namespace)
        return [], (f"multi-node needs hosts on one network: {inside} is a namespace host and {local} an address "
                    f"of this machine, which that test network cannot reach; {MULTI_NODE_HINT}")
    return found, ""
def basic_train_command(ctx: Context, run_dir: Path, kind: str, launcher: Sequence[str] = (),
                        trainer: str = "norm_train") -> list[str] | None:
    """``python [LAUNCHER] <TRAINER's script> <train_params flags at ctx.mode's values>``; None when null.

    The one-process train command of the basic chain, for chains that train without its eval,
    export and inference steps (benchmark_train, dy2static): no train_infer_python.txt checks.
    """
    commands = TrainChain(ctx, plan=False)
    entry = ctx.cfg.require("trainer", "the trainers to run", "train_params")
    words, _, _ = commands.trainer_command(trainer, entry)
    if words is None:
        return None
    script = words[len(ctx.python):] if words[: len(ctx.python)] == ctx.python else words
    return [*ctx.python, *launcher, *script, *commands.train_flags(run_dir, kind)]


class TrainChain:
    def __init__(self, ctx: Context, plan: bool = True) -> None:
        """PLAN=False: the command builders only (:func:`basic_train_command`), no checks, no runs."""
        self.ctx = ctx
        self.cfg = ctx.cfg
        if plan:
            self.check()

    # ------------------------------------------------------------------ plan (no side effects)

    def check(self) -> None:
        cfg = self.cfg
        for name, line in cfg.sections.items():
            if name not in SECTIONS and name:
                raise cfg.error(None, f"line {line}: section {name} is not read by this chain "
                                      f"(sections: {', '.join(SECTIONS[:3])})")
        orphans = [e for e in cfg.entries if e.section == ""]
        where = f"; lines {orphans[0].line}-{orphans[-1].line} are in no section" if orphans else ""
        if self.ctx.mode in TRAIN_MODES:
            cfg.require_section("train_params", "the train flags and trainers are read from it" + where)
        cfg.require_section("infer_params", "export and inference are configured there; without it nothing "
                                            "after training could run")
        if orphans:
            raise cfg.error(orphans[0], f"{orphans[0].key} is before any ===section=== header")
        trainers = self.trainer_names()
        for e in cfg.in_section("train_params"):
            if not e.is_flag and e.name not in TRAIN_KEYS and not e.key.endswith("_train") and e.key not in trainers:
                raise cfg.unsupported(e, f"no step reads it in train_params (keys: {', '.join(sorted(TRAIN_KEYS))}, "
                                            "trainer commands *_train, and --flags)")
        for e in cfg.in_section("eval_params"):
            if not e.is_flag and e.key not in ("eval", "null"):
                raise cfg.unsupported(e, "eval_params holds only eval: and --flags")
        check_infer_section(self.ctx, "infer_params")
        if "train_benchmark_params" in cfg.sections:  # run by benchmark_train.sh; its keys are checked here too
            from mobilenetv3_tipc.tipc.benchmark_chain import read_params

            read_params(cfg)
        self.infer = None
        entry = infer_entry(self.ctx, "infer_params")
        if entry is not None:
            self.infer = InferencePlan.from_config(self.ctx, "infer_params", entry)
        if self.ctx.mode in TRAIN_MODES:
            self.runs = self.plan_runs()

    def trainer_names(self) -> list[str]:
        entry = self.cfg.find("trainer", "train_params")
        return alternatives(entry.value) if entry is not None else []

    def trainer_command(self, name: str, entry: Entry) -> tuple[list[str] | None, Entry | None, bool]:
        """(train argv or None when null, export entry, quantized) for trainer NAME."""
        cfg = self.cfg
        if name in UNSUPPORTED_TRAINERS:
            line = cfg.entry(name, "train_params")
            if line is not None and is_null(line.value):
                return None, None, False
            if line is not None:
                raise cfg.unsupported(line, UNSUPPORTED_TRAINERS[name])
            raise cfg.error(entry, f"{name} is not supported: {UNSUPPORTED_TRAINERS[name]}")
        norm = cfg.entry("norm_train", "train_params")
        if norm is None:  # PaddleClas AMP configs keep the norm trainer on an amp_train line
            others = [e for e in cfg.in_section("train_params") if e.key.endswith("_train") and not e.is_flag
                      and e.key not in SLOT_TRAINERS and not is_null(e.value)]
            norm = others[0] if len(others) == 1 else None
        if name == "to_static_train":
            extra = cfg.entry("to_static_train", "train_params")
            if extra is None or is_null(extra.value) or norm is None:
                return None, None, False
            return self.ctx.command(norm) + extra.value.split(), self.export_entry("norm_train"), False
        line = cfg.entry(name, "train_params") or cfg.entry(name)
        if line is None and name == "norm_train":
            line = norm
        if line is None:
            raise cfg.error(entry, f"trainer '{name}' has no '{name}:' line")
        if is_null(line.value):
            return None, None, False
        quant = name == "pact_train" or "--pact_quant" in line.value.split()
        return self.ctx.command(line), self.export_entry(name), quant

    def export_entry(self, trainer: str) -> Entry | None:
        keys = [f"{trainer.removesuffix('_train')}_export"]
        if trainer == "pact_train":
            keys.append("quant_export")
        keys.append("norm_export")
        for key in keys:
            e = self.cfg.entry(key, "infer_params") or self.cfg.entry(key)
            if e is not None:
                return None if is_null(e.value) else e
        return None

    def autocast_values(self) -> tuple[Entry | None, list[str]]:
        entry = self.cfg.find("auto_cast", "train_params")
        if entry is None:
            return None, [""]
        values = alternatives(mode_value(entry.value, self.ctx.mode)) or ["null"]
        for value in values:
            if value.lower() not in AUTOCAST_FLAGS:
                raise self.cfg.error(entry, f"{entry.key}: unknown value '{value}' (null, amp, fp16)")
        return entry, values

    def plan_runs(self) -> list[TrainRun]:
        cfg = self.cfg
        gpu_entry = cfg.require("gpu_list", "the devices to train on", "train_params")
        trainer_entry = cfg.require("trainer", "the trainers to run", "train_params")
        devices = [parse_device(self.ctx, gpu_entry, text) for text in alternatives(gpu_entry.value)]
        if not devices:
            raise cfg.error(gpu_entry, "gpu_list is empty")
        _, autocasts = self.autocast_values()
        runs = []
        for device in devices:
            for autocast in autocasts:
                for trainer in alternatives(trainer_entry.value):
                    run = self.plan_run(device, autocast, trainer, trainer_entry)
                    if run is not None:
                        runs.append(run)
        return runs

    def plan_run(self, device: Device, autocast: str, trainer: str, trainer_entry: Entry) -> TrainRun | None:
        words, export, quant = self.trainer_command(trainer, trainer_entry)
        if words is None:
            return TrainRun(trainer, trainer, device, [], None, False, skip=f"{trainer} is null in {self.cfg.path}")
        if autocast:
            label = autocast
            words = words + AUTOCAST_FLAGS[autocast.lower()]
        else:
            label = str(trainer == "amp_train" or "--amp" in words or any(w.startswith("--amp_level") for w in words))
        name = safe_name(f"{trainer}_gpus_{device.devices}_autocast_{label}_nodes_{device.nodes}")
        run_dir = self.ctx.out_dir / name
        argv: list[str] = []
        gpu_env: dict[str, str] = {}
        if device.kind == "gpu" and device.nproc == 1 and device.nodes == 1:
            gpu_env = {"CUDA_VISIBLE_DEVICES": device.devices}
            argv += ["env", f"CUDA_VISIBLE_DEVICES={device.devices}"]
        script = words[len(self.ctx.python):] if words[: len(self.ctx.python)] == self.ctx.python else words
        argv += self.ctx.python
        if device.nproc > 1 or device.nodes > 1:
            argv += ["-m", "paddle.distributed.launch"]
            if device.ips:
                argv.append(f"--ips={device.ips}")
            argv += [f"--gpus={device.devices}"] if device.kind == "gpu" else ["--nproc_per_node", str(device.nproc)]
            argv += ["--log_dir", str(run_dir / "launch_log")]
        argv += script + self.train_flags(run_dir, device.kind)
        run = TrainRun(name, trainer, device, argv, export, quant, gpu_env=gpu_env)
        if device.ips:
            hosts, reason = resolve_hosts(device.ips.split(","))
            if reason:
                run.skip, run.hardware = reason, True
            else:
                run.hosts = self.plan_hosts(device, hosts, script, run_dir)
                run.train = run.hosts[0].argv
        return run

    def plan_hosts(self, device: Device, hosts: list[tuple[str, str, str]], script: list[str],
                   run_dir: Path) -> list[HostLaunch]:
        """One `paddle.distributed.launch --ips=... --host=IP` per host, the same master (the first ip).

        Rank 0 (the first ip) writes the checkpoint to the run dir; the others get an output dir of
        their own (inside their launch log dir), so a rank that wrote would show.
        """
        devices = [f"--gpus={device.devices}"] if device.kind == "gpu" else ["--nproc_per_node", str(device.nproc)]
        port = os.environ.get("TIPC_FLEET_START_PORT", "").strip()
        start_port = ["--start_port", port] if port.isdigit() else []
        ifname_var = "NCCL_SOCKET_IFNAME" if device.kind == "gpu" else "GLOO_SOCKET_IFNAME"
        out = []
        for rank, (ip, namespace, ifname) in enumerate(hosts):
            log_dir = run_dir / "launch_log" / safe_name(ip)
            argv = ["ip", "netns", "exec", namespace] if namespace else []
            if ifname:
                argv += ["env", f"{ifname_var}={ifname}"]
            argv += [*self.ctx.python, "-m", "paddle.distributed.launch", f"--ips={device.ips}", f"--host={ip}",
                     *devices, *start_port, "--log_dir", str(log_dir)]
            argv += script + self.train_flags(run_dir if rank == 0 else log_dir / "output", device.kind)
            out.append(HostLaunch(ip, namespace, argv, log_dir / "launcher.log", log_dir))
        return out

    def train_flags(self, run_dir: Path, kind: str) -> list[str]:
        flags: list[str] = []
        has_device = False
        for e in self.cfg.in_section("train_params"):
            if not e.is_flag or e.name == "auto_cast" or e.name == "use_gpu":
                continue
            value = mode_value(e.value, self.ctx.mode)
            if e.name == "output_dir":
                value = str(run_dir)
            elif e.name == "device":
                value, has_device = kind, True
            flags += render_flag(e.key, value)
        if not has_device:
            flags.append(f"--device={kind}")
        return flags

    # ------------------------------------------------------------------ run

    def __call__(self, ctx: Context, run: Run) -> None:
        if ctx.mode in TRAIN_MODES:
            for train_run in self.runs:
                self.run_one(run, train_run)
            if any(r.quant for r in self.runs):
                defining_check(run, "inference", "int8 inference")
        else:
            self.whole_infer(run)

    def run_one(self, run: Run, tr: TrainRun) -> None:
        if not tr.train:
            run.skip(tr.trainer, tr.skip, group="train")
            return
        if tr.skip:
            run.skip(quote_command(tr.train), tr.skip, group="train", hardware=tr.hardware)
            run.skip(f"eval, export and inference of {tr.name}", tr.skip, group="train", hardware=tr.hardware)
            return
        if tr.device.kind == "gpu" and not cuda_available(self.ctx.python):
            reason = f"gpu_list entry {tr.device.entry} needs CUDA; this Paddle build or machine has no GPU"
            run.skip(quote_command(tr.train), reason, group="train", hardware=True)
            run.skip(f"eval, export and inference of {tr.name}", reason, group="train", hardware=True)
            return
        run_dir = self.ctx.out_dir / tr.name
        shutil.rmtree(run_dir, ignore_errors=True)
        if tr.hosts:
            step = self.run_hosts(run, tr)
        else:
            step = run.step(tr.train, self.ctx.log(f"{tr.name}_train"), group="train",
                            check=lambda done: amp_check(done, run_dir))
        name_entry = self.cfg.find("train_model_name", "train_params")
        weights = run_dir / weights_name(name_entry.value if name_entry else "latest.pdparams")
        if step.status != "passed" and step.reason != AMP_ON_CPU:
            run.skip(f"eval, export and inference of {tr.name}", f"the train step did not produce {weights}")
            return
        self.run_eval(run, tr, weights)
        if tr.export_entry is None:
            run.skip(f"export and inference of {tr.name}", f"no export command for {tr.trainer} in {self.cfg.path}",
                     group="export")
            return
        infer_dir = run_dir / "inference"
        step = run.step(self.export_argv(tr.export_entry, weights, infer_dir, tr.gpu_env),
                        self.ctx.log(f"{tr.name}_export"), group="export")
        if step.status != "passed":
            run.skip(f"inference of {tr.name}", f"the export step did not produce {infer_dir}", group="inference")
            return
        self.run_inference(run, infer_dir, tr.name, tr.quant, tr.gpu_env)

    def run_hosts(self, run: Run, tr: TrainRun) -> Step:
        """Start every host's launch at once, wait for all (TIPC_STEP_TIMEOUT), record one train step.

        Passed when every launch exits 0; skipped when every launch exits 77; failed otherwise, on a
        timeout or an interrupt. The step's log holds each host's launcher output and worker logs.
        """
        run.check_interrupted()
        timeout = step_timeout()
        log = self.ctx.log(f"{tr.name}_train")
        command = " & ".join(quote_command(h.argv) for h in tr.hosts)
        start = time.monotonic()
        started: list[tuple[HostLaunch, subprocess.Popen]] = []
        reason = ""
        for host in tr.hosts:
            host.log_dir.mkdir(parents=True, exist_ok=True)
            try:
                with open(host.log, "wb") as handle:
                    proc = subprocess.Popen(host.argv, stdin=subprocess.DEVNULL, stdout=handle,
                                            stderr=subprocess.STDOUT, cwd=self.ctx.root, start_new_session=True,
                                            preexec_fn=die_with_parent)
            except OSError as exc:
                reason = f"cannot start on {host.ip}: {exc.strerror}"
                break
            run.background.append(proc)  # a SIGINT/SIGTERM to the chain reaches it too
            started.append((host, proc))
        first_failure = None
        while not reason:
            codes = [proc.poll() for _, proc in started]
            if all(code is not None for code in codes):
                break
            now = time.monotonic()
            if run.signum is not None:
                reason = f"interrupted by {signal.Signals(run.signum).name}"
            elif now - start > timeout:
                reason = f"timed out after {timeout} s"
            elif any(code not in (None, 0) for code in codes):
                first_failure = first_failure or now
                if now - first_failure > PEER_GRACE_S:
                    reason = f"stopped {PEER_GRACE_S:.0f} s after another host failed"
            time.sleep(0.2)
        for _, proc in started:  # SIGTERM every group first: a launcher stops its workers
            if proc.poll() is None:
                signal_group(proc.pid, signal.SIGTERM)
        for _, proc in started:
            kill_group(proc)
            signal_group(proc.pid, signal.SIGKILL)  # nothing a launch started outlives the step
            run.background.remove(proc)
        seconds = round(time.monotonic() - start, 1)
        codes = {host.ip: proc.returncode for host, proc in started}
        self.write_hosts_log(log, tr, codes, seconds)
        exited = [f"{ip}: exit code {code}" for ip, code in codes.items() if code not in (0, None) and code >= 0]
        stopped = [ip for ip, code in codes.items() if code is not None and code < 0]
        status = "passed"
        if not reason and codes and all(code == EXIT_SKIPPED for code in codes.values()):
            status, reason = "skipped", "every host's launch exited 77"
        elif reason or exited or stopped:
            status = "failed"
            reason = "; ".join(part for part in (reason, ", ".join(exited),
                                                 f"stopped on {', '.join(stopped)}" if stopped else "") if part)
        step = Step(status, run.results.model, command, str(log), reason, seconds=seconds,
                    hardware=status == "skipped", group="train")
        run.results.add(step)
        if reason.startswith("interrupted"):
            run.check_interrupted()
        return step

    @staticmethod
    def write_hosts_log(log: Path, tr: TrainRun, codes: dict[str, int | None], seconds: float) -> None:
        """One log for the step: per host its command, exit code, launcher output and worker logs."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as out:
            out.write(f"multi-node training on {len(tr.hosts)} hosts, {seconds} s; rank 0 = {tr.hosts[0].ip}\n")
            for rank, host in enumerate(tr.hosts):
                code = codes.get(host.ip)
                state = "not started" if host.ip not in codes else f"exit code {code}"
                out.write(f"\n===== host {host.label}, node rank {rank}: {state}\n{quote_command(host.argv)}\n")
                for part in [host.log, *sorted(host.log_dir.glob("workerlog.*"))]:
                    if part.is_file():
                        out.write(f"----- {part}\n")
                        out.write(part.read_text(encoding="utf-8", errors="replace"))

    def run_eval(self, run: Run, tr: TrainRun, weights: Path) -> None:
        entry = self.cfg.find("eval", "eval_params") or self.cfg.entry("eval")
        if entry is None or is_null(entry.value):
            run.skip(f"eval of {tr.name}", f"eval is null or absent in {self.cfg.path}", group="eval")
            return
        argv = (["env", *(f"{k}={v}" for k, v in tr.gpu_env.items())] if tr.gpu_env else []) + self.ctx.command(entry)
        data = self.cfg.find("data_path", "train_params", flag=True)
        if data is not None:
            argv += render_flag(data.key, mode_value(data.value, self.ctx.mode))
        device = self.cfg.find("device", "train_params", flag=True)
        argv += render_flag(device.key if device else "--device", tr.device.kind)
        pretrained = self.cfg.find("pretrained", "train_params", flag=True)
        argv += render_flag(pretrained.key if pretrained else "--pretrained", str(weights))
        for e in self.cfg.in_section("eval_params"):
            if e.is_flag:
                argv += render_flag(e.key, mode_value(e.value, self.ctx.mode))
        run.step(argv, self.ctx.log(f"{tr.name}_eval"), group="eval")

    def export_argv(self, entry: Entry, weights: Path | str, out: Path | str,
                    gpu_env: dict[str, str] | None = None) -> list[str]:
        argv = self.ctx.command(entry)
        pretrained = self.cfg.find("pretrained", "infer_params", flag=True)
        save = self.cfg.find("save_inference_dir", "infer_params", flag=True)
        return (argv + render_flag(pretrained.key if pretrained else "--pretrained", str(weights))
                + render_flag(save.key if save else "--save-inference-dir", str(out)))

    def run_inference(self, run: Run, model_dir: Path | str, prefix: str, quant: bool,
                      gpu_env: dict[str, str] | None = None) -> None:
        if self.infer is None:
            run.skip(f"inference of {prefix}", f"inference is null or absent in {self.cfg.path}", group="inference")
            return
        self.infer.run(self.ctx, run, model_dir, prefix, quant, gpu_env=gpu_env)

    def whole_infer(self, run: Run) -> None:
        cfg, model = self.cfg, self.ctx.model
        weights = (cfg.get("train_model", None, "infer_params") or cfg.get("train_model")
                   or f"./pretrain_models/{model}_pretrained.pdparams")
        quant_entry = cfg.find("infer_quant")
        quant = cfg.flag(quant_entry) if quant_entry is not None and not is_null(quant_entry.value) else False
        model_dir: Path | str = cfg.get("infer_model") or f"./inference/{model}_infer"
        export = cfg.find("infer_export")
        export_entry = None
        if export is not None and not is_null(export.value):
            try:  # PaddleClas: infer_export:True|False, a flag; Step6/Template: the export command
                export_entry = self.export_entry("norm_train") if parse_bool(export.value) else None
            except ConfigError:  # not a True/False word: a command
                export_entry = export
        if export_entry is not None:
            model_dir = self.ctx.out_dir / f"{safe_name(model)}_infer"
            if not Path(weights).is_file():
                run.fail(quote_command(self.export_argv(export_entry, weights, model_dir)),
                         f"{weights} not found: run bash test_tipc/prepare.sh {cfg.path} whole_infer", group="export")
                run.skip(f"inference of {model_dir}", "the export step failed", group="inference")
                return
            shutil.rmtree(model_dir, ignore_errors=True)
            step = run.step(self.export_argv(export_entry, weights, model_dir), self.ctx.log("whole_infer_export"),
                            group="export")
            if step.status != "passed":
                run.skip(f"inference of {model_dir}", "the export step failed", group="inference")
                return
        self.run_inference(run, model_dir, "python", quant)
        defining_check(run, "inference", "inference")
