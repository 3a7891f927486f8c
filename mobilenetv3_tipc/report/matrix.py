"""The inference matrix of a chain: one cell per inference step (engine x threads x batch x precision).

A step is an inference cell when its command runs an ``infer.py`` (Paddle Inference or ONNX
Runtime) or its log name has the harness's ``_infer_`` pattern. The configured axes come from
the command's flags (``--use-gpu``/``--use_gpu``, ``--enable-mkldnn``, ``--use-tensorrt``,
``--cpu-threads``/``--threads``, ``--batch-size``, ``--precision``/``--use_fp16``), else from the
log name (``..._infer_cpu_usemkldnn_True_threads_1_precision_fp32_batchsize_1.log``). The engine
that really ran is the status line's ``(inference engine: NAME)`` note or the JSON sidecar's
``engine``, else the step log's ``inference engine: NAME (...)`` line, else its AutoLog
``cpu_engine:`` / ``runtime:`` lines; a cell that did not run shows its configured engine only.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.cli import str2bool
from mobilenetv3_tipc.report.results import Chain, Step

FLAG_RE = re.compile(r"(?:^|\s)--?(?P<key>[A-Za-z][A-Za-z0-9_.-]*)=(?P<value>\S+)")
LOG_AXES_RE = re.compile(
    r"_infer_(?P<device>cpu|gpu)"
    r"(?:_usemkldnn_(?P<mkldnn>[^_]+))?(?:_usetrt_(?P<trt>[^_]+))?(?:_threads_(?P<threads>[^_]+))?"
    r"_precision_(?P<precision>[^_]+)_batchsize_(?P<batch>[^_.]+)"
)
ONNX_LOG_RE = re.compile(r"paddle2onnx_infer_(?P<device>cpu|gpu)_batchsize_(?P<batch>[^_.]+)")
ENGINE_RE = re.compile(r"^\s*inference engine:\s*(?P<name>[^\s(]+)(?:\s*\((?P<detail>.*)\))?", re.MULTILINE)
CPU_ENGINE_RE = re.compile(r"^\s*cpu_engine:\s*(?P<name>\S+)", re.MULTILINE)
RUNTIME_RE = re.compile(r"^\s*runtime:\s*(?P<name>\S+)", re.MULTILINE)
DEVICE_RE = re.compile(r"^\s*runtime_device:\s*(?P<name>\S+)", re.MULTILINE)
INFER_TIME_RE = re.compile(r"inference_time\(ms\):\s*(?P<ms>\d+(?:\.\d+)?)")
LOG_READ_LIMIT = 2_000_000
ALIASES = {
    "use_gpu": "use_gpu",
    "enable_mkldnn": "mkldnn",
    "use_mkldnn": "mkldnn",
    "use_tensorrt": "trt",
    "use_trt": "trt",
    "cpu_threads": "threads",
    "cpu_num_threads": "threads",
    "threads": "threads",
    "batch_size": "batch",
    "precision": "precision",
    "use_fp16": "use_fp16",
}


@dataclass
class Cell:
    """One inference step placed in the matrix."""

    runtime: str  # "paddle" or "onnxruntime"
    device: str  # "cpu" or "gpu"
    accel: str  # CPU: mkldnn True/False; GPU: trt True/False; "" when not configured
    threads: str
    batch: str
    precision: str
    status: str
    step: Step
    engine: str = ""  # what ran, from the step log
    engine_detail: str = ""
    infer_ms: float | None = None

    @property
    def row(self) -> str:
        """The configured engine: the grid's row label (with threads on CPU)."""
        if self.runtime == "onnxruntime":
            base = f"ONNX Runtime {self.device.upper()}"
        elif self.device == "gpu":
            base = "Paddle GPU" + (f", TensorRT {self.accel}" if self.accel else "")
        else:
            base = "Paddle CPU" + (f", MKLDNN {self.accel}" if self.accel else "")
        if self.device == "cpu":
            return f"{base}; threads {self.threads or 'default'}"
        return base

    @property
    def column(self) -> tuple[str, str]:
        return (self.precision, self.batch)


def _truth(value: str) -> str:
    """``"True"``/``"False"`` for a boolean word of :func:`cli.str2bool`, else VALUE as written."""
    try:
        return str(str2bool(value.strip().strip("\"'")))
    except argparse.ArgumentTypeError:
        return value


def _norm(key: str) -> str:
    return key.split(".")[-1].replace("-", "_").lower()


def is_inference_step(step: Step) -> bool:
    words = step.command.split()
    if any(Path(w).name == "infer.py" for w in words):
        return True
    return bool(LOG_AXES_RE.search(Path(step.log).name) or ONNX_LOG_RE.search(Path(step.log).name))


def cell_for(step: Step, repo: Path) -> Cell | None:
    """The matrix cell of an inference step, or None for any other step."""
    if not is_inference_step(step):
        return None
    flags: dict[str, str] = {}
    for match in FLAG_RE.finditer(step.command):
        role = ALIASES.get(_norm(match.group("key")))
        if role and role not in flags:
            flags[role] = match.group("value")
    log_name = Path(step.log).name if step.ran else ""
    axes = LOG_AXES_RE.search(log_name)
    onnx_axes = ONNX_LOG_RE.search(log_name)
    runtime = "onnxruntime" if ("onnx_python" in step.command or onnx_axes) else "paddle"
    device = "gpu" if _truth(flags.get("use_gpu", "False")) == "True" else "cpu"
    if axes and "use_gpu" not in flags:
        device = axes.group("device")
    if onnx_axes and "use_gpu" not in flags:
        device = onnx_axes.group("device")
    accel_key = "trt" if device == "gpu" else "mkldnn"
    accel = _truth(flags.get(accel_key, (axes.group(accel_key) if axes else None) or ""))
    if accel == "default":
        accel = ""
    threads = flags.get("threads", (axes.group("threads") if axes else None) or "")
    if device == "gpu":
        threads = ""
    batch = flags.get("batch", (axes.group("batch") if axes else None) or (onnx_axes.group("batch")
                                                                              if onnx_axes else "") or "1")
    if "precision" in flags:
        precision = flags["precision"].lower()
    elif "use_fp16" in flags:
        precision = "fp16" if _truth(flags["use_fp16"]) == "True" else "fp32"
    else:
        precision = (axes.group("precision") if axes else "fp32").lower()
    cell = Cell(runtime=runtime, device=device, accel=accel, threads="" if threads == "default" else threads,
                batch=batch, precision=precision, status=step.status, step=step)
    if step.ran:
        _read_engine(cell, _log_path(step.log, repo))
    if step.engine:  # the harness's own record of what ran wins over the log's text
        cell.engine = step.engine
    return cell


def _log_path(log: str, repo: Path) -> Path:
    path = Path(log)
    return path if path.is_absolute() else repo / path


def _read_engine(cell: Cell, path: Path) -> None:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            text = handle.read(LOG_READ_LIMIT)
    except OSError:
        return
    match = ENGINE_RE.search(text)
    if match:
        cell.engine, cell.engine_detail = match.group("name"), (match.group("detail") or "").strip()
    else:
        cpu = CPU_ENGINE_RE.search(text)
        device = DEVICE_RE.search(text)
        runtime = RUNTIME_RE.search(text)
        if cpu and cpu.group("name") not in ("None", "null"):
            cell.engine = cpu.group("name")
        elif device and device.group("name").startswith("gpu"):
            cell.engine = "gpu"
        elif runtime:
            cell.engine = runtime.group("name")
    timing = INFER_TIME_RE.search(text)
    if timing:
        cell.infer_ms = float(timing.group("ms"))


@dataclass
class Grid:
    """The cells of one chain laid out: rows (configured engine; threads) x columns (precision, batch)."""

    chain: Chain
    rows: list[str]
    columns: list[tuple[str, str]]
    cells: dict[tuple[str, tuple[str, str]], list[Cell]]

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for cells in self.cells.values():
            for cell in cells:
                counts[cell.status] += 1
        return counts


PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}


def _num(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def build_grid(chain: Chain, repo: Path) -> Grid | None:
    cells = [c for c in (cell_for(step, repo) for step in chain.steps) if c is not None]
    if not cells:
        return None
    # Rows in the order the chain ran them (the config's order), GPU rows after CPU ones.
    rows = sorted(dict.fromkeys(c.row for c in cells), key=lambda r: "GPU" in r)
    columns = sorted({c.column for c in cells}, key=lambda col: (PRECISION_ORDER.get(col[0], 9), col[0],
                                                                  _num(col[1])))
    table: dict[tuple[str, tuple[str, str]], list[Cell]] = {}
    for cell in cells:
        table.setdefault((cell.row, cell.column), []).append(cell)
    return Grid(chain=chain, rows=rows, columns=columns, cells=table)


def build_grids(chains: Iterable[Chain], repo: Path) -> list[Grid]:
    return [g for g in (build_grid(chain, repo) for chain in chains) if g is not None]
