"""Serve MobileNetV3 with Paddle Serving's pipeline HTTP protocol: see mobilenetv3_tipc/serving/server.py.

    python deploy/serving_python/web_service.py --config deploy/serving_python/config.yml \
        --opt op.imagenet.local_service_conf.devices="" --opt http_port=18080
"""

import sys

from mobilenetv3_tipc.serving.server import run

if __name__ == "__main__":
    sys.exit(run())
