"""Figures a chain's step logs carry besides pass/fail: agreement tables and benchmark plots.

* Agreement (``tools/check_agreement.py``, the Paddle2ONNX chain's last step): its
  ``--save-json`` file when the command has one, else the table it prints, a header
  ``backend  top-1  max |Δp|  result`` and one row per backend, columns separated by two or
  more spaces.
* Float vs int8 (``compare_int8.py``, the PTQ chain): ``top-1 agreement: ...``,
  ``mean |dprob|: ...`` and ``max |dprob|: ...`` lines; shown as the backend ``int8``.
* Plots: PNG/SVG files under ``benchmark/results/`` (``python -m benchmark``) and any
  ``*.png`` under the output root (a benchmark chain's own plots).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.report.results import Chain, Step

logger = logging.getLogger(__name__)

COLUMN_SPLIT_RE = re.compile(r"\s{2,}")
INT8_TOP1_RE = re.compile(r"^top-1 agreement:\s*(?P<value>.+)$", re.MULTILINE)
INT8_MAX_RE = re.compile(r"^max \|dprob\|:\s*(?P<value>\S+)", re.MULTILINE)
INT8_MEAN_RE = re.compile(r"^mean \|dprob\|:\s*(?P<value>\S+)", re.MULTILINE)
TOLERANCE_RE = re.compile(r"^tolerance:\s*(?P<text>.+)$", re.MULTILINE)
READ_LIMIT = 2_000_000
PLOT_SUFFIXES = (".png", ".svg")


@dataclass
class Agreement:
    """One backend's agreement with the reference, from one step log."""

    chain: Chain
    step: Step
    backend: str
    top1: str
    max_abs_diff: str
    result: str
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.result.lower() in ("ok", "pass", "passed", "reference")


def _read(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.read(READ_LIMIT)
    except OSError:
        return ""


def _step_log(step: Step, repo: Path) -> Path:
    path = Path(step.log)
    return path if path.is_absolute() else repo / path


def parse_agreement_table(text: str) -> list[tuple[str, str, str, str]]:
    """(backend, top-1, max |Δp|, result) rows of check_agreement's table; [] when there is none."""
    rows: list[tuple[str, str, str, str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        cells = COLUMN_SPLIT_RE.split(line.strip())
        if len(cells) >= 3 and cells[0] == "backend" and "max" in line and ("Δp" in line or "dp" in line):
            for row in lines[index + 1:]:
                parts = COLUMN_SPLIT_RE.split(row.strip())
                if len(parts) < 3 or not row.strip():
                    break
                if len(parts) == 3:
                    parts.append("")
                rows.append((parts[0], parts[1], parts[2], parts[3]))
            break
    return rows


def agreements(chains: list[Chain], repo: Path) -> list[Agreement]:
    out: list[Agreement] = []
    for chain in chains:
        for step in chain.steps:
            if not step.ran:
                continue
            words = step.command.split()
            names = {Path(w).name for w in words}
            log_name = Path(step.log).name
            if "check_agreement.py" in names or log_name.startswith("agreement"):
                from_json = _agreement_json(chain, step, repo)
                if from_json:
                    out.extend(from_json)
                    continue
                text = _read(_step_log(step, repo))
                tolerance = TOLERANCE_RE.search(text)
                note = tolerance.group("text").strip() if tolerance else ""
                for backend, top1, diff, result in parse_agreement_table(text):
                    out.append(Agreement(chain, step, backend, top1, diff, result, note))
            elif "compare_int8.py" in names or log_name.startswith("compare_int8"):
                text = _read(_step_log(step, repo))
                top1, biggest, mean = INT8_TOP1_RE.search(text), INT8_MAX_RE.search(text), INT8_MEAN_RE.search(text)
                if biggest:
                    result = {"passed": "ok", "failed": "FAIL"}.get(step.status, step.status)
                    note = f"mean |Δp| {mean.group('value')}" if mean else ""
                    out.append(Agreement(chain, step, "int8 vs float", top1.group("value") if top1 else "-",
                                         biggest.group("value"), result, note))
    return out


SAVE_JSON_RE = re.compile(r"--save[-_]json[= ](?P<path>\S+)")


def _agreement_json(chain: Chain, step: Step, repo: Path) -> list[Agreement]:
    """Rows of check_agreement's --save-json file: {"tolerance", "backends": [{"name", "reference",
    "passed", "top1_agree", "images", "max_abs_diff", "error"}]}; [] when there is none."""
    match = SAVE_JSON_RE.search(step.command)
    if not match:
        return []
    path = Path(match.group("path"))
    path = path if path.is_absolute() else repo / path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        backends = data["backends"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    note = f"max |Δp| <= {data.get('tolerance')}" if data.get("tolerance") is not None else ""
    rows = []
    for b in backends:
        if not isinstance(b, dict):
            continue
        images = b.get("images", "?")
        diff = b.get("max_abs_diff")
        if b.get("reference"):
            result, diff_text, top1 = "reference", "0", f"{images}/{images}"
        else:
            result = "ok" if b.get("passed") else "FAIL"
            diff_text = "-" if diff is None else f"{float(diff):.2e}"
            top1 = "-" if b.get("error") else f"{b.get('top1_agree', '?')}/{images}"
        rows.append(Agreement(chain, step, str(b.get("name", "?")), top1, diff_text, result,
                              str(b.get("error") or note)))
    return rows


def benchmark_plots(root: Path, repo: Path) -> list[Path]:
    """Plot images of ``python -m benchmark`` (benchmark/results/) and any under the output root."""
    found: list[Path] = []
    for base in (repo / "benchmark" / "results", root):
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            # report*.png are screenshots of this page, not plots
            if path.suffix.lower() in PLOT_SUFFIXES and path.is_file() and not path.name.startswith("report"):
                found.append(path)
    return found
