"""Command-line conventions of every entry point.

Exit codes (the TIPC harness relies on them):

* ``0``  (:data:`EXIT_OK`) the run succeeded;
* ``1``  (:data:`EXIT_FAILED`) the run failed (an error in the model, the data or the code);
* ``2``  (:data:`EXIT_USAGE`) bad command-line arguments or missing input files (argparse's code);
* ``77`` (:data:`EXIT_UNSUPPORTED`) the requested combination cannot run on this machine (GPU or
  TensorRT without CUDA, fp16 on a CPU without bfloat16 support). The harness records such a
  step as *skipped*, never as passed; 77 is the "skipped" code of the Automake test protocol.

An entry point's ``main(argv) -> int`` is ``return run_main(run, argv)`` around a ``run(argv) -> int``
that raises: :func:`run_main` sets up logging once and maps exceptions to these codes, printing
``SKIPPED: <reason>`` on stderr for 77.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 77

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# train.py's log is upstream's training log ("[Epoch 1, iter: 10] top1: ..."), read by log parsers.
BARE_FORMAT = "%(message)s"

logger = logging.getLogger("mobilenetv3_tipc")


class UnsupportedConfig(RuntimeError):
    """This machine cannot run the requested configuration (exit code 77)."""


class UsageError(ValueError):
    """Bad arguments or missing input (exit code 2)."""


# Upstream TIPC configs write booleans as True/False (and, in a few places, 1/0, yes/no,
# gpu/cpu for a use-gpu switch, and the typo "fasle").
_TRUE = frozenset({"true", "1", "yes", "y", "on", "gpu"})
_FALSE = frozenset({"false", "fasle", "0", "no", "n", "off", "cpu"})


def str2bool(value: str | bool) -> bool:
    """Parse a boolean the way upstream TIPC configs write it (see ``_TRUE`` / ``_FALSE``)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


def auto_or_bool(value: str | bool) -> bool | None:
    """``auto`` -> ``None`` (the program decides), else :func:`str2bool`."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return str2bool(value)


def flag_spellings(name: str) -> list[str]:
    """``"model-dir"`` -> ``["--model-dir", "--model_dir"]`` (one entry when the name has neither).

    A short option (``"-b"``) is kept as it is.
    """
    if name.startswith("-") and not name.startswith("--"):
        return [name]
    bare = name.lstrip("-")
    dashed, underscored = f"--{bare.replace('_', '-')}", f"--{bare.replace('-', '_')}"
    return [dashed] if dashed == underscored else [dashed, underscored]


def add_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, *aliases: str,
             **kwargs: Any) -> argparse.Action:
    """Register ``--a-b`` and ``--a_b`` (plus each alias in both spellings); kwargs go to argparse."""
    names: list[str] = []
    for one in (name, *aliases):
        names += [n for n in flag_spellings(one) if n not in names]
    kwargs.setdefault("dest", flag_spellings(name)[0].lstrip("-").replace("-", "_"))
    return parser.add_argument(*names, **kwargs)


def add_bool_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, *aliases: str,
                  default: bool, help: str) -> argparse.Action:
    """A boolean flag: ``--flag`` alone means True; ``--flag=False`` and ``--flag False`` also work."""
    return add_flag(parser, name, *aliases, type=str2bool, nargs="?", const=True, default=default,
                    metavar="BOOL", help=f"{help} (default: {default})")


def setup_logging(level: int = logging.INFO, stream: Any = None, bare: bool = False) -> None:
    """The one logging setup of every entry point: :data:`LOG_FORMAT` on stderr (or ``stream``).

    ``bare`` logs the message alone (:data:`BARE_FORMAT`), for a log whose lines are the output.
    Replaces plain ``StreamHandler``s on the root logger (``basicConfig``'s, and the one Paddle
    adds when it is imported) and keeps any other handler (pytest's capture, a file handler).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(BARE_FORMAT if bare else LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)


def skipped(reason: object) -> int:
    """Print the harness's ``SKIPPED: <reason>`` line and return :data:`EXIT_UNSUPPORTED`."""
    print(f"SKIPPED: {reason}", file=sys.stderr, flush=True)
    return EXIT_UNSUPPORTED


def run_main(main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None, *,
             usage_errors: tuple[type[BaseException], ...] = (),
             log_stream: Any = None, bare_log: bool = False) -> int:
    """Run ``main(argv)`` and map what it raises to an exit code.

    :class:`UnsupportedConfig` -> 77 with a ``SKIPPED:`` line; :class:`UsageError` and
    ``usage_errors`` -> 2; any other ``Exception`` -> 1. Each is logged as one line.
    """
    setup_logging(stream=log_stream, bare=bare_log)
    try:
        return main(None if argv is None else list(argv))
    except UnsupportedConfig as exc:
        return skipped(exc)
    except (UsageError, *usage_errors) as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the exit-code contract: every failure is a 1
        logger.error("%s: %s", type(exc).__name__, exc)
        logger.debug("traceback", exc_info=True)
        return EXIT_FAILED


PIR_FLAG = "FLAGS_enable_pir_api"


def pir_disabled() -> bool:
    return os.environ.get(PIR_FLAG) == "0"


def reexec_without_pir(entry: str | Path, argv: Sequence[str] | None) -> int | None:
    """Run ``entry`` again in a child process with Paddle's PIR off; ``None`` when it already is.

    Paddle reads ``FLAGS_enable_pir_api`` when it is imported, and quantization (PTQ, quant-aware
    training) and the legacy ``.pdmodel`` writer work on legacy programs only. ``entry`` is a
    script path (``*.py``) or a module name run with ``-m``. Returns the child's exit code.
    """
    if pir_disabled():
        return None
    args = list(sys.argv[1:] if argv is None else argv)
    target = [str(entry)] if str(entry).endswith(".py") else ["-m", str(entry)]
    env = dict(os.environ, **{PIR_FLAG: "0"})
    return subprocess.call([sys.executable, *target, *args], env=env)
