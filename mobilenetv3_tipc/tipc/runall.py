"""The run-all's engine side (test_tipc/test_all.sh): which chains to run, each chain's verdict, the total.

    python -m mobilenetv3_tipc.tipc catalog [MODEL ...]
    python -m mobilenetv3_tipc.tipc verdict RESULTS RC [REASON]
    python -m mobilenetv3_tipc.tipc summary MANIFEST

``catalog`` prints one tab-separated line per chain run -- model, config, script, MODE and the
script's extra arguments -- in dependency order, from :data:`chain.KINDS` (each kind's config
name, script and default MODE). A config with no chain gets script and MODE ``-``. MODEL is a
folder of test_tipc/configs/ (default: every one).

``verdict`` prints ``status<TAB>passed<TAB>failed<TAB>skipped<TAB>reason`` for a chain that exited
RC and wrote RESULTS ("" when it wrote none): passed only when it exited 0, a step passed and
none failed. ``summary`` prints every chain of the run-all manifest (test_tipc/output/test_all.tsv)
and the last line ``N passed, N failed, N skipped``; exit 1 when a chain is red.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.cli import setup_logging
from mobilenetv3_tipc.tipc.chain import EXIT_USAGE, KINDS
from mobilenetv3_tipc.tipc.config import Config, ConfigError
from mobilenetv3_tipc.tipc.results import counts, read_steps

logger = logging.getLogger("mobilenetv3_tipc.tipc.runall")

CONFIG_ROOT = Path("test_tipc/configs")
# Run order. The small config of the train chain first: offline, prepare.sh of the chains after
# it takes the weights it trains (./pretrain_models/<model>_pretrained.pdparams); the chains that
# start from those weights next, then the other training chains; the benchmark last.
ORDER = ("train", "ptq", "paddle2onnx", "serving", "train variant", "dy2static", "benchmark_train")
# Config-name families beyond KINDS' own names (upstream names variants like these).
FAMILIES = (("paddle2onnx_*.txt", "paddle2onnx"), ("serving_*.txt", "serving"),
            ("train_*_infer_python.txt", "train variant"), ("*benchmark_train*.txt", "benchmark_train"))
# One benchmark run by default: the config's whole matrix (8 combinations, 4 runnable on CPU,
# plus a profiling run) would be most of the run-all's time; the smallest fp32 single-process
# run certifies the chain. Run `bash test_tipc/benchmark_train.sh CONFIG benchmark_train` for all.
BENCHMARK_SPEC = "dynamic_bs8_fp32_DP_N1C1"
MANIFEST_FIELDS = ("model", "mode", "config", "script", "status", "rc", "seconds", "results", "console", "reason")


@dataclass(frozen=True)
class ChainRun:
    model: str
    config: Path
    kind: str  # a key of KINDS, "train variant", or "" (no chain)

    @property
    def script(self) -> str:
        return KINDS["train" if self.kind == "train variant" else self.kind][3] if self.kind else "-"

    @property
    def mode(self) -> str:
        return KINDS["train" if self.kind == "train variant" else self.kind][1] if self.kind else "-"

    @property
    def args(self) -> list[str]:
        return [BENCHMARK_SPEC] if self.kind == "benchmark_train" else []

    def line(self) -> str:
        return "\t".join([self.model, str(self.config), self.script, self.mode, " ".join(self.args)])


def kinds_of(config: Path) -> list[str]:
    """The chains CONFIG describes, by its name (KINDS, then FAMILIES); a train config with a
    ``train_benchmark_params`` section is also the benchmark chain's."""
    name = config.name
    found = [kind for kind, spec in KINDS.items() if spec[2] == name and kind != "benchmark_train"]
    if not found:
        found = [kind for pattern, kind in FAMILIES if fnmatch.fnmatchcase(name, pattern)][:1]
    if "train" in found:
        try:
            if KINDS["benchmark_train"][0] in Config.load(config).sections:
                found.append("benchmark_train")
        except ConfigError as exc:  # the train chain reports it as a red chain
            logger.warning("%s", exc)
    return found


def model_name(config: Path) -> str:
    """The config's model_name (its output folder), else its folder's name."""
    try:
        entry = Config.load(config).entry("model_name")
    except ConfigError:
        entry = None
    return entry.value.strip() if entry is not None and entry.value.strip() else config.parent.name


def catalog(models: list[str]) -> list[ChainRun]:
    runs: list[tuple[int, str, ChainRun]] = []
    for folder in models:
        for config in sorted((CONFIG_ROOT / folder).glob("*.txt")):
            model = model_name(config)
            kinds = kinds_of(config) or [""]
            for kind in kinds:
                rank = ORDER.index(kind) if kind else len(ORDER)
                runs.append((rank, str(config), ChainRun(model, config, kind)))
    # every model's chains in order, models in the order given
    order = {folder: i for i, folder in enumerate(models)}
    runs.sort(key=lambda r: (order[r[2].config.parent.name], r[0], r[1]))
    return [run for _, _, run in runs]


def step_counts(results: str) -> dict[str, int]:
    return counts(read_steps(Path(results))) if results and Path(results).is_file() else counts([])


def verdict(results: str, rc: int, reason: str = "") -> tuple[str, dict[str, int], str]:
    c = step_counts(results)
    status = "failed" if rc != 0 or c["failed"] or not c["passed"] else "passed"
    if results and not reason and not c["passed"] + c["failed"]:
        reason = "no step ran (every step was skipped)"
    if not results and not reason:
        reason = f"no results file written (chain exit code {rc})"
    elif status == "failed" and not reason and not c["failed"]:
        reason = f"chain exit code {rc}"
    return status, c, reason


def chain_line(row: dict[str, str], c: dict[str, int]) -> str:
    line = (f"{row['status']:<8} {row['config']} {row['mode']} ({row['script']}): {c['passed']} passed, "
            f"{c['failed']} failed, {c['skipped']} skipped, {row['seconds']} s")
    return line + (f" -- {row['reason']}" if row["reason"] else "")


def summary(manifest: Path) -> int:
    """Print every chain and the total; a red chain without a failed step (prepare.sh failed)
    counts as one failed, a skipped chain without steps (no script) as one skipped."""
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    total = counts([])
    lines = []
    red = 0
    for row in rows:
        c = step_counts(row["results"])
        for key in total:
            total[key] += c[key]
        if row["status"] == "failed":
            red += 1
            total["failed"] += 0 if c["failed"] else 1
        elif row["status"] == "skipped" and not sum(c.values()):
            total["skipped"] += 1
        lines.append(chain_line(row, c))
    print(f"\n== {len(rows)} chains, {red} red")
    for line in lines:
        print(f"  {line}")
    print(f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped", flush=True)
    return 1 if red else 0


def main(argv: list[str]) -> int:
    setup_logging()
    command, rest = argv[0], argv[1:]
    if command == "catalog":
        if not rest and not CONFIG_ROOT.is_dir():
            logger.error("%s/ not found: run from the repository root", CONFIG_ROOT)
            return EXIT_USAGE
        models = rest or sorted(p.name for p in CONFIG_ROOT.iterdir() if p.is_dir())
        for model in models:
            if model.startswith("-") or not (CONFIG_ROOT / model).is_dir():
                logger.error("no model '%s' in %s/", model, CONFIG_ROOT)
                return EXIT_USAGE
        for run in catalog(models):
            print(run.line())
        return 0
    if command == "verdict" and len(rest) in (2, 3) and rest[1].lstrip("-").isdigit():
        status, c, reason = verdict(rest[0], int(rest[1]), rest[2] if len(rest) == 3 else "")
        print("\t".join([status, str(c["passed"]), str(c["failed"]), str(c["skipped"]), reason]))
        return 0
    if command == "summary" and len(rest) == 1:
        return summary(Path(rest[0]))
    print(__doc__, file=sys.stderr)
    return EXIT_USAGE
