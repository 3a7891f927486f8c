"""One static page (and one merged JUnit file) for every TIPC chain run under an output folder.

    python -m mobilenetv3_tipc.report [--output-root test_tipc/output] [--junit-out FILE]

:func:`build_report` reads the results logs, step logs and JUnit files, writes
``report.html`` and, when asked, the merged JUnit file; see :mod:`.results` for the
status-line contract it parses.
"""

from mobilenetv3_tipc.report.build import Report, build_report

__all__ = ["Report", "build_report"]
