#!/usr/bin/env bash
#
# TIPC serving chain: export (if needed) -> start web_service.py -> wait for /health ->
# pipeline_http_client.py on the lite images -> compare with Paddle Inference -> stop.
#
#   bash test_tipc/test_serving.sh CONFIG [MODE]
#
# CONFIG: test_tipc/configs/<model>/serving_infer_python.txt. MODE (default serving_infer)
# only names the output directory. Run from the repository root, after
# `bash test_tipc/prepare.sh CONFIG serving_infer`.
#
# One variant per value of the config's `--opt op.imagenet.local_service_conf.devices` list
# ("" = CPU, "0" = GPU 0). A GPU variant on a machine without CUDA is recorded as skipped
# (the server exits 77). Each server is started in the background on a free loopback port,
# its PID kept, and stopped by that PID (SIGTERM, SIGKILL after a timeout) on every exit
# path, failures and signals included.
#
# Results: test_tipc/output/<model_name>/<MODE>/results_serving.log (one status line per
# step), results_serving.xml (JUnit), step logs beside them. Exit status: 0 when no step
# failed (and at least one ran), 1 when a step failed, 2 for usage/config errors.
# See test_tipc/docs/test_serving.md.

set -uo pipefail

readonly DEVICES_KEY="--opt op.imagenet.local_service_conf.devices"
readonly MODEL_CONFIG_KEY="--opt op.imagenet.local_service_conf.model_config"
readonly SERVICE_NAME="imagenet"
readonly STOP_TIMEOUT=20

usage() {
  printf 'usage: bash test_tipc/test_serving.sh CONFIG [MODE]\n' >&2
}

if [[ ! -f test_tipc/common_func.sh || ! -f deploy/serving_python/web_service.py ]]; then
  printf 'ERROR: run this script from the repository root (where test_tipc/ and deploy/ are), not from %s\n' \
    "$(pwd)" >&2
  exit 2
fi
# shellcheck source=test_tipc/common_func.sh
source test_tipc/common_func.sh

# Globals.
CONFIG=""
MODE=""
MODEL_NAME=""
LOG_PATH=""
STATUS_LOG=""
MODEL_DIR=""
PYTHON=()
SERVER_PID=""

#######################################
# Status 0 while PID runs (an exited, unreaped child -- a zombie -- does not count).
#######################################
pid_running() {
  local pid="$1" stat
  kill -0 "${pid}" 2>/dev/null || return 1
  if [[ -r "/proc/${pid}/stat" ]]; then
    stat="$(<"/proc/${pid}/stat")" 2>/dev/null || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != "Z" && "${stat:0:1}" != "X" ]]
    return
  fi
  return 0
}

#######################################
# Stop the server this script started, by its PID: SIGTERM, SIGKILL after STOP_TIMEOUT,
# then reap it. Idempotent; the EXIT/INT/TERM traps call it.
#######################################
stop_server() {
  local pid="${SERVER_PID}" deadline
  [[ -z "${pid}" ]] && return 0
  SERVER_PID=""
  if pid_running "${pid}"; then
    kill -TERM "${pid}" 2>/dev/null
    deadline=$((SECONDS + STOP_TIMEOUT))
    while pid_running "${pid}" && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if pid_running "${pid}"; then
      tipc_error "server pid ${pid} ignored SIGTERM for ${STOP_TIMEOUT} s: SIGKILL"
      kill -KILL "${pid}" 2>/dev/null
    fi
  fi
  wait "${pid}" 2>/dev/null
  return 0
}

# shellcheck disable=SC2329  # invoked by the INT/TERM traps
on_signal() {
  local code="$1"
  stop_server
  exit "${code}"
}

#######################################
# A free TCP port on 127.0.0.1 (asked from the kernel).
#######################################
free_port() {
  "${PYTHON[@]}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

#######################################
# Strip one pair of surrounding quotes; `null` means empty.
#######################################
unquote() {
  local value="$1"
  if [[ "${value}" =~ ^\"(.*)\"$ || "${value}" =~ ^\'(.*)\'$ ]]; then
    value="${BASH_REMATCH[1]}"
  fi
  [[ "${value}" == "null" ]] && value=""
  printf '%s\n' "${value}"
}

load_settings() {
  if (($# < 1 || $# > 2)); then
    usage
    exit 2
  fi
  CONFIG="$1"
  MODE="${2:-serving_infer}"
  if [[ ! "${MODE}" =~ ^[A-Za-z0-9_]+$ ]]; then
    tipc_die "MODE must be a word (letters, digits, _), got '${MODE}'"
  fi
  tipc_load_config "${CONFIG}" || tipc_die "cannot parse ${CONFIG}"
  MODEL_NAME="$(tipc_get model_name)" || exit 2
  tipc_get web_service >/dev/null || exit 2
  local python_value
  python_value="$(tipc_get python python)"
  tipc_split_words PYTHON "${python_value}"
  ((${#PYTHON[@]} > 0)) || PYTHON=(python)
  MODEL_DIR="$(unquote "$(tipc_get "${MODEL_CONFIG_KEY}")")" || exit 2
  [[ -n "${MODEL_DIR}" ]] || tipc_die "${CONFIG}: '${MODEL_CONFIG_KEY}' needs the exported model directory"
  LOG_PATH="./test_tipc/output/${MODEL_NAME}/${MODE}"
  STATUS_LOG="${LOG_PATH}/results_serving.log"
}

#######################################
# Export the inference model when MODEL_DIR does not hold one yet.
#######################################
export_if_needed() {
  if [[ -f "${MODEL_DIR}/inference.json" || -f "${MODEL_DIR}/inference.pdmodel" ]]; then
    tipc_info "inference model found in ${MODEL_DIR}: no export needed"
    return 0
  fi
  local export_value weights save_key
  local -a cmd export_words
  export_value="$(tipc_get export)" || exit 2
  weights="$(tipc_get --pretrained "")"
  save_key="--save-inference-dir"
  if tipc_is_null "${weights}" || [[ ! -f "${weights}" ]]; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "export ${MODEL_DIR}" \
      "no inference model in ${MODEL_DIR} and no weights at '${weights}': run test_tipc/prepare.sh ${CONFIG} serving_infer"
    return 1
  fi
  tipc_split_words export_words "${export_value}"
  cmd=("${PYTHON[@]}" "${export_words[@]}")
  tipc_add_param cmd --pretrained "${weights}"
  tipc_add_param cmd "${save_key}" "${MODEL_DIR}"
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/export.log" "${cmd[@]}"
}

#######################################
# Every `--opt KEY:VALUE` line except the devices list, as --opt KEY=VALUE words.
#######################################
collect_opts() {
  local -n __opts_ref="$1"
  local i key value name
  __opts_ref=()
  for i in "${!TIPC_CFG_KEYS[@]}"; do
    key="${TIPC_CFG_KEYS[i]}"
    [[ "${key}" == "--opt "* ]] || continue
    [[ "${key}" == "${DEVICES_KEY}" ]] && continue
    value="${TIPC_CFG_VALUES[i]}"
    if [[ "${value}" == *"|"* ]]; then
      tipc_die "${CONFIG}: '${key}' lists alternatives (${value}); only '${DEVICES_KEY}' may"
    fi
    name="${key#--opt }"
    name="${name#"${name%%[![:space:]]*}"}"
    __opts_ref+=(--opt "${name}=$(unquote "${value}")")
  done
}

#######################################
# One server variant: start, wait ready, client, check, stop.
# Arguments: devices value ("" = CPU).
#######################################
run_variant() {
  local devices="$1" label port server_log jsonl ready_rc image_dir timeout_s
  local -a web_words pipeline_words check_words opts server_cmd client_cmd check_cmd stop_cmd ready_cmd
  if [[ -z "${devices}" ]]; then
    label="cpu"
  else
    label="gpu${devices//,/_}"
  fi
  tipc_split_words web_words "$(tipc_get web_service)" || return 1
  tipc_split_words pipeline_words "$(tipc_get pipeline "$(tipc_get pipline deploy/serving_python/pipeline_http_client.py)")"
  tipc_split_words check_words "$(tipc_get check deploy/serving_python/check_responses.py)"
  image_dir="$(tipc_get --image_dir ./lite_data/val/)"
  timeout_s="$(tipc_get ready_timeout 180)"
  collect_opts opts
  if ! port="$(free_port)"; then
    tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "server (${label})" "could not find a free port"
    return 1
  fi
  server_log="${LOG_PATH}/server_${label}.log"
  jsonl="${LOG_PATH}/client_${label}.jsonl"
  rm -f "${jsonl}"
  server_cmd=("${PYTHON[@]}" "${web_words[@]}" "${opts[@]}" --opt "http_port=${port}"
    --opt "op.imagenet.local_service_conf.devices=${devices}")
  printf 'server command: %s\n' "$(_tipc_quote_cmd "${server_cmd[@]}")" >"${server_log}"
  "${server_cmd[@]}" </dev/null >>"${server_log}" 2>&1 &
  SERVER_PID=$!
  tipc_info "started the ${label} server: pid ${SERVER_PID}, port ${port}, log ${server_log}"

  ready_cmd=("${PYTHON[@]}" deploy/serving_python/server_control.py wait-ready --pid "${SERVER_PID}"
    --url "http://127.0.0.1:${port}/health" --server-log "${server_log}" --timeout "${timeout_s}")
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/server_${label}_ready.log" "${ready_cmd[@]}"
  ready_rc="${TIPC_LAST_RC}"
  if ((ready_rc != 0)); then
    local reason="the ${label} server did not become ready (see ${server_log})"
    ((ready_rc == 77)) && reason="the ${label} server cannot run on this machine"
    stop_server
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "pipeline client (${label})" "${reason}"
    tipc_record_skip "${STATUS_LOG}" "${MODEL_NAME}" "compare with Paddle Inference (${label})" "${reason}"
    return 0
  fi

  client_cmd=("${PYTHON[@]}" "${pipeline_words[@]}" --image_dir "${image_dir}"
    --url "http://127.0.0.1:${port}/${SERVICE_NAME}/prediction" --output "${jsonl}")
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/client_${label}.log" "${client_cmd[@]}"

  check_cmd=("${PYTHON[@]}" "${check_words[@]}" --responses "${jsonl}" --model-dir "${MODEL_DIR}")
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/check_${label}.log" "${check_cmd[@]}"

  # Graceful stop is a step: SIGTERM must drain and exit cleanly within STOP_TIMEOUT.
  stop_cmd=("${PYTHON[@]}" deploy/serving_python/server_control.py stop --pid "${SERVER_PID}"
    --server-log "${server_log}" --timeout "${STOP_TIMEOUT}")
  tipc_run_step "${STATUS_LOG}" "${MODEL_NAME}" "${LOG_PATH}/server_${label}_stop.log" "${stop_cmd[@]}"
  stop_server
}

main() {
  load_settings "$@"
  tipc_start "${STATUS_LOG}" || tipc_die "cannot write ${STATUS_LOG}"
  trap stop_server EXIT
  trap 'on_signal 130' INT
  trap 'on_signal 143' TERM

  local devices_value item devices
  local -a device_items
  devices_value="$(tipc_get "${DEVICES_KEY}" '""')"
  IFS='|' read -ra device_items <<<"${devices_value}"
  ((${#device_items[@]} > 0)) || device_items=('""')

  if export_if_needed; then
    for item in "${device_items[@]}"; do
      devices="$(unquote "${item}")"
      if [[ -n "${devices}" && ! "${devices}" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
        tipc_record_failure "${STATUS_LOG}" "${MODEL_NAME}" "server (devices=${devices})" \
          "devices must be \"\" (CPU) or card ids like \"0\" or \"0,1\""
        continue
      fi
      run_variant "${devices}"
    done
  fi
  stop_server
  tipc_finish "${STATUS_LOG}"
}

main "$@"
exit $?
