"""Optional scale-out: the same service as Ray Serve replicas (same URL, protocol and config.yml).

Not part of the default install (Ray is ~500 MB and adds latency on a single small
node); for several machines:

    pip install "ray[serve]"
    ray start --head --node-ip-address=<head ip>            # on the head node
    ray start --address=<head ip>:6379                      # on every other node
    RAY_USAGE_STATS_ENABLED=0 python deploy/serving_python/ray_serve_app.py \
        --config deploy/serving_python/config.yml --num-replicas 4 --address auto \
        --host 0.0.0.0 --port 18080

Each replica loads the model with the ``op.imagenet`` settings of config.yml
(``concurrency`` inference workers, dynamic batching, ``thread_num`` threads) and
answers ``POST /imagenet/prediction``, ``GET /health`` and ``GET /metrics`` with the
very handlers of ``app.py``. Ray's HTTP proxy (one per node) spreads requests over
the replicas. ``http_port``/``http_host`` of config.yml are replaced by ``--port`` /
``--host``; the model path must exist on every node. Runs until SIGINT/SIGTERM, then
shuts the application down. See README.md, "Scale-out with Ray Serve".
"""

# No `from __future__ import annotations` here: Ray pickles the deployment class by value, and
# FastAPI (Ray Serve's ingress needs a FastAPI app) must see the real `Request` class in the route
# signatures, not the string "Request".
import argparse
import logging
import os
import signal
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from mobilenetv3_tipc.cli import EXIT_OK, EXIT_USAGE, add_flag, setup_logging, skipped
from mobilenetv3_tipc.serving.config import ConfigError, apply_overrides, read_yaml, validate
from mobilenetv3_tipc.serving.server import DEFAULT_CONFIG

logger = logging.getLogger("ray_serve_app")


def build_application(raw_config: dict[str, Any], num_replicas: int = 1, num_cpus: float = 1.0) -> Any:
    """A Ray Serve application whose replicas each serve the pipeline protocol."""
    from ray import serve

    ingress = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @serve.deployment(num_replicas=num_replicas, ray_actor_options={"num_cpus": num_cpus},
                      max_ongoing_requests=max(8, int(raw_config.get("worker_num", 1)) * 4),
                      health_check_period_s=10, graceful_shutdown_timeout_s=20)
    @serve.ingress(ingress)
    class ImagenetPipeline:
        def __init__(self, conf: dict[str, Any]) -> None:
            from mobilenetv3_tipc.serving.app import PredictionHandler, build_runtime

            setup_logging()
            self.runtime = build_runtime(validate(conf))
            self.handler = PredictionHandler(self.runtime)

        def check_health(self) -> None:
            if not self.runtime.ready:
                raise RuntimeError("the model workers are not healthy")

        def __del__(self) -> None:
            runtime = getattr(self, "runtime", None)
            if runtime is not None and not runtime.shutting_down:
                runtime.stop(5)

        @ingress.get("/health")
        async def health(self) -> JSONResponse:
            from mobilenetv3_tipc.serving.app import health_response

            return health_response(self.runtime)

        @ingress.get("/metrics")
        async def metrics(self) -> Response:
            from mobilenetv3_tipc.serving.app import metrics_response

            return metrics_response(self.runtime)

        @ingress.post("/{name}/{method}")
        async def prediction(self, request: Request, name: str, method: str) -> JSONResponse:
            return await self.handler(request, name, method)

    return ImagenetPipeline.bind(raw_config)


def run_in_own_group(stop: threading.Event) -> int | None:
    """Fork: the child (returns None) becomes the Ray driver in a process group of its own.

    The local Ray's daemons (GCS, raylet, dashboard, log monitor) are children of the driver in
    its process group. A SIGTERM to the group the caller started (how the chains stop a server)
    would end them together with the driver, and ``serve.shutdown()`` would then wait its 30 s
    for the lost controller while in-flight requests die with the raylet (measured: 33-41 s).
    So the parent keeps the caller's group, forwards SIGTERM/SIGINT to the child and returns
    the child's exit code; the child shuts Serve and Ray down cleanly (~4 s) and also does so
    when the parent is gone (e.g. SIGKILLed). Same session, so a session-wide check still
    sees every Ray process.
    """
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)

        def watch_parent() -> None:
            while not stop.wait(0.5):
                if os.getppid() != parent:
                    logger.warning("the launching process %d is gone: shutting down", parent)
                    stop.set()

        threading.Thread(target=watch_parent, name="watch-parent", daemon=True).start()
        return None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", default=str(DEFAULT_CONFIG), help="pipeline config.yml")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides, as web_service.py")
    parser.add_argument("--num-replicas", type=int, default=2, help="model replicas (default: 2)")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs reserved per replica (default: 1)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join ('auto' = the local `ray start` cluster); default: a local Ray")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP proxy host (default: %(default)s)")
    parser.add_argument("--port", type=int, default=None, help="HTTP proxy port (default: config http_port)")
    add_flag(parser, "ray-num-cpus", type=int, default=None,
             help="CPUs of the local Ray started here (default: Ray's choice, every core)")
    add_flag(parser, "ray-temp-dir", default=None,
             help="Ray's session folder (default: Ray's /tmp/ray; keep it short: Ray's socket paths are limited)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging()
    try:
        raw = apply_overrides(read_yaml(args.config), args.opt)
        config = validate(raw)
    except ConfigError as exc:
        logger.error("%s: %s", args.config, exc)
        return EXIT_USAGE
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        return skipped(f'Ray Serve is not installed ({exc}): pip install "ray[serve]" (optional, not in '
                       "requirements.txt)")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    stop = threading.Event()
    if args.address is None:
        exit_code = run_in_own_group(stop)
        if exit_code is not None:
            return exit_code
    model_dir = config.service.model.model_dir.resolve()
    raw = apply_overrides(raw, [f"op.imagenet.local_service_conf.model_config={model_dir}"])
    local = {} if args.address else {"num_cpus": args.ray_num_cpus, "_temp_dir": args.ray_temp_dir}
    ray.init(address=args.address, include_dashboard=False, configure_logging=False,
             **{key: value for key, value in local.items() if value is not None})
    serve.start(http_options={"host": args.host, "port": args.port or config.http_port})
    serve.run(build_application(raw, args.num_replicas, args.num_cpus), name="imagenet", route_prefix="/")
    logger.info("Ray Serve: %d replica(s) on http://%s:%d/imagenet/prediction", args.num_replicas, args.host,
                args.port or config.http_port)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    logger.info("shutting down Ray Serve")
    serve.shutdown()
    ray.shutdown()
    return EXIT_OK


