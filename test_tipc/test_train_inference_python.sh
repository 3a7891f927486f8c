#!/usr/bin/env bash
#
# TIPC basic chain: train -> eval -> export -> Paddle Inference over the config's matrix.
#
#   bash test_tipc/test_train_inference_python.sh CONFIG MODE [GPU_ID]
#
# MODE: lite_train_lite_infer | lite_train_whole_infer | whole_train_whole_infer | whole_infer
# Run from the repository root, after `bash test_tipc/prepare.sh CONFIG MODE`.
# GPU_ID (whole_infer only, as upstream) sets CUDA_VISIBLE_DEVICES.
#
# Results: test_tipc/output/<model_name>/<MODE>/results_python.log (one status line per
# step), results_python.xml (JUnit) and one log per step beside them. Exit status: 0 when
# no step failed (and at least one ran), 1 when a step failed, 2 for usage/config errors.
# See test_tipc/README.md and test_tipc/docs/test_train_inference_python.md.

set -uo pipefail

readonly MODES="lite_train_lite_infer lite_train_whole_infer whole_train_whole_infer whole_infer"

usage() {
  printf 'usage: bash test_tipc/test_train_inference_python.sh CONFIG MODE [GPU_ID]\n  MODE: %s\n' \
    "${MODES// / | }" >&2
}

if [[ ! -f test_tipc/common_func.sh || ! -f train.py ]]; then
  printf 'ERROR: run this script from the repository root (where train.py and test_tipc/ are), not from %s\n' \
    "$(pwd)" >&2
  exit 2
fi
# shellcheck source=test_tipc/common_func.sh
source test_tipc/common_func.sh

# Globals set by load_settings.
CONFIG=""
MODE=""
GPU_ID=""
MODEL_NAME=""
LOG_PATH=""
STATUS_LOG=""
PYTHON=()

#######################################
# True for True/true/1/yes/gpu.
#######################################
is_true() {
  case "${1,,}" in
    true | 1 | yes | y | on | gpu) return 0 ;;
    *) return 1 ;;
  esac
}

is_false() {
  case "${1,,}" in
    false | fasle | 0 | no | n | off | cpu) return 0 ;;
    *) return 1 ;;
  esac
}

#######################################
# Key and mode-resolved value of the parameter NAME of SECTION (after AFTER_KEY).
# Sets the variables named by $4 (key) and $5 (value); both empty if absent.
#######################################
param_of() {
  local section="$1" name="$2" after="$3"
  local -n __key_ref="$4" __value_ref="$5"
  local idx
  __key_ref=""
  __value_ref=""
  if idx="$(tipc_find_param "${section}" "${name}" "${after}")"; then
    __key_ref="${TIPC_CFG_KEYS[idx]}"
    __value_ref="$(tipc_mode_value "${TIPC_CFG_VALUES[idx]}" "${MODE}")"
  fi
}

#######################################
# Normalised role of a train/eval flag key (empty for "extra" flags).
#######################################
flag_role() {
  local norm
  norm="$(_tipc_norm_key "$1")"
  case "${norm}" in
    epochs | batch_size | output_dir | pretrained | pretrained_model | data_path | device | use_gpu)
      printf '%s\n' "${norm}" ;;
    *) printf '\n' ;;
  esac
}

#######################################
# Append the train_params flags to the array named $1.
# Arguments: array name, output dir, device (cpu|gpu).
#######################################
add_train_flags() {
  local -n __train_ref="$1"
  local out_dir="$2" device="$3" i key value role
  for i in "${!TIPC_CFG_KEYS[@]}"; do
    [[ "${TIPC_CFG_SECTIONS[i]}" == train_params ]] || continue
    key="${TIPC_CFG_KEYS[i]}"
    [[ "${key}" == -* ]] || continue
    value="$(tipc_mode_value "${TIPC_CFG_VALUES[i]}" "${MODE}")"
    role="$(flag_role "${key}")"
    case "${role}" in
      output_dir) value="${out_dir}" ;;
      device) value="${device}" ;;
      use_gpu) continue ;;
    esac
    tipc_add_param __train_ref "${key}" "${value}"
  done
  if ! tipc_find_param train_params device >/dev/null; then
    __train_ref+=("--device=${device}")
  fi
}

#######################################
# Append the eval flags: data path (from train_params), device, weights, extra
# eval_params flags. Arguments: array name, weights, device.
#######################################
add_eval_flags() {
  local -n __eval_ref="$1"
  local weights="$2" device="$3" key value i
  param_of train_params data_path "" key value
  tipc_add_param __eval_ref "${key}" "${value}"
  param_of train_params device "" key value
  tipc_add_param __eval_ref "${key:---device}" "${device}"
  param_of train_params pretrained "" key value
  tipc_add_param __eval_ref "${key:---pretrained}" "${weights}"
  for i in "${!TIPC_CFG_KEYS[@]}"; do
    [[ "${TIPC_CFG_SECTIONS[i]}" == eval_params && "${TIPC_CFG_KEYS[i]}" == -* ]] || continue
    tipc_add_param __eval_ref "${TIPC_CFG_KEYS[i]}" "$(tipc_mode_value "${TIPC_CFG_VALUES[i]}" "${MODE}")"
  done
}

#######################################
# List of a parameter's alternatives (`a|b`) into the array named $3.
# An absent parameter gives one empty alternative (flag omitted).
#######################################
alternatives_of() {
  local key="$1" value="$2"
  local -n __alt_ref="$3"
  __alt_ref=("")
  if [[ -n "${key}" ]] && ! tipc_is_null "${value}"; then
    IFS='|' read -ra __alt_ref <<<"${value}"
  fi
}

#######################################
# Precision as fp32/fp16/int8 (Clas writes use_fp16:True|False).
#######################################
precision_name() {
  local key="$1" value="$2"
  if [[ "$(_tipc_norm_key "${key}")" == use_fp16 ]]; then
    if is_true "${value}"; then echo fp16; else echo fp32; fi
  elif [[ -z "${value}" ]]; then
    echo fp32
  else
    echo "${value,,}"
  fi
}

#######################################
# Paddle Inference over the whole matrix of the infer_params lines after `inference:`.
# Arguments: model dir, log prefix (path without suffix), quantized (True/False),
#            env prefix words for GPU runs (e.g. "CUDA_VISIBLE_DEVICES=0"; may be empty).
#######################################
run_inference() {
  local model_dir="$1" prefix="$2" quant="$3" gpu_env="${4:-}"
  local infer_value
  infer_value="$(tipc_get inference null)"
  if tipc_is_null "${infer_value}"; then
    tipc_info "inference is null in ${CONFIG}: no inference step"
    return 0
  fi
  local -a infer_words base
  tipc_split_words infer_words "${infer_value}"
  base=("${PYTHON[@]}" "${infer_words[@]}")

  local gpu_k gpu_v mkl_k mkl_v thr_k thr_v bs_k bs_v trt_k trt_v prec_k prec_v
  # md_v is unused: the model dir is the one this chain exported, not the config's.
  # shellcheck disable=SC2034
  local md_k md_v img_k img_v bench_k bench_v
  param_of infer_params use_gpu inference gpu_k gpu_v
  param_of infer_params enable_mkldnn inference mkl_k mkl_v
  param_of infer_params cpu_threads inference thr_k thr_v
  param_of infer_params batch_size inference bs_k bs_v
  param_of infer_params use_tensorrt inference trt_k trt_v
  param_of infer_params precision inference prec_k prec_v
  param_of infer_params model_dir inference md_k md_v
  param_of infer_params img_path inference img_k img_v
  param_of infer_params benchmark inference bench_k bench_v

  local -a gpus mkls thrs bss trts precs cmd env_words
  alternatives_of "${gpu_k}" "${gpu_v}" gpus
  alternatives_of "${mkl_k}" "${mkl_v}" mkls
  alternatives_of "${thr_k}" "${thr_v}" thrs
  alternatives_of "${bs_k}" "${bs_v}" bss
  alternatives_of "${trt_k}" "${trt_v}" trts
  alternatives_of "${prec_k}" "${prec_v}" precs
  tipc_split_words env_words "${gpu_env}"

  local use_gpu mkl thr bs trt prec pname log reason
  for use_gpu in "${gpus[@]}"; do
    if [[ -n "${use_gpu}" ]] && is_true "${use_gpu}"; then
      for trt in "${trts[@]}"; do
        for prec in "${precs[@]}"; do
          pname="$(precision_name "${prec_k}" "${prec}")"
          for bs in "${bss[@]}"; do
            log="${prefix}_infer_gpu_usetrt_${trt:-default}_precision_${pname}_batchsize_${bs:-default}.log"
            cmd=()
            ((${#env_words[@]})) && cmd+=(env "${env_words[@]}")
            cmd+=("${base[@]}")
            tipc_add_param cmd "${gpu_k}" "${use_gpu}"
            tipc_add_param cmd "${trt_k}" "${trt}"
            tipc_add_param cmd "${prec_k}" "${prec}"
            tipc_add_param cmd "${bs_k}" "${bs}"
            tipc_add_param cmd "${md_k:---model-dir}" "${model_dir}"
            tipc_add_param cmd "${img_k}" "${img_v}"
            tipc_add_param cmd "${bench_k}" "${bench_v}"
            # Upstream GPU skip rules (Template func_inference), as intended.
            reason=""
            if [[ "${pname}" == int8 ]] && ! is_true "${quant}"; then
              reason="int8 needs a quantized model"
            elif [[ "${pname}" == fp16 || "${pname}" == int8 ]] && ! is_true "${trt:-False}"; then
              reason="${pname} on GPU needs TensorRT"
            elif is_true "${quant}" && ! is_true "${trt:-False}"; then
              reason="a quantized model on GPU runs only with TensorRT"
            elif is_true "${quant}" && [[ "${pname}" != int8 ]]; then
              reason="a quantized model runs only in int8"
            elif ! tipc_cuda_available "${PYTHON[0]}"; then
              reason="GPU inference needs CUDA; this Paddle build or machine has no GPU"
            fi
            tipc_run_or_skip "${STATUS_LOG}" "${MODEL_NAME}" "${log}" "${reason}" "${cmd[@]}"
          done
        done
      done
    elif [[ -z "${use_gpu}" ]] || is_false "${use_gpu}"; then
      for mkl in "${mkls[@]}"; do
        for thr in "${thrs[@]}"; do
          for prec in "${precs[@]}"; do
            pname="$(precision_name "${prec_k}" "${prec}")"
            for bs in "${bss[@]}"; do
              log="${prefix}_infer_cpu_usemkldnn_${mkl:-default}_threads_${thr:-default}"
              log+="_precision_${pname}_batchsize_${bs:-default}.log"
              cmd=("${base[@]}")
              tipc_add_param cmd "${gpu_k}" "${use_gpu}"
              tipc_add_param cmd "${mkl_k}" "${mkl}"
              tipc_add_param cmd "${thr_k}" "${thr}"
              tipc_add_param cmd "${prec_k}" "${prec}"
              tipc_add_param cmd "${bs_k}" "${bs}"
              tipc_add_param cmd "${md_k:---model-dir}" "${model_dir}"
              tipc_add_param cmd "${img_k}" "${img_v}"
              tipc_add_param cmd "${bench_k}" "${bench_v}"
              # Upstream CPU skip rules, plus int8 on a float model (it would only exit 77).
              reason=""
              if is_false "${mkl:-True}" && is_true "${quant}"; then
                reason="a quantized model on CPU needs MKLDNN"
              elif is_false "${mkl:-True}" && [[ "${pname}" == fp16 || "${pname}" == int8 ]]; then
                reason="${pname} on CPU needs MKLDNN"
              elif is_true "${quant}" && [[ "${pname}" != int8 ]]; then
                reason="a quantized model runs only in int8"
              elif ! is_true "${quant}" && [[ "${pname}" == int8 ]]; then
                reason="int8 needs a quantized model; this one is float"
              fi
              tipc_run_or_skip "${STATUS_LOG}" "${MODEL_NAME}" "${log}" "${reason}" "${cmd[@]}"
            done
          done
        done
      done
    else
      tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "inference with ${gpu_k}=${use_gpu}" \
        "${CONFIG}:$(tipc_line "${gpu_k}"): ${gpu_k} must be True or False (GPU or CPU)"
    fi
  done
}

#######################################
# Record the steps of one run as skipped (nothing is run).
# Arguments: run name, reason, train command words...
#######################################
skip_run() {
  local run_name="$1" reason="$2"
  shift 2
  tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "$(_tipc_quote_cmd "$@")" "${reason}"
  tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "eval, export and inference of ${run_name}" "${reason}"
}

#######################################
# Export command for a trainer: <name>_export, quant_export for pact_train, norm_export.
#######################################
export_value_for() {
  local trainer="$1" key
  local -a keys=("${trainer%_train}_export")
  [[ "${trainer}" == pact_train ]] && keys+=(quant_export)
  keys+=(norm_export)
  for key in "${keys[@]}"; do
    if tipc_has "${key}"; then
      tipc_get "${key}"
      return 0
    fi
  done
  echo null
}

#######################################
# Train, eval, export and infer for one device entry and one trainer.
# Arguments: gpu_list entry, trainer name.
#######################################
run_train_chain() {
  local entry="$1" trainer="$2"
  local ips="" devices="${entry}" nodes=1 kind nproc
  if [[ "${entry}" == *";"* ]]; then
    ips="${entry%%;*}"
    devices="${entry#*;}"
  fi
  local -a dev_items ip_items
  IFS=',' read -ra dev_items <<<"${devices}"
  if [[ -n "${ips}" ]]; then
    IFS=',' read -ra ip_items <<<"${ips}"
    nodes="${#ip_items[@]}"
  fi
  nproc="${#dev_items[@]}"
  if [[ "${devices}" =~ ^-1(,-1)*$ ]]; then
    kind=cpu
  elif [[ "${devices}" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
    kind=gpu
  else
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "gpu_list entry '${entry}'" \
      "${CONFIG}:$(tipc_line gpu_list): expected -1, -1,-1, 0, 0,1 or ip1,ip2;0,1"
    return 1
  fi

  local train_value
  if ! train_value="$(tipc_get_in train_params "${trainer}" 2>/dev/null)" \
    && ! train_value="$(tipc_get "${trainer}" 2>/dev/null)"; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "${trainer} on ${entry}" \
      "${CONFIG}: trainer '${trainer}' is listed on line $(tipc_line trainer) but has no '${trainer}:' line"
    return 1
  fi
  if tipc_is_null "${train_value}"; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "${trainer} on ${entry}" "${trainer} is null in ${CONFIG}"
    return 0
  fi
  local -a train_words
  tipc_split_words train_words "${train_value}"
  local autocast=False
  if [[ "${trainer}" == amp_train || " ${train_value} " =~ [[:space:]]--amp([_-]level)?[[:space:]=] ]]; then
    autocast=True
  fi

  local run_name="${trainer}_gpus_${devices}_autocast_${autocast}_nodes_${nodes}"
  local run_dir="${LOG_PATH}/${run_name}"
  local -a cmd=() gpu_env=()
  if [[ "${kind}" == gpu && "${nproc}" -eq 1 && "${nodes}" -eq 1 ]]; then
    gpu_env=("CUDA_VISIBLE_DEVICES=${devices}")
    cmd+=(env "${gpu_env[@]}")
  fi
  cmd+=("${PYTHON[@]}")
  if ((nproc > 1 || nodes > 1)); then
    cmd+=(-m paddle.distributed.launch)
    [[ -n "${ips}" ]] && cmd+=("--ips=${ips}")
    if [[ "${kind}" == gpu ]]; then
      cmd+=("--gpus=${devices}")
    else
      cmd+=(--nproc_per_node "${nproc}")
    fi
    cmd+=(--log_dir "${run_dir}/launch_log")
  fi
  cmd+=("${train_words[@]}")
  add_train_flags cmd "${run_dir}" "${kind}"

  # Harness skip rules: multi-node needs every host; GPU entries need CUDA.
  if [[ -n "${ips}" ]]; then
    local ip
    for ip in "${ip_items[@]}"; do
      if ! tipc_is_local_ip "${ip}"; then
        skip_run "${run_name}" "multi-node needs hosts ${ips}" "${cmd[@]}"
        return 0
      fi
    done
  fi
  if [[ "${kind}" == gpu ]] && ! tipc_cuda_available "${PYTHON[0]}"; then
    skip_run "${run_name}" "gpu_list entry ${entry} needs CUDA; this Paddle build or machine has no GPU" "${cmd[@]}"
    return 0
  fi

  rm -rf "${run_dir}"
  local train_status=0
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${run_dir}_train.log" "${cmd[@]}" || train_status=1
  local weights_name
  weights_name="$(tipc_get train_model_name latest.pdparams)"
  [[ "${weights_name}" == *.pdparams ]] || weights_name+=".pdparams"
  local weights="${run_dir}/${weights_name}"
  if ((train_status)) || [[ "${TIPC_LAST_RC}" -eq 77 ]]; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "eval, export and inference of ${run_name}" \
      "the train step did not produce ${weights}"
    return 0
  fi

  local eval_device="${kind}"
  local eval_value
  eval_value="$(tipc_get eval null)"
  if ! tipc_is_null "${eval_value}"; then
    local -a eval_words eval_cmd=()
    tipc_split_words eval_words "${eval_value}"
    ((${#gpu_env[@]})) && eval_cmd+=(env "${gpu_env[@]}")
    eval_cmd+=("${PYTHON[@]}" "${eval_words[@]}")
    add_eval_flags eval_cmd "${weights}" "${eval_device}"
    tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${run_dir}_eval.log" "${eval_cmd[@]}"
  fi

  local export_value
  export_value="$(export_value_for "${trainer}")"
  if tipc_is_null "${export_value}"; then
    tipc_info "no export command for ${trainer} in ${CONFIG}: no export or inference"
    return 0
  fi
  local -a export_words export_cmd
  tipc_split_words export_words "${export_value}"
  export_cmd=("${PYTHON[@]}" "${export_words[@]}")
  local key value
  param_of infer_params pretrained "" key value
  tipc_add_param export_cmd "${key:---pretrained}" "${weights}"
  param_of infer_params save_inference_dir "" key value
  local infer_dir="${run_dir}/inference"
  tipc_add_param export_cmd "${key:---save-inference-dir}" "${infer_dir}"
  if ! tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${run_dir}_export.log" "${export_cmd[@]}" \
    || [[ "${TIPC_LAST_RC}" -eq 77 ]]; then
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "inference of ${run_name}" \
      "the export step did not produce ${infer_dir}"
    return 0
  fi
  local quant=False
  [[ "${trainer}" == pact_train ]] && quant=True
  run_inference "${infer_dir}" "${run_dir}" "${quant}" "${gpu_env[*]:-}"
}

#######################################
# Training modes: every gpu_list entry x every trainer.
#######################################
run_train_modes() {
  local gpu_list trainer_list entry trainer
  gpu_list="$(tipc_get gpu_list)" || exit 2
  trainer_list="$(tipc_get trainer)" || exit 2
  local -a entries trainers
  IFS='|' read -ra entries <<<"${gpu_list}"
  IFS='|' read -ra trainers <<<"${trainer_list}"
  for entry in "${entries[@]}"; do
    for trainer in "${trainers[@]}"; do
      run_train_chain "${entry}" "${trainer}"
    done
  done
}

#######################################
# whole_infer: export the prepared pretrained weights, then the inference matrix.
#######################################
run_whole_infer() {
  if [[ -n "${GPU_ID}" ]]; then
    export CUDA_VISIBLE_DEVICES="${GPU_ID}"
  fi
  local weights infer_export infer_model quant model_dir
  weights="$(tipc_get train_model "./pretrain_models/${MODEL_NAME}_pretrained.pdparams")"
  infer_export="$(tipc_get infer_export null)"
  infer_model="$(tipc_get infer_model "./inference/${MODEL_NAME}_infer")"
  quant="$(tipc_get infer_quant False)"
  model_dir="${infer_model}"
  if ! tipc_is_null "${infer_export}"; then
    model_dir="${LOG_PATH}/${MODEL_NAME}_infer"
    local -a export_words export_cmd
    tipc_split_words export_words "${infer_export}"
    export_cmd=("${PYTHON[@]}" "${export_words[@]}")
    local key value
    param_of infer_params pretrained "" key value
    tipc_add_param export_cmd "${key:---pretrained}" "${weights}"
    param_of infer_params save_inference_dir "" key value
    tipc_add_param export_cmd "${key:---save-inference-dir}" "${model_dir}"
    if [[ ! -f "${weights}" ]]; then
      tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "$(_tipc_quote_cmd "${export_cmd[@]}")" \
        "${weights} not found: run bash test_tipc/prepare.sh ${CONFIG} whole_infer"
      tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "inference of ${model_dir}" "the export step failed"
      return 0
    fi
    rm -rf "${model_dir}"
    if ! tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/whole_infer_export.log" "${export_cmd[@]}" \
      || [[ "${TIPC_LAST_RC}" -eq 77 ]]; then
      tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "inference of ${model_dir}" "the export step failed"
      return 0
    fi
  fi
  run_inference "${model_dir}" "${LOG_PATH}/python" "${quant}" ""
}

#######################################
# Parse arguments and the config; set the globals.
#######################################
load_settings() {
  if (($# < 2 || $# > 3)); then
    usage
    exit 2
  fi
  CONFIG="$1"
  MODE="$2"
  GPU_ID="${3:-}"
  if [[ " ${MODES} " != *" ${MODE} "* ]]; then
    tipc_error "unknown MODE '${MODE}'"
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
  LOG_PATH="./test_tipc/output/${MODEL_NAME}/${MODE}"
  STATUS_LOG="${LOG_PATH}/results_python.log"
}

main() {
  load_settings "$@"
  tipc_start "${STATUS_LOG}" || tipc_die "cannot write ${STATUS_LOG}"
  tipc_info "TIPC ${MODE}: ${CONFIG} -> ${STATUS_LOG}"
  if [[ "${MODE}" == whole_infer ]]; then
    run_whole_infer
  else
    run_train_modes
  fi
  tipc_finish "${STATUS_LOG}"
}

main "$@"
