"""Unit tests of the one TIPC engine (mobilenetv3_tipc/tipc/), without Paddle.

Parsing, aliases, per-mode values, the matrix and its skip rules, results/JUnit, the
lock, timeouts and signals are tested on the Python API; the chain scripts are dry-run
in a throw-away root with a stub interpreter that records its arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mobilenetv3_tipc.tipc import chain, config, matrix, results, runner, train_chain
from mobilenetv3_tipc.tipc.config import Config, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = REPO_ROOT / "tests" / "fixtures" / "upstream_layouts"
CONFIGS = REPO_ROOT / "test_tipc" / "configs"

CLAS_CONFIG = """\
===========================train_params===========================
model_name:MobileNetV3_large_x1_0
python:python3.7
gpu_list:-1
-o Global.device:gpu
-o Global.auto_cast:null|amp
-o Global.epochs:lite_train_lite_infer=2|whole_train_whole_infer=120
-o Global.output_dir:./output/
-o DataLoader.Train.sampler.batch_size:8
-o Global.pretrained_model:null
train_model_name:latest
train_infer_img_dir:./dataset/ILSVRC2012/val
--data-path:./lite_data
##
trainer:norm_train|to_static_train
norm_train:train.py --model mobilenet_v3_large
pact_train:null
fpgm_train:null
distill_train:null
to_static_train:--seed=7
null:null
##
===========================eval_params===========================
eval:train.py --test-only --model mobilenet_v3_large
null:null
##
===========================infer_params==========================
-o Global.save_inference_dir:./inference
-o Global.pretrained_model:
norm_export:tools/export_model.py --model mobilenet_v3_large
quant_export:null
fpgm_export:null
distill_export:null
kl_quant:null
export2:null
pretrained_model_url:https://paddle-imagenet-models-name.bj.bcebos.com/x:y/MobileNetV3_large_x1_0_pretrained.pdparams
infer_model:../inference/
infer_export:True
infer_quant:Fasle
inference:deploy/inference_python/infer.py
-o Global.use_gpu:True|False
-o Global.enable_mkldnn:False
-o Global.cpu_num_threads:1
-o Global.batch_size:1
-o Global.use_tensorrt:False
-o Global.use_fp16:False
-o Global.inference_model_dir:../inference
-o Global.infer_imgs:./lite_data/val
-o Global.save_log_path:null
-o Global.benchmark:False
null:null
null:null
===========================train_benchmark_params==========================
batch_size:256|640
fp_items:fp32|fp16
===========================infer_benchmark_params==========================
random_infer_input:[{float32,[3,224,224]}]
"""


def write(tmp_path: Path, text: str, name: str = "cfg.txt", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


# ---------------------------------------------------------------- parsing


def test_value_keeps_colons_and_trims(tmp_path: Path) -> None:
    cfg = Config.load(write(tmp_path, "model_name:m\n url : https://host:8080/a?b=1#x \r\n"))
    assert cfg.get("url") == "https://host:8080/a?b=1#x"


def test_bom_crlf_comments_and_sections(tmp_path: Path) -> None:
    path = tmp_path / "cfg.txt"
    path.write_bytes("\ufeff===train_params===\r\n# c: x\r\n##\r\n\r\nmodel_name:m\r\n".encode())
    cfg = Config.load(path)
    assert cfg.get("model_name") == "m"
    assert cfg.entries[0].section == "train_params" and cfg.entries[0].line == 5


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model_name:m\nno colon here\n:value\n")
    with pytest.raises(ConfigError) as err:
        Config.load(path)
    assert f"{path}:2: malformed line (expected key:value): no colon here" in str(err.value)
    assert f"{path}:3: malformed line" in str(err.value)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cfg.txt"
    path.write_bytes(b"model_name:m\npython:\xff\n")
    with pytest.raises(ConfigError, match=r"cfg\.txt:2: not UTF-8"):
        Config.load(path)


def test_two_keys_with_one_meaning_are_an_error(tmp_path: Path) -> None:
    cfg = Config.load(write(tmp_path, "===infer_params===\n--use-gpu:True\n-o Global.use_gpu:False\n"))
    with pytest.raises(ConfigError, match=r"cfg\.txt:3: -o Global\.use_gpu means use_gpu like line 2"):
        cfg.find("use_gpu", "infer_params")


@pytest.mark.parametrize(("key", "name"), [
    ("--use-gpu", "use_gpu"), ("--use_gpu", "use_gpu"), ("-o Global.use_gpu", "use_gpu"),
    ("-o Global.use_mkldnn", "enable_mkldnn"), ("--cpu_num_threads", "cpu_threads"),
    ("-o Global.use_trt", "use_tensorrt"),
    ("-o Global.use_fp16", "precision"), ("-o Global.inference_model_dir", "model_dir"),
    ("-o Global.infer_imgs", "img_path"), ("--image_dir", "img_path"), ("-o Global.pretrained_model", "pretrained"),
    ("-o DataLoader.Train.sampler.batch_size", "batch_size"), ("pipline", "pipeline"),
])
def test_aliases(key: str, name: str) -> None:
    assert config.canonical(key) == name


@pytest.mark.parametrize(("value", "mode", "expected"), [
    ("lite_train_lite_infer=5|whole_train_whole_infer=90", "lite_train_lite_infer", "5"),
    ("lite_train_lite_infer=5|whole_train_whole_infer=90", "whole_infer", ""),
    ("lite_train_lite_infer=./a=b", "lite_train_lite_infer", "./a=b"),
    ("True|False", "lite_train_lite_infer", "True|False"),
    ("-o Global.to_static=True", "lite_train_lite_infer", "-o Global.to_static=True"),
    ("batch_range=[10,20];state=GPU", "lite_train_lite_infer", "batch_range=[10,20];state=GPU"),
    ("", "whole_infer", ""),
])
def test_mode_value(value: str, mode: str, expected: str) -> None:
    assert config.mode_value(value, mode) == expected


def test_alternatives_null_and_bools() -> None:
    assert config.alternatives("a| b |c") == ["a", "b", "c"]
    assert config.alternatives("null") == []
    assert config.parse_bool("Fasle") is False and config.parse_bool('"True"') is True
    with pytest.raises(ConfigError, match="must be True or False"):
        config.parse_bool("maybe", "f:1", "--use-gpu")


def test_render_flag_follows_func_set_params() -> None:
    assert chain.render_flag("--epochs", "2") == ["--epochs=2"]
    assert chain.render_flag("--pretrained", "null") == []
    assert chain.render_flag("null", "3") == []
    assert chain.render_flag("--output-dir", "") == []
    assert chain.render_flag("-o Global.epochs", "4") == ["--epochs=4"]
    assert chain.render_flag("-o Global.use_fp16", "fp16") == ["--precision=fp16"]
    assert chain.render_flag("--opt a.b", "1") == ["--opt", "a.b=1"]


def test_line_order_does_not_matter(tmp_path: Path) -> None:
    text = "===infer_params===\n--batch-size:1|2\n--use-gpu:False\ninference:deploy/inference_python/infer.py\n"
    cfg = Config.load(write(tmp_path, text))
    m = matrix.Matrix.from_config(cfg, "infer_params", "whole_infer")
    assert [c.values["batch_size"] for c in m.cells(quant=False, cuda=False)] == ["1", "2"]


# ---------------------------------------------------------------- matrix and skip rules


def full_matrix(tmp_path: Path, extra: str = "") -> matrix.Matrix:
    text = ("===infer_params===\n--use-gpu:True|False\n--enable-mkldnn:True|False\n--cpu-threads:1|2\n"
            "--batch-size:1|2\n--use-tensorrt:False|True\n--precision:fp32|fp16|int8\n" + extra)
    return matrix.Matrix.from_config(Config.load(write(tmp_path, text)), "infer_params", "lite_train_lite_infer")


def test_matrix_expansion_counts_and_order(tmp_path: Path) -> None:
    cells = full_matrix(tmp_path).cells(quant=False, cuda=False)
    gpu = [c for c in cells if c.device == "gpu"]
    cpu = [c for c in cells if c.device == "cpu"]
    assert len(gpu) == 2 * 3 * 2 and len(cpu) == 2 * 2 * 3 * 2
    assert cells[0].flags == [("--use-gpu", "True"), ("--use-tensorrt", "False"), ("--precision", "fp32"),
                              ("--batch-size", "1")]
    assert cpu[0].label() == "infer_cpu_usemkldnn_True_threads_1_precision_fp32_batchsize_1"


def test_skip_rules_float_model(tmp_path: Path) -> None:
    """The harness's skips are infer.py's refusals (engine.select_engine), worded as infer.py words them."""
    cells = full_matrix(tmp_path).cells(quant=False, cuda=False, bfloat16=True)
    ran = [c for c in cells if not c.skip]
    assert {(c.values["enable_mkldnn"], c.values["precision"]) for c in ran} == {
        ("True", "fp32"), ("True", "fp16"), ("False", "fp32")}
    hardware = {c.skip for c in cells if c.skip and c.hardware}
    assert hardware == {matrix.NO_CUDA, "TensorRT needs CUDA; this Paddle build or machine has no GPU"}
    assert all(c.device == "gpu" for c in cells if c.hardware)
    rules = {c.skip for c in cells if c.skip and not c.hardware}
    assert rules == {"int8 needs a quantized model (deploy/ptq_python/post_quant.py or train.py --pact_quant)",
                     "fp16 on CPU needs oneDNN (--enable-mkldnn True)"}


def test_reduced_precision_without_bfloat16_is_a_hardware_skip(tmp_path: Path) -> None:
    cells = full_matrix(tmp_path).cells(quant=False, cuda=False, bfloat16=False)
    fp16 = [c for c in cells if c.device == "cpu" and c.values["precision"] == "fp16"
            and c.values["enable_mkldnn"] == "True"]
    assert fp16 and all(c.hardware and "avx512_bf16" in c.skip for c in fp16)


def test_harness_and_infer_share_one_boolean_vocabulary(tmp_path: Path) -> None:
    from mobilenetv3_tipc.cli import str2bool
    from mobilenetv3_tipc.tipc.config import parse_bool

    for word in ("y", "Yes", "on", "1", "True", "n", "off", "0", "False", "Fasle"):
        assert parse_bool(word) == str2bool(word)
    text = "===infer_params===\n--use-gpu:False\n--enable-mkldnn:y|n\n"
    cells = matrix.Matrix.from_config(Config.load(write(tmp_path, text)), "infer_params", "m").cells(False, False)
    assert [(c.values["enable_mkldnn"], bool(c.skip)) for c in cells] == [("y", False), ("n", False)]


@pytest.mark.parametrize("line, message", [
    ("--enable-mkldnn:Ture|False", r"cfg\.txt:3: --enable-mkldnn must be True or False, got 'Ture'"),
    ("--use-tensorrt:maybe", r"cfg\.txt:3: --use-tensorrt must be True or False, got 'maybe'"),
    ("--use-openvino:False|2x", r"cfg\.txt:3: --use-openvino must be True or False, got '2x'"),
    ("--precision:fp32|bf16", r"cfg\.txt:3: --precision: unknown precision 'bf16' \(fp32, fp16, int8\)"),
    ("--cpu-threads:1|two", r"cfg\.txt:3: --cpu-threads: expected a positive whole number, got 'two'"),
    ("--batch-size:0", r"cfg\.txt:3: --batch-size: expected a positive whole number, got '0'"),
])
def test_every_matrix_value_is_checked_at_plan_time(tmp_path: Path, line: str, message: str) -> None:
    cfg = Config.load(write(tmp_path, f"===infer_params===\n--use-gpu:False\n{line}\n"))
    with pytest.raises(ConfigError, match=message):
        matrix.Matrix.from_config(cfg, "infer_params", "m")


def test_skip_rules_quantized_model(tmp_path: Path) -> None:
    cells = full_matrix(tmp_path).cells(quant=True, cuda=True)
    ran = [c for c in cells if not c.skip]
    assert all(c.values["precision"] == "int8" for c in ran)
    assert {c.device for c in ran} == {"cpu", "gpu"}
    assert all(c.values.get("enable_mkldnn") == "True" for c in ran if c.device == "cpu")
    assert all(c.values.get("use_tensorrt") == "True" for c in ran if c.device == "gpu")


def test_quantized_model_without_precision_line_runs_int8(tmp_path: Path) -> None:
    """Step6/PaddleClas PACT and PTQ configs have no precision line."""
    cfg = Config.load(write(tmp_path, "===infer_params===\n--use-gpu:False\n--batch-size:1\n"))
    cells = matrix.Matrix.from_config(cfg, "infer_params", "whole_infer").cells(quant=True, cuda=False)
    assert len(cells) == 1 and not cells[0].skip
    assert ("--precision", "int8") in cells[0].flags
    float_cells = matrix.Matrix.from_config(cfg, "infer_params", "whole_infer").cells(quant=False, cuda=False)
    assert all(k != "--precision" for k, _ in float_cells[0].flags)


def test_use_fp16_and_openvino_axes(tmp_path: Path) -> None:
    text = ("===infer_params===\n-o Global.use_gpu:False\n-o Global.use_fp16:True|False\n--use-openvino:False|True\n"
            "--enable-mkldnn:False|True\n")
    cells = matrix.Matrix.from_config(Config.load(write(tmp_path, text)), "infer_params", "m").cells(False, False, True)
    runs = [(c.values["enable_mkldnn"], c.values["use_openvino"], c.values["precision"]) for c in cells if not c.skip]
    # OpenVINO: float fp32 only, and in place of oneDNN (infer.py refuses it with --enable-mkldnn True)
    assert runs == [("False", "False", "fp32"), ("False", "True", "fp32"), ("True", "False", "fp16"),
                    ("True", "False", "fp32")]
    assert cells[2].label().startswith("infer_cpu_usemkldnn_False_openvino_True_")


def test_bad_precision_names_the_line(tmp_path: Path) -> None:
    cfg = Config.load(write(tmp_path, "===infer_params===\n--precision:fp32|fp64\n"))
    with pytest.raises(ConfigError, match=r"cfg\.txt:2: --precision: unknown precision 'fp64'"):
        matrix.Matrix.from_config(cfg, "infer_params", "m")


# ---------------------------------------------------------------- results, JUnit, runner


def make_run(tmp_path: Path) -> runner.Run:
    out = tmp_path / "out"
    return runner.Run(out, results.Results(out / "results_python.log", "m", "tipc.m.mode"), cwd=tmp_path)


def test_results_lines_json_junit(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with run:
        run.step(["echo", "hi there"], tmp_path / "out" / "ok.log")
        run.step(["bash", "-c", "echo SKIPPED: no GPU here >&2; exit 77"], tmp_path / "out" / "skip.log")
        run.step(["bash", "-c", "echo 'inference engine: onednn'; exit 3"], tmp_path / "out" / "bad.log")
        run.step(["bash", "-c", "echo 'inference engine: onednn'"], tmp_path / "out" / "eng.log")
        run.skip("train on gpu 0", "needs CUDA", hardware=True)
        assert run.results.finish() == 1
    log = tmp_path / "out" / "results_python.log"
    lines = log.read_text().splitlines()
    assert lines[0] == f"Run successfully with command - m - echo 'hi there' - {tmp_path}/out/ok.log!"
    assert lines[1].endswith("skip.log! (no GPU here)") and lines[1].startswith("Run skipped with command - m - bash")
    assert lines[2].endswith("bad.log! (exit code 3)")
    assert lines[3].endswith("eng.log! (inference engine: onednn)")
    assert lines[4] == "Run skipped with command - m - train on gpu 0 - (not run)! (needs CUDA)"
    assert [s.status for s in results.read_steps(log)] == ["passed", "skipped", "failed", "passed", "skipped"]
    assert [results.parse_line(line).status for line in lines] == ["passed", "skipped", "failed", "passed", "skipped"]
    data = json.loads(log.with_suffix(".json").read_text())
    assert data["steps"][3]["engine"] == "onednn" and data["steps"][1]["hardware"] is True
    suite = ET.parse(log.with_suffix(".xml")).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "1", "2")
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_report_reads_upstream_ansi_lines(tmp_path: Path) -> None:
    log = write(tmp_path, "\x1b[33m Run successfully with command - m - python3.7 train.py --epochs=5!  \x1b[0m\n"
                          "\x1b[33m Run failed with command - m - python3.7 infer.py > a - /x/c.log ! \x1b[0m\nnoise\n",
                "results_python.log")
    steps = results.read_steps(log)
    assert [(s.status, s.command, s.log) for s in steps] == [
        ("passed", "python3.7 train.py --epochs=5", ""), ("failed", "python3.7 infer.py > a", "/x/c.log")]
    result = subprocess.run([sys.executable, "test_tipc/tipc_report.py", str(log)], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stdout.strip() == "1 passed, 1 failed, 0 skipped"


def test_nothing_ran_is_red(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with run:
        run.skip("x", "because")
        assert run.results.finish() == 1


def test_defining_step_skipped_by_a_rule_is_red_but_not_for_hardware(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with run:
        run.step(["true"], tmp_path / "out" / "a.log", group="convert")
        run.skip("infer gpu", matrix.NO_CUDA, group="inference", hardware=True)
        chain.defining_check(run, "inference", "ONNX Runtime inference")
        assert run.results.steps[-1].status == "skipped"
        run.skip("infer cpu", "a quantized model runs only in int8", group="inference")
        chain.defining_check(run, "inference", "ONNX Runtime inference")
        assert run.results.steps[-1].status == "failed"
        assert "every cell was skipped (a quantized model runs only in int8)" in run.results.steps[-1].reason
        assert run.results.finish() == 1


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.1)
    return True


def test_step_timeout_kills_the_whole_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPC_STEP_TIMEOUT", "1")
    pidfile = tmp_path / "child.pid"
    run = make_run(tmp_path)
    with run:
        step = run.step(["bash", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], tmp_path / "out" / "t.log")
    assert step.status == "failed" and step.reason == "timed out after 1 s"
    assert not alive(int(pidfile.read_text()))
    assert "TIPC_STEP_TIMEOUT" in (tmp_path / "out" / "t.log").read_text()


def test_default_step_timeout() -> None:
    assert runner.step_timeout() == int(os.environ.get("TIPC_STEP_TIMEOUT", "0") or 0) or runner.DEFAULT_STEP_TIMEOUT


def test_lock_refuses_a_second_run_and_dies_with_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pathlib import Path
        from mobilenetv3_tipc.tipc.runner import FolderLock
        lock = FolderLock(Path({str(folder)!r}))
        lock.acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runner.LockBusy, match=f"PID {holder.pid}"):
            runner.FolderLock(folder).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = runner.FolderLock(folder)
    lock.acquire()  # the kernel dropped the dead holder's lock
    lock.release()


def test_log_names_from_config_values_stay_inside(tmp_path: Path) -> None:
    assert chain.safe_name("../../etc/passwd") == "_.._etc_passwd".replace("..", "_")
    assert "/" not in chain.safe_name("a/../../b")
    with pytest.raises(ConfigError, match="leaves"):
        chain.inside(tmp_path, tmp_path / ".." / "x.log")


# ---------------------------------------------------------------- short forms


def test_short_forms() -> None:
    small = "test_tipc/configs/mobilenet_v3_small/"
    assert chain.resolve_args("serving", [])[:2] == (small + "serving_infer_python.txt", "serving_infer")
    assert chain.resolve_args("prepare", ["lite_train_lite_infer"])[:2] == (
        small + "train_infer_python.txt", "lite_train_lite_infer")
    assert chain.resolve_args("prepare", ["serving_infer"])[:2] == (small + "serving_infer_python.txt", "serving_infer")
    assert chain.resolve_args("train", [small + "train_infer_python.txt"])[:2] == (small + "train_infer_python.txt", "")
    assert chain.resolve_args("train", ["c.txt", "whole_infer", "0"]) == ("c.txt", "whole_infer", ["0"], "")


# ---------------------------------------------------------------- chain scripts, dry-run with a stub python

STUB = r"""#!/usr/bin/env bash
# Records its arguments; makes the files the next step reads; FAIL_ON=<word> fails a step;
# SLEEP_ON=<word> sleeps (for timeouts and signals), writing its PID to $STUB_PIDS.
[[ "$*" == "-c pass" ]] && exit 0  # the harness's "does this interpreter run" probe
printf '%s\n' "$*" >> "${STUB_CALLS}"
args=" $* "
if [[ -n "${SLEEP_ON:-}" && "${args}" == *"${SLEEP_ON}"* ]]; then echo $$ >> "${STUB_PIDS}"; sleep 120; fi
if [[ -n "${FAIL_ON:-}" && "${args}" == *"${FAIL_ON}"* ]]; then echo "stub failure" >&2; exit 3; fi
for a in "$@"; do
  case "${a}" in
    --output-dir=*|--output_dir=*) d="${a#*=}"; mkdir -p "${d}"; touch "${d}/latest.pdparams" "${d}/x.pdmodel"
      # train.py on CPU: AMP asked, trained in float32 (STUB_AMP_APPLIED=true plays a GPU)
      if [[ "${args}" == *--amp* ]]; then
        printf '{"amp": true, "amp_applied": %s}\n' "${STUB_AMP_APPLIED:-false}" > "${d}/args.json"
      fi ;;
    --save-inference-dir=*|--save_inference_dir=*) mkdir -p "${a#*=}"; touch "${a#*=}/inference.pdmodel" ;;
    --save_file=*) mkdir -p "$(dirname "${a#*=}")"; touch "${a#*=}" ;;
  esac
done
[[ "${args}" == *infer.py* ]] && echo "inference engine: onednn"
exit 0
"""
SCRIPTS = ["train.py", "tools/export_model.py", "deploy/inference_python/infer.py", "deploy/ptq_python/post_quant.py",
           "deploy/onnx_python/infer.py"]


STDLIB_MODULES = ("cli.py", "hardware.py", "training/__init__.py", "training/profiler.py", "inference/__init__.py",
                  "inference/engine.py", "export/__init__.py", "export/layout.py", "export/atomic.py")


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(REPO_ROOT / "test_tipc", root / "test_tipc", ignore=shutil.ignore_patterns("output"))
    (root / "mobilenetv3_tipc").mkdir()
    shutil.copy(REPO_ROOT / "mobilenetv3_tipc" / "__init__.py", root / "mobilenetv3_tipc")
    shutil.copytree(REPO_ROOT / "mobilenetv3_tipc" / "tipc", root / "mobilenetv3_tipc" / "tipc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # the stdlib-only modules the harness imports: exit codes and booleans, --profiler_options,
    # infer.py's engine rules, the model-folder layout
    for name in STDLIB_MODULES:
        (root / "mobilenetv3_tipc" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "mobilenetv3_tipc" / name, root / "mobilenetv3_tipc" / name)
    for name in SCRIPTS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("# placeholder\n")
    stub = root / "python3.7"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return root


def stub_env(root: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, STUB_CALLS=str(root / "calls.txt"), STUB_PIDS=str(root / "pids.txt"), NO_COLOR="1",
               TIPC_CUDA="no", PATH=f"{root}{os.pathsep}{os.environ['PATH']}")
    env.pop("TIPC_PYTHON", None)
    env.update(extra)
    return env


def dry_run(tmp_path: Path, text: str, script: str, *args: str, **env: str
            ) -> tuple[subprocess.CompletedProcess[str], Path, list[str]]:
    root = fake_root(tmp_path)
    (root / "cfg.txt").write_text(text, encoding="utf-8")
    result = subprocess.run(["bash", f"test_tipc/{script}", "cfg.txt", *args], cwd=root, env=stub_env(root, **env),
                            capture_output=True, text=True, timeout=120, check=False)
    calls = root / "calls.txt"
    return result, root, calls.read_text().splitlines() if calls.exists() else []


def status_lines(root: Path, model: str, mode: str, name: str = "results_python.log") -> list[str]:
    return (root / "test_tipc/output" / model / mode / name).read_text().splitlines()


def test_step6_layout_builds_upstream_commands(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_infer_python.txt").read_text()
    result, root, calls = dry_run(tmp_path, text, "test_train_inference_python.sh", "lite_train_lite_infer")
    assert result.returncode == 0, result.stdout + result.stderr
    run = "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/norm_train_gpus_-1_autocast_False_nodes_1"
    assert calls == [
        f"train.py --epochs=1 --output-dir={run} --batch-size=4 --data-path=./lite_data --device=cpu",
        f"train.py --test-only --data-path=./lite_data --device=cpu --pretrained={run}/latest.pdparams",
        f"tools/export_model.py --model=mobilenet_v3_small --pretrained={run}/latest.pdparams "
        f"--save-inference-dir={run}/inference",
        f"deploy/inference_python/infer.py --use-gpu=False --batch-size=1 --model-dir={run}/inference "
        "--img-path=./images/demo.jpg --benchmark=True",
    ]
    assert result.stdout.splitlines()[-1] == "4 passed, 0 failed, 3 skipped"
    lines = status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer")
    assert [line for line in lines if "infer.py" in line and "successfully" in line][0].endswith(
        "(inference engine: onednn)")
    assert "(gpu_list entry 0 needs CUDA; this Paddle build or machine has no GPU)" in lines[-1]


def test_an_interpreter_on_path_that_does_not_run_is_refused(tmp_path: Path) -> None:
    """A pyenv shim for a version that is not installed is on PATH and exits 127."""
    root = fake_root(tmp_path)
    shim = root / "python3.7"
    shim.write_text("#!/usr/bin/env bash\necho \"pyenv: python3.7: command not found\" >&2\nexit 127\n")
    (root / "cfg.txt").write_text((LAYOUTS / "step6_train_infer_python.txt").read_text())
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt", "lite_train_lite_infer"],
                            cwd=root, env=stub_env(root), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("cfg.txt:3: python3.7 does not run here ('python3.7 -c pass': exit code 127: pyenv: python3.7: command "
            "not found); activate the venv or set TIPC_PYTHON=/path/to/python") in result.stderr
    assert not (root / "calls.txt").exists() and not (root / "test_tipc/output").exists()
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt", "lite_train_lite_infer"],
                            cwd=root, env=stub_env(root, TIPC_PYTHON=str(shim)), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2 and f"TIPC_PYTHON={shim} does not run here" in result.stderr


def test_python_in_the_config_or_tipc_python(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_infer_python.txt").read_text().replace("python:python3.7", "python:python3.0-none")
    result, root, calls = dry_run(tmp_path, text, "test_train_inference_python.sh")
    assert result.returncode == 2, result.stderr
    assert "cfg.txt:3: python3.0-none does not run here (not found)" in result.stderr
    assert "TIPC_PYTHON" in result.stderr and calls == []
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt"], cwd=root,
                            env=stub_env(root, TIPC_PYTHON=str(root / "python3.7")), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "lone CONFIG" in result.stdout.splitlines()[0] and "mode lite_train_lite_infer" in result.stdout


def test_paddleclas_layout_keys_have_upstream_semantics(tmp_path: Path) -> None:
    result, root, calls = dry_run(tmp_path, CLAS_CONFIG, "test_train_inference_python.sh", "lite_train_lite_infer",
                                  TIPC_PYTHON="python3.7")
    assert result.returncode == 0, result.stdout + result.stderr
    trains = [c for c in calls if c.startswith("train.py --model")]
    # auto_cast null|amp is a loop (amp -> --amp --amp-level O1); to_static_train is appended to norm_train
    assert len(trains) == 4
    assert trains[0].startswith("train.py --model mobilenet_v3_large --device=cpu --epochs=2 ")
    assert "--batch-size=8" in trains[0] and "--amp" not in trains[0]
    assert trains[1].startswith("train.py --model mobilenet_v3_large --seed=7 --device=cpu")
    assert "--amp --amp-level O1" in trains[2]
    out = root / "test_tipc/output/MobileNetV3_large_x1_0/lite_train_lite_infer"
    assert (out / "norm_train_gpus_-1_autocast_null_nodes_1_train.log").is_file()
    assert (out / "to_static_train_gpus_-1_autocast_amp_nodes_1_train.log").is_file()
    infers = [c for c in calls if "infer.py" in c]
    assert infers[0].split()[1:] == ["--use-gpu=False", "--enable-mkldnn=False", "--cpu-threads=1", "--precision=fp32",
                                     "--batch-size=1", f"--model-dir={out}/norm_train_gpus_-1_autocast_null_nodes_1/"
                                     "inference".replace(f"{root}/", ""), "--img-path=./lite_data/val",
                                     "--benchmark=False"]


def test_paddleclas_whole_infer_exports_with_infer_export_true(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "cfg.txt").write_text(CLAS_CONFIG.replace("-o Global.use_gpu:True|False", "-o Global.use_gpu:False"))
    (root / "pretrain_models").mkdir()
    (root / "pretrain_models/MobileNetV3_large_x1_0_pretrained.pdparams").write_text("w")
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt", "whole_infer"], cwd=root,
                            env=stub_env(root, TIPC_PYTHON="python3.7"), capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (root / "calls.txt").read_text().splitlines()
    assert calls[0].startswith("tools/export_model.py --model mobilenet_v3_large --pretrained=./pretrain_models/")
    assert "--precision=fp32" in calls[1]  # infer_quant:Fasle is False


@pytest.mark.parametrize(("edit", "message"), [
    (("===========================infer_params==========================\n", ""), "no ===infer_params=== section"),
    (("===========================train_params===========================\n", ""), "no ===train_params=== section"),
    (("-o Global.benchmark:False", "--no-such-flag:1"), "cfg.txt:50: --no-such-flag is not supported"),
    (("norm_train:train.py", "norm_train:tools/train.py -c ppcls/x.yaml"),
     "cfg.txt:16: norm_train is not supported: tools/train.py is not in this repository"),
    (("fpgm_train:null", "fpgm_train:train.py --fpgm"), None),
    (("model_name:MobileNetV3_large_x1_0", "model_name:../../escape"), "model_name '../../escape' must be a plain"),
    (("trainer:norm_train|to_static_train", "trainer:norm_train|fpgm_train\nfpgm_train:train.py"),
     "fpgm_train is not supported: this project has no FPGM pruning"),
    (("gpu_list:-1", "gpu_list:-1|x;y"), "cfg.txt:4: gpu_list entry 'x;y'"),
    (("train_model_name:latest", "train_model_nam:latest"), "cfg.txt:11: train_model_nam is not supported"),
])
def test_config_errors_stop_before_anything_runs(tmp_path: Path, edit: tuple[str, str], message: str | None) -> None:
    text = CLAS_CONFIG.replace(*edit)
    result, root, calls = dry_run(tmp_path, text, "test_train_inference_python.sh", "lite_train_lite_infer",
                                  TIPC_PYTHON="python3.7")
    if message is None:  # a trainer not in the trainer list is just an unused slot
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert calls == [] and not (root / "test_tipc/output").exists()


def test_bom_is_ignored_by_the_chain(tmp_path: Path) -> None:
    text = "\ufeff" + (LAYOUTS / "step6_train_infer_python.txt").read_text()
    result, _, calls = dry_run(tmp_path, text, "test_train_inference_python.sh", "lite_train_lite_infer")
    assert result.returncode == 0, result.stderr
    assert len(calls) == 4


def test_failed_train_skips_its_dependents_and_red(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_infer_python.txt").read_text().replace("gpu_list:-1|0", "gpu_list:-1|-1")
    result, root, calls = dry_run(tmp_path, text, "test_train_inference_python.sh", "lite_train_lite_infer",
                                  FAIL_ON="--epochs=1")
    assert result.returncode == 1
    lines = "\n".join(status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer"))
    assert lines.count("Run failed") == 2 and lines.count("the train step did not produce") == 2
    assert len(calls) == 2


def test_pact_without_precision_line_runs_int8_and_is_red_when_no_cell_can(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_pact_infer_python.txt").read_text()
    result, _, calls = dry_run(tmp_path, text, "test_train_inference_python.sh", "lite_train_lite_infer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert any("infer.py --use-gpu=False --precision=int8 --batch-size=1" in c for c in calls), calls
    # a PACT config whose matrix only has MKLDNN off: every int8 cell is skipped by a rule -> red
    text = text.replace("--batch-size:1\n--model-dir", "--batch-size:1\n--enable-mkldnn:False\n--model-dir")
    result, root, _ = dry_run(tmp_path / "b", text, "test_train_inference_python.sh", "lite_train_lite_infer")
    assert result.returncode == 1
    last = status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer")[-1]
    assert last.startswith("Run failed with command - mobilenet_v3_small - int8 inference - (not run)!")
    assert "int8 inference did not run: every cell was skipped" in last


def test_benchmark_train_mode_names_its_own_script(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_infer_python.txt").read_text()
    result, _, calls = dry_run(tmp_path, text, "test_train_inference_python.sh", "benchmark_train")
    assert result.returncode == 2 and "MODE benchmark_train belongs to test_tipc/benchmark_train.sh" in result.stderr
    assert calls == []


def test_step6_paddle2onnx_layout_runs_onnx_inference(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_paddle2onnx_infer_python.txt").read_text()
    root = fake_root(tmp_path)
    (root / "cfg.txt").write_text(text)
    model = root / "inference/mobilenet_v3_small_infer"
    model.mkdir(parents=True)
    (model / "inference.pdmodel").write_text("p")
    (root / "paddle2onnx").write_text('#!/usr/bin/env bash\nexec python3.7 paddle2onnx "$@"\n')
    (root / "paddle2onnx").chmod(0o755)
    result = subprocess.run(["bash", "test_tipc/test_paddle2onnx.sh", "cfg.txt"], cwd=root, env=stub_env(root),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (root / "calls.txt").read_text().splitlines()
    assert calls[0].startswith("paddle2onnx --model_dir=./inference/mobilenet_v3_small_infer/")
    assert calls[1] == ("deploy/onnx_python/infer.py --onnx_file=./inference/mobilenet_v3_small_onnx/model.onnx "
                        "--img_path=./lite_data/test/demo.jpg --use_gpu=False --batch_size=1")
    assert "--onnx_file './inference/mobilenetv3_model_onnx/model.onnx' ignored" in result.stdout
    assert result.stdout.splitlines()[-1] == "2 passed, 0 failed, 2 skipped"


def test_paddle2onnx_without_inference_is_refused(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_paddle2onnx_infer_python.txt").read_text().replace(
        "inference:deploy/onnx_python/infer.py\n", "")
    result, _, calls = dry_run(tmp_path, text, "test_paddle2onnx.sh")
    assert result.returncode == 2 and "no ONNX inference step" in result.stderr and calls == []


def test_step6_ptq_layout_plans_kl_and_int8(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_ptq_infer_python.txt").read_text()
    root = fake_root(tmp_path)
    (root / "cfg.txt").write_text(text)
    (root / "pretrain_models").mkdir()
    (root / "pretrain_models/mobilenet_v3_small_pretrained.pdparams").write_text("w")
    result = subprocess.run(["bash", "test_tipc/test_ptq_inference_python.sh", "cfg.txt", "klquant_whole_infer"],
                            cwd=root, env=stub_env(root), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (root / "calls.txt").read_text().splitlines()
    assert calls[0].startswith("tools/export_model.py --model mobilenet_v3_small --legacy-format")
    assert calls[1].startswith("deploy/ptq_python/post_quant.py --model-dir=./inference/mobilenet_v3_small_infer")
    assert "--output_dir=./mobilenet_v3_small_infer_ptq/" in calls[1] and "--algo=KL" in calls[1]
    assert "--precision=int8" in calls[2] and "--model-dir=./mobilenet_v3_small_infer_ptq/" in calls[2]


def test_kl_quant_mode_on_a_train_layout(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_infer_python.txt").read_text()
    root = fake_root(tmp_path)
    (root / "cfg.txt").write_text(text)
    (root / "pretrain_models").mkdir()
    (root / "pretrain_models/mobilenet_v3_small_pretrained.pdparams").write_text("w")
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt", "klquant_whole_infer"],
                            cwd=root, env=stub_env(root), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (root / "calls.txt").read_text().splitlines()
    assert "--algo=KL" in calls[1] and "--precision=int8" in calls[2]
    assert "TIPC ptq chain" in result.stdout.splitlines()[0]


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().split()[0]
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.parametrize(("sig", "code", "group"), [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, False),
                                                      (signal.SIGINT, 130, True)])
def test_signals_record_the_interrupted_step_and_leave_no_process(tmp_path: Path, sig: int, code: int,
                                                                  group: bool) -> None:
    root = fake_root(tmp_path)
    (root / "cfg.txt").write_text((LAYOUTS / "step6_train_infer_python.txt").read_text())
    proc = subprocess.Popen(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt", "lite_train_lite_infer"],
                            cwd=root, env=stub_env(root, SLEEP_ON="--test-only"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    stub_pid = int(wait_for(root / "pids.txt"))
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    lines = status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer")
    name = signal.Signals(sig).name
    assert lines[-1].startswith("Run failed with command - mobilenet_v3_small - python3.7 train.py --test-only")
    assert lines[-1].endswith(f"(interrupted by {name})")
    assert out.splitlines()[-1] == "1 passed, 1 failed, 0 skipped"
    assert (root / "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/results_python.xml").is_file()
    assert not alive(stub_pid)


def test_second_run_of_a_folder_refuses_naming_the_pid(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "cfg.txt").write_text((LAYOUTS / "step6_train_infer_python.txt").read_text())
    env = stub_env(root, SLEEP_ON="--test-only")
    first = subprocess.Popen(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt"], cwd=root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(root / "pids.txt")
        before = status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer")
        second = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt"], cwd=root, env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 75
        assert re.search(rf"in use by another run \(PID {first.pid}\)", second.stderr), second.stderr
        assert status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer") == before
    finally:
        first.terminate()
        first.communicate(timeout=60)


# ---------------------------------------------------------------- shipped configs plan cleanly


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/*.txt")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_plan_without_errors(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenetv3_tipc.tipc.__main__ import RESULTS, chain_class

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("TIPC_PYTHON", sys.executable)
    kind = chain.kind_of(Config.load(path))
    if kind == "dy2static":
        from mobilenetv3_tipc.tipc.dy2static_chain import RESULTS_NAME, Dy2StaticChain

        cls, results = Dy2StaticChain, RESULTS_NAME
    else:
        cls, results = chain_class(kind)[0], RESULTS[kind]
    ctx = chain.make_context(kind, str(path.relative_to(REPO_ROOT)), "", results)
    cls(ctx)
    assert ctx.model == path.parent.name
    if "train_benchmark_params" in Config.load(path).sections:
        from mobilenetv3_tipc.tipc.benchmark_chain import RESULTS_NAME, BenchmarkChain

        monkeypatch.setenv("TIPC_CUDA", "no")
        bench = BenchmarkChain(chain.make_context("train", str(path.relative_to(REPO_ROOT)), "benchmark_train",
                                                  RESULTS_NAME), [])
        assert any(planned.runnable for planned in bench.runs)


@pytest.mark.parametrize(("name", "script", "mode", "message"), [
    ("clas_paddle2onnx_python_linux_cpu.txt", "test_paddle2onnx.sh", "paddle2onnx_infer",
     "ERROR: cfg.txt:13: Global.use_onnx is not supported: PaddleClas predict_cls.py's ONNX switch; "
     "this project's ONNX chain is test_paddle2onnx.sh\n"),
    ("clas_serving_python_linux_gpu_cpu.txt", "test_serving.sh", "serving_infer",
     "ERROR: cfg.txt:11: serving_dir is not supported: ./deploy/paddleserving is not a folder of this repository "
     "(this project's service is deploy/serving_python)\n"),
    ("clas_train_ptq_infer_python.txt", "test_train_inference_python.sh", "whole_infer",
     "ERROR: cfg.txt:34: kl_quant is not supported: deploy/slim/quant_post_static.py is not in this repository\n"),
])
def test_paddleclas_layouts_we_cannot_run_are_refused(tmp_path: Path, name: str, script: str, mode: str,
                                                       message: str) -> None:
    result, root, calls = dry_run(tmp_path, (LAYOUTS / name).read_text(), script, mode, TIPC_PYTHON="python3.7")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert calls == [] and not (root / "test_tipc/output").exists()


def test_paddleclas_serving_layout_on_our_service_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenetv3_tipc.tipc.serving_chain import ServingChain

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("TIPC_PYTHON", sys.executable)
    ctx = chain.make_context("serving", str(LAYOUTS / "clas_serving_layout_our_service.txt"), "", "r.log")
    plan = ServingChain(ctx)
    assert plan.devices == ["0", ""]
    assert plan.model_dir == REPO_ROOT / "inference/MobileNetV3_large_x1_0_infer"
    assert plan.serving_dir == REPO_ROOT / "deploy/serving_python"
    assert plan.web_argv[1:] == ["web_service.py", "--config=config.yml"]


@pytest.mark.parametrize("name", ["step6_train_amp_infer_python.txt", "step6_train_fleet_infer_python.txt"])
def test_step6_amp_and_fleet_layouts(tmp_path: Path, name: str) -> None:
    result, root, calls = dry_run(tmp_path, (LAYOUTS / name).read_text(), "test_train_inference_python.sh",
                                  "lite_train_lite_infer")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer")
    if "amp" in name:
        assert calls[0].startswith("train.py --amp_level=O2 --epochs=1")
        train = [line for line in lines if "amp_train_gpus_-1_autocast_True_nodes_1_train.log" in line]
        # AMP on CPU trains in float32: the train step is a hardware skip, never a pass...
        assert len(train) == 1 and train[0].startswith("Run skipped with command"), lines
        assert train[0].endswith("(AMP needs CUDA: ran in float32 here; eval/export/inference below use those weights)")
        # ...and eval, export and inference still run on those weights; the chain is not red
        assert any("amp_train_gpus_-1_autocast_True_nodes_1_export.log" in line and "successfully" in line
                   for line in lines)
        assert any("amp_train_gpus_-1_autocast_True_nodes_1_infer" in line and "successfully" in line
                   for line in lines)
    else:
        assert calls[0].startswith("-m paddle.distributed.launch --nproc_per_node 2 --log_dir ")
        multinode = [line for line in lines if "--ips=192.168.0.1,192.168.0.2" in line]
        assert multinode and multinode[0].endswith(
            "(multi-node needs hosts: 192.168.0.1, 192.168.0.2 are not reachable here; "
            "run the same command on each host)")


def test_step6_fleet_amp_layout(tmp_path: Path) -> None:
    """Step6 fleet config with the AMP trainer: 2 CPU processes (AMP ran in float32: a hardware
    skip, its weights still evaluated, exported and inferred), 2 hosts skipped."""
    result, root, calls = dry_run(tmp_path, (LAYOUTS / "step6_train_fleet_amp_infer_python.txt").read_text(),
                                  "test_train_inference_python.sh", "lite_train_lite_infer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls[0].startswith("-m paddle.distributed.launch --nproc_per_node 2 --log_dir ")
    assert " train.py --amp_level=O2 --epochs=1" in calls[0]
    lines = status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer")
    run = "amp_train_gpus_-1,-1_autocast_True_nodes_1"
    train = [line for line in lines if f"{run}_train.log" in line]
    assert len(train) == 1 and train[0].startswith("Run skipped with command"), lines
    assert train[0].endswith(f"({train_chain.AMP_ON_CPU})")
    assert any(f"{run}_export.log" in line and line.startswith("Run successfully") for line in lines)
    multinode = [line for line in lines if "--ips=192.168.0.1,192.168.0.2" in line]
    assert multinode and multinode[0].startswith("Run skipped with command")
    assert "amp_train_gpus_0,1_autocast_True_nodes_2" in multinode[0]


def test_amp_that_really_ran_passes(tmp_path: Path) -> None:
    result, root, _ = dry_run(tmp_path, (LAYOUTS / "step6_train_amp_infer_python.txt").read_text(),
                              "test_train_inference_python.sh", "lite_train_lite_infer", STUB_AMP_APPLIED="true")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = status_lines(root, "mobilenet_v3_small", "lite_train_lite_infer")
    train = [line for line in lines if "amp_train_gpus_-1_autocast_True_nodes_1_train.log" in line]
    assert len(train) == 1 and train[0].startswith("Run successfully with command"), lines


def test_log_names_from_a_hostile_config_stay_in_the_output_folder(tmp_path: Path) -> None:
    text = (LAYOUTS / "step6_train_infer_python.txt").read_text().replace(
        "trainer:norm_train\nnorm_train:train.py", "trainer:../../../escape_train\n../../../escape_train:train.py")
    result, root, calls = dry_run(tmp_path, text, "test_train_inference_python.sh", "lite_train_lite_infer")
    assert result.returncode == 0, result.stdout + result.stderr
    out = (root / "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer").resolve()
    logs = [Path(line.rsplit(" - ", 1)[1].split("!")[0]) for line in status_lines(
        root, "mobilenet_v3_small", "lite_train_lite_infer") if "(not run)" not in line]
    assert logs and all(out in (root / log).resolve().parents for log in logs), logs
    assert not list(tmp_path.glob("escape*")) and not list(root.glob("escape*"))


def test_model_folder_names_come_from_the_layout_module() -> None:
    """export/layout.py owns the model-folder file names; the harness spells none of them."""
    from mobilenetv3_tipc.export import layout

    names = (layout.PIR_PROGRAM, layout.LEGACY_PROGRAM, layout.PARAMS, layout.MODEL_INFO, layout.LABEL_LIST,
             layout.QUANT_MARKER)
    tipc = REPO_ROOT / "mobilenetv3_tipc" / "tipc"
    spelled = [(path.name, name) for path in sorted(tipc.glob("*.py")) if path.name not in ("__main__.py", "netns.py")
               for name in names if f'"{name}"' in path.read_text(encoding="utf-8")]
    assert spelled == []


def test_results_files_use_the_one_atomic_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One crash-safe writer (temp file, fsync, rename, folder fsync) for results and exports alike."""
    from mobilenetv3_tipc.export import atomic

    synced: list[Path] = []
    real = atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_dir", lambda path: (synced.append(Path(path)), real(path)))
    target = tmp_path / "new" / "results_python.log"
    results.atomic_write(target, "Run successfully with command - m - x - y!\n")
    assert target.read_text() == "Run successfully with command - m - x - y!\n"
    assert synced == [target.parent] and [p.name for p in target.parent.iterdir()] == [target.name]


def test_refusals_have_one_wording(tmp_path: Path) -> None:
    cfg = Config.load(write(tmp_path, "===infer_params===\n-o Global.use_onnx:True\n--frobnicate:1\n"))
    onnx, other = cfg.entries
    assert str(cfg.unsupported(onnx, "generic")) == (
        f"{cfg.path}:2: -o Global.use_onnx is not supported: PaddleClas predict_cls.py's ONNX switch; "
        "this project's ONNX chain is test_paddle2onnx.sh")
    assert str(cfg.unsupported(other, "infer.py has no such flag")) == (
        f"{cfg.path}:3: --frobnicate is not supported: infer.py has no such flag")
