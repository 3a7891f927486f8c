#!/usr/bin/env bash
#
# Run every TIPC chain of a model (default: of every model under test_tipc/configs/), offline.
#
#   bash test_tipc/test_all.sh [MODEL ...]
#
# MODEL is a folder name under test_tipc/configs/ (mobilenet_v3_small, ...). Run from the
# repository root. The engine plans the run (`python -m mobilenetv3_tipc.tipc catalog MODEL ...`:
# each config's chain script and MODE, in dependency order -- the lite chain first: it trains the
# weights the other chains fall back to offline) and each chain runs the way its own docs say:
# `bash test_tipc/prepare.sh CONFIG MODE`, then `bash test_tipc/SCRIPT CONFIG MODE [ARGS]`. A red
# chain does not stop the next one. A config with no script yet is recorded skipped with the reason.
# The benchmark chain runs one spec here (ARGS dynamic_bs8_fp32_DP_N1C1, see BENCHMARK_SPEC in
# mobilenetv3_tipc/tipc/runall.py): its whole matrix is for benchmark_train.sh itself.
#
# Output, in test_tipc/output/:
#   <model>/<MODE>/results_<kind>[.<config>].{log,json,xml}  each chain's results, as the chain
#       names them (results_python.log for train_infer_python.txt; a trainer variant sharing its
#       MODE, e.g. train_amp_infer_python.txt, gets results_python.train_amp_infer_python.log).
#       A run replaces the results files of the models it runs, so the report shows this run;
#   <model>/test_all/<config>.<MODE>.console.log           what prepare.sh and the chain printed;
#   test_all.tsv      one row per chain: config, script, status, exit code, wall seconds, files;
#   results_all.xml   every chain's JUnit merged into one file;
#   report.html       the static report (python -m mobilenetv3_tipc.report), and report.png
#                     (its screenshot) when chromium is installed.
# Each chain's verdict and the last line printed, `N passed, N failed, N skipped` over the steps
# of every chain, come from the engine (`python -m mobilenetv3_tipc.tipc verdict` / `summary`). Exit status: 0 when no chain failed, 1 when one did, 2 usage error.
#
# Environment: TIPC_OFFLINE (default 1: prepare.sh never downloads), TIPC_REPORT_PYTHON
# (interpreter for the engine's plan, verdicts, summary and report; default python), and whatever the chains read (TIPC_PYTHON,
# TIPC_STEP_TIMEOUT, NO_COLOR).

set -uo pipefail
shopt -s nullglob

readonly CONFIG_ROOT="test_tipc/configs"
readonly OUTPUT_ROOT="test_tipc/output"
readonly MANIFEST="${OUTPUT_ROOT}/test_all.tsv"
readonly MERGED_JUNIT="${OUTPUT_ROOT}/results_all.xml"
readonly SCREENSHOT="${OUTPUT_ROOT}/report.png"
readonly MANIFEST_HEADER=(model mode config script status rc seconds results console reason)

readonly PYTHON="${TIPC_REPORT_PYTHON:-python}"

# The chain currently running and its console follower (stopped on INT/TERM).
CHILD_PID=""
TAIL_PID=""

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
# The engine's run-all commands (mobilenetv3_tipc/tipc/runall.py) with the repository importable.
#######################################
engine() {
  PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}" "${PYTHON}" -m mobilenetv3_tipc.tipc "$@" </dev/null
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
# Record a chain's verdict: one manifest row and one console line.
# Arguments: model, mode, config, script, status, rc, seconds, results, console, reason,
# and the step counts passed, failed, skipped.
#######################################
record_chain() {
  local model="$1" mode="$2" config="$3" script="$4" status="$5" rc="$6" seconds="$7"
  local results="$8" console="$9" reason="${10}" line
  manifest_row "${model}" "${mode}" "${config}" "${script}" "${status}" "${rc}" "${seconds}" \
    "${results}" "${console}" "${reason}"
  line="$(printf '%-8s %s %s (%s): %d passed, %d failed, %d skipped, %s s' \
    "${status}" "${config}" "${mode}" "${script}" "${11:-0}" "${12:-0}" "${13:-0}" "${seconds}")"
  [[ -n "${reason}" ]] && line+=" -- ${reason}"
  printf '== chain %s\n' "${line}"
}

#######################################
# Remove the results files of the models about to run (their step logs stay): the report and
# the totals then show this run only. Arguments: model names (output folders).
#######################################
clear_results() {
  local name old
  for name in "$@"; do
    for old in "${OUTPUT_ROOT}/${name}"/*/results_*.{log,json,times,xml}; do
      rm -f -- "${old}"
    done
  done
}

#######################################
# Prepare and run one chain; record the engine's verdict on the results file it wrote.
# Arguments: model, config path, script name, mode, the script's extra arguments (one word).
#######################################
run_chain() {
  local model="$1" config="$2" script="$3" mode="$4" extra="$5"
  local stem out_dir console stamp start rc=0 reason="" results="" found verdict
  local status passed failed skipped
  local -a extra_args=()
  [[ -n "${extra}" ]] && read -r -a extra_args <<<"${extra}"
  stem="$(basename "${config}" .txt)"
  out_dir="${OUTPUT_ROOT}/${model}/${mode}"
  console="${OUTPUT_ROOT}/${model}/test_all/${stem}.${mode}.console.log"
  printf '\n== chain %s %s: bash test_tipc/%s %s %s%s\n' "${config}" "${mode}" "${script}" "${config}" "${mode}" \
    "${extra:+ ${extra}}"
  if [[ ! -f "test_tipc/${script}" ]]; then
    record_chain "${model}" "${mode}" "${config}" "test_tipc/${script}" skipped "" 0 "" "" \
      "test_tipc/${script} not found: this chain has no script yet"
    return 0
  fi
  mkdir -p "${out_dir}" "$(dirname "${console}")"
  : >"${console}"
  stamp="${out_dir}/.test_all_stamp"
  : >"${stamp}"
  start="${SECONDS}"
  local prepare_rc=0
  run_logged "${console}" bash test_tipc/prepare.sh "${config}" "${mode}" || prepare_rc=$?
  if ((prepare_rc != 0)); then
    rc=1
    reason="prepare.sh ${config} ${mode} failed with exit code ${prepare_rc}"
  else
    run_logged "${console}" bash "test_tipc/${script}" "${config}" "${mode}" "${extra_args[@]}" || rc=$?
  fi
  local seconds=$((SECONDS - start))
  # The results file this chain wrote: the one in its MODE folder written since it started.
  for found in "${out_dir}"/results_*.log; do
    if [[ -f "${found}" && "${found}" -nt "${stamp}" ]]; then
      results="${found}"
    fi
  done
  rm -f -- "${stamp}"
  if ! verdict="$(engine verdict "${results}" "${rc}" "${reason}")"; then
    verdict=$'failed\t0\t0\t0\tthe engine gave no verdict'
  fi
  IFS=$'\t' read -r status passed failed skipped reason <<<"${verdict}"
  [[ "${status}" == failed && -n "${reason}" ]] && reason+=" (see ${console})"
  record_chain "${model}" "${mode}" "${config}" "test_tipc/${script}" "${status}" "${rc}" "${seconds}" \
    "${results}" "${console}" "${reason}" "${passed}" "${failed}" "${skipped}"
}

#######################################
# Merge the JUnit files and write the report (and its screenshot when chromium exists).
#######################################
write_report() {
  local -a args=(--output-root "${OUTPUT_ROOT}" --junit-out "${MERGED_JUNIT}" --out "${OUTPUT_ROOT}/report.html")
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    args+=(--screenshot "${SCREENSHOT}")
  fi
  PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}" "${PYTHON}" -m mobilenetv3_tipc.report "${args[@]}" </dev/null
}

main() {
  if [[ ! -d "${CONFIG_ROOT}" || ! -f test_tipc/prepare.sh ]]; then
    err "run this script from the repository root (where ${CONFIG_ROOT}/ is), not from $(pwd)"
    exit 2
  fi
  if ! command -v "${PYTHON}" >/dev/null 2>&1; then
    err "interpreter '${PYTHON}' not found (set TIPC_REPORT_PYTHON or activate the venv)"
    exit 2
  fi
  local plan
  if ! plan="$(engine catalog "$@")"; then
    usage
    exit 2
  fi
  export TIPC_OFFLINE="${TIPC_OFFLINE:-1}"
  trap on_signal INT TERM
  mkdir -p "${OUTPUT_ROOT}"
  local -a lines=()
  [[ -n "${plan}" ]] && mapfile -t lines <<<"${plan}"
  local line model config script mode extra
  local -a models=()
  for line in "${lines[@]}"; do
    IFS=$'\t' read -r model _ <<<"${line}"
    models+=("${model}")
  done
  ((${#models[@]})) && clear_results "${models[@]}"
  : >"${MANIFEST}"
  manifest_row "${MANIFEST_HEADER[@]}"
  for line in "${lines[@]}"; do
    IFS=$'\t' read -r model config script mode extra <<<"${line}"
    if [[ "${script}" == - ]]; then
      printf '\n== chain %s: no chain script for this config name\n' "${config}"
      record_chain "${model}" "-" "${config}" "-" skipped "" 0 "" "" \
        "no chain script for this config name (see KINDS in mobilenetv3_tipc/tipc/chain.py)"
      continue
    fi
    run_chain "${model}" "${config}" "${script}" "${mode}" "${extra}"
  done
  trap - INT TERM

  local report_status=0 summary_status=0
  printf '\n'
  write_report || report_status=1
  if ((report_status)); then
    err "the report could not be written (see above)"
  fi
  engine summary "${MANIFEST}" || summary_status=$?
  if ((summary_status || report_status)); then
    return 1
  fi
  return 0
}

main "$@"
