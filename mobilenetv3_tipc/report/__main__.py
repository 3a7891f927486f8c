"""python -m mobilenetv3_tipc.report: write test_tipc/output/report.html from the chains' results.

    python -m mobilenetv3_tipc.report [--output-root test_tipc/output] [--junit-out FILE]
        [--out report.html] [--repo DIR] [--screenshot PNG] [--summary]

Exit codes: 0 written (and, with --summary, no chain red); 1 with --summary when a chain is
red; 2 bad arguments or an output root that does not exist.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mobilenetv3_tipc.cli import add_flag, setup_logging
from mobilenetv3_tipc.report import browser
from mobilenetv3_tipc.report.build import build_report

logger = logging.getLogger("mobilenetv3_tipc.report")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mobilenetv3_tipc.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "output-root", type=Path, default=Path("test_tipc/output"),
                        help="folder with <model>/<MODE>/results_*.log (default: test_tipc/output)")
    parser.add_argument("--out", type=Path, default=None, help="page to write (default: OUTPUT_ROOT/report.html)")
    add_flag(parser, "junit-out", type=Path, default=None,
                        help="also merge every chain's JUnit file into this one")
    parser.add_argument("--repo", type=Path, default=None,
                        help="folder the chains ran in; step log paths are relative to it "
                             "(default: the folder holding test_tipc/output)")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="also render the page in headless Chromium to this PNG (skipped with a warning "
                             "when chromium is not installed)")
    parser.add_argument("--summary", action="store_true",
                        help="print `N passed, N failed, N skipped` over every chain; exit 1 when a chain is red")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_args_parser().parse_args(argv)
    if not args.output_root.is_dir():
        logger.error("%s: output root not found (run a chain first)", args.output_root)
        return 2
    report = build_report(args.output_root, out=args.out, junit_out=args.junit_out, repo=args.repo)
    print(f"report: {report.html}" + (f"; merged JUnit: {report.junit}" if report.junit else ""))
    if args.screenshot:
        try:
            browser.screenshot(report.html, args.screenshot)
            print(f"screenshot: {args.screenshot}")
        except browser.BrowserUnavailable as exc:
            logger.warning("no screenshot: %s", exc)
        except RuntimeError as exc:
            logger.error("screenshot failed: %s", exc)
            return 1
    if args.summary:
        print(report.summary_line(), flush=True)
        return 1 if report.failed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
