"""Paddle Serving pipeline HTTP client: post images, print each response.

    python deploy/serving_python/pipeline_http_client.py --image_dir ./lite_data/val/ \
        --url http://127.0.0.1:18080/imagenet/prediction

Each image is one request ``{"key": ["image"], "value": [<base64>], "logid": N}``
(``--batch_size N`` sends N key/value pairs per request). Prints one line per
request: ``image_name: <path>, response: <JSON>``. ``--output FILE`` also writes
JSON lines ``{"images": [...], "response": {...}}`` (``"error"`` instead of ``"response"``
when the request failed) for ``check_responses.py``.
Exit code 0 if every response has ``err_no == 0``, else 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import requests

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_flag
from mobilenetv3_tipc.data.preprocess import list_images

DEFAULT_URL = "http://127.0.0.1:18080/imagenet/prediction"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "image-dir", default="./images/demo.jpg",
                        help="an image file, or a folder searched recursively (default: %(default)s)")
    parser.add_argument("--url", default=DEFAULT_URL, help="default: %(default)s")
    parser.add_argument("--logid", type=int, default=10000, help="logid of the first request, +1 per request")
    add_flag(parser, "batch-size", type=int, default=1,
                        help="images (key/value pairs) per request (default: 1)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: 60)")
    parser.add_argument("--output", default=None, help="also write JSON lines {images, response} here")
    return parser


def build_request(paths: list[Path], logid: int) -> dict[str, object]:
    values = [base64.b64encode(p.read_bytes()).decode("ascii") for p in paths]
    return {"key": ["image"] * len(values), "value": values, "logid": logid}


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.batch_size < 1:
        print("--batch_size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        images = list_images(args.image_dir)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    failures = 0
    out = open(args.output, "w", encoding="utf-8") if args.output else None  # noqa: SIM115
    try:
        with requests.Session() as session:
            for index in range(0, len(images), args.batch_size):
                group = images[index:index + args.batch_size]
                names = ", ".join(str(p) for p in group)
                data = build_request(group, args.logid + index // args.batch_size)
                try:
                    reply = session.post(args.url, data=json.dumps(data), timeout=args.timeout,
                                         headers={"Content-Type": "application/json"})
                    result = reply.json()
                except (requests.RequestException, ValueError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    print(f"image_name: {names}, error: {error}")
                    failures += 1
                    if out is not None:
                        out.write(json.dumps({"images": [str(p) for p in group], "error": error}) + "\n")
                    continue
                print(f"image_name: {names}, response: {json.dumps(result, ensure_ascii=False)}")
                if not isinstance(result, dict) or result.get("err_no") != 0:
                    failures += 1
                if out is not None:
                    out.write(json.dumps({"images": [str(p) for p in group], "response": result}) + "\n")
    finally:
        if out is not None:
            out.close()
    total = (len(images) + args.batch_size - 1) // args.batch_size
    print(f"{total - failures}/{total} request(s) answered with err_no 0", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK
