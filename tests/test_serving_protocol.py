"""The Paddle Serving pipeline protocol of mobilenetv3_tipc.serving over real HTTP.

One runtime (tiny exported Paddle model, see tests/fixtures/serving.py) behind one uvicorn
server (in a thread of the test process, on a free loopback port) serves the whole module.
"""

from __future__ import annotations

import ast
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from mobilenetv3_tipc.serving.app import ServingRuntime, build_runtime, create_app
from mobilenetv3_tipc.serving.config import validate
from mobilenetv3_tipc.serving.protocol import (
    INPUT_PARAMS_ERROR,
    NO_SERVICE,
    decode_base64,
    parse_request,
)
from tests.fixtures.bad_requests import BAD_INPUTS, MAX_BODY_MB, MAX_IMAGES
from tests.fixtures.serving import (
    TINY_LABELS,
    b64,
    b64_file,
    lite_images,
    make_jpeg,
    request_body,
    serve_in_thread,
    tiny_models,
)

URL = "/imagenet/prediction"
FIELDS = {"err_no", "err_msg", "key", "value", "tensors"}


def make_config(model_dir: Path, **op: object) -> object:
    op_conf = {"concurrency": 1, "batch_size": 4, "auto_batching_timeout": 2, "timeout": 30000,
               "max_images_per_request": MAX_IMAGES, **op,
               "local_service_conf": {"model_config": str(model_dir), "devices": "", "thread_num": 1}}
    return validate({"worker_num": 2, "max_body_size_mb": MAX_BODY_MB, "op": {"imagenet": op_conf}})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_models(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return lite_images(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def runtime(models: tuple[Path, Path]) -> Iterator[ServingRuntime]:
    rt = build_runtime(make_config(models[0]))
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def client(runtime: ServingRuntime) -> Iterator[httpx.Client]:
    with serve_in_thread(create_app(runtime, stop_runtime_on_shutdown=False)) as base_url, \
            httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def reference(models: tuple[Path, Path], images: list[Path]) -> np.ndarray:
    from mobilenetv3_tipc.data.preprocess import preprocess
    from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, PaddlePredictor

    predictor = PaddlePredictor(models[0], InferenceOptions(enable_mkldnn=False, cpu_threads=1))
    return predictor.run(np.stack([preprocess(p) for p in images]))


def values_of(payload: dict[str, object]) -> dict[str, list[object]]:
    return {k: ast.literal_eval(v) for k, v in zip(payload["key"], payload["value"], strict=True)}


def post(client: httpx.Client, body: object, url: str = URL) -> dict[str, object]:
    reply = client.post(url, content=body if isinstance(body, (bytes, str)) else json.dumps(body))
    assert reply.status_code == 200, reply.text
    payload = reply.json()
    assert set(payload) == FIELDS, payload
    return payload


def assert_good(client: httpx.Client, image: Path) -> None:
    payload = post(client, request_body([b64_file(image)]))
    assert payload["err_no"] == 0, payload


# -- success ---------------------------------------------------------------------------------------------


def test_single_request_matches_paddle_inference(client: httpx.Client, images: list[Path],
                                                 reference: np.ndarray) -> None:
    for index, image in enumerate(images):
        payload = post(client, request_body([b64_file(image)], logid=100 + index))
        assert payload["err_no"] == 0 and payload["err_msg"] == "" and payload["tensors"] == []
        assert payload["key"] == ["label", "prob", "class_id"]
        assert all(isinstance(v, str) for v in payload["value"])
        got = values_of(payload)
        expected = int(np.argmax(reference[index]))
        assert got["class_id"] == [expected]
        assert got["label"] == [TINY_LABELS[expected]]
        assert got["prob"][0] == pytest.approx(float(reference[index][expected]), abs=1e-4)


def test_value_strings_look_like_upstream(client: httpx.Client, images: list[Path]) -> None:
    payload = post(client, request_body([b64_file(images[0])]))
    label, prob, class_id = payload["value"]
    assert label.startswith("['") and label.endswith("']")
    assert prob.startswith("[0.") and prob.endswith("]")
    assert class_id.startswith("[") and class_id[1:-1].isdigit()


def test_batched_request_pairs_every_image(client: httpx.Client, images: list[Path],
                                           reference: np.ndarray) -> None:
    chosen = [0, 5, 9, 14]
    payload = post(client, request_body([b64_file(images[i]) for i in chosen]))
    assert payload["err_no"] == 0, payload
    got = values_of(payload)
    assert len(got["label"]) == len(got["prob"]) == len(got["class_id"]) == len(chosen)
    assert got["class_id"] == [int(np.argmax(reference[i])) for i in chosen]


def test_upstream_request_variants(client: httpx.Client, images: list[Path]) -> None:
    data = b64_file(images[0])
    # numbered keys, logid as a string (proto3 JSON int64), clientip, name in the body, any method segment
    body = {"key": ["image_0", "image_1"], "value": [data, data], "logid": "42", "clientip": "10.0.0.1",
            "name": "imagenet"}
    assert post(client, body, "/imagenet/predict")["err_no"] == 0
    # a STRING tensor instead of key/value
    tensor_body = {"key": [], "value": [], "tensors": [{"name": "image", "elem_type": 12, "str_data": [data]}]}
    assert post(client, tensor_body)["err_no"] == 0
    # base64 with newlines (base64.encodebytes) and without padding
    assert post(client, request_body([data[:60] + "\n" + data[60:]]))["err_no"] == 0
    assert post(client, request_body([data.rstrip("=")]))["err_no"] == 0


def test_pipeline_profile_key(client: httpx.Client, images: list[Path]) -> None:
    body = {"key": ["image", "pipeline.profile"], "value": [b64_file(images[0]), "1"], "logid": 7}
    payload = post(client, body)
    assert payload["err_no"] == 0
    assert payload["key"][-1] == "pipeline.profile"
    assert "total:" in payload["value"][-1]


# -- errors ----------------------------------------------------------------------------------------------


def test_wrong_service_name(client: httpx.Client, images: list[Path]) -> None:
    payload = post(client, request_body([b64_file(images[0])]), "/resnet/prediction")
    assert payload["err_no"] == NO_SERVICE
    assert "Service name error" in payload["err_msg"] and "resnet" in payload["err_msg"]
    assert payload["key"] == [] and payload["value"] == []
    assert_good(client, images[0])


def test_transport_level_errors(client: httpx.Client) -> None:
    assert client.get(URL).status_code == 405
    assert client.post("/imagenet").status_code == 404
    assert client.post("/a/b/c").status_code == 404


def _truncated_jpeg(path: Path) -> str:
    data = path.read_bytes()
    return b64(data[: len(data) // 3])




@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_answered_and_server_keeps_working(client: httpx.Client, images: list[Path],
                                                        case: str) -> None:
    body, err_no, words = BAD_INPUTS[case]
    payload = post(client, body)
    assert payload["err_no"] == err_no, payload
    assert words in payload["err_msg"], payload["err_msg"]
    assert payload["key"] == [] and payload["value"] == [] and payload["tensors"] == []
    assert_good(client, images[1])


def test_truncated_jpeg_and_mixed_batch(client: httpx.Client, images: list[Path]) -> None:
    payload = post(client, request_body([_truncated_jpeg(images[2])]))
    assert payload["err_no"] == INPUT_PARAMS_ERROR
    assert "truncated" in payload["err_msg"] or "decodable" in payload["err_msg"]
    # one bad image fails the request and names which one
    payload = post(client, request_body([b64_file(images[0]), b64(b"junk")]))
    assert payload["err_no"] == INPUT_PARAMS_ERROR and "value[1]" in payload["err_msg"]
    assert_good(client, images[2])


def test_body_size_limit(client: httpx.Client, images: list[Path]) -> None:
    big = "A" * (MAX_BODY_MB * 1024 * 1024 + 10)
    reply = client.post(URL, content=json.dumps({"key": ["image"], "value": [big]}))
    assert reply.status_code == 413
    assert reply.json()["err_no"] == INPUT_PARAMS_ERROR and "limit" in reply.json()["err_msg"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        for _ in range(MAX_BODY_MB * 16 + 1):
            yield b" " * 65536

    reply = client.post(URL, content=chunks())
    assert reply.status_code == 413
    assert_good(client, images[0])


# -- health, metrics, access log ----------------------------------------------------------------------------


def test_health(client: httpx.Client, runtime: ServingRuntime) -> None:
    reply = client.get("/health")
    assert reply.status_code == 200
    info = reply.json()
    assert info["status"] == "ready" and info["num_classes"] == len(TINY_LABELS) and info["backend"] == "paddle"
    assert client.get("/health/live").json() == {"status": "alive"}
    runtime.shutting_down = True
    try:
        reply = client.get("/health")
        assert reply.status_code == 503 and reply.json()["status"] == "shutting_down"
        refused = client.post(URL, content=json.dumps(request_body([b64(make_jpeg())])))
        assert refused.status_code == 503 and refused.json()["err_no"] == 3001
    finally:
        runtime.shutting_down = False
    assert client.get("/health").status_code == 200


def test_metrics(client: httpx.Client, images: list[Path]) -> None:
    assert_good(client, images[0])
    post(client, {"key": ["image"], "value": ["###"]})
    text = client.get("/metrics").text
    assert 'serving_requests_total{err_no="0",service="imagenet"}' in text
    assert 'serving_request_errors_total{err_no="5000",service="imagenet"}' in text
    assert "serving_request_latency_seconds_bucket" in text
    assert "serving_batch_size_bucket" in text
    assert 'serving_ready{service="imagenet"} 1.0' in text


def test_access_log_has_logid(client: httpx.Client, images: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="serving.access"):
        post(client, request_body([b64_file(images[0])], logid=98765))
        post(client, {"key": ["image"], "value": ["###"], "logid": 98766})
        # The line is written right after the answer is sent (off the latency path): wait for it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "serving.access"]
            by_id = {r["logid"]: r for r in records}
            if {98765, 98766} <= set(by_id):
                break
            time.sleep(0.02)
    assert by_id[98765]["err_no"] == 0 and by_id[98765]["images"] == 1 and by_id[98765]["status"] == 200
    assert by_id[98766]["err_no"] == INPUT_PARAMS_ERROR and "base64" in by_id[98766]["err_msg"]
    assert all("latency_ms" in r and "path" in r for r in records)


# -- parser units ------------------------------------------------------------------------------------------


def test_parse_request_units() -> None:
    parsed = parse_request(json.dumps({"key": ["image"], "value": [b64(b"abc")], "logid": 5}).encode(), 4)
    assert parsed.images == [b"abc"] and parsed.logid == 5 and parsed.names == ["value[0] (image)"]
    assert decode_base64("data:image/jpeg;base64," + b64(b"xyz"), "v") == b"xyz"
    assert decode_base64(b64(b"\xfb\xff\xfe").replace("+", "-").replace("/", "_"), "v") == b"\xfb\xff\xfe"
