"""Plot the per-epoch metrics of ``train.py`` (see ``mobilenetv3_tipc/training/plot_log.py``).

    python tools/plot_log.py --log ./output/metrics.jsonl --out ./output/training_curves.png
"""

import sys

from mobilenetv3_tipc.training.plot_log import main

if __name__ == "__main__":
    sys.exit(main())
