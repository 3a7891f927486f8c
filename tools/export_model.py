"""Export a trained MobileNetV3 to a Paddle inference model (see ``mobilenetv3_tipc/export/exporter.py``).

    python tools/export_model.py --model=mobilenet_v3_small --pretrained=W.pdparams --save-inference-dir=./inference
"""

import sys

from mobilenetv3_tipc.export.exporter import main

if __name__ == "__main__":
    sys.exit(main())
