"""Write the ``serving_server/`` + ``serving_client/`` folders Paddle Serving loads, from an exported model.

    python tools/export_serving_model.py --dirname ./inference/mobilenet_v3_small_infer \
        --model_filename inference.pdmodel --params_filename inference.pdiparams \
        --serving_server ./serving_server --serving_client ./serving_client

This replaces ``python -m paddle_serving_client.convert`` (same flags, same output layout).
The real converter cannot run here: ``paddle_serving_client.io`` imports ``paddle.fluid``,
which Paddle removed in 2.6, and 2.6.2 is the oldest Paddle on PyPI. What it writes is simple:

* ``serving_server/<model_filename>`` and ``<params_filename>``: the legacy inference program
  and its combined parameters (``model.pdmodel`` / ``params.pdiparams`` when the flags are
  not given). ``tools/export_model.py`` writes the legacy ``inference.pdmodel`` beside the PIR
  ``inference.json``; both read the same ``inference.pdiparams`` (persistables in name order,
  as ``paddle.static.save_vars`` writes them), so the files are copied byte for byte;
* ``serving_server_conf.prototxt`` (protobuf text format of Paddle Serving's
  ``general_model_config.proto``) and ``serving_server_conf.stream.prototxt`` (the same
  message, binary), and the client's copies ``serving_client/serving_client_conf.prototxt``
  and ``.stream.prototxt``. Feed variables in the program's feed order, fetch variables
  sorted by name (as convert does), names/alias names/types/shapes read from the program;
  ``shape`` drops the unknown (``-1``) dims, as convert does;
* beside them (not written by upstream; the local predictor ignores them): the export's
  ``label_list.txt`` and ``model_info.json``, so the serving Op names classes as the export does.

Runs on Python 3.11 with Paddle 3 (it reads the program with ``paddle.base.proto``) and does
not import Paddle Serving.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
from pathlib import Path

from mobilenetv3_tipc.export import layout

logger = logging.getLogger(__name__)

SERVER_CONF = "serving_server_conf.prototxt"
SERVER_STREAM_CONF = "serving_server_conf.stream.prototxt"
CLIENT_CONF = "serving_client_conf.prototxt"
CLIENT_STREAM_CONF = "serving_client_conf.stream.prototxt"
DEFAULT_MODEL_FILENAME = "model.pdmodel"  # convert's names when --model_filename/--params_filename are omitted
DEFAULT_PARAMS_FILENAME = "params.pdiparams"
EXTRA_FILES = (layout.LABEL_LIST, layout.MODEL_INFO)
REPLACES_NOTE = ("tools/export_serving_model.py replaces `python -m paddle_serving_client.convert`: the real "
                 "converter imports paddle.fluid, which Paddle removed in 2.6 (2.6.2 is the oldest Paddle on PyPI); "
                 "the layout written is the same")
# general_model_config.proto feed_type / fetch_type values (paddle_serving_client.io.var_type_conversion).
SERVING_TYPES = {
    "INT64": 0, "FP32": 1, "INT32": 2, "FP64": 3, "INT16": 4, "FP16": 5, "BF16": 6, "UINT8": 7, "INT8": 8,
    "BOOL": 9, "COMPLEX64": 10, "COMPLEX128": 11,
}


UPSTREAM_MODULE = "paddle_serving_client.convert"
SCRIPT = "tools/export_serving_model.py"


def replacement_for(trans_model: str) -> str | None:
    """The script to run for an upstream TIPC ``trans_model`` value, or ``None`` if it is not convert.

    ``trans_model:-m paddle_serving_client.convert`` (followed in the config by its ``--dirname``,
    ``--model_filename``, ... lines) becomes ``python tools/export_serving_model.py`` with the same flags.
    """
    words = trans_model.split()
    if words in (["-m", UPSTREAM_MODULE], [f"-m{UPSTREAM_MODULE}"]):
        return SCRIPT
    return None


class ServingModelError(ValueError):
    """The export cannot be converted; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class ServingVar:
    """One ``feed_var`` / ``fetch_var`` entry of ``general_model_config.proto``."""

    name: str
    alias_name: str
    is_lod_tensor: bool
    type: int
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    feed: tuple[ServingVar, ...]
    fetch: tuple[ServingVar, ...]

    def to_text(self) -> str:
        """Protobuf text format, as ``str(GeneralModelConfig)`` prints it (what convert writes)."""
        parts = []
        for block, type_field, items in (("feed_var", "feed_type", self.feed), ("fetch_var", "fetch_type", self.fetch)):
            for var in items:
                lines = [f"{block} {{", f'  name: "{_text_escape(var.name)}"',
                         f'  alias_name: "{_text_escape(var.alias_name)}"',
                         f"  is_lod_tensor: {'true' if var.is_lod_tensor else 'false'}", f"  {type_field}: {var.type}"]
                lines += [f"  shape: {dim}" for dim in var.shape]
                parts.append("\n".join(lines) + "\n}\n")
        return "".join(parts)

    def to_binary(self) -> bytes:
        """The binary wire format, as ``GeneralModelConfig.SerializeToString()`` (proto2, unpacked shape)."""
        out = bytearray()
        for field_number, items in ((1, self.feed), (2, self.fetch)):
            for var in items:
                body = (_len_field(1, var.name.encode()) + _len_field(2, var.alias_name.encode())
                        + _varint_field(3, int(var.is_lod_tensor)) + _varint_field(4, var.type)
                        + b"".join(_varint_field(5, dim) for dim in var.shape))
                out += _len_field(field_number, body)
        return bytes(out)


def _text_escape(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in "\"'\\":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32 values are sign-extended to 10 bytes
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _read_program(path: Path) -> object:
    from paddle.base.proto import framework_pb2

    try:
        return framework_pb2.ProgramDesc.FromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError by version
        raise ServingModelError(f"{path}: not a legacy Paddle program ({type(exc).__name__}: {exc})") from exc


def _io_names(block: object, op_type: str, slot: str) -> list[str]:
    """The variables the block's ``feed`` (slot ``Out``) or ``fetch`` (slot ``X``) ops connect, by ``col``."""
    found = []
    for op in block.ops:
        if op.type != op_type:
            continue
        col = next((attr.i for attr in op.attrs if attr.name == "col"), len(found))
        args = op.outputs if op_type == "feed" else op.inputs
        for var in args:
            if var.parameter == slot:
                found.extend((col, name) for name in var.arguments)
    return [name for _, name in sorted(found)]


def _serving_var(block: object, name: str, program: Path) -> ServingVar:
    from paddle.base.proto import framework_pb2

    for var in block.vars:
        if var.name != name:
            continue
        var_type = var.type
        # Paddle 3 calls the field dense_tensor (lod level: legacy_lod_level); Paddle 2 lod_tensor (lod_level).
        holder_name = "dense_tensor" if "dense_tensor" in var_type.DESCRIPTOR.fields_by_name else "lod_tensor"
        if not var_type.HasField(holder_name):
            raise ServingModelError(f"{program}: variable {name!r} is not a tensor")
        holder = getattr(var_type, holder_name)
        lod_field = "legacy_lod_level" if "legacy_lod_level" in holder.DESCRIPTOR.fields_by_name else "lod_level"
        is_lod = getattr(holder, lod_field) >= 1
        dtype = framework_pb2.VarType.Type.Name(holder.tensor.data_type)
        if dtype not in SERVING_TYPES:
            raise ServingModelError(f"{program}: variable {name!r} has type {dtype}, which Paddle Serving cannot feed")
        shape = (-1,) if is_lod else tuple(int(d) for d in holder.tensor.dims if d >= 0)
        return ServingVar(name=name, alias_name=name, is_lod_tensor=is_lod, type=SERVING_TYPES[dtype], shape=shape)
    raise ServingModelError(f"{program}: the program has no variable {name!r}")


def read_serving_config(program: Path, feed_alias_names: list[str] | None = None,
                        fetch_alias_names: list[str] | None = None) -> ServingConfig:
    """The feed/fetch variables of a legacy inference program, as convert would describe them."""
    desc = _read_program(program)
    if not desc.blocks:
        raise ServingModelError(f"{program}: the program has no blocks")
    block = desc.blocks[0]
    feeds = _io_names(block, "feed", "Out")
    fetches = sorted(_io_names(block, "fetch", "X"))  # convert sorts fetch vars by name
    if not feeds or not fetches:
        raise ServingModelError(f"{program}: no feed/fetch ops (not an inference program from paddle.jit.save)")
    feed = [_serving_var(block, name, program) for name in feeds]
    fetch = [_serving_var(block, name, program) for name in fetches]
    for items, aliases, what in ((feed, feed_alias_names, "feed"), (fetch, fetch_alias_names, "fetch")):
        if aliases is None:
            continue
        if len(aliases) != len(items):
            raise ServingModelError(f"--{what}_alias_names has {len(aliases)} names, the program has "
                                    f"{len(items)} {what} variables ({', '.join(v.name for v in items)})")
        items[:] = [dataclasses.replace(var, alias_name=alias) for var, alias in zip(items, aliases, strict=True)]
    return ServingConfig(tuple(feed), tuple(fetch))


def _find_program(dirname: Path, model_filename: str | None) -> Path:
    if model_filename:
        path = dirname / model_filename
        if not path.is_file():
            raise ServingModelError(f"{path}: no such model file")
        return path
    programs = sorted(dirname.glob("*.pdmodel")) or sorted(dirname.glob("__model__"))
    if len(programs) != 1:
        pir = " (it holds a PIR inference.json only: export with tools/export_model.py, which writes the legacy " \
              "inference.pdmodel beside it; Paddle 2.6 in the serving env cannot read PIR programs)" \
              if (dirname / layout.PIR_PROGRAM).is_file() else ""
        raise ServingModelError(f"{dirname}: expected one legacy program (*.pdmodel), found "
                                f"{len(programs)}{pir}; name it with --model_filename")
    return programs[0]


def _find_params(dirname: Path, program: Path, params_filename: str | None) -> Path:
    path = dirname / params_filename if params_filename else program.with_suffix(".pdiparams")
    if not path.is_file():
        raise ServingModelError(f"{path}: no such parameters file"
                                + ("" if params_filename else "; name it with --params_filename"))
    return path


def convert(dirname: str | Path, serving_server: str | Path = "serving_server",
            serving_client: str | Path = "serving_client", model_filename: str | None = None,
            params_filename: str | None = None, feed_alias_names: list[str] | None = None,
            fetch_alias_names: list[str] | None = None) -> ServingConfig:
    """Write ``serving_server/`` and ``serving_client/`` from the export in ``dirname``."""
    source = Path(dirname)
    if not source.is_dir():
        raise ServingModelError(f"{source}: no such model folder")
    program = _find_program(source, model_filename)
    params = _find_params(source, program, params_filename)
    config = read_serving_config(program, feed_alias_names, fetch_alias_names)
    server, client = Path(serving_server), Path(serving_client)
    server.mkdir(parents=True, exist_ok=True)
    client.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(program, server / (model_filename or DEFAULT_MODEL_FILENAME))
    shutil.copyfile(params, server / (params_filename or DEFAULT_PARAMS_FILENAME))
    for name in EXTRA_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, server / name)
    text, binary = config.to_text(), config.to_binary()
    (server / SERVER_CONF).write_text(text, encoding="utf-8")
    (server / SERVER_STREAM_CONF).write_bytes(binary)
    (client / CLIENT_CONF).write_text(text, encoding="utf-8")
    (client / CLIENT_STREAM_CONF).write_bytes(binary)
    return config


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dirname", required=True, help="exported model folder (tools/export_model.py)")
    parser.add_argument("--model_filename", "--model-filename", default=None,
                        help="legacy program in --dirname (default: its one *.pdmodel; written as model.pdmodel)")
    parser.add_argument("--params_filename", "--params-filename", default=None,
                        help="parameters in --dirname (default: beside the program; written as params.pdiparams)")
    parser.add_argument("--serving_server", "--serving-server", default="serving_server",
                        help="output folder for the server (default: %(default)s)")
    parser.add_argument("--serving_client", "--serving-client", default="serving_client",
                        help="output folder for the client config (default: %(default)s)")
    parser.add_argument("--feed_alias_names", "--feed-alias-names", default=None,
                        help="comma-separated alias names of the feed variables")
    parser.add_argument("--fetch_alias_names", "--fetch-alias-names", default=None,
                        help="comma-separated alias names of the fetch variables (sorted by name)")
    parser.add_argument("--show_proto", "--show-proto", default="False",
                        help="True: print the config and write nothing (as convert)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    logger.info("%s", REPLACES_NOTE)
    split = (lambda text: [s.strip() for s in text.split(",")] if text else None)  # noqa: E731
    try:
        if args.show_proto.strip().lower() in ("true", "1", "yes"):
            program = _find_program(Path(args.dirname), args.model_filename)
            print(read_serving_config(program, split(args.feed_alias_names), split(args.fetch_alias_names)).to_text(),
                  end="")
            return 0
        config = convert(args.dirname, args.serving_server, args.serving_client, args.model_filename,
                         args.params_filename, split(args.feed_alias_names), split(args.fetch_alias_names))
    except ServingModelError as exc:
        logger.error("%s", exc)
        return 2
    logger.info("wrote %s (feed %s; fetch %s) and %s", args.serving_server,
                ", ".join(f"{v.name}{list(v.shape)}" for v in config.feed),
                ", ".join(f"{v.name}{list(v.shape)}" for v in config.fetch), args.serving_client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
