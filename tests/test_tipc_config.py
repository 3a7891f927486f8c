"""Unit tests of the TIPC harness library (test_tipc/common_func.sh, tipc_report.py).

No Paddle: the functions run in bash subprocesses; the chain is dry-run with a stub
interpreter that records its arguments.
"""

from __future__ import annotations

import importlib.util
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LIB = REPO_ROOT / "test_tipc" / "common_func.sh"
ANSI = "\x1b["

# Upstream PaddlePaddle/models Step6 layout (32 lines, read by line number upstream).
STEP6_CONFIG = """\
===========================train_params===========================
model_name:mobilenet_v3_small
python:python3.7
gpu_list:0|0,1
use-gpu:True|True
--epochs:lite_train_lite_infer=5|whole_train_whole_infer=90
--output-dir:./output/
--batch-size:lite_train_lite_infer=4|whole_train_whole_infer=128
--pretrained:null
train_model_name:latest.pdparams
--data-path:./lite_data
##
trainer:norm_train
norm_train:train.py
##
===========================eval_params===========================
eval:train.py --test-only
##
===========================infer_params===========================
--save-inference-dir:./output/mobilenet_v3_small_infer/
--pretrained:
norm_export:tools/export_model.py --model=mobilenet_v3_small
##
train_model:./pretrain_models/mobilenet_v3_small_pretrained.pdparams
infer_export:tools/export_model.py --model=mobilenet_v3_small
##
inference:deploy/inference_python/infer.py
--use-gpu:True|False
--batch-size:1
--model-dir:./output/mobilenet_v3_small_infer/
--img-path:./images/demo.jpg
--benchmark:True
"""

CLAS_URL = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/legendary_models/MobileNetV3_large_x1_0_pretrained.pdparams"
# PaddleClas layout (51 lines + benchmark sections).
CLAS_CONFIG = f"""\
===========================train_params===========================
model_name:MobileNetV3_large_x1_0
python:python3.7
gpu_list:0|0,1
-o Global.device:gpu
-o Global.auto_cast:null
-o Global.epochs:lite_train_lite_infer=2|whole_train_whole_infer=120
-o Global.output_dir:./output/
-o DataLoader.Train.sampler.batch_size:8
-o Global.pretrained_model:null
train_model_name:latest
train_infer_img_dir:./dataset/ILSVRC2012/val
null:null
##
trainer:norm_train
norm_train:tools/train.py -c ppcls/configs/ImageNet/MobileNetV3/MobileNetV3_large_x1_0.yaml -o Global.seed=1234
pact_train:null
fpgm_train:null
distill_train:null
to_static_train:-o Global.to_static=True
null:null
##
===========================eval_params===========================
eval:tools/eval.py -c ppcls/configs/ImageNet/MobileNetV3/MobileNetV3_large_x1_0.yaml
null:null
##
===========================infer_params==========================
-o Global.save_inference_dir:./inference
-o Global.pretrained_model:
norm_export:tools/export_model.py -c ppcls/configs/ImageNet/MobileNetV3/MobileNetV3_large_x1_0.yaml
quant_export:null
fpgm_export:null
distill_export:null
kl_quant:null
export2:null
pretrained_model_url:{CLAS_URL}
infer_model:../inference/
infer_export:True
infer_quant:Fasle
inference:python/predict_cls.py -c configs/inference_cls.yaml
-o Global.use_gpu:True|False
-o Global.enable_mkldnn:False
-o Global.cpu_num_threads:1
-o Global.batch_size:1
-o Global.use_tensorrt:False
-o Global.use_fp16:False
-o Global.inference_model_dir:../inference
-o Global.infer_imgs:../dataset/ILSVRC2012/val/ILSVRC2012_val_00000001.JPEG
-o Global.save_log_path:null
-o Global.benchmark:False
null:null
null:null
===========================train_benchmark_params==========================
batch_size:256|640
fp_items:fp32|fp16
epoch:1
--profiler_options:batch_range=[10,20];state=GPU;tracer_option=Default;profile_path=model.profile
===========================infer_benchmark_params==========================
random_infer_input:[{{float32,[3,224,224]}}]
"""


def bash(script: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash with the library sourced (strict mode on, as the chains use it)."""
    full = f"set -uo pipefail\nsource {LIB}\n{script}\n"
    return subprocess.run(["bash", "-c", full], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False, env=env)


def load(tmp_path: Path, text: str, name: str = "cfg.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def get(tmp_path: Path, text: str, call: str) -> str:
    cfg = load(tmp_path, text)
    result = bash(f'tipc_load_config "{cfg}" || exit 9\n{call}', tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.rstrip("\n")


def report_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tipc_report", REPO_ROOT / "test_tipc" / "tipc_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("tipc_report", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- parsing


def test_value_with_colons_survives(tmp_path: Path) -> None:
    text = "model_name:m\npretrained_model_url:https://host:8080/a/b.pdparams?x=1#frag\n"
    assert get(tmp_path, text, "tipc_get pretrained_model_url") == "https://host:8080/a/b.pdparams?x=1#frag"


def test_comments_blank_lines_and_headers_are_skipped(tmp_path: Path) -> None:
    text = (
        "# a comment: with a colon\n"
        "\n"
        "   \n"
        "===========================train_params===========================\n"
        "## placeholder\n"
        "model_name:m  \n"
        "  python : python3  \r\n"
    )
    out = get(tmp_path, text, 'tipc_get model_name; tipc_get python; tipc_line python; echo "${#TIPC_CFG_KEYS[@]}"'
              '; echo "${TIPC_CFG_SECTIONS[1]}"')
    assert out.splitlines() == ["m", "python3", "7", "2", "train_params"]


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    cfg = load(tmp_path, "model_name:m\n# fine\nthis line has no colon\npython:python\n")
    result = bash(f'tipc_load_config "{cfg}"; echo "rc=$?"', tmp_path)
    assert "rc=1" in result.stdout
    assert f"{cfg}:3: malformed line (expected key:value): this line has no colon" in result.stderr


def test_empty_key_is_malformed(tmp_path: Path) -> None:
    cfg = load(tmp_path, "model_name:m\n:value\n")
    result = bash(f'tipc_load_config "{cfg}"; echo "rc=$?"', tmp_path)
    assert "rc=1" in result.stdout
    assert f"{cfg}:2: malformed line" in result.stderr


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    result = bash(f'tipc_load_config "{tmp_path}/nope.txt"; echo "rc=$?"', tmp_path)
    assert "rc=2" in result.stdout
    assert "nope.txt: config file not found" in result.stderr


def test_missing_key_names_file_and_key(tmp_path: Path) -> None:
    cfg = load(tmp_path, "model_name:m\n")
    result = bash(f'tipc_load_config "{cfg}"; tipc_get gpu_list; echo "rc=$?"; tipc_get gpu_list -1', tmp_path)
    assert result.stdout.splitlines() == ["rc=1", "-1"]
    assert f"{cfg}: missing key 'gpu_list'" in result.stderr


def test_duplicate_keys_first_nth_and_section(tmp_path: Path) -> None:
    text = (
        "=====train_params=====\n--batch-size:8\nnull:null\nnull:null\n"
        "=====infer_params=====\n--batch-size:1|2\n"
    )
    out = get(tmp_path, text, "tipc_get --batch-size; tipc_get_nth --batch-size 2; tipc_count null; "
                              "tipc_get_in infer_params --batch-size; tipc_get_nth --batch-size 3 none")
    assert out.splitlines() == ["8", "1|2", "2", "1|2", "none"]


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [
        ("lite_train_lite_infer=5|whole_train_whole_infer=90", "lite_train_lite_infer", "5"),
        ("lite_train_lite_infer=5|whole_train_whole_infer=90", "whole_train_whole_infer", "90"),
        ("lite_train_lite_infer=5|whole_train_whole_infer=90", "whole_infer", ""),
        ("lite_train_lite_infer=./a=b", "lite_train_lite_infer", "./a=b"),
        ("True|False", "lite_train_lite_infer", "True|False"),
        ("8", "whole_infer", "8"),
        ("-o Global.to_static=True", "lite_train_lite_infer", "-o Global.to_static=True"),
        ("batch_range=[10,20];state=GPU", "lite_train_lite_infer", "batch_range=[10,20];state=GPU"),
        ("", "lite_train_lite_infer", ""),
    ],
)
def test_mode_value(tmp_path: Path, value: str, mode: str, expected: str) -> None:
    result = bash(f"tipc_mode_value '{value}' {mode}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == expected


def test_add_param_follows_func_set_params(tmp_path: Path) -> None:
    script = (
        'cmd=(python x.py); tipc_add_param cmd --epochs 2; tipc_add_param cmd --pretrained null; '
        'tipc_add_param cmd null 3; tipc_add_param cmd --output-dir ""; '
        'tipc_add_param cmd "-o Global.epochs" 4; tipc_add_param cmd --url "https://a:1/b c"; '
        "printf '<%s>' \"${cmd[@]}\""
    )
    result = bash(script, tmp_path)
    assert result.stdout == "<python><x.py><--epochs=2><-o><Global.epochs=4><--url=https://a:1/b c>"


# ---------------------------------------------------------------- upstream layouts


def find(tmp_path: Path, text: str, section: str, name: str, after: str = "") -> tuple[str, str]:
    out = get(tmp_path, text, f'i=$(tipc_find_param "{section}" {name} "{after}") || exit 7\n'
                              'printf "%s|%s" "${TIPC_CFG_KEYS[i]}" "${TIPC_CFG_VALUES[i]}"')
    key, value = out.split("|", 1)
    return key, value


def test_step6_layout_resolves_by_meaning(tmp_path: Path) -> None:
    assert get(tmp_path, STEP6_CONFIG, "tipc_get norm_train; tipc_get eval; tipc_get trainer").splitlines() == [
        "train.py", "train.py --test-only", "norm_train"]
    assert find(tmp_path, STEP6_CONFIG, "train_params", "epochs") == (
        "--epochs", "lite_train_lite_infer=5|whole_train_whole_infer=90")
    assert find(tmp_path, STEP6_CONFIG, "train_params", "batch_size")[0] == "--batch-size"
    assert find(tmp_path, STEP6_CONFIG, "train_params", "output_dir")[0] == "--output-dir"
    assert find(tmp_path, STEP6_CONFIG, "infer_params", "pretrained") == ("--pretrained", "")
    assert find(tmp_path, STEP6_CONFIG, "infer_params", "save_inference_dir")[0] == "--save-inference-dir"
    assert find(tmp_path, STEP6_CONFIG, "infer_params", "batch_size", "inference") == ("--batch-size", "1")
    assert find(tmp_path, STEP6_CONFIG, "infer_params", "use_gpu", "inference") == ("--use-gpu", "True|False")
    assert find(tmp_path, STEP6_CONFIG, "infer_params", "img_path", "inference") == ("--img-path", "./images/demo.jpg")
    cfg = load(tmp_path, STEP6_CONFIG)
    missing = bash(f'tipc_load_config "{cfg}"; tipc_find_param infer_params enable_mkldnn inference; echo "rc=$?"',
                   tmp_path)
    assert missing.stdout.strip() == "rc=1"
    assert sum(1 for line in STEP6_CONFIG.splitlines()) == 32


def test_paddleclas_layout_resolves_by_meaning(tmp_path: Path) -> None:
    assert get(tmp_path, CLAS_CONFIG, "tipc_get pretrained_model_url") == CLAS_URL
    assert get(tmp_path, CLAS_CONFIG, "tipc_get norm_train").startswith("tools/train.py -c ppcls/configs/")
    assert find(tmp_path, CLAS_CONFIG, "train_params", "epochs")[0] == "-o Global.epochs"
    assert find(tmp_path, CLAS_CONFIG, "train_params", "batch_size") == ("-o DataLoader.Train.sampler.batch_size", "8")
    assert find(tmp_path, CLAS_CONFIG, "train_params", "pretrained")[0] == "-o Global.pretrained_model"
    assert find(tmp_path, CLAS_CONFIG, "infer_params", "save_inference_dir")[0] == "-o Global.save_inference_dir"
    expected = {
        "use_gpu": ("-o Global.use_gpu", "True|False"),
        "enable_mkldnn": ("-o Global.enable_mkldnn", "False"),
        "cpu_threads": ("-o Global.cpu_num_threads", "1"),
        "batch_size": ("-o Global.batch_size", "1"),
        "use_tensorrt": ("-o Global.use_tensorrt", "False"),
        "precision": ("-o Global.use_fp16", "False"),
        "model_dir": ("-o Global.inference_model_dir", "../inference"),
        "img_path": ("-o Global.infer_imgs", "../dataset/ILSVRC2012/val/ILSVRC2012_val_00000001.JPEG"),
        "benchmark": ("-o Global.benchmark", "False"),
    }
    for name, pair in expected.items():
        assert find(tmp_path, CLAS_CONFIG, "infer_params", name, "inference") == pair, name
    assert get(tmp_path, CLAS_CONFIG, "tipc_get_in train_benchmark_params batch_size") == "256|640"


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "test_tipc" / "configs").glob("*/train_*infer_python.txt")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_parse(tmp_path: Path, path: Path) -> None:
    script = (
        f'tipc_load_config "{path}" || exit 9\n'
        "for k in model_name python gpu_list trainer eval norm_export inference; do\n"
        "  tipc_get $k >/dev/null || exit 8\n"
        "done\n"
        "tipc_get \"$(tipc_get trainer | cut -d'|' -f1)\" >/dev/null || exit 7\n"
        "names='use_gpu enable_mkldnn cpu_threads batch_size use_tensorrt precision model_dir img_path benchmark'\n"
        'for n in $names; do\n'
        '  tipc_find_param infer_params $n inference >/dev/null || { echo "no $n"; exit 6; }\n'
        "done\n"
        "tipc_get model_name"
    )
    result = bash(script, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == path.parent.name


# ---------------------------------------------------------------- recording and reporting


def test_run_step_records_by_own_exit_code(tmp_path: Path) -> None:
    status = tmp_path / "out" / "results_python.log"
    script = (
        f'S="{status}"; tipc_start "$S"\n'
        'tipc_run_step "$S" m "$(dirname "$S")/ok.log" echo "hi there"; echo "rc=$?"\n'
        "tipc_run_step \"$S\" m \"$(dirname \"$S\")/skip.log\" bash -c 'echo SKIPPED: no GPU here >&2; exit 77'"
        '; echo "rc=$?"\n'
        "tipc_run_step \"$S\" m \"$(dirname \"$S\")/bad.log\" bash -c 'exit 3'; echo \"rc=$? last=$TIPC_LAST_RC\"\n"
        'tipc_record_skip "$S" m "train on gpu 0" "needs CUDA"\n'
        'tipc_finish "$S"; echo "finish=$?"'
    )
    result = bash(script, tmp_path)
    lines = status.read_text().splitlines()
    assert lines == [
        f"Run successfully with command - m - echo hi\\ there - {status.parent}/ok.log!",
        f"Run skipped with command - m - bash -c echo\\ SKIPPED:\\ no\\ GPU\\ here\\ \\>\\&2\\;\\ exit\\ 77 - "
        f"{status.parent}/skip.log! (no GPU here)",
        f"Run failed with command - m - bash -c exit\\ 3 - {status.parent}/bad.log! (exit code 3)",
        "Run skipped with command - m - train on gpu 0 - (not run)! (needs CUDA)",
    ]
    out = result.stdout.splitlines()
    assert "rc=0" in out and "rc=1 last=3" in out
    assert "1 passed, 1 failed, 2 skipped" in out
    assert out[-1] == "finish=1"
    assert (status.parent / "ok.log").read_text() == "hi there\n"
    assert ANSI not in status.read_text()

    suite = ET.parse(status.with_suffix(".xml")).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["ok", "skip", "bad", "train on gpu 0"]
    failure = cases[2].find("failure")
    assert failure is not None and failure.get("message") == "exit code 3"
    skipped = cases[1].find("skipped")
    assert skipped is not None and skipped.get("message") == "no GPU here"
    system_out = cases[0].find("system-out")
    assert system_out is not None and "hi there" in (system_out.text or "")


def test_finish_fails_when_nothing_ran(tmp_path: Path) -> None:
    status = tmp_path / "results_python.log"
    result = bash(f'tipc_start "{status}"; tipc_record_skip "{status}" m d r; tipc_finish "{status}"; echo "rc=$?"',
                  tmp_path)
    assert result.stdout.splitlines()[-2:] == ["0 passed, 0 failed, 1 skipped", "rc=1"]


def test_finish_passes_when_all_passed(tmp_path: Path) -> None:
    status = tmp_path / "results_python.log"
    result = bash(f'tipc_start "{status}"; tipc_run_step "{status}" m "{tmp_path}/a.log" true; '
                  f'tipc_finish "{status}"; echo "rc=$?"', tmp_path)
    assert result.stdout.splitlines()[-2:] == ["1 passed, 0 failed, 0 skipped", "rc=0"]


def test_colour_only_on_a_terminal(tmp_path: Path) -> None:
    status = tmp_path / "results_python.log"
    script = (f'set -uo pipefail; source {LIB}; tipc_start "{status}"; '
              f'tipc_run_step "{status}" m "{tmp_path}/a.log" true')
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(["bash", "-c", script], stdout=slave, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    chunks = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks += data
    proc.wait(timeout=30)
    os.close(master)
    assert ANSI.encode() in chunks
    assert ANSI not in status.read_text()
    assert status.read_text().startswith("Run successfully with command - m - true - ")


def test_step_timeout_is_a_failure(tmp_path: Path) -> None:
    status = tmp_path / "results_python.log"
    env = dict(os.environ, TIPC_STEP_TIMEOUT="1")
    result = bash(f'tipc_start "{status}"; tipc_run_step "{status}" m "{tmp_path}/a.log" sleep 20; echo "rc=$?"',
                  tmp_path, env=env)
    assert "rc=1" in result.stdout
    assert status.read_text().rstrip().endswith("! (timed out after 1 s)")


def test_report_reads_upstream_ansi_lines(tmp_path: Path) -> None:
    module = report_module()
    status = tmp_path / "results_python.log"
    status.write_text(
        "\x1b[33m Run successfully with command - mobilenet_v3_small - python3.7 train.py --epochs=5!  \x1b[0m\n"
        "\x1b[33m Run failed with command - mobilenet_v3_small - python3.7 infer.py > a - b.log 2>&1 - "
        "/x/c.log ! \x1b[0m\n"
        "random noise\n",
        encoding="utf-8",
    )
    steps = module.read_steps(status)
    assert [s.status for s in steps] == ["passed", "failed"]
    assert steps[0].command == "python3.7 train.py --epochs=5"
    assert steps[1].log == "/x/c.log"
    assert module.main([str(status)]) == 1


def test_report_parses_reason_with_dashes() -> None:
    step = report_module().parse_line("Run skipped with command - m - cmd - x - /l.log! (multi-node needs a - b)")
    assert step is not None
    assert (step.command, step.log, step.reason) == ("cmd - x", "/l.log", "multi-node needs a - b")


# ---------------------------------------------------------------- chain script, dry-run with a stub python

STUB = """#!/usr/bin/env bash
# Records its arguments; the CUDA probe (-c ...) says "no GPU"; FAIL_ON=<word> fails a step.
if [[ "$1" == "-c" ]]; then exit 1; fi
printf '%s\\n' "$*" >> "${STUB_CALLS}"
if [[ -n "${FAIL_ON:-}" && " $* " == *" ${FAIL_ON} "* ]]; then echo "stub failure" >&2; exit 3; fi
exit 0
"""


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "test_tipc").mkdir(parents=True)
    for name in ("common_func.sh", "test_train_inference_python.sh", "prepare.sh", "tipc_report.py"):
        shutil.copy(REPO_ROOT / "test_tipc" / name, root / "test_tipc" / name)
    (root / "train.py").write_text("# placeholder\n")
    stub = root / "stubpython"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return root


def dry_run(tmp_path: Path, config_text: str, mode: str = "lite_train_lite_infer",
            fail_on: str = "") -> tuple[subprocess.CompletedProcess[str], Path, list[str]]:
    root = fake_root(tmp_path)
    text = config_text.replace("python:python3.7", f"python:{root / 'stubpython'}")
    cfg = root / "cfg.txt"
    cfg.write_text(text)
    calls = root / "calls.txt"
    env = dict(os.environ, STUB_CALLS=str(calls), FAIL_ON=fail_on, NO_COLOR="1")
    result = subprocess.run(["bash", "test_tipc/test_train_inference_python.sh", "cfg.txt", mode], cwd=root,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    calls_list = calls.read_text().splitlines() if calls.exists() else []
    return result, root, calls_list


def test_step6_config_dry_run_builds_upstream_commands(tmp_path: Path) -> None:
    result, root, calls = dry_run(tmp_path, STEP6_CONFIG.replace("gpu_list:0|0,1", "gpu_list:-1|0"))
    assert result.returncode == 0, result.stdout + result.stderr
    run = "./test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/norm_train_gpus_-1_autocast_False_nodes_1"
    assert calls == [
        f"train.py --epochs=5 --output-dir={run} --batch-size=4 --data-path=./lite_data --device=cpu",
        f"train.py --test-only --data-path=./lite_data --device=cpu --pretrained={run}/latest.pdparams",
        f"tools/export_model.py --model=mobilenet_v3_small --pretrained={run}/latest.pdparams "
        f"--save-inference-dir={run}/inference",
        f"deploy/inference_python/infer.py --use-gpu=False --batch-size=1 --model-dir={run}/inference "
        "--img-path=./images/demo.jpg --benchmark=True",
    ]
    assert "4 passed, 0 failed, 3 skipped" in result.stdout.splitlines()
    results = (root / "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/results_python.log").read_text()
    assert "(GPU inference needs CUDA; this Paddle build or machine has no GPU)" in results
    assert "(gpu_list entry 0 needs CUDA; this Paddle build or machine has no GPU)" in results


def test_failed_step_turns_the_run_red_but_later_steps_run(tmp_path: Path) -> None:
    config = STEP6_CONFIG.replace("gpu_list:0|0,1", "gpu_list:-1").replace("--use-gpu:True|False", "--use-gpu:False")
    result, root, calls = dry_run(tmp_path, config, fail_on="--test-only")
    assert result.returncode == 1
    results = (root / "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/results_python.log").read_text()
    lines = results.splitlines()
    assert [line.split(" with command")[0] for line in lines] == [
        "Run successfully", "Run failed", "Run successfully", "Run successfully"]
    assert lines[1].endswith("_eval.log! (exit code 3)")
    assert len(calls) == 4
    assert result.stdout.splitlines()[-1] == "3 passed, 1 failed, 0 skipped"


def test_failed_train_skips_its_dependents(tmp_path: Path) -> None:
    config = STEP6_CONFIG.replace("gpu_list:0|0,1", "gpu_list:-1|-1").replace("--use-gpu:True|False",
                                                                                "--use-gpu:False")
    result, root, calls = dry_run(tmp_path, config, fail_on="--epochs=5")
    assert result.returncode == 1
    lines = (root / "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/results_python.log").read_text()
    assert lines.count("Run failed") == 2
    assert lines.count("the train step did not produce") == 2
    assert len(calls) == 2  # both gpu_list entries still tried to train


def test_multinode_entry_is_understood_and_skipped(tmp_path: Path) -> None:
    config = STEP6_CONFIG.replace("gpu_list:0|0,1", "gpu_list:-1|192.168.0.1,192.168.0.2;0,1").replace(
        "trainer:norm_train\nnorm_train:train.py", "trainer:fleet_train\nfleet_train:train.py")
    result, root, _ = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr
    results = (root / "test_tipc/output/mobilenet_v3_small/lite_train_lite_infer/results_python.log").read_text()
    multinode = [line for line in results.splitlines() if "nodes_2" in line]
    assert multinode, results
    assert "-m paddle.distributed.launch --ips=192.168.0.1,192.168.0.2 --gpus=0,1" in multinode[0]
    assert multinode[0].endswith("(multi-node needs hosts 192.168.0.1,192.168.0.2)")


def test_bad_config_stops_with_file_line_error(tmp_path: Path) -> None:
    result, root, calls = dry_run(tmp_path, STEP6_CONFIG.replace("##\ntrainer:", "oops no colon\ntrainer:", 1))
    assert result.returncode == 2
    assert re.search(r"cfg\.txt:12: malformed line \(expected key:value\): oops no colon", result.stderr)
    assert calls == []
    assert not (root / "test_tipc" / "output").exists()


def test_missing_key_stops_with_named_error(tmp_path: Path) -> None:
    result, _, calls = dry_run(tmp_path, STEP6_CONFIG.replace("model_name:mobilenet_v3_small\n", ""))
    assert result.returncode == 2
    assert "cfg.txt: missing key 'model_name'" in result.stderr
    assert calls == []


def test_must_run_from_repo_root(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(REPO_ROOT / "test_tipc" / "test_train_inference_python.sh"), "x", "y"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "run this script from the repository root" in result.stderr


def test_unknown_mode_is_a_usage_error(tmp_path: Path) -> None:
    result, _, _ = dry_run(tmp_path, STEP6_CONFIG, mode="lite_infer")
    assert result.returncode == 2
    assert "unknown MODE 'lite_infer'" in result.stderr
