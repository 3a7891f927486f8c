"""Upstream's ``--profiler_options`` string, parsed once, driving :mod:`paddle.profiler`.

The string is PaddleClas/PaddleOCR's: ``key=value`` pairs separated by ``;``, for example
``batch_range=[10,20];state=CPU;tracer_option=Default;profile_path=model.profile``.

=================  =======================================================================  ===============
key                meaning                                                                  default
=================  =======================================================================  ===============
batch_range        ``[start,end]``: record training steps ``start`` .. ``end - 1`` (0-based,  ``[10,20]``
                   counted across epochs)
state              ``CPU`` (host only), ``GPU`` (host and CUDA; needs a CUDA build and a     ``All``
                   GPU, else unsupported = exit 77), ``All`` (every target this build has)
sorted_key         summary order: upstream's ``total``/``ave``/``max``/``min`` or Paddle's   ``total``
                   ``SortedKeys`` names (``CPUTotal``, ``GPUAvg``, ...)
tracer_option      ``Default`` (one row per operator type), ``OpDetail`` (each operator     ``Default``
                   expanded), ``AllOpDetail`` (expanded, one table per thread)
profile_path       the Chrome trace file; relative paths are under the run's output folder;  ``model.profile``
                   the summary table goes beside it as ``<profile_path>.summary.txt``
exit_on_finished   stop training once the range is recorded (upstream exits the process)   ``True``
timer_only         only time the steps (reader cost, batch cost, ips), no operator trace    ``False``
record_shapes      record operator input shapes in the trace                                 ``False``
profile_memory     record memory events                                                     ``False``
=================  =======================================================================  ===============

Upstream silently ignores a key or a range it cannot read; here every bad field is an error
that names it (:class:`ProfilerOptionsError`, exit code 2). Upstream's old default
``profile_path=/tmp/profile`` is replaced by a path under the output folder so a run keeps its
own trace; an absolute ``profile_path`` is still honoured.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilenetv3_tipc.cli import UnsupportedConfig, UsageError, str2bool

logger = logging.getLogger(__name__)

STATES = ("CPU", "GPU", "All")
TRACER_OPTIONS = ("Default", "OpDetail", "AllOpDetail")
# upstream's (old fluid profiler) sort names -> the host-side paddle.profiler.SortedKeys name;
# with state=GPU/All the device-side name (GPUTotal, ...) is used instead.
_UPSTREAM_SORT = {"total": "Total", "ave": "Avg", "max": "Max", "min": "Min"}
_PADDLE_SORT = tuple(f"{side}{kind}" for side in ("CPU", "GPU") for kind in ("Total", "Avg", "Max", "Min"))
BOOL_KEYS = ("exit_on_finished", "timer_only", "record_shapes", "profile_memory")
KEYS = ("batch_range", "state", "sorted_key", "tracer_option", "profile_path", *BOOL_KEYS)
SUMMARY_SUFFIX = ".summary.txt"


class ProfilerOptionsError(UsageError):
    """A ``--profiler_options`` string that cannot be read; the message names the field."""


class ProfilerRangeError(RuntimeError):
    """The run ended before the profiler recorded any step of ``batch_range`` (exit code 1)."""


@dataclass(frozen=True)
class ProfilerOptions:
    """The parsed ``--profiler_options``; see the module docstring for each field."""

    batch_range: tuple[int, int] = (10, 20)
    state: str = "All"
    sorted_key: str = "total"
    tracer_option: str = "Default"
    profile_path: str = "model.profile"
    exit_on_finished: bool = True
    timer_only: bool = False
    record_shapes: bool = False
    profile_memory: bool = False
    source: str = field(default="", compare=False)

    @property
    def op_detail(self) -> bool:
        return self.tracer_option != "Default"

    @property
    def thread_sep(self) -> bool:
        return self.tracer_option == "AllOpDetail"

    def sorted_key_name(self, device_side: bool) -> str:
        """The ``paddle.profiler.SortedKeys`` member name for the summary table."""
        if self.sorted_key in _PADDLE_SORT:
            return self.sorted_key
        return ("GPU" if device_side else "CPU") + _UPSTREAM_SORT[self.sorted_key]

    def trace_path(self, output_dir: str | Path, rank: int = 0) -> Path:
        """Where the Chrome trace goes (``.rank<N>`` appended for ranks other than 0)."""
        path = Path(self.profile_path)
        if not path.is_absolute():
            path = Path(output_dir) / path
        return path.with_name(f"{path.name}.rank{rank}") if rank else path

    def summary_path(self, output_dir: str | Path, rank: int = 0) -> Path:
        trace = self.trace_path(output_dir, rank)
        return trace.with_name(trace.name + SUMMARY_SUFFIX)


def _bad(key: str, value: str, why: str) -> ProfilerOptionsError:
    return ProfilerOptionsError(f"--profiler_options: {key}={value!r}: {why}")


def _parse_range(value: str) -> tuple[int, int]:
    inner = value.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    parts = [p.strip() for p in inner.split(",")]
    if len(parts) != 2:
        raise _bad("batch_range", value, "expected [start,end], two integers")
    try:
        start, end = int(parts[0]), int(parts[1])
    except ValueError:
        raise _bad("batch_range", value, "expected [start,end], two integers") from None
    if start < 0:
        raise _bad("batch_range", value, "start must be 0 or more")
    if end <= start:
        raise _bad("batch_range", value, "end must be greater than start (steps start..end-1 are recorded)")
    return start, end


def _parse_choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    """Case-insensitive match, returned in the canonical spelling."""
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise _bad(key, value, f"expected one of {', '.join(choices)}")


def parse_profiler_options(text: str) -> ProfilerOptions:
    """Parse upstream's ``key=value;key=value`` string; every bad field raises with its name."""
    values: dict[str, Any] = {}
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue  # tolerate "a=1;;b=2" and a trailing ";"
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ProfilerOptionsError(f"--profiler_options: {item!r} is not key=value "
                                       f"(keys: {', '.join(KEYS)})")
        if key not in KEYS:
            raise ProfilerOptionsError(f"--profiler_options: unknown key {key!r} (keys: {', '.join(KEYS)})")
        if key in values:
            raise ProfilerOptionsError(f"--profiler_options: {key} is given twice")
        if key == "batch_range":
            values[key] = _parse_range(value)
        elif key == "state":
            values[key] = _parse_choice(key, value, STATES)
        elif key == "tracer_option":
            values[key] = _parse_choice(key, value, TRACER_OPTIONS)
        elif key == "sorted_key":
            values[key] = _parse_choice(key, value, (*_UPSTREAM_SORT, *_PADDLE_SORT))
        elif key == "profile_path":
            if not value:
                raise _bad(key, value, "expected a file path")
            values[key] = value
        else:
            try:
                values[key] = str2bool(value)
            except Exception as exc:  # noqa: BLE001 - argparse.ArgumentTypeError, re-raised with the key
                raise _bad(key, value, str(exc)) from None
    return ProfilerOptions(**values, source=text)


def _cuda_available() -> bool:
    import paddle

    return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)


class TrainProfiler:
    """The per-step hook of a training loop.

    ``start()`` before the first step, ``step(batch_size)`` after every step (it returns True
    once the run should stop: ``exit_on_finished`` and the range is done), ``close()`` at the
    end: it writes the summary table and raises :class:`ProfilerRangeError` when the run ended
    before ``batch_range`` began (no trace would exist). Use as a context manager to get both.
    """

    def __init__(self, options: ProfilerOptions, output_dir: str | Path, rank: int = 0,
                 cuda: bool | None = None) -> None:
        self.options = options
        self.rank = rank
        self.trace_path = options.trace_path(output_dir, rank)
        self.summary_path = options.summary_path(output_dir, rank)
        self.steps = 0
        self.trace_written = False
        self._cuda = _cuda_available() if cuda is None else cuda
        self._prof: Any = None
        self._targets = self._choose_targets()

    def _choose_targets(self) -> list[Any] | None:
        from paddle import profiler

        if self.options.state == "CPU":
            return [profiler.ProfilerTarget.CPU]
        if self.options.state == "GPU":
            if not self._cuda:
                raise UnsupportedConfig("--profiler_options state=GPU needs a CUDA build of Paddle and a GPU; "
                                        "use state=CPU (or All) on this machine")
            return [profiler.ProfilerTarget.CPU, profiler.ProfilerTarget.GPU]
        return None  # All: every target the build supports

    def start(self) -> TrainProfiler:
        from paddle import profiler

        self.trace_path.parent.mkdir(parents=True, exist_ok=True)
        self._prof = profiler.Profiler(
            targets=self._targets,
            scheduler=self.options.batch_range,
            on_trace_ready=self._export,
            record_shapes=self.options.record_shapes,
            profile_memory=self.options.profile_memory,
            timer_only=self.options.timer_only,
        )
        self._prof.start()
        start, end = self.options.batch_range
        logger.info("profiler: state=%s, steps %d-%d%s -> %s", self.options.state, start, end - 1,
                    " (timer only)" if self.options.timer_only else "", self.trace_path)
        return self

    def _export(self, prof: Any) -> None:
        prof.export(str(self.trace_path), "json")
        self.trace_written = True
        logger.info("profiler: Chrome trace written to %s", self.trace_path)

    @property
    def finished(self) -> bool:
        return self.steps >= self.options.batch_range[1]

    def step(self, num_samples: int | None = None) -> bool:
        """Call after each training step; True when training should stop now."""
        if self._prof is None:
            raise RuntimeError("TrainProfiler.step() before start()")
        self._prof.step(num_samples=num_samples)
        self.steps += 1
        return self.options.exit_on_finished and self.finished

    def close(self) -> Path:
        """Stop the profiler, write the summary table; returns the summary path."""
        if self._prof is None:
            raise RuntimeError("TrainProfiler.close() before start()")
        prof, self._prof = self._prof, None
        # step_info() reads the running timer: take it before stop() ends it
        timing = prof.step_info(unit="images") if self.options.timer_only and self.steps else ""
        prof.stop()
        start, end = self.options.batch_range
        if self.options.timer_only:
            text = f"steps: {self.steps}, {timing}\n"
        else:
            if not self.trace_written:
                raise ProfilerRangeError(
                    f"--profiler_options batch_range=[{start},{end}]: the run ended after {self.steps} steps, "
                    f"before step {start}; lower batch_range or train more steps")
            if self.steps < end:
                logger.warning("profiler: the run ended after %d steps, so only steps %d-%d were recorded",
                               self.steps, start, self.steps - 1)
            from paddle import profiler

            sorted_by = profiler.SortedKeys[self.options.sorted_key_name(self.options.state != "CPU" and self._cuda)]
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):  # Profiler.summary prints; keep the table in a file
                prof.summary(sorted_by=sorted_by, op_detail=self.options.op_detail,
                             thread_sep=self.options.thread_sep, time_unit="ms")
            text = buffer.getvalue()
        self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        self.summary_path.write_text(text, encoding="utf-8")
        logger.info("profiler: summary table written to %s", self.summary_path)
        return self.summary_path

    def __enter__(self) -> TrainProfiler:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._prof is None:
            return
        if exc_type is not None:  # the run failed: stop quietly, keep the original error
            with contextlib.suppress(Exception):
                self._prof.stop()
            self._prof = None
            return
        self.close()


def build_profiler(text: str | None, output_dir: str | Path, rank: int = 0) -> TrainProfiler | None:
    """``None`` for an empty/absent option (upstream's default: the profiler is off)."""
    if text is None or not text.strip() or text.strip().lower() in ("none", "null"):
        return None
    return TrainProfiler(parse_profiler_options(text), output_dir, rank)
