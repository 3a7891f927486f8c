#!/usr/bin/env bash
#
# TIPC Paddle2ONNX chain.
#
#   bash test_tipc/test_paddle2onnx.sh [CONFIG] [MODE]
#
# MODE (default paddle2onnx_infer) names the output folder. Steps:
#   1. paddle2onnx on the exported model (the old ONNX file is removed first)
#   2. ONNX check (onnx_check_params, when present)
#   3. ONNX Runtime inference over use_gpu x batch_size (the defining step)
#   4. agreement gate dygraph / Paddle Inference / ONNX Runtime (agreement_params, when present)
# Results: test_tipc/output/<model_name>/<MODE>/results_paddle2onnx.{log,json,xml}.

set -uo pipefail
# shellcheck source=test_tipc/common_func.sh
source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
tipc_require_root
tipc_engine paddle2onnx "$@"
