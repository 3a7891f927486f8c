"""The Paddle Serving pipeline wire format: request parsing, response envelopes, error numbers.

Request (``POST /<name>/<method>``, JSON)::

    {"key": ["image", ...], "value": ["<base64 image>", ...], "logid": 10000,
     "tensors": [...], "clientip": "..."}

Response (always every field, values are strings)::

    {"err_no": 0, "err_msg": "", "key": ["label", "prob", "class_id"],
     "value": ["['tabby, tabby cat']", "[0.93]", "[281]"], "tensors": []}

Error numbers are upstream's ``CustomExceptionCode`` (Paddle Serving
``python/pipeline/error_catch.py``). Parsing never raises anything but
:class:`ProtocolError`, whose ``err_no`` and message go straight into the reply.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

# Upstream CustomExceptionCode values used here.
OK = 0
CLOSED_ERROR = 3001  # the service is stopping
NO_SERVICE = 3002  # the URL names another service
INIT_ERROR = 3003  # the model is not loaded (not ready)
INPUT_PARAMS_ERROR = 5000  # bad input: fields, base64, image bytes, sizes
TIMEOUT = 6000  # the request ran past op.<name>.timeout
TYPE_ERROR = 7000  # a field has the wrong JSON type
UNKNOWN = 10000  # anything unexpected (logged with a traceback)
REQUEST_FIELDS = ("key", "value", "tensors", "logid", "clientip", "name", "method")
PROFILE_KEY = "pipeline.profile"
IMAGE_KEY = "image"
# "image", "image_0", "image1", "image-2": upstream clients name batch items this way.
_IMAGE_KEY_RE = re.compile(r"^image(?:[_\-.]?[A-Za-z0-9]+)?$")
_STRING_ELEM_TYPE = 12
# " at 0x7f3a..." in the repr of a Python object (e.g. a BytesIO in a Pillow message): never sent.
_HEAP_ADDRESS_RE = re.compile(r" at 0x[0-9a-fA-F]+")
_DATA_URI_RE = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)


class ProtocolError(Exception):
    """A request the pipeline answers with ``err_no`` and ``err_msg`` (never a crash)."""

    def __init__(self, err_no: int, message: str, logid: int | None = None) -> None:
        super().__init__(message)
        self.err_no = err_no
        self.message = message
        self.logid = logid  # the request's logid when it was readable (for the access log)


@dataclass
class PipelineRequest:
    images: list[bytes]
    names: list[str]
    logid: int = 0
    clientip: str = ""
    name: str = ""
    profile: bool = False


def response(err_no: int = OK, err_msg: str = "", keys: list[str] | None = None,
             values: list[str] | None = None) -> dict[str, Any]:
    """The full response envelope; every field is always present, as upstream's EmitDefaults."""
    return {"err_no": int(err_no), "err_msg": _HEAP_ADDRESS_RE.sub("", err_msg), "key": list(keys or []),
            "value": list(values or []), "tensors": []}


def format_list(items: list[Any]) -> str:
    """Upstream stringifies Python lists: ``str([0.93])`` -> ``"[0.93]"``."""
    return str(list(items))


def parse_logid(raw: Any) -> int:
    """int64 as proto3 JSON accepts it: a number or a numeric string."""
    if isinstance(raw, bool):
        raise ProtocolError(TYPE_ERROR, f"logid must be an integer, got {type(raw).__name__}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"-?\d{1,19}", raw.strip()):
        return int(raw.strip())
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    raise ProtocolError(TYPE_ERROR, f"logid must be an integer, got {type(raw).__name__} {str(raw)[:40]!r}")


def decode_base64(text: str, where: str) -> bytes:
    """Standard or URL-safe base64, with or without padding, newlines or a ``data:`` URI prefix."""
    cleaned = _DATA_URI_RE.sub("", text.strip(), count=1)
    cleaned = "".join(cleaned.split())
    if not cleaned:
        raise ProtocolError(INPUT_PARAMS_ERROR, f"{where} is empty; expected a base64-encoded image")
    if "-" in cleaned or "_" in cleaned:
        cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        data = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(INPUT_PARAMS_ERROR, f"{where} is not valid base64 ({exc})") from exc
    if not data:
        raise ProtocolError(INPUT_PARAMS_ERROR, f"{where} decodes to zero bytes; expected an image")
    return data


def _string_list(payload: dict[str, Any], name: str) -> list[str]:
    raw = payload.get(name, [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProtocolError(TYPE_ERROR, f"{name} must be a list of strings, got {type(raw).__name__}")
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            raise ProtocolError(TYPE_ERROR, f"{name}[{index}] must be a string, got {type(item).__name__}")
    return raw


def _tensor_images(raw: Any) -> list[tuple[str, str]]:
    """STRING tensors (elem_type 12) whose ``str_data`` items are base64 images."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProtocolError(TYPE_ERROR, f"tensors must be a list, got {type(raw).__name__}")
    items: list[tuple[str, str]] = []
    for index, tensor in enumerate(raw):
        if not isinstance(tensor, dict):
            raise ProtocolError(TYPE_ERROR, f"tensors[{index}] must be an object, got {type(tensor).__name__}")
        name = tensor.get("name", "")
        elem_type = tensor.get("elem_type", _STRING_ELEM_TYPE)
        data = tensor.get("str_data")
        if not isinstance(name, str) or not _IMAGE_KEY_RE.match(name):
            raise ProtocolError(INPUT_PARAMS_ERROR,
                                f"tensors[{index}].name must be {IMAGE_KEY!r} (or image_<n>), got {name!r}")
        if elem_type != _STRING_ELEM_TYPE or not isinstance(data, list) or not data:
            raise ProtocolError(
                INPUT_PARAMS_ERROR,
                f"tensors[{index}]: only STRING tensors (elem_type 12) whose str_data holds base64 images "
                "are supported; send images as key/value pairs otherwise",
            )
        for pos, item in enumerate(data):
            if not isinstance(item, str):
                raise ProtocolError(TYPE_ERROR, f"tensors[{index}].str_data[{pos}] must be a string")
            items.append((f"tensors[{index}].str_data[{pos}]", item))
    return items


def parse_request(body: bytes, max_images: int) -> PipelineRequest:
    """Parse and validate one request body; raises :class:`ProtocolError` with a clear message."""
    payload = _load_json(body)
    raw_logid = payload.get("logid")
    logid = parse_logid(raw_logid) if raw_logid is not None else 0
    try:
        return _parse_payload(payload, logid, max_images)
    except ProtocolError as exc:
        exc.logid = logid
        raise


def _load_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise ProtocolError(INPUT_PARAMS_ERROR, "empty request body; expected JSON with key and value lists")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(INPUT_PARAMS_ERROR, f"request body is not valid JSON ({exc})") from exc
    except RecursionError:
        raise ProtocolError(INPUT_PARAMS_ERROR, "request body nests JSON too deeply") from None
    if not isinstance(payload, dict):
        raise ProtocolError(TYPE_ERROR, f"request body must be a JSON object, got {type(payload).__name__}")
    return payload


def _parse_payload(payload: dict[str, Any], logid: int, max_images: int) -> PipelineRequest:
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        raise ProtocolError(INPUT_PARAMS_ERROR,
                            f"unknown request field(s) {', '.join(map(repr, unknown))}; "
                            f"a request has {', '.join(REQUEST_FIELDS)}")
    keys = _string_list(payload, "key")
    values = _string_list(payload, "value")
    clientip = payload.get("clientip") or ""
    if not isinstance(clientip, str):
        raise ProtocolError(TYPE_ERROR, f"clientip must be a string, got {type(clientip).__name__}")
    name = payload.get("name") or ""
    if not isinstance(name, str):
        raise ProtocolError(TYPE_ERROR, f"name must be a string, got {type(name).__name__}")
    if len(keys) != len(values):
        raise ProtocolError(INPUT_PARAMS_ERROR,
                            f"key has {len(keys)} item(s) but value has {len(values)}; they must pair up")
    profile = False
    encoded: list[tuple[str, str]] = []
    for index, (key, value) in enumerate(zip(keys, values, strict=True)):
        if key == PROFILE_KEY:
            profile = value.strip() == "1"
            continue
        if not _IMAGE_KEY_RE.match(key):
            raise ProtocolError(INPUT_PARAMS_ERROR,
                                f"key[{index}] is {key[:40]!r}; this op takes {IMAGE_KEY!r} (or image_<n>) keys")
        encoded.append((f"value[{index}] ({key})", value))
    encoded.extend(_tensor_images(payload.get("tensors")))
    if not encoded:
        raise ProtocolError(INPUT_PARAMS_ERROR,
                            "no image in the request: key/value are empty (send key [\"image\"] and a base64 value)")
    if len(encoded) > max_images:
        raise ProtocolError(INPUT_PARAMS_ERROR,
                            f"{len(encoded)} images in one request, more than the limit of {max_images}")
    images = [decode_base64(text, where) for where, text in encoded]
    return PipelineRequest(images=images, names=[where for where, _ in encoded], logid=logid,
                           clientip=clientip, name=name, profile=profile)
