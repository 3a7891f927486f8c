"""Classify an image (or a folder) with a dygraph MobileNetV3 and ``.pdparams`` weights
(see ``mobilenetv3_tipc/inference/dygraph_predict.py``).

    python tools/predict.py --pretrained=./mobilenet_v3_small_pretrained.pdparams --img-path=images/demo.jpg
"""

import sys

from mobilenetv3_tipc.inference.dygraph_predict import main

if __name__ == "__main__":
    sys.exit(main())
