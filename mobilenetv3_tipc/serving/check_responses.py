"""Check the pipeline client's responses against Paddle Inference on the same images.

    python deploy/serving_python/check_responses.py --responses client.jsonl \
        --model-dir ./inference/mobilenet_v3_small_infer/

``client.jsonl`` is ``pipeline_http_client.py --output``. Every response must have
``err_no`` 0, keys ``label``, ``prob`` and ``class_id`` whose values parse as
Python lists (one item per image), labels that match the model's label list, and
a top-1 class equal to what ``PaddlePredictor`` (the same model, default
``infer.py`` options) computes for that image. A different class is accepted only
when the two classes' reference probabilities tie within ``--tolerance`` (batched
inference can reorder exact ties). Exit 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

from mobilenetv3_tipc.cli import add_flag

REQUIRED_KEYS = ("label", "prob", "class_id")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", required=True, help="JSON lines written by pipeline_http_client.py --output")
    add_flag(parser, "model-dir", required=True, help="the exported model the server serves")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="probability gap under which two classes count as tied (default: 1e-4)")
    return parser


def parse_values(response: dict[str, object], count: int) -> tuple[list[str], list[float], list[int]]:
    """The three value lists of a successful response; raises ValueError naming what is wrong."""
    if response.get("err_no") != 0:
        raise ValueError(f"err_no {response.get('err_no')}: {response.get('err_msg')}")
    for field in ("err_msg", "key", "value", "tensors"):
        if field not in response:
            raise ValueError(f"response has no {field!r} field")
    keys, values = response["key"], response["value"]
    if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
        raise ValueError(f"key/value are not lists of equal length: {keys!r} / {values!r}")
    table = dict(zip(keys, values, strict=True))
    parsed: dict[str, list[object]] = {}
    for key in REQUIRED_KEYS:
        if key not in table:
            raise ValueError(f"response key {key!r} missing (keys: {keys})")
        if not isinstance(table[key], str):
            raise ValueError(f"value of {key!r} is not a string: {table[key]!r}")
        try:
            items = ast.literal_eval(table[key])
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"value of {key!r} does not parse as a Python list: {table[key]!r}") from exc
        if not isinstance(items, list) or len(items) != count:
            raise ValueError(f"value of {key!r} should be a list of {count} item(s): {table[key]!r}")
        parsed[key] = items
    labels, probs, ids = parsed["label"], parsed["prob"], parsed["class_id"]
    if not all(isinstance(x, str) for x in labels):
        raise ValueError(f"labels are not strings: {labels!r}")
    if not all(isinstance(x, float) and 0.0 <= x <= 1.0 for x in probs):
        raise ValueError(f"probs are not floats in [0, 1]: {probs!r}")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in ids):
        raise ValueError(f"class ids are not ints: {ids!r}")
    return labels, probs, ids  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    import numpy as np

    from mobilenetv3_tipc.data.labels import labels_for
    from mobilenetv3_tipc.data.preprocess import preprocess
    from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, PaddlePredictor

    records = []
    try:
        for line_no, line in enumerate(Path(args.responses).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                records.append((line_no, json.loads(line)))
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.responses}: {exc}")
        return 1
    if not records:
        print(f"{args.responses}: no responses to check")
        return 1
    predictor = PaddlePredictor(args.model_dir, InferenceOptions())
    names: list[str] | None = None
    checked = matched = failed = 0
    for line_no, record in records:
        images = record.get("images") or [] if isinstance(record, dict) else []
        try:
            if not images:
                raise ValueError("the record names no images")
            if "error" in record:
                raise ValueError(f"the request failed: {record['error']}")
            labels, probs, ids = parse_values(record.get("response") or {}, len(images))
            reference = predictor.run(np.stack([preprocess(path) for path in images]))
        except (ValueError, OSError) as exc:  # ImageDecodeError is a ValueError
            print(f"FAIL line {line_no} {images}: {exc}")
            checked += len(images)
            failed += len(images) or 1
            continue
        if names is None:
            names = labels_for(reference.shape[1], args.model_dir)
        for index, path in enumerate(images):
            checked += 1
            row = reference[index]
            expected = int(np.argmax(row))
            served = ids[index]
            problems = []
            if not 0 <= served < row.shape[0]:
                problems.append(f"class_id {served} out of range")
            elif served != expected and row[served] < row[expected] - args.tolerance:
                problems.append(f"top-1 {served} (p={row[served]:.6f}) but Paddle Inference says "
                                f"{expected} (p={row[expected]:.6f})")
            elif abs(probs[index] - float(row[served])) > 1e-3:
                problems.append(f"prob {probs[index]:.6f} but Paddle Inference gives {row[served]:.6f}")
            want_label = names[served] if names and 0 <= served < len(names) else str(served)
            if labels[index] != want_label:
                problems.append(f"label {labels[index]!r}, expected {want_label!r}")
            if problems:
                failed += 1
                print(f"FAIL {path}: {'; '.join(problems)}")
            else:
                matched += 1
                print(f"ok   {path}: class_id {served} {labels[index]!r} prob {probs[index]:.4f}")
    print(f"{matched}/{checked} image(s) match Paddle Inference; {failed} problem(s)")
    return 1 if failed else 0
