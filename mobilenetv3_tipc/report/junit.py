"""Merge the chains' JUnit files into one ``<testsuites>`` document.

Each chain's suites keep their test cases; a suite whose name repeats (two configs of one
model and MODE both write ``tipc.<model>.<MODE>``) gets the chain's config name appended.
A chain that has no JUnit file (it stopped before ``tipc_finish``, or test_all.sh skipped it)
becomes a suite of one test case, failed or skipped with the reason, so no red chain drops
out of the merged file.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

from mobilenetv3_tipc.report.results import Chain

logger = logging.getLogger(__name__)

COUNTED = ("tests", "failures", "errors", "skipped")


def _suites_of(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    if root.tag == "testsuite":
        return [root]
    return list(root.iter("testsuite"))


def _recount(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    total = 0.0
    for case in cases:
        try:
            total += float(case.get("time") or 0)
        except ValueError:
            continue
    if not suite.get("time"):
        suite.set("time", f"{total:.1f}")


def _placeholder(chain: Chain) -> ET.Element:
    suite = ET.Element("testsuite", name=f"tipc.{chain.model}.{chain.mode}.{Path(chain.config).stem or chain.kind}")
    case = ET.SubElement(suite, "testcase", classname=suite.get("name", "tipc"), name="chain",
                         time=f"{chain.seconds or 0:.1f}")
    reason = chain.problem or chain.manifest_reason or chain.status
    if chain.status == "skipped":
        ET.SubElement(case, "skipped", message=reason)
    elif chain.status == "failed":
        failure = ET.SubElement(case, "failure", message=reason, type="ChainFailed")
        failure.text = f"config: {chain.config}\nscript: {chain.script}\nconsole: {chain.console}"
    _recount(suite)
    return suite


def merge(chains: list[Chain], out: Path, name: str = "tipc") -> ET.ElementTree:
    """Write one JUnit file for every chain to ``out``; returns the tree."""
    merged = ET.Element("testsuites", name=name)
    seen: set[str] = set()
    for chain in chains:
        suites: list[ET.Element] = []
        if chain.junit and chain.junit.is_file():
            try:
                suites = _suites_of(chain.junit)
            except (ET.ParseError, OSError) as exc:
                logger.warning("%s: unreadable JUnit file (%s): recorded as a failed chain", chain.junit, exc)
                chain.manifest_reason = chain.manifest_reason or f"unreadable JUnit file {chain.junit.name}"
                chain.rc = chain.rc or 1
        if not suites:
            suites = [_placeholder(chain)]
        elif chain.status == "failed" and not any(s.find("testcase/failure") is not None for s in suites):
            # Red without a failed step (nothing ran, or the script's exit code): say so in CI too.
            case = ET.SubElement(suites[0], "testcase", classname=suites[0].get("name") or "tipc",
                                 name="chain verdict", time="0.0")
            ET.SubElement(case, "failure", message=chain.problem or "chain failed", type="ChainFailed")
        for suite in suites:
            suite_name = suite.get("name") or f"tipc.{chain.model}.{chain.mode}"
            if suite_name in seen:
                suite_name = f"{suite_name}.{Path(chain.config).stem or chain.kind}"
            seen.add(suite_name)
            suite.set("name", suite_name)
            _recount(suite)
            merged.append(suite)
    for key in COUNTED:
        merged.set(key, str(sum(int(s.get(key) or 0) for s in merged)))
    merged.set("time", f"{sum(float(s.get('time') or 0) for s in merged):.1f}")
    ET.indent(merged)
    tree = ET.ElementTree(merged)
    out.parent.mkdir(parents=True, exist_ok=True)
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return tree
