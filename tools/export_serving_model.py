"""Convert an exported model into Paddle Serving's ``serving_server/`` + ``serving_client/`` folders.

    python tools/export_serving_model.py --dirname ./inference/mobilenet_v3_small_infer \
        --model_filename inference.pdmodel --params_filename inference.pdiparams \
        --serving_server ./serving_server --serving_client ./serving_client

Takes ``python -m paddle_serving_client.convert``'s flags and writes its layout; the real
converter does not import on Paddle >= 2.6. See :mod:`mobilenetv3_tipc.export.serving_model`.
"""

from __future__ import annotations

import sys

from mobilenetv3_tipc.export.serving_model import main

if __name__ == "__main__":
    sys.exit(main())
