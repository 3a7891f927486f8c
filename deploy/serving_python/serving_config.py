"""Load, override and validate a Paddle Serving pipeline ``config.yml``.

The schema keeps upstream's keys, defaults and strict types (``ServerYamlConfChecker``
in Paddle Serving ``python/pipeline/pipeline_server.py``). Three kinds of keys:

* **used**: the keys this server honours (``http_port``, ``worker_num``,
  ``op.imagenet.{concurrency,timeout,batch_size,auto_batching_timeout}``,
  ``local_service_conf.{model_config,device_type,devices,thread_num,ir_optim,
  use_mkldnn,precision}``) plus a few extensions marked ``[ext]`` below;
* **compat**: upstream keys with no meaning here (``rpc_port``, ``dag.is_thread_op``,
  ``mem_optim`` ...): accepted so existing configs load, with a warning;
* **unsupported**: upstream features this server does not have (remote Ops through
  ``server_endpoints``): a clear error.

Any other key is an error at start-up that names the key and the keys allowed there.
``--opt a.b.c=value`` overrides are converted to the type the schema declares
(so ``timeout=-1`` is the int -1 and ``devices=0`` the string "0").
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

SERVICE_NAME = "imagenet"
BACKENDS = ("paddle", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
DEVICE_TYPES = {-1: "decided by devices", 0: "CPU", 1: "GPU", 2: "TensorRT", 3: "ARM CPU",
                4: "Kunlun XPU", 5: "Ascend 310", 6: "Ascend 910"}

USED, COMPAT, UNSUPPORTED = "used", "compat", "unsupported"


class ConfigError(ValueError):
    """config.yml or an --opt override is invalid; the message names the key."""


@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    default: Any = None
    status: str = USED
    check: Callable[[Any], str | None] | None = None
    nullable: bool = False


def _at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}"


def _port(v: int) -> str | None:
    return None if 1024 <= v <= 65535 else "must be a port number in 1024..65535"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _one_of(choices: tuple[Any, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        value = v.lower() if isinstance(v, str) else v
        return None if value in choices else f"must be one of {', '.join(map(str, choices))}"
    return check


INT, BOOL, STR, LIST = (int,), (bool,), (str,), (list,)
NUMBER = (int, float)

LOCAL_SERVICE_SCHEMA: dict[str, Any] = {
    "model_config": Field(STR, None),
    "backend": Field(STR, "paddle", check=_one_of(BACKENDS)),  # [ext]
    "device_type": Field(INT, -1, check=_one_of(tuple(DEVICE_TYPES)), nullable=True),
    "devices": Field(STR, ""),
    "thread_num": Field(INT, 2, check=_at_least(1)),
    "ir_optim": Field(BOOL, False),
    "use_mkldnn": Field(BOOL, False),
    "precision": Field(STR, "fp32", check=_one_of(PRECISIONS)),
    "client_type": Field(STR, "local_predictor", check=_one_of(("local_predictor",))),
    "mem_optim": Field(BOOL, True, COMPAT),
    "mkldnn_cache_capacity": Field(INT, 0, COMPAT),
    "mkldnn_op_list": Field(LIST, None, COMPAT, nullable=True),
    "mkldnn_bf16_op_list": Field(LIST, None, COMPAT, nullable=True),
    "use_calib": Field(BOOL, False, COMPAT),
    "min_subgraph_size": Field(INT, 3, COMPAT),
    "workdir": Field(STR, "", COMPAT, nullable=True),
    "fetch_list": Field(LIST, None, COMPAT, nullable=True),
}

OP_SCHEMA: dict[str, Any] = {
    "concurrency": Field(INT, 1, check=_at_least(1)),
    "timeout": Field(INT, -1),
    "batch_size": Field(INT, 1, check=_at_least(1)),
    "auto_batching_timeout": Field(INT, -1),
    "max_images_per_request": Field(INT, 64, check=_at_least(1)),  # [ext]
    "retry": Field(INT, 1, COMPAT),
    "fetch_list": Field(LIST, None, COMPAT, nullable=True),
    "server_endpoints": Field(LIST, None, UNSUPPORTED, nullable=True),
    "client_config": Field(STR, None, UNSUPPORTED, nullable=True),
    "local_service_conf": LOCAL_SERVICE_SCHEMA,
}

DAG_SCHEMA: dict[str, Any] = {
    "is_thread_op": Field(BOOL, True, COMPAT),
    "retry": Field(INT, 1, COMPAT),
    "client_type": Field(STR, "brpc", COMPAT),
    "use_profile": Field(BOOL, False, COMPAT),
    "channel_size": Field(INT, 0, COMPAT),
    "channel_recv_frist_arrive": Field(BOOL, False, COMPAT),
    "enable_prometheus": Field(BOOL, False, COMPAT),
    "prometheus_port": Field(INT, None, COMPAT, nullable=True),
    "tracer": {"interval_s": Field(INT, -1, COMPAT)},
}

SCHEMA: dict[str, Any] = {
    "http_port": Field(INT, 18080, check=_port),
    "http_host": Field(STR, "127.0.0.1"),  # [ext]
    "worker_num": Field(INT, 1, check=_at_least(1)),
    "max_body_size_mb": Field(NUMBER, 32, check=_positive),  # [ext]
    "max_concurrent_requests": Field(INT, 64, check=_at_least(1)),  # [ext]
    "graceful_shutdown_timeout_s": Field(NUMBER, 10, check=_positive),  # [ext]
    "rpc_port": Field(INT, None, COMPAT, check=_port, nullable=True),
    "build_dag_each_worker": Field(BOOL, False, COMPAT),
    "grpc_gateway_port": Field(INT, None, COMPAT, nullable=True),
    "dag": DAG_SCHEMA,
    "op": {SERVICE_NAME: OP_SCHEMA},
}

COMPAT_NOTES = {
    "rpc_port": "there is no gRPC port; the HTTP API on http_port is the only endpoint",
    "dag.enable_prometheus": "metrics are always served at GET /metrics on http_port",
    "dag.prometheus_port": "metrics are always served at GET /metrics on http_port",
    "build_dag_each_worker": "one process; op.imagenet.concurrency sets the inference workers",
}


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def _coerce_override(text: str, spec: Field, path: str) -> Any:
    """Convert an ``--opt`` value string to the type the schema declares for ``path``."""
    raw = text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1]
    if spec.nullable and raw.lower() in ("null", "none", "~"):
        return None
    expected = spec.types
    if expected == BOOL:
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"--opt {path}={text}: expected a bool (True/False)")
    if expected == INT:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"--opt {path}={text}: expected an int") from None
    if expected == NUMBER:
        try:
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError:
            raise ConfigError(f"--opt {path}={text}: expected a number") from None
    if expected == LIST:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--opt {path}={text}: expected a YAML list ({exc})") from None
        return value
    return raw


def _lookup_schema(path: list[str]) -> Field | dict[str, Any]:
    node: Any = SCHEMA
    for depth, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(path[:depth]) or "the top level"
            allowed = ", ".join(sorted(node)) if isinstance(node, dict) else "(none: not a section)"
            raise ConfigError(f"unknown key {'.'.join(path)!r}: {where} has {allowed}")
        node = node[part]
    return node


def apply_overrides(conf: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.path=value`` strings (upstream ``--opt``), typed by the schema."""
    result = copy.deepcopy(conf)
    for item in overrides:
        path_text, sep, value_text = item.partition("=")
        path = [p for p in path_text.strip().split(".") if p]
        if not sep or not path:
            raise ConfigError(f"--opt {item!r}: expected dotted.key=value, e.g. "
                              f"op.{SERVICE_NAME}.local_service_conf.devices=\"\"")
        spec = _lookup_schema(path)
        if isinstance(spec, dict):
            raise ConfigError(f"--opt {item!r}: {'.'.join(path)} is a section, not a value")
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--opt {item!r}: {part} is not a section in the config")
            node = child
        node[path[-1]] = _coerce_override(value_text, spec, ".".join(path))
    return result


def _validate(node: Any, schema: dict[str, Any], path: str, warnings: list[str]) -> dict[str, Any]:
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(node).__name__}")
    out: dict[str, Any] = {}
    for key in node:
        if key not in schema:
            where = path or "the top level"
            if path == "op":
                raise ConfigError(f"op.{key}: unknown op; this service has one op named {SERVICE_NAME!r}")
            raise ConfigError(f"unknown key {'.'.join(filter(None, [path, str(key)]))!r}: "
                              f"{where} has {', '.join(sorted(schema))}")
    for key, spec in schema.items():
        full = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out[key] = _validate(node.get(key), spec, full, warnings)
            continue
        present = key in node
        value = node.get(key)
        if value is None:
            if present and not spec.nullable and spec.default is not None and spec.status == USED:
                raise ConfigError(f"{full} must be {_type_names(spec.types)}, got null")
            value = spec.default
        elif key == "devices" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # YAML `devices: 0` means the card "0"
        else:
            ok = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
            if not ok:
                raise ConfigError(f"{full} must be {_type_names(spec.types)}, got "
                                  f"{type(value).__name__} {value!r}")
            if spec.check is not None:
                problem = spec.check(value)
                if problem:
                    raise ConfigError(f"{full} {problem}, got {value!r}")
        if present and spec.status == UNSUPPORTED and value is not None:
            raise ConfigError(f"{full}: remote Ops (server_endpoints/client_config) are not supported by this "
                              "server; remove the key and serve the model locally with local_service_conf")
        if present and spec.status == COMPAT and node.get(key) is not None:
            note = COMPAT_NOTES.get(full, "accepted for compatibility with Paddle Serving, no effect here")
            warnings.append(f"{full}: {note}")
        if isinstance(value, str) and spec.check is not None and key in ("precision", "backend"):
            value = value.lower()
        out[key] = value
    return out


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu", "gpu" or "tensorrt"
    gpu_ids: tuple[int, ...] = ()

    def describe(self) -> str:
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{','.join(map(str, self.gpu_ids))}"


@dataclass(frozen=True)
class ModelConf:
    model_config: Path
    backend: str
    device: Device
    thread_num: int
    ir_optim: bool
    use_mkldnn: bool
    precision: str


@dataclass(frozen=True)
class OpConf:
    name: str
    concurrency: int
    timeout_ms: int
    batch_size: int
    auto_batching_timeout_ms: int
    max_images_per_request: int
    model: ModelConf

    @property
    def timeout_s(self) -> float | None:
        return self.timeout_ms / 1000.0 if self.timeout_ms > 0 else None


@dataclass(frozen=True)
class ServingConfig:
    http_host: str
    http_port: int
    worker_num: int
    max_body_bytes: int
    max_concurrent_requests: int
    graceful_shutdown_timeout_s: float
    op: OpConf
    raw: dict[str, Any]
    warnings: tuple[str, ...] = ()


class DeviceUnavailable(ConfigError):
    """The config asks for a device kind this build cannot drive (exit 77, not a config typo)."""


def parse_devices(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        ids = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"op.{SERVICE_NAME}.local_service_conf.devices must be \"\" (CPU) or card ids like "
                          f"\"0\" or \"0,1\", got {text!r}") from None
    if any(i < 0 for i in ids):
        raise ConfigError(f"op.{SERVICE_NAME}.local_service_conf.devices: card ids must be >= 0, got {text!r}")
    return ids


def resolve_device(device_type: int | None, devices: str) -> Device:
    """Upstream semantics: device_type -1 decides from devices ("" = CPU, "0" = GPU 0)."""
    ids = parse_devices(devices or "")
    kind_code = -1 if device_type is None else device_type
    prefix = f"op.{SERVICE_NAME}.local_service_conf"
    if kind_code == -1:
        return Device("gpu", ids) if ids else Device("cpu")
    if kind_code == 0:
        if ids:
            logger.warning("%s.device_type is 0 (CPU): devices %r is ignored", prefix, devices)
        return Device("cpu")
    if kind_code in (1, 2):
        if not ids:
            raise ConfigError(f"{prefix}.device_type {kind_code} ({DEVICE_TYPES[kind_code]}) needs card ids in "
                              "devices, e.g. devices: \"0\"")
        return Device("gpu" if kind_code == 1 else "tensorrt", ids)
    raise DeviceUnavailable(f"{prefix}.device_type {kind_code} ({DEVICE_TYPES[kind_code]}) is not supported by "
                            "this build (CPU, GPU and TensorRT only)")


def _build(conf: dict[str, Any], warnings: list[str]) -> ServingConfig:
    op_raw = conf["op"][SERVICE_NAME]
    local = op_raw["local_service_conf"]
    prefix = f"op.{SERVICE_NAME}.local_service_conf"
    if not local.get("model_config"):
        raise ConfigError(f"{prefix}.model_config is required: the exported Paddle inference directory "
                          "(inference.json + inference.pdiparams) or, with backend: onnxruntime, an .onnx file")
    device = resolve_device(local["device_type"], local["devices"])
    precision = local["precision"]
    if local["backend"] == "onnxruntime" and precision != "fp32":
        raise ConfigError(f"{prefix}.precision {precision!r}: the onnxruntime backend runs fp32 only")
    model = ModelConf(
        model_config=Path(local["model_config"]).expanduser(), backend=local["backend"], device=device,
        thread_num=local["thread_num"], ir_optim=local["ir_optim"], use_mkldnn=local["use_mkldnn"],
        precision=precision,
    )
    op = OpConf(
        name=SERVICE_NAME, concurrency=op_raw["concurrency"], timeout_ms=op_raw["timeout"],
        batch_size=op_raw["batch_size"], auto_batching_timeout_ms=op_raw["auto_batching_timeout"],
        max_images_per_request=op_raw["max_images_per_request"], model=model,
    )
    return ServingConfig(
        http_host=conf["http_host"], http_port=conf["http_port"], worker_num=conf["worker_num"],
        max_body_bytes=int(conf["max_body_size_mb"] * 1024 * 1024),
        max_concurrent_requests=conf["max_concurrent_requests"],
        graceful_shutdown_timeout_s=float(conf["graceful_shutdown_timeout_s"]),
        op=op, raw=conf, warnings=tuple(warnings),
    )


def validate(conf: dict[str, Any]) -> ServingConfig:
    """Check a loaded (and overridden) config dict against the schema and build typed settings."""
    warnings: list[str] = []
    checked = _validate(conf, SCHEMA, "", warnings)
    return _build(checked, warnings)


def read_yaml(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: config file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> ServingConfig:
    """``config.yml`` + ``--opt`` overrides -> validated :class:`ServingConfig`."""
    conf = apply_overrides(read_yaml(path), overrides or [])
    try:
        return validate(conf)
    except ConfigError as exc:
        raise type(exc)(f"{path}: {exc}") from None
