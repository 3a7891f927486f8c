"""Check pipeline_http_client.py's responses against Paddle Inference: see mobilenetv3_tipc/serving/check_responses.py.

    python deploy/serving_python/check_responses.py --responses client.jsonl \
        --model-dir ./inference/mobilenet_v3_small_infer/
"""

import sys

from mobilenetv3_tipc.serving.check_responses import main

if __name__ == "__main__":
    sys.exit(main())
