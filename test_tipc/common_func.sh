#!/usr/bin/env bash
# shellcheck shell=bash
#
# test_tipc/common_func.sh -- what every test_tipc/*.sh sources (do not run it).
#
# The harness itself is the Python package mobilenetv3_tipc/tipc/ (stdlib only, no Paddle):
# config reader, matrix and skip rules, step runner, results/JUnit writer, lock and
# signals exist once there. A chain script is its list of steps (in its header) plus
# one call of tipc_engine. See test_tipc/README.md, "Harness API".

if [[ -n "${TIPC_COMMON_FUNC_LOADED:-}" ]]; then
  return 0
fi
TIPC_COMMON_FUNC_LOADED=1

#######################################
# Stop unless run from the repository root (the configs' paths are relative to it).
#######################################
tipc_require_root() {
  if [[ ! -f test_tipc/common_func.sh || ! -d mobilenetv3_tipc/tipc ]]; then
    printf 'ERROR: run this script from the repository root (where test_tipc/ and mobilenetv3_tipc/ are), not from %s\n' \
      "$(pwd)" >&2
    exit 2
  fi
}

#######################################
# The interpreter that runs the engine: TIPC_ENGINE_PYTHON, else python3, else python.
#######################################
tipc_engine_python() {
  local candidate
  for candidate in "${TIPC_ENGINE_PYTHON:-}" python3 python; do
    if [[ -n "${candidate}" ]] && command -v "${candidate}" >/dev/null 2>&1; then
      printf '%s\n' "${candidate}"
      return 0
    fi
  done
  printf 'ERROR: no python3 on PATH to run the TIPC engine\n' >&2
  return 2
}

#######################################
# Replace this shell by the engine: tipc_engine CHAIN ARGS...
# The engine gets the signals (SIGINT/SIGTERM) of this PID.
#######################################
tipc_engine() {
  local py
  py="$(tipc_engine_python)" || exit 2
  export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
  exec "${py}" -m mobilenetv3_tipc.tipc "$@"
}
