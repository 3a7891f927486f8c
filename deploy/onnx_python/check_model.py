"""Check a converted ONNX model before trusting it (see ``mobilenetv3_tipc/inference/onnx_check.py``).

    python deploy/onnx_python/check_model.py --onnx-file=./inference/mobilenet_v3_small_onnx/model.onnx
"""

import sys

from mobilenetv3_tipc.inference.onnx_check import main

if __name__ == "__main__":
    sys.exit(main())
