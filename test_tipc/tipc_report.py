"""Summary line and JUnit XML of a TIPC results log (the engine writes both itself).

    python test_tipc/tipc_report.py test_tipc/output/<model>/<MODE>/results_python.log [--xml OUT.xml]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mobilenetv3_tipc.tipc.results import report_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(report_main())
