"""Run a short helper command (an interpreter check, the report) and say in one line why it failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


def run_short(command: Sequence[str], timeout: float) -> str:
    """"" when ``command`` exits 0 within ``timeout`` seconds, else the reason: the timeout, the
    start error, or the exit code with the last line the command printed."""
    try:
        done = subprocess.run(list(command), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"did not finish in {timeout:g} s"
    except OSError as exc:
        return f"cannot start {command[0]}: {exc.strerror}"
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        return f"exit code {done.returncode}" + (f": {lines[-1].strip()}" if lines else "")
    return ""
