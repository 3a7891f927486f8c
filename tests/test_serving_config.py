"""config.yml schema, --opt overrides and start-up errors of deploy/serving_python/web_service.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mobilenetv3_tipc.serving.backends import resolve_model_path
from mobilenetv3_tipc.serving.config import (
    ConfigError,
    DeviceUnavailable,
    apply_overrides,
    load_config,
    resolve_device,
    validate,
)
from mobilenetv3_tipc.serving.process import free_port
from mobilenetv3_tipc.serving.server import get_args_parser
from tests.fixtures.serving import REPO, tiny_models, write_config

SHIPPED = REPO / "deploy" / "serving_python" / "config.yml"
MODEL_OPT = "op.imagenet.local_service_conf.model_config=/models/m"

# Paddle Serving's MobileNetV3 tutorial config (models repo, Step6/deploy/serving_python/config.yml).
UPSTREAM_STEP6 = """
worker_num: 20
http_port: 18093
rpc_port: 9993
dag:
  is_thread_op: False
op:
  imagenet:
    concurrency: 1
    local_service_conf:
      model_config: "./serving_server"
      device_type:
      devices: "0"
      client_type: local_predictor
"""


def minimal(**local: object) -> dict[str, object]:
    return {"op": {"imagenet": {"local_service_conf": {"model_config": "/models/m", **local}}}}


def test_shipped_config_is_valid() -> None:
    conf = load_config(SHIPPED)
    assert conf.http_port == 18080 and conf.http_host == "127.0.0.1"
    assert conf.service.model.backend == "paddle" and conf.service.model.device.kind == "cpu"
    assert conf.service.batch_size >= 1 and conf.service.timeout > 0
    assert conf.warnings == ()


def test_upstream_defaults() -> None:
    conf = validate(minimal())
    assert conf.http_port == 18080
    assert conf.worker_num == 1
    op = conf.service
    assert (op.concurrency, op.batch_size, op.timeout, op.auto_batching_timeout) == (1, 1, -1, -1)
    assert conf.service.timeout_s is None
    model = conf.service.model
    assert (model.thread_num, model.ir_optim, model.use_mkldnn, model.precision) == (2, False, False, "fp32")
    assert model.device.kind == "cpu"


def test_upstream_step6_config_loads_with_warnings() -> None:
    conf = validate(yaml.safe_load(UPSTREAM_STEP6))
    assert conf.worker_num == 20 and conf.http_port == 18093
    assert conf.service.model.device.kind == "gpu" and conf.service.model.device.gpu_ids == (0,)
    assert any(w.startswith("rpc_port") for w in conf.warnings)
    assert any(w.startswith("dag.is_thread_op") for w in conf.warnings)


@pytest.mark.parametrize(("override", "path", "expected"), [
    ('op.imagenet.local_service_conf.devices=""', ("local_service_conf", "devices"), ""),
    ("op.imagenet.local_service_conf.devices=", ("local_service_conf", "devices"), ""),
    ("op.imagenet.local_service_conf.devices=0", ("local_service_conf", "devices"), "0"),
    ("op.imagenet.local_service_conf.devices='0,1'", ("local_service_conf", "devices"), "0,1"),
    ("op.imagenet.timeout=-1", ("timeout",), -1),
    ("op.imagenet.batch_size=16", ("batch_size",), 16),
    ("op.imagenet.local_service_conf.use_mkldnn=True", ("local_service_conf", "use_mkldnn"), True),
    ("op.imagenet.local_service_conf.ir_optim=false", ("local_service_conf", "ir_optim"), False),
    ("op.imagenet.local_service_conf.precision=FP32", ("local_service_conf", "precision"), "FP32"),
    ("op.imagenet.local_service_conf.device_type=null", ("local_service_conf", "device_type"), None),
])
def test_overrides_are_typed_by_the_schema(override: str, path: tuple[str, ...], expected: object) -> None:
    conf = apply_overrides(minimal(), [override])
    node = conf["op"]["imagenet"]
    for part in path:
        node = node[part]
    assert node == expected and type(node) is type(expected)
    validate(conf)


def test_overrides_create_missing_sections_and_top_level_keys() -> None:
    conf = apply_overrides({}, [MODEL_OPT, "http_port=18181", "op.imagenet.concurrency=2"])
    checked = validate(conf)
    assert checked.http_port == 18181 and checked.service.concurrency == 2


@pytest.mark.parametrize(("override", "message"), [
    ("op.imagenet.timeout=abc", "expected an int"),
    ("op.imagenet.local_service_conf.use_mkldnn=maybe", "expected a bool"),
    ("op.imagenet.local_service_conf.fooo=1", "unknown key 'op.imagenet.local_service_conf.fooo'"),
    ("op.resnet.concurrency=1", "unknown key 'op.resnet"),
    ("op.imagenet=1", "is a section"),
    ("http_port", "expected dotted.key=value"),
    ("=3", "expected dotted.key=value"),
])
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("'", "'")):
        apply_overrides(minimal(), [override])


@pytest.mark.parametrize(("conf", "message"), [
    ({"http_prot": 18080}, "unknown key 'http_prot': the top level has"),
    ({"op": {"resnet": {}}}, "op.resnet: unknown op; this service has one op named 'imagenet'"),
    ({"dag": {"is_thread_opp": True}}, "unknown key 'dag.is_thread_opp'"),
    ({"http_port": "18080"}, "http_port must be int, got str"),
    ({"http_port": 80}, "http_port must be a port number"),
    ({"worker_num": 0}, "worker_num must be >= 1"),
    ({"worker_num": True}, "worker_num must be int, got bool"),
    ({"op": {"imagenet": {"batch_size": 2.5}}}, "op.imagenet.batch_size must be int"),
    ({"op": {"imagenet": {"server_endpoints": ["127.0.0.1:9393"]}}}, "remote Ops"),
    ({"op": {"imagenet": {"local_service_conf": {"ir_optim": "yes"}}}}, "ir_optim must be bool"),
    ({"op": {"imagenet": {"local_service_conf": {"precision": "fp64"}}}}, "precision must be one of"),
    ({"op": {"imagenet": {"local_service_conf": {"backend": "tensorflow"}}}}, "backend must be one of"),
    ({"op": {"imagenet": {"local_service_conf": {"client_type": "brpc"}}}}, "client_type must be one of"),
    ({"op": []}, "op must be a mapping"),
])
def test_config_errors_name_the_key(conf: dict[str, object], message: str) -> None:
    merged = minimal()
    for key, value in conf.items():
        if key == "op" and isinstance(value, dict) and "imagenet" in value:
            merged["op"]["imagenet"] = {**value["imagenet"], "local_service_conf": {
                "model_config": "/models/m", **value["imagenet"].get("local_service_conf", {})}}
        else:
            merged[key] = value
    with pytest.raises(ConfigError) as info:
        validate(merged)
    assert message in str(info.value)


def test_model_config_is_required() -> None:
    with pytest.raises(ConfigError, match="model_config is required"):
        validate({})


def test_onnxruntime_backend_is_fp32_only() -> None:
    with pytest.raises(ConfigError, match="fp32 only"):
        validate(minimal(backend="onnxruntime", precision="fp16"))


@pytest.mark.parametrize(("device_type", "devices", "kind", "ids"), [
    (-1, "", "cpu", ()), (None, "", "cpu", ()), (-1, "0", "gpu", (0,)), (-1, "0,1", "gpu", (0, 1)),
    (0, "0", "cpu", ()), (1, "1", "gpu", (1,)), (2, "0", "tensorrt", (0,)),
])
def test_device_resolution(device_type: int | None, devices: str, kind: str, ids: tuple[int, ...]) -> None:
    device = resolve_device(device_type, devices)
    assert (device.kind, device.gpu_ids) == (kind, ids)


def test_device_errors() -> None:
    with pytest.raises(ConfigError, match="needs card ids"):
        resolve_device(1, "")
    with pytest.raises(ConfigError, match="card ids like"):
        resolve_device(-1, "gpu0")
    with pytest.raises(DeviceUnavailable, match="Kunlun"):
        resolve_device(4, "0")


def test_model_config_forms(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    paddle_dir, onnx_file = tiny_models(tmp_path_factory.getbasetemp())
    paddle_conf = validate(minimal(model_config=str(paddle_dir))).service.model
    assert resolve_model_path(paddle_conf) == paddle_dir
    onnx_conf = validate(minimal(model_config=str(onnx_file.parent), backend="onnxruntime")).service.model
    assert resolve_model_path(onnx_conf) == onnx_file
    with pytest.raises(ConfigError, match="model directory does not exist"):
        resolve_model_path(validate(minimal(model_config=str(tmp_path / "missing"))).service.model)
    with pytest.raises(ConfigError, match="set backend: onnxruntime"):
        resolve_model_path(validate(minimal(model_config=str(onnx_file))).service.model)
    with pytest.raises(ConfigError, match="exactly one"):
        resolve_model_path(validate(minimal(model_config=str(tmp_path), backend="onnxruntime")).service.model)


def test_onnxruntime_backend_serves(tmp_path_factory: pytest.TempPathFactory) -> None:
    from mobilenetv3_tipc.data.preprocess import preprocess
    from mobilenetv3_tipc.serving.app import build_runtime

    _, onnx_file = tiny_models(tmp_path_factory.getbasetemp())
    conf = validate({"op": {"imagenet": {"local_service_conf": {
        "model_config": str(onnx_file), "backend": "onnxruntime", "thread_num": 1}}}})
    runtime = build_runtime(conf)
    try:
        assert runtime.info["backend"] == "onnxruntime" and runtime.op.labels is not None
        probs = runtime.batcher.submit(preprocess(REPO / "images" / "demo.jpg")[None]).result(30)
        assert probs.shape == (1, 4) and abs(float(probs.sum()) - 1.0) < 1e-4
    finally:
        runtime.stop()


# -- the command line ----------------------------------------------------------------------------------------


def test_upstream_and_long_option_spellings() -> None:
    parser = get_args_parser()
    upstream = parser.parse_args(["-c", "config.yml", "-o", "a.b=1", "c=2"])
    assert upstream.config == "config.yml" and upstream.opt == ["a.b=1", "c=2"]
    ours = parser.parse_args(["--config=config.yml", "--opt", "a.b=1", "--opt", "c=2"])
    assert ours.opt == ["a.b=1", "c=2"]


def run_service(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "deploy/serving_python/web_service.py"), *args],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def test_cli_config_error_exits_2(tmp_path: Path) -> None:
    result = run_service("--config", str(SHIPPED), "--opt", "op.imagenet.local_service_conf.thread_numm=2")
    assert result.returncode == 2
    assert "unknown key 'op.imagenet.local_service_conf.thread_numm'" in result.stderr
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text("http_port: [1,\n")
    result = run_service("-c", str(bad_yaml))
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    result = run_service("-c", str(SHIPPED), "-o", f"op.imagenet.local_service_conf.model_config={tmp_path}/none")
    assert result.returncode == 2 and "model directory does not exist" in result.stderr


def test_cli_gpu_without_cuda_exits_77(tmp_path_factory: pytest.TempPathFactory) -> None:
    from mobilenetv3_tipc.hardware import cuda_available

    if cuda_available():
        pytest.skip("this machine has CUDA")
    paddle_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    result = run_service("--config", str(SHIPPED), "--opt", f"op.imagenet.local_service_conf.model_config={paddle_dir}",
                         "--opt", 'op.imagenet.local_service_conf.devices="0"', "--opt", f"http_port={free_port()}")
    assert result.returncode == 77, result.stderr
    assert "SKIPPED:" in result.stderr and "CUDA" in result.stderr


def test_cli_unsupported_device_type_exits_77(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", "/models/m")
    result = run_service("-c", str(config), "-o", "op.imagenet.local_service_conf.device_type=4",
                         "op.imagenet.local_service_conf.devices=0")
    assert result.returncode == 77 and "SKIPPED:" in result.stderr


def test_cli_port_in_use_exits_1(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    paddle_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if port < 1024:
            pytest.skip("ephemeral port below 1024")
        config = write_config(tmp_path / "c.yml", paddle_dir, http_port=port)
        result = run_service("-c", str(config))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert json.loads(config.read_text())["http_port"] == port
