"""The benchmark's outputs: the ratio table, results.json, PNG plots and the performance target checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEPLOY_PATHS = ("paddle-default", "onnxruntime")


class Figures:
    """Look-ups into ``results`` at the run's largest thread count."""

    def __init__(self, results: dict) -> None:
        self.results = results
        self.threads = max(results["meta"]["threads"])

    def fig(self, section: str, path: str, batch: int) -> dict | None:
        return self.results.get(section, {}).get(path, {}).get(f"t{self.threads}", {}).get(f"b{batch}")

    def ms(self, section: str, path: str, batch: int) -> float | None:
        fig = self.fig(section, path, batch)
        return fig["ms_per_image"] if fig else None


@dataclass(frozen=True)
class Measured:
    """One target's measured ratio (``None``: not measured), whether it is met, and details."""

    value: float | None
    met: bool | None
    detail: dict[str, Any]


def _paddle_vs_onnx(f: Figures, limit: dict[str, float]) -> Measured:
    paddle8, onnx8 = f.ms("model_only", "paddle-default", 8), f.ms("model_only", "onnxruntime", 8)
    paddle1, onnx1 = f.ms("model_only", "paddle-default", 1), f.ms("model_only", "onnxruntime", 1)
    if not (paddle8 and onnx8 and paddle1 and onnx1):
        return Measured(None, None, {"batch8": None, "batch1": None, "summary": None})
    r8, r1 = paddle8 / onnx8, paddle1 / onnx1
    return Measured(r8, r8 <= limit["batch8"] and r1 <= limit["batch1"],
                    {"batch8": r8, "batch1": r1, "summary": f"batch 8: {r8:.2f}x, batch 1: {r1:.2f}x"})


def _onnx_wrapper(f: Figures, limit: dict[str, float]) -> Measured:
    ratios = {b: f.ms("model_only", "onnxruntime", b) / f.ms("model_only", "onnxruntime-raw", b)
              for b in f.results["meta"]["batches"]
              if f.ms("model_only", "onnxruntime", b) and f.ms("model_only", "onnxruntime-raw", b)}
    worst = max(ratios.values()) if ratios else None
    return Measured(worst, None if worst is None else worst <= limit["ratio"],
                    {"per_batch": {f"b{b}": round(v, 4) for b, v in ratios.items()}})


def _end_to_end(f: Figures, limit: dict[str, float]) -> Measured:
    e2e, ceiling = {}, {}
    prep = f.results.get("preprocess_only", {}).get("b8")
    for path in DEPLOY_PATHS:
        full, model = f.fig("end_to_end", path, 8), f.fig("model_only", path, 8)
        if full and model:
            e2e[path] = full["images_per_s"] / model["images_per_s"]
            if prep:
                # Preprocessing and the model share the same cores: per image their CPU times add up,
                # so end-to-end throughput is at most 1 / (1/P + 1/M) and the ratio at most P / (P + M).
                ceiling[path] = prep["images_per_s"] / (prep["images_per_s"] + model["images_per_s"])
    low = min(e2e.values()) if e2e else None
    summary = ", ".join(f"{k} {v:.2f} (CPU ceiling {ceiling[k]:.2f})" if k in ceiling else f"{k} {v:.2f}"
                        for k, v in e2e.items())
    return Measured(low, None if low is None else low >= limit["ratio"],
                    {"per_path": {k: round(v, 4) for k, v in e2e.items()},
                     "cpu_ceiling": {k: round(v, 4) for k, v in ceiling.items()},
                     "preprocess_only_images_per_s": prep["images_per_s"] if prep else None,
                     "summary": summary or None})


def _serving(f: Figures, limit: dict[str, float]) -> Measured:
    served = f.results.get("serving", {}).get("paddle", {})
    offline8 = f.fig("end_to_end", "paddle-default", 8)
    offline1 = f.results.get("single_image_latency", {}).get("paddle-default")
    tp = served["c8"]["images_per_s"] / offline8["images_per_s"] if "c8" in served and offline8 else None
    gap = served["c1"]["p50_ms"] - offline1["median_ms"] if "c1" in served and offline1 else None
    measured = tp is not None and gap is not None
    return Measured(tp, tp >= limit["c8_ratio"] and gap <= limit["c1_gap_ms"] if measured else None,
                    {"c8_throughput_ratio": tp, "c1_p50_minus_offline_ms": None if gap is None else round(gap, 3),
                     "backend": "paddle (serving) vs paddle-default (offline)",
                     "summary": f"c8: {tp:.2f}x, c1 p50 gap: {gap:+.1f} ms" if measured else None})


def _training(f: Figures, limit: dict[str, float]) -> Measured:
    training, small = f.results.get("training", {}), "mobilenet_v3_small"
    paddle_best = max((v["images_per_s"] for k, v in training.items()
                       if k.startswith("paddle-") and k.endswith(small) and isinstance(v, dict)), default=None)
    torch_fig = training.get(f"torch-eager/{small}")
    parity = paddle_best / torch_fig["images_per_s"] if paddle_best and isinstance(torch_fig, dict) else None
    return Measured(parity, None if parity is None else parity >= limit["ratio"],
                    {"paddle_best_images_per_s": paddle_best,
                     "reason": None if parity is not None else "PyTorch (torch, torchvision) not installed"})


def _chain(f: Figures, limit: dict[str, float]) -> Measured:
    chain = f.results.get("chain", {})
    wall = chain.get("total_s")
    reason = None if wall is not None else chain.get("skipped", "not run (full mode or --include-chain)")
    return Measured(wall, None if wall is None else wall <= limit["seconds"], {"reason": reason})


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    bound: str
    limit: dict[str, float]
    measure: Callable[[Figures, dict[str, float]], Measured]


# The performance targets; every ratio is measured within one run.
TARGETS = (
    Target("1", "Paddle Inference default vs ONNX Runtime, model-only latency (batch 8 <= 1.15x, batch 1 <= 2x)",
           "batch 8 <= 1.15, batch 1 <= 2.0", {"batch8": 1.15, "batch1": 2.0}, _paddle_vs_onnx),
    Target("2", "deploy/onnx_python wrapper vs raw onnxruntime.InferenceSession latency (<= 1.05x)",
           "<= 1.05 at every batch", {"ratio": 1.05}, _onnx_wrapper),
    Target("3", "end-to-end JPEG->top-5 throughput / model-only throughput at batch 8 (>= 0.6)",
           ">= 0.6 (lowest of the deployment paths)", {"ratio": 0.6}, _end_to_end),
    Target("4", "serving: c=8 throughput / offline end-to-end b8 (>= 0.8); c=1 p50 - offline one-image latency "
           "(<= 2 ms)", "c8 ratio >= 0.8 and c1 p50 gap <= 2 ms", {"c8_ratio": 0.8, "c1_gap_ms": 2.0}, _serving),
    Target("5", "training images/s, best Paddle / PyTorch eager, mobilenet_v3_small (goal: parity, 1.0)",
           "goal 1.0 (report)", {"ratio": 1.0}, _training),
    Target("6", "lite_train_lite_infer chain of the small model, prepare + chain wall time (<= 90 s)",
           "<= 90 s", {"seconds": 90.0}, _chain),
)


def evaluate_targets(results: dict) -> dict[str, dict[str, Any]]:
    """Measured ratio, bound and met/missed/not measured for each of :data:`TARGETS`."""
    figures = Figures(results)
    evaluated = {}
    for target in TARGETS:
        m = target.measure(figures, target.limit)
        evaluated[target.key] = {
            "measured": None if m.value is None else round(m.value, 4), "bound": target.bound,
            "status": "not measured" if m.met is None else "met" if m.met else "missed", **m.detail,
            "title": target.title,
        }
    return evaluated


def table_rows(results: dict) -> list[tuple[str, str, str, float, str, float]]:
    """``(section, group, name, value, unit, ratio to the fastest in its group)`` rows.

    Latency rows (ms/image): ratio = value / smallest. Throughput rows: ratio = largest / value.
    So the fastest path of every group has ratio 1.00 and the others say how many times slower they are.
    """
    groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
    units = {"model_only": "ms/image", "end_to_end": "images/s", "training": "images/s", "serving": "images/s"}
    for section in ("model_only", "end_to_end"):
        for path, per_thread in results.get(section, {}).items():
            for tkey, per_batch in per_thread.items():
                if not tkey.startswith("t"):
                    continue
                for bkey, fig in per_batch.items():
                    value = fig["ms_per_image"] if section == "model_only" else fig["images_per_s"]
                    groups.setdefault((section, f"{tkey.replace('t', 'threads ')} batch {bkey[1:]}"), []).append(
                        (path, value))
    for key, fig in results.get("training", {}).items():
        if isinstance(fig, dict) and "images_per_s" in fig:
            framework, model = key.split("/")
            groups.setdefault(("training", model), []).append((framework, fig["images_per_s"]))
    for backend, levels in results.get("serving", {}).items():
        for level, row in levels.items():
            groups.setdefault(("serving", f"concurrency {level[1:]}"), []).append((backend, row["images_per_s"]))
    rows = []
    for (section, group), entries in groups.items():
        lower_better = units[section] == "ms/image"
        best = min(v for _, v in entries) if lower_better else max(v for _, v in entries)
        for name, value in entries:
            ratio = value / best if lower_better else best / value
            rows.append((section, group, name, value, units[section], ratio))
    return rows


def format_table(results: dict) -> str:
    meta = results["meta"]
    lines = [f"{meta['mode']} run, {meta['model']}, {meta.get('cpus')} CPUs, load average "
             f"{meta.get('load_average_start', ['?'])[0]} at the start (other processes slow every figure)",
             f"{'section':<11} {'group':<22} {'path':<22} {'value':>10} {'unit':<9} {'x fastest':>9}"]
    for section, group, name, value, unit, ratio in table_rows(results):
        lines.append(f"{section:<11} {group:<22} {name:<22} {value:>10.2f} {unit:<9} {ratio:>9.2f}")
    for backend, levels in results.get("serving", {}).items():
        for level, row in levels.items():
            lines.append(f"serving     {backend} {level}: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
                         f"{row['mean_images_per_model_call'] or '-'} images per model call, CPU ms per request: "
                         f"server {row.get('server_cpu_ms_per_request', '-')}, "
                         f"client {row.get('client_cpu_ms_per_request', '-')}")
    for path, fig in results.get("single_image_latency", {}).items():
        lines.append(f"one image   {path}: JPEG -> top-5 in {fig['median_ms']:.2f} ms (median, nothing overlapped)")
    if results.get("preprocess_ms"):
        stages = ", ".join(f"{k} {v:.2f}" for k, v in results["preprocess_ms"].items())
        lines.append(f"preprocess  one {results['meta']['image']} (ms, 1 core): {stages}")
    for batch, fig in results.get("preprocess_only", {}).items():
        lines.append(f"preprocess  only, {results['meta'].get('preprocess_workers')} workers, batch {batch[1:]}: "
                     f"{fig['images_per_s']:.1f} images/s (no model)")
    if "total_s" in results.get("chain", {}):
        chain = results["chain"]
        lines.append(f"tipc chain  prepare {chain['prepare_s']:.1f} s + chain {chain['chain_s']:.1f} s "
                     f"= {chain['total_s']:.1f} s")
    lines.append("")
    lines.append("targets:")
    for key, target in results.get("targets", {}).items():
        measured = "-" if target["measured"] is None else f"{target['measured']:.3f}"
        lines.append(f"  {key}. {target['status']:<12} measured {measured:>8}  bound {target['bound']}  "
                     f"| {target['title']}")
        if target.get("summary"):
            lines.append(f"      {target['summary']}")
    return "\n".join(lines)


def format_markdown(results: dict) -> str:
    """The README's performance tables: model-only and end-to-end by path, then the targets."""
    meta = results["meta"]
    threads = max(meta["threads"])
    batches = meta["batches"]
    head = " | ".join(f"b{b} ms/img" for b in batches)
    lines = [f"| path (engine) | {head} | end-to-end b8 img/s | e2e / model-only b8 |",
             "|---|" + "---:|" * (len(batches) + 2)]
    for path, per_thread in results["model_only"].items():
        if f"t{threads}" not in per_thread:
            lines.append(f"| {path} | unavailable: {per_thread.get('unavailable', '?')} |")
            continue
        figs = per_thread[f"t{threads}"]
        e2e = results["end_to_end"].get(path, {}).get(f"t{threads}", {}).get("b8")
        model8 = figs.get("b8")
        cells = " | ".join(f"{figs[f'b{b}']['ms_per_image']:.2f}" for b in batches)
        tail = (f"{e2e['images_per_s']:.1f} | {e2e['images_per_s'] / model8['images_per_s']:.2f}"
                if e2e and model8 else "- | -")
        lines.append(f"| {path} ({meta['engines'].get(path, '?')}) | {cells} | {tail} |")
    lines += ["", "| target | measured | bound | status |", "|---|---:|---|---|"]
    for key, target in results.get("targets", {}).items():
        measured = "-" if target["measured"] is None else f"{target['measured']:.3f}"
        if target.get("summary"):
            measured = target["summary"]
        lines.append(f"| {key}. {target['title']} | {measured} | {target['bound']} | {target['status']} |")
    return "\n".join(lines)


def write_json(results: dict, out: Path) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def write_plots(results: dict, out: Path) -> list[Path]:
    """model_only.png, end_to_end.png, training.png and serving.png (when measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    threads = max(results["meta"]["threads"])
    batches = results["meta"]["batches"]
    written = []

    def bars(ax: Any, labels: list[str], series: dict[str, list[float]]) -> None:
        width = 0.8 / max(1, len(series))
        for i, (name, values) in enumerate(series.items()):
            ax.bar([x + i * width for x in range(len(labels))], values, width, label=name)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels, rotation=20,
                      ha="right")
        ax.legend(fontsize=8)

    paths = [p for p, v in results["model_only"].items() if f"t{threads}" in v]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars(ax, paths, {f"batch {b}": [results["model_only"][p][f"t{threads}"][f"b{b}"]["ms_per_image"] for p in paths]
                     for b in batches})
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_ylabel("ms per image (median, log scale)")
    ax.set_title(f"{results['meta']['model']}: model-only CPU latency, {threads} threads (lower is better)")
    written.append(_save(fig, out / "model_only.png"))

    e2e_paths = [p for p in paths if f"t{threads}" in results["end_to_end"].get(p, {})]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars(ax, e2e_paths, {
        "model only, batch 8": [results["model_only"][p][f"t{threads}"]["b8"]["images_per_s"] for p in e2e_paths],
        "JPEG -> top-5, batch 8": [results["end_to_end"][p][f"t{threads}"]["b8"]["images_per_s"] for p in e2e_paths],
    })
    ax.set_ylabel("images/s (higher is better)")
    ax.set_title(f"End-to-end vs model-only throughput, {threads} threads")
    written.append(_save(fig, out / "end_to_end.png"))

    training = {k: v["images_per_s"] for k, v in results.get("training", {}).items() if isinstance(v, dict)}
    if training:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh(list(training), list(training.values()))
        ax.set_xlabel(f"training images/s (batch {results['meta']['train_batch']}, {threads} threads)")
        ax.set_title("Training throughput (synthetic data)")
        written.append(_save(fig, out / "training.png"))

    if results.get("serving"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for backend, levels in results["serving"].items():
            conc = [int(k[1:]) for k in levels]
            left.plot(conc, [r["images_per_s"] for r in levels.values()], marker="o", label=backend)
            right.plot(conc, [r["p50_ms"] for r in levels.values()], marker="o", label=f"{backend} p50")
            right.plot(conc, [r["p99_ms"] for r in levels.values()], marker="x", linestyle="--",
                       label=f"{backend} p99")
        left.set_xlabel("concurrent clients")
        left.set_ylabel("images/s")
        right.set_xlabel("concurrent clients")
        right.set_ylabel("latency ms")
        left.legend(fontsize=8)
        right.legend(fontsize=8)
        fig.suptitle("Serving (loopback, one image per request)")
        written.append(_save(fig, out / "serving.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
