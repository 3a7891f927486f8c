#!/usr/bin/env bash
#
# TIPC basic chain.
#
#   bash test_tipc/test_train_inference_python.sh [CONFIG] [MODE] [GPU_ID]
#
# CONFIG alone: MODE lite_train_lite_infer. MODE alone: the small model's train_infer_python.txt.
# MODE: lite_train_lite_infer | lite_train_whole_infer | whole_train_whole_infer | whole_infer |
#       klquant_whole_infer (the PTQ chain with KL calibration). GPU_ID: whole_infer only.
#
# Steps, for every gpu_list entry x auto_cast value x trainer (norm/amp/fleet/pact/to_static):
#   1. train      (train.py with the train_params flags; paddle.distributed.launch for -1,-1 / 0,1 / ips)
#   2. eval       (the eval line, on the trained weights)
#   3. export     (norm_export, quant_export for pact_train)
#   4. inference  (the infer_params matrix and its skip rules; int8 only for a PACT model)
# whole_infer: export train_model with infer_export, then 4.
# Results: test_tipc/output/<model_name>/<MODE>/results_python.{log,json,xml}.
# Exit: 0 green, 1 a step failed or none ran, 2 usage/config error, 75 folder busy, 130/143 interrupted.

set -uo pipefail
# shellcheck source=test_tipc/common_func.sh
source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
tipc_require_root
tipc_engine train "$@"
