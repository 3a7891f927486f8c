"""Dynamic batching (mobilenetv3_tipc/serving/batcher.py) and the app's timeouts and failure handling.

Most tests use a fake backend whose class is the dominant colour channel of the image
(red 0, green 1, blue 2), so the rows of a merged batch can be traced back to their
requests; one test batches the tiny exported Paddle model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from mobilenetv3_tipc.cli import UnsupportedConfig
from mobilenetv3_tipc.serving.app import ServingRuntime, build_runtime, create_app
from mobilenetv3_tipc.serving.batcher import BatcherStopped, DynamicBatcher
from mobilenetv3_tipc.serving.protocol import TIMEOUT, UNKNOWN
from tests.fixtures.serving import (
    COLOURS,
    SHAPE,
    FakeBackend,
    FakeServers,
    app_config,
    b64,
    b64_file,
    lite_images,
    make_jpeg,
    request_body,
    serve_in_thread,
    tiny_models,
)


def coloured(index: int, rows: int = 1) -> np.ndarray:
    batch = np.zeros((rows, *SHAPE), np.float32)
    batch[:, index] = 1.0
    return batch


def batcher_with(backend: FakeBackend, **kwargs: object) -> DynamicBatcher:
    batcher = DynamicBatcher(lambda worker: backend, warmup_shape=SHAPE, **kwargs)
    batcher.start(10)
    backend.warm = True
    return batcher


# -- the batcher -------------------------------------------------------------------------------------------


def test_concurrent_submissions_are_merged_and_routed_back() -> None:
    backend = FakeBackend(delay=0.05)
    batcher = batcher_with(backend, max_batch_size=8, batch_timeout_s=0.05)
    try:
        futures = [batcher.submit(coloured(i % 3)) for i in range(12)]
        results = [f.result(10) for f in futures]
    finally:
        batcher.stop()
    assert [int(r.argmax()) for r in results] == [i % 3 for i in range(12)]
    assert sum(backend.sizes) == 12
    assert max(backend.sizes) <= 8
    assert len(backend.sizes) < 12, backend.sizes
    assert batcher.model_calls == len(backend.sizes)


def test_wait_window_groups_requests_that_arrive_apart() -> None:
    """A request still being prepared (inside incoming()) is waited for and joins the batch."""
    backend = FakeBackend()
    batcher = batcher_with(backend, max_batch_size=4, batch_timeout_s=5.0)
    try:
        with batcher.incoming() as second_request:
            first = batcher.submit(coloured(0))
            time.sleep(0.05)
            second = second_request.submit(coloured(1, rows=2))
        assert [int(r.argmax()) for r in first.result(5)] == [0]
        assert [int(r.argmax()) for r in second.result(5)] == [1, 1]
    finally:
        batcher.stop()
    assert backend.sizes == [3]


def test_lone_request_does_not_wait_for_the_window() -> None:
    """With no other request on its way, a partial batch runs at once (the window is 60 s here)."""
    backend = FakeBackend()
    batcher = batcher_with(backend, max_batch_size=8, batch_timeout_s=60.0)
    try:
        with batcher.incoming() as arrival:
            future = arrival.submit(coloured(2))
        assert int(future.result(10).argmax()) == 2
        assert int(batcher.submit(coloured(1)).result(10).argmax()) == 1
    finally:
        batcher.stop()
    assert backend.sizes == [1, 1]


def test_abandoned_incoming_request_ends_the_wait() -> None:
    """A request that fails while being prepared (never submitted) releases the waiting batch."""
    backend = FakeBackend()
    batcher = batcher_with(backend, max_batch_size=8, batch_timeout_s=60.0)
    try:
        with pytest.raises(ValueError), batcher.incoming():
            first = batcher.submit(coloured(0))
            time.sleep(0.05)
            assert not first.done()  # waiting: a request is still on its way
            raise ValueError("bad image")
        assert int(first.result(10).argmax()) == 0
    finally:
        batcher.stop()
    assert backend.sizes == [1]


def test_no_wait_when_timeout_is_zero() -> None:
    backend = FakeBackend()
    batcher = batcher_with(backend, max_batch_size=8, batch_timeout_s=0.0)
    try:
        for i in range(3):
            batcher.submit(coloured(i)).result(5)
    finally:
        batcher.stop()
    assert backend.sizes == [1, 1, 1]


@pytest.mark.timeout(120)
def test_full_batch_does_not_wait_for_the_window() -> None:
    # The window (1 h) cannot run out during the test: answers prove the full batch was dispatched at once.
    backend = FakeBackend()
    batcher = batcher_with(backend, max_batch_size=2, batch_timeout_s=3600.0)
    try:
        futures = [batcher.submit(coloured(0)), batcher.submit(coloured(1))]
        assert [int(f.result(60).argmax()) for f in futures] == [0, 1]
    finally:
        batcher.stop()
    assert backend.sizes == [2]


def test_oversized_request_runs_alone_and_batch_cap_holds() -> None:
    backend = FakeBackend(delay=0.1)
    batcher = batcher_with(backend, max_batch_size=4, batch_timeout_s=0.05)
    try:
        blocker = batcher.submit(coloured(0))
        time.sleep(0.02)  # the model is busy with `blocker`; the rest queue up
        big = batcher.submit(coloured(1, rows=6))
        small = [batcher.submit(coloured(2, rows=3)), batcher.submit(coloured(2, rows=2))]
        assert big.result(5).shape == (6, 4)
        assert [f.result(5).shape[0] for f in small] == [3, 2]
        blocker.result(5)
    finally:
        batcher.stop()
    assert 6 in backend.sizes
    assert all(size <= 4 for size in backend.sizes if size != 6), backend.sizes


def test_abandoned_and_expired_requests_never_reach_the_model() -> None:
    backend = FakeBackend(delay=0.2)
    batcher = batcher_with(backend, max_batch_size=1)
    try:
        busy = batcher.submit(coloured(0))
        time.sleep(0.05)
        cancelled = batcher.submit(coloured(1, rows=5))
        assert cancelled.cancel()
        expired = batcher.submit(coloured(2, rows=7), deadline=time.monotonic() + 0.01)
        busy.result(5)
        with pytest.raises(TimeoutError):
            expired.result(5)
        batcher.submit(coloured(0)).result(5)
    finally:
        batcher.stop()
    assert 5 not in backend.sizes and 7 not in backend.sizes


def test_model_error_fails_only_its_batch() -> None:
    backend = FakeBackend(fail_on_blue=True)
    batcher = batcher_with(backend, max_batch_size=4)
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            batcher.submit(coloured(2)).result(5)
        assert batcher.submit(coloured(0)).result(5).argmax() == 0
        assert batcher.healthy
    finally:
        batcher.stop()


def test_stop_drains_queue_then_refuses_work() -> None:
    backend = FakeBackend(delay=0.05)
    batcher = batcher_with(backend, max_batch_size=1)
    futures = [batcher.submit(coloured(i % 3)) for i in range(4)]
    batcher.stop(10)
    assert all(f.done() and f.exception() is None for f in futures)
    assert not batcher.healthy
    with pytest.raises(BatcherStopped):
        batcher.submit(coloured(0))


def test_load_error_is_raised_by_start() -> None:
    def factory(worker: int) -> FakeBackend:
        raise UnsupportedConfig("GPU inference needs CUDA")

    batcher = DynamicBatcher(factory, workers=2, warmup_shape=SHAPE)
    with pytest.raises(UnsupportedConfig, match="CUDA"):
        batcher.start(10)


def test_several_workers_share_the_queue() -> None:
    backends: list[FakeBackend] = []

    def factory(worker: int) -> FakeBackend:
        backend = FakeBackend(delay=0.05)
        backends.append(backend)
        return backend

    batcher = DynamicBatcher(factory, workers=2, max_batch_size=2, batch_timeout_s=0.01, warmup_shape=SHAPE)
    batcher.start(10)
    for backend in backends:
        backend.warm = True
    try:
        futures = [batcher.submit(coloured(i % 3)) for i in range(12)]
        assert [int(f.result(10).argmax()) for f in futures] == [i % 3 for i in range(12)]
    finally:
        batcher.stop()
    assert all(b.sizes for b in backends), "both workers ran batches"


# -- through the HTTP app ----------------------------------------------------------------------------------


@pytest.fixture
def fake_server() -> Iterator[Callable[..., tuple[str, FakeBackend, ServingRuntime]]]:
    with FakeServers() as servers:
        yield servers.start


def post_all(url: str, bodies: list[dict[str, object]]) -> list[dict[str, object]]:
    def one(body: dict[str, object]) -> dict[str, object]:
        with httpx.Client(timeout=30) as http:
            return http.post(f"{url}/imagenet/prediction", content=json.dumps(body)).json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_concurrent_http_requests_use_fewer_model_calls(fake_server: Callable[..., tuple]) -> None:
    url, backend, _ = fake_server(FakeBackend(delay=0.15), batch_size=8, auto_batching_timeout=50)
    bodies = [request_body([b64(make_jpeg(color=COLOURS[i % 3]))], logid=i) for i in range(10)]
    replies = post_all(url, bodies)
    assert all(r["err_no"] == 0 for r in replies), replies
    assert [r["value"][2] for r in replies] == [f"[{i % 3}]" for i in range(10)]
    assert sum(backend.sizes) == 10
    assert len(backend.sizes) < 10, backend.sizes
    metrics = httpx.get(f"{url}/metrics").text
    count = float(next(line.split()[-1] for line in metrics.splitlines()
                       if line.startswith("serving_batch_size_count")))
    assert count == len(backend.sizes)


def test_lone_http_request_does_not_wait_for_the_window(fake_server: Callable[..., tuple]) -> None:
    """One request at a time never sits out auto_batching_timeout (60 s here; the client gives up at 20 s)."""
    url, backend, _ = fake_server(FakeBackend(), batch_size=8, auto_batching_timeout=60000, timeout=0)
    with httpx.Client(timeout=20) as http:
        for i in range(3):
            body = request_body([b64(make_jpeg(color=COLOURS[i]))], logid=i)
            reply = http.post(f"{url}/imagenet/prediction", content=json.dumps(body)).json()
            assert reply["err_no"] == 0 and reply["value"][2] == f"[{i}]", reply
    assert backend.sizes == [1, 1, 1]


def test_profile_reports_the_request_stages(fake_server: Callable[..., tuple]) -> None:
    url, _, _ = fake_server(FakeBackend(), auto_batching_timeout=0)
    body = {"key": ["image", "pipeline.profile"], "value": [b64(make_jpeg(color=COLOURS[1])), "1"]}
    reply = httpx.post(f"{url}/imagenet/prediction", content=json.dumps(body), timeout=30).json()
    assert reply["err_no"] == 0 and reply["key"][-1] == "pipeline.profile", reply
    stages = dict(part.split(":") for part in reply["value"][-1].split())
    assert list(stages) == ["receive", "parse", "preprocess", "queue", "infer", "return", "total"]
    assert all(v.endswith("ms") and float(v[:-2]) >= 0 for v in stages.values())


class GatedBackend(FakeBackend):
    """Its first model call blocks until :attr:`release` is set; :attr:`finished` is set when it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def run(self, batch: np.ndarray) -> np.ndarray:
        if not self.warm or self.entered.is_set():
            return super().run(batch)
        self.entered.set()
        self.release.wait(60)
        try:
            return super().run(batch)
        finally:
            self.finished.set()


@pytest.mark.timeout(180)
def test_timeout_answers_6000_and_server_recovers(fake_server: Callable[..., tuple]) -> None:
    url, backend, _ = fake_server(GatedBackend(), timeout=500, auto_batching_timeout=0)
    body = request_body([b64(make_jpeg(color=COLOURS[0]))])
    try:
        slow = httpx.post(f"{url}/imagenet/prediction", content=json.dumps(body), timeout=30).json()
        assert slow["err_no"] == TIMEOUT and "timeout" in slow["err_msg"], slow
        # the answer came while the model call was still blocked: the op timeout, not the model, ended it
        assert backend.entered.is_set() and not backend.finished.is_set()
    finally:
        backend.release.set()
    assert backend.finished.wait(30)  # the abandoned model call returns
    ok = httpx.post(f"{url}/imagenet/prediction", content=json.dumps(body), timeout=30).json()
    assert ok["err_no"] == 0 and ok["value"][2] == "[0]", ok
    assert backend.sizes == [1, 1]


def test_model_failure_answers_10000_and_server_recovers(fake_server: Callable[..., tuple]) -> None:
    url, _, _ = fake_server(FakeBackend(fail_on_blue=True), auto_batching_timeout=0)
    bad = httpx.post(f"{url}/imagenet/prediction",
                     content=json.dumps(request_body([b64(make_jpeg(color=COLOURS[2]))]))).json()
    assert bad["err_no"] == UNKNOWN and "simulated model failure" in bad["err_msg"], bad
    good = httpx.post(f"{url}/imagenet/prediction",
                      content=json.dumps(request_body([b64(make_jpeg(color=COLOURS[1]))]))).json()
    assert good["err_no"] == 0 and good["value"][2] == "[1]"
    assert httpx.get(f"{url}/health").status_code == 200


def test_real_model_batches_concurrent_requests(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    model_dir, _ = tiny_models(base)
    images = lite_images(base)
    runtime = build_runtime(app_config(model_dir, batch_size=8, auto_batching_timeout=200))
    try:
        with serve_in_thread(create_app(runtime, stop_runtime_on_shutdown=False)) as url:
            calls_before = runtime.batcher.model_calls
            singles = post_all(url, [request_body([b64_file(p)]) for p in images[:8]])
            calls = runtime.batcher.model_calls - calls_before
    finally:
        runtime.stop()
    assert all(r["err_no"] == 0 for r in singles), singles
    assert calls < 8, calls
