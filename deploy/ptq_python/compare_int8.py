"""Float vs int8 agreement gate (see ``mobilenetv3_tipc/quantization/compare_int8.py``)."""

import sys

from mobilenetv3_tipc.quantization.compare_int8 import main

if __name__ == "__main__":
    sys.exit(main())
