"""Post-training quantization: legacy float export -> calibration -> int8 inference matrix -> gate.

Reads this project's layout (``ptq_params`` with ``quant_post``), Step6's (``trainer:PTQ`` +
``PTQ:deploy/ptq_python/post_quant.py``, ``--model_path``/``--output_dir``/``--data_dir``),
and a train-layout config in mode ``klquant_whole_infer`` (or with ``kl_quant``): PTQ with
KL calibration (``--algo=KL``) of its ``train_model``. The int8 inference is the defining
step: when none of its cells ran for a reason other than missing hardware, the chain is red.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.tipc.chain import Context, defining_check, render_flag, safe_name
from mobilenetv3_tipc.tipc.config import Entry, is_null, mode_value
from mobilenetv3_tipc.tipc.paddle_infer import InferencePlan, check_infer_section, infer_entry
from mobilenetv3_tipc.tipc.runner import Run, quote_command

MODES = ("whole_infer", "klquant_whole_infer")
# ptq_params flags post_quant.py takes (canonical names); model_dir/output_dir are set by the chain
PTQ_FLAGS = frozenset({"model_dir", "model_path", "output_dir", "data_dir", "batch_size", "batch_num", "algo",
                       "hist_percent", "use_gpu"})
PTQ_KEYS = frozenset({"model_name", "python", "train_model", "gpu_list", "trainer", "norm_train", "eval", "norm_export",
                      "infer_model", "infer_export", "infer_quant", "ptq_export", "ptq_float_model", "quant_post",
                      "kl_quant", "null", "pretrained_model_url", "pretrained_model_sha256"})
DEFAULT_PTQ = "deploy/ptq_python/post_quant.py"


class PtqChain:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = self.cfg = ctx.cfg
        model = ctx.model
        self.train_layout = "ptq_params" not in cfg.sections
        self.kl = ctx.mode == "klquant_whole_infer"
        section = None if self.train_layout else "ptq_params"
        self.section = section
        if not self.train_layout:
            trainers = [cfg.get("trainer", "", "ptq_params") or ""]
            for e in cfg.in_section("ptq_params"):
                if e.is_flag and e.name not in PTQ_FLAGS:
                    raise cfg.unsupported(e, "post_quant.py takes "
                                       f"{', '.join(sorted(PTQ_FLAGS))}")
                if not e.is_flag and e.key not in PTQ_KEYS and e.key not in trainers:
                    raise cfg.unsupported(e, f"no step reads it in ptq_params (keys: {', '.join(sorted(PTQ_KEYS))})")
        cfg.require_section("infer_params", "the int8 inference is configured there")
        check_infer_section(ctx, "infer_params")
        self.weights = cfg.get("train_model", "") or f"./pretrain_models/{model}_pretrained.pdparams"
        # the PTQ command
        quant = self.quant_entry()
        self.quant_argv = ctx.command(quant) if quant is not None else [*ctx.python, DEFAULT_PTQ]
        self.kl = self.kl or (quant is not None and quant.key == "kl_quant")
        # the float model to quantize
        model_path = cfg.find("model_path", section, flag=True) if section else None
        given = model_path.value if model_path is not None and not is_null(model_path.value) else ""
        float_dir = cfg.get("ptq_float_model") or given
        self.float_dir = float_dir or str(ctx.out_dir / f"{safe_name(model)}_float_legacy")
        export = cfg.entry("ptq_export")
        self.export_argv: list[str] | None = None
        if export is not None and not is_null(export.value):
            self.export_argv = ctx.command(export)
        elif export is None and not (given and Path(self.float_dir, layout.LEGACY_PROGRAM).is_file()):
            # Step6 names a model folder (--model_path); it is used as is when it holds a legacy program
            self.export_argv = [*ctx.python, "tools/export_model.py", "--model", model, "--legacy-format"]
        # the int8 model
        out = cfg.find("output_dir", section, flag=True) if section else None
        out_value = mode_value(out.value, ctx.mode) if out is not None else ""
        self.int8_dir = out_value if not is_null(out_value) else str(ctx.out_dir / f"{safe_name(model)}_int8")
        if Path(self.int8_dir).resolve() == Path(self.float_dir).resolve():
            raise cfg.error(out, "--output-dir must differ from the float model it quantizes")
        entry = infer_entry(ctx, "infer_params")
        if entry is None:
            raise cfg.error(cfg.find("inference", "infer_params"),
                            "inference is null or absent: a PTQ chain without int8 inference certifies nothing")
        self.infer = InferencePlan.from_config(ctx, "infer_params", entry)
        md = cfg.find("model_dir", "infer_params", flag=True)
        if (not self.train_layout and md is not None and not is_null(md.value)
                and Path(md.value).resolve() != Path(self.int8_dir).resolve()):
            raise cfg.error(md, f"{md.key} is '{md.value}' but this chain's int8 model is '{self.int8_dir}' "
                                "(leave the value empty or make it equal)")
        compare = cfg.entry("compare", "compare_params")
        self.compare_argv = ctx.command(compare) if compare is not None and not is_null(compare.value) else None

    def quant_entry(self) -> Entry | None:
        cfg = self.cfg
        for key in ("quant_post", "kl_quant"):
            e = cfg.entry(key)
            if e is not None and not is_null(e.value):
                return e
        trainer = cfg.get("trainer", "", self.section) if self.section else ""
        if trainer:
            e = cfg.entry(trainer, self.section)
            if e is not None and not is_null(e.value):
                return e
        return None

    def ptq_flags(self) -> list[str]:
        flags = render_flag("--model-dir", self.float_dir)
        seen = {"model_dir"}
        if self.section:
            for e in self.cfg.in_section(self.section):
                if not e.is_flag or e.name in ("model_dir", "model_path"):
                    continue
                value = mode_value(e.value, self.ctx.mode)
                if e.name == "output_dir":
                    value = self.int8_dir
                if e.name == "algo" and self.kl:
                    value = "KL"
                seen.add(e.name)
                flags += render_flag(e.key, value)
        defaults = {"output_dir": ("--output-dir", self.int8_dir), "data_dir": ("--data-dir", "./lite_data/train"),
                    "batch_size": ("--batch-size", "4"), "batch_num": ("--batch-num", "4")}
        if self.kl:
            defaults["algo"] = ("--algo", "KL")
        for name, (key, value) in defaults.items():
            if name not in seen:
                flags += render_flag(key, value)
        return flags

    def __call__(self, ctx: Context, run: Run) -> None:
        why = self.float_export(run) or self.quantize(run)
        if why:
            run.skip("int8 inference", why, group="inference")
            run.skip("float-vs-int8 gate", why, group="compare")
        else:
            self.infer.run(ctx, run, self.int8_dir, "python", quant=True)
            self.compare(run)
        defining_check(run, "inference", "int8 inference")

    def float_export(self, run: Run) -> str:
        if self.export_argv is None:
            run.skip("legacy float export", f"using {self.float_dir} as is", group="export")
            found = Path(self.float_dir, layout.LEGACY_PROGRAM).is_file()
            return "" if found else f"no legacy program in {self.float_dir}"
        argv = self.export_argv + render_flag("--pretrained", self.weights) + render_flag(
            "--save-inference-dir", self.float_dir)
        if not Path(self.weights).is_file():
            run.fail(quote_command(argv), f"{self.weights} not found: run bash test_tipc/prepare.sh "
                                          f"{self.cfg.path} {self.ctx.mode}", group="export")
            return "no legacy float model: the export step failed"
        step = run.step(argv, self.ctx.log("ptq_float_export"), group="export")
        return "" if step.status == "passed" else "no legacy float model: the export step failed"

    def quantize(self, run: Run) -> str:
        shutil.rmtree(self.int8_dir, ignore_errors=True)
        step = run.step(self.quant_argv + self.ptq_flags(), self.ctx.log("ptq"), group="ptq")
        return "" if step.status == "passed" else "no int8 model: the PTQ step failed"

    def compare(self, run: Run) -> None:
        if self.compare_argv is None:
            run.skip("float-vs-int8 gate", f"no compare line in a compare_params section of {self.cfg.path}",
                     group="compare")
            return
        argv = list(self.compare_argv)
        derived = {"float_model_dir": self.float_dir, "int8_model_dir": self.int8_dir}
        for e in self.cfg.in_section("compare_params"):
            if e.is_flag:
                value = mode_value(e.value, self.ctx.mode)
                argv += render_flag(e.key, derived.get(e.name, value) if is_null(value) else value)
        run.step(argv, self.ctx.log("compare_int8"), group="compare")
