"""MobileNetV3 with every deployment path certified by TIPC."""
