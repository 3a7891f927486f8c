#!/usr/bin/env bash
#
# Prepare data, dependencies and weights for a TIPC chain.
#
#   bash test_tipc/prepare.sh CONFIG MODE
#
# MODE: lite_train_lite_infer | lite_train_whole_infer | whole_train_whole_infer |
#       whole_infer | paddle2onnx_infer | serving_infer
# Run from the repository root. Idempotent and quick when everything is in place; it
# works offline (it only downloads the pretrained weights, and only when they are
# missing and the config gives a URL).
#
# What it leaves behind:
#   every mode          ./lite_data/ (from test_images/lite_data.tar) and a Python
#                       environment that imports paddle, PIL, numpy, yaml and tqdm
#   whole_train_whole_infer  checks the full data set (--data-path) is in place
#   lite_train_*        also ./pretrain_models/<model_name>_pretrained.pdparams when the
#                       config starts from it (--pretrained in train_params: the PACT chain;
#                       train_model in ptq_params: the PTQ chain)
#   whole_infer, paddle2onnx_infer, serving_infer
#                       ./pretrain_models/<model_name>_pretrained.pdparams and the exported
#                       ./inference/<model_name>_infer/ (inference.json, .pdiparams, ...)
#   paddle2onnx_infer   also onnxruntime, paddle2onnx and onnx importable
#   serving_infer       also fastapi, uvicorn and requests importable
# Exit status: 0 ready, 1 something could not be prepared (the message says what to do),
# 2 usage or config error.
#
# Environment: TIPC_OFFLINE=1 never tries to download; TIPC_DOWNLOAD_TIMEOUT (seconds,
# default 120) bounds a download.

set -uo pipefail

readonly MODES="lite_train_lite_infer lite_train_whole_infer whole_train_whole_infer whole_infer paddle2onnx_infer serving_infer"
readonly LITE_TAR="test_images/lite_data.tar"
readonly LITE_DIR="lite_data"
readonly LITE_MARKER="${LITE_DIR}/.tipc_source_sha256"

if [[ ! -f test_tipc/common_func.sh || ! -f train.py ]]; then
  printf 'ERROR: run this script from the repository root (where train.py and test_tipc/ are), not from %s\n' \
    "$(pwd)" >&2
  exit 2
fi
# shellcheck source=test_tipc/common_func.sh
source test_tipc/common_func.sh

CONFIG=""
MODE=""
MODEL_NAME=""
PYTHON=()

usage() {
  printf 'usage: bash test_tipc/prepare.sh CONFIG MODE\n  MODE: %s\n' "${MODES// / | }" >&2
}

#######################################
# Import-check Python modules; pip install -r requirements.txt only when one is missing.
# Arguments: module names.
#######################################
ensure_python_modules() {
  local modules
  modules="$(IFS=','; printf '%s' "$*")"
  local check="import ${modules//,/, }"
  if "${PYTHON[@]}" -c "${check}" >/dev/null 2>&1 </dev/null; then
    tipc_info "python modules present: $*"
    return 0
  fi
  tipc_info "missing python modules among: $* -> ${PYTHON[*]} -m pip install -r requirements.txt"
  if ! "${PYTHON[@]}" -m pip install -r requirements.txt; then
    tipc_error "pip install -r requirements.txt failed"
  fi
  if ! "${PYTHON[@]}" -c "${check}" </dev/null; then
    tipc_error "still cannot '${check}' with ${PYTHON[*]}; install the packages above into that interpreter"
    return 1
  fi
}

#######################################
# Extract test_images/lite_data.tar unless the same archive is already extracted.
#######################################
extract_lite_data() {
  if [[ ! -f "${LITE_TAR}" ]]; then
    tipc_error "${LITE_TAR} not found (it ships with the repository; see test_images/README.md)"
    return 1
  fi
  local sum
  sum="$(sha256sum "${LITE_TAR}" | cut -d' ' -f1)"
  if [[ -f "${LITE_MARKER}" && "$(cat "${LITE_MARKER}")" == "${sum}" && -d "${LITE_DIR}/train" \
    && -d "${LITE_DIR}/val" ]]; then
    tipc_info "${LITE_DIR}/ is up to date (${LITE_TAR} sha256 ${sum:0:12})"
    return 0
  fi
  tipc_info "extracting ${LITE_TAR} -> ${LITE_DIR}/"
  if ! tar -xf "${LITE_TAR}"; then
    tipc_error "tar -xf ${LITE_TAR} failed"
    return 1
  fi
  if [[ ! -d "${LITE_DIR}/train" || ! -d "${LITE_DIR}/val" ]]; then
    tipc_error "${LITE_TAR} did not create ${LITE_DIR}/train and ${LITE_DIR}/val"
    return 1
  fi
  printf '%s\n' "${sum}" >"${LITE_MARKER}"
}

#######################################
# whole_train_whole_infer needs the full data set at the config's --data-path.
#######################################
check_whole_data() {
  local idx data_path=""
  if idx="$(tipc_find_param train_params data_path)"; then
    data_path="$(tipc_mode_value "${TIPC_CFG_VALUES[idx]}" "${MODE}")"
  fi
  [[ -z "${data_path}" ]] && data_path="./data"
  if [[ -d "${data_path}/train" && -d "${data_path}/val" ]]; then
    tipc_info "full data set found at ${data_path}"
    return 0
  fi
  tipc_error "${MODE} trains on the full ImageNet-1k data set, which is not in the repository:" \
    "place it at ${data_path}/train/<wnid>/*.JPEG and ${data_path}/val/<wnid>/*.JPEG" \
    "(or change --data-path for ${MODE} in ${CONFIG})"
  return 1
}

#######################################
# A key from CONFIG, else from train_infer_python.txt in the same folder, else DEFAULT.
# Arguments: key, default.
#######################################
config_or_sibling() {
  local key="$1" default="$2" value sibling
  value="$(tipc_get "${key}" "")"
  if [[ -n "${value}" ]]; then
    printf '%s\n' "${value}"
    return 0
  fi
  sibling="$(dirname "${CONFIG}")/train_infer_python.txt"
  if [[ -f "${sibling}" && "${sibling}" -ef "${CONFIG}" ]]; then
    sibling=""
  fi
  if [[ -n "${sibling}" && -f "${sibling}" ]]; then
    value="$(tipc_load_config "${sibling}" 2>/dev/null; tipc_get "${key}" "")"
  fi
  printf '%s\n' "${value:-${default}}"
}

#######################################
# ./pretrain_models/<model>_pretrained.pdparams: existing file, config URL (checked
# against pretrained_model_sha256), newest lite-chain weights; else say what to place.
#######################################
ensure_weights() {
  local dest="./pretrain_models/${MODEL_NAME}_pretrained.pdparams"
  if [[ -s "${dest}" ]]; then
    tipc_info "weights: using existing ${dest}"
    return 0
  fi
  local url sha
  url="$(config_or_sibling pretrained_model_url null)"
  sha="$(config_or_sibling pretrained_model_sha256 null)"
  if ! tipc_is_null "${url}"; then
    if [[ "${TIPC_OFFLINE:-0}" == 1 ]]; then
      tipc_info "weights: TIPC_OFFLINE=1, not downloading ${url}"
    else
      if tipc_is_null "${sha}"; then
        tipc_info "weights: WARNING no pretrained_model_sha256 is recorded for ${url}; the download cannot be verified"
      fi
      tipc_info "weights: downloading ${url} -> ${dest}"
      local -a fetch=("${PYTHON[@]}" test_tipc/tipc_fetch.py "${url}" "${dest}" --timeout 20)
      tipc_is_null "${sha}" || fetch+=(--sha256 "${sha}")
      local rc=0
      timeout "${TIPC_DOWNLOAD_TIMEOUT:-120}" "${fetch[@]}" </dev/null || rc=$?
      if ((rc == 0)); then
        return 0
      elif ((rc == 3)); then
        tipc_error "weights: ${url} does not match pretrained_model_sha256 ${sha}; refusing it"
        return 1
      fi
      tipc_info "weights: ${url} is not reachable (exit ${rc}); trying the lite chain's weights"
    fi
  fi
  local newest
  # Float weights only: norm_train runs (a pact_train checkpoint holds quant-aware weights).
  newest="$(find "./test_tipc/output/${MODEL_NAME}/lite_train_lite_infer" -path '*/norm_train_*/latest.pdparams' \
    -type f \
    -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -n 1 | cut -d' ' -f2-)"
  if [[ -n "${newest}" ]]; then
    mkdir -p "$(dirname "${dest}")"
    cp "${newest}" "${dest}" || return 1
    local labels
    labels="$(dirname "${newest}")/label_list.txt"
    if [[ -f "${labels}" ]]; then
      cp "${labels}" "$(dirname "${dest}")/label_list.txt" || return 1
    fi
    tipc_info "weights: copied ${newest} -> ${dest} (trained by the lite chain on lite_data; not ImageNet weights)"
    return 0
  fi
  tipc_error "no weights for ${MODEL_NAME}. Place a ${MODEL_NAME} .pdparams file at ${dest}" \
    "(the upstream weights are at ${url} when reachable), or run the lite chain first, which trains one:" \
    "bash test_tipc/prepare.sh test_tipc/configs/${MODEL_NAME}/train_infer_python.txt lite_train_lite_infer &&" \
    "bash test_tipc/test_train_inference_python.sh test_tipc/configs/${MODEL_NAME}/train_infer_python.txt" \
    "lite_train_lite_infer"
  return 1
}

#######################################
# ./inference/<model>_infer/ exported from the weights (again when the weights are newer).
#######################################
ensure_inference_model() {
  local weights="./pretrain_models/${MODEL_NAME}_pretrained.pdparams"
  local out="./inference/${MODEL_NAME}_infer"
  local program="${out}/inference.json"
  [[ -f "${program}" ]] || program="${out}/inference.pdmodel"
  if [[ -f "${program}" && -f "${out}/inference.pdiparams" && ! "${weights}" -nt "${program}" ]]; then
    tipc_info "inference model: ${out} is up to date"
    return 0
  fi
  local export_value
  export_value="$(config_or_sibling infer_export null)"
  tipc_is_null "${export_value}" && export_value="tools/export_model.py --model ${MODEL_NAME}"
  local -a words cmd
  tipc_split_words words "${export_value}"
  cmd=("${PYTHON[@]}" "${words[@]}" "--pretrained=${weights}" "--save-inference-dir=${out}")
  tipc_info "inference model: $(_tipc_quote_cmd "${cmd[@]}")"
  if ! "${cmd[@]}" </dev/null; then
    tipc_error "export failed: $(_tipc_quote_cmd "${cmd[@]}")"
    return 1
  fi
}

#######################################
# Whether the config's training --pretrained is ./pretrain_models/<model>_pretrained.pdparams.
#######################################
trains_from_pretrained() {
  local idx value
  for idx in "$(tipc_find_param train_params pretrained)" "$(tipc_find_param ptq_params train_model)"; do
    [[ -n "${idx}" ]] || continue
    value="$(tipc_mode_value "${TIPC_CFG_VALUES[idx]}" "${MODE}")"
    [[ "${value}" == "./pretrain_models/${MODEL_NAME}_pretrained.pdparams" ]] && return 0
  done
  return 1
}

main() {
  if (($# != 2)); then
    usage
    exit 2
  fi
  CONFIG="$1"
  MODE="$2"
  if [[ " ${MODES} " != *" ${MODE} "* ]]; then
    tipc_error "unknown MODE '${MODE}'"
    usage
    exit 2
  fi
  tipc_load_config "${CONFIG}" || exit 2
  MODEL_NAME="$(tipc_get model_name)" || exit 2
  tipc_split_words PYTHON "$(tipc_get python python)"
  if ! command -v "${PYTHON[0]}" >/dev/null 2>&1; then
    tipc_die "${CONFIG}:$(tipc_line python): interpreter '${PYTHON[0]}' not found (activate the venv)"
  fi
  tipc_info "prepare ${MODE} for ${MODEL_NAME} (${CONFIG})"

  ensure_python_modules paddle PIL numpy yaml tqdm || exit 1
  extract_lite_data || exit 1
  case "${MODE}" in
    lite_train_lite_infer | lite_train_whole_infer)
      if trains_from_pretrained; then
        ensure_weights || exit 1
      fi
      ;;
    whole_train_whole_infer)
      check_whole_data || exit 1
      ;;
    whole_infer | paddle2onnx_infer | serving_infer)
      if [[ "${MODE}" == paddle2onnx_infer ]]; then
        ensure_python_modules onnxruntime paddle2onnx onnx || exit 1
      elif [[ "${MODE}" == serving_infer ]]; then
        ensure_python_modules fastapi uvicorn requests || exit 1
      fi
      ensure_weights || exit 1
      ensure_inference_model || exit 1
      ;;
  esac
  tipc_info "prepare ${MODE}: done"
}

main "$@"
