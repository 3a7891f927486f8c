"""Post-training int8 quantization of an exported model (see ``mobilenetv3_tipc/quantization/post_quant.py``)."""

import sys

from mobilenetv3_tipc.quantization.post_quant import main

if __name__ == "__main__":
    sys.exit(main())
