"""Serving: (export) -> (convert) -> for each backend: start, wait ready, client, check -> compare -> stop.

Reads this project's layout (``--opt op.imagenet.local_service_conf.model_config``) and
upstream's (``--dirname`` model folder, ``serving_dir`` as the working folder of
``web_service``/``pipline``, devices from ``--opt ...devices:"0"|null`` or PaddleClas's
``--use_gpu:0|null``). The served predictions (client + check) are the defining step.

Backends (:data:`BACKENDS`, chosen by ``serving_backend:a|b`` in the config or
``TIPC_SERVING_BACKEND``; default ``ours``, and ``paddle_serving|ours`` for an upstream
config whose ``trans_model`` is ``paddle_serving_client.convert``):

* ``ours``: this project's service (``web_service.py``, Starlette + uvicorn, Python 3.11);
* ``paddle_serving``: the real Paddle Serving 0.9 pipeline (``paddle_serving_service.py``)
  in its own cached Python 3.9 env (``paddle_serving_env ensure``), serving the
  ``serving_server/`` our converter writes (``tools/export_serving_model.py``, also what an
  upstream ``trans_model:-m paddle_serving_client.convert`` line runs: the real converter
  imports ``paddle.fluid``, which Paddle 2.6 removed). It runs in its own process group with
  the chain's output folder as working folder (``PipelineServingLogs/``, ``ProcessInfo.json``);
  its stop waits until no process of the group and neither port is left.

With both backends the CPU variant also runs the differential step (the same requests to
both servers, up at once) and one gRPC prediction through ``PipelineClient`` on ``rpc_port``.
The real backend's steps are skipped, never passed, when its Python 3.9 env is unavailable
(no interpreter, or no network for the first install); the chain is then green on our
backend alone. Real-backend served steps skipped for any other reason but missing hardware
make the chain red.

Optional Ray Serve step (``serving_ray_replicas:N`` in the config, or ``TIPC_SERVING_RAY_REPLICAS``;
``null``/absent = off): after the other backends stopped, ``ray_serve_app.py`` serves the chain's
model with N replicas on a local Ray (its own process group, a short ``--ray-temp-dir`` under the
output folder), the same client posts the images and the same check compares them with Paddle
Inference; then the app is stopped by its group and no process of its session may be left. When
Ray is not importable the app exits 77 and the Ray steps are skipped with that reason. The Ray
steps are never the chain's defining step (their group is ``ray``, not ``serve``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.tipc.chain import Context, cuda_available, defining_check, render_flag
from mobilenetv3_tipc.tipc.config import alternatives, is_null, unquote
from mobilenetv3_tipc.tipc.results import Step
from mobilenetv3_tipc.tipc.runner import Run

MODES = ("serving_infer",)
OPT_PREFIX = "--opt "
DEVICES_OPT = "op.imagenet.local_service_conf.devices"
MODEL_OPT = "op.imagenet.local_service_conf.model_config"
SERVER_CONTROL = ["-m", "mobilenetv3_tipc.serving.process"]  # the one server-process control module
REAL_CONTROL = ["-m", "mobilenetv3_tipc.serving.paddle_serving_process"]  # + the real server's group and ports
REAL_ENV = ["-m", "mobilenetv3_tipc.serving.paddle_serving_env", "ensure"]
CONVERTER = "tools/export_serving_model.py"
UPSTREAM_CONVERT = "paddle_serving_client.convert"
PROBE_IMAGE = "images/demo.jpg"
KEYS = frozenset({"model_name", "python", "trans_model", "serving_dir", "web_service", "pipeline", "check", "export",
                  "ready_timeout", "inference_model_url", "serving_backend", "serving_ray_replicas", "null"})
FLAGS = frozenset({"dirname", "model_filename", "params_filename", "serving_server", "serving_client", "image_dir",
                   "img_path", "save_inference_dir", "pretrained", "use_gpu"})
STOP_TIMEOUT = 20
REAL_STOP_TIMEOUT = 30
ENV_UNAVAILABLE = "the real Paddle Serving environment is unavailable"
RAY_APP = "deploy/serving_python/ray_serve_app.py"
RAY_REPLICAS_KEY = "serving_ray_replicas"
RAY_REPLICAS_ENV = "TIPC_SERVING_RAY_REPLICAS"
RAY_STOP_TIMEOUT = 60  # Ray Serve's controller shutdown alone may take ~33 s when a daemon is lost
RAY_LEFTOVER_WAIT = 15.0  # Ray's workers exit a few seconds after the driver's ray.shutdown()
# Ray's unix socket paths (TEMP/session_<date>_<pid>/sockets/plasma_store) must stay under ~107
# characters: a temp dir longer than this goes to /tmp instead (named in the log, removed after).
RAY_TEMP_MAX = 40


@dataclass
class OwnService:
    """This project's service (deploy/serving_python/web_service.py, Starlette + uvicorn, Python 3.11)."""

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


@dataclass
class RealPaddleServing:
    """Real Paddle Serving 0.9 (deploy/serving_python/paddle_serving_service.py) in its Python 3.9 env."""

    name = "paddle_serving"
    service = "imagenet"
    python: str = ""  # the env's interpreter, found by the chain's env step

    # The engine imports nothing of the serving package at load time (it plans any config
    # without it); these run only when the real backend does.
    def server_argv(self, model_dir: Path, devices: str, port: int, rpc_port: int) -> list[str]:
        from mobilenetv3_tipc.serving import paddle_serving_process

        return paddle_serving_process.service_command(self.python, model_dir, port, rpc_port,
                                                      opts=[f"{DEVICES_OPT}={devices}"] if devices else [])

    def env(self, root: Path) -> dict[str, str]:
        """The environment of a process run with the env's python: the repository importable."""
        from mobilenetv3_tipc.serving import paddle_serving_env

        return paddle_serving_env.subprocess_env(root)

    def prediction_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/{self.service}/prediction"

    def convert_note(self) -> str:
        return (f"{UPSTREAM_CONVERT} cannot import on Paddle 2.6 (it imports paddle.fluid, removed there); "
                f"{CONVERTER} writes the same serving_server/ + serving_client/ layout from the export instead")


BACKENDS = {"ours": OwnService, "paddle_serving": RealPaddleServing}


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
                raise cfg.unsupported(e, "the serving chain reads only "
                                         f"{', '.join(sorted({*KEYS, *FLAGS}))} and {OPT_PREFIX}* keys")
        self.trans = cfg.entry("trans_model")
        if self.trans is not None and not is_null(self.trans.value) and UPSTREAM_CONVERT not in self.trans.value \
                and self.trans.value.split()[0] != CONVERTER:
            raise cfg.error(self.trans, f"trans_model '{self.trans.value}' is not supported: use {CONVERTER} "
                                        f"(or upstream's -m {UPSTREAM_CONVERT}, which runs {CONVERTER})")
        self.backends = self.choose_backends()
        serving_dir = cfg.entry("serving_dir")
        self.serving_dir = (ctx.root / serving_dir.value).resolve() if serving_dir else ctx.root
        if not self.serving_dir.is_dir():
            raise cfg.unsupported(serving_dir, f"{serving_dir.value} is not a folder of this repository "
                                                 "(this project's service is deploy/serving_python)")
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
        self.export = cfg.entry("export")
        self.serving_server = self.output_path("serving_server")
        self.serving_client = self.output_path("serving_client")
        self.real_python = ""
        self.real_unavailable = ""  # why the real backend cannot run here at all (no env)
        self.real_steps: list[Step] = []  # the real backend's served steps (client, check)
        self.rpc_port = 0
        self.ray_replicas = self.choose_ray_replicas()

    def choose_ray_replicas(self) -> int:
        """Replicas of the optional Ray Serve step: 0 = off (``null``, absent, or the env var set to 0/null)."""
        entry = self.cfg.entry(RAY_REPLICAS_KEY)
        override = os.environ.get(RAY_REPLICAS_ENV, "").strip()
        value = override or (entry.value.strip() if entry is not None else "")
        if not value or is_null(value) or value == "0":
            return 0
        if not value.isdigit():
            where = f" (from {RAY_REPLICAS_ENV})" if override else ""
            raise self.cfg.error(None if override else entry,
                                 f"{RAY_REPLICAS_KEY} '{value}'{where}: a whole number of replicas, or null (off)")
        return int(value)

    def choose_backends(self) -> list:
        """The backends to run, ours last (the real one is up first, so the differential has both)."""
        entry = self.cfg.entry("serving_backend")
        override = os.environ.get("TIPC_SERVING_BACKEND", "").strip()
        if override:
            names = alternatives(override)
        elif entry is not None:
            names = alternatives(entry.value)
        elif self.trans is not None and UPSTREAM_CONVERT in self.trans.value:
            names = ["paddle_serving", "ours"]  # upstream deploys with the real server
        else:
            names = ["ours"]
        unknown = [n for n in names if n not in BACKENDS]
        if unknown or not names:
            raise self.cfg.error(entry, f"serving_backend '{'|'.join(names)}': each must be one of "
                                        f"{', '.join(BACKENDS)}" + (" (from TIPC_SERVING_BACKEND)" if override else ""))
        return [BACKENDS[n]() for n in sorted(dict.fromkeys(names), key=lambda n: n == "ours")]

    def output_path(self, flag: str) -> Path:
        """``--serving_server``/``--serving_client`` of the config, else a folder in the chain's output."""
        entry = self.cfg.find(flag, flag=True)
        if entry is None or is_null(entry.value):
            return (self.ctx.out_dir / flag).resolve()
        return (self.ctx.root / entry.value).resolve()

    @property
    def real(self) -> RealPaddleServing | None:
        return next((b for b in self.backends if isinstance(b, RealPaddleServing)), None)

    def command(self, key: str, default: str) -> list[str]:
        entry = self.cfg.find(key)
        if entry is None or is_null(entry.value):
            return [*self.ctx.python, str(self.ctx.root / default)]
        return self.ctx.command(entry, base=self.serving_dir)

    def __call__(self, ctx: Context, run: Run) -> None:
        if not self.ensure_model(run):
            run.skip("serving", f"no inference model in {self.model_dir}", group="serve")
        else:
            if self.real is not None:
                self.prepare_real(run)
            elif self.trans is not None and not is_null(self.trans.value):
                run.skip(f"{self.trans.value} (trans_model)", OwnService().convert_note(), group="convert")
            for devices in self.devices:
                self.variant(run, devices)
            if self.ray_replicas:
                self.ray_variant(run)
        defining_check(run, "serve", "served predictions")
        self.check_real_ran(run)

    def prepare_real(self, run: Run) -> None:
        """The Python 3.9 env (built once, cached) and the converted serving model."""
        env = run.step([*self.ctx.python, *REAL_ENV], self.ctx.log("paddle_serving_env"), group="paddle_serving_env")
        if env.status == "skipped":
            self.real_unavailable = f"{ENV_UNAVAILABLE}: {env.reason}"
        elif env.status == "failed":
            self.real_unavailable = f"the real Paddle Serving environment did not build (see {env.log})"
        else:
            lines = Path(env.log).read_text(encoding="utf-8", errors="replace").splitlines()
            found = [line.strip() for line in lines if line.strip().startswith("/") and Path(line.strip()).is_file()]
            self.real_python = self.real.python = found[-1] if found else ""
            if not found:
                self.real_unavailable = f"the env step printed no interpreter path (see {env.log})"
        argv = [*self.ctx.python, str(self.ctx.root / CONVERTER), *self.convert_flags()]
        log = self.ctx.log("trans_model")
        if self.trans is not None and UPSTREAM_CONVERT in self.trans.value:
            print(f"trans_model '{self.trans.value}' runs {CONVERTER}: {self.real.convert_note()}", flush=True)
        convert = run.step(argv, log, group="convert")
        if convert.status != "passed" and not self.real_unavailable:
            self.real_unavailable = f"no serving model: the conversion {convert.status} (see {convert.log})"

    def convert_flags(self) -> list[str]:
        """The converter's flags: upstream convert's keys from the config, defaults for the rest."""
        flags = ["--dirname", str(self.model_dir)]  # the export this chain serves (made by ensure_model)
        for name, default in (("model_filename", layout.LEGACY_PROGRAM), ("params_filename", layout.PARAMS)):
            entry = self.cfg.find(name, flag=True)
            flags += [f"--{name}", entry.value if entry is not None and not is_null(entry.value) else default]
        return [*flags, "--serving_server", str(self.serving_server), "--serving_client", str(self.serving_client)]

    def check_real_ran(self, run: Run) -> None:
        """Red when the real server's served steps were skipped for a reason other than no env / no hardware."""
        if self.real is None or self.real_unavailable.startswith(ENV_UNAVAILABLE):
            return
        steps = self.real_steps
        if any(s.status in ("passed", "failed") for s in steps):
            return
        soft = [s for s in steps if not s.hardware]
        if soft or not steps:
            reason = soft[0].reason if soft else "no step ran"
            run.fail("real Paddle Serving predictions", f"the real Paddle Serving steps did not run ({reason})",
                     group="verdict")

    def ensure_model(self, run: Run) -> bool:
        if (self.model_dir / layout.PIR_PROGRAM).is_file() or (self.model_dir / layout.LEGACY_PROGRAM).is_file():
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
        up: dict[str, int] = {}  # backend name -> http port of a server answering right now
        started: list[tuple[str, object, list[str]]] = []  # (log tag, proc, stop argv), stopped in reverse
        try:
            for backend in self.backends:
                port = self.serve(run, backend, devices, label, started)
                if port:
                    up[backend.name] = port
            if len(up) == 2 and label == "cpu":
                self.differential(run, up)
            elif self.real is not None and len(self.backends) == 2 and label == "cpu":
                missing = [b.name for b in self.backends if b.name not in up]
                why = self.real_unavailable or f"{' and '.join(missing)} did not serve (see above)"
                for item in ("differential (our service vs real Paddle Serving)", "rpc (real Paddle Serving)"):
                    run.skip(item, why, group="differential")
            for tag, proc, stop in reversed(started):
                if proc.poll() is None:
                    run.step(stop, self.ctx.log(f"server_{tag}_stop"), group="stop")
        finally:
            for _, proc, _ in reversed(started):
                run.stop_background(proc)

    def serve(self, run: Run, backend: object, devices: str, label: str, started: list) -> int:
        """Start BACKEND for DEVICES, wait until ready, post the images, check them; its port if it is up."""
        real = isinstance(backend, RealPaddleServing)
        tag = f"{backend.name}_{label}" if real else label  # our service keeps its log names
        what = f"({'real Paddle Serving, ' if real else ''}{label})"
        served = [f"pipeline client {what}", f"compare with Paddle Inference {what}"]
        record = self.real_steps.append if real else (lambda step: None)
        if real and self.real_unavailable:
            for item in served:
                record(run.skip(item, self.real_unavailable, group="serve_paddle_serving"))
            return 0
        if real and devices and not cuda_available(self.ctx.python):
            for item in served:
                record(run.skip(item, f"real Paddle Serving on GPU {devices} needs CUDA, which this machine lacks",
                                group="serve", hardware=True))
            return 0
        port = free_port()
        server_log = self.ctx.log(f"server_{tag}").resolve()
        jsonl = (self.ctx.out_dir / f"client_{tag}.jsonl").resolve()
        jsonl.unlink(missing_ok=True)
        if real:
            rpc_port = free_port()
            self.rpc_port = rpc_port
            proc = run.start_background(backend.server_argv(self.serving_server, devices, port, rpc_port), server_log,
                                        cwd=self.ctx.out_dir.resolve(), env=backend.env(self.ctx.root))
            ids = ["--pid", str(proc.pid), "--http-port", str(port), "--rpc-port", str(rpc_port),
                   "--server-log", str(server_log)]
            ready_argv = [*self.ctx.python, *REAL_CONTROL, "wait-ready", *ids, "--timeout", self.ready_timeout]
            stop = [*self.ctx.python, *REAL_CONTROL, "stop", *ids, "--timeout", str(REAL_STOP_TIMEOUT)]
        else:
            argv = backend.server_argv(self.web_argv, self.opts, self.model_dir, devices, port)
            proc = run.start_background(argv, server_log, cwd=self.serving_dir)
            ready_argv = [*self.ctx.python, *SERVER_CONTROL, "wait-ready", "--pid", str(proc.pid), "--url",
                          backend.health_url(port), "--server-log", str(server_log), "--timeout", self.ready_timeout]
            stop = [*self.ctx.python, *SERVER_CONTROL, "stop", "--pid", str(proc.pid), "--server-log",
                    str(server_log), "--timeout", str(STOP_TIMEOUT)]
        started.append((tag, proc, stop))
        name = "paddle_serving " if real else ""
        print(f"started the {name}{label} server: pid {proc.pid}, port {port}, log {server_log}", flush=True)
        ready = run.step(ready_argv, self.ctx.log(f"server_{tag}_ready"), group="ready")
        if ready.status != "passed":
            why = (f"the {label} server cannot run on this machine ({ready.reason})" if ready.hardware
                   else f"the {backend.name} {label} server did not become ready (see {server_log})")
            for item in served:
                record(run.skip(item, why, group="serve", hardware=ready.hardware))
            return 0
        client = [*self.pipeline_argv, "--image_dir", self.image_dir, "--url", backend.prediction_url(port),
                  "--output", str(jsonl)]
        record(run.step(client, self.ctx.log(f"client_{tag}").resolve(), group="serve", cwd=self.serving_dir))
        record(run.step([*self.check_argv, "--responses", str(jsonl), "--model-dir", str(self.model_dir)],
                        self.ctx.log(f"check_{tag}").resolve(), group="serve", cwd=self.serving_dir))
        if real:
            run.step([backend.python, "-m", "mobilenetv3_tipc.serving.differential", "rpc", "--address",
                      f"127.0.0.1:{self.rpc_port}", "--image", str(self.ctx.root / PROBE_IMAGE), "--compare-url",
                      f"http://127.0.0.1:{port}", "--workdir", str(self.ctx.out_dir.resolve())],
                     self.ctx.log(f"rpc_{tag}"), group="rpc", env=backend.env(self.ctx.root))
        return port

    def differential(self, run: Run, up: dict[str, int]) -> None:
        """The same requests to both servers: same success/error, same classes, probabilities within 1e-4."""
        run.step([*self.ctx.python, "-m", "mobilenetv3_tipc.serving.differential", "compare",
                  "--ours", f"http://127.0.0.1:{up['ours']}", "--real", f"http://127.0.0.1:{up['paddle_serving']}",
                  "--images", self.image_dir, "--json", str((self.ctx.out_dir / "differential.json").resolve())],
                 self.ctx.log("differential"), group="differential", cwd=self.serving_dir)

    # -- optional: Ray Serve replicas ---------------------------------------------------------------------------

    def ray_argv(self, port: int, temp_dir: Path) -> list[str]:
        """ray_serve_app.py with the server command's own flags (config.yml), opts and model; CPU only."""
        flags = self.web_argv[len(self.ctx.python) + 1:]  # after the interpreter and web_service.py
        n = self.ray_replicas
        return [*self.ctx.python, str(self.ctx.root / RAY_APP), *flags, *self.opts,
                "--opt", f"{MODEL_OPT}={self.model_dir}", "--opt", f"{DEVICES_OPT}=",
                "--num-replicas", str(n), "--num-cpus", "1", "--ray-num-cpus", str(n),
                "--ray-temp-dir", str(temp_dir), "--host", "127.0.0.1", "--port", str(port)]

    def ray_temp_dir(self) -> tuple[Path, bool]:
        """Ray's session folder and whether the chain made it outside its output folder (then removed after)."""
        inside_out = (self.ctx.out_dir / "ray").resolve()
        if len(str(inside_out)) <= RAY_TEMP_MAX:
            inside_out.mkdir(parents=True, exist_ok=True)
            return inside_out, False
        return Path(tempfile.mkdtemp(prefix="tipc-ray-", dir="/tmp")), True

    def ray_variant(self, run: Run) -> None:
        """N Ray Serve replicas of the model: start, wait for every replica, client, check, stop, nothing left."""
        n = self.ray_replicas
        what = f"(Ray Serve, {n} replicas)"
        served = [f"pipeline client {what}", f"compare with Paddle Inference {what}"]
        port = free_port()
        temp_dir, scratch = self.ray_temp_dir()
        server_log = self.ctx.log("server_ray").resolve()
        jsonl = (self.ctx.out_dir / "client_ray.jsonl").resolve()
        jsonl.unlink(missing_ok=True)
        proc = None
        try:
            proc = run.start_background(self.ray_argv(port, temp_dir), server_log, cwd=self.serving_dir)
            print(f"started the Ray Serve app: pid {proc.pid}, port {port}, Ray temp dir {temp_dir}, "
                  f"log {server_log}", flush=True)
            ready = run.step([*self.ctx.python, *SERVER_CONTROL, "wait-ready", "--pid", str(proc.pid), "--url",
                              f"http://127.0.0.1:{port}/health", "--server-log", str(server_log),
                              "--timeout", self.ready_timeout], self.ctx.log("server_ray_ready"), group="ray")
            why = ""
            if ready.status == "skipped":
                why = f"Ray Serve cannot run here: {ready.reason}"
            elif ready.status != "passed":
                why = f"the Ray Serve app did not become ready (see {server_log})"
            elif not self.wait_replicas(run, proc, server_log, n):
                why = f"the Ray Serve app did not start {n} replicas (see {server_log})"
                run.fail(f"Ray Serve {n} replicas", f"{why} within {self.ready_timeout} s", group="ray")
            if why:
                for item in served:
                    run.skip(item, why, group="ray", hardware=ready.status == "skipped")
            else:
                client = [*self.pipeline_argv, "--image_dir", self.image_dir, "--url",
                          f"http://127.0.0.1:{port}/{OwnService.service}/prediction", "--output", str(jsonl)]
                run.step(client, self.ctx.log("client_ray").resolve(), group="ray", cwd=self.serving_dir)
                run.step([*self.check_argv, "--responses", str(jsonl), "--model-dir", str(self.model_dir)],
                         self.ctx.log("check_ray").resolve(), group="ray", cwd=self.serving_dir)
            if proc.poll() is None:
                run.step([*self.ctx.python, *SERVER_CONTROL, "stop", "--pid", str(proc.pid), "--timeout",
                          str(RAY_STOP_TIMEOUT)], self.ctx.log("server_ray_stop"), group="ray")
            left = self.wait_session_gone(proc.pid)
            if left:
                run.fail(f"Ray Serve processes left after the stop {what}",
                         f"{len(left)} process(es) of the app's session {proc.pid} still ran "
                         f"{RAY_LEFTOVER_WAIT:.0f} s after the stop (killed): {left}", group="ray")
        finally:
            if proc is not None:
                run.stop_background(proc)
                for pid in session_processes(proc.pid):  # the Ray daemons of the session this chain made
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if scratch:
                shutil.rmtree(temp_dir, ignore_errors=True)

    def wait_replicas(self, run: Run, proc: object, server_log: Path, n: int) -> bool:
        """True once the app logged that serve.run saw all N replicas healthy (health answers with one)."""
        mark = f"Ray Serve: {n} replica(s) on"
        deadline = time.monotonic() + int(self.ready_timeout)
        while time.monotonic() < deadline and proc.poll() is None:
            run.check_interrupted()
            if mark in server_log.read_text(encoding="utf-8", errors="replace"):
                return True
            time.sleep(0.2)
        return mark in server_log.read_text(encoding="utf-8", errors="replace")

    @staticmethod
    def wait_session_gone(sid: int) -> list[int]:
        """PIDs of session SID still alive RAY_LEFTOVER_WAIT s from now (empty as soon as none is)."""
        deadline = time.monotonic() + RAY_LEFTOVER_WAIT
        while True:
            left = session_processes(sid)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.25)


def session_processes(sid: int) -> list[int]:
    """PIDs (not zombies) whose session id is SID."""
    from mobilenetv3_tipc.serving.process import live_processes

    return live_processes(session=sid)
