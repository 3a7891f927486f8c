"""Post-training int8 quantization (PTQ) of an exported MobileNetV3 and the float-vs-int8 gate."""
