"""Helpers shared by the serving tests (no tests here).

The protocol and batching tests need a model whose predictions differ from image to
image and that loads in a second: a tiny 4-class network (strided conv -> global
pool -> linear -> softmax) exported with ``paddle.jit.save`` exactly like
``tools/export_model.py`` does (``inference.json`` + ``inference.pdiparams``, input
``[-1, 3, 224, 224]``, softmax output), with a ``label_list.txt``. A random-weight
MobileNetV3 answers the same class for every image, which would make the top-1
checks vacuous; the real MobileNetV3 is served by the TIPC chain test.

Built once per test session in a fixed folder under pytest's base temp dir and
shared by the modules (the build is guarded by a lock file, so it is also safe
under pytest-xdist).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
LITE_TAR = REPO / "test_images" / "lite_data.tar"
DEMO_JPG = REPO / "images" / "demo.jpg"
TINY_LABELS = ["tabby cat", "missile", "tripod", "espresso"]


def build_tiny_paddle_model(out_dir: Path) -> Path:
    """Export the tiny classifier to ``out_dir`` (skipped when already there)."""
    if (out_dir / "inference.json").is_file() and (out_dir / "inference.pdiparams").is_file():
        return out_dir
    import paddle
    from paddle import nn

    paddle.set_device("cpu")
    paddle.seed(2024)
    net = nn.Sequential(
        nn.Conv2D(3, 8, kernel_size=16, stride=16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2D(1),
        nn.Flatten(),
        nn.Linear(8, len(TINY_LABELS)),
        nn.Softmax(),
    )
    rng = np.random.default_rng(2024)
    for param in net.parameters():
        param.set_value(rng.normal(0.0, 0.3, param.shape).astype("float32"))
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", name="input")]
    static = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(static, str(out_dir / "inference"))
    (out_dir / "label_list.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(TINY_LABELS)))
    return out_dir


def build_tiny_onnx_model(path: Path) -> Path:
    """A 4-class ONNX classifier (global pool -> linear -> softmax) for the onnxruntime backend."""
    if path.is_file():
        return path
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weight = numpy_helper.from_array(rng.normal(0, 3.0, (3, len(TINY_LABELS))).astype("float32"), "W")
    bias = numpy_helper.from_array(np.zeros(len(TINY_LABELS), "float32"), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(TINY_LABELS)])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    (path.parent / "label_list.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(TINY_LABELS)))
    return path


def shared_dir(base_temp: Path, name: str) -> Path:
    """A folder shared by every module of the session (pytest's base temp is per session)."""
    path = base_temp / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def tiny_models(base_temp: Path) -> tuple[Path, Path]:
    """(paddle model dir, onnx file), built once per session."""
    root = shared_dir(base_temp, "serving_models")
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        paddle_dir = build_tiny_paddle_model(root / "tiny_paddle")
        onnx_file = build_tiny_onnx_model(root / "tiny_onnx" / "tiny.onnx")
    return paddle_dir, onnx_file


def lite_images(base_temp: Path) -> list[Path]:
    """The 16 lite validation JPEGs, extracted once per session."""
    root = shared_dir(base_temp, "serving_lite")
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "lite_data" / "val").is_dir():
            with tarfile.open(LITE_TAR) as tar:
                tar.extractall(root, filter="data")
    return sorted((root / "lite_data" / "val").rglob("*.JPEG"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64_file(path: Path) -> str:
    return b64(path.read_bytes())


def make_jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG")
    return buf.getvalue()


def make_png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def request_body(images: list[str], logid: int = 1, **extra: object) -> dict[str, object]:
    return {"key": ["image"] * len(images), "value": images, "logid": logid, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, model_config: Path | str, **top: object) -> Path:
    """A minimal config.yml (JSON is valid YAML) for web_service.py."""
    conf: dict[str, object] = {
        "http_port": top.pop("http_port", 18080),
        "worker_num": 2,
        "op": {"imagenet": {
            "concurrency": 1, "batch_size": 4, "auto_batching_timeout": 5, "timeout": 30000,
            "local_service_conf": {"model_config": str(model_config), "devices": "", "thread_num": 1,
                                   "use_mkldnn": False, "ir_optim": False},
        }},
    }
    conf.update(top)
    path.write_text(json.dumps(conf, indent=2))
    return path


@contextlib.contextmanager
def serve_in_thread(app: object, timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()
