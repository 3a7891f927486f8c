"""The one owner of an exported model folder's file names.

A model folder (written by ``tools/export_model.py``, the PTQ tool or quant-aware export) holds:

* ``inference.json``      the PIR program (Paddle 3.x default);
* ``inference.pdmodel``   the legacy program (``--legacy-format``, int8 models, and beside the
  ``.json`` for Paddle Inference's OpenVINO engine, which reads only this format);
* ``inference.pdiparams`` the weights, shared by both programs;
* ``model_info.json``     model name, classes, input size and preprocessing;
* ``label_list.txt``      class names, one per line;
* ``quantization.json``   the marker of an int8 model (its quantization summary).

Shell scripts ask this module instead of spelling the names::

    python -m mobilenetv3_tipc.export.layout name params          # -> inference.pdiparams
    python -m mobilenetv3_tipc.export.layout path DIR model_info  # -> DIR/model_info.json
    python -m mobilenetv3_tipc.export.layout program DIR          # -> DIR/inference.json (or .pdmodel); 2 if none
    python -m mobilenetv3_tipc.export.layout check DIR            # exit 0 when DIR holds a program + params
    python -m mobilenetv3_tipc.export.layout names                # KEY=NAME lines, every key

Only the standard library and :mod:`mobilenetv3_tipc.cli` are imported here (no paddle), so the
CLI starts fast (0.1 s measured). A missing folder or program exits 2 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_OK, run_main

MODEL_PREFIX = "inference"
PIR_PROGRAM = f"{MODEL_PREFIX}.json"
LEGACY_PROGRAM = f"{MODEL_PREFIX}.pdmodel"
PARAMS = f"{MODEL_PREFIX}.pdiparams"
MODEL_INFO = "model_info.json"
LABEL_LIST = "label_list.txt"
QUANT_MARKER = "quantization.json"

NAMES: dict[str, str] = {
    "pir_program": PIR_PROGRAM,
    "legacy_program": LEGACY_PROGRAM,
    "params": PARAMS,
    "model_info": MODEL_INFO,
    "label_list": LABEL_LIST,
    "quant_marker": QUANT_MARKER,
}
# Copied from a float model folder into a model derived from it (int8 by PTQ).
METADATA_FILES = (MODEL_INFO, LABEL_LIST)


def find_model_files(model_dir: str | Path) -> tuple[Path, Path]:
    """``(program, params)``: the PIR ``inference.json``, else a legacy ``inference.pdmodel``."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: model directory does not exist (export one with tools/export_model.py)")
    params = root / PARAMS
    for name in (PIR_PROGRAM, LEGACY_PROGRAM):
        program = root / name
        if program.is_file():
            if not params.is_file():
                raise FileNotFoundError(f"{params}: parameters file missing next to {program.name}")
            return program, params
    raise FileNotFoundError(f"{root}: neither {PIR_PROGRAM} nor {LEGACY_PROGRAM} found "
                            "(export one with tools/export_model.py)")


def legacy_program(model_dir: str | Path) -> Path | None:
    """``inference.pdmodel`` when it sits next to ``inference.pdiparams``, else ``None``."""
    root = Path(model_dir)
    program = root / LEGACY_PROGRAM
    return program if program.is_file() and (root / PARAMS).is_file() else None


def is_quantized_model(model_dir: str | Path) -> bool:
    return (Path(model_dir) / QUANT_MARKER).is_file()


def model_size(model_dir: str | Path) -> int:
    """Bytes of the legacy program plus the parameters (what an int8 export shrinks)."""
    root = Path(model_dir)
    return sum(p.stat().st_size for p in (root / LEGACY_PROGRAM, root / PARAMS) if p.is_file())


def _key(value: str) -> str:
    if value not in NAMES:
        raise argparse.ArgumentTypeError(f"unknown file key {value!r}; one of {', '.join(NAMES)}")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("name", help="print a file name").add_argument("key", type=_key)
    path = sub.add_parser("path", help="print DIR/<file name>")
    path.add_argument("model_dir")
    path.add_argument("key", type=_key)
    sub.add_parser("program", help="print the folder's program (json, else pdmodel)").add_argument("model_dir")
    sub.add_parser("check", help="exit 0 when the folder holds a program and its params").add_argument("model_dir")
    sub.add_parser("names", help="print KEY=NAME for every key")
    return parser


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.command == "name":
        print(NAMES[args.key])
    elif args.command == "path":
        print(Path(args.model_dir) / NAMES[args.key])
    elif args.command == "names":
        for key, name in NAMES.items():
            print(f"{key}={name}")
    else:
        program, _ = find_model_files(args.model_dir)
        if args.command == "program":
            print(program)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, usage_errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
