"""The legacy ``inference.pdmodel`` program that Paddle Inference's OpenVINO engine needs.

Paddle 3.x exports a PIR ``inference.json`` by default, but its bundled OpenVINO
engine reads only legacy ProgramDesc files (``Config.enable_openvino_engine`` is
silently ignored for ``.json`` models). On a CPU the OpenVINO engine is the
fastest Paddle Inference path for this model, so ``tools/export_model.py`` also
writes the same network as ``inference.pdmodel``. Both programs read the one
``inference.pdiparams``: the legacy exporter writes byte-identical parameters
(persistables in name order), which :func:`save_legacy_program` checks.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

LEGACY_SUFFIX = ".pdmodel"
PARAMS_SUFFIX = ".pdiparams"


def save_legacy_program(layer: object, input_spec: Sequence[object], out_dir: str | Path,
                        prefix: str = "inference") -> Path | None:
    """Trace ``layer`` with the legacy IR and write ``out_dir/<prefix>.pdmodel``.

    ``out_dir/<prefix>.pdiparams`` must already hold the PIR export of the same
    layer. Returns the program's path, or ``None`` (with a warning) when the
    legacy parameters would differ from the PIR ones, in which case nothing is
    written and Paddle Inference keeps using the ``.json`` program.
    """
    import paddle

    out = Path(out_dir)
    params = out / f"{prefix}{PARAMS_SUFFIX}"
    if not params.is_file():
        raise FileNotFoundError(f"{params}: export the PIR program first")
    with tempfile.TemporaryDirectory(prefix="legacy_export_", dir=out) as scratch:
        scratch_prefix = Path(scratch) / prefix
        with paddle.pir_utils.DygraphOldIrGuard():
            static = paddle.jit.to_static(layer, input_spec=list(input_spec), full_graph=True)
            paddle.jit.save(static, str(scratch_prefix))
        legacy_params = scratch_prefix.with_suffix(PARAMS_SUFFIX)
        if not filecmp.cmp(legacy_params, params, shallow=False):
            logger.warning("legacy export: %s differs from the PIR parameters; no %s%s written "
                           "(Paddle Inference will use the .json program, without OpenVINO)",
                           legacy_params.name, prefix, LEGACY_SUFFIX)
            return None
        target = out / f"{prefix}{LEGACY_SUFFIX}"
        shutil.move(str(scratch_prefix.with_suffix(LEGACY_SUFFIX)), target)
    return target


def read_input_dims(program: str | Path, input_name: str | None = None) -> list[int] | None:
    """The declared dims of an input of a legacy program (``-1`` = any), or ``None`` if not found.

    ``input_name=None`` means the variable the program's first ``feed`` op writes.
    """
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc.FromString(Path(program).read_bytes())
    if input_name is None:
        feeds = [arg for op in desc.blocks[0].ops if op.type == "feed"
                 for out in op.outputs for arg in out.arguments]
        if not feeds:
            return None
        input_name = feeds[0]
    for var in desc.blocks[0].vars:
        if var.name == input_name and var.type.HasField("dense_tensor"):
            return [int(d) for d in var.type.dense_tensor.tensor.dims]
    return None
