"""Speed logs of the ``benchmark_train`` chain: parse a training log, write one JSON per combination,
summarise every combination as a table and a PNG plot of ips.

A combination is upstream's run-mode spec ``{model_type}_bs{batch}_{precision}_{run_mode}_{device}``,
for example ``dynamic_bs8_fp32_DP_N1C1`` (``model_type`` is ``dynamic`` or ``dynamicTostatic``,
``run_mode`` ``DP``, ``device`` ``N<nodes>C<cards per node>``).

The figures come from ``train.py``'s log lines (the TIPC training-log format)::

    [Epoch 1, iter: 4] top1: ..., loss: 1.38, avg_reader_cost: 0.001 sec, avg_batch_cost: 0.35 sec,
    avg_samples: 8.0, avg_ips: 22.9 images/sec.

Each line averages the steps since the previous line of the same epoch. The speed figures are
step-weighted over the steps after ``skip_steps`` (warm-up, the ``to_static`` compile):
``ips = samples / batch time``, summed, not a mean of per-line ips. In data-parallel runs only rank 0
logs; every rank steps in lockstep (the gradient all-reduce), so the total ``ips`` is rank 0's
``ips_per_device`` times the device count.

A speed log keeps upstream's field names (``model_name``, ``batch_size``, ``fp_item``, ``run_mode``,
``device_num``, ``ips``, ``speed_unit``, ``convergence_key``, ``convergence_value``) plus
``reader_cost``/``batch_cost`` (seconds per step), and ``status`` ``ok``/``skipped``/``failed`` with
its ``reason``: a skipped combination has a speed log too, so no combination disappears silently.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, UsageError, add_flag, run_main

logger = logging.getLogger(__name__)

SPEED_UNIT = "images/s"
CONVERGENCE_KEY = "loss:"
MODEL_TYPES = ("dynamic", "dynamicTostatic")
PRECISIONS = ("fp32", "fp16", "bf16", "amp", "amp_o2")
SPEED_SUFFIX = "_speed.json"
SUMMARY_JSON = "speed_summary.json"
SUMMARY_TABLE = "speed_summary.md"
SUMMARY_PNG = "speed_ips.png"

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
_LINE = re.compile(
    r"\[Epoch (\d+), iter: (\d+)\].*?\bloss: " + _NUMBER
    + r", avg_reader_cost: " + _NUMBER + r" sec, avg_batch_cost: " + _NUMBER
    + r" sec, avg_samples: " + _NUMBER + r", avg_ips: " + _NUMBER + r" images/sec"
)
_SPEC = re.compile(r"^(?P<model_type>dynamic|dynamicTostatic)_bs(?P<batch_size>\d+)_(?P<fp_item>[a-z0-9_]+?)"
                   r"_(?P<run_mode>DP)_(?P<device_num>N(?P<nodes>\d+)C(?P<cards>\d+))$")


class SpeedLogError(ValueError):
    """A training log without the speed lines a speed log needs; the message names the file."""


@dataclass(frozen=True)
class Combination:
    """One run of the benchmark: model type x batch size x precision x run mode x device layout."""

    model_type: str
    batch_size: int
    fp_item: str
    run_mode: str = "DP"
    device_num: str = "N1C1"

    @property
    def nodes(self) -> int:
        return int(self.device_num[1:].split("C")[0])

    @property
    def cards(self) -> int:
        return int(self.device_num.split("C")[1])

    @property
    def devices(self) -> int:
        return self.nodes * self.cards

    @property
    def spec(self) -> str:
        return f"{self.model_type}_bs{self.batch_size}_{self.fp_item}_{self.run_mode}_{self.device_num}"

    def model_name(self, model: str) -> str:
        """Upstream's ``model_name`` field: ``<model>_bs<b>_<fp>_<run_mode>`` (``_d2s`` for to_static)."""
        d2s = "_d2s" if self.model_type == "dynamicTostatic" else ""
        return f"{model}{d2s}_bs{self.batch_size}_{self.fp_item}_{self.run_mode}"


def parse_spec(spec: str) -> Combination:
    """``dynamic_bs8_fp32_DP_N1C1`` -> :class:`Combination`; a bad spec names what is wrong."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise UsageError(f"run-mode spec {spec!r}: expected {{dynamic|dynamicTostatic}}_bs<N>_<precision>_DP_N<n>C<c>, "
                         "e.g. dynamic_bs8_fp32_DP_N1C1")
    fields = match.groupdict()
    if fields["fp_item"] not in PRECISIONS:
        raise UsageError(f"run-mode spec {spec!r}: precision {fields['fp_item']!r} is not one of "
                         f"{', '.join(PRECISIONS)}")
    combo = Combination(fields["model_type"], int(fields["batch_size"]), fields["fp_item"], fields["run_mode"],
                        fields["device_num"])
    if combo.batch_size < 1 or combo.nodes < 1 or combo.cards < 1:
        raise UsageError(f"run-mode spec {spec!r}: batch size, nodes and cards must be at least 1")
    return combo


@dataclass(frozen=True)
class LogLine:
    """One ``[Epoch e, iter: i] ...`` line: the averages over its ``steps`` steps."""

    epoch: int
    iteration: int
    steps: int
    loss: float
    reader_cost: float
    batch_cost: float
    samples: float
    ips: float


def parse_train_log(text: str) -> list[LogLine]:
    """Every speed line of a training log, with the number of steps each one averages."""
    lines: list[LogLine] = []
    previous: tuple[int, int] | None = None
    for match in _LINE.finditer(text):
        epoch, iteration = int(match.group(1)), int(match.group(2))
        loss, reader, batch, samples, ips = (float(match.group(k)) for k in range(3, 8))
        steps = iteration - previous[1] if previous and previous[0] == epoch else iteration
        if steps < 1:
            raise SpeedLogError(f"log line [Epoch {epoch}, iter: {iteration}] does not follow iter {previous[1]}")
        lines.append(LogLine(epoch, iteration, steps, loss, reader, batch, samples, ips))
        previous = (epoch, iteration)
    return lines


@dataclass
class SpeedLog:
    """One combination's result; field names as upstream's benchmark ``analysis.py`` writes them."""

    model_name: str
    model: str
    model_type: str
    batch_size: int
    fp_item: str
    run_mode: str
    device_num: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    ips: float | None = None
    ips_per_device: float | None = None
    speed_unit: str = SPEED_UNIT
    reader_cost: float | None = None
    batch_cost: float | None = None
    convergence_key: str = CONVERGENCE_KEY
    convergence_value: float | None = None
    steps: int = 0
    skip_steps: int = 0
    log_file: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        return self.fp_item

    @property
    def spec(self) -> str:
        return Combination(self.model_type, self.batch_size, self.fp_item, self.run_mode, self.device_num).spec

    def file_name(self) -> str:
        return f"{self.model}_{self.spec}{SPEED_SUFFIX}"

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / self.file_name()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> SpeedLog:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise SpeedLogError(f"{path}: not a speed log ({exc})") from None


def _base(model: str, combo: Combination, **kwargs: object) -> SpeedLog:
    return SpeedLog(model_name=combo.model_name(model), model=model, model_type=combo.model_type,
                    batch_size=combo.batch_size, fp_item=combo.fp_item, run_mode=combo.run_mode,
                    device_num=combo.device_num, **kwargs)


def speed_from_log(text: str, model: str, combo: Combination, skip_steps: int = 0, log_file: str = "") -> SpeedLog:
    """The speed log of one finished run; :class:`SpeedLogError` when no step after ``skip_steps`` was logged."""
    where = log_file or "training log"
    lines = parse_train_log(text)
    if not lines:
        raise SpeedLogError(f"{where}: no '[Epoch e, iter: i] ... avg_ips: ... images/sec' lines")
    kept, seen = [], 0
    for line in lines:
        if seen >= skip_steps:
            kept.append(line)
        seen += line.steps
    if not kept:
        raise SpeedLogError(f"{where}: only {seen} steps logged, none after the {skip_steps} skipped warm-up steps")
    steps = sum(line.steps for line in kept)
    samples = sum(line.samples * line.steps for line in kept)
    batch_time = sum(line.batch_cost * line.steps for line in kept)
    reader_time = sum(line.reader_cost * line.steps for line in kept)
    if batch_time <= 0:
        raise SpeedLogError(f"{where}: batch cost is zero over the measured steps")
    per_device = samples / batch_time
    return _base(model, combo, ips=round(per_device * combo.devices, 5), ips_per_device=round(per_device, 5),
                 reader_cost=round(reader_time / steps, 5), batch_cost=round(batch_time / steps, 5),
                 convergence_value=lines[-1].loss, steps=steps, skip_steps=skip_steps, log_file=log_file)


def skipped(model: str, combo: Combination, reason: str, log_file: str = "") -> SpeedLog:
    return _base(model, combo, status="skipped", reason=reason, log_file=log_file)


def failed(model: str, combo: Combination, reason: str, log_file: str = "") -> SpeedLog:
    return _base(model, combo, status="failed", reason=reason, log_file=log_file)


def read_speed_logs(directory: str | Path) -> list[SpeedLog]:
    return [SpeedLog.read(p) for p in sorted(Path(directory).glob(f"*{SPEED_SUFFIX}"))]


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(logs: Iterable[SpeedLog]) -> str:
    """A Markdown table, one row per combination."""
    rows = ["| model | combination | status | ips (images/s) | ips/device | batch_cost (s) | reader_cost (s) "
            "| steps | last loss | reason |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for log in logs:
        rows.append(f"| {log.model} | {log.spec} | {log.status} | {_fmt(log.ips, 2)} | {_fmt(log.ips_per_device, 2)} "
                    f"| {_fmt(log.batch_cost, 4)} | {_fmt(log.reader_cost, 4)} | {log.steps} "
                    f"| {_fmt(log.convergence_value, 5)} | {log.reason.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def plot_ips(logs: Sequence[SpeedLog], path: str | Path) -> Path:
    """A horizontal bar per combination (ips); skipped/failed combinations are labelled, not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{log.model} {log.spec}" for log in logs]
    values = [log.ips if log.status == "ok" and log.ips is not None else 0.0 for log in logs]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(logs), 2) + 1.2))
    bars = ax.barh(range(len(logs)), values, color=["#3b7dd8" if log.status == "ok" else "#bbbbbb" for log in logs])
    top = max(values, default=0.0) or 1.0
    for index, log in enumerate(logs):  # (no zip(strict=...): the tipc engine runs on Python 3.9 too)
        bar, value = bars[index], values[index]
        text = f"{value:.1f}" if log.status == "ok" else log.status
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
    ax.set_yticks(range(len(logs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel(f"ips ({SPEED_UNIT}, all devices)")
    ax.set_title("benchmark_train: training throughput per combination")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_summary(directory: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path, Path]:
    """Table (Markdown), JSON list and PNG plot of every speed log in ``directory``."""
    logs = read_speed_logs(directory)
    if not logs:
        raise SpeedLogError(f"{directory}: no *{SPEED_SUFFIX} speed logs")
    out = Path(out_dir or directory)
    out.mkdir(parents=True, exist_ok=True)
    table = out / SUMMARY_TABLE
    table.write_text(summary_table(logs), encoding="utf-8")
    as_json = out / SUMMARY_JSON
    as_json.write_text(json.dumps([asdict(log) for log in logs], indent=2) + "\n", encoding="utf-8")
    return table, as_json, plot_ips(logs, out / SUMMARY_PNG)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="benchmark_train speed logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("record", "parse a training log into a speed log"),
                            ("skip", "write the speed log of a combination that cannot run here"),
                            ("fail", "write the speed log of a combination whose run failed")):
        cmd = sub.add_parser(name, help=help_text)
        add_flag(cmd, "model", required=True, help="model name, e.g. mobilenet_v3_small")
        add_flag(cmd, "spec", required=True, help="combination, e.g. dynamic_bs8_fp32_DP_N1C1")
        add_flag(cmd, "out-dir", required=True, help="folder of the speed logs")
        add_flag(cmd, "log", default="", help="the training log of the run")
        if name == "record":
            add_flag(cmd, "skip-steps", type=int, default=0, help="warm-up steps left out (default: 0)")
        else:
            add_flag(cmd, "reason", required=True, help="why it did not run / failed")
    summary = sub.add_parser("summary", help="table + PNG of every speed log in a folder")
    add_flag(summary, "dir", required=True, help="folder of the speed logs")
    add_flag(summary, "out-dir", default=None, help="where the table and plot go (default: --dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.command == "summary":
        for path in write_summary(args.dir, args.out_dir):
            print(path)
        return EXIT_OK
    combo = parse_spec(args.spec)
    if args.command == "record":
        if args.skip_steps < 0:
            raise UsageError("--skip-steps must be 0 or more")
        try:
            text = Path(args.log).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"--log {args.log}: {exc.strerror}") from None
        try:
            log = speed_from_log(text, args.model, combo, args.skip_steps, args.log)
        except SpeedLogError as exc:
            logger.error("%s", exc)
            failed(args.model, combo, str(exc), args.log).write(args.out_dir)
            return EXIT_FAILED
    elif args.command == "skip":
        log = skipped(args.model, combo, args.reason, args.log)
    else:
        log = failed(args.model, combo, args.reason, args.log)
    print(log.write(args.out_dir))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
