"""Differential judging and process-group control for real Paddle Serving, without the Python 3.9 env."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mobilenetv3_tipc.serving import paddle_serving_process as ps
from mobilenetv3_tipc.serving.differential import Answer, Case, build_cases, judge
from tests.fixtures.processes import REPO


def _answer(err_no: int = 0, values: list[str] | None = None, status: int = 200) -> Answer:
    reply = {"err_no": err_no, "err_msg": "", "key": ["label", "prob", "class_id"] if values else [],
             "value": values or [], "tensors": []}
    return Answer(status, json.dumps(reply).encode(), 0.01, reply)


GOOD = Case("single", b"{}", True, images=1)
BAD = Case("bad_base64", b"{}", False)


def test_success_must_match_ids_labels_and_probs_within_atol() -> None:
    ours = _answer(values=["['cat']", "[0.25557]", "[0]"])
    assert judge(GOOD, ours, _answer(values=["['cat']", "[0.25558]", "[0]"])).passed
    assert not judge(GOOD, ours, _answer(values=["['cat']", "[0.2557]", "[0]"])).passed  # 1.3e-4 apart
    assert not judge(GOOD, ours, _answer(values=["['dog']", "[0.25557]", "[1]"])).passed


def test_both_must_agree_on_success_and_meet_the_expectation() -> None:
    error_real = Answer(400, b'{"code":3}', 0.01, {"code": 3, "message": "bad"})
    assert judge(BAD, _answer(5000), _answer(10000)).passed  # different err_no: a reported, not failed, difference
    assert judge(BAD, _answer(5000), error_real).passed
    result = judge(GOOD, _answer(values=["['cat']", "[0.3]", "[0]"]), _answer(10000))
    assert not result.passed and "disagree" in result.detail
    both_ok = ["['cat']", "[0.3]", "[0]"]
    assert not judge(BAD, _answer(values=both_ok), _answer(values=both_ok)).passed
    assert not judge(GOOD, Answer(0, b"", 0.0, transport_error="refused"), _answer()).passed


def test_case_list_has_every_bad_kind(tmp_path: Path) -> None:
    names = [c.name for c in build_cases([REPO / "images" / "demo.jpg"])]
    for kind in ("batch_2", "not_json", "bad_base64", "not_an_image", "empty_lists", "missing_key",
                 "mismatched_lengths", "wrong_service", "single_after_bad"):
        assert kind in names


def test_listening_sees_a_listening_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not ps.listening(port)
        sock.listen()
        assert ps.listening(port)
    assert not ps.listening(port)


def _group(tmp_path: Path, ignore_term: bool) -> ps.PaddleServing:
    """A process group like the real server's: a parent and a child, the child holding a listening port."""
    child = ("import signal, socket, time\n"
             + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
             + "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
             f"open({str(tmp_path / 'port')!r}, 'w').write(str(s.getsockname()[1]))\n"
             "time.sleep(120)\n")
    parent = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(120)\n"
    proc = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "port").is_file() or not (tmp_path / "port").read_text():
        assert time.monotonic() < deadline, "the fake server did not start"
        time.sleep(0.05)
    port = int((tmp_path / "port").read_text())
    return ps.PaddleServing(proc.pid, port, port, tmp_path, tmp_path / "log")


@pytest.mark.parametrize("ignore_term", [False, True])
def test_stop_ends_the_whole_group_and_frees_the_port(tmp_path: Path, ignore_term: bool) -> None:
    server = _group(tmp_path, ignore_term)
    assert len(ps.group_members(server.pgid)) == 2 and ps.listening(server.http_port)
    clean = ps.stop(server, timeout=1.0 if ignore_term else 10.0)
    assert clean is not ignore_term  # SIGKILL was needed only when SIGTERM is ignored
    assert ps.group_members(server.pgid) == [] and not ps.listening(server.http_port)


def test_start_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(ps.PaddleServingError, match="already in use"):
            ps.start(sys.executable, tmp_path, tmp_path, sock.getsockname()[1], 1)


def test_pid_file_round_trip(tmp_path: Path) -> None:
    server = ps.PaddleServing(123, 18300, 9300, tmp_path, tmp_path / "paddle_serving.log")
    assert ps.PaddleServing.from_json(server.to_json()) == server
    assert server.url == "http://127.0.0.1:18300/imagenet/prediction" and server.rpc_address == "127.0.0.1:9300"


# -- the serving chain's backend plan (no server started) ----------------------------------------------------

SERVING_CFG = """===========================serving_params===========================
model_name:tiny
python:python
web_service:deploy/serving_python/web_service.py --config deploy/serving_python/config.yml
--opt op.imagenet.local_service_conf.model_config:./inference/tiny_infer/
pipeline:deploy/serving_python/pipeline_http_client.py
"""


def _plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "", env: str = ""):  # noqa: ANN202
    from mobilenetv3_tipc.tipc import chain
    from mobilenetv3_tipc.tipc.serving_chain import ServingChain

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TIPC_PYTHON", sys.executable)
    if env:
        monkeypatch.setenv("TIPC_SERVING_BACKEND", env)
    else:
        monkeypatch.delenv("TIPC_SERVING_BACKEND", raising=False)
    path = tmp_path / "cfg.txt"
    path.write_text(SERVING_CFG + extra)
    return ServingChain(chain.make_context("serving", str(path), "", "r.log"))


def test_backends_default_to_ours_and_follow_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [b.name for b in _plan(tmp_path, monkeypatch).backends] == ["ours"]
    both = _plan(tmp_path, monkeypatch, "serving_backend:ours|paddle_serving\n")
    assert [b.name for b in both.backends] == ["paddle_serving", "ours"]  # real first: both up for the differential
    assert both.serving_server.name == "serving_server" and "test_tipc/output/tiny" in str(both.serving_server)
    assert [b.name for b in _plan(tmp_path, monkeypatch, "serving_backend:paddle_serving|ours\n", env="ours")
            .backends] == ["ours"]


def test_upstream_convert_line_means_both_backends_and_our_converter(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(tmp_path, monkeypatch, "trans_model:-m paddle_serving_client.convert\n--model_filename:m.pdmodel\n"
                                        "--serving_server:./x/serving_server/\n")
    assert [b.name for b in plan.backends] == ["paddle_serving", "ours"]
    flags = plan.convert_flags()
    assert flags[flags.index("--model_filename") + 1] == "m.pdmodel"
    assert flags[flags.index("--serving_server") + 1] == str(REPO / "x" / "serving_server")
    assert "paddle.fluid" in plan.real.convert_note()


@pytest.mark.parametrize(("extra", "message"), [
    ("serving_backend:ours|triton\n", "cfg.txt:7: serving_backend 'ours|triton': each must be one of ours, "
                                      "paddle_serving"),
    ("trans_model:tools/convert_it.py\n", "cfg.txt:7: trans_model 'tools/convert_it.py' is not supported"),
    ("serving_backends:ours\n", "cfg.txt:7: serving_backends is not supported"),
])
def test_bad_backend_keys_are_errors_naming_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str,
                                                     message: str) -> None:
    from mobilenetv3_tipc.tipc.config import ConfigError

    with pytest.raises(ConfigError) as info:
        _plan(tmp_path, monkeypatch, extra)
    assert message in str(info.value)
