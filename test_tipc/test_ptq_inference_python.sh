#!/usr/bin/env bash
#
# TIPC post-training quantization (PTQ) chain:
#   legacy float export -> PTQ calibration -> int8 Paddle Inference matrix -> float-vs-int8 gate.
#
#   bash test_tipc/test_ptq_inference_python.sh CONFIG [MODE]
#
# MODE defaults to whole_infer (upstream; it names the log directory and selects per-mode
# values). Run from the repository root after `bash test_tipc/prepare.sh CONFIG whole_infer`
# (weights in ./pretrain_models/<model_name>_pretrained.pdparams, ./lite_data/).
#
# Steps, each one line in test_tipc/output/<model_name>/<MODE>/results_ptq.log:
#   1. ptq_export: tools/export_model.py --legacy-format of train_model into ptq_float_model
#      (PostTrainingQuantization reads legacy inference.pdmodel programs);
#   2. quant_post: deploy/ptq_python/post_quant.py with the ptq_params flags (--model-dir is
#      the step-1 export); its --output-dir is the int8 model;
#   3. inference (infer_params) on the int8 model over the matrix, upstream skip rules for a
#      quantized model: int8 only; oneDNN on CPU; TensorRT on GPU (and a CUDA GPU at all);
#   4. compare (compare_params): deploy/ptq_python/compare_int8.py, float vs int8 on the same
#      images, fails below --min-top1-agreement or above --max-mean-abs-diff.
# Steps after a failed one that need its output are recorded skipped with the reason.
# Summary line, JUnit XML (results_ptq.xml) and exit status from tipc_finish: 0 when no step
# failed, 1 when one did (or none ran), 2 for usage or config errors.
# See test_tipc/docs/test_ptq_inference_python.md.

set -uo pipefail

readonly DEFAULT_MODE=whole_infer
readonly PTQ_SECTION=ptq_params
readonly INFER_SECTION=infer_params
readonly COMPARE_SECTION=compare_params

usage() {
  printf 'usage: bash test_tipc/test_ptq_inference_python.sh CONFIG [MODE]\n  MODE: default %s\n' \
    "${DEFAULT_MODE}" >&2
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
TRAIN_MODEL=""
FLOAT_DIR=""
QUANT_DIR=""

is_true() {
  case "${1,,}" in
    true | 1 | yes | y | on) return 0 ;;
    *) return 1 ;;
  esac
}

is_false() {
  case "${1,,}" in
    false | 0 | no | n | off) return 0 ;;
    *) return 1 ;;
  esac
}

#######################################
# Key and mode-resolved value of the first line of SECTION meaning NAME into the variables
# named $3 and $4 (both empty when absent).
#######################################
param_of() {
  local section="$1" name="$2" idx
  local -n __key_ref="$3" __value_ref="$4"
  __key_ref=""
  __value_ref=""
  if idx="$(tipc_find_param "${section}" "${name}")"; then
    __key_ref="${TIPC_CFG_KEYS[idx]}"
    __value_ref="$(tipc_mode_value "${TIPC_CFG_VALUES[idx]}" "${MODE}")"
  fi
}

#######################################
# Mode-resolved value of NAME in SECTION; status 1 when absent or null.
#######################################
value_of() {
  local key value
  param_of "$1" "$2" key value
  [[ -n "${key}" ]] && ! tipc_is_null "${value}" && printf '%s\n' "${value}"
}

#######################################
# Command words (interpreter first for a .py script) of KEY into the array named $2;
# status 1 when the key is absent or null.
#######################################
command_of() {
  local key="$1" value
  local -n __cmd_ref="$2"
  value="$(tipc_get "${key}" null)"
  tipc_is_null "${value}" && return 1
  local -a words
  tipc_split_words words "${value}"
  if [[ "${words[0]}" == *.py ]]; then
    __cmd_ref=("${PYTHON[@]}" "${words[@]}")
  else
    __cmd_ref=("${words[@]}")
  fi
}

#######################################
# Append every `-...` line of SECTION (mode-resolved) to the array named $2, except the
# normalised names in $3 (space-separated); key-only lines named in $4 as name=value get value.
#######################################
add_section_flags() {
  local section="$1" skip=" ${3:-} " given=" ${4:-} " i key name value
  local -n __flags_ref="$2"
  for i in "${!TIPC_CFG_KEYS[@]}"; do
    [[ "${TIPC_CFG_SECTIONS[i]}" == "${section}" ]] || continue
    key="${TIPC_CFG_KEYS[i]}"
    [[ "${key}" == -* ]] || continue
    name="$(_tipc_norm_key "${key}")"
    [[ "${skip}" == *" ${name} "* ]] && continue
    value="$(tipc_mode_value "${TIPC_CFG_VALUES[i]}" "${MODE}")"
    if [[ -z "${value}" && "${given}" == *" ${name}="* ]]; then
      value="${given#*" ${name}="}"
      value="${value%% *}"
    fi
    tipc_add_param __flags_ref "${key}" "${value}"
  done
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
  tipc_split_words PYTHON "$(tipc_get python python)"
  if ! command -v "${PYTHON[0]}" >/dev/null 2>&1; then
    tipc_die "${CONFIG}:$(tipc_line python): interpreter '${PYTHON[0]}' not found (activate the venv)"
  fi
  tipc_has quant_post || tipc_die "${CONFIG}: not a PTQ config (no quant_post line)"
  TRAIN_MODEL="$(tipc_get train_model "./pretrain_models/${MODEL_NAME}_pretrained.pdparams")"
  FLOAT_DIR="$(tipc_get ptq_float_model "./inference/${MODEL_NAME}_infer_legacy")"
  QUANT_DIR="$(value_of "${PTQ_SECTION}" output_dir)" || tipc_die "${CONFIG}: --output-dir in ${PTQ_SECTION} needs a value"
  # The chain's own output is never written over an input.
  if [[ "${QUANT_DIR}" -ef "${FLOAT_DIR}" || "${QUANT_DIR%/}" == "${FLOAT_DIR%/}" ]]; then
    tipc_die "${CONFIG}: --output-dir and ptq_float_model must differ"
  fi
  LOG_PATH="./test_tipc/output/${MODEL_NAME}/${MODE}"
  STATUS_LOG="${LOG_PATH}/results_ptq.log"
}

#######################################
# Step 1: legacy float export. Returns 0 when the export exists.
#######################################
run_float_export() {
  local -a cmd
  if ! command_of ptq_export cmd; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "legacy float export" "ptq_export is null: using ${FLOAT_DIR} as is"
    [[ -f "${FLOAT_DIR%/}/inference.pdmodel" ]]
    return
  fi
  if [[ ! -f "${TRAIN_MODEL}" ]]; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "legacy float export of ${TRAIN_MODEL}" \
      "${TRAIN_MODEL} not found: run bash test_tipc/prepare.sh ${CONFIG} whole_infer"
    return 1
  fi
  tipc_add_param cmd --pretrained "${TRAIN_MODEL}"
  tipc_add_param cmd --save-inference-dir "${FLOAT_DIR}"
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/ptq_float_export.log" "${cmd[@]}"
}

#######################################
# Step 2: post-training quantization.
#######################################
run_ptq() {
  local -a cmd
  command_of quant_post cmd || tipc_die "${CONFIG}: quant_post is null"
  tipc_add_param cmd --model-dir "${FLOAT_DIR}"
  add_section_flags "${PTQ_SECTION}" cmd "model_dir"
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/ptq.log" "${cmd[@]}"
}

#######################################
# Step 3: Paddle Inference of the quantized model over the infer_params matrix.
#######################################
run_inference() {
  local -a base
  if ! command_of inference base; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "int8 inference" "inference is null in ${CONFIG}"
    return 0
  fi
  local gpu_k gpu_v mkl_k mkl_v thr_k thr_v bs_k bs_v trt_k trt_v prec_k prec_v
  param_of "${INFER_SECTION}" use_gpu gpu_k gpu_v
  param_of "${INFER_SECTION}" enable_mkldnn mkl_k mkl_v
  param_of "${INFER_SECTION}" cpu_threads thr_k thr_v
  param_of "${INFER_SECTION}" batch_size bs_k bs_v
  param_of "${INFER_SECTION}" use_tensorrt trt_k trt_v
  param_of "${INFER_SECTION}" precision prec_k prec_v
  add_section_flags "${INFER_SECTION}" base \
    "use_gpu enable_mkldnn cpu_threads batch_size use_tensorrt precision model_dir"
  tipc_add_param base --model-dir "${QUANT_DIR}"

  local -a gpus mkls thrs bss trts precs cmd
  IFS='|' read -ra gpus <<<"${gpu_v:-False}"
  IFS='|' read -ra mkls <<<"${mkl_v:-True}"
  IFS='|' read -ra thrs <<<"${thr_v:-0}"
  IFS='|' read -ra bss <<<"${bs_v:-1}"
  IFS='|' read -ra trts <<<"${trt_v:-False}"
  IFS='|' read -ra precs <<<"${prec_v:-int8}"
  local use_gpu mkl thr bs trt prec reason log
  for use_gpu in "${gpus[@]}"; do
    if is_true "${use_gpu}"; then
      for trt in "${trts[@]}"; do
        for prec in "${precs[@]}"; do
          for bs in "${bss[@]}"; do
            cmd=("${base[@]}")
            tipc_add_param cmd "${gpu_k:---use-gpu}" "${use_gpu}"
            tipc_add_param cmd "${trt_k:---use-tensorrt}" "${trt}"
            tipc_add_param cmd "${prec_k:---precision}" "${prec}"
            tipc_add_param cmd "${bs_k:---batch-size}" "${bs}"
            reason=""
            if ! is_true "${trt}"; then
              reason="a quantized model on GPU runs only with TensorRT"
            elif [[ "${prec,,}" != int8 ]]; then
              reason="a quantized model runs only in int8"
            elif ! tipc_cuda_available "${PYTHON[0]}"; then
              reason="GPU inference needs CUDA; this Paddle build or machine has no GPU"
            fi
            log="${LOG_PATH}/python_infer_gpu_usetrt_${trt}_precision_${prec}_batchsize_${bs}.log"
            tipc_run_or_skip "${STATUS_LOG}" "${MODEL_NAME}" "${log}" "${reason}" "${cmd[@]}"
          done
        done
      done
    elif is_false "${use_gpu}"; then
      for mkl in "${mkls[@]}"; do
        for thr in "${thrs[@]}"; do
          for prec in "${precs[@]}"; do
            for bs in "${bss[@]}"; do
              cmd=("${base[@]}")
              tipc_add_param cmd "${gpu_k:---use-gpu}" "${use_gpu}"
              tipc_add_param cmd "${mkl_k:---enable-mkldnn}" "${mkl}"
              tipc_add_param cmd "${thr_k:---cpu-threads}" "${thr}"
              tipc_add_param cmd "${prec_k:---precision}" "${prec}"
              tipc_add_param cmd "${bs_k:---batch-size}" "${bs}"
              reason=""
              if is_false "${mkl}"; then
                reason="a quantized model on CPU needs MKLDNN"
              elif [[ "${prec,,}" != int8 ]]; then
                reason="a quantized model runs only in int8"
              fi
              log="${LOG_PATH}/python_infer_cpu_usemkldnn_${mkl}_threads_${thr}_precision_${prec}_batchsize_${bs}.log"
              tipc_run_or_skip "${STATUS_LOG}" "${MODEL_NAME}" "${log}" "${reason}" "${cmd[@]}"
            done
          done
        done
      done
    else
      tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "int8 inference with ${gpu_k}=${use_gpu}" \
        "${CONFIG}:$(tipc_line "${gpu_k}"): ${gpu_k} must be True or False"
    fi
  done
}

#######################################
# Step 4: the float-vs-int8 gate.
#######################################
run_compare() {
  local -a cmd
  if ! command_of compare cmd; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "float-vs-int8 gate" "compare is null or absent in ${CONFIG}"
    return 0
  fi
  add_section_flags "${COMPARE_SECTION}" cmd "" "float_model_dir=${FLOAT_DIR} int8_model_dir=${QUANT_DIR}"
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/compare_int8.log" "${cmd[@]}"
}

main() {
  load_settings "$@"
  tipc_start "${STATUS_LOG}" || tipc_die "cannot write ${STATUS_LOG}"
  tipc_info "PTQ chain: ${MODEL_NAME}, mode ${MODE}, config ${CONFIG}, logs in ${LOG_PATH}"
  local reason=""
  if ! run_float_export; then
    reason="no legacy float model: the export step failed"
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "post-training quantization" "${reason}"
  elif ! run_ptq; then
    reason="no int8 model: the PTQ step failed"
  fi
  if [[ -n "${reason}" ]]; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "int8 inference" "${reason}"
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "float-vs-int8 gate" "${reason}"
  else
    run_inference
    run_compare
  fi
  tipc_finish "${STATUS_LOG}"
}

main "$@"
exit $?
