#!/usr/bin/env bash
#
# TIPC Paddle2ONNX chain: paddle2onnx -> ONNX check -> ONNX Runtime inference -> agreement gate.
#
#   bash test_tipc/test_paddle2onnx.sh CONFIG [MODE]
#
# MODE defaults to paddle2onnx_infer (it names the log directory and selects per-mode values).
# Run from the repository root, after `bash test_tipc/prepare.sh CONFIG paddle2onnx_infer`
# (which leaves ./inference/<model_name>_infer/ and ./pretrain_models/<model_name>_pretrained.pdparams).
#
# Steps, each one line in test_tipc/output/<model_name>/<MODE>/results_paddle2onnx.log:
#   1. paddle2onnx CLI on the exported Paddle model (the old ONNX file is removed first, so a
#      stale file never passes);
#   2. deploy/onnx_python/check_model.py: ONNX checker, opset, dynamic batch, batch-1/2 runs;
#   3. deploy/onnx_python/infer.py for each use_gpu x batch_size (GPU: skipped, exit 77,
#      when onnxruntime has no GPU provider);
#   4. tools/check_agreement.py: dygraph (reference) vs Paddle Inference vs ONNX Runtime.
# When the conversion fails, steps 2-4 are recorded as skipped (the chain is red already).
# Summary line, JUnit XML (results_paddle2onnx.xml) and exit status come from tipc_finish:
# 0 when no step failed, 1 when one did, 2 for usage or config errors.
# See test_tipc/docs/test_paddle2onnx.md.

set -uo pipefail

readonly DEFAULT_MODE=paddle2onnx_infer
readonly CONVERT_SECTION=paddle2onnx_params
readonly CHECK_SECTION=onnx_check_params
readonly INFER_SECTION=infer_params
readonly AGREE_SECTION=agreement_params

usage() {
  printf 'usage: bash test_tipc/test_paddle2onnx.sh CONFIG [MODE]\n  MODE: default %s\n' "${DEFAULT_MODE}" >&2
}

if [[ ! -f test_tipc/common_func.sh || ! -f tools/export_model.py ]]; then
  printf 'ERROR: run this script from the repository root (where tools/ and test_tipc/ are), not from %s\n' \
    "$(pwd)" >&2
  exit 2
fi
# shellcheck source=test_tipc/common_func.sh
source test_tipc/common_func.sh

# Globals set by load_settings.
CONFIG=""
MODE=""
MODEL_NAME=""
LOG_PATH=""
STATUS_LOG=""
PYTHON=()
MODEL_DIR=""
MODEL_FILE=""
SAVE_FILE=""
OPSET=""
# Set by add_section_flags when a flag contradicts the chain.
CONFLICT=""

is_true() {
  case "${1,,}" in
    true | 1 | yes | y | on | gpu) return 0 ;;
    *) return 1 ;;
  esac
}

is_false() {
  case "${1,,}" in
    false | 0 | no | n | off | cpu) return 0 ;;
    *) return 1 ;;
  esac
}

#######################################
# `--use_gpu` / `--use-gpu` -> use_gpu.
#######################################
norm_name() {
  local name="$1"
  while [[ "${name}" == -* ]]; do
    name="${name#-}"
  done
  name="${name//-/_}"
  printf '%s\n' "${name,,}"
}

#######################################
# A path without leading ./ and trailing / (for comparing config paths).
#######################################
norm_path() {
  local path="$1"
  while [[ "${path}" == ./* ]]; do
    path="${path#./}"
  done
  while [[ "${path}" == */ && "${path}" != / ]]; do
    path="${path%/}"
  done
  printf '%s\n' "${path}"
}

#######################################
# Mode-resolved value of the first line of SECTION whose key means NAME; status 1 if absent.
#######################################
param_value() {
  local section="$1" name="$2" idx
  idx="$(tipc_find_param "${section}" "${name}")" || return 1
  tipc_mode_value "${TIPC_CFG_VALUES[idx]}" "${MODE}"
}

#######################################
# Key (as written) of the first line of SECTION whose key means NAME; status 1 if absent.
#######################################
param_key() {
  local section="$1" name="$2" idx
  idx="$(tipc_find_param "${section}" "${name}")" || return 1
  printf '%s\n' "${TIPC_CFG_KEYS[idx]}"
}

#######################################
# The chain's own value for a flag the later steps must not choose themselves:
# the ONNX file is the conversion's --save_file, the Paddle model its --model_dir.
#######################################
derived_value() {
  case "$1" in
    onnx_file) printf '%s\n' "${SAVE_FILE}" ;;
    model_dir) printf '%s\n' "${MODEL_DIR}" ;;
    expect_opset) printf '%s\n' "${OPSET}" ;;
    *) return 1 ;;
  esac
}

#######################################
# Append every `--flag:value` line of SECTION (mode-resolved) to the array named $2,
# except the normalised names listed in $3 (space-separated). A derived flag
# (derived_value) gets the chain's value when key-only and must equal it otherwise:
# on a mismatch CONFLICT gets a message and the status is 1.
#######################################
add_section_flags() {
  local section="$1" skip=" ${3:-} " i key name value derived
  local -n __flags_ref="$2"
  CONFLICT=""
  for i in "${!TIPC_CFG_KEYS[@]}"; do
    [[ "${TIPC_CFG_SECTIONS[i]}" == "${section}" ]] || continue
    key="${TIPC_CFG_KEYS[i]}"
    [[ "${key}" == -* ]] || continue
    name="$(norm_name "${key}")"
    [[ "${skip}" == *" ${name} "* ]] && continue
    value="$(tipc_mode_value "${TIPC_CFG_VALUES[i]}" "${MODE}")"
    if [[ "${section}" != "${CONVERT_SECTION}" ]] && derived="$(derived_value "${name}")"; then
      if tipc_is_null "${value}"; then
        value="${derived}"
      elif [[ "$(norm_path "${value}")" != "$(norm_path "${derived}")" ]]; then
        CONFLICT="${CONFIG}:${TIPC_CFG_LINES[i]}: ${key} is '${value}' but this chain produces '${derived}'"
        CONFLICT+=" (leave the value empty or make it equal)"
        return 1
      fi
    fi
    tipc_add_param __flags_ref "${key}" "${value}"
  done
}

#######################################
# Command words of the value of KEY in SECTION into the array named $3, prefixed with the
# interpreter for a .py script. Status 1 when the key is absent or null.
#######################################
command_of() {
  local section="$1" key="$2" value
  local -n __cmd_ref="$3"
  value="$(tipc_get_in "${section}" "${key}" null)"
  tipc_is_null "${value}" && return 1
  local -a words
  tipc_split_words words "${value}"
  if [[ "${words[0]}" == *.py ]]; then
    __cmd_ref=("${PYTHON[@]}" "${words[@]}")
  else
    __cmd_ref=("${words[@]}")
  fi
}

load_settings() {
  if (($# < 1 || $# > 2)); then
    usage
    exit 2
  fi
  CONFIG="$1"
  MODE="${2:-${DEFAULT_MODE}}"
  if [[ ! "${MODE}" =~ ^[A-Za-z0-9_]+$ ]]; then
    tipc_error "invalid MODE '${MODE}'"
    usage
    exit 2
  fi
  tipc_load_config "${CONFIG}" || exit 2
  MODEL_NAME="$(tipc_get model_name)" || exit 2
  local python_value
  python_value="$(tipc_get python python)"
  tipc_split_words PYTHON "${python_value}"
  if ! command -v "${PYTHON[0]}" >/dev/null 2>&1; then
    tipc_die "${CONFIG}:$(tipc_line python): interpreter '${PYTHON[0]}' not found (activate the venv)"
  fi
  tipc_get_in "${CONVERT_SECTION}" 2onnx >/dev/null || tipc_die "${CONFIG}: not a paddle2onnx config"
  MODEL_DIR="$(param_value "${CONVERT_SECTION}" model_dir)" || tipc_die "${CONFIG}: missing --model_dir"
  SAVE_FILE="$(param_value "${CONVERT_SECTION}" save_file)" || tipc_die "${CONFIG}: missing --save_file"
  MODEL_FILE="$(param_value "${CONVERT_SECTION}" model_filename)" || MODEL_FILE=inference.json
  OPSET="$(param_value "${CONVERT_SECTION}" opset_version)" || OPSET=""
  if tipc_is_null "${MODEL_DIR}" || tipc_is_null "${SAVE_FILE}"; then
    tipc_die "${CONFIG}: --model_dir and --save_file need values"
  fi
  LOG_PATH="./test_tipc/output/${MODEL_NAME}/${MODE}"
  STATUS_LOG="${LOG_PATH}/results_paddle2onnx.log"
}

#######################################
# Step 1. Returns 0 when an ONNX file was produced.
#######################################
run_conversion() {
  local -a cmd
  if ! command_of "${CONVERT_SECTION}" 2onnx cmd; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "paddle2onnx" "2onnx is null in ${CONFIG}"
    [[ -f "${SAVE_FILE}" ]]
    return
  fi
  # The entry point may be missing from PATH when the venv is not activated.
  if [[ "${cmd[0]}" == paddle2onnx ]] && ! command -v paddle2onnx >/dev/null 2>&1; then
    cmd=("${PYTHON[@]}" -m paddle2onnx.command "${cmd[@]:1}")
  fi
  add_section_flags "${CONVERT_SECTION}" cmd
  local program="${MODEL_DIR%/}/${MODEL_FILE}"
  if [[ ! -f "${program}" ]]; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "paddle2onnx ${program}" \
      "${program} not found: run bash test_tipc/prepare.sh ${CONFIG} paddle2onnx_infer"
    return 1
  fi
  rm -f -- "${SAVE_FILE}"
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/trans_model.log" "${cmd[@]}" || return 1
  # paddle2onnx may exit 0 without writing a file: step 2 then fails on the missing file.
  return 0
}

#######################################
# Step 2: checker, opset, dynamic batch.
#######################################
run_check() {
  local -a cmd
  if ! command_of "${CHECK_SECTION}" onnx_check cmd; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "ONNX model check" "onnx_check is null or absent in ${CONFIG}"
    return 0
  fi
  if ! add_section_flags "${CHECK_SECTION}" cmd; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "ONNX model check" "${CONFLICT}"
    return 1
  fi
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/check_onnx.log" "${cmd[@]}"
}

#######################################
# Step 3: ONNX Runtime inference over use_gpu x batch_size.
#######################################
run_inference() {
  local -a base
  if ! command_of "${INFER_SECTION}" inference base; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "ONNX Runtime inference" "inference is null in ${CONFIG}"
    return 0
  fi
  if ! tipc_find_param "${INFER_SECTION}" onnx_file >/dev/null; then
    base+=("--onnx_file=${SAVE_FILE}")
  fi
  if ! add_section_flags "${INFER_SECTION}" base "use_gpu batch_size"; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "ONNX Runtime inference" "${CONFLICT}"
    return 1
  fi
  local gpu_key bs_key gpu_value bs_value
  gpu_key="$(param_key "${INFER_SECTION}" use_gpu)" || gpu_key=--use_gpu
  bs_key="$(param_key "${INFER_SECTION}" batch_size)" || bs_key=--batch_size
  gpu_value="$(param_value "${INFER_SECTION}" use_gpu)" || gpu_value=False
  bs_value="$(param_value "${INFER_SECTION}" batch_size)" || bs_value=1
  tipc_is_null "${gpu_value}" && gpu_value=False
  tipc_is_null "${bs_value}" && bs_value=1
  local -a gpus batch_sizes cmd
  IFS='|' read -ra gpus <<<"${gpu_value}"
  IFS='|' read -ra batch_sizes <<<"${bs_value}"
  local use_gpu bs device status=0
  for use_gpu in "${gpus[@]}"; do
    if is_true "${use_gpu}"; then
      device=gpu
    elif is_false "${use_gpu}"; then
      device=cpu
    else
      tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "ONNX Runtime inference with ${gpu_key}=${use_gpu}" \
        "${CONFIG}:$(tipc_line "${gpu_key}"): ${gpu_key} must be True or False"
      status=1
      continue
    fi
    for bs in "${batch_sizes[@]}"; do
      cmd=("${base[@]}")
      tipc_add_param cmd "${gpu_key}" "${use_gpu}"
      tipc_add_param cmd "${bs_key}" "${bs}"
      tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" \
        "${LOG_PATH}/paddle2onnx_infer_${device}_batchsize_${bs}.log" "${cmd[@]}" || status=1
    done
  done
  return "${status}"
}

#######################################
# Step 4: the agreement gate.
#######################################
run_agreement() {
  local -a cmd
  if ! command_of "${AGREE_SECTION}" agreement cmd; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "agreement gate" "agreement is null or absent in ${CONFIG}"
    return 0
  fi
  if ! add_section_flags "${AGREE_SECTION}" cmd; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "agreement gate" "${CONFLICT}"
    return 1
  fi
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/agreement.log" "${cmd[@]}"
}

main() {
  load_settings "$@"
  tipc_start "${STATUS_LOG}" || tipc_die "cannot write ${STATUS_LOG}"
  tipc_info "paddle2onnx chain: ${MODEL_NAME}, mode ${MODE}, config ${CONFIG}, logs in ${LOG_PATH}"
  if run_conversion; then
    run_check
    run_inference
    run_agreement
  else
    local reason="no ONNX model: the paddle2onnx step failed"
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "ONNX model check" "${reason}"
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "ONNX Runtime inference" "${reason}"
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "agreement gate" "${reason}"
  fi
  tipc_finish "${STATUS_LOG}"
}

main "$@"
exit $?
