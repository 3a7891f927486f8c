"""The ``imagenet`` service on REAL Paddle Serving 0.9 (Python 3.9 env), the seed's WebService + Op.

    PY=$(python -m mobilenetv3_tipc.serving.paddle_serving_env ensure)   # the cached 3.9 env
    PYTHONPATH=$PWD $PY deploy/serving_python/paddle_serving_service.py \
        --config deploy/serving_python/config_paddle_serving.yml \
        --opt op.imagenet.local_service_conf.model_config=$PWD/serving_server --opt http_port=18080

(``-c FILE -o KEY=VALUE ...`` as upstream: Paddle Serving's own ``ArgsParser``.) The model
folder is what ``tools/export_serving_model.py`` writes. Run it from the folder that should
receive ``PipelineServingLogs/`` and ``ProcessInfo.json``; start it in its own session and stop
it by signalling the process group (it forks an op process, the HTTP gateway and the gRPC
side; SIGTERM to the parent alone leaves them holding the ports):
:mod:`mobilenetv3_tipc.serving.paddle_serving_process` does both.

This is NOT the project's own server (``web_service.py``: Starlette + uvicorn on Python 3.11,
the same protocol). Here preprocessing and labels are the project's own
(``mobilenetv3_tipc.data`` / ``vision``), so both servers feed the model the same tensor; the
answer has the same keys as ours: ``label``, ``prob``, ``class_id`` (Python list strings).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np
from paddle_serving_server.web_service import Op, WebService

from mobilenetv3_tipc.data import labels, preprocess

SERVICE_NAME = "imagenet"
SERVER_CONF = "serving_server_conf.prototxt"
OUTPUT_KEYS = ("label", "prob", "class_id")
PR_SET_PDEATHSIG = 1

logger = logging.getLogger("paddle_serving_service")


def read_serving_conf(model_dir: Path) -> tuple[str, str, int]:
    """``(feed name, fetch name, classes)`` from the converted model's ``serving_server_conf.prototxt``."""
    from google.protobuf import text_format
    from paddle_serving_client.proto import general_model_config_pb2

    path = model_dir / SERVER_CONF
    conf = text_format.Parse(path.read_text(encoding="utf-8"), general_model_config_pb2.GeneralModelConfig())
    if len(conf.feed_var) != 1 or len(conf.fetch_var) != 1:
        raise ValueError(f"{path}: expected one feed and one fetch variable, got "
                         f"{len(conf.feed_var)} and {len(conf.fetch_var)}")
    fetch = conf.fetch_var[0]
    return conf.feed_var[0].name, fetch.name, int(fetch.shape[-1]) if fetch.shape else 0


def decode_base64(text: str, where: str) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} is empty; expected a base64-encoded image")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{where} is not valid base64 ({exc})") from exc
    if not data:
        raise ValueError(f"{where} decodes to zero bytes; expected an image")
    return data


class ImagenetOp(Op):
    """Base64 images in; the project's preprocessing; top-1 label/prob/class_id strings out."""

    def init_op(self) -> None:
        self.model_dir = Path(self.model_config)
        self.feed_name, self.fetch_name, num_classes = read_serving_conf(self.model_dir)
        self.class_names = labels.labels_for(num_classes, self.model_dir) if num_classes else None
        logger.info("imagenet op: feed %s, fetch %s, %d classes, labels %s", self.feed_name, self.fetch_name,
                    num_classes, "yes" if self.class_names else "class ids")

    def preprocess(self, input_dicts, data_id, log_id):  # noqa: ANN001, ANN201 - upstream's signature
        ((_, input_dict),) = input_dicts.items()
        if not input_dict:
            raise ValueError("the request holds no image (key and value are empty or missing)")
        batch = np.empty((len(input_dict), 3, preprocess.CROP_SIZE, preprocess.CROP_SIZE), np.float32)
        for index, (key, value) in enumerate(input_dict.items()):
            where = f"value[{index}] ({key})"
            data = decode_base64(value, where)
            try:
                preprocess.preprocess(data, preprocess.RESIZE_SIZE, preprocess.CROP_SIZE, preprocess.MAX_PIXELS,
                                      out=batch[index])
            except preprocess.ImageDecodeError as exc:
                raise ValueError(f"{where}: {exc}") from exc
        return {self.feed_name: batch}, False, None, ""

    def postprocess(self, input_dicts, fetch_dict, data_id, log_id):  # noqa: ANN001, ANN201
        probs = np.asarray(fetch_dict[self.fetch_name])
        class_ids = [int(i) for i in probs.argmax(axis=1)]
        names = [self.class_names[c] if self.class_names else str(c) for c in class_ids]
        top = [float(probs[row, c]) for row, c in enumerate(class_ids)]
        return {"label": str(names), "prob": str(top), "class_id": str(class_ids)}, None, ""


class ImagenetService(WebService):
    def get_pipeline_response(self, read_op):  # noqa: ANN001, ANN201
        return ImagenetOp(name=SERVICE_NAME, input_ops=[read_op])


def _child_after_fork() -> None:
    """A forked pipeline process: default SIGTERM, and SIGTERM when its parent dies (however it dies)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_group_on_sigterm() -> None:
    """SIGTERM to this process (the group leader) ends the whole group, as a group signal does.

    The pipeline forks an op process, the HTTP gateway and the gRPC side, which otherwise keep
    running and hold both ports when only the parent is told to stop (e.g. by
    ``PR_SET_PDEATHSIG`` when the harness that started it dies). Forked children keep the
    default action, so a group-wide SIGTERM still ends each of them at once, and get
    ``PR_SET_PDEATHSIG`` themselves: measured, a leader killed while busy left its HTTP gateway
    running on both ports; with it the children end with the leader whatever ended it.
    """
    if os.getpgrp() != os.getpid():
        return

    def forward(signum: int, _frame: object) -> None:
        signal.signal(signum, signal.SIG_DFL)
        os.killpg(os.getpgrp(), signum)

    signal.signal(signal.SIGTERM, forward)
    os.register_at_fork(after_in_child=_child_after_fork)


def main(argv: list[str] | None = None) -> int:
    from paddle_serving_server.util import ArgsParser

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flags = ArgsParser().parse_args(argv)
    stop_group_on_sigterm()
    service = ImagenetService(name=SERVICE_NAME)
    service.prepare_pipeline_config(yml_dict=flags.conf_dict)
    service.run_service()
    return 0


if __name__ == "__main__":
    sys.exit(main())
