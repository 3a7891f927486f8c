"""Optional scale-out with Ray Serve: see mobilenetv3_tipc/serving/ray_app.py.

    RAY_USAGE_STATS_ENABLED=0 python deploy/serving_python/ray_serve_app.py \
        --config deploy/serving_python/config.yml --num-replicas 2
"""

import sys

from mobilenetv3_tipc.serving.ray_app import main

if __name__ == "__main__":
    sys.exit(main())
