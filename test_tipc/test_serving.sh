#!/usr/bin/env bash
#
# TIPC serving chain (also installed as upstream's test_serving_infer_python.sh).
#
#   bash test_tipc/test_serving.sh [CONFIG] [MODE]
#
# No argument: the small model's serving_infer_python.txt. MODE (default serving_infer) names
# the output folder. Steps:
#   1. export the inference model when its folder holds none
#   2. per devices value ("" CPU, "0" GPU 0): start the server (own process group, free port),
#      wait for /health, pipeline client on the images, check against Paddle Inference (the
#      defining step), graceful stop; the server is stopped by its PID on every exit path
# Results: test_tipc/output/<model_name>/<MODE>/results_serving.{log,json,xml}.

set -uo pipefail
# shellcheck source=test_tipc/common_func.sh
source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
tipc_require_root
tipc_engine serving "$@"
