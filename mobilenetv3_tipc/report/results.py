"""Read the TIPC results of every chain under an output root.

A chain's results are the files the harness writes in ``<root>/<model>/<MODE>/``:

* ``results_<kind>[.<config>].log``: one status line per step (the parsed-line contract
  below), in the upstream TIPC format that CI parsers read;
* ``results_<kind>[.<config>].json``: optional sidecar of the TIPC engine, ``{"steps": [{"status",
  "command", "log", "reason", "seconds", "engine", "hardware", "group"}, ...]}`` in line order;
  used for times, engines and hardware flags when it has one entry per status line;
* ``results_<kind>[.<config>].times``: optional older sidecar, one number of seconds per status line;
* ``results_<kind>[.<config>].xml``: optional JUnit file (testcase ``time``, testsuite ``timestamp``);
* ``<root>/test_all.tsv``: optional manifest written by ``test_tipc/test_all.sh``
  (config, script, exit code and wall time of each chain it ran, and chains it skipped).

Status lines (ANSI colour codes are dropped; anything else on a line is ignored)::

    [TIMESTAMP ]Run successfully with command - MODEL - COMMAND - LOG![ (REASON)][ EXTRA]
    [TIMESTAMP ]Run failed with command - MODEL - COMMAND - LOG![ (REASON)][ EXTRA]
    [TIMESTAMP ]Run skipped with command - MODEL - COMMAND - LOG![ (REASON)][ EXTRA]

``LOG`` is ``(not run)`` for steps the harness decided without running anything. A passed
step's parenthesised note ``(inference engine: NAME)`` names the engine that ran, not a
reason. The optional leading ``TIMESTAMP`` is ISO 8601 (``2026-12-02T13:55:25Z``, ``2026-12-02 13:55:25``,
bracketed or not); an optional trailing ``[12.3 s]`` / ``(12.3 s)`` / ``(took 12.3s)`` gives
the step's seconds. Both are tolerated additions, not required.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

NOT_RUN = "(not run)"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
STAMP_RE = re.compile(
    r"^\[?(?P<stamp>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?\s+(?P<rest>Run .*)$"
)
LINE_RE = re.compile(r"^Run (?P<word>successfully|failed|skipped) with command - (?P<model>.*?) - (?P<rest>.*)$")
# The log path is the last " - " field before the "!" that ends it; commands may hold " - " and "!".
REST_RE = re.compile(r"^(?P<cmd>.*) - (?P<log>[^!]*?)\s*!(?P<tail>[^!]*)$")
REST_NO_LOG_RE = re.compile(r"^(?P<cmd>.*?)\s*!(?P<tail>[^!]*)$")
SECONDS_RE = re.compile(r"[\[(](?:took\s+)?(?P<s>\d+(?:\.\d+)?)\s*s(?:ec(?:onds)?)?[\])]\s*$")
REASON_RE = re.compile(r"^\s*\((?P<reason>.*)\)")
ENGINE_NOTE_RE = re.compile(r"^(?:inference )?engine:\s*(?P<engine>[^\s(),]+)")
STATUS = {"successfully": "passed", "failed": "failed", "skipped": "skipped"}
RESULTS_RE = re.compile(r"^results_(?P<kind>[^.]+)(?:\.(?P<config>.+))?\.log$")
MANIFEST_NAME = "test_all.tsv"
MANIFEST_FIELDS = ("model", "mode", "config", "script", "status", "rc", "seconds", "results", "console", "reason")


@dataclass
class Step:
    """One status line."""

    status: str  # passed | failed | skipped
    model: str
    command: str
    log: str  # path as written by the harness (relative to the repository root), or "(not run)"
    reason: str = ""
    seconds: float | None = None
    timestamp: str = ""
    line: int = 0
    engine: str = ""  # the inference engine that ran (from the status line or the JSON sidecar)
    hardware: bool = False  # skipped because this machine lacks the hardware (JSON sidecar)
    group: str = ""  # the chain step the line belongs to (train, export, inference, ...; JSON sidecar)

    @property
    def ran(self) -> bool:
        return bool(self.log) and self.log != NOT_RUN

    @property
    def name(self) -> str:
        if self.ran:
            stem = Path(self.log).name
            return stem[:-4] if stem.endswith(".log") else stem
        return self.command


@dataclass
class Chain:
    """The steps of one chain run (one results file), plus what the run-all manifest says about it."""

    model: str
    mode: str
    kind: str
    config: str = ""
    script: str = ""
    results: Path | None = None
    junit: Path | None = None
    steps: list[Step] = field(default_factory=list)
    rc: int | None = None
    wall_seconds: float | None = None
    started: str = ""  # ISO time the chain started, when the files say (JSON "started", JUnit timestamp)
    finished: str = ""  # when the results file was last written
    console: str = ""
    manifest_status: str = ""
    manifest_reason: str = ""

    @property
    def label(self) -> str:
        name = Path(self.config).stem if self.config else f"results_{self.kind}"
        return f"{self.model} / {self.mode} / {name}"

    @property
    def anchor(self) -> str:
        return "chain-" + re.sub(r"[^A-Za-z0-9_-]+", "-", self.label).strip("-")

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        for step in self.steps:
            counts[step.status] += 1
        return counts

    @property
    def status(self) -> str:
        """passed, failed or skipped: the harness's verdict (a chain where no step ran is red)."""
        if self.manifest_status == "skipped" and not self.steps:
            return "skipped"
        counts = self.counts()
        if counts["failed"] or (self.rc not in (None, 0)):
            return "failed"
        if counts["passed"] == 0:
            return "failed"
        return "passed"

    @property
    def problem(self) -> str:
        """Why a red chain is red when no step line says so (exit code, missing results, nothing ran)."""
        if self.status != "failed" or self.counts()["failed"]:
            return ""
        if self.manifest_reason:
            return self.manifest_reason
        if not self.steps:
            return "no results file" + (f" (chain exit code {self.rc})" if self.rc is not None else "")
        if self.counts()["passed"] == 0:
            return "no step ran: every step was skipped"
        return f"chain exit code {self.rc}"

    @property
    def seconds(self) -> float | None:
        """Wall time: the run-all's own measurement, else the sum of the step times."""
        if self.wall_seconds is not None:
            return self.wall_seconds
        known = [s.seconds for s in self.steps if s.seconds is not None]
        return sum(known) if known else None


def parse_line(line: str) -> Step | None:
    """One status line, or None for anything else (blank lines, stray output)."""
    text = ANSI_RE.sub("", line).strip()
    stamp = ""
    match = STAMP_RE.match(text)
    if match:
        stamp, text = match.group("stamp"), match.group("rest")
    match = LINE_RE.match(text)
    if not match:
        return None
    rest = match.group("rest")
    part = REST_RE.match(rest) or REST_NO_LOG_RE.match(rest)
    if part is None:  # no "!" at all: keep the whole rest as the command
        return Step(STATUS[match.group("word")], match.group("model").strip(), rest.strip(), "", timestamp=stamp)
    groups = part.groupdict()
    tail = groups.get("tail") or ""
    seconds = None
    sec = SECONDS_RE.search(tail)
    if sec:
        seconds = float(sec.group("s"))
        tail = tail[: sec.start()]
    reason_match = REASON_RE.match(tail)
    reason = reason_match.group("reason").strip() if reason_match else ""
    engine = ""
    note = ENGINE_NOTE_RE.match(reason)
    if note:
        engine, reason = note.group("engine"), ""
    return Step(
        status=STATUS[match.group("word")],
        model=match.group("model").strip(),
        command=groups["cmd"].strip(),
        log=(groups.get("log") or "").strip(),
        reason=reason,
        seconds=seconds,
        timestamp=stamp,
        engine=engine,
    )


def read_steps(results: Path) -> list[Step]:
    """The status lines of a results file, with step times from the ``.times`` sidecar or the JUnit file."""
    steps: list[Step] = []
    text = results.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        step = parse_line(line)
        if step is None:
            logger.debug("%s:%d: not a status line, ignored", results, number)
            continue
        step.line = number
        steps.append(step)
    _from_json_sidecar(results.with_suffix(".json"), steps)
    _times_from_sidecar(results.with_suffix(".times"), steps)
    _times_from_junit(results.with_suffix(".xml"), steps)
    return steps


def _from_json_sidecar(path: Path, steps: list[Step]) -> None:
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        entries = data["steps"] if isinstance(data, dict) else data
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: unreadable sidecar, ignored: %s", path, exc)
        return
    if not isinstance(entries, list) or len(entries) != len(steps):
        logger.warning("%s: does not match the status lines, ignored", path)
        return
    for step, entry in zip(steps, entries, strict=True):
        if not isinstance(entry, dict):
            continue
        if step.seconds is None and isinstance(entry.get("seconds"), int | float):
            step.seconds = float(entry["seconds"])
        step.engine = step.engine or str(entry.get("engine") or "")
        step.hardware = bool(entry.get("hardware", False))
        step.group = str(entry.get("group") or "")


def _times_from_sidecar(path: Path, steps: list[Step]) -> None:
    if not path.is_file():
        return
    values = path.read_text(encoding="utf-8", errors="replace").split()
    if len(values) != len(steps):
        logger.warning("%s: %d times for %d status lines, ignored", path, len(values), len(steps))
        return
    for step, value in zip(steps, values, strict=True):
        if step.seconds is None:
            try:
                step.seconds = float(value)
            except ValueError:
                continue


def _times_from_junit(path: Path, steps: list[Step]) -> None:
    if not path.is_file() or all(s.seconds is not None for s in steps):
        return
    try:
        cases = ET.parse(path).getroot().iter("testcase")
    except (ET.ParseError, OSError) as exc:
        logger.warning("%s: unreadable JUnit file: %s", path, exc)
        return
    times = [case.get("time") for case in cases]
    if len(times) != len(steps):
        return
    for step, value in zip(steps, times, strict=True):
        if step.seconds is None and value:
            try:
                step.seconds = float(value)
            except ValueError:
                continue


def junit_timestamp(path: Path) -> str:
    """The first testsuite's ``timestamp`` attribute, if the JUnit file has one."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return ""
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    return (suite.get("timestamp") or "") if suite is not None else ""


def _json_field(path: Path, key: str) -> str:
    if not path.is_file():
        return ""
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError:
        return ""
    value = data.get(key) if isinstance(data, dict) else None
    return str(value) if value else ""


def read_manifest(root: Path) -> list[dict[str, str]]:
    """Rows of ``test_all.tsv`` (tab-separated, header line first); [] when absent."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            rows.append({key: (row.get(key) or "").strip() for key in MANIFEST_FIELDS})
    return rows


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _resolve(root: Path, repo: Path, value: str) -> Path:
    path = Path(value)
    if path.is_absolute():
        return path
    for base in (repo, root):
        if (base / path).exists():
            return base / path
    return repo / path


def discover_chains(root: Path, repo: Path | None = None) -> list[Chain]:
    """Every results file under ``root`` (``<model>/<MODE>/results_*.log``), joined with the manifest.

    ``repo`` is the directory the harness ran in (step log paths are relative to it);
    default: two levels above ``root`` when it ends in ``test_tipc/output``, else ``root``'s parent.
    """
    root = root.resolve()
    repo = (repo or default_repo(root)).resolve()
    chains: dict[Path, Chain] = {}
    for results in sorted(root.glob("*/*/results_*.log")):
        match = RESULTS_RE.match(results.name)
        if not match:
            continue
        model, mode = results.parent.parent.name, results.parent.name
        chain = Chain(model=model, mode=mode, kind=match.group("kind"), results=results)
        if match.group("config"):
            chain.config = match.group("config") + ".txt"
        chain.config = _json_field(results.with_suffix(".json"), "config") or chain.config
        chain.steps = read_steps(results)
        junit = results.with_suffix(".xml")
        chain.junit = junit if junit.is_file() else None
        first_stamp = next((s.timestamp for s in chain.steps if s.timestamp), "")
        chain.started = _json_field(results.with_suffix(".json"), "started") or (
            junit_timestamp(junit) if chain.junit else "") or first_stamp
        chain.finished = _json_field(results.with_suffix(".json"), "finished") or _mtime(results)
        chains[results.resolve()] = chain
    ordered: list[Chain] = []
    for row in read_manifest(root):
        results_path = _resolve(root, repo, row["results"]).resolve() if row["results"] else None
        chain = chains.pop(results_path, None) if results_path else None
        if chain is None:
            chain = Chain(model=row["model"], mode=row["mode"], kind=Path(row["script"]).stem)
        chain.config = row["config"] or chain.config
        chain.script = row["script"]
        chain.rc = _int(row["rc"])
        chain.wall_seconds = _float(row["seconds"])
        chain.console = row["console"]
        chain.manifest_status = row["status"]
        chain.manifest_reason = row["reason"]
        ordered.append(chain)
    ordered.extend(chains.values())
    return ordered


def default_repo(root: Path) -> Path:
    root = root.resolve()
    if root.name == "output" and root.parent.name == "test_tipc":
        return root.parent.parent
    return root.parent


def totals(chains: list[Chain]) -> dict[str, int]:
    """Step counts over every chain, plus one failed (or skipped) per chain that is red (or skipped)
    with no status line to say so: the numbers of the run-all summary line."""
    out = {"passed": 0, "failed": 0, "skipped": 0}
    for chain in chains:
        counts = chain.counts()
        for key in out:
            out[key] += counts[key]
        if chain.status == "failed" and not counts["failed"]:
            out["failed"] += 1
        elif chain.status == "skipped" and not chain.steps:
            out["skipped"] += 1
    return out
