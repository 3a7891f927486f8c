"""Paddle2ONNX: paddle2onnx -> ONNX check -> ONNX Runtime inference -> agreement gate.

Reads this project's layout (``paddle2onnx_params``, ``onnx_check_params``,
``infer_params``, ``agreement_params``) and upstream's, where the ``inference`` line and
its flags sit in ``paddle2onnx_params`` beside the conversion flags (Step6, PaddleClas).
The inference always runs the ONNX file the conversion wrote (``--save_file``), as
upstream, whatever ``--onnx_file`` says. ONNX Runtime inference is the defining step.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.tipc.chain import Context, defining_check, render_flag
from mobilenetv3_tipc.tipc.config import Entry, alternatives, is_null, mode_value, parse_bool
from mobilenetv3_tipc.tipc.runner import Run, quote_command

MODES = ("paddle2onnx_infer",)
CONVERT = "paddle2onnx_params"
CONVERT_FLAGS = frozenset({"model_dir", "model_filename", "params_filename", "save_file", "opset_version",
                           "enable_onnx_checker", "enable_auto_update_opset", "enable_dev_version", "deploy_backend",
                           "enable_optimize"})
INFER_FLAGS = frozenset({"onnx_file", "img_path", "use_gpu", "batch_size", "cpu_threads", "benchmark", "warmup", "topk",
                         "resize_size", "crop_size"})
KEYS = frozenset({"model_name", "python", "2onnx", "inference", "inference_model_url", "onnx_check", "agreement",
                  "null"})
SECTIONS = (CONVERT, "onnx_check_params", "infer_params", "agreement_params")


class OnnxChain:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = self.cfg = ctx.cfg
        self.infer_section = "infer_params" if "infer_params" in cfg.sections else CONVERT
        for e in cfg.entries:
            if e.section not in SECTIONS:
                raise cfg.error(e, f"{e.key}: section '{e.section}' is not read by this chain")
            if not e.is_flag and e.key not in KEYS:
                raise cfg.unsupported(e, f"the paddle2onnx chain reads only {', '.join(sorted(KEYS))} and --flags")
            if e.is_flag and e.section == CONVERT and e.name not in CONVERT_FLAGS | INFER_FLAGS:
                raise cfg.unsupported(e, "not a paddle2onnx or deploy/onnx_python/infer.py flag")
            if e.is_flag and e.section == "infer_params" and e.name not in INFER_FLAGS:
                raise cfg.unsupported(e, "deploy/onnx_python/infer.py takes "
                                       f"{', '.join(sorted(INFER_FLAGS))}")
        convert = cfg.require("2onnx", "the conversion command", CONVERT)
        self.model_dir = self.value("model_dir", CONVERT) or ""
        self.save_file = self.value("save_file", CONVERT) or ""
        if not self.model_dir or not self.save_file:
            raise cfg.error(convert, "--model_dir and --save_file need values")
        self.model_file = self.value("model_filename", CONVERT) or layout.PIR_PROGRAM
        self.opset = self.value("opset_version", CONVERT) or ""
        self.convert_argv = self.convert_command(convert)
        infer = cfg.find("inference")
        if infer is None or is_null(infer.value):
            raise cfg.error(infer, "no ONNX inference step (inference is null or absent): the chain would certify "
                                   "a conversion nobody ran")
        self.infer_argv = ctx.command(infer)
        onnx_file = cfg.find("onnx_file", self.infer_section, flag=True)
        if onnx_file is not None and not is_null(onnx_file.value) and Path(onnx_file.value) != Path(self.save_file):
            print(f"{cfg.where(onnx_file)}: {onnx_file.key} '{onnx_file.value}' ignored: the inference runs the "
                  f"converted {self.save_file} (as upstream)", flush=True)
        self.check_argv = self.section_command("onnx_check", "onnx_check_params")
        self.agree_argv = self.section_command("agreement", "agreement_params")

    def value(self, name: str, section: str) -> str | None:
        e = self.cfg.find(name, section, flag=True)
        return mode_value(e.value, self.ctx.mode) if e is not None else None

    def convert_command(self, entry: Entry) -> list[str]:
        words = entry.value.split()
        if words and words[0] == "paddle2onnx" and shutil.which("paddle2onnx") is None:
            argv = [*self.ctx.python, "-m", "paddle2onnx.command", *words[1:]]
        else:
            argv = self.ctx.command(entry)
        for e in self.cfg.in_section(CONVERT):
            if e.is_flag and e.name in CONVERT_FLAGS:
                argv += render_flag(e.key, mode_value(e.value, self.ctx.mode))
        return argv

    def section_command(self, key: str, section: str) -> list[str] | None:
        entry = self.cfg.entry(key, section)
        if entry is None or is_null(entry.value):
            return None
        argv = self.ctx.command(entry)
        derived = {"onnx_file": self.save_file, "model_dir": self.model_dir, "expect_opset": self.opset}
        for e in self.cfg.in_section(section):
            if not e.is_flag:
                continue
            value = mode_value(e.value, self.ctx.mode)
            if e.name in derived:
                if is_null(value):
                    value = derived[e.name]
                elif Path(value) != Path(derived[e.name]):
                    raise self.cfg.error(e, f"{e.key} is '{value}' but this chain produces '{derived[e.name]}' "
                                            "(leave the value empty or make it equal)")
            argv += render_flag(e.key, value)
        return argv

    def __call__(self, ctx: Context, run: Run) -> None:
        program = Path(self.model_dir) / self.model_file
        if not program.is_file():
            run.fail(quote_command(self.convert_argv), f"{program} not found: run bash test_tipc/prepare.sh "
                                                      f"{self.cfg.path} paddle2onnx_infer", group="convert")
            ok = False
        else:
            Path(self.save_file).unlink(missing_ok=True)
            ok = run.step(self.convert_argv, ctx.log("trans_model"), group="convert").status == "passed"
        if not ok:
            for what in ("ONNX model check", "ONNX Runtime inference", "agreement gate"):
                run.skip(what, "no ONNX model: the paddle2onnx step failed", group="after_convert")
            return
        if self.check_argv is None:
            run.skip("ONNX model check", f"no onnx_check line in {self.cfg.path}", group="check")
        else:
            run.step(self.check_argv, ctx.log("check_onnx"), group="check")
        self.inference(run)
        defining_check(run, "inference", "ONNX Runtime inference")
        if self.agree_argv is None:
            run.skip("agreement gate", f"no agreement line in {self.cfg.path}", group="agreement")
        else:
            run.step(self.agree_argv, ctx.log("agreement"), group="agreement")

    def inference(self, run: Run) -> None:
        section = self.infer_section
        base = self.infer_argv + render_flag("--onnx_file", self.save_file)
        gpu_key, batch_key = "--use_gpu", "--batch_size"
        gpus, batches = ["False"], ["1"]
        for e in self.cfg.in_section(section):
            if not e.is_flag or e.name not in INFER_FLAGS or e.name == "onnx_file":
                continue
            value = mode_value(e.value, self.ctx.mode)
            if e.name == "use_gpu":
                gpu_key, gpus = e.key, alternatives(value) or gpus
                for item in gpus:
                    parse_bool(item, self.cfg.where(e), e.key)
            elif e.name == "batch_size":
                batch_key, batches = e.key, alternatives(value) or batches
            else:
                base += render_flag(e.key, value)
        for gpu in gpus:
            device = "gpu" if parse_bool(gpu) else "cpu"
            for batch in batches:
                argv = base + render_flag(gpu_key, gpu) + render_flag(batch_key, batch)
                run.step(argv, self.ctx.log(f"paddle2onnx_infer_{device}_batchsize_{batch}"), group="inference")
