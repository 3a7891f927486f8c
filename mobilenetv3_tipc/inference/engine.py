"""Which Paddle Inference engine runs a model: one pure function of flags, files and hardware.

Engines (fp32 model-only latency measured on a 2-core AVX2 machine; the benchmark reports the
current figures):

* ``openvino``: Paddle Inference's bundled OpenVINO engine, CPU fp32 only. It reads only the
  legacy ``inference.pdmodel`` program that ``tools/export_model.py`` writes beside
  ``inference.json``, and it is the fastest CPU path for this model. One engine with N threads:
  splitting a batch over N one-thread engines side by side was measured slower, because
  ``predictor.run`` holds the Python GIL, so the engines take turns;
* ``onednn``: oneDNN kernels on the PIR ``.json`` program (int8 and bfloat16 always use it);
* ``native``: Paddle's plain CPU kernels;
* ``gpu`` / ``tensorrt``: CUDA, optionally with TensorRT subgraphs.

Flags keep upstream's meaning: ``enable_mkldnn=True`` is oneDNN on, ``False`` is off.
``use_openvino`` is its own choice: ``True``, ``False`` or ``None`` (auto). Auto picks OpenVINO
only where nothing explicit says otherwise: CPU fp32, a float model with its legacy program,
IR optimisation on (the engine is an IR pass) and ``enable_mkldnn`` not given. An explicitly
given flag is never overridden by auto.

:func:`select_engine` raises :class:`~mobilenetv3_tipc.cli.UnsupportedConfig` (exit 77) when
the hardware lacks what the flags need (CUDA, bfloat16), and
:class:`~mobilenetv3_tipc.cli.UsageError` (exit 2) for a combination no machine runs (int8 on
a float model, a quantized model in float precision, OpenVINO without its program).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.cli import UnsupportedConfig, UsageError
from mobilenetv3_tipc.export import layout

PRECISIONS = ("fp32", "fp16", "int8")
CPU_ENGINES = ("openvino", "onednn", "native")


@dataclass(frozen=True)
class EngineRequest:
    """What the caller asked for; ``None`` means "not given" (auto)."""

    use_gpu: bool = False
    use_tensorrt: bool = False
    enable_mkldnn: bool | None = None
    use_openvino: bool | None = None
    precision: str = "fp32"
    ir_optim: bool = True


@dataclass(frozen=True)
class ModelFiles:
    """What the model folder holds."""

    pir_program: bool
    legacy_program: bool
    quantized: bool

    @classmethod
    def of(cls, model_dir: str | Path) -> ModelFiles:
        root = Path(model_dir)
        return cls(pir_program=(root / layout.PIR_PROGRAM).is_file(),
                   legacy_program=layout.legacy_program(root) is not None,
                   quantized=layout.is_quantized_model(root))


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    bfloat16: bool
    cpu_threads: int

    @classmethod
    def detect(cls, cpu_threads: int = 0) -> Hardware:
        from mobilenetv3_tipc.hardware import available_cpus, cuda_available

        return cls(cuda=cuda_available(), bfloat16=cpu_bfloat16(),
                   cpu_threads=cpu_threads if cpu_threads > 0 else available_cpus())


def cpu_bfloat16() -> bool:
    """Whether this CPU has the bfloat16 instructions oneDNN's reduced precision needs (no Paddle import)."""
    from mobilenetv3_tipc.hardware import cpu_has_flag

    return cpu_has_flag("avx512_bf16") or cpu_has_flag("amx_bf16")


@dataclass(frozen=True)
class EngineChoice:
    name: str  # one of CPU_ENGINES, "gpu" or "tensorrt"
    program: str  # the program file name to load
    precision: str
    threads: int
    note: str = ""  # why auto chose what it chose, when it matters

    def settings(self) -> str:
        return f"precision={self.precision}, threads={self.threads}, program={self.program}"


def format_engine_line(name: str, settings: str) -> str:
    """The one line every inference run prints: ``inference engine: <name> (<settings>)``."""
    return f"inference engine: {name} ({settings})"


def _check_precision(request: EngineRequest, files: ModelFiles) -> None:
    if request.precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {request.precision!r}")
    if request.precision == "int8" and not files.quantized:
        raise UsageError("int8 needs a quantized model (deploy/ptq_python/post_quant.py or train.py --pact_quant)")
    if files.quantized and request.precision != "int8":
        raise UsageError("a quantized model runs only with --precision int8")


def _select_gpu(request: EngineRequest, files: ModelFiles, hardware: Hardware) -> EngineChoice:
    if not hardware.cuda:
        what = "TensorRT" if request.use_tensorrt else "GPU inference"
        raise UnsupportedConfig(f"{what} needs CUDA; this Paddle build or machine has no GPU")
    if not request.use_gpu:
        raise UsageError("TensorRT needs --use-gpu")
    if request.precision != "fp32" and not request.use_tensorrt:
        raise UsageError(f"{request.precision} on GPU needs TensorRT (--use-tensorrt)")
    program = layout.PIR_PROGRAM if files.pir_program else layout.LEGACY_PROGRAM
    return EngineChoice("tensorrt" if request.use_tensorrt else "gpu", program, request.precision, 0)


def _select_cpu(request: EngineRequest, files: ModelFiles, hardware: Hardware) -> EngineChoice:
    default_program = layout.PIR_PROGRAM if files.pir_program else layout.LEGACY_PROGRAM
    openvino_fits = request.precision == "fp32" and not files.quantized and request.ir_optim
    if request.use_openvino:
        if request.enable_mkldnn:
            raise UsageError("--use-openvino True and --enable-mkldnn True exclude each other "
                             "(OpenVINO runs the whole program); give one of them")
        if not openvino_fits:
            raise UsageError("OpenVINO runs fp32 float models with --ir-optim True only")
        if not files.legacy_program:
            raise UsageError(f"OpenVINO needs a float model with {layout.LEGACY_PROGRAM}; "
                             "re-export with tools/export_model.py")
        return EngineChoice("openvino", layout.LEGACY_PROGRAM, "fp32", hardware.cpu_threads)
    if request.use_openvino is None and request.enable_mkldnn is None and openvino_fits:
        if files.legacy_program:
            return EngineChoice("openvino", layout.LEGACY_PROGRAM, "fp32", hardware.cpu_threads,
                                note="auto: the legacy program is present")
        note = f"auto: no {layout.LEGACY_PROGRAM}, so not OpenVINO (re-export with tools/export_model.py)"
    else:
        note = ""
    onednn = request.enable_mkldnn is not False
    if request.precision != "fp32":
        if not onednn:
            raise UsageError(f"{request.precision} on CPU needs oneDNN (--enable-mkldnn True)")
        if request.precision == "fp16" and not hardware.bfloat16:
            raise UnsupportedConfig("reduced precision on CPU needs avx512_bf16 or AMX; this CPU has neither")
    name = "onednn" if onednn else "native"
    return EngineChoice(name, default_program, request.precision, hardware.cpu_threads, note=note)


def select_engine(request: EngineRequest, files: ModelFiles, hardware: Hardware) -> EngineChoice:
    """The engine and its settings for ``request`` on a model with ``files`` on ``hardware``."""
    if request.use_gpu or request.use_tensorrt:
        choice = _select_gpu(request, files, hardware)
        _check_precision(request, files)
        return choice
    _check_precision(request, files)
    return _select_cpu(request, files, hardware)
