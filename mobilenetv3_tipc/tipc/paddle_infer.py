"""The Paddle Inference step of the train, whole_infer, PACT and PTQ chains: one matrix run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.inference.engine import cpu_bfloat16
from mobilenetv3_tipc.tipc.chain import Context, cuda_available, render_flag
from mobilenetv3_tipc.tipc.config import Entry, is_null, mode_value
from mobilenetv3_tipc.tipc.matrix import AXES, Matrix
from mobilenetv3_tipc.tipc.runner import Run, quote_command

# infer_params keys that are not flags of the inference command
INFER_SECTION_KEYS = frozenset({
    "inference", "null", "norm_export", "quant_export", "fpgm_export", "distill_export", "kl_quant", "export1",
    "export2", "pretrained_model_url", "pretrained_model_sha256", "inference_model_url", "train_model",
    "infer_model", "infer_export", "infer_quant", "ptq_float_model",
})
# flags of the inference section the harness sets or passes through
ROLE_FLAGS = frozenset({"save_inference_dir", "pretrained", "model_dir", "img_path", "benchmark", "save_log_path"})
PASS_FLAGS = frozenset({"warmup", "topk", "gpu_id", "ir_optim", "resize_size", "crop_size"})


def check_infer_section(ctx: Context, section: str, extra_keys: frozenset[str] = frozenset()) -> None:
    """Every key of SECTION is understood, or a FILE:LINE error."""
    for e in ctx.cfg.in_section(section):
        if e.is_flag:
            if e.name not in AXES and e.name not in ROLE_FLAGS and e.name not in PASS_FLAGS:
                raise ctx.cfg.unsupported(e, "the inference step takes "
                                           f"{', '.join(sorted({*AXES, *PASS_FLAGS, 'img_path', 'benchmark'}))}")
        elif not (e.key in INFER_SECTION_KEYS or e.key in extra_keys or e.key.endswith("_export")
                  or e.key.startswith("Global.")):
            raise ctx.cfg.unsupported(e, f"no step reads it in {section} (keys: "
                                          f"{', '.join(sorted(INFER_SECTION_KEYS | extra_keys))}, *_export, Global.*)")


@dataclass
class InferencePlan:
    command: list[str]
    matrix: Matrix
    model_dir_key: str
    fixed: list[str]

    @classmethod
    def from_config(cls, ctx: Context, section: str, entry: Entry) -> InferencePlan:
        cfg = ctx.cfg
        fixed: list[str] = []
        model_dir_key = "--model-dir"
        for e in cfg.in_section(section):
            if not e.is_flag or e.name in AXES:
                continue
            if e.name == "model_dir":
                model_dir_key = e.key
            elif e.name in ("img_path", "benchmark") or e.name in PASS_FLAGS:
                fixed += render_flag(e.key, mode_value(e.value, ctx.mode))
        return cls(ctx.command(entry), Matrix.from_config(cfg, section, ctx.mode), model_dir_key, fixed)

    def run(self, ctx: Context, run: Run, model_dir: Path | str, prefix: str, quant: bool, group: str = "inference",
            gpu_env: dict[str, str] | None = None) -> None:
        needs_cuda = any(c.device == "gpu" for c in self.matrix.cells(quant, True))
        cuda = cuda_available(ctx.python) if needs_cuda else False
        for cell in self.matrix.cells(quant, cuda, cpu_bfloat16()):
            argv = list(self.command)
            for key, value in cell.flags:
                argv += render_flag(key, value)
            argv += render_flag(self.model_dir_key, str(model_dir)) + self.fixed
            if cell.device == "gpu" and gpu_env:
                argv = ["env", *(f"{k}={v}" for k, v in gpu_env.items()), *argv]
            if cell.skip:
                run.skip(quote_command(argv), cell.skip, group=group, hardware=cell.hardware)
            else:
                run.step(argv, ctx.log(f"{prefix}_{cell.label()}"), group=group)


def infer_entry(ctx: Context, section: str | None = None) -> Entry | None:
    """The ``inference:`` line (None when absent or null)."""
    e = ctx.cfg.find("inference", section)
    return None if e is None or is_null(e.value) else e


def weights_name(value: str) -> str:
    return value if value.endswith(".pdparams") else f"{value}.pdparams"

