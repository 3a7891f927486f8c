"""The report in a real browser: headless Chromium opens report.html from disk (file://).

Asserts on the DOM Chromium renders (every chain listed, the failing step first and red)
and on the pixels of its screenshot (a red banner at the top). The screenshot is kept as a
CI artifact in $TIPC_ARTIFACT_DIR (e.g. test_tipc/output) when that is set. Skipped, with
the reason, when chromium is not installed (Debian: apt-get install -y chromium).
"""

from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mobilenetv3_tipc.report import browser, build_report
from tests.fixtures.report_output import FAILING_COMMAND, make_output

try:
    CHROMIUM = browser.find_chromium()
    MISSING = ""
except browser.BrowserUnavailable as exc:
    CHROMIUM, MISSING = "", str(exc)

pytestmark = pytest.mark.skipif(not CHROMIUM, reason=f"headless Chromium test: {MISSING}")

RED = (0xCF, 0x22, 0x2E)


class _Dom(HTMLParser):
    """Elements of interest in the rendered DOM, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.chain_rows: list[dict[str, str]] = []
        self.first_failure: dict[str, str] | None = None
        self.failure_text: list[str] = []
        self._in_failure = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "section" and a.get("id"):
            self.sections.append(a["id"])
        if tag == "tr" and "chain" in classes:
            self.chain_rows.append(a)
        if tag == "li" and ("failed-step" in classes or "failed-chain" in classes):
            if self.first_failure is None:
                self.first_failure = a
                self._in_failure = 1
        elif self._in_failure and tag == "li":
            self._in_failure = 0

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._in_failure = 0

    def handle_data(self, data: str) -> None:
        if self._in_failure:
            self.failure_text.append(data)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = make_output(tmp_path_factory.mktemp("browser") / "repo")
    report = build_report(out, junit_out=out / "results_all.xml")
    return report.html, browser.dump_dom(report.html)


def test_dom_lists_every_chain_and_the_failure_first(rendered: tuple[Path, str]) -> None:
    _, dom = rendered
    parsed = _Dom()
    parsed.feed(dom)
    assert parsed.sections[0] == "failures", parsed.sections
    assert [r["data-chain"].rsplit(" / ", 1)[1] for r in parsed.chain_rows] == [
        "train_infer_python", "train_amp_infer_python", "paddle2onnx_infer_python", "serving_infer_python",
        "train_dy2static_python"]
    assert parsed.first_failure is not None
    assert parsed.first_failure["data-chain"].endswith("train_amp_infer_python")
    assert FAILING_COMMAND in " ".join("".join(parsed.failure_text).split())
    failed_rows = [r for r in parsed.chain_rows if r["data-status"] == "failed"]
    assert all("failed" in r["class"].split() for r in failed_rows) and len(failed_rows) == 2


def test_screenshot_has_the_red_banner_on_top(rendered: tuple[Path, str], tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    html, _ = rendered
    png = browser.screenshot(html, tmp_path / "report.png", width=1280, height=1000)
    artifacts = os.environ.get("TIPC_ARTIFACT_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(artifacts) / "report_browser_test.png")
    with Image.open(png) as image:
        top = np.asarray(image.convert("RGB"), dtype=np.int16)[:250]
    red = int((np.abs(top - np.array(RED, dtype=np.int16)).max(axis=2) <= 12).sum())
    # The verdict banner (about 1230 x 40 px) is solid red when a chain failed.
    assert red > 20_000, f"only {red} red pixels in the top 250 px of {png}"
