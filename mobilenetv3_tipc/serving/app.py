"""The HTTP app (Starlette): Paddle Serving's pipeline HTTP protocol plus health, metrics and limits.

Routes:

* ``POST /<name>/<method>``: a prediction (``<name>`` must be ``imagenet``, the
  method segment is free, as upstream; ``prediction`` by convention);
* ``GET /health``: 200 ``{"status": "ready", ...}`` once the model is loaded and
  warmed up, else 503 (``loading``, ``unhealthy`` or ``shutting_down``);
* ``GET /health/live``: 200 while the process answers;
* ``GET /metrics``: Prometheus text format.

Only predictions count against ``max_concurrent_requests``: health and metrics
answer at any load. Parsing, image decoding and preprocessing run in a pool of
``worker_num`` threads and inference in the batcher's threads, so the event loop
only moves bytes. A request whose client disconnects, whose timeout expires or
that the shutdown cuts off is cancelled: still queued, it never reaches the model;
still being preprocessed, it stops before its next image.

:func:`build_runtime` loads the model (blocking) and :func:`create_app` wraps a
runtime; tests build both in-process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mobilenetv3_tipc.data.labels import labels_for
from mobilenetv3_tipc.export.layout import LABEL_LIST
from mobilenetv3_tipc.serving.backends import BackendFactory, label_dir, make_backend_factory
from mobilenetv3_tipc.serving.batcher import Arrival, BatcherStopped, BatchFuture, DynamicBatcher
from mobilenetv3_tipc.serving.config import SERVICE_NAME, ConfigError, ServingConfig
from mobilenetv3_tipc.serving.metrics import ServingMetrics
from mobilenetv3_tipc.serving.op import Cancelled, ImagenetOp
from mobilenetv3_tipc.serving.protocol import (
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
    # Set (on the event loop) when the shutdown grace period is about to end: in-flight requests
    # are answered err_no 3001 at once, before the server cancels them.
    cutoff: asyncio.Event = field(default_factory=asyncio.Event)
    active_requests: int = 0  # predictions in progress (event-loop thread only)
    stop_by: float | None = None  # time.monotonic() by which a shutdown must be complete

    def remaining_grace(self) -> float:
        grace = self.config.graceful_shutdown_timeout_s
        return grace if self.stop_by is None else max(0.5, self.stop_by - time.monotonic())

    @property
    def ready(self) -> bool:
        return self.batcher.healthy and not self.shutting_down

    def stop(self, timeout_s: float = 10.0) -> None:
        self.shutting_down = True
        self.batcher.stop(timeout_s)
        self.pool.shutdown(wait=False, cancel_futures=True)


def read_labels(num_classes: int, model_dir: Any) -> list[str] | None:
    """The label names for the model; a label file that cannot be read is a start-up error naming it."""
    path = model_dir / LABEL_LIST
    try:
        return labels_for(num_classes, model_dir)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the label list "
                          "as UTF-8") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the label list ({exc})") from None


def build_runtime(config: ServingConfig, backend_factory: BackendFactory | None = None,
                  start_timeout_s: float | None = 300.0) -> ServingRuntime:
    """Load the model in ``op.concurrency`` workers, warm each up, resolve label names.

    Raises the loading error (``UnsupportedConfig`` for a device this machine lacks,
    ``ConfigError`` for a bad ``model_config`` or label list).
    """
    service = config.service
    factory = backend_factory or make_backend_factory(service.model)
    metrics = ServingMetrics(SERVICE_NAME)
    op = ImagenetOp(max_request_pixels=service.max_request_pixels)
    batcher = DynamicBatcher(
        factory, workers=service.concurrency, max_batch_size=service.batch_size,
        batch_timeout_s=service.batch_timeout_s, warmup_shape=op.input_shape, on_batch=metrics.observe_batch,
    )
    batcher.start(start_timeout_s)
    num_classes = batcher.num_classes or 0
    try:
        op.labels = read_labels(num_classes, label_dir(service.model))
    except ConfigError:
        batcher.stop(5)
        raise
    pool = ThreadPoolExecutor(max_workers=config.worker_num, thread_name_prefix="preprocess")
    runtime = ServingRuntime(config=config, batcher=batcher, op=op, metrics=metrics, pool=pool)
    runtime.info = {
        "service": SERVICE_NAME,
        "model_config": str(service.model.model_dir),
        "backend": service.model.backend,
        "engine": batcher.engine,
        "device": service.model.device.describe(),
        "num_classes": num_classes,
        "labels": "named" if op.labels else "class ids",
        "concurrency": service.concurrency,
        "batch_size": service.batch_size,
        "auto_batching_timeout_ms": service.auto_batching_timeout,
    }
    metrics.track_queue(batcher.queue_depth)
    metrics.track_ready(lambda: runtime.ready)
    logger.info("model ready: %s", json.dumps(runtime.info))
    return runtime


class BodyTooLarge(Exception):
    def __init__(self, size: int | None, limit: int) -> None:
        what = f"{size} bytes" if size is not None else "larger"
        super().__init__(f"request body is {what}, more than the limit of {limit} bytes (max_body_size_mb)")


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class ModelError(Exception):
    """The model call failed; the backend's exception is the ``__cause__``."""


class Rejected(ProtocolError):
    """A protocol answer with an HTTP status other than 200."""

    def __init__(self, err_no: int, message: str, status: int) -> None:
        super().__init__(err_no, message)
        self.status = status


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, refusing (before reading it all) anything above ``limit`` bytes or ``timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(None, limit)
                chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone from None
    except TimeoutError:
        raise Rejected(INPUT_PARAMS_ERROR, f"the request body did not arrive within body_timeout_s = {timeout_s:g} s "
                                           f"({size} bytes received)", 408) from None
    return b"".join(chunks)


async def _client_disconnected(request: Request) -> None:
    """Return when the client closes the connection (the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@dataclass
class Outcome:
    parsed: PipelineRequest
    probs: np.ndarray
    timings: dict[str, float]
    model_end: float | None


def _resolve(future: Future[Outcome], value: Outcome | None = None, exc: BaseException | None = None) -> None:
    """Complete ``future`` from any thread, unless its waiter has already given up (cancelled it)."""
    if future.set_running_or_notify_cancel():
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


class Job:
    """One prediction on its way through the pool and the batcher; :meth:`cancel` stops it wherever it is."""

    def __init__(self, body: bytes, name: str, started: float, deadline: float | None, arrival: Arrival) -> None:
        self.body, self.name, self.started, self.deadline = body, name, started, deadline
        self.arrival = arrival
        self.result: Future[Outcome] = Future()
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._queued: BatchFuture | None = None

    def queue(self, batch: np.ndarray) -> BatchFuture:
        with self._lock:
            if self.cancelled.is_set():
                raise Cancelled
            self._queued = self.arrival.submit(batch, self.deadline)
            return self._queued

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            if self._queued is not None:
                self._queued.cancel()  # still queued: the batcher drops it before the model runs


@dataclass
class AccessRecord:
    logid: int | None = None
    clientip: str = ""
    images: int = 0
    outcome: str = "answered"


class PredictionHandler:
    def __init__(self, runtime: ServingRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config

    async def __call__(self, request: Request, name: str, method: str) -> Response:
        start = time.perf_counter()
        record = AccessRecord()
        status = 200
        metrics = self.runtime.metrics
        metrics.in_flight.labels(SERVICE_NAME).inc()
        try:
            payload = await self._answer(request, name, record, start)
        except ClientGone:
            record.outcome = "client_disconnected"
            metrics.client_disconnects.labels(SERVICE_NAME).inc()
            self._log(request, 499, None, record, time.perf_counter() - start)
            return Response(status_code=499)  # nobody reads it
        except Rejected as exc:
            payload, status = response(exc.err_no, exc.message), exc.status
        except ProtocolError as exc:
            if record.logid is None:
                record.logid = exc.logid
            payload = response(exc.err_no, exc.message)
            if exc.err_no in (CLOSED_ERROR, INIT_ERROR):
                status = 503
        except BodyTooLarge as exc:
            payload, status = response(INPUT_PARAMS_ERROR, str(exc)), 413
        except Exception as exc:  # noqa: BLE001 - the server answers every request, never crashes on one
            logger.exception("unexpected error (logid %s)", record.logid)
            payload = response(UNKNOWN, f"unexpected error (logid {record.logid}): {type(exc).__name__}: {exc}")
        finally:
            metrics.in_flight.labels(SERVICE_NAME).dec()
        seconds = time.perf_counter() - start
        # Metrics and the access-log line are written once the answer is sent (off the latency path).
        return JSONResponse(payload, status_code=status,
                            background=BackgroundTask(self._record, request, status, payload, record, seconds))

    async def _record(self, request: Request, status: int, payload: dict[str, Any], record: AccessRecord,
                      seconds: float) -> None:
        self.runtime.metrics.observe_request(payload["err_no"], seconds)
        self._log(request, status, payload, record, seconds)

    async def _answer(self, request: Request, name: str, record: AccessRecord, start: float) -> dict[str, Any]:
        runtime = self.runtime
        if name != SERVICE_NAME:
            raise ProtocolError(NO_SERVICE, f"Failed to inference: Service name error. This service is "
                                            f"{SERVICE_NAME!r}; the URL asked for {name[:64]!r}")
        if runtime.shutting_down or runtime.batcher.stopping:
            raise ProtocolError(CLOSED_ERROR, "the service is shutting down")
        if not runtime.ready:
            raise ProtocolError(INIT_ERROR, "the model is not ready (see GET /health)")
        if runtime.active_requests >= self.config.max_concurrent_requests:
            raise Rejected(CLOSED_ERROR, f"busy: {runtime.active_requests} requests in progress, the limit "
                                         "(max_concurrent_requests); retry later", 503)
        timeout_s = self.config.service.timeout_s
        runtime.active_requests += 1
        try:
            async with asyncio.timeout(timeout_s):  # None: no limit
                return await self._until_cutoff(self._predict(request, name, record, start, timeout_s))
        except TimeoutError:
            raise ProtocolError(TIMEOUT, f"the request took longer than op.{SERVICE_NAME}.timeout = "
                                         f"{self.config.service.timeout} ms (queue + preprocessing + "
                                         "inference)") from None
        finally:
            runtime.active_requests -= 1

    async def _until_cutoff(self, work: Any) -> dict[str, Any]:
        """Await ``work``; cancel it (and answer err_no 3001) when the shutdown grace period is about to end."""
        task = asyncio.ensure_future(work)
        cutoff = asyncio.ensure_future(self.runtime.cutoff.wait())
        try:
            done, _ = await asyncio.wait({task, cutoff}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cutoff.cancel()
            if not task.done():
                task.cancel()  # its cleanup cancels the job wherever it is
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
        if task in done:
            return task.result()
        grace = self.config.graceful_shutdown_timeout_s
        raise ProtocolError(CLOSED_ERROR, f"the service stopped before this request finished "
                                          f"(graceful_shutdown_timeout_s = {grace:g})")

    async def _predict(self, request: Request, name: str, record: AccessRecord, start: float,
                       timeout_s: float | None) -> dict[str, Any]:
        runtime = self.runtime
        deadline = None if timeout_s is None else time.monotonic() + timeout_s - (time.perf_counter() - start)
        # From here until it is queued, the request counts as on its way: a partial batch waits for it.
        with runtime.batcher.incoming() as arrival:
            body = await read_body(request, self.config.max_body_bytes, self.config.body_timeout_s)
            job = Job(body, name, start, deadline, arrival)
            runtime.pool.submit(self._prepare, job)
            outcome = await self._wait(request, job)
        parsed = outcome.parsed
        record.logid, record.clientip, record.images = parsed.logid, parsed.clientip, len(parsed.images)
        keys, values = runtime.op.postprocess(outcome.probs)
        if parsed.profile:
            now = time.perf_counter()
            if outcome.model_end is not None:
                outcome.timings["return"] = now - outcome.model_end
            parts = [f"{k}:{v * 1000:.2f}ms" for k, v in outcome.timings.items()]
            keys.append(PROFILE_KEY)
            values.append(" ".join([*parts, f"total:{(now - start) * 1000:.2f}ms"]))
        return response(OK, "", keys, values)

    async def _wait(self, request: Request, job: Job) -> Outcome:
        """The job's outcome; the job is cancelled if the client leaves or we are (timeout, shutdown cut-off)."""
        answer = asyncio.wrap_future(job.result)
        gone = asyncio.ensure_future(_client_disconnected(request))
        try:
            done, _ = await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not answer.done():
                answer.cancel()
                job.cancel()
        if answer in done:
            try:
                return answer.result()
            except BatcherStopped as exc:
                raise ProtocolError(CLOSED_ERROR, str(exc)) from None
            except TimeoutError as exc:
                raise ProtocolError(TIMEOUT, f"{exc} (op.{SERVICE_NAME}.timeout = "
                                             f"{self.config.service.timeout} ms)") from None
            except ModelError as exc:
                cause = exc.__cause__
                raise ProtocolError(UNKNOWN, f"inference failed: {type(cause).__name__}: {cause}") from cause
        raise ClientGone

    def _prepare(self, job: Job) -> None:
        """Parse, decode, preprocess and queue a request (runs in the pool); ``job.result`` gets the outcome."""
        timings: dict[str, float] = {}
        parsed: PipelineRequest | None = None
        try:
            if job.cancelled.is_set():
                raise Cancelled
            mark = time.perf_counter()
            timings["receive"] = mark - job.started
            parsed = parse_request(job.body, self.config.service.max_images_per_request)
            if parsed.name and parsed.name != job.name:
                raise ProtocolError(NO_SERVICE, f"Failed to inference: Service name error. The body names "
                                                f"{parsed.name[:64]!r}, the URL {job.name[:64]!r}",
                                    logid=parsed.logid)
            now = time.perf_counter()
            timings["parse"] = now - mark
            batch = self.runtime.op.preprocess(parsed, job.cancelled)
            mark, now = now, time.perf_counter()
            timings["preprocess"] = now - mark
            queued = job.queue(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the request's coroutine, which answers it
            if isinstance(exc, ProtocolError) and exc.logid is None and parsed is not None:
                exc.logid = parsed.logid
            _resolve(job.result, exc=exc)
            return
        queued.add_done_callback(lambda done: self._finish(job, parsed, timings, now, done))

    @staticmethod
    def _finish(job: Job, parsed: PipelineRequest, timings: dict[str, float], queued_at: float,
                done: BatchFuture) -> None:
        """The model call is over (batcher thread): hand the rows or the error to the request."""
        if done.cancelled():
            _resolve(job.result, exc=Cancelled())
            return
        error = done.exception()
        if error is not None:
            if not isinstance(error, (BatcherStopped, TimeoutError)):
                wrapped = ModelError()
                wrapped.__cause__ = error
                error = wrapped
            _resolve(job.result, exc=error)
            return
        if done.model_start is not None and done.model_end is not None:
            timings["queue"] = done.model_start - queued_at
            timings["infer"] = done.model_end - done.model_start
        _resolve(job.result, Outcome(parsed, done.result(), timings, done.model_end))

    def _log(self, request: Request, status: int, payload: dict[str, Any] | None, record: AccessRecord,
             seconds: float) -> None:
        client = request.client
        line: dict[str, Any] = {
            "logid": record.logid, "clientip": record.clientip,
            "peer": f"{client.host}:{client.port}" if client else "", "method": request.method,
            "path": request.scope["path"], "status": status, "images": record.images,
            "latency_ms": round(seconds * 1000, 2),
        }
        if payload is None:
            line["outcome"] = record.outcome
        else:
            line["err_no"] = payload["err_no"]
            if payload["err_no"] != OK:
                line["err_msg"] = payload["err_msg"][:300]
        access_logger.info(json.dumps(line, ensure_ascii=False))


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

    Plain Starlette (no FastAPI): the routes take no typed parameters, and each layer
    FastAPI adds costs event-loop time on every request.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        runtime.shutting_down = True
        if stop_runtime_on_shutdown:
            logger.info("shutting down: finishing queued requests")
            await asyncio.get_running_loop().run_in_executor(None, runtime.stop, runtime.remaining_grace())

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
