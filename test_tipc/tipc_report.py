"""Summarise a TIPC results file and write it as JUnit XML.

    python test_tipc/tipc_report.py test_tipc/output/<model>/<MODE>/results_python.log [--xml OUT.xml]

Reads the status lines written by ``test_tipc/common_func.sh``::

    Run successfully with command - MODEL - COMMAND - LOG!
    Run failed with command - MODEL - COMMAND - LOG! (exit code N)
    Run skipped with command - MODEL - COMMAND - LOG! (reason)

(upstream lines, with or without ANSI colour codes and the trailing reason, are read
too), prints the summary line ``N passed, N failed, N skipped`` and writes a JUnit
file (default: the results file with ``.xml`` instead of ``.log``) with one testcase
per line. Exit code: 0 when at least one step ran and none failed, 1 otherwise,
2 when the results file cannot be read.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("tipc_report")

ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# XML 1.0 forbids most control characters, even escaped.
XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
LINE_RE = re.compile(r"^Run (?P<word>successfully|failed|skipped) with command - (?P<model>.*?) - (?P<rest>.*)$")
REST_RE = re.compile(r"^(?P<cmd>.*) - (?P<log>[^!]*?)\s*!\s*(?:\((?P<reason>.*)\))?$")
REST_NO_LOG_RE = re.compile(r"^(?P<cmd>.*?)\s*!\s*(?:\((?P<reason>.*)\))?$")
STATUS = {"successfully": "passed", "failed": "failed", "skipped": "skipped"}
NOT_RUN = "(not run)"
TAIL_LINES = 40
TAIL_CHARS = 6000


@dataclass
class Step:
    status: str
    model: str
    command: str
    log: str
    reason: str
    seconds: float = 0.0

    @property
    def name(self) -> str:
        if self.log and self.log != NOT_RUN:
            stem = Path(self.log).name
            return stem[:-4] if stem.endswith(".log") else stem
        return self.command


def parse_line(line: str) -> Step | None:
    """One status line, or None for anything else (blank lines, stray output)."""
    text = ANSI_RE.sub("", line).strip()
    match = LINE_RE.match(text)
    if not match:
        return None
    rest = match.group("rest")
    part = REST_RE.match(rest) or REST_NO_LOG_RE.match(rest)
    if part is None:  # pragma: no cover - REST_NO_LOG_RE matches any line containing "!"
        return Step(STATUS[match.group("word")], match.group("model"), rest, "", "")
    groups = part.groupdict()
    return Step(
        status=STATUS[match.group("word")],
        model=match.group("model"),
        command=groups["cmd"].strip(),
        log=(groups.get("log") or "").strip(),
        reason=(groups.get("reason") or "").strip(),
    )


def read_steps(status_log: Path) -> list[Step]:
    steps: list[Step] = []
    for number, line in enumerate(status_log.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        step = parse_line(line)
        if step is None:
            logger.warning("%s:%d: not a status line, ignored: %s", status_log, number, line[:200])
            continue
        steps.append(step)
    times_file = status_log.with_suffix(".times")
    if times_file.is_file():
        times = [t for t in times_file.read_text(encoding="utf-8").split() if t]
        if len(times) == len(steps):
            for step, value in zip(steps, times, strict=True):
                try:
                    step.seconds = float(value)
                except ValueError:
                    step.seconds = 0.0
    return steps


def log_tail(path: str) -> str:
    if not path or path == NOT_RUN:
        return ""
    log = Path(path)
    if not log.is_file():
        return f"(log file {path} not found)"
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    tail = "\n".join(lines[-TAIL_LINES:])
    return tail[-TAIL_CHARS:]


def clean(text: str) -> str:
    return XML_INVALID_RE.sub("", ANSI_RE.sub("", text))


def build_junit(steps: list[Step], suite_name: str) -> ET.ElementTree:
    counts = summary_counts(steps)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites, "testsuite", name=suite_name, tests=str(len(steps)), failures=str(counts["failed"]),
        errors="0", skipped=str(counts["skipped"]), time=f"{sum(s.seconds for s in steps):.1f}",
    )
    seen: dict[str, int] = {}
    for index, step in enumerate(steps, 1):
        name = clean(step.name)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} #{seen[name]}"
        case = ET.SubElement(suite, "testcase", classname=clean(suite_name), name=name,
                             time=f"{step.seconds:.1f}")
        if step.status == "failed":
            failure = ET.SubElement(case, "failure", message=clean(step.reason or "failed"), type="StepFailed")
            failure.text = clean(f"step {index}: {step.command}\nlog: {step.log}")
        elif step.status == "skipped":
            ET.SubElement(case, "skipped", message=clean(step.reason or "skipped"))
        out = ET.SubElement(case, "system-out")
        tail = log_tail(step.log)
        text = f"command: {step.command}\nlog: {step.log}\n"
        if tail:
            text += f"--- log tail ---\n{tail}\n"
        out.text = clean(text)
    ET.indent(suites)
    return ET.ElementTree(suites)


def summary_counts(steps: list[Step]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for step in steps:
        counts[step.status] += 1
    return counts


def suite_name_for(status_log: Path) -> str:
    parts = status_log.resolve().parts
    # test_tipc/output/<model>/<MODE>/results_*.log -> tipc.<model>.<MODE>
    if len(parts) >= 3:
        return f"tipc.{parts[-3]}.{parts[-2]}"
    return "tipc"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("status_log", type=Path, help="results_*.log written by the harness")
    parser.add_argument("--xml", type=Path, default=None, help="JUnit output (default: STATUS_LOG with .xml)")
    parser.add_argument("--suite", default=None, help="testsuite name (default: tipc.<model>.<MODE>)")
    args = parser.parse_args(argv)

    if not args.status_log.is_file():
        logger.error("%s: results file not found", args.status_log)
        sys.stdout.write("0 passed, 0 failed, 0 skipped\n")
        return 2
    steps = read_steps(args.status_log)
    counts = summary_counts(steps)
    xml_path = args.xml or args.status_log.with_suffix(".xml")
    tree = build_junit(steps, args.suite or suite_name_for(args.status_log))
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(xml_path, encoding="utf-8", xml_declaration=True)
    sys.stdout.write(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped\n")
    sys.stdout.flush()
    if counts["failed"]:
        logger.info("results: %s; JUnit: %s", args.status_log, xml_path)
        return 1
    if counts["passed"] == 0:
        logger.error("no step ran (0 passed, 0 failed) in %s", args.status_log)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
