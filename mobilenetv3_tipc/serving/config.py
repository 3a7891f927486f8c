"""The pipeline ``config.yml``: a pydantic schema with Paddle Serving's keys, defaults and strict types.

Three kinds of keys (upstream's are those of ``ServerYamlConfChecker``, Paddle Serving
``python/pipeline/pipeline_server.py``):

* **used**: the keys this server honours, plus extensions marked ``[ext]``;
* **compat**: upstream keys with no meaning here (``rpc_port``, ``dag.*``, ``mem_optim`` ...),
  accepted so existing configs load, each with a warning (:func:`compat`);
* **unsupported**: remote Ops (``server_endpoints``, ``client_config``): a clear error.

Any other key is an error naming the key and the keys allowed there (``extra="forbid"``).
``--opt a.b.c=value`` overrides (:func:`apply_overrides`) are converted to the type the
schema declares, so ``timeout=-1`` is the int -1 and ``devices=0`` the string ``"0"``.
"""

from __future__ import annotations

import copy
import logging
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from mobilenetv3_tipc.cli import UnsupportedConfig

logger = logging.getLogger(__name__)

SERVICE_NAME = "imagenet"
DEVICE_TYPES = {-1: "decided by devices", 0: "CPU", 1: "GPU", 2: "TensorRT", 3: "ARM CPU",
                4: "Kunlun XPU", 5: "Ascend 310", 6: "Ascend 910"}
NO_EFFECT = "accepted for compatibility with Paddle Serving, no effect here"
LOCAL = f"op.{SERVICE_NAME}.local_service_conf"


class ConfigError(ValueError):
    """config.yml or an --opt override is invalid; the message names the key."""


class DeviceUnavailable(ConfigError, UnsupportedConfig):
    """The config asks for a device kind this build cannot drive (exit 77, not a config typo)."""


def compat(default: Any = None, note: str = NO_EFFECT) -> Any:
    """An upstream key accepted with a warning (``note``) and ignored."""
    return Field(default, json_schema_extra={"compat": note})


class Section(BaseModel):
    """A mapping of the config: unknown keys are errors, types are strict, an empty section is ``{}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        return {} if data is None else data


class LocalServiceConf(Section):
    model_path: str | None = Field(None, alias="model_config")
    backend: Literal["paddle", "onnxruntime"] = "paddle"  # [ext]
    device_type: int | None = -1
    devices: str = ""
    thread_num: int = Field(2, ge=1)
    ir_optim: bool = False
    use_mkldnn: bool = False
    use_openvino: bool | None = None  # [ext] null: auto (see mobilenetv3_tipc.inference.engine)
    precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"
    client_type: Literal["local_predictor"] = "local_predictor"
    mem_optim: bool | None = compat(True)
    mkldnn_cache_capacity: int | None = compat(0)
    mkldnn_op_list: list[Any] | None = compat()
    mkldnn_bf16_op_list: list[Any] | None = compat()
    use_calib: bool | None = compat(False)
    min_subgraph_size: int | None = compat(3)
    workdir: str | None = compat("")
    fetch_list: list[Any] | None = compat()
    _device: Device | None = PrivateAttr(None)

    @field_validator("devices", mode="before")
    @classmethod
    def _card_number_is_a_string(cls, value: Any) -> Any:
        # YAML `devices: 0` means the card "0"
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("backend", "precision", "client_type", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("device_type")
    @classmethod
    def _device_type(cls, value: int | None) -> int | None:
        if value is not None and value not in DEVICE_TYPES:
            raise ValueError(f"must be one of {', '.join(map(str, DEVICE_TYPES))}")
        return value

    @property
    def model_dir(self) -> Path:
        """``model_config`` as a path (checked present by :func:`validate`)."""
        return Path(self.model_path or "").expanduser()

    @property
    def device(self) -> Device:
        if self._device is None:
            self._device = resolve_device(self.device_type, self.devices)
        return self._device


class OpConf(Section):
    concurrency: int = Field(1, ge=1)
    timeout: int = -1  # ms; <= 0: none
    batch_size: int = Field(1, ge=1)
    auto_batching_timeout: int = -1  # ms
    max_images_per_request: int = Field(64, ge=1)  # [ext]
    max_request_pixels: int = Field(64_000_000, ge=1)  # [ext] decoded pixels, all images of a request
    retry: int | None = compat(1)
    fetch_list: list[Any] | None = compat()
    server_endpoints: list[Any] | None = None  # unsupported (remote Ops)
    client_config: str | None = None  # unsupported (remote Ops)
    local_service_conf: LocalServiceConf = Field(default_factory=LocalServiceConf)

    @property
    def name(self) -> str:
        return SERVICE_NAME

    @property
    def model(self) -> LocalServiceConf:
        return self.local_service_conf

    @property
    def timeout_s(self) -> float | None:
        return self.timeout / 1000.0 if self.timeout > 0 else None

    @property
    def batch_timeout_s(self) -> float:
        return max(0, self.auto_batching_timeout) / 1000.0


class OpSection(Section):
    imagenet: OpConf = Field(default_factory=OpConf)


class TracerConf(Section):
    interval_s: int | None = compat(-1)


class DagConf(Section):
    is_thread_op: bool | None = compat(True)
    retry: int | None = compat(1)
    client_type: str | None = compat("brpc")
    use_profile: bool | None = compat(False)
    channel_size: int | None = compat(0)
    channel_recv_frist_arrive: bool | None = compat(False)
    enable_prometheus: bool | None = compat(False, "metrics are always served at GET /metrics on http_port")
    prometheus_port: int | None = compat(None, "metrics are always served at GET /metrics on http_port")
    tracer: TracerConf = Field(default_factory=TracerConf)


class ServingConfig(Section):
    http_port: int = 18080
    http_host: str = "127.0.0.1"  # [ext]
    worker_num: int = Field(1, ge=1)
    max_body_size_mb: float = Field(32, gt=0)  # [ext]
    max_concurrent_requests: int = Field(64, ge=1)  # [ext] prediction requests in progress
    max_connections: int = Field(512, ge=1)  # [ext] open connections, all clients
    max_connections_per_client: int = Field(64, ge=1)  # [ext] open connections of one client address
    header_timeout_s: float = Field(10, gt=0)  # [ext] to receive a whole request head
    body_timeout_s: float = Field(30, gt=0)  # [ext] to receive a whole body, once the head is in
    keep_alive_timeout_s: float = Field(10, gt=0)  # [ext] an idle keep-alive connection is closed after
    graceful_shutdown_timeout_s: float = Field(10, gt=0)  # [ext]
    rpc_port: int | None = compat(None, "there is no gRPC port; the HTTP API on http_port is the only endpoint")
    build_dag_each_worker: bool | None = compat(
        False, "one process; op.imagenet.concurrency sets the inference workers")
    grpc_gateway_port: int | None = compat()
    dag: DagConf = Field(default_factory=DagConf)
    op: OpSection = Field(default_factory=OpSection)
    _warnings: tuple[str, ...] = PrivateAttr(())

    @field_validator("http_port", "rpc_port")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        if value is not None and not 1024 <= value <= 65535:
            raise ValueError("must be a port number in 1024..65535")
        return value

    @property
    def service(self) -> OpConf:
        """The one op, ``op.imagenet``."""
        return self.op.imagenet

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_size_mb * 1024 * 1024)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._warnings


# -- devices -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu", "gpu" or "tensorrt"
    gpu_ids: tuple[int, ...] = ()

    def describe(self) -> str:
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{','.join(map(str, self.gpu_ids))}"


def parse_devices(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        ids = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{LOCAL}.devices must be \"\" (CPU) or card ids like \"0\" or \"0,1\", "
                          f"got {text!r}") from None
    if any(i < 0 for i in ids):
        raise ConfigError(f"{LOCAL}.devices: card ids must be >= 0, got {text!r}")
    return ids


def resolve_device(device_type: int | None, devices: str) -> Device:
    """Upstream semantics: device_type -1 decides from devices ("" = CPU, "0" = GPU 0)."""
    ids = parse_devices(devices or "")
    kind_code = -1 if device_type is None else device_type
    if kind_code == -1:
        return Device("gpu", ids) if ids else Device("cpu")
    if kind_code == 0:
        if ids:
            logger.warning("%s.device_type is 0 (CPU): devices %r is ignored", LOCAL, devices)
        return Device("cpu")
    if kind_code in (1, 2):
        if not ids:
            raise ConfigError(f"{LOCAL}.device_type {kind_code} ({DEVICE_TYPES[kind_code]}) needs card ids in "
                              "devices, e.g. devices: \"0\"")
        return Device("gpu" if kind_code == 1 else "tensorrt", ids)
    raise DeviceUnavailable(f"{LOCAL}.device_type {kind_code} ({DEVICE_TYPES[kind_code]}) is not supported by "
                            "this build (CPU, GPU and TensorRT only)")


# -- errors as messages naming the key -----------------------------------------------------------------------

_TYPE_NAMES = {"int_type": "int", "int_parsing": "int", "int_from_float": "int", "bool_type": "bool",
               "string_type": "str", "float_type": "int or float", "list_type": "list"}


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A section's fields by their config-file name (the alias where there is one)."""
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _section_at(path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = ServingConfig
    for part in path:
        info = _fields(model).get(part)
        if info is None or not _is_section(info.annotation):
            return None
        model = info.annotation  # type: ignore[assignment]
    return model


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Section)


def _error_message(error: Any) -> str:
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc)
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    got = "null" if value is None else f"{type(value).__name__} {value!r}"
    if kind == "extra_forbidden":
        parent = loc[:-1]
        if parent == ["op"]:
            return f"{key}: unknown op; this service has one op named {SERVICE_NAME!r}"
        section = _section_at(parent)
        allowed = ", ".join(sorted(_fields(section))) if section else "(none)"
        return f"unknown key {key!r}: {'.'.join(parent) or 'the top level'} has {allowed}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{key or 'config'} must be a mapping, got {type(value).__name__}"
    if kind in _TYPE_NAMES:
        return f"{key} must be {_TYPE_NAMES[kind]}, got {got}"
    if kind == "greater_than_equal":
        return f"{key} must be >= {ctx['ge']}, got {value!r}"
    if kind == "greater_than":
        return f"{key} must be > {ctx['gt']}, got {value!r}"
    if kind == "literal_error":
        choices = ", ".join(str(c) for c in typing.get_args(_field_at([*loc], key).annotation))
        return f"{key} must be one of {choices}, got {value!r}"
    if kind == "value_error":
        return f"{key} {ctx.get('error')}, got {value!r}"
    return f"{key}: {error['msg']}"


def _compat_warnings(section: BaseModel, prefix: str = "") -> list[str]:
    found: list[str] = []
    for name, info in type(section).model_fields.items():
        key = f"{prefix}{info.alias or name}"
        value = getattr(section, name)
        if isinstance(value, Section):
            found += _compat_warnings(value, f"{key}.")
        elif isinstance(info.json_schema_extra, dict) and name in section.model_fields_set and value is not None:
            found.append(f"{key}: {info.json_schema_extra['compat']}")
    return found


def validate(conf: dict[str, Any]) -> ServingConfig:
    """Check a loaded (and overridden) config dict against the schema; raises :class:`ConfigError`."""
    try:
        config = ServingConfig.model_validate(conf)
    except ValidationError as exc:
        raise ConfigError("; ".join(_error_message(e) for e in exc.errors())) from None
    op, local = config.service, config.service.local_service_conf
    for key in ("server_endpoints", "client_config"):
        if getattr(op, key) is not None:
            raise ConfigError(f"op.{SERVICE_NAME}.{key}: remote Ops (server_endpoints/client_config) are not "
                              "supported by this server; remove the key and serve the model locally with "
                              "local_service_conf")
    if not local.model_path:
        raise ConfigError(f"{LOCAL}.model_config is required: the exported Paddle inference directory "
                          "(inference.json + inference.pdiparams) or, with backend: onnxruntime, an .onnx file")
    if local.backend == "onnxruntime" and local.precision != "fp32":
        raise ConfigError(f"{LOCAL}.precision {local.precision!r}: the onnxruntime backend runs fp32 only")
    local.device  # noqa: B018 - resolve now: a bad devices value is a start-up error
    config._warnings = tuple(_compat_warnings(config))
    return config


# -- --opt overrides -----------------------------------------------------------------------------------------


def _value_types(annotation: Any) -> tuple[set[type], bool]:
    """The plain types a field accepts and whether it takes null."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = typing.get_args(annotation)
    else:
        args = (annotation,)
    plain = {typing.get_origin(a) or a for a in args}
    return plain - {type(None)}, type(None) in plain


def _coerce(text: str, info: FieldInfo, option: str) -> Any:
    """Convert an ``--opt`` value string to the type the schema declares."""
    raw = text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1]
    kinds, nullable = _value_types(info.annotation)
    if nullable and raw.lower() in ("null", "none", "~"):
        return None
    if bool in kinds:
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"--opt {option}: expected a bool (True/False)")
    for kind, word in ((int, "an int"), (float, "a number")):
        if kind in kinds:
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"--opt {option}: expected {word}") from None
    if list in kinds:
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--opt {option}: expected a YAML list ({exc})") from None
    return raw


def _field_at(path: list[str], option: str) -> FieldInfo:
    model: type[BaseModel] = ServingConfig
    for depth, part in enumerate(path):
        fields = _fields(model)
        if part not in fields:
            where = ".".join(path[:depth]) or "the top level"
            raise ConfigError(f"unknown key {'.'.join(path)!r}: {where} has {', '.join(sorted(fields))}")
        info = fields[part]
        if depth == len(path) - 1:
            if _is_section(info.annotation):
                raise ConfigError(f"--opt {option!r}: {'.'.join(path)} is a section, not a value")
            return info
        if not _is_section(info.annotation):
            raise ConfigError(f"unknown key {'.'.join(path)!r}: {'.'.join(path[:depth + 1])} is a value, "
                              "not a section")
        model = info.annotation
    raise ConfigError(f"--opt {option!r}: no key")


def apply_overrides(conf: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.path=value`` strings (upstream ``--opt``), typed by the schema."""
    result = copy.deepcopy(conf)
    for item in overrides:
        path_text, sep, value_text = item.partition("=")
        path = [p for p in path_text.strip().split(".") if p]
        if not sep or not path:
            raise ConfigError(f"--opt {item!r}: expected dotted.key=value, e.g. {LOCAL}.devices=\"\"")
        info = _field_at(path, item)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--opt {item!r}: {part} is not a section in the config")
            node = child
        node[path[-1]] = _coerce(value_text, info, item)
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: config file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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
