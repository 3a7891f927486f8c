"""Where the real-Paddle-Serving modules find the project's shared code.

The package layout moves preprocessing and labels to ``mobilenetv3_tipc.data`` and the exit
codes to ``mobilenetv3_tipc.cli``; until every checkout has it, the older top-level modules
(``vision``, ``deploy.options``) are used. This module is imported on Python 3.9 inside the
Paddle Serving environment too, so it uses nothing newer.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _first(*names: str) -> ModuleType:
    missing = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only "this module does not exist" falls through; a broken module raises.
            if exc.name is None or not name.startswith(exc.name):
                raise
            missing.append(name)
    raise ModuleNotFoundError(f"none of {', '.join(missing)} is importable (is the repository on PYTHONPATH?)")


def preprocess_module() -> ModuleType:
    """The one evaluation preprocessing (``preprocess``, ``ImageDecodeError``, sizes)."""
    return _first("mobilenetv3_tipc.data.preprocess", "vision.preprocess")


def labels_module() -> ModuleType:
    """Class names (``labels_for``, ``LABEL_LIST_NAME``)."""
    return _first("mobilenetv3_tipc.data.labels", "vision.labels")


# Exit codes of every command (0 ok, 1 failed, 2 usage/bad input, 77 unsupported here = skipped).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 77
