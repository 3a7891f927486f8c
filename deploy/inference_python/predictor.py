"""A Paddle Inference predictor for an exported MobileNetV3 (``inference.json`` + ``.pdiparams``).

Used by ``infer.py``, the serving backend and the agreement gate. Paddle 3.x
facts it respects: a PIR ``.json`` model is loaded with ``Config(json, params)``;
``enable_memory_optim()`` is never called for ``.json`` models (it breaks
``create_predictor``, Paddle issue 75496); the CPU thread count is set
explicitly because Paddle's default is 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.options import UnsupportedConfig, available_cpus, cpu_has_flag, cuda_available

logger = logging.getLogger(__name__)

MODEL_PREFIX = "inference"
PRECISIONS = ("fp32", "fp16", "int8")
# Written by the quantization tools next to an int8 model.
QUANT_MARKER = "quantization.json"


@dataclass(frozen=True)
class InferenceOptions:
    use_gpu: bool = False
    gpu_id: int = 0
    gpu_mem_mb: int = 500
    enable_mkldnn: bool = True
    cpu_threads: int = 0  # 0 = every available core
    use_tensorrt: bool = False
    precision: str = "fp32"
    ir_optim: bool = True

    def threads(self) -> int:
        return self.cpu_threads if self.cpu_threads > 0 else available_cpus()


def find_model_files(model_dir: str | Path) -> tuple[Path, Path]:
    """``(program, params)``: the PIR ``inference.json``, else a legacy ``inference.pdmodel``."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: model directory does not exist (export one with tools/export_model.py)")
    params = root / f"{MODEL_PREFIX}.pdiparams"
    for suffix in (".json", ".pdmodel"):
        program = root / f"{MODEL_PREFIX}{suffix}"
        if program.is_file():
            if not params.is_file():
                raise FileNotFoundError(f"{params}: parameters file missing next to {program.name}")
            return program, params
    raise FileNotFoundError(
        f"{root}: neither {MODEL_PREFIX}.json nor {MODEL_PREFIX}.pdmodel found "
        "(export one with tools/export_model.py)"
    )


def is_quantized_model(model_dir: str | Path) -> bool:
    return (Path(model_dir) / QUANT_MARKER).is_file()


def check_supported(options: InferenceOptions, model_dir: str | Path) -> None:
    """Raise :class:`UnsupportedConfig` for a combination this machine cannot run."""
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {options.precision!r}")
    quantized = is_quantized_model(model_dir)
    if options.use_gpu or options.use_tensorrt:
        if not cuda_available():
            what = "TensorRT" if options.use_tensorrt else "GPU inference"
            raise UnsupportedConfig(f"{what} needs CUDA; this Paddle build or machine has no GPU")
        if options.precision != "fp32" and not options.use_tensorrt:
            raise UnsupportedConfig(f"{options.precision} on GPU needs TensorRT (--use-tensorrt)")
        return
    if options.use_tensorrt:
        raise UnsupportedConfig("TensorRT needs --use-gpu")
    if options.precision == "fp16":
        if not options.enable_mkldnn:
            raise UnsupportedConfig("fp16 on CPU needs oneDNN (--enable-mkldnn)")
        if not (cpu_has_flag("avx512_bf16") or cpu_has_flag("amx_bf16")):
            raise UnsupportedConfig("reduced precision on CPU needs avx512_bf16 or AMX; this CPU has neither")
    if options.precision == "int8" and not quantized:
        raise UnsupportedConfig("int8 needs a quantized model (deploy/ptq_python or --pact_quant)")
    if quantized and options.precision != "int8":
        raise UnsupportedConfig("a quantized model runs only with --precision int8")
    if options.precision == "int8" and not options.enable_mkldnn:
        raise UnsupportedConfig("int8 on CPU needs oneDNN (--enable-mkldnn)")


class PaddlePredictor:
    """``run(batch)`` maps an ``(N, 3, H, W)`` float32 array to the model's ``(N, classes)`` output."""

    def __init__(self, model_dir: str | Path, options: InferenceOptions | None = None) -> None:
        from paddle import inference

        self.options = options or InferenceOptions()
        self.model_dir = Path(model_dir)
        program, params = find_model_files(self.model_dir)
        check_supported(self.options, self.model_dir)
        config = inference.Config(str(program), str(params))
        opts = self.options
        if opts.use_gpu:
            config.enable_use_gpu(opts.gpu_mem_mb, opts.gpu_id)
            if opts.use_tensorrt:
                precision = {
                    "fp32": inference.PrecisionType.Float32,
                    "fp16": inference.PrecisionType.Half,
                    "int8": inference.PrecisionType.Int8,
                }[opts.precision]
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30, max_batch_size=64, min_subgraph_size=3,
                    precision_mode=precision, use_static=False, use_calib_mode=False,
                )
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(opts.threads())
            if opts.enable_mkldnn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(10)
                if opts.precision == "fp16":
                    config.enable_mkldnn_bfloat16()
                elif opts.precision == "int8":
                    config.enable_mkldnn_int8()
            else:
                config.disable_mkldnn()
        config.switch_ir_optim(opts.ir_optim)
        if program.suffix == ".pdmodel":
            config.enable_memory_optim()  # safe for legacy programs only
        config.disable_glog_info()
        self.config = config
        self.predictor = inference.create_predictor(config)
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]
        self._input = self.predictor.get_input_handle(self.input_name)
        self._output = self.predictor.get_output_handle(self.output_name)
        logger.info("loaded %s (input %s, output %s)", program, self.input_name, self.output_name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self.predictor.run()
        return self._output.copy_to_cpu()

    def describe(self) -> dict[str, object]:
        opts = self.options
        return {
            "runtime_device": f"gpu:{opts.gpu_id}" if opts.use_gpu else "cpu",
            "ir_optim": opts.ir_optim,
            "enable_tensorrt": opts.use_tensorrt,
            "enable_mkldnn": opts.enable_mkldnn and not opts.use_gpu,
            "cpu_math_library_num_threads": opts.threads(),
        }
