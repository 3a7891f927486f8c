"""A Paddle Inference predictor for an exported MobileNetV3 (``inference.json`` + ``.pdiparams``).

Used by ``infer.py``, the serving backend and the agreement gate. Paddle 3.x
facts it respects: a PIR ``.json`` model is loaded with ``Config(json, params)``;
``enable_memory_optim()`` is never called for ``.json`` models (it breaks
``create_predictor``, Paddle issue 75496); the CPU thread count is set
explicitly because Paddle's default is 1. Which engine runs the model is decided
by :func:`mobilenetv3_tipc.inference.engine.select_engine`.

:func:`create_cpu_predictor` builds the default or one named engine (used by the benchmark).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.cli import UnsupportedConfig
from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.export.manifest import check_model_files
from mobilenetv3_tipc.inference.base import Predictor
from mobilenetv3_tipc.inference.engine import (
    CPU_ENGINES,
    EngineChoice,
    EngineRequest,
    Hardware,
    ModelFiles,
    select_engine,
)

logger = logging.getLogger(__name__)

# Named configurations for create_cpu_predictor; "default" is InferenceOptions() itself.
CPU_VARIANTS = ("default", *CPU_ENGINES)


@dataclass(frozen=True)
class InferenceOptions:
    """Predictor options; ``None`` for ``enable_mkldnn`` / ``use_openvino`` means auto (see engine.py)."""

    use_gpu: bool = False
    gpu_id: int = 0
    gpu_mem_mb: int = 500
    enable_mkldnn: bool | None = None
    cpu_threads: int = 0  # 0 = every available core
    use_tensorrt: bool = False
    precision: str = "fp32"
    ir_optim: bool = True
    use_openvino: bool | None = None

    def request(self) -> EngineRequest:
        return EngineRequest(use_gpu=self.use_gpu, use_tensorrt=self.use_tensorrt, enable_mkldnn=self.enable_mkldnn,
                             use_openvino=self.use_openvino, precision=self.precision, ir_optim=self.ir_optim)


def choose_engine(options: InferenceOptions, model_dir: str | Path) -> EngineChoice:
    """:func:`select_engine` for ``options`` on the files of ``model_dir`` and this machine."""
    layout.find_model_files(model_dir)  # a missing folder or program is a FileNotFoundError first
    return select_engine(options.request(), ModelFiles.of(model_dir), Hardware.detect(options.cpu_threads))


class ModelLoadError(RuntimeError):
    """Paddle Inference cannot load a model folder's program with its parameters; names both files."""


def create_paddle_predictor(inference: object, config: object, program: Path, params: Path) -> object:
    """``inference.create_predictor(config)``, its C++ errors restated with the files they concern."""
    try:
        return inference.create_predictor(config)
    except RuntimeError as exc:  # Paddle's (Unavailable)/(InvalidArgument)/... errors are RuntimeErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{program.parent}: Paddle Inference cannot load {program.name} with {params.name} "
                             f"(incomplete, damaged, or from different exports? export the model again): "
                             f"{first}") from exc


class PaddlePredictor(Predictor):
    """``run(batch)`` maps an ``(N, 3, H, W)`` float32 array to the model's ``(N, classes)`` output."""

    def __init__(self, model_dir: str | Path, options: InferenceOptions | None = None) -> None:
        from paddle import inference

        self.options = options or InferenceOptions()
        self.model_dir = Path(model_dir)
        self.choice = choose_engine(self.options, self.model_dir)
        if self.choice.note:
            logger.info("%s: %s", self.model_dir, self.choice.note)
        opts, self.engine = self.options, self.choice.name
        program, params = self.model_dir / self.choice.program, self.model_dir / layout.PARAMS
        check_model_files(self.model_dir, program.name)  # both from one export (model_info.json "files")
        self._input_dims: list[int] | None = None
        if self.engine == "openvino":
            from mobilenetv3_tipc.export.legacy_program import read_input_dims

            self._input_dims = read_input_dims(program)
        # run() compares a batch's (C, H, W) with this first and checks in full only on a mismatch
        self._input_tail = tuple(self._input_dims[1:]) if self._input_dims else ()
        config = self._engine_config(inference, program, params)
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
                self.predictor = create_paddle_predictor(inference, config, program, params)
        else:
            self.predictor = create_paddle_predictor(inference, config, program, params)
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]
        self._input = self.predictor.get_input_handle(self.input_name)
        self._output = self.predictor.get_output_handle(self.output_name)
        logger.info("loaded %s (engine %s, input %s, output %s)", program, self.engine, self.input_name,
                    self.output_name)

    def _engine_config(self, inference: object, program: Path, params: Path) -> object:
        """A ``paddle.inference.Config`` set up for :attr:`engine`."""
        opts = self.options
        config = inference.Config(str(program), str(params))
        if self.engine in ("gpu", "tensorrt"):
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
            config.set_cpu_math_library_num_threads(self.choice.threads)
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
        return config

    def _run(self, batch: np.ndarray) -> np.ndarray:
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

    def engine_settings(self) -> str:
        opts, device = self.options, f"gpu:{self.options.gpu_id}" if self.options.use_gpu else "cpu"
        return f"device={device}, {self.choice.settings()}, ir_optim={opts.ir_optim}"

    def describe(self) -> dict[str, object]:
        opts = self.options
        gpu = opts.use_gpu
        return {
            "inference_engine": self.engine,
            "runtime_device": f"gpu:{opts.gpu_id}" if gpu else "cpu",
            "cpu_engine": None if gpu else self.engine,
            "model_file": self.program.name,
            "ir_optim": opts.ir_optim,
            "enable_tensorrt": opts.use_tensorrt,
            "enable_mkldnn": bool(self.config.mkldnn_enabled()) and not gpu,
            "enable_openvino": bool(self.config.openvino_engine_enabled()) and not gpu,
            "cpu_math_library_num_threads": self.choice.threads,
        }


def variant_options(variant: str, cpu_threads: int = 0) -> InferenceOptions:
    """fp32 CPU options for a named variant of :data:`CPU_VARIANTS`.

    ``default`` is what ``infer.py`` uses without flags (auto); ``openvino``, ``onednn`` and
    ``native`` force one engine.
    """
    forced: dict[str, dict[str, bool]] = {
        "default": {},
        "openvino": {"use_openvino": True},
        "onednn": {"enable_mkldnn": True, "use_openvino": False},
        "native": {"enable_mkldnn": False, "use_openvino": False},
    }
    if variant not in forced:
        raise ValueError(f"variant must be one of {', '.join(CPU_VARIANTS)}, got {variant!r}")
    return replace(InferenceOptions(cpu_threads=cpu_threads), **forced[variant])


def create_cpu_predictor(model_dir: str | Path, variant: str = "default", cpu_threads: int = 0) -> PaddlePredictor:
    """A fp32 CPU :class:`PaddlePredictor` for one of :data:`CPU_VARIANTS`.

    ``cpu_threads=0`` means every available core. Raises :class:`UnsupportedConfig` when
    ``variant="openvino"`` but the model folder has no ``inference.pdmodel`` (re-export with
    ``tools/export_model.py``). ``predictor.engine`` names the engine in use.
    """
    options = variant_options(variant, cpu_threads)
    if variant == "openvino" and layout.legacy_program(model_dir) is None:
        raise UnsupportedConfig(f"{model_dir}: OpenVINO needs a float model with {layout.LEGACY_PROGRAM}; "
                                "re-export with tools/export_model.py")
    return PaddlePredictor(model_dir, options)
