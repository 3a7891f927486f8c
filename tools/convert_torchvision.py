"""Convert a torchvision MobileNetV3 ``state_dict`` (``.pth`` or ``.npz``) into Paddle ``.pdparams``
(see ``mobilenetv3_tipc/model/torchvision_convert.py``).

    python tools/convert_torchvision.py --src mobilenet_v3_small-047dcff4.pth \
        --dst mobilenet_v3_small_torchvision.pdparams --model mobilenet_v3_small
"""

import sys

from mobilenetv3_tipc.model.torchvision_convert import main

if __name__ == "__main__":
    sys.exit(main())
