"""``--profiler_options`` parsing, and the per-step profiler hook on a two-layer network."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobilenetv3_tipc.cli import UnsupportedConfig, UsageError
from mobilenetv3_tipc.training.profiler import (
    ProfilerOptions,
    ProfilerOptionsError,
    ProfilerRangeError,
    TrainProfiler,
    build_profiler,
    parse_profiler_options,
)

UPSTREAM = "batch_range=[10,20];state=CPU;tracer_option=Default;profile_path=model.profile"


def test_upstream_string() -> None:
    opts = parse_profiler_options(UPSTREAM)
    assert opts.batch_range == (10, 20)
    assert opts.state == "CPU"
    assert opts.tracer_option == "Default"
    assert opts.profile_path == "model.profile"
    assert opts.exit_on_finished is True  # upstream's default
    assert opts.timer_only is False
    assert opts.source == UPSTREAM


def test_defaults_match_upstream_except_the_path() -> None:
    opts = parse_profiler_options("")
    assert opts == ProfilerOptions()
    assert (opts.batch_range, opts.state, opts.sorted_key, opts.tracer_option) == ((10, 20), "All", "total", "Default")


def test_every_key_spaces_case_and_empty_items() -> None:
    opts = parse_profiler_options(
        " batch_range = [ 0 , 3 ] ; state=all; sorted_key=ave; tracer_option=opdetail;"
        "profile_path=prof/trace.json; exit_on_finished=False; timer_only=1; record_shapes=yes;"
        "profile_memory=no;;"
    )
    assert opts.batch_range == (0, 3)
    assert opts.state == "All"
    assert opts.tracer_option == "OpDetail"
    assert opts.op_detail and not opts.thread_sep
    assert (opts.exit_on_finished, opts.timer_only, opts.record_shapes, opts.profile_memory) == (
        False, True, True, False)
    assert opts.sorted_key_name(device_side=False) == "CPUAvg"
    assert opts.sorted_key_name(device_side=True) == "GPUAvg"


def test_range_without_brackets_and_paddle_sort_names() -> None:
    opts = parse_profiler_options("batch_range=5,7;sorted_key=GPUMax;tracer_option=AllOpDetail")
    assert opts.batch_range == (5, 7)
    assert opts.sorted_key_name(device_side=False) == "GPUMax"
    assert opts.thread_sep


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("batch_range=[20,10]", ("batch_range", "greater than start")),
        ("batch_range=[5,5]", ("batch_range",)),
        ("batch_range=[-1,5]", ("batch_range", "0 or more")),
        ("batch_range=[1,2,3]", ("batch_range", "two integers")),
        ("batch_range=[a,b]", ("batch_range",)),
        ("state=TPU", ("state", "CPU, GPU, All")),
        ("tracer_option=Everything", ("tracer_option",)),
        ("sorted_key=calls", ("sorted_key",)),  # the old profiler's call-count sort has no paddle.profiler key
        ("timer_only=maybe", ("timer_only",)),
        ("exit_on_finished=", ("exit_on_finished",)),
        ("profile_path=", ("profile_path",)),
        ("batch_range", ("not key=value",)),
        ("=5", ("not key=value",)),
        ("colour=red", ("unknown key 'colour'", "batch_range")),
        ("state=CPU;state=GPU", ("state is given twice",)),
    ],
)
def test_bad_field_is_named(text: str, names: tuple[str, ...]) -> None:
    with pytest.raises(ProfilerOptionsError) as info:
        parse_profiler_options(text)
    message = str(info.value)
    assert message.startswith("--profiler_options")
    for name in names:
        assert name in message
    assert isinstance(info.value, UsageError)  # the entry points map it to exit code 2


def test_paths_under_the_output_folder(tmp_path: Path) -> None:
    opts = parse_profiler_options("profile_path=prof/model.profile")
    assert opts.trace_path(tmp_path) == tmp_path / "prof/model.profile"
    assert opts.summary_path(tmp_path) == tmp_path / "prof/model.profile.summary.txt"
    assert opts.trace_path(tmp_path, rank=1) == tmp_path / "prof/model.profile.rank1"
    absolute = parse_profiler_options(f"profile_path={tmp_path / 'abs.json'}")
    assert absolute.trace_path("/elsewhere") == tmp_path / "abs.json"


@pytest.mark.parametrize("text", [None, "", "  ", "None", "null"])
def test_absent_option_means_no_profiler(text: str | None, tmp_path: Path) -> None:
    assert build_profiler(text, tmp_path) is None


def test_gpu_state_without_cuda_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedConfig, match="state=GPU"):
        TrainProfiler(parse_profiler_options("state=GPU"), tmp_path, cuda=False)


def _train(hook: TrainProfiler, steps: int) -> int:
    import paddle

    paddle.seed(0)
    net = paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.ReLU(), paddle.nn.Linear(8, 2))
    opt = paddle.optimizer.SGD(parameters=net.parameters())
    done = 0
    with hook:
        for _ in range(steps):
            loss = net(paddle.randn([4, 8])).mean()
            loss.backward()
            opt.step()
            opt.clear_grad()
            done += 1
            if hook.step(4):
                break
    return done


def test_hook_writes_trace_and_summary_and_stops(tmp_path: Path) -> None:
    hook = build_profiler("batch_range=[2,4];state=CPU;profile_path=prof/model.profile", tmp_path)
    assert hook is not None
    assert _train(hook, 10) == 4  # exit_on_finished: stop right after step 3
    trace = tmp_path / "prof/model.profile"
    assert '"traceEvents"' in trace.read_text(encoding="utf-8")
    summary = (tmp_path / "prof/model.profile.summary.txt").read_text(encoding="utf-8")
    assert "Overview Summary" in summary
    assert "ProfileStep" in summary


def test_hook_timer_only_writes_ips(tmp_path: Path) -> None:
    hook = build_profiler("timer_only=True;exit_on_finished=False;batch_range=[1,2]", tmp_path)
    assert hook is not None
    assert _train(hook, 5) == 5
    assert not (tmp_path / "model.profile").exists()
    summary = (tmp_path / "model.profile.summary.txt").read_text(encoding="utf-8")
    assert "steps: 5" in summary
    assert "ips:" in summary


def test_run_shorter_than_the_range_is_an_error(tmp_path: Path) -> None:
    hook = build_profiler("batch_range=[10,20];state=CPU", tmp_path)
    assert hook is not None
    with pytest.raises(ProfilerRangeError, match=r"ended after 3 steps, before step 10"):
        _train(hook, 3)
