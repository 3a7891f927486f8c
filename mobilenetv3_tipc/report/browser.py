"""Headless Chromium on a page from disk: the rendered DOM and a screenshot.

Debian's ``chromium`` package (``/usr/bin/chromium``) with the flags this closed network
needs: no background networking, component updates, sync or QUIC, and a fresh empty
profile per run. ``--no-sandbox`` because CI runs as root. Each run is its own process
group, stopped as a group on a time-out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--mute-audio",
)
TIMEOUT_S = 90


class BrowserUnavailable(RuntimeError):
    """No Chromium on this machine (the message says how to install it)."""


def find_chromium() -> str:
    """Path of the Chromium binary: $CHROMIUM, else the first of :data:`CANDIDATES` on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        if shutil.which(explicit):
            return str(shutil.which(explicit))
        raise BrowserUnavailable(f"CHROMIUM={explicit} is not an executable")
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable("no chromium on PATH: install it with `apt-get install -y chromium` (Debian)")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="tipc-chromium-") as profile:
        cmd = [find_chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise RuntimeError(f"chromium timed out after {timeout:.0f} s: {err[-2000:]}") from None
        finally:
            # Helpers (zygote, GPU, network service) share the group: end any left behind.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def dump_dom(page: Path, timeout: float = TIMEOUT_S) -> str:
    """The DOM Chromium renders for ``page`` (a file on disk), serialised as HTML."""
    done = _run(["--dump-dom", Path(page).resolve().as_uri()], timeout)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium --dump-dom failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1400, timeout: float = TIMEOUT_S) -> Path:
    """A PNG of ``page`` rendered at ``width`` x ``height``."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    done = _run([f"--screenshot={png}", f"--window-size={width},{height}", Path(page).resolve().as_uri()], timeout)
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium --screenshot failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return png
