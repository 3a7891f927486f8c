#!/usr/bin/env bash
#
# TIPC training benchmark chain (PaddleClas's benchmark_train.sh command line).
#
#   bash test_tipc/prepare.sh CONFIG benchmark_train
#   bash test_tipc/benchmark_train.sh CONFIG benchmark_train [RUN_MODE_SPEC ...]
#
# RUN_MODE_SPEC is {dynamic|dynamicTostatic}_bs<N>_<precision>_DP_N<nodes>C<cards>, e.g.
# dynamic_bs8_fp32_DP_N1C1; without one, every combination of the config's
# train_benchmark_params section runs. Steps:
#   1. one training run of max_steps steps per combination (fp16/GPU combinations are skipped
#      with their reason on a CPU machine; N1C2 on CPU is two processes over gloo)
#   2. one speed log per combination (ips, reader/batch cost, last loss)
#   3. one profiling run (--profiler_options) of the first runnable combination; its trace must exist
#   4. the summary table and the ips plot of every combination
# Results: test_tipc/output/<model_name>/benchmark_train/results_benchmark_train.{log,json,xml},
# speed logs, table and plot in .../benchmark_train/index/.

set -uo pipefail
# shellcheck source=test_tipc/common_func.sh
source "$(dirname "${BASH_SOURCE[0]}")/common_func.sh"
tipc_require_root
tipc_engine benchmark_train "$@"
