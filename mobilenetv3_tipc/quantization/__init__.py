"""Post-training int8 quantization (PTQ) and the float-vs-int8 agreement gate."""
