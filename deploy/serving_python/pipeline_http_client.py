"""Paddle Serving pipeline HTTP client: see mobilenetv3_tipc/serving/client.py.

    python deploy/serving_python/pipeline_http_client.py --image_dir ./lite_data/val/ \
        --url http://127.0.0.1:18080/imagenet/prediction
"""

import sys

from mobilenetv3_tipc.serving.client import main

if __name__ == "__main__":
    sys.exit(main())
