#!/usr/bin/env bash
#
# Run every TIPC chain of a model (default: of every model under test_tipc/configs/), offline.
#
#   bash test_tipc/test_all.sh [MODEL ...]
#
# MODEL is a folder name under test_tipc/configs/ (mobilenet_v3_small, ...). Run from the
# repository root. Each config is mapped to its chain script and MODE by CHAIN_TABLE below and
# run the way its own docs say: `bash test_tipc/prepare.sh CONFIG MODE`, then
# `bash test_tipc/SCRIPT CONFIG MODE`. Chains run in dependency order (the lite chain first:
# it trains the weights the other chains fall back to offline) and a red chain does not stop
# the next one. A config with no script yet is recorded skipped with the reason.
#
# Output, in test_tipc/output/:
#   <model>/<MODE>/results_<kind>.<config>.{log,json,xml}  each chain's results file, renamed
#       after the chain so that chains sharing a MODE (train, AMP, fleet, PACT) keep their own;
#   <model>/test_all/<config>.<MODE>.console.log           what prepare.sh and the chain printed;
#   test_all.tsv      one row per chain: config, script, status, exit code, wall seconds, files;
#   results_all.xml   every chain's JUnit merged into one file;
#   report.html       the static report (python -m mobilenetv3_tipc.report), and report.png
#                     (its screenshot) when chromium is installed.
# The last line printed is `N passed, N failed, N skipped` over the steps of every chain (a red
# chain with no failed step line, e.g. prepare.sh failed, counts as one failed; a chain without
# a script as one skipped). Exit status: 0 when no chain failed, 1 when one did, 2 usage error.
#
# Environment: TIPC_OFFLINE (default 1: prepare.sh never downloads), TIPC_REPORT_PYTHON
# (interpreter for the report, default python), and whatever the chains read (TIPC_PYTHON,
# TIPC_STEP_TIMEOUT, NO_COLOR).

set -uo pipefail
# extglob for the CHAIN_TABLE globs (train_!(ptq)_...), nullglob for loops over files.
shopt -s extglob nullglob

readonly CONFIG_ROOT="test_tipc/configs"
readonly OUTPUT_ROOT="test_tipc/output"
readonly MANIFEST="${OUTPUT_ROOT}/test_all.tsv"
readonly MERGED_JUNIT="${OUTPUT_ROOT}/results_all.xml"
readonly SCREENSHOT="${OUTPUT_ROOT}/report.png"

# The one mapping config -> chain. Fields: rank|config name glob (extglob)|section the config
# must have (- = none)|script under test_tipc/|MODE. Every matching row is one chain; chains run
# by rank, then config name. Rank 10 first: offline, prepare.sh of the chains after it takes the
# weights it trains (./pretrain_models/<model>_pretrained.pdparams), so the chains that start from
# those weights (20-40) come next, then the other training chains.
readonly CHAIN_TABLE=(
  "10|train_infer_python.txt|-|test_train_inference_python.sh|lite_train_lite_infer"
  "20|train_ptq_infer_python.txt|-|test_ptq_inference_python.sh|whole_infer"
  "30|paddle2onnx_*.txt|-|test_paddle2onnx.sh|paddle2onnx_infer"
  "40|serving_*.txt|-|test_serving.sh|serving_infer"
  "50|train_!(ptq)_infer_python.txt|-|test_train_inference_python.sh|lite_train_lite_infer"
  "60|train_dy2static_python.txt|-|test_train_dy2static_python.sh|lite_train_lite_infer"
  "70|train_infer_python.txt|train_benchmark_params|benchmark_train.sh|benchmark_train"
  "70|*benchmark_train*.txt|-|benchmark_train.sh|benchmark_train"
)

# Totals over every chain, and the chain currently running (stopped on INT/TERM).
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
RED_CHAINS=0
CHAIN_LINES=()
CHILD_PID=""
TAIL_PID=""
# Step counts of the last results file read by count_steps.
P=0
F=0
S=0

usage() {
  printf 'usage: bash test_tipc/test_all.sh [MODEL ...]\n  MODEL: a folder of %s (default: all)\n' \
    "${CONFIG_ROOT}" >&2
}

err() {
  printf 'ERROR: %s\n' "$*" >&2
}

#######################################
# Stop the running chain's process group and the console follower; exit 130.
#######################################
on_signal() {
  if [[ -n "${CHILD_PID}" ]]; then
    kill -TERM -- "-${CHILD_PID}" 2>/dev/null || kill -TERM "${CHILD_PID}" 2>/dev/null
  fi
  if [[ -n "${TAIL_PID}" ]]; then
    kill "${TAIL_PID}" 2>/dev/null
  fi
  err "interrupted: the chain that was running is stopped"
  exit 130
}

#######################################
# Run CMD... in its own process group, output appended to LOG and followed on the console.
# Arguments: log file, command words. Returns the command's exit code.
#######################################
run_logged() {
  local log="$1" rc=0 offset
  shift
  offset="$(stat -c %s "${log}" 2>/dev/null || echo 0)"
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" </dev/null >>"${log}" 2>&1 &
  else
    "$@" </dev/null >>"${log}" 2>&1 &
  fi
  CHILD_PID=$!
  tail -c "+$((offset + 1))" -s 0.2 -f --pid="${CHILD_PID}" "${log}" &
  TAIL_PID=$!
  wait "${CHILD_PID}" || rc=$?
  wait "${TAIL_PID}" 2>/dev/null
  CHILD_PID=""
  TAIL_PID=""
  return "${rc}"
}

#######################################
# The model_name a config names (its first model_name: line), else the fallback.
#######################################
model_name_of() {
  local config="$1" fallback="$2" line
  line="$(grep -m 1 -E '^[[:space:]]*model_name[[:space:]]*:' "${config}" 2>/dev/null)"
  line="${line#*:}"
  line="${line//[[:space:]]/}"
  printf '%s\n' "${line:-${fallback}}"
}

#######################################
# Append one manifest row (tabs separate fields; tabs and newlines in values become spaces).
#######################################
manifest_row() {
  local field out="" first=1
  for field in "$@"; do
    field="${field//$'\t'/ }"
    field="${field//$'\n'/ }"
    if ((first)); then
      out="${field}"
      first=0
    else
      out+=$'\t'"${field}"
    fi
  done
  printf '%s\n' "${out}" >>"${MANIFEST}"
}

#######################################
# Count the status lines of a results file into the globals P F S.
#######################################
count_steps() {
  local results="$1"
  P=0
  F=0
  S=0
  [[ -f "${results}" ]] || return 0
  P="$(grep -c 'Run successfully with command - ' "${results}")"
  F="$(grep -c 'Run failed with command - ' "${results}")"
  S="$(grep -c 'Run skipped with command - ' "${results}")"
}

#######################################
# Record a chain's verdict: totals, manifest row, one console line.
# Arguments: model, mode, config, script, status, rc, seconds, results, console, reason.
#######################################
record_chain() {
  local model="$1" mode="$2" config="$3" script="$4" status="$5" rc="$6" seconds="$7"
  local results="$8" console="$9" reason="${10}" line
  count_steps "${results}"
  TOTAL_PASSED=$((TOTAL_PASSED + P))
  TOTAL_FAILED=$((TOTAL_FAILED + F))
  TOTAL_SKIPPED=$((TOTAL_SKIPPED + S))
  if [[ "${status}" == failed ]]; then
    RED_CHAINS=$((RED_CHAINS + 1))
    ((F == 0)) && TOTAL_FAILED=$((TOTAL_FAILED + 1))
  elif [[ "${status}" == skipped ]] && ((P + F + S == 0)); then
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + 1))
  fi
  manifest_row "${model}" "${mode}" "${config}" "${script}" "${status}" "${rc}" "${seconds}" \
    "${results}" "${console}" "${reason}"
  line="$(printf '%-8s %s %s (%s): %d passed, %d failed, %d skipped, %s s' \
    "${status}" "${config}" "${mode}" "${script}" "${P}" "${F}" "${S}" "${seconds}")"
  [[ -n "${reason}" ]] && line+=" -- ${reason}"
  CHAIN_LINES+=("${line}")
  printf '== chain %s\n' "${line}"
}

#######################################
# Status 0 for a results file as a chain writes it: results_<kind>.<log|times|xml>, one dot.
#######################################
is_plain_results() {
  local name
  name="$(basename "$1")"
  [[ "${name}" == results_* && "${name#*.}" != *.* ]]
}

#######################################
# Prepare and run one chain; rename its results file after the config.
# Arguments: config path, script name, mode.
#######################################
run_chain() {
  local config="$1" script="$2" mode="$3"
  local model stem out_dir console stamp start rc=0 status reason="" results="" found kind ext
  model="$(model_name_of "${config}" "$(basename "$(dirname "${config}")")")"
  stem="$(basename "${config}" .txt)"
  out_dir="${OUTPUT_ROOT}/${model}/${mode}"
  console="${OUTPUT_ROOT}/${model}/test_all/${stem}.${mode}.console.log"
  printf '\n== chain %s %s: bash test_tipc/%s %s %s\n' "${config}" "${mode}" "${script}" "${config}" "${mode}"
  if [[ ! -f "test_tipc/${script}" ]]; then
    record_chain "${model}" "${mode}" "${config}" "test_tipc/${script}" skipped "" 0 "" "" \
      "test_tipc/${script} not found: this chain has no script yet"
    return 0
  fi
  mkdir -p "${out_dir}" "$(dirname "${console}")"
  : >"${console}"
  # This chain's old results (and unsuffixed ones of hand runs) would read as this run's.
  local old
  for old in "${out_dir}"/results_*.{log,times,json,xml}; do
    if is_plain_results "${old}" || [[ "$(basename "${old}")" == results_*."${stem}".* ]]; then
      rm -f -- "${old}"
    fi
  done
  stamp="${out_dir}/.test_all_stamp"
  : >"${stamp}"
  start="${SECONDS}"
  local prepare_rc=0
  run_logged "${console}" bash test_tipc/prepare.sh "${config}" "${mode}" || prepare_rc=$?
  if ((prepare_rc != 0)); then
    rc=1
    reason="prepare.sh ${config} ${mode} failed with exit code ${prepare_rc} (see ${console})"
  else
    run_logged "${console}" bash "test_tipc/${script}" "${config}" "${mode}" || rc=$?
  fi
  local seconds=$((SECONDS - start))
  # Whatever results_<kind>.log this chain wrote: keep it under the config's name.
  for found in "${out_dir}"/results_*.log; do
    is_plain_results "${found}" && [[ -f "${found}" && "${found}" -nt "${stamp}" ]] || continue
    kind="$(basename "${found}" .log)"
    mv -f -- "${found}" "${out_dir}/${kind}.${stem}.log"
    for ext in times json xml; do
      if [[ -f "${out_dir}/${kind}.${ext}" ]]; then
        mv -f -- "${out_dir}/${kind}.${ext}" "${out_dir}/${kind}.${stem}.${ext}"
      fi
    done
    results="${out_dir}/${kind}.${stem}.log"
  done
  rm -f -- "${stamp}"
  count_steps "${results}"
  status=passed
  if ((rc != 0 || F > 0 || P == 0)); then
    status=failed
  fi
  if [[ -n "${results}" && -z "${reason}" ]] && ((P + F == 0)); then
    reason="no step ran (every step was skipped)"
  fi
  if [[ -z "${results}" && -z "${reason}" ]]; then
    reason="no results file written (chain exit code ${rc}; see ${console})"
  elif [[ "${status}" == failed && -z "${reason}" && ${F} -eq 0 ]]; then
    reason="chain exit code ${rc} (see ${console})"
  fi
  record_chain "${model}" "${mode}" "${config}" "test_tipc/${script}" "${status}" "${rc}" "${seconds}" \
    "${results}" "${console}" "${reason}"
}

#######################################
# Print the chains of one model dir as `rank|config|script|mode` lines, in run order.
#######################################
chains_of_model() {
  local dir="$1" config name row rank glob section script mode matched
  local -a lines=()
  for config in "${dir}"/*.txt; do
    [[ -f "${config}" ]] || continue
    name="$(basename "${config}")"
    matched=0
    for row in "${CHAIN_TABLE[@]}"; do
      IFS='|' read -r rank glob section script mode <<<"${row}"
      # shellcheck disable=SC2053  # the glob is the table's pattern, matched on purpose
      [[ "${name}" == ${glob} ]] || continue
      if [[ "${section}" != - ]] && ! grep -q -E "^=+[[:space:]]*${section}[[:space:]]*=+$" "${config}"; then
        continue
      fi
      lines+=("${rank}|${config}|${script}|${mode}")
      matched=1
    done
    ((matched)) || lines+=("99|${config}|-|-")
  done
  ((${#lines[@]})) && printf '%s\n' "${lines[@]}" | sort -t '|' -k1,1n -k2,2
}

#######################################
# Merge the JUnit files and write the report (and its screenshot when chromium exists).
#######################################
write_report() {
  local python="${TIPC_REPORT_PYTHON:-python}"
  local -a args=(-m mobilenetv3_tipc.report --output-root "${OUTPUT_ROOT}" --junit-out "${MERGED_JUNIT}"
    --out "${OUTPUT_ROOT}/report.html")
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    args+=(--screenshot "${SCREENSHOT}")
  fi
  if ! command -v "${python}" >/dev/null 2>&1; then
    err "interpreter '${python}' not found: no report (set TIPC_REPORT_PYTHON or activate the venv)"
    return 1
  fi
  PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}" "${python}" "${args[@]}" </dev/null
}

main() {
  if [[ ! -d "${CONFIG_ROOT}" || ! -f test_tipc/prepare.sh ]]; then
    err "run this script from the repository root (where ${CONFIG_ROOT}/ is), not from $(pwd)"
    exit 2
  fi
  local -a models=("$@")
  local model dir
  if ((${#models[@]} == 0)); then
    for dir in "${CONFIG_ROOT}"/*/; do
      models+=("$(basename "${dir}")")
    done
  fi
  for model in "${models[@]}"; do
    if [[ "${model}" == -* || ! -d "${CONFIG_ROOT}/${model}" ]]; then
      err "no model '${model}' in ${CONFIG_ROOT}/"
      usage
      exit 2
    fi
  done
  export TIPC_OFFLINE="${TIPC_OFFLINE:-1}"
  trap on_signal INT TERM
  mkdir -p "${OUTPUT_ROOT}"
  : >"${MANIFEST}"
  manifest_row model mode config script status rc seconds results console reason
  local line rank config script mode
  for model in "${models[@]}"; do
    while IFS= read -r line; do
      IFS='|' read -r rank config script mode <<<"${line}"
      if [[ "${script}" == - ]]; then
        printf '\n== chain %s: no chain script for this config name\n' "${config}"
        record_chain "${model}" "-" "${config}" "-" skipped "" 0 "" "" \
          "no chain script for this config name (see CHAIN_TABLE in test_tipc/test_all.sh)"
        continue
      fi
      run_chain "${config}" "${script}" "${mode}"
    done < <(chains_of_model "${CONFIG_ROOT}/${model}")
  done
  trap - INT TERM

  local report_status=0
  printf '\n'
  write_report || report_status=1
  printf '\n== %d chains, %d red\n' "${#CHAIN_LINES[@]}" "${RED_CHAINS}"
  ((${#CHAIN_LINES[@]})) && printf '  %s\n' "${CHAIN_LINES[@]}"
  if ((report_status)); then
    err "the report could not be written (see above)"
  fi
  printf '%d passed, %d failed, %d skipped\n' "${TOTAL_PASSED}" "${TOTAL_FAILED}" "${TOTAL_SKIPPED}"
  if ((RED_CHAINS > 0 || report_status)); then
    return 1
  fi
  return 0
}

main "$@"
