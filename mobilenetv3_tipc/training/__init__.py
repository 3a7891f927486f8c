"""Training: the loop's pieces (``engine``), distribution, metrics, quant-aware training, the log plot."""
