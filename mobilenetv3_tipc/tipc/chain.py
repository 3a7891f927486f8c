"""What every chain shares: arguments, the step interpreter, commands, safe log names.

A chain is planned first (every config error is raised here, before anything is
written), then run inside a :class:`~mobilenetv3_tipc.tipc.runner.Run`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.tipc.config import Config, ConfigError, Entry, canonical, is_null, norm_key
from mobilenetv3_tipc.tipc.probe import run_short
from mobilenetv3_tipc.tipc.results import Results, Step
from mobilenetv3_tipc.tipc.results import results_name as variant_results_name
from mobilenetv3_tipc.tipc.runner import Interrupted, LockBusy, Run

OUTPUT_ROOT = Path("test_tipc/output")
SMALL_MODEL = "mobilenet_v3_small"
TRAIN_MODES = ("lite_train_lite_infer", "lite_train_whole_infer", "whole_train_whole_infer")
INFER_MODES = ("whole_infer", "klquant_whole_infer")
RESERVED_MODES: dict[str, str] = {}  # MODE -> the chain it is kept for, while that chain does not exist
KINDS = {  # chain kind -> (defining section, default mode, small-model config, script)
    "train": ("train_params", "lite_train_lite_infer", "train_infer_python.txt", "test_train_inference_python.sh"),
    "ptq": ("ptq_params", "whole_infer", "train_ptq_infer_python.txt", "test_ptq_inference_python.sh"),
    "paddle2onnx": ("paddle2onnx_params", "paddle2onnx_infer", "paddle2onnx_infer_python.txt",
                    "test_paddle2onnx.sh"),
    "serving": ("serving_params", "serving_infer", "serving_infer_python.txt", "test_serving.sh"),
    "benchmark_train": ("train_benchmark_params", "benchmark_train", "train_infer_python.txt", "benchmark_train.sh"),
    "dy2static": ("dy2static_params", "lite_train_lite_infer", "train_dy2static_python.txt",
                  "test_train_dy2static_python.sh"),
}
MODE_KIND = {"paddle2onnx_infer": "paddle2onnx", "serving_infer": "serving", "klquant_whole_infer": "ptq",
             "benchmark_train": "benchmark_train"}
SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_.,=+-]")
EXIT_USAGE = 2


class UsageError(Exception):
    pass


def kind_of(cfg: Config) -> str:
    """The chain a config describes, from its section headers (train when none matches)."""
    for kind in ("serving", "paddle2onnx", "ptq", "dy2static"):
        if KINDS[kind][0] in cfg.sections:
            return kind
    return "train"


def small_config(kind: str) -> str:
    return f"test_tipc/configs/{SMALL_MODEL}/{KINDS[kind][2]}"


def resolve_args(kind: str, args: list[str], known_modes: tuple[str, ...] = ()) -> tuple[str, str, list[str], str]:
    """CONFIG and MODE from the short or long forms: (config, mode, rest, how they were chosen).

    A lone MODE means the small model's config for that mode; a lone CONFIG its chain's
    default mode; no argument the small model's config of this chain.
    """
    if not args:
        return small_config(kind), KINDS[kind][1], [], "no arguments: the small model's config and default mode"
    first = args[0]
    looks_like_mode = re.fullmatch(r"[A-Za-z0-9_]+", first) is not None and not Path(first).is_file()
    if looks_like_mode and (first in known_modes or first in RESERVED_MODES or first in MODE_KIND
                            or first.endswith(("_infer", "_train"))):
        mode_kind = MODE_KIND.get(first, kind if kind != "prepare" else "train")
        return small_config(mode_kind), first, args[1:], f"lone MODE: the small model's {KINDS[mode_kind][2]}"
    if len(args) == 1:
        return first, "", [], "lone CONFIG: its chain's default mode"
    return first, args[1], args[2:], ""


def safe_name(text: str) -> str:
    """A file-name component from config text: no separators, no `..`."""
    name = SAFE_NAME_RE.sub("_", text).strip(".") or "_"
    return name.replace("..", "_")


def inside(root: Path, path: Path) -> Path:
    """PATH, when it stays inside ROOT (else a ConfigError)."""
    resolved = path.resolve()
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        raise ConfigError(f"{path}: a log path built from config values leaves {root}")
    return path


def render_flag(key: str, value: str) -> list[str]:
    """Upstream ``func_set_params``: nothing for a null key or value, else ``KEY=VALUE``.

    PaddleClas ``-o Section.name`` overrides become this project's ``--name`` flags (its
    scripts take flags, not ``-o``), and ``use_fp16`` becomes ``--precision``.
    """
    if is_null(key) or is_null(value):
        return []
    if norm_key(key) == "use_fp16":
        key = "--precision"
    elif key.startswith("-o "):
        key = "--" + canonical(key).replace("_", "-")
    words = key.split()
    return [*words[:-1], f"{words[-1]}={value}"]


@dataclass
class Context:
    """A planned chain: its config, mode, interpreter and output folder."""

    cfg: Config
    mode: str
    kind: str
    python: list[str]
    out_dir: Path
    results_name: str
    root: Path

    @property
    def model(self) -> str:
        return self.cfg.require("model_name", "names the output folder").value

    def log(self, name: str) -> Path:
        return inside(self.out_dir, self.out_dir / f"{safe_name(name)}.log")

    def command(self, entry: Entry, base: Path | None = None) -> list[str]:
        """The command of ENTRY's value; a ``.py`` script runs with the interpreter and must exist."""
        words = shlex.split(entry.value, posix=True) if "'" in entry.value or '"' in entry.value \
            else entry.value.split()
        if not words:
            raise self.cfg.error(entry, f"{entry.key} has no command")
        if words[0] == "-m" or words[0].endswith(".py"):
            if words[0].endswith(".py") and not ((base or self.root) / words[0]).is_file():
                raise self.cfg.unsupported(entry, f"{words[0]} is not in this repository")
            return [*self.python, *words]
        return words

    def make_run(self) -> Run:
        variant = self.results_name.split(".")[1:-1]  # results_python.<config stem>.log
        suite = ".".join(["tipc", self.model, self.mode, *variant])
        results = Results(self.out_dir / self.results_name, self.model, suite,
                          colour=sys.stdout.isatty() and not os.environ.get("NO_COLOR"),
                          config=str(self.cfg.path), report_root=OUTPUT_ROOT)
        return Run(self.out_dir, results, cwd=self.root)


PROBE_TIMEOUT = 30  # seconds; a working interpreter starts in well under one


def runs_here(words: Sequence[str]) -> str:
    """"" when ``words -c pass`` exits 0, else why not (found on PATH is not enough: a pyenv
    shim for a version that is not installed is on PATH and exits 127)."""
    if shutil.which(words[0]) is None:
        return "not found"
    problem = run_short([*words, "-c", "pass"], PROBE_TIMEOUT)
    return f"'{' '.join(words)} -c pass': {problem}" if problem else ""


def step_python(cfg: Config) -> list[str]:
    """``TIPC_PYTHON`` when set, else the config's ``python:``; it must run here (``-c pass``)."""
    override = os.environ.get("TIPC_PYTHON", "").split()
    if override:
        problem = runs_here(override)
        if problem:
            raise ConfigError(f"TIPC_PYTHON={override[0]} does not run here ({problem})")
        return override
    entry = cfg.find("python")
    words = entry.value.split() if entry is not None and not is_null(entry.value) else ["python"]
    problem = runs_here(words)
    if problem:
        raise cfg.error(entry, f"{words[0]} does not run here ({problem}); activate the venv or set "
                               "TIPC_PYTHON=/path/to/python to run this config unchanged")
    return words


def make_context(kind: str, config: str, mode: str, results_name: str, modes: tuple[str, ...] | None = None) -> Context:
    cfg = Config.load(config)
    found = kind_of(cfg)
    if found != kind and not (kind == "ptq" and found == "train" and mode in ("klquant_whole_infer", "whole_infer")):
        raise UsageError(f"{config} is a {found} config: run bash test_tipc/{KINDS[found][3]} {config}")
    mode = mode or KINDS[kind][1]
    if mode in RESERVED_MODES:
        raise UsageError(f"MODE {mode} is reserved for {RESERVED_MODES[mode]}, which is not implemented yet")
    if modes is not None and mode not in modes:
        raise UsageError(f"unknown MODE '{mode}' for this chain (one of: {', '.join(modes)})")
    if not re.fullmatch(r"[A-Za-z0-9_]+", mode):
        raise UsageError(f"MODE must be a word (letters, digits, _), got '{mode}'")
    model_entry = cfg.require("model_name", "names test_tipc/output/<model_name>/")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", model_entry.value) or model_entry.value.strip(".") == "":
        raise cfg.error(model_entry, f"model_name '{model_entry.value}' must be a plain name (letters, digits, _ . -)")
    root = Path.cwd()
    return Context(cfg, mode, kind, step_python(cfg), OUTPUT_ROOT / model_entry.value / mode,
                   variant_results_name(results_name, config), root)


def defining_check(run: Run, group: str, what: str) -> None:
    """Red when no cell of the defining step ran for a reason other than missing hardware."""
    steps = [s for s in run.results.steps if s.group == group]
    if any(s.status in ("passed", "failed") for s in steps):
        return
    soft = [s for s in steps if not s.hardware]
    if not steps:
        run.fail(what, f"{what} did not run: the config describes no {what} step", group="verdict")
    elif soft:
        run.fail(what, f"{what} did not run: every cell was skipped ({soft[0].reason})", group="verdict")


def execute(ctx: Context, body, banner: str) -> int:  # noqa: ANN001 - body(ctx, run)
    """Lock the output folder, run BODY, write the summary; the chain's exit code."""
    print(banner, flush=True)
    run = ctx.make_run()
    try:
        run.__enter__()
    except LockBusy as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return 75
    try:
        try:
            body(ctx, run)
        except Interrupted as exc:
            last: Step | None = run.results.steps[-1] if run.results.steps else None
            if last is None or not last.reason.startswith("interrupted"):
                run.fail("chain", f"interrupted by {exc}", group="verdict")
            run.stop_background()
            run.results.finish()
            return exc.exit_code
        run.stop_background()
        if run.signum is not None:
            run.fail("chain", f"interrupted by {signal.Signals(run.signum).name}", group="verdict")
            run.results.finish()
            return 128 + run.signum
        return run.results.finish()
    finally:
        run.__exit__()


_CUDA: dict[str, bool] = {}
CUDA_PROBE = ("import paddle, sys; sys.exit(0 if paddle.device.is_compiled_with_cuda() "
              "and paddle.device.cuda.device_count() > 0 else 1)")


def cuda_available(python: list[str]) -> bool:
    """Whether Paddle sees a CUDA GPU (``TIPC_CUDA=yes|no`` overrides; probed once)."""
    forced = os.environ.get("TIPC_CUDA", "").lower()
    if forced in ("yes", "no"):
        return forced == "yes"
    key = " ".join(python)
    if key not in _CUDA:
        import subprocess

        try:
            _CUDA[key] = subprocess.run([*python, "-c", CUDA_PROBE], capture_output=True, timeout=300,
                                        check=False, stdin=subprocess.DEVNULL).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _CUDA[key] = False
    return _CUDA[key]
