"""Read everything under an output root and write the page (and the merged JUnit file)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.report import extras, junit, matrix, page
from mobilenetv3_tipc.report.results import Chain, default_repo, discover_chains, totals

logger = logging.getLogger(__name__)


@dataclass
class Report:
    chains: list[Chain]
    html: Path
    junit: Path | None

    @property
    def totals(self) -> dict[str, int]:
        return totals(self.chains)

    @property
    def failed(self) -> bool:
        return any(chain.status == "failed" for chain in self.chains)

    def summary_line(self) -> str:
        counts = self.totals
        return f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"


def build_report(output_root: Path, out: Path | None = None, junit_out: Path | None = None,
                 repo: Path | None = None) -> Report:
    """Write ``out`` (default ``<output_root>/report.html``) and, with ``junit_out``, the merged JUnit file."""
    output_root = Path(output_root)
    repo = Path(repo) if repo else default_repo(output_root)
    out = Path(out) if out else output_root / "report.html"
    chains = discover_chains(output_root, repo)
    if junit_out:
        junit.merge(chains, Path(junit_out))
    content = page.render(page.Page(
        chains=chains,
        grids=matrix.build_grids(chains, repo),
        agreements=extras.agreements(chains, repo),
        plots=extras.benchmark_plots(output_root, repo),
        repo=repo,
        out=out,
        junit=Path(junit_out) if junit_out else None,
    ))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(out)
    logger.info("wrote %s (%d chains)", out, len(chains))
    return Report(chains=chains, html=out, junit=Path(junit_out) if junit_out else None)
