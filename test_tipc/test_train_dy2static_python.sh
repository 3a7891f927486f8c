#!/usr/bin/env bash
#
# TIPC dynamic-to-static training chain (PaddleClas's test_train_dy2static_python.sh).
#
#   bash test_tipc/prepare.sh test_tipc/configs/mobilenet_v3_small/train_dy2static_python.txt lite_train_lite_infer
#   bash test_tipc/test_train_dy2static_python.sh test_tipc/configs/mobilenet_v3_small/train_dy2static_python.txt [MODE]
#
# MODE defaults to lite_train_lite_infer. Steps:
#   1. norm_train: the training in dygraph, one loss per step (--print-freq=1), the config's --seed
#   2. to_static_train: the same run through paddle.jit.to_static (full graph)
#   3. the per-step losses compared within loss_tolerance (the defining step); both speeds recorded
# A model Paddle cannot convert fails step 2 with Paddle's error; the chain is then red.
# Results: test_tipc/output/<model_name>/<MODE>/results_dy2static.{log,json,xml} and dy2static_compare.json.

set -uo pipefail
# shellcheck source=test_tipc/common_func.sh
source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
tipc_require_root
tipc_engine dy2static "$@"
