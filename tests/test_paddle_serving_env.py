"""Finding the Python 3.9 interpreter for real Paddle Serving; unavailable means skipped (exit 77), never passed."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from mobilenetv3_tipc.serving import paddle_serving_env as env_mod
from mobilenetv3_tipc.serving.paddle_serving_env import EnvBuildError, EnvUnavailable, find_interpreter


def test_missing_interpreter_is_a_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "python3.9"
    with pytest.raises(EnvUnavailable, match="does not run"):
        find_interpreter({"PADDLE_SERVING_PYTHON": str(missing), "PATH": os.environ.get("PATH", "")})
    monkeypatch.setenv("PADDLE_SERVING_PYTHON", str(missing))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert env_mod.main(["ensure"]) == 77
    err = capsys.readouterr().err
    assert err.startswith("SKIPPED: real Paddle Serving:") and str(missing) in err
    assert not (tmp_path / "cache").exists()  # nothing built


def test_wrong_version_is_a_skip_naming_it() -> None:
    with pytest.raises(EnvUnavailable, match=r"is Python 3\.1\d.*needs 3\.9"):
        find_interpreter({"PADDLE_SERVING_PYTHON": sys.executable, "PATH": os.environ.get("PATH", "")})


def test_nothing_found_on_an_empty_path(tmp_path: Path) -> None:
    with pytest.raises(EnvUnavailable, match="no Python 3.9 found"):
        find_interpreter({"PATH": str(tmp_path)})


def test_requirements_are_pinned_with_the_no_deps_line() -> None:
    normal, no_deps = env_mod.read_requirements()
    assert no_deps == ["paddle-serving-app==0.9.0"]
    assert all("==" in line for line in normal), [line for line in normal if "==" not in line]
    names = {line.split("==")[0].lower() for line in normal}
    assert {"paddle-serving-server", "paddle-serving-client", "paddlepaddle", "numpy",
            "opencv-python-headless"} <= names


def test_env_dir_is_keyed_by_requirements_and_version(tmp_path: Path) -> None:
    req = tmp_path / "req.txt"
    req.write_text("a==1\n", encoding="utf-8")
    interp = env_mod.Interpreter(Path("/x/python3.9"), (3, 9, 18), "test")
    first = env_mod.env_dir(interp, req, {"XDG_CACHE_HOME": str(tmp_path)})
    assert first.parent == tmp_path / "mobilenetv3-tipc" and first.name.startswith("paddle-serving-py39-")
    req.write_text("a==2\n", encoding="utf-8")
    assert env_mod.env_dir(interp, req, {"XDG_CACHE_HOME": str(tmp_path)}) != first


def _fake_python(tmp_path: Path, output: str) -> Path:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit 1\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_pip_without_network_is_a_skip_other_failures_are_errors(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    log.write_text("", encoding="utf-8")
    offline = _fake_python(tmp_path, "ERROR: Could not install: Failed to establish a new connection")
    with pytest.raises(EnvUnavailable, match="no network"):
        env_mod._run_pip(offline, ["x"], log)
    log.write_text("", encoding="utf-8")
    broken = _fake_python(tmp_path, "ERROR: Failed building wheel for x")
    with pytest.raises(EnvBuildError, match="pip install failed"):
        env_mod._run_pip(broken, ["x"], log)


def test_subprocess_env_puts_the_repository_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PADDLE_SERVING_PYTHONPATH", "/extra")
    monkeypatch.setenv("VIRTUAL_ENV", "/work/venv")
    env = env_mod.subprocess_env(Path("/repo"))
    assert env["PYTHONPATH"] == os.pathsep.join(["/extra", "/repo"]) and "VIRTUAL_ENV" not in env
