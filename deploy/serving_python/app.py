"""The FastAPI app: Paddle Serving's pipeline HTTP protocol plus health, metrics and limits.

Routes:

* ``POST /<name>/<method>``: a prediction (``<name>`` must be ``imagenet``, the
  method segment is free, as upstream; ``prediction`` by convention);
* ``GET /health``: 200 ``{"status": "ready", ...}`` once the model is loaded and
  warmed up, else 503 (``loading``, ``unhealthy`` or ``shutting_down``);
* ``GET /health/live``: 200 while the process answers;
* ``GET /metrics``: Prometheus text format.

Parsing, image decoding and preprocessing run in a thread pool of ``worker_num``
threads and inference in the batcher's threads, so the event loop only moves
bytes. :func:`build_runtime` loads the model (blocking) and :func:`create_app`
wraps a runtime; tests build both in-process and call the app with httpx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from deploy.serving_python.backends import BackendFactory, label_dir, make_backend_factory
from deploy.serving_python.batcher import BatcherStopped, DynamicBatcher
from deploy.serving_python.imagenet_op import ImagenetOp
from deploy.serving_python.metrics import ServingMetrics
from deploy.serving_python.protocol import (
    CLOSED_ERROR,
    INIT_ERROR,
    INPUT_PARAMS_ERROR,
    NO_SERVICE,
    OK,
    PROFILE_KEY,
    TIMEOUT,
    UNKNOWN,
    ProtocolError,
    parse_request,
    response,
)
from deploy.serving_python.serving_config import SERVICE_NAME, ServingConfig
from vision.labels import labels_for

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("serving.access")


@dataclass
class ServingRuntime:
    """A loaded model behind a batcher, the Op and the thread pool for request parsing/preprocessing."""

    config: ServingConfig
    batcher: DynamicBatcher
    op: ImagenetOp
    metrics: ServingMetrics
    pool: ThreadPoolExecutor
    shutting_down: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.batcher.healthy and not self.shutting_down

    def stop(self, timeout_s: float = 10.0) -> None:
        self.shutting_down = True
        self.batcher.stop(timeout_s)
        self.pool.shutdown(wait=False, cancel_futures=True)


def build_runtime(config: ServingConfig, backend_factory: BackendFactory | None = None,
                  start_timeout_s: float | None = 300.0) -> ServingRuntime:
    """Load the model in ``op.concurrency`` workers, warm each up, resolve label names.

    Raises the loading error (``UnsupportedConfig`` for a device this machine lacks,
    ``ConfigError`` for a bad ``model_config``).
    """
    op_conf = config.op
    factory = backend_factory or make_backend_factory(op_conf.model)
    metrics = ServingMetrics(SERVICE_NAME)
    op = ImagenetOp()
    batcher = DynamicBatcher(
        factory, workers=op_conf.concurrency, max_batch_size=op_conf.batch_size,
        batch_timeout_s=max(0, op_conf.auto_batching_timeout_ms) / 1000.0, warmup_shape=op.input_shape,
        on_batch=metrics.observe_batch,
    )
    batcher.start(start_timeout_s)
    num_classes = batcher.num_classes or 0
    op.labels = labels_for(num_classes, label_dir(op_conf.model))
    pool = ThreadPoolExecutor(max_workers=config.worker_num, thread_name_prefix="preprocess")
    runtime = ServingRuntime(config=config, batcher=batcher, op=op, metrics=metrics, pool=pool)
    runtime.info = {
        "service": SERVICE_NAME,
        "model_config": str(op_conf.model.model_config),
        "backend": op_conf.model.backend,
        "device": op_conf.model.device.describe(),
        "num_classes": num_classes,
        "labels": "named" if op.labels else "class ids",
        "concurrency": op_conf.concurrency,
        "batch_size": op_conf.batch_size,
        "auto_batching_timeout_ms": op_conf.auto_batching_timeout_ms,
    }
    metrics.track_queue(batcher.queue_depth)
    metrics.track_ready(lambda: runtime.ready)
    logger.info("model ready: %s", json.dumps(runtime.info))
    return runtime


class BodyTooLarge(Exception):
    def __init__(self, size: int | None, limit: int) -> None:
        what = f"{size} bytes" if size is not None else "larger"
        super().__init__(f"request body is {what}, more than the limit of {limit} bytes (max_body_size_mb)")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything above ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class _Access:
    logid: int | None = None
    clientip: str = ""
    images: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class PredictionHandler:
    def __init__(self, runtime: ServingRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config

    async def __call__(self, request: Request, name: str, method: str) -> JSONResponse:
        start = time.perf_counter()
        access = _Access()
        status = 200
        self.runtime.metrics.in_flight.labels(SERVICE_NAME).inc()
        try:
            payload = await self._answer(request, name, access, start)
        except ProtocolError as exc:
            if access.logid is None:
                access.logid = exc.logid
            payload = response(exc.err_no, exc.message)
            if exc.err_no in (CLOSED_ERROR, INIT_ERROR):
                status = 503
        except BodyTooLarge as exc:
            payload, status = response(INPUT_PARAMS_ERROR, str(exc)), 413
        except Exception as exc:  # noqa: BLE001 - the server answers every request, never crashes on one
            logger.exception("unexpected error (logid %s)", access.logid)
            payload = response(UNKNOWN, f"unexpected error (logid {access.logid}): {type(exc).__name__}: {exc}")
        finally:
            self.runtime.metrics.in_flight.labels(SERVICE_NAME).dec()
        seconds = time.perf_counter() - start
        self.runtime.metrics.observe_request(payload["err_no"], seconds)
        self._log(request, status, payload, access, seconds)
        return JSONResponse(payload, status_code=status)

    async def _answer(self, request: Request, name: str, access: _Access, start: float) -> dict[str, Any]:
        if name != SERVICE_NAME:
            raise ProtocolError(NO_SERVICE, f"Failed to inference: Service name error. This service is "
                                            f"{SERVICE_NAME!r}; the URL asked for {name[:64]!r}")
        if self.runtime.shutting_down or self.runtime.batcher.stopping:
            raise ProtocolError(CLOSED_ERROR, "the service is shutting down")
        if not self.runtime.ready:
            raise ProtocolError(INIT_ERROR, "the model is not ready (see GET /health)")
        timeout_s = self.config.op.timeout_s
        work = self._predict(request, name, access, start, timeout_s)
        if timeout_s is None:
            return await work
        try:
            return await asyncio.wait_for(work, timeout_s)
        except TimeoutError:
            raise ProtocolError(TIMEOUT, f"the request took longer than op.{SERVICE_NAME}.timeout = "
                                         f"{self.config.op.timeout_ms} ms (queue + preprocessing + "
                                         "inference)") from None

    async def _predict(self, request: Request, name: str, access: _Access, start: float,
                       timeout_s: float | None) -> dict[str, Any]:
        runtime = self.runtime
        loop = asyncio.get_running_loop()
        body = await read_body(request, self.config.max_body_bytes)
        mark = time.perf_counter()
        parsed = await loop.run_in_executor(runtime.pool, parse_request, body,
                                            self.config.op.max_images_per_request)
        access.logid, access.clientip, access.images = parsed.logid, parsed.clientip, len(parsed.images)
        if parsed.name and parsed.name != name:
            raise ProtocolError(NO_SERVICE, f"Failed to inference: Service name error. The body names "
                                            f"{parsed.name[:64]!r}, the URL {name[:64]!r}")
        access.timings["parse"] = time.perf_counter() - mark
        mark = time.perf_counter()
        batch = await loop.run_in_executor(runtime.pool, runtime.op.preprocess, parsed)
        access.timings["preprocess"] = time.perf_counter() - mark
        mark = time.perf_counter()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s - (time.perf_counter() - start)
        try:
            probs = await asyncio.wrap_future(runtime.batcher.submit(batch, deadline))
        except BatcherStopped as exc:
            raise ProtocolError(CLOSED_ERROR, str(exc)) from None
        except TimeoutError as exc:
            raise ProtocolError(TIMEOUT, f"{exc} (op.{SERVICE_NAME}.timeout = "
                                         f"{self.config.op.timeout_ms} ms)") from None
        except Exception as exc:  # noqa: BLE001 - a failed model call is answered, not raised
            raise ProtocolError(UNKNOWN, f"inference failed (logid {parsed.logid}): "
                                         f"{type(exc).__name__}: {exc}") from exc
        access.timings["infer"] = time.perf_counter() - mark
        keys, values = runtime.op.postprocess(probs)
        if parsed.profile:
            total = time.perf_counter() - start
            parts = [f"{k}:{v * 1000:.2f}ms" for k, v in access.timings.items()]
            keys.append(PROFILE_KEY)
            values.append(" ".join([*parts, f"total:{total * 1000:.2f}ms"]))
        return response(OK, "", keys, values)

    def _log(self, request: Request, status: int, payload: dict[str, Any], access: _Access,
             seconds: float) -> None:
        client = request.client
        record = {
            "logid": access.logid, "clientip": access.clientip,
            "peer": f"{client.host}:{client.port}" if client else "", "method": request.method,
            "path": request.url.path, "status": status, "err_no": payload["err_no"], "images": access.images,
            "latency_ms": round(seconds * 1000, 2),
        }
        if payload["err_no"] != OK:
            record["err_msg"] = payload["err_msg"][:300]
        access_logger.info(json.dumps(record, ensure_ascii=False))


def health_response(runtime: ServingRuntime) -> JSONResponse:
    """200 ``{"status": "ready", ...}`` once loaded and warmed up, else 503 with the state."""
    if runtime.ready:
        return JSONResponse({"status": "ready", **runtime.info})
    if runtime.shutting_down or runtime.batcher.stopping:
        state = "shutting_down"
    elif runtime.batcher.num_classes is None:
        state = "loading"
    else:
        state = "unhealthy"
    return JSONResponse({"status": state}, status_code=503)


def metrics_response(runtime: ServingRuntime) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(runtime: ServingRuntime, stop_runtime_on_shutdown: bool = True) -> FastAPI:
    """The HTTP app over a loaded runtime; stops the runtime when the server shuts down."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.shutting_down = True
        if stop_runtime_on_shutdown:
            logger.info("shutting down: finishing queued requests")
            await asyncio.get_running_loop().run_in_executor(
                None, runtime.stop, runtime.config.graceful_shutdown_timeout_s)

    app = FastAPI(title=f"{SERVICE_NAME} pipeline service", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    handler = PredictionHandler(runtime)

    @app.get("/health")
    async def health() -> JSONResponse:
        return health_response(runtime)

    @app.get("/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return metrics_response(runtime)

    @app.post("/{name}/{method}")
    async def prediction(request: Request, name: str, method: str) -> JSONResponse:
        return await handler(request, name, method)

    app.state.runtime = runtime
    return app
