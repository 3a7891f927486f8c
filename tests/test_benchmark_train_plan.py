"""The benchmark_train matrix: train_benchmark_params, run-mode specs, skip rules, train.py flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobilenetv3_tipc.cli import UsageError
from mobilenetv3_tipc.tipc.benchmark_train import (
    BenchmarkConfigError,
    launcher,
    parse_params,
    plan,
    profiling_flags,
    select,
)
from mobilenetv3_tipc.tipc.speed_log import parse_spec

SECTION = {
    "batch_size": "8|16",
    "fp_items": "fp32|fp16",
    "epoch": "1",
    "model_type": "norm_train|to_static_train",
    "num_workers": "0",
    "--profiler_options": "batch_range=[10,20];state=CPU;tracer_option=Default;profile_path=model.profile",
    "flags": "FLAGS_eager_delete_tensor_gb=0.0;FLAGS_use_mkldnn=0",
    "device_num": "N1C1|N1C2",
    "max_steps": "20",
    "skip_steps": "5",
}


def where(key: str) -> str:
    return f"cfg.txt:{list(SECTION).index(key) + 2 if key in SECTION else 99}"


def test_section_parses() -> None:
    params = parse_params(SECTION, where)
    assert params.batch_sizes == (8, 16)
    assert params.fp_items == ("fp32", "fp16")
    assert params.model_types == ("dynamic", "dynamicTostatic")
    assert params.device_nums == ("N1C1", "N1C2")
    assert (params.epochs, params.num_workers, params.max_steps, params.skip_steps) == (1, 0, 20, 5)
    assert params.flags == {"FLAGS_eager_delete_tensor_gb": "0.0", "FLAGS_use_mkldnn": "0"}
    assert profiling_flags(params) == [f"--profiler_options={SECTION['--profiler_options']}"]
    assert len(params.combinations()) == 2 * 2 * 2 * 2


def test_minimal_section_and_null_values() -> None:
    params = parse_params({"batch_size": "8", "fp_items": "null", "--profiler_options": "null"})
    assert params.fp_items == ("fp32",)
    assert params.model_types == ("dynamic",)
    assert params.device_nums == ("N1C1",)
    assert params.profiler_options is None
    assert profiling_flags(params) == []
    assert [c.spec for c in params.combinations()] == ["dynamic_bs8_fp32_DP_N1C1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": "null"}, "cfg.txt:2: train_benchmark_params needs batch_size"),
        ({"batch_size": "8|x"}, "cfg.txt:2: batch_size must be an integer"),
        ({"batch_size": "0"}, "batch_size must be at least 1"),
        ({"fp_items": "fp64"}, "cfg.txt:3: fp_items value 'fp64'"),
        ({"model_type": "pact_train"}, "cfg.txt:5: model_type 'pact_train'"),
        ({"device_num": "N1"}, "device_num 'N1' is not N<nodes>C<cards>"),
        ({"device_num": "N1C0"}, "device_num 'N1C0'"),
        ({"skip_steps": "20"}, "skip_steps (20) must be less than max_steps (20)"),
        ({"flags": "FLAGS_a=1;oops"}, "flags item 'oops' is not NAME=VALUE"),
        ({"--profiler_options": "batch_range=[20,10]"}, "cfg.txt:7: --profiler_options: batch_range"),
        ({"colour": "red"}, "cfg.txt:99: unknown key 'colour'"),
    ],
)
def test_bad_values_name_file_line_and_key(change: dict[str, str], message: str) -> None:
    with pytest.raises(BenchmarkConfigError) as info:
        parse_params({**SECTION, **change}, where)
    assert message in str(info.value)


def test_specs_on_the_command_line_replace_the_matrix() -> None:
    params = parse_params(SECTION)
    combos = select(params, ["dynamic_bs4_fp32_DP_N1C1", "dynamicTostatic_bs4_fp32_DP_N1C1",
                             "dynamic_bs4_fp32_DP_N1C1"])
    assert [c.spec for c in combos] == ["dynamic_bs4_fp32_DP_N1C1", "dynamicTostatic_bs4_fp32_DP_N1C1"]
    with pytest.raises(UsageError, match="run-mode spec"):
        select(params, ["bs4"])


def test_cpu_plan_skips_fp16_and_multi_node_runs_n1c2_over_gloo() -> None:
    params = parse_params(SECTION)
    combos = [parse_spec(s) for s in ("dynamic_bs8_fp32_DP_N1C1", "dynamic_bs8_fp16_DP_N1C1",
                                      "dynamicTostatic_bs8_fp32_DP_N1C2", "dynamic_bs8_fp32_DP_N2C1")]
    runs = plan(params, combos, cuda=False)
    assert [r.runnable for r in runs] == [True, False, True, False]
    assert "fp16 training needs CUDA" in runs[1].skip_reason
    assert runs[1].hardware
    assert "N2C1 needs 2 hosts" in runs[3].skip_reason
    first, static = runs[0], runs[2]
    assert "--batch-size=8" in first.train_flags
    assert "--max-steps=20" in first.train_flags
    assert "--print-freq=1" in first.train_flags
    assert "--eval-during-train=False" in first.train_flags
    assert "--workers=0" in first.train_flags
    assert "--to_static=True" not in first.train_flags
    assert "--to_static=True" in static.train_flags
    assert launcher(first, cuda=False, log_dir="L") == []
    assert launcher(static, cuda=False, log_dir="L") == ["-m", "paddle.distributed.launch", "--log_dir", "L",
                                                         "--nproc_per_node", "2"]


def test_gpu_plan_uses_amp_flags_and_gpu_count() -> None:
    params = parse_params(SECTION)
    runs = plan(params, [parse_spec("dynamic_bs8_fp16_DP_N1C1"), parse_spec("dynamic_bs8_fp32_DP_N1C2")],
                cuda=True, gpu_count=1)
    assert runs[0].runnable
    assert {"--amp", "--amp-level", "O1"} <= set(runs[0].train_flags)
    assert "N1C2 needs 2 GPUs, this machine has 1" in runs[1].skip_reason
    two = plan(params, [parse_spec("dynamic_bs8_fp32_DP_N1C2")], cuda=True, gpu_count=2)[0]
    assert launcher(two, cuda=True, log_dir="L")[-2:] == ["--gpus", "0,1"]


def test_data_path_flag_and_benchmark_data(tmp_path: Path) -> None:
    from mobilenetv3_tipc.tipc.benchmark_train import make_benchmark_data

    params = parse_params({**SECTION, "data_path": "./benchmark_data"})
    first = plan(params, [parse_spec("dynamic_bs8_fp32_DP_N1C1")], cuda=False)[0]
    assert "--data-path=./benchmark_data" in first.train_flags
    src = tmp_path / "lite"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (src / split / cls).mkdir(parents=True)
            (src / split / cls / "x.jpg").write_bytes(b"jpg")
    (src / "labels.txt").write_text("a A\nb B\n", encoding="utf-8")
    assert make_benchmark_data(src, tmp_path / "bench", repeat=3) == 6
    assert sorted(p.name for p in (tmp_path / "bench/train/a").iterdir()) == ["x_r0.jpg", "x_r1.jpg", "x_r2.jpg"]
    assert (tmp_path / "bench/val/b/x.jpg").is_file()
    assert (tmp_path / "bench/labels.txt").is_file()
    assert make_benchmark_data(src, tmp_path / "bench", repeat=2) == 4  # its own folder: rebuilt
    foreign = tmp_path / "imagenet"
    (foreign / "train").mkdir(parents=True)
    with pytest.raises(UsageError, match="was not built by benchmark_train"):
        make_benchmark_data(src, foreign)  # a data set it did not build is never deleted
    assert (foreign / "train").is_dir()
    with pytest.raises(UsageError, match="not found"):
        make_benchmark_data(tmp_path / "missing", tmp_path / "out")
