"""The separate Python 3.9 environment that runs real Paddle Serving 0.9, built once and cached.

    python -m mobilenetv3_tipc.serving.paddle_serving_env ensure   # prints the env's python
    python -m mobilenetv3_tipc.serving.paddle_serving_env find     # prints the base interpreter

Paddle Serving 0.9.0 (the last release) has wheels for CPython <= 3.9 only, and its server pins
grpcio 1.33.2 / protobuf 3.20, so it cannot live in the project's Python 3.11 environment. The
interpreter is found by asking, in this order:

1. ``PADDLE_SERVING_PYTHON`` (an explicit choice: if it does not run, that is the answer);
2. pyenv: ``PYENV_VERSION`` when it names a 3.9, else the newest installed 3.9
   (``pyenv prefix <version>``; the ``python3.9`` shim on PATH refuses to run unless a version
   is selected, so the prefix's own ``bin/python3.9`` is used);
3. ``python3.9``, ``python3.8``, ``python3.7`` on PATH that actually run.

``requirements-paddle-serving.txt`` is pinned for 3.9 (numpy 1.26.4 needs >= 3.9, paddlepaddle
2.6.2 has no cp37 wheel), so a 3.8/3.7 found last is reported, not used. The venv lives under
``${XDG_CACHE_HOME:-~/.cache}/mobilenetv3-tipc/`` in a folder named by the hash of the
requirements file and the interpreter version; it is built once (under a lock) and reused.

No usable interpreter, or no network for the first install: a clear reason and exit 77 (the
TIPC chain records the Paddle Serving steps as skipped). A failed install with network is exit 1.
The project's preprocessing and labels are not installed into the env: :func:`subprocess_env`
puts the repository on ``PYTHONPATH`` for each run, so one cached env serves every checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, EXIT_UNSUPPORTED

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements-paddle-serving.txt"
ENV_VAR = "PADDLE_SERVING_PYTHON"
EXTRA_PATH_VAR = "PADDLE_SERVING_PYTHONPATH"
SUPPORTED = (3, 9)
SEARCHED_ON_PATH = ("python3.9", "python3.8", "python3.7")
NO_DEPS_PREFIX = "# no-deps:"
COMPLETE_MARKER = "paddle_serving_env.json"
# Imported after the install: the service's whole stack (gateway, pipeline, local predictor).
SMOKE_IMPORTS = ("paddle", "paddle_serving_server.web_service", "paddle_serving_server.pipeline",
                 "paddle_serving_app.local_predict", "paddle_serving_client.proto.general_model_config_pb2",
                 "cv2", "PIL", "yaml")
# pip output that means "could not reach the package index" rather than "the install is broken".
_NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|ConnectTimeoutError|ReadTimeoutError|"
    r"ProxyError|Max retries exceeded|No matching distribution found|Could not find a version",
)


class EnvUnavailable(RuntimeError):
    """Paddle Serving cannot run on this machine (exit 77, recorded as skipped); the message says why."""


class EnvBuildError(RuntimeError):
    """The environment could not be built although it should have been (exit 1)."""


@dataclasses.dataclass(frozen=True)
class Interpreter:
    path: Path
    version: tuple[int, int, int]
    found_by: str

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def _probe(executable: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """The version of an interpreter that really runs, else ``None`` (a pyenv shim without a version fails)."""
    try:
        out = subprocess.run([str(executable), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=30, env=dict(environ or os.environ))
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)\s*", out.stdout)
    if out.returncode != 0 or not match:
        return None
    major, minor, micro = (int(g) for g in match.groups())
    return major, minor, micro


def _pyenv_candidates(environ: Mapping[str, str]) -> Iterator[tuple[Path, str]]:
    pyenv = shutil.which("pyenv", path=environ.get("PATH"))
    if not pyenv:
        return
    try:
        listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, timeout=30,
                                env=dict(environ)).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    wanted = f"{SUPPORTED[0]}.{SUPPORTED[1]}"
    versions = sorted((v for v in listed if re.fullmatch(rf"{re.escape(wanted)}\.\d+", v)),
                      key=lambda v: [int(p) for p in v.split(".")], reverse=True)
    selected = environ.get("PYENV_VERSION", "")
    if re.fullmatch(rf"{re.escape(wanted)}\.\d+", selected):
        versions = [selected, *[v for v in versions if v != selected]]
    for version in versions:
        try:
            prefix = subprocess.run([pyenv, "prefix", version], capture_output=True, text=True, timeout=30,
                                    env=dict(environ)).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if prefix:
            yield Path(prefix) / "bin" / f"python{wanted}", f"pyenv prefix {version}"


def find_interpreter(environ: Mapping[str, str] | None = None) -> Interpreter:
    """The Python 3.9 to build the env with, or :class:`EnvUnavailable` saying what was tried."""
    environ = os.environ if environ is None else environ
    explicit = environ.get(ENV_VAR, "").strip()
    if explicit:
        version = _probe(explicit, environ)
        if version is None:
            raise EnvUnavailable(f"{ENV_VAR}={explicit} does not run (no such interpreter, or it fails to start)")
        if version[:2] != SUPPORTED:
            raise EnvUnavailable(f"{ENV_VAR}={explicit} is Python {'.'.join(map(str, version))}; "
                                 f"Paddle Serving 0.9 here needs {SUPPORTED[0]}.{SUPPORTED[1]}")
        return Interpreter(Path(explicit), version, ENV_VAR)
    tried = []
    for path, how in _pyenv_candidates(environ):
        version = _probe(path, environ)
        if version is not None and version[:2] == SUPPORTED:
            return Interpreter(path, version, how)
        found = "does not run" if version is None else f"Python {'.'.join(map(str, version))}"
        tried.append(f"{path} ({how}): {found}")
    others = []
    for name in SEARCHED_ON_PATH:
        found = shutil.which(name, path=environ.get("PATH"))
        if not found:
            continue
        version = _probe(found, environ)
        if version is None:
            tried.append(f"{found}: does not run")
        elif version[:2] == SUPPORTED:
            return Interpreter(Path(found), version, "PATH")
        else:
            others.append(f"{found} (Python {'.'.join(map(str, version))})")
    reason = f"no Python {SUPPORTED[0]}.{SUPPORTED[1]} found ({ENV_VAR} unset; pyenv and PATH searched)"
    if others:
        reason += (f"; found {', '.join(others)}, but requirements-paddle-serving.txt is pinned for "
                   f"{SUPPORTED[0]}.{SUPPORTED[1]} (numpy 1.26.4 needs >= 3.9, paddlepaddle 2.6.2 has no cp37 wheel)")
    if tried:
        reason += "; tried " + "; ".join(tried)
    raise EnvUnavailable(reason)


def read_requirements(path: Path = REQUIREMENTS) -> tuple[list[str], list[str]]:
    """``(requirements, no_deps)``: the normal lines, and the ``# no-deps:`` ones installed without deps."""
    normal, no_deps = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith(NO_DEPS_PREFIX):
            no_deps.append(stripped[len(NO_DEPS_PREFIX):].strip())
        elif stripped and not stripped.startswith("#"):
            normal.append(stripped)
    return normal, no_deps


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", str(Path.home()))) / ".cache")
    return Path(base) / "mobilenetv3-tipc"


def env_dir(interpreter: Interpreter, requirements: Path = REQUIREMENTS,
            environ: Mapping[str, str] | None = None) -> Path:
    """The venv's folder: one per (requirements file content, interpreter version)."""
    digest = hashlib.sha256(requirements.read_bytes() + interpreter.version_text.encode()).hexdigest()[:16]
    return cache_root(environ) / f"paddle-serving-py{interpreter.version[0]}{interpreter.version[1]}-{digest}"


def env_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_complete(venv: Path) -> bool:
    return (venv / COMPLETE_MARKER).is_file() and _probe(env_python(venv)) is not None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_pip(python: Path, args: list[str], log: Path) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *args]
    logger.info("running %s", " ".join(cmd))
    with open(log, "a", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode == 0:
        return
    text = log.read_text(encoding="utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if "ERROR" in ln), lines[-1] if lines else "")
    if _NETWORK_ERRORS.search(text):
        raise EnvUnavailable(f"no network (or no index serving these wheels) for the first install of the "
                             f"Paddle Serving env: {last.strip()} (full log: {log})")
    raise EnvBuildError(f"pip install failed (exit {done.returncode}): {last.strip()} (full log: {log})")


def _size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return round(total / 1e6, 1)


def build_env(interpreter: Interpreter, venv: Path, requirements: Path = REQUIREMENTS) -> dict[str, object]:
    """Create the venv and install the pinned packages; returns what was measured."""
    start = time.monotonic()
    if venv.exists():
        shutil.rmtree(venv)  # a half-built env from an interrupted run
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"{venv.name}.install.log"
    log.write_text("", encoding="utf-8")
    subprocess.run([str(interpreter.path), "-m", "venv", str(venv)], check=True, capture_output=True)
    python = env_python(venv)
    normal, no_deps = read_requirements(requirements)
    try:
        _run_pip(python, ["-r", str(requirements)], log)
        if no_deps:
            _run_pip(python, ["--no-deps", *no_deps], log)
        # cwd: importing paddle_serving_server.pipeline creates PipelineServingLogs/ in the working folder
        smoke = subprocess.run([str(python), "-c", "import " + ", ".join(SMOKE_IMPORTS)], cwd=venv,
                               capture_output=True, text=True, check=False)
        if smoke.returncode != 0:
            raise EnvBuildError(f"the installed Paddle Serving env does not import: {smoke.stderr.strip()[-800:]}")
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    info = {
        "interpreter": str(interpreter.path), "python_version": interpreter.version_text,
        "found_by": interpreter.found_by, "requirements": str(requirements),
        "requirements_sha256": hashlib.sha256(requirements.read_bytes()).hexdigest(),
        "packages": len(normal) + len(no_deps), "build_seconds": round(time.monotonic() - start, 1),
        "size_mb": _size_mb(venv), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "install_log": str(log),
    }
    (venv / COMPLETE_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    logger.info("built the Paddle Serving env %s in %.0f s (%.0f MB)", venv, info["build_seconds"], info["size_mb"])
    return info


def ensure_env(requirements: Path = REQUIREMENTS, environ: Mapping[str, str] | None = None) -> Path:
    """The env's python, building the env first if this requirements file has none yet."""
    interpreter = find_interpreter(environ)
    venv = env_dir(interpreter, requirements, environ)
    if is_complete(venv):
        return env_python(venv)
    with _locked(venv.parent / f"{venv.name}.lock"):
        if not is_complete(venv):  # another process may have built it while we waited
            logger.info("building the Paddle Serving env with %s (%s, found by %s) into %s",
                        interpreter.path, interpreter.version_text, interpreter.found_by, venv)
            build_env(interpreter, venv, requirements)
    return env_python(venv)


def env_info(python: Path) -> dict[str, object]:
    """What :func:`build_env` measured (``build_seconds``, ``size_mb``, ...) for the env of ``python``."""
    marker = python.parent.parent / COMPLETE_MARKER
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}


def subprocess_env(repo_root: Path = ROOT, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a process run with the env's python: the repository importable, nothing of the 3.11 venv."""
    env = dict(os.environ if environ is None else environ)
    for name in ("PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    # PADDLE_SERVING_PYTHONPATH: extra entries searched before the repository (e.g. a patched module).
    extra = env.pop(EXTRA_PATH_VAR, "")
    env["PYTHONPATH"] = os.pathsep.join([p for p in extra.split(os.pathsep) if p] + [str(repo_root)])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("ensure", "find", "info"),
                        help="ensure: build if needed and print the env's python; find: print the base "
                             "interpreter; info: print the build record (JSON) of the env")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help="default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = get_args_parser().parse_args(argv)
    try:
        if args.action == "find":
            interpreter = find_interpreter()
            logger.info("Python %s found by %s", interpreter.version_text, interpreter.found_by)
            print(interpreter.path)
            return EXIT_OK
        python = ensure_env(args.requirements)
        print(json.dumps(env_info(python), indent=2) if args.action == "info" else python)
        return EXIT_OK
    except EnvUnavailable as exc:
        print(f"SKIPPED: real Paddle Serving: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except (EnvBuildError, OSError, subprocess.CalledProcessError) as exc:
        logger.error("%s", exc)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
