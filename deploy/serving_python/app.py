"""The HTTP app (Starlette): Paddle Serving's pipeline HTTP protocol plus health, metrics and limits.

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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.serving_python.backends import BackendFactory, label_dir, make_backend_factory
from deploy.serving_python.batcher import BatcherStopped, BatchFuture, DynamicBatcher
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
    PipelineRequest,
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
    started: float = 0.0  # perf_counter() when the handler began
    pending: BatchFuture | None = None  # the queued model call, once submitted
    queued: float = 0.0  # perf_counter() when the request was handed to the batcher


class ModelError(Exception):
    """The model call failed; the backend's exception is the ``__cause__``."""


def _settle_threadsafe(loop: asyncio.AbstractEventLoop, answer: asyncio.Future[Any], *,
                       parsed: PipelineRequest | None = None, done: BatchFuture | None = None,
                       exc: BaseException | None = None) -> None:
    """From any thread: complete ``answer`` on its loop with a model result or an error."""

    def settle() -> None:
        if answer.done():
            return
        if done is None:
            answer.set_exception(exc if exc is not None else RuntimeError("no result"))
        elif done.cancelled():
            answer.cancel()
        elif done.exception() is not None:
            error = done.exception()
            if isinstance(error, (BatcherStopped, TimeoutError)):
                answer.set_exception(error)
            else:
                wrapped = ModelError()
                wrapped.__cause__ = error
                answer.set_exception(wrapped)
        else:
            answer.set_result((parsed, done.result()))

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: the server stopped, nobody waits for this answer
        logger.debug("answer dropped: the event loop is closed")


class PredictionHandler:
    def __init__(self, runtime: ServingRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config

    async def __call__(self, request: Request, name: str, method: str) -> JSONResponse:
        start = time.perf_counter()
        access = _Access(started=start)
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
        # Metrics and the access-log line are written once the answer is sent (off the latency path).
        return JSONResponse(payload, status_code=status,
                            background=BackgroundTask(self._record, request, status, payload, access, seconds))

    async def _record(self, request: Request, status: int, payload: dict[str, Any], access: _Access,
                      seconds: float) -> None:
        self.runtime.metrics.observe_request(payload["err_no"], seconds)
        self._log(request, status, payload, access, seconds)

    async def _answer(self, request: Request, name: str, access: _Access, start: float) -> dict[str, Any]:
        if name != SERVICE_NAME:
            raise ProtocolError(NO_SERVICE, f"Failed to inference: Service name error. This service is "
                                            f"{SERVICE_NAME!r}; the URL asked for {name[:64]!r}")
        if self.runtime.shutting_down or self.runtime.batcher.stopping:
            raise ProtocolError(CLOSED_ERROR, "the service is shutting down")
        if not self.runtime.ready:
            raise ProtocolError(INIT_ERROR, "the model is not ready (see GET /health)")
        timeout_s = self.config.op.timeout_s
        try:
            async with asyncio.timeout(timeout_s):  # None: no limit
                return await self._predict(request, name, access, start, timeout_s)
        except TimeoutError:
            raise ProtocolError(TIMEOUT, f"the request took longer than op.{SERVICE_NAME}.timeout = "
                                         f"{self.config.op.timeout_ms} ms (queue + preprocessing + "
                                         "inference)") from None

    async def _predict(self, request: Request, name: str, access: _Access, start: float,
                       timeout_s: float | None) -> dict[str, Any]:
        runtime = self.runtime
        deadline = None if timeout_s is None else time.monotonic() + timeout_s - (time.perf_counter() - start)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[PipelineRequest, np.ndarray]] = loop.create_future()
        # From here until it is queued, the request counts as on its way: a partial batch waits for it.
        with runtime.batcher.incoming() as submit:
            body = await read_body(request, self.config.max_body_bytes)
            # One hop to the pool (parse, decode, preprocess, queue for the model) and one back, when
            # the model call is done: the event loop is not woken in between.
            runtime.pool.submit(self._prepare, body, name, access, deadline, submit, loop, answer)
            try:
                parsed, probs = await answer
            except asyncio.CancelledError:
                if access.pending is not None:
                    access.pending.cancel()  # still queued: the batcher drops it
                raise
            except BatcherStopped as exc:
                raise ProtocolError(CLOSED_ERROR, str(exc)) from None
            except TimeoutError as exc:
                raise ProtocolError(TIMEOUT, f"{exc} (op.{SERVICE_NAME}.timeout = "
                                             f"{self.config.op.timeout_ms} ms)") from None
            except ModelError as exc:
                cause = exc.__cause__
                raise ProtocolError(UNKNOWN, f"inference failed (logid {access.logid}): "
                                             f"{type(cause).__name__}: {cause}") from cause
        pending = access.pending
        if pending is not None and pending.model_start is not None and pending.model_end is not None:
            access.timings["queue"] = pending.model_start - access.queued
            access.timings["infer"] = pending.model_end - pending.model_start
            access.timings["return"] = time.perf_counter() - pending.model_end
        keys, values = runtime.op.postprocess(probs)
        if parsed.profile:
            total = time.perf_counter() - start
            parts = [f"{k}:{v * 1000:.2f}ms" for k, v in access.timings.items()]
            keys.append(PROFILE_KEY)
            values.append(" ".join([*parts, f"total:{total * 1000:.2f}ms"]))
        return response(OK, "", keys, values)

    def _prepare(self, body: bytes, name: str, access: _Access, deadline: float | None,
                 submit: Callable[[np.ndarray, float | None], BatchFuture], loop: asyncio.AbstractEventLoop,
                 answer: asyncio.Future[tuple[PipelineRequest, np.ndarray]]) -> None:
        """Parse, decode, preprocess and queue a request (runs in the pool); ``answer`` gets the result."""
        try:
            if answer.cancelled():
                return
            mark = time.perf_counter()
            access.timings["receive"] = mark - access.started
            parsed = parse_request(body, self.config.op.max_images_per_request)
            access.logid, access.clientip, access.images = parsed.logid, parsed.clientip, len(parsed.images)
            if parsed.name and parsed.name != name:
                raise ProtocolError(NO_SERVICE, f"Failed to inference: Service name error. The body names "
                                                f"{parsed.name[:64]!r}, the URL {name[:64]!r}")
            now = time.perf_counter()
            access.timings["parse"] = now - mark
            batch = self.runtime.op.preprocess(parsed)
            mark, now = now, time.perf_counter()
            access.timings["preprocess"] = now - mark
            access.queued = now
            access.pending = submit(batch, deadline)
        except Exception as exc:  # noqa: BLE001 - handed to the request's coroutine, which answers it
            _settle_threadsafe(loop, answer, exc=exc)
            return
        access.pending.add_done_callback(
            lambda done: _settle_threadsafe(loop, answer, parsed=parsed, done=done))

    def _log(self, request: Request, status: int, payload: dict[str, Any], access: _Access,
             seconds: float) -> None:
        client = request.client
        record = {
            "logid": access.logid, "clientip": access.clientip,
            "peer": f"{client.host}:{client.port}" if client else "", "method": request.method,
            "path": request.scope["path"], "status": status, "err_no": payload["err_no"], "images": access.images,
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


def create_app(runtime: ServingRuntime, stop_runtime_on_shutdown: bool = True) -> Starlette:
    """The HTTP app over a loaded runtime; stops the runtime when the server shuts down.

    A plain Starlette app (FastAPI's router sits on the same classes): the routes take no
    typed parameters, and each layer FastAPI adds costs event-loop time on every request.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        runtime.shutting_down = True
        if stop_runtime_on_shutdown:
            logger.info("shutting down: finishing queued requests")
            await asyncio.get_running_loop().run_in_executor(
                None, runtime.stop, runtime.config.graceful_shutdown_timeout_s)

    handler = PredictionHandler(runtime)

    async def health(request: Request) -> JSONResponse:
        return health_response(runtime)

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    async def metrics(request: Request) -> Response:
        return metrics_response(runtime)

    async def prediction(request: Request) -> Response:
        params = request.path_params
        return await handler(request, params["name"], params["method"])

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/{name}/{method}", prediction, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    return app
