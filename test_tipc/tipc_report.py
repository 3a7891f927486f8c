"""Summary line and JUnit XML of a TIPC results log (the engine writes both itself).

    python test_tipc/tipc_report.py test_tipc/output/<model>/<MODE>/results_python.log [--xml OUT.xml]

The same as ``python -m mobilenetv3_tipc.tipc report``; the package is importable because
requirements.txt installs it editable (``-e .``).
"""

import sys

from mobilenetv3_tipc.tipc.results import report_main

if __name__ == "__main__":
    sys.exit(report_main())
