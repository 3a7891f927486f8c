"""The serving benchmark API for benchmark/: benchmark_model starts a server, measures it, stops it.

Figures only (no timing assertions): the result has one row per level with every field, the
counts are bounded, and the server process is gone afterwards.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from deploy.serving_python.benchmark import benchmark_model, run_benchmark
from deploy.serving_python.server_control import ServerStartError, running_server
from tests.test_serving_support import DEMO_JPG, tiny_models

ROW_KEYS = {"concurrency", "requests", "errors", "seconds", "requests_per_s", "images_per_s", "p50_ms", "p90_ms",
            "p99_ms", "max_ms", "mean_images_per_model_call", "first_error"}


def test_benchmark_model_measures_each_level_and_stops_the_server(tmp_path_factory: pytest.TempPathFactory,
                                                                   tmp_path: Path) -> None:
    model_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    log = tmp_path / "server.log"
    result = benchmark_model(model_dir, levels=(1, 4), requests=16, duration_s=30, warmup=2, log_path=log)
    assert [row["concurrency"] for row in result["levels"]] == [1, 4]
    for row in result["levels"]:
        assert set(row) == ROW_KEYS
        assert row["requests"] == 16 and row["errors"] == 0 and row["first_error"] == ""
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["requests_per_s"] > 0 and row["images_per_s"] == row["requests_per_s"]
        assert row["mean_images_per_model_call"] >= 1
    assert result["server"] == {"model_config": str(model_dir), "backend": "paddle", "opts": []}
    json.dumps(result)  # plain JSON for benchmark/'s results file
    text = log.read_text()
    assert "server stopped" in text  # stopped with SIGTERM and drained, not killed


def test_running_server_reports_a_failed_start(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError) as info, running_server(tmp_path / "no_model", ready_timeout_s=60):
        pytest.fail("a server without a model must not become ready")
    assert info.value.exit_code == 1 and "model_config" in str(info.value)


def test_running_server_stops_its_process(tmp_path_factory: pytest.TempPathFactory) -> None:
    model_dir, _ = tiny_models(tmp_path_factory.getbasetemp())
    with running_server(model_dir, opts=["op.imagenet.batch_size=4"]) as url:
        result = run_benchmark(f"{url}/imagenet/prediction", DEMO_JPG, [2], requests=6, warmup=1)
        port = int(url.rsplit(":", 1)[1])
    assert result["levels"][0]["errors"] == 0 and result["levels"][0]["requests"] == 6
    with pytest.raises(ConnectionRefusedError):  # the server is gone: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_run_benchmark_refuses_remote_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        run_benchmark("http://192.0.2.1:18080/imagenet/prediction", DEMO_JPG, [1])
    with pytest.raises(ValueError, match="concurrency levels"):
        run_benchmark("http://127.0.0.1:1/imagenet/prediction", DEMO_JPG, [0])
