#!/usr/bin/env bash
# shellcheck shell=bash
#
# test_tipc/common_func.sh -- shared TIPC harness library (source it; do not run it).
#
#   source test_tipc/common_func.sh
#
# Scripts that use it run from the repository root, like upstream TIPC.
# Everything here works under `set -uo pipefail`. Nothing is eval'ed: config values
# are split into words and run as argument arrays.
#
# ----------------------------------------------------------------------------------
# API reference (also in test_tipc/README.md, "Harness API")
# ----------------------------------------------------------------------------------
# Config parsing (by key, never by line number)
#   tipc_load_config FILE
#       Parse FILE. Lines are `key:value`; the value is everything after the FIRST `:`
#       (so `pretrained_model_url:https://x/y` gives `https://x/y`); key and value are
#       trimmed. Skipped: blank lines, `#`/`##` comment lines (full lines only; a `#`
#       inside a value is part of the value), and section headers `=====name=====`.
#       The header name becomes the section of the following lines (`train_params`,
#       `eval_params`, `infer_params`, ...). A line without `:` (or with an empty key)
#       prints `FILE:LINE: malformed line (expected key:value): LINE-TEXT` on stderr,
#       for every such line, and the function returns 1. Missing file: returns 2.
#       Duplicate keys are kept in order; lookups by key return the FIRST occurrence.
#       Results: the arrays TIPC_CFG_KEYS / TIPC_CFG_VALUES / TIPC_CFG_LINES /
#       TIPC_CFG_SECTIONS (one element per entry, in file order) and TIPC_CFG_FILE.
#   tipc_get KEY [DEFAULT]
#       Print the value of the first KEY. Missing KEY: print DEFAULT if given, else
#       print `FILE: missing key 'KEY'` on stderr and return 1.
#   tipc_get_nth KEY N [DEFAULT]      value of the N-th (1-based) occurrence of KEY.
#   tipc_get_in SECTION KEY [DEFAULT] value of the first KEY inside section SECTION.
#   tipc_has KEY                      status 0 if KEY occurs.
#   tipc_line KEY                     line number of the first KEY (empty if absent).
#   tipc_count KEY                    number of occurrences of KEY.
#   tipc_find_param SECTION NAME [AFTER_KEY]
#       Print the entry index (into the TIPC_CFG_* arrays) of the first line in
#       SECTION (`""` or `*` = any) whose key, normalised, is NAME or an alias of it;
#       with AFTER_KEY only lines after the line of AFTER_KEY in that section count.
#       Normalising drops a leading `-o `, leading dashes and any `a.b.` prefix, maps
#       `-` to `_` and lowercases, so `--use-gpu`, `--use_gpu` and `-o Global.use_gpu`
#       are all `use_gpu`. Aliases: enable_mkldnn=use_mkldnn,
#       cpu_threads=cpu_num_threads, use_tensorrt=use_trt, precision=use_fp16,
#       model_dir=inference_model_dir, img_path=infer_imgs|image_dir,
#       pretrained=pretrained_model. Returns 1 when nothing matches. This is how the
#       scripts read the Step6 (32-line) and PaddleClas (51-line) layouts as well as
#       ours: they look up a parameter by meaning, never by position.
#   tipc_mode_value VALUE MODE
#       For `lite_train_lite_infer=5|whole_train_whole_infer=90` print the value for
#       MODE (empty if MODE is absent). A value is a per-mode map only when every
#       `|` item is `<name>=...` with <name> ending in `train` or `infer`; anything
#       else (`True|False`, `-o a=b`) is printed unchanged.
#   tipc_is_null VALUE                status 0 for an empty value or `null`.
#   tipc_split_words ARRAY_NAME STRING   split STRING on whitespace into ARRAY_NAME
#                                     (no globbing, no quote removal).
#   tipc_add_param ARRAY_NAME KEY VALUE
#       Append upstream `func_set_params` output to ARRAY_NAME: nothing when KEY or
#       VALUE is empty/`null`, else `KEY=VALUE` (a key with spaces, such as
#       `-o Global.epochs`, becomes the words `-o` `Global.epochs=VALUE`).
# Recording steps (results file: upstream format, never ANSI codes)
#   tipc_start STATUS_LOG
#       Create the directory of STATUS_LOG and empty STATUS_LOG (and its sidecar
#       `.times` file; remove an old `.xml`). Call once before the first step.
#   tipc_run_step STATUS_LOG MODEL LOG_FILE CMD [ARGS...]
#       Run CMD ARGS (an argument array; stdin /dev/null; stdout+stderr to LOG_FILE)
#       and append, by CMD's own exit code:
#         0     `Run successfully with command - MODEL - <command> - LOG_FILE!`
#         77    `Run skipped with command - MODEL - <command> - LOG_FILE! (reason)`
#               reason = the last `SKIPPED: ...` line CMD printed (else "exit code 77")
#         other `Run failed with command - MODEL - <command> - LOG_FILE! (exit code N)`
#       <command> is the argument array, shell-quoted (printf %q) where needed. The line is also
#       printed on stdout (coloured only when stdout is a terminal). With
#       TIPC_STEP_TIMEOUT=SECONDS (> 0) the step is killed after that long (exit 124,
#       recorded failed). Returns 0 for success or skip, 1 for failure; the exit code
#       itself is left in TIPC_LAST_RC.
#   tipc_record_skip STATUS_LOG MODEL DESCRIPTION REASON
#       Record a skip decided by the harness, running nothing:
#       `Run skipped with command - MODEL - DESCRIPTION - (not run)! (REASON)`.
#   tipc_run_or_skip STATUS_LOG MODEL LOG_FILE REASON CMD [ARGS...]
#       tipc_run_step when REASON is empty; otherwise tipc_record_skip with the
#       shell-quoted command as DESCRIPTION (a matrix cell the skip rules rule out).
#   tipc_record_failure STATUS_LOG MODEL DESCRIPTION REASON
#       Record a failure decided by the harness (e.g. a config error for one step):
#       `Run failed with command - MODEL - DESCRIPTION - (not run)! (REASON)`.
#   tipc_finish STATUS_LOG
#       Print the summary line `N passed, N failed, N skipped` (alone on its line),
#       write the JUnit file `${STATUS_LOG%.log}.xml` (one testcase per line of
#       STATUS_LOG; failure/skipped elements; command, log path and the log's tail in
#       system-out) and return 1 if any step failed or no step ran (0 passed and 0
#       failed), else 0. Implemented by test_tipc/tipc_report.py.
# Environment helpers
#   tipc_cuda_available [PYTHON]      status 0 when Paddle sees a CUDA GPU (computed once
#                                     per shell and cached in TIPC_CUDA=yes|no).
#   tipc_is_local_ip IP               status 0 for 127.*, localhost, and this host's addresses.
#   tipc_die MESSAGE                  print `ERROR: MESSAGE` on stderr and exit 2.
#   tipc_error MESSAGE / tipc_info MESSAGE   messages on stderr / stdout.
# ----------------------------------------------------------------------------------

if [[ -n "${TIPC_COMMON_FUNC_LOADED:-}" ]]; then
  return 0
fi
TIPC_COMMON_FUNC_LOADED=1

TIPC_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

TIPC_CFG_FILE=""
TIPC_CFG_KEYS=()
TIPC_CFG_VALUES=()
TIPC_CFG_LINES=()
TIPC_CFG_SECTIONS=()
# Exit code of the last tipc_run_step command (read by the chain scripts).
# shellcheck disable=SC2034
TIPC_LAST_RC=0

#######################################
# Messages.
#######################################
tipc_error() {
  printf 'ERROR: %s\n' "$*" >&2
}

tipc_info() {
  printf '%s\n' "$*"
}

tipc_die() {
  tipc_error "$*"
  exit 2
}

#######################################
# Trim leading and trailing whitespace of the variable named $1 (in place).
#######################################
_tipc_trim() {
  local -n __tipc_trim_ref="$1"
  if [[ "${__tipc_trim_ref}" =~ ^[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]]; then
    __tipc_trim_ref="${BASH_REMATCH[1]}"
  else
    __tipc_trim_ref=""
  fi
}

#######################################
# Parse a config file by key. See the API reference above.
# Arguments: config file. Returns: 0 ok, 1 malformed lines, 2 unreadable file.
#######################################
tipc_load_config() {
  local file="$1"
  if [[ ! -f "${file}" || ! -r "${file}" ]]; then
    tipc_error "${file}: config file not found or not readable"
    return 2
  fi
  TIPC_CFG_FILE="${file}"
  TIPC_CFG_KEYS=()
  TIPC_CFG_VALUES=()
  TIPC_CFG_LINES=()
  TIPC_CFG_SECTIONS=()
  local line text key value section="" lineno=0 bad=0
  while IFS= read -r line || [[ -n "${line}" ]]; do
    lineno=$((lineno + 1))
    text="${line%$'\r'}"
    _tipc_trim text
    [[ -z "${text}" ]] && continue
    if [[ "${text}" =~ ^=+([^=]*)=+$ ]]; then
      section="${BASH_REMATCH[1]}"
      _tipc_trim section
      continue
    fi
    [[ "${text}" == \#* ]] && continue
    key="${text%%:*}"
    _tipc_trim key
    if [[ "${text}" != *:* || -z "${key}" ]]; then
      printf '%s:%d: malformed line (expected key:value): %s\n' "${file}" "${lineno}" "${text}" >&2
      bad=1
      continue
    fi
    value="${text#*:}"
    _tipc_trim value
    TIPC_CFG_KEYS+=("${key}")
    TIPC_CFG_VALUES+=("${value}")
    TIPC_CFG_LINES+=("${lineno}")
    TIPC_CFG_SECTIONS+=("${section}")
  done <"${file}"
  return "${bad}"
}

#######################################
# Print the index of the N-th (1-based) entry with key $1 in section $3 ("" = any).
#######################################
_tipc_index_of() {
  local key="$1" nth="${2:-1}" section="${3:-}" i seen=0
  for i in "${!TIPC_CFG_KEYS[@]}"; do
    if [[ "${TIPC_CFG_KEYS[i]}" == "${key}" ]] \
      && [[ -z "${section}" || "${section}" == "*" || "${TIPC_CFG_SECTIONS[i]}" == "${section}" ]]; then
      seen=$((seen + 1))
      if ((seen == nth)); then
        printf '%s\n' "${i}"
        return 0
      fi
    fi
  done
  return 1
}

_tipc_missing() {
  local what="$1"
  tipc_error "${TIPC_CFG_FILE:-<no config loaded>}: missing key '${what}'"
}

tipc_get() {
  local key="$1" idx
  if idx="$(_tipc_index_of "${key}" 1)"; then
    printf '%s\n' "${TIPC_CFG_VALUES[idx]}"
  elif (($# >= 2)); then
    printf '%s\n' "$2"
  else
    _tipc_missing "${key}"
    return 1
  fi
}

tipc_get_nth() {
  local key="$1" nth="$2" idx
  if idx="$(_tipc_index_of "${key}" "${nth}")"; then
    printf '%s\n' "${TIPC_CFG_VALUES[idx]}"
  elif (($# >= 3)); then
    printf '%s\n' "$3"
  else
    _tipc_missing "${key} (occurrence ${nth})"
    return 1
  fi
}

tipc_get_in() {
  local section="$1" key="$2" idx
  if idx="$(_tipc_index_of "${key}" 1 "${section}")"; then
    printf '%s\n' "${TIPC_CFG_VALUES[idx]}"
  elif (($# >= 3)); then
    printf '%s\n' "$3"
  else
    _tipc_missing "${key} (section ${section})"
    return 1
  fi
}

tipc_has() {
  _tipc_index_of "$1" 1 >/dev/null
}

tipc_line() {
  local idx
  if idx="$(_tipc_index_of "$1" 1)"; then
    printf '%s\n' "${TIPC_CFG_LINES[idx]}"
  fi
}

tipc_count() {
  local key="$1" k n=0
  for k in "${TIPC_CFG_KEYS[@]}"; do
    [[ "${k}" == "${key}" ]] && n=$((n + 1))
  done
  printf '%s\n' "${n}"
}

#######################################
# Normalised parameter name of a config key (see tipc_find_param).
#######################################
_tipc_norm_key() {
  local key="$1"
  key="${key#-o }"
  _tipc_trim key
  while [[ "${key}" == -* ]]; do
    key="${key#-}"
  done
  key="${key##*.}"
  key="${key//-/_}"
  printf '%s\n' "${key,,}"
}

_tipc_aliases() {
  case "$1" in
    enable_mkldnn) echo "enable_mkldnn use_mkldnn" ;;
    cpu_threads) echo "cpu_threads cpu_num_threads cpu_math_library_num_threads" ;;
    use_tensorrt) echo "use_tensorrt use_trt" ;;
    precision) echo "precision use_fp16" ;;
    model_dir) echo "model_dir inference_model_dir" ;;
    img_path) echo "img_path infer_imgs image_dir" ;;
    pretrained) echo "pretrained pretrained_model" ;;
    *) echo "$1" ;;
  esac
}

tipc_find_param() {
  local section="$1" name="$2" after="${3:-}" start=0 i norm alias
  local -a aliases
  read -ra aliases <<<"$(_tipc_aliases "${name}")"
  if [[ -n "${after}" ]]; then
    local after_idx
    after_idx="$(_tipc_index_of "${after}" 1 "${section}")" || return 1
    start=$((after_idx + 1))
  fi
  for ((i = start; i < ${#TIPC_CFG_KEYS[@]}; i++)); do
    if [[ -n "${section}" && "${section}" != "*" && "${TIPC_CFG_SECTIONS[i]}" != "${section}" ]]; then
      continue
    fi
    norm="$(_tipc_norm_key "${TIPC_CFG_KEYS[i]}")"
    for alias in "${aliases[@]}"; do
      if [[ "${norm}" == "${alias}" ]]; then
        printf '%s\n' "${i}"
        return 0
      fi
    done
  done
  return 1
}

#######################################
# Per-mode values: `lite_train_lite_infer=2|whole_train_whole_infer=120`.
#######################################
tipc_mode_value() {
  local value="$1" mode="$2" item
  local -a items
  IFS='|' read -ra items <<<"${value}"
  if ((${#items[@]} == 0)); then
    printf '%s\n' "${value}"
    return 0
  fi
  for item in "${items[@]}"; do
    if [[ ! "${item}" =~ ^[A-Za-z0-9_]*(train|infer)= ]]; then
      printf '%s\n' "${value}"
      return 0
    fi
  done
  for item in "${items[@]}"; do
    if [[ "${item%%=*}" == "${mode}" ]]; then
      printf '%s\n' "${item#*=}"
      return 0
    fi
  done
  printf '\n'
}

tipc_is_null() {
  [[ -z "${1:-}" || "$1" == "null" ]]
}

tipc_split_words() {
  local -n __tipc_split_ref="$1"
  read -ra __tipc_split_ref <<<"$2"
}

tipc_add_param() {
  local -n __tipc_param_ref="$1"
  local key="$2" value="${3:-}" last
  local -a words
  if tipc_is_null "${key}" || tipc_is_null "${value}"; then
    return 0
  fi
  read -ra words <<<"${key}"
  local n=$((${#words[@]} - 1))
  last="${words[n]}"
  __tipc_param_ref+=("${words[@]:0:n}" "${last}=${value}")
}

#######################################
# Status lines.
#######################################
_tipc_times_file() {
  printf '%s.times\n' "${1%.log}"
}

_tipc_quote_cmd() {
  local out="" arg q
  for arg in "$@"; do
    if [[ "${arg}" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      q="${arg}"
    else
      printf -v q '%q' "${arg}"
    fi
    out+="${out:+ }${q}"
  done
  printf '%s\n' "${out}"
}

# _tipc_emit STATUS_LOG KIND LINE SECONDS: file gets LINE; terminal gets colour.
_tipc_emit() {
  local status_log="$1" kind="$2" line="$3" seconds="${4:-0}" colour
  printf '%s\n' "${line}" >>"${status_log}"
  printf '%s\n' "${seconds}" >>"$(_tipc_times_file "${status_log}")"
  if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    case "${kind}" in
      passed) colour=$'\033[32m' ;;
      failed) colour=$'\033[31m' ;;
      *) colour=$'\033[33m' ;;
    esac
    printf '%s%s%s\n' "${colour}" "${line}" $'\033[0m'
  else
    printf '%s\n' "${line}"
  fi
}

tipc_start() {
  local status_log="$1"
  mkdir -p "$(dirname "${status_log}")" || return 1
  : >"${status_log}"
  : >"$(_tipc_times_file "${status_log}")"
  rm -f "${status_log%.log}.xml"
}

tipc_run_step() {
  local status_log="$1" model="$2" log_file="$3"
  shift 3
  local cmd rc=0 start reason="" line
  cmd="$(_tipc_quote_cmd "$@")"
  mkdir -p "$(dirname "${log_file}")"
  start="${SECONDS}"
  if [[ "${TIPC_STEP_TIMEOUT:-0}" =~ ^[0-9]+$ ]] && ((${TIPC_STEP_TIMEOUT:-0} > 0)); then
    timeout --kill-after=10 "${TIPC_STEP_TIMEOUT}" "$@" </dev/null >"${log_file}" 2>&1 || rc=$?
    if ((rc == 124 || rc == 137)); then
      printf '\nTIPC: killed after TIPC_STEP_TIMEOUT=%s s\n' "${TIPC_STEP_TIMEOUT}" >>"${log_file}"
    fi
  else
    "$@" </dev/null >"${log_file}" 2>&1 || rc=$?
  fi
  # shellcheck disable=SC2034
  TIPC_LAST_RC="${rc}"
  local seconds=$((SECONDS - start))
  if ((rc == 0)); then
    _tipc_emit "${status_log}" passed "Run successfully with command - ${model} - ${cmd} - ${log_file}!" "${seconds}"
    return 0
  fi
  if ((rc == 77)); then
    reason="$(grep -a '^SKIPPED:' "${log_file}" 2>/dev/null | tail -n 1)"
    reason="${reason#SKIPPED:}"
    _tipc_trim reason
    [[ -z "${reason}" ]] && reason="exit code 77"
    line="Run skipped with command - ${model} - ${cmd} - ${log_file}! (${reason})"
    _tipc_emit "${status_log}" skipped "${line}" "${seconds}"
    return 0
  fi
  reason="exit code ${rc}"
  ((rc == 124)) && reason="timed out after ${TIPC_STEP_TIMEOUT} s"
  _tipc_emit "${status_log}" failed "Run failed with command - ${model} - ${cmd} - ${log_file}! (${reason})" "${seconds}"
  return 1
}

tipc_record_skip() {
  local status_log="$1" model="$2" description="$3" reason="$4"
  _tipc_emit "${status_log}" skipped "Run skipped with command - ${model} - ${description} - (not run)! (${reason})" 0
}

tipc_run_or_skip() {
  local status_log="$1" model="$2" log_file="$3" reason="$4"
  shift 4
  if [[ -n "${reason}" ]]; then
    tipc_record_skip "${status_log}" "${model}" "$(_tipc_quote_cmd "$@")" "${reason}"
  else
    tipc_run_step "${status_log}" "${model}" "${log_file}" "$@"
  fi
}

tipc_record_failure() {
  local status_log="$1" model="$2" description="$3" reason="$4"
  _tipc_emit "${status_log}" failed "Run failed with command - ${model} - ${description} - (not run)! (${reason})" 0
  return 1
}

#######################################
# Summary + JUnit via tipc_report.py. Returns 1 on any failure or when nothing ran.
#######################################
_tipc_report_python() {
  local candidate
  for candidate in "${TIPC_REPORT_PYTHON:-}" python3 python; do
    if [[ -n "${candidate}" ]] && command -v "${candidate}" >/dev/null 2>&1; then
      printf '%s\n' "${candidate}"
      return 0
    fi
  done
  return 1
}

tipc_finish() {
  local status_log="$1" py
  if ! py="$(_tipc_report_python)"; then
    tipc_error "no python3 to write the TIPC summary"
    return 1
  fi
  "${py}" "${TIPC_LIB_DIR}/tipc_report.py" "${status_log}"
}

#######################################
# Environment helpers.
#######################################
tipc_cuda_available() {
  local py="${1:-python}"
  if [[ -z "${TIPC_CUDA:-}" ]]; then
    if "${py}" -c "import paddle,sys; sys.exit(0 if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count()>0 else 1)" \
      >/dev/null 2>&1 </dev/null; then
      TIPC_CUDA=yes
    else
      TIPC_CUDA=no
    fi
  fi
  [[ "${TIPC_CUDA}" == yes ]]
}

tipc_is_local_ip() {
  local ip="$1" addr
  case "${ip}" in
    localhost | 127.* | ::1) return 0 ;;
  esac
  for addr in $(hostname -I 2>/dev/null) $(hostname 2>/dev/null); do
    [[ "${addr}" == "${ip}" ]] && return 0
  done
  return 1
}
