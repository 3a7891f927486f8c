#!/usr/bin/env bash
#
# Prepare data, Python packages and weights for a TIPC chain (idempotent, offline-safe).
#
#   bash test_tipc/prepare.sh [CONFIG] [MODE]
#
# MODE alone: the small model's config for that mode; CONFIG alone: its chain's default mode.
# Steps:
#   1. python modules importable (pip install -r requirements.txt only when one is missing)
#   2. ./lite_data/ from test_images/lite_data.tar
#   3. weights ./pretrain_models/<model>_pretrained.pdparams: existing file, pretrained_model_url
#      (not with TIPC_OFFLINE=1), an earlier lite chain's, or trained now with the lite chain's
#      train command (one line says so)
#   4. whole_infer, klquant_whole_infer, paddle2onnx_infer, serving_infer: ./inference/<model>_infer/
# Exit: 0 ready, 1 something could not be prepared (the message says what to do), 2 usage/config error.

set -uo pipefail
# shellcheck source=test_tipc/common_func.sh
source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
tipc_require_root
tipc_engine prepare "$@"
