"""Engine selection is one pure function of the flags, the model folder's files and the hardware."""

from __future__ import annotations

import pytest

from mobilenetv3_tipc.cli import UnsupportedConfig, UsageError
from mobilenetv3_tipc.inference.engine import EngineRequest, Hardware, ModelFiles, format_engine_line, select_engine

CPU = Hardware(cuda=False, bfloat16=False, cpu_threads=2)
FLOAT_BOTH = ModelFiles(pir_program=True, legacy_program=True, quantized=False)
FLOAT_PIR = ModelFiles(pir_program=True, legacy_program=False, quantized=False)
INT8 = ModelFiles(pir_program=False, legacy_program=True, quantized=True)


def engine(files: ModelFiles = FLOAT_BOTH, hardware: Hardware = CPU, **flags: object) -> str:
    return select_engine(EngineRequest(**flags), files, hardware).name


def test_auto_picks_openvino_only_when_nothing_explicit_says_otherwise() -> None:
    assert engine() == "openvino"
    assert engine(FLOAT_PIR) == "onednn"
    assert engine(ir_optim=False) == "onednn"  # the OpenVINO engine is an IR pass
    assert engine(INT8, precision="int8") == "onednn"


def test_enable_mkldnn_means_onednn_on_or_off_exactly() -> None:
    assert engine(enable_mkldnn=True) == "onednn"
    assert engine(enable_mkldnn=False) == "native"
    assert engine(enable_mkldnn=True, use_openvino=None) == "onednn"  # auto never overrides an explicit flag


def test_use_openvino_is_its_own_explicit_choice() -> None:
    assert engine(use_openvino=True) == "openvino"
    assert engine(use_openvino=True, enable_mkldnn=False) == "openvino"
    assert engine(use_openvino=False) == "onednn"
    assert engine(use_openvino=False, enable_mkldnn=False) == "native"
    with pytest.raises(UsageError, match="exclude each other"):
        engine(use_openvino=True, enable_mkldnn=True)
    with pytest.raises(UsageError, match="OpenVINO needs a float model with inference.pdmodel"):
        engine(FLOAT_PIR, use_openvino=True)


def test_settings_name_the_program_threads_and_precision() -> None:
    choice = select_engine(EngineRequest(), FLOAT_BOTH, CPU)
    assert choice.program == "inference.pdmodel" and choice.threads == 2
    assert format_engine_line(choice.name, choice.settings()) == (
        "inference engine: openvino (precision=fp32, threads=2, program=inference.pdmodel)")
    assert select_engine(EngineRequest(use_openvino=False), FLOAT_BOTH, CPU).program == "inference.json"


def test_hardware_gaps_are_unsupported_not_failures() -> None:
    with pytest.raises(UnsupportedConfig, match="needs CUDA"):
        engine(use_gpu=True)
    with pytest.raises(UnsupportedConfig, match="TensorRT needs CUDA"):
        engine(use_gpu=True, use_tensorrt=True, precision="int8")  # hardware first, before the model check
    with pytest.raises(UnsupportedConfig, match="avx512_bf16"):
        engine(precision="fp16")
    gpu = Hardware(cuda=True, bfloat16=False, cpu_threads=2)
    assert engine(hardware=gpu, use_gpu=True) == "gpu"
    assert engine(hardware=gpu, use_gpu=True, use_tensorrt=True, precision="fp16") == "tensorrt"


def test_combinations_no_machine_runs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="int8 needs a quantized model"):
        engine(precision="int8")
    with pytest.raises(UsageError, match="runs only with --precision int8"):
        engine(INT8)
    with pytest.raises(UsageError, match="int8 on CPU needs oneDNN"):
        engine(INT8, precision="int8", enable_mkldnn=False)
    with pytest.raises(UsageError, match="precision must be one of"):
        engine(precision="bf8")
