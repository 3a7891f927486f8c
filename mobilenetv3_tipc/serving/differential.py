"""Differential check: the same requests to our service and to real Paddle Serving must get the same answers.

    python -m mobilenetv3_tipc.serving.differential compare --ours http://127.0.0.1:18301 \
        --real http://127.0.0.1:18300 --images ./lite_data/val --json OUT/differential.json
    $PY -m mobilenetv3_tipc.serving.differential rpc --address 127.0.0.1:9300 --image images/demo.jpg \
        --compare-url http://127.0.0.1:18300 --workdir OUT   # $PY: the Paddle Serving env's python

``compare`` sends every request of :func:`build_cases` (good single and batched images; bad:
not JSON, bad base64, not an image, empty lists, missing ``key``, ``key``/``value`` of
different lengths, wrong service name; a good one again last) to both servers. A case passes
when both agree on success vs error, the agreed outcome is the expected one, and on success the
``class_id`` and ``label`` lists are equal and the ``prob`` lists within ``--atol`` (1e-4).
Success = HTTP 200 + JSON + ``err_no`` 0. How the error answers differ (HTTP status, ``err_no``,
message) is reported, not failed: :data:`DELIBERATE_DIFFERENCES` says why they differ.

``rpc`` (run with the Paddle Serving env's python: it imports ``paddle_serving_server``) makes
one prediction through ``paddle_serving_server.pipeline.PipelineClient`` against ``rpc_port``
and, with ``--compare-url``, checks it against the same server's HTTP answer.

Importable on Python 3.9 (the ``rpc`` side runs there). Exit codes: 0 all passed, 1 a
difference, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import ast
import base64
import dataclasses
import json
import logging
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mobilenetv3_tipc.data.preprocess import list_images

logger = logging.getLogger(__name__)

SERVICE_NAME = "imagenet"
ATOL = 1e-4
NOT_AN_IMAGE = b"this is plain text, not an image"
# Where an error answer deliberately differs between the two servers (both answer "error").
DELIBERATE_DIFFERENCES = {
    "not_json": "real: the Go gateway rejects the body before the pipeline (HTTP 400, "
                "{code: 3, message, details}, no err_no); ours: HTTP 200, err_no 5000 INPUT_PARAMS_ERROR with "
                "the JSON error position (one envelope for every answer)",
    "bad_base64": "real: err_no 10000 UNKNOW, err_msg wraps the Op's exception (Log_id/Raise_msg/ClassName/"
                  "FunctionName); ours: err_no 5000 naming value[0] and the base64 error",
    "not_an_image": "real: err_no 10000 with the wrapped exception; ours: err_no 5000 naming the value and why "
                    "Pillow cannot decode it (both use the project's preprocessing)",
    "empty_lists": "real: err_no 10000 (the Op finds no image); ours: err_no 5000 \"no image\" before any model work",
    "missing_key": "real: err_no 10000 (the pipeline pairs no key with the value, the Op finds no image); "
                   "ours: err_no 5000 saying key and value lengths differ",
    "mismatched_lengths": "real: err_no 8000 \"rpc package error: list index out of range\" (the request Op "
                          "indexes key by value); ours: err_no 5000 saying key and value lengths differ",
    "wrong_service": "same err_no 3002 NO_SERVICE; ours names the service asked for and the one served",
}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    expect_ok: bool
    service: str = SERVICE_NAME
    images: int = 0


@dataclasses.dataclass
class Answer:
    status: int
    body: bytes
    seconds: float
    reply: dict[str, Any] | None = None
    transport_error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.reply is not None and self.reply.get("err_no") == 0

    def summary(self) -> str:
        if self.transport_error:
            return self.transport_error
        if self.reply is None:
            return f"HTTP {self.status}, not JSON"
        if "err_no" in self.reply:
            return f"HTTP {self.status}, err_no {self.reply.get('err_no')}"
        return f"HTTP {self.status}, code {self.reply.get('code')}"

    def message(self) -> str:
        if self.reply is None:
            return self.transport_error or self.body[:200].decode("utf-8", "replace")
        return str(self.reply.get("err_msg", self.reply.get("message", "")))[:300]


@dataclasses.dataclass
class CaseResult:
    name: str
    expect_ok: bool
    ours: Answer
    real: Answer
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "expect": "success" if self.expect_ok else "error", "passed": self.passed,
                "detail": self.detail, "ours": self.ours.summary(), "real": self.real.summary(),
                "ours_ms": round(self.ours.seconds * 1000, 1), "real_ms": round(self.real.seconds * 1000, 1),
                "ours_message": self.ours.message(), "real_message": self.real.message(),
                "deliberate_difference": DELIBERATE_DIFFERENCES.get(self.name, "")}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8")


def build_cases(images: list[Path], max_single: int = 8) -> list[Case]:
    """Good single requests (up to ``max_single`` images), a batch of two, every bad kind, a good one last."""
    if not images:
        raise ValueError("no images to send")
    encoded = [_b64(p.read_bytes()) for p in images]
    cases = [Case(f"single_{i}_{p.name}", _json({"key": ["image"], "value": [encoded[i]], "logid": i + 1}), True,
                  images=1)
             for i, p in enumerate(images[:max_single])]
    pair = (encoded * 2)[:2]
    cases.append(Case("batch_2", _json({"key": ["image_0", "image_1"], "value": pair, "logid": 100}), True,
                      images=2))
    first = encoded[0]
    cases += [
        Case("not_json", b"this body is not JSON {", False),
        Case("bad_base64", _json({"key": ["image"], "value": ["%%% not base64 %%%"]}), False),
        Case("not_an_image", _json({"key": ["image"], "value": [_b64(NOT_AN_IMAGE)]}), False),
        Case("empty_lists", _json({"key": [], "value": []}), False),
        Case("missing_key", _json({"value": [first]}), False),
        Case("mismatched_lengths", _json({"key": ["image", "image_1"], "value": [first]}), False),
        Case("wrong_service", _json({"key": ["image"], "value": [first]}), False, service="no_such_service"),
        Case("single_after_bad", _json({"key": ["image"], "value": [first], "logid": 200}), True, images=1),
    ]
    return cases


def send(base_url: str, case: Case, timeout: float = 60.0) -> Answer:
    url = f"{base_url.rstrip('/')}/{case.service}/prediction"
    request = urllib.request.Request(url, data=case.body, method="POST",
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        return Answer(0, b"", time.perf_counter() - start, transport_error=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    return Answer(status, body, seconds, reply if isinstance(reply, dict) else None)


def parse_values(reply: dict[str, Any]) -> dict[str, Any]:
    """``{"class_id": [..], "prob": [..], "label": [..]}`` from the string values of an answer."""
    keys, values = reply.get("key") or [], reply.get("value") or []
    if len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys but {len(values)} values")
    return {k: ast.literal_eval(v) for k, v in zip(keys, values)}  # noqa: B905 - lengths checked; runs on 3.9


def compare_success(ours: dict[str, Any], real: dict[str, Any], images: int, atol: float = ATOL) -> str:
    """``""`` when the two successful answers agree, else what differs."""
    try:
        a, b = parse_values(ours), parse_values(real)
    except (ValueError, SyntaxError) as exc:
        return f"unreadable values ({exc})"
    problems = []
    for key in ("class_id", "prob"):
        if key not in a or key not in b:
            problems.append(f"{key} missing (ours {sorted(a)}, real {sorted(b)})")
    if problems:
        return "; ".join(problems)
    if len(a["class_id"]) != images or len(b["class_id"]) != images:
        problems.append(f"expected {images} results, got ours {len(a['class_id'])} real {len(b['class_id'])}")
    if a["class_id"] != b["class_id"]:
        problems.append(f"class_id ours {a['class_id']} real {b['class_id']}")
    if len(a["prob"]) != len(b["prob"]) or any(abs(x - y) > atol for x, y in zip(a["prob"], b["prob"])):  # noqa: B905
        problems.append(f"prob ours {a['prob']} real {b['prob']} (atol {atol})")
    if "label" in a and "label" in b and a["label"] != b["label"]:
        problems.append(f"label ours {a['label']} real {b['label']}")
    return "; ".join(problems)


def judge(case: Case, ours: Answer, real: Answer, atol: float = ATOL) -> CaseResult:
    if ours.transport_error or real.transport_error:
        detail = f"no answer: ours {ours.summary()}, real {real.summary()}"
        return CaseResult(case.name, case.expect_ok, ours, real, False, detail)
    if ours.ok != real.ok:
        detail = f"disagree: ours {'success' if ours.ok else 'error'}, real {'success' if real.ok else 'error'}"
        return CaseResult(case.name, case.expect_ok, ours, real, False, detail)
    if ours.ok != case.expect_ok:
        detail = f"both answered {'success' if ours.ok else 'error'}, expected the opposite"
        return CaseResult(case.name, case.expect_ok, ours, real, False, detail)
    if ours.ok:
        problem = compare_success(ours.reply or {}, real.reply or {}, case.images, atol)
        detail = problem or "same class_id/label, prob within atol"
        return CaseResult(case.name, case.expect_ok, ours, real, not problem, detail)
    return CaseResult(case.name, case.expect_ok, ours, real, True, "both error")


@dataclasses.dataclass
class Report:
    results: list[CaseResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def latency_ms(self) -> dict[str, float]:
        """Median per-request latency of the good single-image cases, per server."""
        singles = [r for r in self.results if r.expect_ok and r.name.startswith("single_")]
        if not singles:
            return {}
        return {"ours_p50_ms": round(statistics.median(r.ours.seconds for r in singles) * 1000, 1),
                "real_p50_ms": round(statistics.median(r.real.seconds for r in singles) * 1000, 1),
                "requests": len(singles)}

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "cases": [r.to_dict() for r in self.results], "latency": self.latency_ms()}

    def to_markdown(self) -> str:
        lines = ["| case | expected | ours | real Paddle Serving | result |", "|---|---|---|---|---|"]
        for r in self.results:
            lines.append(f"| {r.name} | {'success' if r.expect_ok else 'error'} | {r.ours.summary()} | "
                         f"{r.real.summary()} | {'pass' if r.passed else 'FAIL'}: {r.detail} |")
        return "\n".join(lines)


def run_differential(ours_url: str, real_url: str, images: list[Path], max_single: int = 8,
                     atol: float = ATOL) -> Report:
    """Send every case to both servers (ours first, then real, case by case) and judge each."""
    results = []
    for case in build_cases(images, max_single):
        ours, real = send(ours_url, case), send(real_url, case)
        result = judge(case, ours, real, atol)
        logger.info("%-28s %s | ours %s | real %s | %s", case.name, "pass" if result.passed else "FAIL",
                    ours.summary(), real.summary(), result.detail)
        results.append(result)
    return Report(results)


def rpc_predict(address: str, image: Path, timeout_ms: int = 30000) -> dict[str, Any]:
    """One prediction through Paddle Serving's gRPC ``PipelineClient`` (Paddle Serving env only)."""
    from paddle_serving_server.pipeline import PipelineClient

    client = PipelineClient()
    client.connect([address])
    answer = client.predict(feed_dict={"image": _b64(image.read_bytes())}, fetch=None)
    return {"err_no": int(answer.err_no), "err_msg": str(answer.err_msg), "key": list(answer.key),
            "value": list(answer.value)}


def rpc_check(address: str, image: Path, compare_url: str | None = None, atol: float = ATOL) -> tuple[bool, str]:
    reply = rpc_predict(address, image)
    if reply["err_no"] != 0:
        return False, f"gRPC answer err_no {reply['err_no']}: {reply['err_msg']}"
    if compare_url is None:
        return True, f"gRPC answer {reply['key']} = {reply['value']}"
    http = send(compare_url, Case("rpc_reference", _json({"key": ["image"], "value": [_b64(image.read_bytes())]}),
                                  True, images=1))
    if not http.ok:
        return False, f"HTTP reference answer failed: {http.summary()} {http.message()}"
    problem = compare_success(reply, http.reply or {}, 1, atol)
    return (not problem), (problem or f"gRPC and HTTP agree: {reply['key']} = {reply['value']}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    cmp_ = sub.add_parser("compare", help="send the same requests to both servers")
    cmp_.add_argument("--ours", required=True, help="our service's base URL, e.g. http://127.0.0.1:18301")
    cmp_.add_argument("--real", required=True, help="real Paddle Serving's base URL, e.g. http://127.0.0.1:18300")
    cmp_.add_argument("--images", required=True, help="an image or a folder of images (searched recursively)")
    cmp_.add_argument("--max-single", "--max_single", type=int, default=8,
                      help="good single-image requests at most (default: %(default)s)")
    cmp_.add_argument("--atol", type=float, default=ATOL, help="prob tolerance (default: %(default)s)")
    cmp_.add_argument("--json", default=None, help="write the report as JSON here")
    rpc = sub.add_parser("rpc", help="one prediction through PipelineClient (run with the Paddle Serving env)")
    rpc.add_argument("--address", required=True, help="host:rpc_port, e.g. 127.0.0.1:9300")
    rpc.add_argument("--image", required=True)
    rpc.add_argument("--compare-url", "--compare_url", default=None,
                     help="the same server's HTTP base URL: the gRPC answer must match its HTTP answer")
    rpc.add_argument("--atol", type=float, default=ATOL)
    rpc.add_argument("--workdir", default=None,
                     help="run from here: importing Paddle Serving's pipeline creates PipelineServingLogs/ in the "
                          "working directory (default: the current one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = get_args_parser().parse_args(argv)
    if args.action == "rpc":
        image = Path(args.image).resolve()
        if not image.is_file():
            logger.error("%s: no such image", image)
            return EXIT_USAGE
        if args.workdir:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
            os.chdir(args.workdir)
        ok, detail = rpc_check(args.address, image, args.compare_url, args.atol)
        print(f"rpc {args.address}: {'pass' if ok else 'FAIL'}: {detail}")
        return EXIT_OK if ok else EXIT_FAILED
    try:
        images = list_images(args.images)
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    report = run_differential(args.ours, args.real, images, args.max_single, args.atol)
    print(report.to_markdown())
    latency = report.latency_ms()
    if latency:
        print(f"median latency of {latency['requests']} single-image requests: ours {latency['ours_p50_ms']} ms, "
              f"real Paddle Serving {latency['real_p50_ms']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    failed = [r.name for r in report.results if not r.passed]
    print(f"differential: {len(report.results) - len(failed)} passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    return EXIT_OK if report.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
