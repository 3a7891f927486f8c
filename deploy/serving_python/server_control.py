"""Compatibility entry point: ``wait-ready`` / ``stop`` of python -m mobilenetv3_tipc.serving.process.

    python deploy/serving_python/server_control.py wait-ready --pid PID --url URL [--server-log LOG]
    python deploy/serving_python/server_control.py stop --pid PID [--server-log LOG] [--timeout 20]
"""

import sys

from mobilenetv3_tipc.serving.process import main

if __name__ == "__main__":
    sys.exit(main())
