"""Agreement gate: dygraph, Paddle Inference and ONNX Runtime must give the same answers
(see ``mobilenetv3_tipc/inference/agreement_gate.py``).

    python tools/check_agreement.py --model=mobilenet_v3_small --pretrained=W.pdparams \
        --model-dir=./inference/mobilenet_v3_small_infer --onnx-file=./inference/mobilenet_v3_small_onnx/model.onnx \
        --img-path=./lite_data/val
"""

import sys

from mobilenetv3_tipc.inference.agreement_gate import main

if __name__ == "__main__":
    sys.exit(main())
