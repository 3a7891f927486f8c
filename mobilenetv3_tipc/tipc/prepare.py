"""prepare.sh: data, Python packages and weights for a chain (idempotent, offline-safe).

Weights ``./pretrain_models/<model>_pretrained.pdparams`` come from, in order: the file
already there; the config's ``pretrained_model_url`` (unless ``TIPC_OFFLINE=1``); the
newest weights of an earlier lite chain; otherwise prepare trains them itself with the
lite chain's own train command (the model's ``train_infer_python.txt``) and says so in
one line. So every chain runs first on a fresh clone, offline, in any order.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.tipc.chain import (
    INFER_MODES,
    KINDS,
    TRAIN_MODES,
    Context,
    UsageError,
    kind_of,
    resolve_args,
    step_python,
)
from mobilenetv3_tipc.tipc.config import Config, is_null, mode_value
from mobilenetv3_tipc.tipc.runner import FolderLock, LockBusy, die_with_parent, quote_command, step_timeout

MODES = (*TRAIN_MODES, *INFER_MODES, "paddle2onnx_infer", "serving_infer", "benchmark_train")
LITE_TAR = Path("test_images/lite_data.tar")
LITE_DIR = Path("lite_data")
MODULES = {"paddle2onnx_infer": ("onnxruntime", "paddle2onnx", "onnx"),
           "serving_infer": ("starlette", "uvicorn", "requests")}


class PrepareError(Exception):
    pass


def info(text: str) -> None:
    print(text, flush=True)


def ensure_modules(python: list[str], modules: tuple[str, ...]) -> None:
    check = "import " + ", ".join(modules)
    run = subprocess.run([*python, "-c", check], capture_output=True, stdin=subprocess.DEVNULL, check=False)
    if run.returncode == 0:
        info(f"python modules present: {' '.join(modules)}")
        return
    info(f"missing python modules among: {' '.join(modules)} -> {' '.join(python)} -m pip install -r requirements.txt")
    subprocess.run([*python, "-m", "pip", "install", "-r", "requirements.txt"], stdin=subprocess.DEVNULL, check=False)
    if subprocess.run([*python, "-c", check], stdin=subprocess.DEVNULL, check=False).returncode != 0:
        raise PrepareError(f"still cannot '{check}' with {' '.join(python)}; install those packages into it")


def extract_lite_data() -> None:
    if not LITE_TAR.is_file():
        raise PrepareError(f"{LITE_TAR} not found (it ships with the repository)")
    digest = hashlib.sha256(LITE_TAR.read_bytes()).hexdigest()
    marker = LITE_DIR / ".tipc_source_sha256"
    if marker.is_file() and marker.read_text().strip() == digest and (LITE_DIR / "train").is_dir():
        info(f"{LITE_DIR}/ is up to date ({LITE_TAR} sha256 {digest[:12]})")
        return
    info(f"extracting {LITE_TAR} -> {LITE_DIR}/")
    with tarfile.open(LITE_TAR) as tar:
        tar.extractall(".", filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(".")
    if not (LITE_DIR / "train").is_dir() or not (LITE_DIR / "val").is_dir():
        raise PrepareError(f"{LITE_TAR} did not create {LITE_DIR}/train and {LITE_DIR}/val")
    marker.write_text(digest + "\n")


def sibling_value(cfg: Config, key: str) -> str:
    """KEY from CFG, else from train_infer_python.txt in the same folder."""
    value = cfg.get(key)
    if value and not is_null(value):
        return value
    sibling = cfg.path.parent / KINDS["train"][2]
    if sibling.is_file() and sibling.resolve() != cfg.path.resolve():
        value = Config.load(sibling).get(key)
    return "" if value is None or is_null(value) else value


def prepare_benchmark_data(cfg: Config) -> None:
    """benchmark_train: the section's ``data_path`` built from lite_data (each training image repeated)."""
    from mobilenetv3_tipc import cli
    from mobilenetv3_tipc.tipc.benchmark_chain import read_params
    from mobilenetv3_tipc.tipc.benchmark_train import make_benchmark_data

    params = read_params(cfg)
    if not params.data_path:
        info("benchmark data: train_benchmark_params has no data_path; the runs use the lite chain's data")
        return
    try:
        count = make_benchmark_data(LITE_DIR, params.data_path)
    except cli.UsageError as exc:
        raise PrepareError(str(exc)) from None
    info(f"benchmark data: {params.data_path}/ with {count} training images (each {LITE_DIR}/train image repeated)")


def ensure_paddle_serving_env(cfg: Config, python: list[str]) -> None:
    """Build (once, cached) the Python 3.9 env of real Paddle Serving when the serving chain runs it.

    No interpreter / no network for the first install: said here, and the chain records the
    real server's steps skipped with that reason; a broken install is an error.
    """
    from mobilenetv3_tipc.tipc.serving_chain import REAL_ENV, RealPaddleServing, ServingChain

    ctx = Context(cfg, "serving_infer", "serving", python, Path("unused"), "unused", Path.cwd())
    if not any(isinstance(b, RealPaddleServing) for b in ServingChain(ctx).backends):
        return
    info(f"real Paddle Serving env: {quote_command([*python, *REAL_ENV])}")
    done = subprocess.run([*python, *REAL_ENV], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False,
                          text=True)
    if done.returncode == 77:
        info("real Paddle Serving env: unavailable (reason above); the serving chain records its steps skipped")
    elif done.returncode != 0:
        raise PrepareError(f"the real Paddle Serving env did not build (exit {done.returncode}); see the lines above")
    else:
        info(f"real Paddle Serving env: {done.stdout.strip()}")


class Prepare:
    def __init__(self, cfg: Config, mode: str) -> None:
        self.cfg, self.mode = cfg, mode
        self.model = cfg.require("model_name", "names the prepared weights").value
        self.python = step_python(cfg)
        self.weights = Path("pretrain_models") / f"{self.model}_pretrained.pdparams"

    def __call__(self) -> None:
        ensure_modules(self.python, ("paddle", "PIL", "numpy", "yaml", "tqdm", *MODULES.get(self.mode, ())))
        extract_lite_data()
        kind = kind_of(self.cfg)
        if self.mode == "benchmark_train":
            prepare_benchmark_data(self.cfg)
        elif self.mode == "whole_train_whole_infer":
            self.check_whole_data()
        elif self.mode in TRAIN_MODES:
            if kind == "ptq" or self.trains_from_pretrained():
                self.ensure_weights()
        else:
            self.ensure_weights()
            self.ensure_inference_model()
        if self.mode == "serving_infer":
            ensure_paddle_serving_env(self.cfg, self.python)
        info(f"prepare {self.mode}: done")

    def trains_from_pretrained(self) -> bool:
        entry = self.cfg.find("pretrained", "train_params", flag=True)
        value = mode_value(entry.value, self.mode) if entry is not None else ""
        return Path(value or ".") == self.weights

    def check_whole_data(self) -> None:
        entry = self.cfg.find("data_path", "train_params", flag=True)
        value = mode_value(entry.value, self.mode) if entry is not None else ""
        data = Path(value or "./data")
        if (data / "train").is_dir() and (data / "val").is_dir():
            info(f"full data set found at {data}")
            return
        raise PrepareError(f"{self.mode} trains on the full ImageNet-1k data set, which is not in the repository: "
                           f"place it at {data}/train/<wnid>/*.JPEG and {data}/val/<wnid>/*.JPEG "
                           f"(or change --data-path for {self.mode} in {self.cfg.path})")

    def ensure_weights(self) -> None:
        if self.weights.is_file() and self.weights.stat().st_size > 0:
            info(f"weights: using existing {self.weights}")
            return
        if self.download():
            return
        lite = sorted(Path(f"test_tipc/output/{self.model}/lite_train_lite_infer").glob("norm_train_*/latest.pdparams"),
                      key=lambda p: p.stat().st_mtime)
        if lite:
            self.install(lite[-1], "copied from the lite chain (lite_data weights, not ImageNet ones)")
            return
        self.train_weights()

    def download(self) -> bool:
        url = sibling_value(self.cfg, "pretrained_model_url")
        if not url:
            return False
        if os.environ.get("TIPC_OFFLINE") == "1":
            info(f"weights: TIPC_OFFLINE=1, not downloading {url}")
            return False
        sha = sibling_value(self.cfg, "pretrained_model_sha256")
        argv = [*self.python, "test_tipc/tipc_fetch.py", url, str(self.weights), "--timeout", "20"]
        if sha:
            argv += ["--sha256", sha]
        else:
            info(f"weights: WARNING no pretrained_model_sha256 is recorded for {url}; the download cannot be verified")
        info(f"weights: downloading {url} -> {self.weights}")
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False,
                                timeout=int(os.environ.get("TIPC_DOWNLOAD_TIMEOUT", "120"))).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        if rc == 3:
            raise PrepareError(f"weights: {url} does not match pretrained_model_sha256 {sha}; refusing it")
        if rc != 0:
            info(f"weights: {url} is not reachable (exit {rc})")
        return rc == 0

    def install(self, source: Path, how: str) -> None:
        self.weights.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.weights.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, self.weights)
        labels = source.parent / layout.LABEL_LIST  # the exporter reads it beside the weights
        if labels.is_file():
            shutil.copyfile(labels, self.weights.parent / layout.LABEL_LIST)
        info(f"weights: {source} -> {self.weights} ({how})")

    def train_weights(self) -> None:
        """Train the weights with the model's lite chain command (one CPU process)."""
        from mobilenetv3_tipc.tipc.train_chain import TrainChain

        config = Path(f"test_tipc/configs/{self.model}/{KINDS['train'][2]}")
        if not config.is_file():
            raise PrepareError(f"no weights for {self.model}: place a .pdparams file at {self.weights} "
                               f"(no {config} to train them with)")
        mode = "lite_train_lite_infer"
        out_dir = Path(f"test_tipc/output/{self.model}/prepare_weights")
        ctx = Context(Config.load(config), mode, "train", self.python, out_dir, "unused", Path.cwd())
        runs = [r for r in TrainChain(ctx).runs if r.device.kind == "cpu" and r.device.nproc == 1
                and r.device.nodes == 1 and r.train]
        if not runs:
            raise PrepareError(f"no weights for {self.model}, and {config} has no one-process CPU trainer")
        lock = FolderLock(out_dir)
        try:
            lock.acquire()
        except LockBusy as exc:
            raise PrepareError(str(exc)) from None
        try:
            run_dir = out_dir / runs[0].name
            shutil.rmtree(run_dir, ignore_errors=True)
            log = out_dir / f"{runs[0].name}_train.log"
            info(f"weights: none for {self.model}; training them now with the lite chain's command "
                 f"({quote_command(runs[0].train)}, log {log})")
            with open(log, "wb") as handle:
                rc = subprocess.run(runs[0].train, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                    check=False, timeout=step_timeout(), preexec_fn=die_with_parent).returncode
            weights = run_dir / "latest.pdparams"
            if rc != 0 or not weights.is_file():
                raise PrepareError(f"training the {self.model} weights failed (exit {rc}); see {log}")
            self.install(weights, "trained now on lite_data")
        finally:
            lock.release()

    def ensure_inference_model(self) -> None:
        out = Path("inference") / f"{self.model}_infer"
        program = out / layout.PIR_PROGRAM
        if program.is_file() and (out / layout.PARAMS).is_file() and \
                self.weights.stat().st_mtime <= program.stat().st_mtime:
            info(f"inference model: {out} is up to date")
            return
        export = sibling_value(self.cfg, "infer_export")
        if not export or export.lower() in ("true", "false"):
            export = f"tools/export_model.py --model {self.model}"
        argv = [*self.python, *export.split(), f"--pretrained={self.weights}", f"--save-inference-dir={out}"]
        info(f"inference model: {quote_command(argv)}")
        if subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode != 0:
            raise PrepareError(f"export failed: {quote_command(argv)}")


def main(argv: list[str]) -> int:
    config, mode, rest, how = resolve_args("prepare", argv, MODES)
    if rest:
        raise UsageError("usage: bash test_tipc/prepare.sh [CONFIG] [MODE]")
    cfg = Config.load(config)
    mode = mode or KINDS[kind_of(cfg)][1]
    if mode not in MODES:
        raise UsageError(f"unknown MODE '{mode}' (one of: {', '.join(MODES)})")
    prepare = Prepare(cfg, mode)
    info(f"prepare {mode} for {prepare.model} ({config})" + (f"; {how}" if how else ""))
    try:
        prepare()
    except PrepareError as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
