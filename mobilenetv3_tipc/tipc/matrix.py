"""The one inference matrix and its skip rules (Paddle Inference, PTQ, PACT chains).

GPU cells loop ``use_tensorrt x precision x batch_size``; CPU cells loop
``enable_mkldnn x use_openvino x cpu_threads x precision x batch_size`` (upstream order,
plus this project's ``use_openvino`` key). An absent line is not looped and its flag is
not passed (the script's default applies), except that a quantized model with no
precision line runs ``int8`` (Step6/PaddleClas PACT and PTQ configs have no precision
line; their int8 model runs only in int8).

:func:`skip_reason` asks infer.py's engine selection, the only place the skip rules are written;
the one policy of this harness is the int8 default above. Every value is checked when the
matrix is planned (a bad one is a FILE:LINE error before anything runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobilenetv3_tipc.cli import UnsupportedConfig, UsageError, str2bool
from mobilenetv3_tipc.inference.engine import PRECISIONS, EngineRequest, Hardware, ModelFiles, select_engine
from mobilenetv3_tipc.tipc.config import Config, ConfigError, Entry, alternatives, mode_value, norm_key, parse_bool

AXES = ("use_gpu", "use_tensorrt", "precision", "batch_size", "enable_mkldnn", "use_openvino", "cpu_threads")
BOOL_AXES = ("use_gpu", "use_tensorrt", "enable_mkldnn", "use_openvino")
COUNT_AXES = ("batch_size", "cpu_threads")
NO_CUDA = "GPU inference needs CUDA; this Paddle build or machine has no GPU"


@dataclass
class Cell:
    """One inference run: device, the axis values, the flags to pass, and why it is skipped."""

    device: str  # cpu | gpu
    values: dict[str, str]
    flags: list[tuple[str, str]] = field(default_factory=list)
    skip: str = ""
    hardware: bool = False

    def label(self) -> str:
        v = self.values
        if self.device == "gpu":
            return (f"infer_gpu_usetrt_{v.get('use_tensorrt', 'default')}_precision_{v['precision']}"
                    f"_batchsize_{v.get('batch_size', 'default')}")
        text = f"infer_cpu_usemkldnn_{v.get('enable_mkldnn', 'default')}"
        if "use_openvino" in v:
            text += f"_openvino_{v['use_openvino']}"
        return (text + f"_threads_{v.get('cpu_threads', 'default')}_precision_{v['precision']}"
                f"_batchsize_{v.get('batch_size', 'default')}")


def precision_name(key: str, value: str) -> str:
    """fp32/fp16/int8 (PaddleClas writes ``use_fp16:True|False``)."""
    if norm_key(key) == "use_fp16":
        return "fp16" if parse_bool(value, key=key) else "fp32"
    return value.lower() or "fp32"


def skip_reason(cell: Cell, quant: bool, cuda: bool, bfloat16: bool = False) -> tuple[str, bool]:
    """(reason, is-hardware) when the cell must not run, else ("", False).

    The rules are infer.py's own (:func:`mobilenetv3_tipc.inference.engine.select_engine`): a
    missing-hardware refusal (exit 77) is a hardware skip, a combination no machine runs is a
    skip with the engine's reason. The model does not exist yet when the matrix is planned, so
    the folder is taken as ``tools/export_model.py`` writes it (both programs); a folder
    without its legacy program is infer.py's error when the cell runs.
    """
    v = cell.values

    def flag(name: str) -> bool | None:
        return str2bool(v[name]) if name in v else None

    request = EngineRequest(use_gpu=cell.device == "gpu", use_tensorrt=bool(flag("use_tensorrt")),
                            enable_mkldnn=flag("enable_mkldnn"), use_openvino=flag("use_openvino"),
                            precision=v["precision"])
    files = ModelFiles(pir_program=True, legacy_program=True, quantized=quant)
    try:
        select_engine(request, files, Hardware(cuda=cuda, bfloat16=bfloat16, cpu_threads=1))
    except UnsupportedConfig as exc:
        return str(exc), True
    except UsageError as exc:
        return str(exc), False
    return "", False


@dataclass
class Matrix:
    """The axes of an inference section: entry (as written) and alternatives per axis."""

    axes: dict[str, tuple[Entry, list[str]]]

    @classmethod
    def from_config(cls, cfg: Config, section: str, mode: str) -> Matrix:
        axes: dict[str, tuple[Entry, list[str]]] = {}
        for name in AXES:
            entry = cfg.find(name, section, flag=None)
            if entry is None or (name == "use_gpu" and not entry.is_flag and entry.section == "train_params"):
                continue
            values = alternatives(mode_value(entry.value, mode))
            if not values:
                continue
            if name == "precision":
                try:
                    values = [precision_name(entry.key, value) for value in values]
                except ConfigError as exc:
                    raise cfg.error(entry, str(exc).lstrip(": ")) from None
                bad = [value for value in values if value not in PRECISIONS]
                if bad:
                    raise cfg.error(entry, f"{entry.key}: unknown precision {bad[0]!r} ({', '.join(PRECISIONS)})")
            if name in BOOL_AXES:
                for value in values:
                    parse_bool(value, cfg.where(entry), entry.key)
            if name in COUNT_AXES:
                bad = [value for value in values if not (value.isdigit() and int(value) > 0)]
                if bad:
                    raise cfg.error(entry, f"{entry.key}: expected a positive whole number, got {bad[0]!r}")
            axes[name] = (entry, values)
        return cls(axes)

    def cells(self, quant: bool, cuda: bool, bfloat16: bool = False) -> list[Cell]:
        def alts(name: str, default: list[str] | None = None) -> list[str]:
            return self.axes[name][1] if name in self.axes else (default or [""])

        out: list[Cell] = []
        precisions = alts("precision", ["int8"] if quant else ["fp32"])
        for gpu in alts("use_gpu", ["False"]):
            on_gpu = str2bool(gpu)
            loops = (["use_tensorrt", "precision", "batch_size"] if on_gpu
                     else ["enable_mkldnn", "use_openvino", "cpu_threads", "precision", "batch_size"])
            combos: list[dict[str, str]] = [{"use_gpu": gpu} if "use_gpu" in self.axes else {}]
            for name in loops:
                choices = precisions if name == "precision" else alts(name)
                combos = [dict(c, **({name: x} if x else {})) for c in combos for x in choices]
            for values in combos:
                cell = Cell("gpu" if on_gpu else "cpu", values)
                cell.flags = [(self.axes[n][0].key if n in self.axes else "--precision", values[n])
                              for n in ("use_gpu", *loops)
                              if n in values and (n in self.axes or quant)]
                cell.skip, cell.hardware = skip_reason(cell, quant, cuda, bfloat16)
                out.append(cell)
        return out
