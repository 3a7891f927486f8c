"""A Paddle Inference predictor for an exported MobileNetV3 (``inference.json`` + ``.pdiparams``).

Used by ``infer.py``, the serving backend and the agreement gate. Paddle 3.x
facts it respects: a PIR ``.json`` model is loaded with ``Config(json, params)``;
``enable_memory_optim()`` is never called for ``.json`` models (it breaks
``create_predictor``, Paddle issue 75496); the CPU thread count is set
explicitly because Paddle's default is 1.

CPU engines, fastest first (fp32 model-only latency measured on a 2-core AVX2
machine; the benchmark reports the current figures):

* ``openvino``: Paddle Inference's bundled OpenVINO engine. It reads only a
  legacy ``inference.pdmodel`` program, which ``tools/export_model.py`` writes
  next to ``inference.json`` (same ``.pdiparams``). The default for fp32 on CPU
  (``enable_mkldnn=True, use_openvino=True``) when that file exists. One engine
  with N threads: splitting a batch over N one-thread engines run side by side
  was measured slower on an idle machine, because ``predictor.run`` holds the
  Python GIL, so the engines take turns;
* ``onednn``: oneDNN kernels on the PIR ``.json`` program (int8 and bfloat16
  always use it);
* ``native``: Paddle's plain CPU kernels (``enable_mkldnn=False``).

:func:`create_cpu_predictor` builds the default or one named engine (used by
the benchmark).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deploy.options import UnsupportedConfig, available_cpus, cpu_has_flag, cuda_available

logger = logging.getLogger(__name__)

MODEL_PREFIX = "inference"
PRECISIONS = ("fp32", "fp16", "int8")
# Written by the quantization tools next to an int8 model.
QUANT_MARKER = "quantization.json"
CPU_ENGINES = ("openvino", "onednn", "native")
# Named configurations for create_cpu_predictor; "default" is InferenceOptions() itself.
CPU_VARIANTS = ("default", *CPU_ENGINES)


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
    # fp32 on CPU with enable_mkldnn: use the OpenVINO engine when inference.pdmodel exists
    use_openvino: bool = True

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


def legacy_program(model_dir: str | Path) -> Path | None:
    """``inference.pdmodel`` when it sits next to ``inference.pdiparams``, else ``None``."""
    root = Path(model_dir)
    program = root / f"{MODEL_PREFIX}.pdmodel"
    params = root / f"{MODEL_PREFIX}.pdiparams"
    return program if program.is_file() and params.is_file() else None


def select_cpu_engine(options: InferenceOptions, model_dir: str | Path) -> str:
    """The CPU engine ``options`` give for this model: one of :data:`CPU_ENGINES`."""
    if not options.enable_mkldnn:
        return "native"
    if (options.use_openvino and options.ir_optim and options.precision == "fp32"
            and not is_quantized_model(model_dir) and legacy_program(model_dir) is not None):
        return "openvino"
    return "onednn"


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
        opts = self.options
        self.engine = "gpu" if opts.use_gpu else select_cpu_engine(opts, self.model_dir)
        self._input_dims: list[int] | None = None
        if (self.engine == "onednn" and opts.use_openvino and opts.precision == "fp32"
                and legacy_program(self.model_dir) is None):
            logger.info("%s has no %s.pdmodel: using oneDNN, not the faster OpenVINO engine "
                        "(re-export with tools/export_model.py)", self.model_dir, MODEL_PREFIX)
        if self.engine == "openvino":
            from deploy.inference_python.legacy_program import read_input_dims

            program = legacy_program(self.model_dir) or program
            self._input_dims = read_input_dims(program)
        # run() compares a batch's (C, H, W) with this first and checks in full only on a mismatch
        self._input_tail = tuple(self._input_dims[1:]) if self._input_dims else ()
        config = inference.Config(str(program), str(params))
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
            if self.engine == "openvino":
                # The whole program becomes one OpenVINO engine op; oneDNN would have nothing to run.
                config.disable_mkldnn()
                config.enable_openvino_engine(inference.PrecisionType.Float32)
            elif self.engine == "onednn":
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
        self.program = program
        if self.engine == "openvino":
            # OpenVINO caches its compiled model in the "optim cache dir" (default: ./__cache__,
            # 10 MB per model). The cache does not make loading faster here, so it goes to a
            # scratch directory that is removed once the engine is built.
            with tempfile.TemporaryDirectory(prefix="paddle_openvino_") as cache:
                config.set_optim_cache_dir(cache)
                self.predictor = inference.create_predictor(config)
        else:
            self.predictor = inference.create_predictor(config)
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]
        self._input = self.predictor.get_input_handle(self.input_name)
        self._output = self.predictor.get_output_handle(self.output_name)
        logger.info("loaded %s (engine %s, input %s, output %s)", program, self.engine, self.input_name,
                    self.output_name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != np.float32 or not batch.flags.c_contiguous:
            batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._input_dims is not None and batch.shape[1:] != self._input_tail:
            self._check_shape(batch.shape)
        self._input.reshape(batch.shape)
        self._input.copy_from_cpu(batch)
        self.predictor.run()
        return self._output.copy_to_cpu()

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        # The OpenVINO engine only logs a shape error and leaves the previous output in place,
        # so a wrong shape must be refused here rather than answered with stale results.
        dims = self._input_dims or []
        if len(shape) != len(dims) or any(d not in (-1, n) for d, n in zip(dims, shape, strict=True)):
            raise ValueError(
                f"{self.program}: input shape {list(shape)} does not match the model's {dims} "
                "(-1 = any); preprocess to the exported size (model_info.json crop_size) "
                "or export with --img-size"
            )

    def describe(self) -> dict[str, object]:
        opts = self.options
        gpu = opts.use_gpu
        return {
            "runtime_device": f"gpu:{opts.gpu_id}" if gpu else "cpu",
            "cpu_engine": None if gpu else self.engine,
            "model_file": self.program.name,
            "ir_optim": opts.ir_optim,
            "enable_tensorrt": opts.use_tensorrt,
            "enable_mkldnn": bool(self.config.mkldnn_enabled()) and not gpu,
            "enable_openvino": bool(self.config.openvino_engine_enabled()) and not gpu,
            "cpu_math_library_num_threads": opts.threads(),
        }


def variant_options(variant: str, cpu_threads: int = 0) -> InferenceOptions:
    """fp32 CPU options for a named variant of :data:`CPU_VARIANTS`.

    ``default`` is what ``infer.py`` uses without flags; ``openvino``, ``onednn``
    and ``native`` force one engine (see the module docstring).
    """
    base = InferenceOptions(cpu_threads=cpu_threads)
    forced = {
        "default": {},
        "openvino": {"enable_mkldnn": True, "use_openvino": True},
        "onednn": {"enable_mkldnn": True, "use_openvino": False},
        "native": {"enable_mkldnn": False, "use_openvino": False},
    }
    if variant not in forced:
        raise ValueError(f"variant must be one of {', '.join(CPU_VARIANTS)}, got {variant!r}")
    return replace(base, **forced[variant])


def create_cpu_predictor(model_dir: str | Path, variant: str = "default", cpu_threads: int = 0) -> PaddlePredictor:
    """A fp32 CPU :class:`PaddlePredictor` for one of :data:`CPU_VARIANTS`.

    ``cpu_threads=0`` means every available core. Raises
    :class:`deploy.options.UnsupportedConfig` when ``variant="openvino"`` but the
    model directory has no ``inference.pdmodel`` (re-export with
    ``tools/export_model.py``). ``predictor.engine`` names the engine in use.
    """
    options = variant_options(variant, cpu_threads)
    if variant in CPU_ENGINES and select_cpu_engine(options, model_dir) != variant:
        raise UnsupportedConfig(
            f"{model_dir}: the {variant} engine cannot run this model "
            f"(OpenVINO needs a float model with {MODEL_PREFIX}.pdmodel; re-export with tools/export_model.py)"
        )
    return PaddlePredictor(model_dir, options)
