"""Render the report as one static HTML page: inline CSS, no script, no network, opens from disk.

Order on the page: the verdict banner, the failures (every red step and red chain, first, so
a red step is the first thing seen), the chains table, the inference matrices, the agreement
figures, the benchmark plots, then each chain's steps. Skips of one reason inside a chain are
one row with the count; the row opens to list every skipped command. Log links are relative to
the page, so the output folder can be copied or opened as a CI artifact.

Stable hooks for tests and scrapers: ``section#failures`` (``li.failed-step``/``li.failed-chain``),
``table#chains tr.chain[data-chain][data-status]``, ``table.matrix td.cell[data-status]``,
``table#agreement tr[data-backend]``, ``section.chain-detail[data-chain]`` with ``tr.step[data-status]``.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from mobilenetv3_tipc.report.extras import Agreement
from mobilenetv3_tipc.report.matrix import Grid
from mobilenetv3_tipc.report.results import Chain, Step, totals

EMBED_LIMIT = 3_000_000  # bytes; larger plots are linked instead of embedded

CSS = """
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9; --skip:#7d6608;
  --skip-bg:#fff8c5; --none-bg:#f6f8fa; --line:#d0d7de; --text:#1f2328; --muted:#59636e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; color: var(--text);
  margin: 0; background: #fff; }
header { padding: 14px 24px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { color: var(--muted); font-size: 12px; }
main { padding: 0 24px 40px; }
section { margin-top: 22px; }
h2 { font-size: 16px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
.banner { margin-top: 14px; padding: 12px 16px; border-radius: 6px; font-size: 16px; font-weight: 600; }
.banner.failed { background: var(--fail); color: #fff; }
.banner.passed { background: var(--pass); color: #fff; }
.banner.empty { background: var(--none-bg); color: var(--muted); }
#failures { border: 2px solid var(--fail); border-radius: 6px; background: var(--fail-bg); padding: 10px 14px; }
#failures h2 { color: var(--fail); }
#failures ol { margin: 0; padding-left: 22px; }
#failures li { margin: 6px 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--none-bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; word-break: break-all; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.passed { background: var(--pass-bg); color: var(--pass); }
.badge.failed { background: var(--fail); color: #fff; }
.badge.skipped { background: var(--skip-bg); color: var(--skip); }
tr.failed td { background: var(--fail-bg); }
tr.failed td:first-child { border-left: 4px solid var(--fail); }
td.cell { text-align: center; min-width: 64px; font-size: 12px; }
td.cell.passed { background: var(--pass-bg); color: var(--pass); }
td.cell.failed { background: var(--fail); color: #fff; font-weight: 600; }
td.cell.skipped { background: var(--skip-bg); color: var(--skip); }
td.cell.none { background: #fff; color: #b0b7be; }
.reason { color: var(--muted); }
tr.failed .reason, #failures .reason, .chain-detail > p.problem { color: var(--fail); font-weight: 600; }
table.steps { width: 100%; table-layout: fixed; }
table.steps td { overflow-wrap: anywhere; }
table.steps col.n { width: 3.5em; } table.steps col.s { width: 7.5em; } table.steps col.c { width: 44%; }
table.steps col.r { width: 20%; } table.steps col.t { width: 5.5em; }
table.steps a.log, #failures a.log { word-break: break-all; }
details summary { cursor: pointer; }
.legend span { margin-right: 10px; }
figure { display: inline-block; margin: 0 16px 16px 0; }
figure img { max-width: 640px; border: 1px solid var(--line); }
figcaption { font-size: 12px; color: var(--muted); }
.muted { color: var(--muted); }
"""


@dataclass
class Page:
    chains: list[Chain]
    grids: list[Grid]
    agreements: list[Agreement]
    plots: list[Path]
    repo: Path
    out: Path
    junit: Path | None = None


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 60:
        return f"{int(value // 60)} min {value % 60:02.0f} s"
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _href(path: Path, out_dir: Path) -> str:
    rel = os.path.relpath(path.resolve(), out_dir.resolve())
    return quote(Path(rel).as_posix(), safe="/-_.~,=+@")


def _log_link(step: Step, page: Page) -> str:
    if not step.ran:
        return '<span class="muted">not run</span>'
    path = Path(step.log)
    path = path if path.is_absolute() else page.repo / path
    if not path.exists():
        return f'<code>{_e(step.log)}</code> <span class="muted">(missing)</span>'
    return f'<a class="log" href="{_e(_href(path, page.out.parent))}">{_e(path.name)}</a>'


def _badge(status: str) -> str:
    return f'<span class="badge {status}">{_e(status)}</span>'


def _banner(page: Page) -> str:
    counts = totals(page.chains)
    red = [c for c in page.chains if c.status == "failed"]
    line = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if not page.chains:
        return '<div class="banner empty" id="verdict" data-status="empty">No results found.</div>'
    if red:
        text = f"FAILED: {len(red)} of {len(page.chains)} chains red; steps: {line}"
        return f'<div class="banner failed" id="verdict" data-status="failed">{_e(text)}</div>'
    text = f"PASSED: all {len(page.chains)} chains green; steps: {line}"
    return f'<div class="banner passed" id="verdict" data-status="passed">{_e(text)}</div>'


def _failures(page: Page) -> str:
    items = []
    for chain in page.chains:
        for step in chain.steps:
            if step.status == "failed":
                items.append(
                    f'<li class="failed-step" data-chain="{_e(chain.label)}">'
                    f'<a href="#{_e(chain.anchor)}">{_e(chain.label)}</a>: <code>{_e(step.command)}</code> '
                    f'<span class="reason">({_e(step.reason or "failed")})</span> {_log_link(step, page)}</li>'
                )
        if chain.status == "failed" and not chain.counts()["failed"]:
            console = ""
            if chain.console:
                path = Path(chain.console)
                path = path if path.is_absolute() else page.repo / path
                if path.exists():
                    console = f' <a class="log" href="{_e(_href(path, page.out.parent))}">console log</a>'
            items.append(
                f'<li class="failed-chain" data-chain="{_e(chain.label)}">'
                f'<a href="#{_e(chain.anchor)}">{_e(chain.label)}</a>: '
                f'<span class="reason">{_e(chain.problem)}</span>{console}</li>'
            )
    if not items:
        return ""
    return (f'<section id="failures" class="failed"><h2>Failures ({len(items)})</h2><ol>'
            + "".join(items) + "</ol></section>")


def _chains_table(page: Page) -> str:
    rows = []
    for chain in page.chains:
        counts = chain.counts()
        links = []
        if chain.results:
            links.append(f'<a href="{_e(_href(chain.results, page.out.parent))}">results</a>')
        if chain.junit:
            links.append(f'<a href="{_e(_href(chain.junit, page.out.parent))}">JUnit</a>')
        rows.append(
            f'<tr class="chain {chain.status}" data-chain="{_e(chain.label)}" data-status="{chain.status}">'
            f'<td><a href="#{_e(chain.anchor)}">{_e(chain.label)}</a></td><td>{_badge(chain.status)}</td>'
            f'<td class="num">{counts["passed"]}</td><td class="num">{counts["failed"]}</td>'
            f'<td class="num">{counts["skipped"]}</td><td class="num">{_e(_seconds(chain.seconds))}</td>'
            f'<td>{_e(chain.finished)}</td><td><code>{_e(chain.script or chain.kind)}</code></td>'
            f'<td>{" ".join(links)}</td></tr>'
        )
    head = ("<tr><th>chain (model / MODE / config)</th><th>status</th><th class=num>passed</th>"
            "<th class=num>failed</th><th class=num>skipped</th><th class=num>wall time</th><th>finished</th>"
            "<th>script</th><th>files</th></tr>")
    junit = ""
    if page.junit:
        junit = f' <a href="{_e(_href(page.junit, page.out.parent))}">merged JUnit</a>'
    return (f'<section id="chains-section"><h2>Chains ({len(page.chains)}){junit}</h2>'
            f'<table id="chains">{head}{"".join(rows)}</table></section>')


def _cell_html(cells: list, page: Page) -> str:
    if not cells:
        return '<td class="cell none">&middot;</td>'
    status = "failed" if any(c.status == "failed" for c in cells) else (
        "passed" if any(c.status == "passed" for c in cells) else "skipped")
    parts, titles = [], []
    for cell in cells:
        if cell.status == "passed":
            text = cell.engine or "ok"
            if cell.infer_ms is not None:
                text += f" {cell.infer_ms:.1f} ms"
        elif cell.status == "failed":
            text = "FAIL"
        else:
            text = "skip"
        if cell.step.ran:
            path = Path(cell.step.log)
            path = path if path.is_absolute() else page.repo / path
            if path.exists():
                text = f'<a href="{_e(_href(path, page.out.parent))}">{_e(text)}</a>'
            else:
                text = _e(text)
        else:
            text = _e(text)
        parts.append(text)
        title = f"{cell.status}: {cell.step.command}"
        if cell.step.reason:
            title += f" ({cell.step.reason})"
        if cell.engine_detail:
            title += f" [engine: {cell.engine} ({cell.engine_detail})]"
        titles.append(title)
    return (f'<td class="cell {status}" data-status="{status}" title="{_e(" | ".join(titles))}">'
            + "<br>".join(parts) + "</td>")


def _matrices(page: Page) -> str:
    if not page.grids:
        return ""
    blocks = []
    for grid in page.grids:
        counts = grid.counts()
        precisions: list[str] = []
        for precision, _ in grid.columns:
            if precision not in precisions:
                precisions.append(precision)
        head1 = "<tr><th rowspan=2>engine (configured); threads</th>" + "".join(
            f'<th colspan="{sum(1 for p, _ in grid.columns if p == precision)}">{_e(precision)}</th>'
            for precision in precisions) + "</tr>"
        head2 = "<tr>" + "".join(f"<th>batch {_e(batch)}</th>" for _, batch in grid.columns) + "</tr>"
        body = []
        for row in grid.rows:
            body.append(f"<tr><th>{_e(row)}</th>" + "".join(
                _cell_html(grid.cells.get((row, col), []), page) for col in grid.columns) + "</tr>")
        blocks.append(
            f'<h3><a href="#{_e(grid.chain.anchor)}">{_e(grid.chain.label)}</a> '
            f'<span class="muted">{counts["passed"]} passed, {counts["failed"]} failed, '
            f'{counts["skipped"]} skipped</span></h3>'
            f'<table class="matrix" data-chain="{_e(grid.chain.label)}">{head1}{head2}{"".join(body)}</table>'
        )
    legend = ('<p class="legend"><span class="badge passed">passed: the engine that ran, model-only ms per batch'
              '</span><span class="badge failed">failed</span><span class="badge skipped">skipped (hover for the '
              'reason)</span></p>')
    return f'<section id="matrix"><h2>Inference matrix</h2>{legend}{"".join(blocks)}</section>'


def _agreement(page: Page) -> str:
    if not page.agreements:
        return ""
    rows = []
    for item in page.agreements:
        status = "passed" if item.ok else "failed"
        rows.append(
            f'<tr class="{status}" data-backend="{_e(item.backend)}"><td>{_e(item.chain.label)}</td>'
            f'<td>{_e(item.backend)}</td><td class="num">{_e(item.max_abs_diff)}</td><td>{_e(item.top1)}</td>'
            f'<td>{_badge(status)} {_e(item.result)}</td><td class="muted">{_e(item.note)}</td>'
            f'<td>{_log_link(item.step, page)}</td></tr>'
        )
    head = ("<tr><th>chain</th><th>backend</th><th class=num>max |&Delta;p|</th><th>top-1 agreement</th>"
            "<th>result</th><th>gate</th><th>log</th></tr>")
    return (f'<section id="agreement-section"><h2>Agreement</h2>'
            f'<table id="agreement">{head}{"".join(rows)}</table></section>')


def _plots(page: Page) -> str:
    if not page.plots:
        return ""
    figures = []
    for path in page.plots:
        size = path.stat().st_size
        if size <= EMBED_LIMIT:
            mime = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
            src = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
        else:
            src = _href(path, page.out.parent)
        rel = os.path.relpath(path.resolve(), page.repo.resolve())
        figures.append(f'<figure><img src="{_e(src)}" alt="{_e(path.name)}"><figcaption>{_e(rel)}</figcaption>'
                       f"</figure>")
    return f'<section id="plots"><h2>Benchmark and training plots</h2>{"".join(figures)}</section>'


def _step_row(index: int, step: Step, page: Page) -> str:
    return (f'<tr class="step {step.status}" data-status="{step.status}"><td class="num">{index}</td>'
            f"<td>{_badge(step.status)}</td><td><code>{_e(step.command)}</code></td>"
            f'<td class="reason">{_e(step.reason)}</td><td class="num">{_e(_seconds(step.seconds))}</td>'
            f"<td>{_log_link(step, page)}</td></tr>")


def _chain_detail(chain: Chain, page: Page) -> str:
    rows: list[str] = []
    skip_groups: dict[str, list[tuple[int, Step]]] = {}
    order: list[tuple[str, int, Step | str]] = []
    for index, step in enumerate(chain.steps, 1):
        if step.status == "skipped":
            key = step.reason or "no reason given"
            if key not in skip_groups:
                skip_groups[key] = []
                order.append(("group", index, key))
            skip_groups[key].append((index, step))
        else:
            order.append(("step", index, step))
    for kind, index, item in order:
        if kind == "step" and isinstance(item, Step):
            rows.append(_step_row(index, item, page))
            continue
        group = skip_groups[str(item)]
        hardware = ' <span class="badge skipped">no such hardware here</span>' if all(
            s.hardware for _, s in group) else ""
        inner = "".join(
            f"<li>#{i} <code>{_e(s.command)}</code> {_log_link(s, page)}</li>" for i, s in group)
        rows.append(
            f'<tr class="step skipped skip-group" data-status="skipped" data-count="{len(group)}">'
            f'<td class="num">{index}</td><td>{_badge("skipped")} &times;{len(group)}</td>'
            f'<td><details><summary>{len(group)} step{"s" if len(group) != 1 else ""}</summary><ul>{inner}</ul>'
            f'</details></td><td class="reason">{_e(item)}{hardware}</td><td class="num">-</td><td></td></tr>'
        )
    head = ('<colgroup><col class="n"><col class="s"><col class="c"><col class="r"><col class="t"><col></colgroup>'
            "<tr><th class=num>#</th><th>status</th><th>command</th><th>reason</th><th class=num>time</th>"
            "<th>log</th></tr>")
    counts = chain.counts()
    meta = [f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped",
            f"wall time {_seconds(chain.seconds)}"]
    if chain.started:
        meta.append(f"started {chain.started}")
    if chain.config:
        meta.append(f"config {chain.config}")
    problem = f'<p class="problem">{_e(chain.problem)}</p>' if chain.problem else ""
    table = f'<table class="steps">{head}{"".join(rows)}</table>' if rows else '<p class="muted">No status line.</p>'
    return (f'<section class="chain-detail {chain.status}" id="{_e(chain.anchor)}" data-chain="{_e(chain.label)}">'
            f'<h3>{_badge(chain.status)} {_e(chain.label)}</h3><p class="muted">{_e("; ".join(meta))}</p>'
            f"{problem}{table}</section>")


def render(page: Page) -> str:
    generated = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    # Red chains first in the details too; the table keeps run order.
    details = [c for c in page.chains if c.status == "failed"] + [c for c in page.chains if c.status != "failed"]
    body = "".join([
        _failures(page),
        _chains_table(page),
        _matrices(page),
        _agreement(page),
        _plots(page),
        '<section id="steps"><h2>Steps per chain</h2>' + "".join(_chain_detail(c, page) for c in details)
        + "</section>",
    ])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>TIPC report</title>"
        f"<style>{CSS}</style></head><body>"
        f'<header><h1>TIPC report</h1><div class="meta">generated {_e(generated)} from '
        f"<code>{_e(page.out.parent)}</code></div>{_banner(page)}</header>"
        f"<main>{body}</main></body></html>\n"
    )
