#!/usr/bin/env bash
#
# TIPC post-training quantization (PTQ) chain.
#
#   bash test_tipc/test_ptq_inference_python.sh [CONFIG] [MODE]
#
# MODE: whole_infer (default) | klquant_whole_infer (KL calibration, also for a train-layout
# config's kl_quant line) | any other word (names the output folder). Steps:
#   1. legacy float export of train_model (tools/export_model.py --legacy-format)
#   2. calibration (quant_post / Step6 PTQ line / kl_quant: deploy/ptq_python/post_quant.py)
#   3. int8 inference matrix on the quantized model (the defining step)
#   4. float-vs-int8 gate (compare_params, when present)
# Results: test_tipc/output/<model_name>/<MODE>/results_ptq.{log,json,xml}.

set -uo pipefail
# shellcheck source=test_tipc/common_func.sh
source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
tipc_require_root
tipc_engine ptq "$@"
