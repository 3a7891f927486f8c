"""The one TIPC status writer: results log, JSON sidecar and JUnit, all written atomically.

Status lines (upstream format, never ANSI codes in the file)::

    Run successfully with command - MODEL - COMMAND - LOG!
    Run successfully with command - MODEL - COMMAND - LOG! (inference engine: onednn)
    Run failed with command - MODEL - COMMAND - LOG! (exit code N | timed out after N s | interrupted by SIGINT)
    Run skipped with command - MODEL - COMMAND - LOG or (not run)! (reason)

and the summary ``N passed, N failed, N skipped``. Each write goes to a temporary file in
the same folder that is then renamed over the old one, so a reader (CI, a crash, a second
process) only ever sees a complete file. ``results_*.json`` holds the same steps with
their times, hardware flags and engines, plus the chain's ``config`` and its ``started`` /
``finished`` times (ISO 8601 UTC); the JUnit testsuite carries ``timestamp``.

File names: ``results_<chain>.log`` as upstream, except for a trainer variant of a config
(``train_amp_infer_python.txt``, ``train_fleet_infer_python.txt``, ...), which shares its MODE
folder with the basic config and gets ``results_<chain>.<config stem>.log`` (see
:func:`results_name`). Upstream overwrote the basic chain's file there.

Console: passed and failed steps print their status line as they are recorded; skips are
grouped by reason (``skipped 32: GPU inference needs CUDA ...``) just before the summary
line. The results log keeps every line. After the summary files are written the static
report (``python -m mobilenetv3_tipc.report``) is refreshed; a failing report is one
warning on stderr and never changes the chain's verdict.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobilenetv3_tipc.export.atomic import write_text_atomic
from mobilenetv3_tipc.tipc.probe import run_short

ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
LINE_RE = re.compile(r"^Run (?P<word>successfully|failed|skipped) with command - (?P<model>.*?) - (?P<rest>.*)$")
REST_RE = re.compile(r"^(?P<cmd>.*) - (?P<log>[^!]*?)\s*!\s*(?:\((?P<reason>.*)\))?$")
REST_NO_LOG_RE = re.compile(r"^(?P<cmd>.*?)\s*!\s*(?:\((?P<reason>.*)\))?$")
WORDS = {"passed": "successfully", "failed": "failed", "skipped": "skipped"}
STATUS = {word: status for status, word in WORDS.items()}
NOT_RUN = "(not run)"
SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")
TAIL_LINES = 40
TAIL_CHARS = 6000
# A config stem naming a trainer variant: [PREFIX_]train_<tags>_infer_python[_SUFFIX]. Platform
# words in the tags (PaddleClas: train_linux_gpu_normal_normal_infer_python_linux_gpu_cpu) do
# not make a variant; anything else (amp, fleet, pact, ...) does.
VARIANT_RE = re.compile(r"(?:^|_)train_(?P<tags>[A-Za-z0-9_]+?)_infer_python(?:_|$)")
PLATFORM_WORDS = frozenset({"linux", "windows", "mac", "gpu", "cpu", "xpu", "npu", "mlu", "dcu", "jetson", "normal"})
REPORT_TIMEOUT_S = 120
REPORT_MIN_PYTHON = (3, 11)


@dataclass
class Step:
    status: str  # passed | failed | skipped
    model: str
    command: str
    log: str = NOT_RUN
    reason: str = ""
    seconds: float = 0.0
    hardware: bool = False  # a skip because this machine lacks the hardware (not a config rule)
    engine: str = ""
    group: str = ""  # the chain step this line belongs to (train, export, inference, ...)

    @property
    def name(self) -> str:
        if self.log and self.log != NOT_RUN:
            stem = Path(self.log).name
            return stem[:-4] if stem.endswith(".log") else stem
        return self.command

    def line(self) -> str:
        text = f"Run {WORDS[self.status]} with command - {self.model} - {self.command} - {self.log}!"
        note = self.reason or (f"inference engine: {self.engine}" if self.engine else "")
        return f"{text} ({note})" if note else text


def results_name(base: str, config: str | os.PathLike[str]) -> str:
    """The results file name of a chain: BASE (``results_python.log``) unless CONFIG is a trainer variant.

    ``results_name("results_python.log", "x/train_amp_infer_python.txt")`` is
    ``results_python.train_amp_infer_python.log``; the basic ``train_infer_python.txt`` (and any
    name that is not ``train_<variant>_infer_python``) keeps upstream's ``results_python.log``.
    """
    stem = Path(config).stem
    match = VARIANT_RE.search(stem)
    if not match or not base.endswith(".log"):
        return base
    own = base[len("results_"):-len(".log")] if base.startswith("results_") else ""
    if not set(match.group("tags").split("_")) - PLATFORM_WORDS - {own}:
        return base
    return f"{base[:-len('.log')]}.{re.sub(r'[^A-Za-z0-9_.,=+-]', '_', stem).strip('.')}.log"


def utc_now() -> str:
    """Now as ISO 8601 UTC with a Z, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parse_line(line: str) -> Step | None:
    """One status line (ours or upstream's, with or without ANSI codes), or None."""
    match = LINE_RE.match(ANSI_RE.sub("", line).strip())
    if not match:
        return None
    part = REST_RE.match(match.group("rest")) or REST_NO_LOG_RE.match(match.group("rest"))
    groups = part.groupdict() if part else {"cmd": match.group("rest")}
    return Step(STATUS[match.group("word")], match.group("model"), groups["cmd"].strip(),
                (groups.get("log") or "").strip(), (groups.get("reason") or "").strip())


def read_steps(status_log: Path) -> list[Step]:
    """The steps of a results log; the JSON sidecar (times, engines) when it matches."""
    sidecar = status_log.with_suffix(".json")
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            return [Step(**step) for step in data["steps"]]
        except (ValueError, KeyError, TypeError):
            pass
    text = status_log.read_text(encoding="utf-8", errors="replace")
    return [step for step in map(parse_line, text.splitlines()) if step is not None]


def counts(steps: list[Step]) -> dict[str, int]:
    out = {"passed": 0, "failed": 0, "skipped": 0}
    for step in steps:
        out[step.status] += 1
    return out


def summary_line(steps: list[Step]) -> str:
    c = counts(steps)
    return f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"


def verdict(steps: list[Step]) -> int:
    """0 when at least one step ran and none failed, else 1."""
    c = counts(steps)
    return 1 if c["failed"] or not c["passed"] else 0


def atomic_write(path: Path, text: str) -> None:
    """Write TEXT to PATH crash-safely (:func:`mobilenetv3_tipc.export.atomic.write_text_atomic`), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def _clean(text: str) -> str:
    return XML_INVALID_RE.sub("", ANSI_RE.sub("", text))


def _log_tail(path: str) -> str:
    if not path or path == NOT_RUN:
        return ""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(lines[-TAIL_LINES:])[-TAIL_CHARS:]


def junit_xml(steps: list[Step], suite_name: str, timestamp: str = "") -> str:
    """JUnit XML of STEPS; TIMESTAMP (ISO 8601 UTC) becomes the testsuite's ``timestamp``."""
    c = counts(steps)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(steps)), failures=str(c["failed"]),
                          errors="0", skipped=str(c["skipped"]), time=f"{sum(s.seconds for s in steps):.1f}")
    if timestamp:
        suite.set("timestamp", timestamp.rstrip("Z"))  # the JUnit schema's xs:dateTime has no zone; it is UTC
    seen: dict[str, int] = {}
    for index, step in enumerate(steps, 1):
        name = _clean(step.name)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} #{seen[name]}"
        case = ET.SubElement(suite, "testcase", classname=_clean(suite_name), name=name, time=f"{step.seconds:.1f}")
        if step.status == "failed":
            failure = ET.SubElement(case, "failure", message=_clean(step.reason or "failed"), type="StepFailed")
            failure.text = _clean(f"step {index}: {step.command}\nlog: {step.log}")
        elif step.status == "skipped":
            ET.SubElement(case, "skipped", message=_clean(step.reason or "skipped"))
        tail = _log_tail(step.log)
        text = f"command: {step.command}\nlog: {step.log}\n" + (f"--- log tail ---\n{tail}\n" if tail else "")
        ET.SubElement(case, "system-out").text = _clean(text)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def skip_groups(steps: list[Step]) -> list[list[Step]]:
    """The skipped steps grouped by reason, in the order each reason first appeared."""
    groups: dict[str, list[Step]] = {}
    for step in steps:
        if step.status == "skipped":
            groups.setdefault(step.reason, []).append(step)
    return list(groups.values())


def skip_group_line(group: list[Step]) -> str:
    """``skipped N: REASON`` for a console; a lone skip keeps its full status line."""
    if len(group) == 1:
        return group[0].line()
    return f"skipped {len(group)}: {group[0].reason or 'no reason given'}"


def report_python() -> str | None:
    """The interpreter for the report: TIPC_REPORT_PYTHON, else this one when it is new enough."""
    override = os.environ.get("TIPC_REPORT_PYTHON", "").strip()
    if override:
        return override
    return sys.executable if sys.version_info >= REPORT_MIN_PYTHON else None


def refresh_report(output_root: Path) -> str:
    """Rewrite ``OUTPUT_ROOT/report.html``; "" on success, else the one-line reason it failed."""
    python = report_python()
    if python is None:
        return "the report needs Python >= 3.11: set TIPC_REPORT_PYTHON"
    problem = run_short([python, "-m", "mobilenetv3_tipc.report", "--output-root", str(output_root)],
                        REPORT_TIMEOUT_S)
    if problem.startswith("did not finish"):
        return f"the report took more than {REPORT_TIMEOUT_S} s"
    return problem


@dataclass
class Results:
    """The results of one chain run: ``<dir>/results_<chain>.log`` + ``.json`` + ``.xml``.

    ``report_root``: the output root whose ``report.html`` is refreshed after :meth:`finish`
    (None: no report, e.g. in unit tests).
    """

    path: Path
    model: str
    suite: str
    steps: list[Step] = field(default_factory=list)
    colour: bool = False
    config: str = ""
    report_root: Path | None = None
    started: str = ""
    finished: str = ""

    def start(self) -> None:
        """Begin a fresh results file (call only while holding the folder's lock)."""
        self.steps = []
        self.started, self.finished = utc_now(), ""
        self._write()
        self.path.with_suffix(".xml").unlink(missing_ok=True)

    def _print(self, line: str, status: str) -> None:
        if self.colour:
            code = {"passed": "32", "failed": "31"}.get(status, "33")
            line = f"\x1b[{code}m{line}\x1b[0m"
        print(line, flush=True)

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        self._write()
        if step.status != "skipped":  # skips are printed grouped by reason in finish()
            self._print(step.line(), step.status)
        return step

    def _write(self) -> None:
        atomic_write(self.path, "".join(step.line() + "\n" for step in self.steps))
        data = {"model": self.model, "suite": self.suite, "config": self.config, "started": self.started,
                "finished": self.finished, "steps": [asdict(step) for step in self.steps]}
        atomic_write(self.path.with_suffix(".json"), json.dumps(data, indent=1) + "\n")

    def finish(self) -> int:
        """Write the JUnit file and the report, print the skips and the summary line; 0 green, 1 red."""
        self.finished = utc_now()
        self._write()
        atomic_write(self.path.with_suffix(".xml"), junit_xml(self.steps, self.suite, self.started))
        for group in skip_groups(self.steps):
            self._print(skip_group_line(group), "skipped")
        if self.report_root is not None:
            problem = refresh_report(self.report_root)
            if problem:
                print(f"WARNING: {self.report_root / 'report.html'} not refreshed: {problem}", file=sys.stderr,
                      flush=True)
            else:
                print(f"report: {self.report_root / 'report.html'}", flush=True)
        print(summary_line(self.steps), flush=True)
        return verdict(self.steps)


def report_main(argv: list[str] | None = None) -> int:
    """``tipc_report.py RESULTS.log [--xml OUT]``: summary + JUnit of an existing results log."""
    import argparse

    parser = argparse.ArgumentParser(description="Summary line and JUnit XML of a TIPC results log.")
    parser.add_argument("status_log", type=Path)
    parser.add_argument("--xml", type=Path, default=None, help="JUnit output (default: STATUS_LOG with .xml)")
    parser.add_argument("--suite", default=None, help="testsuite name (default: tipc.<model>.<MODE>)")
    args = parser.parse_args(argv)
    if not args.status_log.is_file():
        print(f"ERROR: {args.status_log}: results file not found", file=sys.stderr)
        print("0 passed, 0 failed, 0 skipped")
        return 2
    steps = read_steps(args.status_log)
    parts = args.status_log.resolve().parts
    suite = args.suite or (f"tipc.{parts[-3]}.{parts[-2]}" if len(parts) >= 3 else "tipc")
    started = ""
    sidecar = args.status_log.with_suffix(".json")
    if sidecar.is_file():
        try:
            started = str(json.loads(sidecar.read_text(encoding="utf-8")).get("started") or "")
        except (ValueError, AttributeError):
            started = ""
    atomic_write(args.xml or args.status_log.with_suffix(".xml"), junit_xml(steps, suite, started))
    print(summary_line(steps))
    return verdict(steps)
