"""Prometheus metrics of the service (served at ``GET /metrics``).

One registry per app, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class ServingMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.service = service
        labels = ["service"]
        self.requests = Counter("serving_requests", "Prediction requests answered, by err_no (0 = success)",
                                [*labels, "err_no"], registry=self.registry)
        self.errors = Counter("serving_request_errors", "Prediction requests answered with err_no != 0",
                              [*labels, "err_no"], registry=self.registry)
        self.latency = Histogram("serving_request_latency_seconds", "End-to-end prediction request latency",
                                 labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("serving_images", "Images classified", labels, registry=self.registry)
        self.batch_size = Histogram("serving_batch_size", "Images per model call (dynamic batching)", labels,
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("serving_batch_requests", "Requests merged into one model call", labels,
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self.inference = Histogram("serving_inference_seconds", "Model call duration", labels,
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("serving_requests_in_flight", "Prediction requests being processed", labels,
                               registry=self.registry)
        self.queue_depth = Gauge("serving_queue_images", "Images waiting for a model call", labels,
                                 registry=self.registry)
        self.client_disconnects = Counter("serving_client_disconnects",
                                          "Prediction requests whose client closed the connection before the answer",
                                          labels, registry=self.registry)
        self.connections_closed = Counter("serving_connections_closed",
                                          "Connections the server closed, by reason (header_timeout, "
                                          "body_timeout, evicted_idle, refused)", [*labels, "reason"],
                                          registry=self.registry)
        self.ready = Gauge("serving_ready", "1 when the model is loaded and warmed up", labels,
                           registry=self.registry)

    def observe_request(self, err_no: int, seconds: float) -> None:
        self.requests.labels(self.service, str(err_no)).inc()
        if err_no != 0:
            self.errors.labels(self.service, str(err_no)).inc()
        self.latency.labels(self.service).observe(seconds)

    def observe_batch(self, images: int, requests: int, seconds: float) -> None:
        self.batch_size.labels(self.service).observe(images)
        self.batch_requests.labels(self.service).observe(requests)
        self.inference.labels(self.service).observe(seconds)
        self.images.labels(self.service).inc(images)

    def track_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(self.service).set_function(depth)

    def track_ready(self, ready: Callable[[], bool]) -> None:
        self.ready.labels(self.service).set_function(lambda: 1.0 if ready() else 0.0)
