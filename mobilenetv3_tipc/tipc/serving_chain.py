"""Serving: (export) -> start the server -> wait ready -> pipeline client -> check -> stop.

Reads this project's layout (``--opt op.imagenet.local_service_conf.model_config``) and
upstream's (``--dirname`` model folder, ``serving_dir`` as the working folder of
``web_service``/``pipline``, devices from ``--opt ...devices:"0"|null`` or PaddleClas's
``--use_gpu:0|null``). The served predictions (client + check) are the defining step.

Backends: :data:`BACKENDS` maps ``serving_backend:`` (config) or ``TIPC_SERVING_BACKEND``
to a class that builds the server command and URLs; ``ours`` is this project's service.
A second backend (real Paddle Serving) adds its class here and nothing else changes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.tipc.chain import Context, defining_check, render_flag
from mobilenetv3_tipc.tipc.config import alternatives, is_null, unquote
from mobilenetv3_tipc.tipc.runner import Run

MODES = ("serving_infer",)
OPT_PREFIX = "--opt "
DEVICES_OPT = "op.imagenet.local_service_conf.devices"
MODEL_OPT = "op.imagenet.local_service_conf.model_config"
SERVER_CONTROL = ["-m", "mobilenetv3_tipc.serving.process"]  # the one server-process control module
KEYS = frozenset({"model_name", "python", "trans_model", "serving_dir", "web_service", "pipeline", "check", "export",
                  "ready_timeout", "inference_model_url", "serving_backend", "null"})
FLAGS = frozenset({"dirname", "model_filename", "params_filename", "serving_server", "serving_client", "image_dir",
                   "img_path", "save_inference_dir", "pretrained", "use_gpu"})
STOP_TIMEOUT = 20


@dataclass
class OwnService:
    """This project's service (deploy/serving_python/web_service.py, FastAPI + uvicorn)."""

    name = "ours"
    service = "imagenet"

    def server_argv(self, base: list[str], opts: list[str], model_dir: Path, devices: str, port: int) -> list[str]:
        # --watch-parent: the server shuts down when this engine is gone, however it died
        return [*base, *opts, "--opt", f"{MODEL_OPT}={model_dir}", "--opt", f"http_port={port}",
                "--opt", f"{DEVICES_OPT}={devices}", "--watch-parent", str(os.getpid())]

    def health_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/health"

    def prediction_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/{self.service}/prediction"

    def convert_note(self) -> str:
        return "this service loads the exported model folder (--dirname) directly; no conversion step"


BACKENDS = {"ours": OwnService}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServingChain:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = self.cfg = ctx.cfg
        cfg.require_section("serving_params", "the serving chain reads its keys there")
        for e in cfg.entries:
            if e.key.startswith(OPT_PREFIX):
                continue
            if e.is_flag and e.name not in FLAGS or not e.is_flag and e.key not in KEYS and e.name not in KEYS:
                raise cfg.error(e, f"{e.key} is not supported: the harness does not know this key")
        backend = cfg.get("serving_backend") or os.environ.get("TIPC_SERVING_BACKEND") or "ours"
        if backend not in BACKENDS:
            raise cfg.error(cfg.entry("serving_backend"), f"serving_backend '{backend}' is not one of "
                                                          f"{', '.join(BACKENDS)}")
        self.backend = BACKENDS[backend]()
        serving_dir = cfg.entry("serving_dir")
        self.serving_dir = (ctx.root / serving_dir.value).resolve() if serving_dir else ctx.root
        if not self.serving_dir.is_dir():
            raise cfg.error(serving_dir, f"serving_dir {serving_dir.value} is not a folder of this repository")
        self.opts: list[str] = []
        self.devices = [""]
        model_value = ""
        for e in cfg.entries:
            if not e.key.startswith(OPT_PREFIX):
                continue
            name = e.key[len(OPT_PREFIX):].strip()
            if name == DEVICES_OPT:
                self.devices = [unquote(v) for v in alternatives(e.value)] or [""]
            elif "|" in e.value:
                raise cfg.error(e, f"{e.key} lists alternatives; only {DEVICES_OPT} may")
            elif name == MODEL_OPT:
                model_value = unquote(e.value)
            else:
                self.opts += ["--opt", f"{name}={unquote(e.value)}"]
        use_gpu = cfg.find("use_gpu", "serving_params", flag=True)
        if use_gpu is not None:  # PaddleClas: --use_gpu:0|null, "0" = GPU 0, null = CPU
            self.devices = ["" if is_null(v) else unquote(v) for v in use_gpu.value.split("|")]
        for devices in self.devices:
            if devices and not all(part.isdigit() for part in devices.split(",")):
                raise cfg.error(cfg.find("use_gpu") or None, f"devices '{devices}': \"\" (CPU) or card ids like 0,1")
        dirname = cfg.find("dirname", flag=True)
        model_value = model_value or (dirname.value if dirname is not None else "")
        if not model_value:
            raise cfg.error(None, f"missing key '--dirname' or '--opt {MODEL_OPT}' (the exported model folder)")
        self.model_dir = (ctx.root / model_value).resolve()
        web = cfg.require("web_service", "the server command")
        self.web_argv = ctx.command(web, base=self.serving_dir)
        self.pipeline_argv = self.command("pipeline", "deploy/serving_python/pipeline_http_client.py")
        self.check_argv = self.command("check", "deploy/serving_python/check_responses.py")
        image = cfg.find("image_dir", flag=True)
        self.image_dir = image.value if image is not None else str(ctx.root / "lite_data/val")
        ready = cfg.get("ready_timeout", "180") or "180"
        if not ready.isdigit():
            raise cfg.error(cfg.entry("ready_timeout"), "ready_timeout must be whole seconds")
        self.ready_timeout = ready
        self.trans = cfg.entry("trans_model")
        self.export = cfg.entry("export")

    def command(self, key: str, default: str) -> list[str]:
        entry = self.cfg.find(key)
        if entry is None or is_null(entry.value):
            return [*self.ctx.python, str(self.ctx.root / default)]
        return self.ctx.command(entry, base=self.serving_dir)

    def __call__(self, ctx: Context, run: Run) -> None:
        if self.trans is not None and not is_null(self.trans.value):
            run.skip(f"{self.trans.value} (trans_model)", self.backend.convert_note(), group="convert")
        if not self.ensure_model(run):
            run.skip("serving", f"no inference model in {self.model_dir}", group="serve")
        else:
            for devices in self.devices:
                self.variant(run, devices)
        defining_check(run, "serve", "served predictions")

    def ensure_model(self, run: Run) -> bool:
        if (self.model_dir / "inference.json").is_file() or (self.model_dir / "inference.pdmodel").is_file():
            print(f"inference model found in {self.model_dir}: no export needed", flush=True)
            return True
        weights = self.cfg.find("pretrained", flag=True)
        if self.export is None or is_null(self.export.value) or weights is None or not Path(weights.value).is_file():
            run.fail(f"export {self.model_dir}", f"no inference model in {self.model_dir} and no weights to export: "
                                                f"run bash test_tipc/prepare.sh {self.cfg.path} serving_infer",
                     group="export")
            return False
        argv = self.ctx.command(self.export) + render_flag("--pretrained", weights.value) + render_flag(
            "--save-inference-dir", str(self.model_dir))
        return run.step(argv, self.ctx.log("export"), group="export").status == "passed"

    def variant(self, run: Run, devices: str) -> None:
        label = "cpu" if not devices else "gpu" + devices.replace(",", "_")
        port = free_port()
        server_log = self.ctx.log(f"server_{label}").resolve()
        jsonl = (self.ctx.out_dir / f"client_{label}.jsonl").resolve()
        jsonl.unlink(missing_ok=True)
        argv = self.backend.server_argv(self.web_argv, self.opts, self.model_dir, devices, port)
        proc = run.start_background(argv, server_log, cwd=self.serving_dir)
        print(f"started the {label} server: pid {proc.pid}, port {port}, log {server_log}", flush=True)
        try:
            ready = run.step([*self.ctx.python, *SERVER_CONTROL, "wait-ready", "--pid", str(proc.pid), "--url",
                              self.backend.health_url(port), "--server-log", str(server_log),
                              "--timeout", self.ready_timeout], self.ctx.log(f"server_{label}_ready"), group="ready")
            if ready.status != "passed":
                why = (f"the {label} server cannot run on this machine ({ready.reason})" if ready.hardware
                       else f"the {label} server did not become ready (see {server_log})")
                for what in (f"pipeline client ({label})", f"compare with Paddle Inference ({label})"):
                    run.skip(what, why, group="serve", hardware=ready.hardware)
                return
            client = [*self.pipeline_argv, "--image_dir", self.image_dir, "--url", self.backend.prediction_url(port),
                      "--output", str(jsonl)]
            run.step(client, self.ctx.log(f"client_{label}").resolve(), group="serve", cwd=self.serving_dir)
            run.step([*self.check_argv, "--responses", str(jsonl), "--model-dir", str(self.model_dir)],
                     self.ctx.log(f"check_{label}").resolve(), group="serve", cwd=self.serving_dir)
            run.step([*self.ctx.python, *SERVER_CONTROL, "stop", "--pid", str(proc.pid), "--server-log",
                      str(server_log), "--timeout", str(STOP_TIMEOUT)], self.ctx.log(f"server_{label}_stop"),
                     group="stop")
        finally:
            run.stop_background(proc)

