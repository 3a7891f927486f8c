"""Step execution for every TIPC chain: one run per output folder, timeouts, signals.

* :class:`FolderLock` -- ``flock`` on ``<output folder>/.lock``; it dies with its holder
  (the kernel drops it when the process exits, however it exits). A second run refuses
  at once and names the running PID; nothing in the folder is touched before the lock
  is held.
* :meth:`Run.step` runs one command as an argument array (never a shell) in its own
  process group, stdout+stderr to its log, stdin from /dev/null, and records it by its
  own exit code: 0 passed; 77 skipped with the ``SKIPPED:`` reason it printed (this
  machine cannot run it); anything else failed. Every step has a timeout
  (``TIPC_STEP_TIMEOUT``, default 1800 s): the whole group is stopped and the step is
  recorded failed ``timed out after N s``.
* SIGINT / SIGTERM to the chain stop the running step's whole process group and every
  background server, record the step failed ``interrupted by SIGxxx``, write the
  summary and JUnit, and exit 130 / 143 (:class:`Interrupted`).
* Children get ``PR_SET_PDEATHSIG`` (SIGTERM): when the chain dies, even by SIGKILL,
  the step or server it started is told to exit too.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mobilenetv3_tipc.tipc.results import NOT_RUN, Results, Step

DEFAULT_STEP_TIMEOUT = 1800
KILL_GRACE_S = 10.0
EXIT_SKIPPED = 77
EXIT_LOCKED = 75
ENGINE_RE = re.compile(r"^inference engine:\s*(\S+)", re.MULTILINE)
SAFE_WORD_RE = re.compile(r"^[A-Za-z0-9_./:=,@%+-]+$")
PR_SET_PDEATHSIG = 1


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class LockBusy(Exception):
    pass


def quote_command(argv: Sequence[str]) -> str:
    return " ".join(a if SAFE_WORD_RE.match(a) else shlex.quote(a) for a in argv)


def step_timeout() -> int:
    value = os.environ.get("TIPC_STEP_TIMEOUT", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    return DEFAULT_STEP_TIMEOUT


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """PR_SET_PDEATHSIG: the child gets SIGTERM when this process dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def signal_group(pgid: int, sig: int) -> bool:
    """Send SIG to process group PGID; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group of PROC, SIGKILL it after GRACE seconds; reap PROC."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not signal_group(proc.pid, sig):
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        signal_group(proc.pid, signal.SIGKILL)  # the leader is gone; so is the rest of its group
        break
    if proc.poll() is None:
        proc.wait()


class FolderLock:
    """Exclusive lock on a folder for one run (``flock``; released when the holder dies)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"
        self.handle = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LockBusy(f"{self.path.parent} is in use by another run (PID {holder}); "
                           "wait for it to finish or stop that PID") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class Run:
    """One chain run: its output folder, lock, results and the steps it executes."""

    def __init__(self, out_dir: Path, results: Results, cwd: Path | None = None) -> None:
        self.out_dir = out_dir
        self.results = results
        self.cwd = cwd or Path.cwd()
        self.lock = FolderLock(out_dir)
        self.current: subprocess.Popen | None = None
        self.background: list[subprocess.Popen] = []
        self.signum: int | None = None
        self._old_handlers: dict[int, object] = {}

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Run:
        self.lock.acquire()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        self.results.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_background()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self.lock.release()

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        for proc in [self.current, *self.background]:
            if proc is not None and proc.poll() is None:
                signal_group(proc.pid, signal.SIGTERM)

    def check_interrupted(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    # ------------------------------------------------------------ recording

    def record(self, status: str, description: str, reason: str, group: str = "", hardware: bool = False) -> Step:
        """A line decided by the harness, nothing run."""
        return self.results.add(Step(status, self.results.model, description, NOT_RUN, reason,
                                     hardware=hardware, group=group))

    def skip(self, description: str, reason: str, group: str = "", hardware: bool = False) -> Step:
        return self.record("skipped", description, reason, group, hardware)

    def fail(self, description: str, reason: str, group: str = "") -> Step:
        return self.record("failed", description, reason, group)

    # ------------------------------------------------------------ execution

    def _popen(self, argv: Sequence[str], log: Path, cwd: Path | None, env: dict[str, str] | None) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as handle:
            return subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                cwd=cwd or self.cwd, env=env, start_new_session=True, preexec_fn=die_with_parent,
            )

    def step(self, argv: Sequence[str], log: Path, group: str = "", cwd: Path | None = None,
             env: dict[str, str] | None = None, timeout: int | None = None,
             check: Callable[[Step], None] | None = None) -> Step:
        """Run ARGV to LOG and record it by its own exit code.

        ``check`` sees a passed step before it is recorded and may correct it (a run that exited 0
        without doing what its flags ask is recorded as what it did).
        """
        self.check_interrupted()
        timeout = timeout or step_timeout()
        command = quote_command(argv)
        start = time.monotonic()
        try:
            proc = self._popen(argv, log, cwd, env)
        except OSError as exc:
            return self.results.add(Step("failed", self.results.model, command, str(log),
                                         f"cannot start: {exc.strerror}", group=group))
        self.current = proc
        reason = ""
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    rc = None
                if self.signum is not None:  # the group got SIGTERM from the handler already
                    kill_group(proc)
                    rc = proc.returncode
                    reason = f"interrupted by {signal.Signals(self.signum).name}"
                    break
                if rc is not None:
                    break
                if time.monotonic() - start > timeout:
                    kill_group(proc)
                    rc = proc.returncode
                    reason = f"timed out after {timeout} s"
                    with open(log, "a", encoding="utf-8") as handle:
                        handle.write(f"\nTIPC: stopped after {timeout} s (TIPC_STEP_TIMEOUT)\n")
                    break
        finally:
            self.current = None
        signal_group(proc.pid, signal.SIGKILL)  # nothing the step started outlives it
        seconds = round(time.monotonic() - start, 1)
        text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        step = Step("passed", self.results.model, command, str(log), seconds=seconds, group=group)
        if reason:
            step.status, step.reason = "failed", reason
        elif rc == 0:
            engines = ENGINE_RE.findall(text)
            step.engine = ",".join(dict.fromkeys(engines))
        elif rc == EXIT_SKIPPED:
            skipped = [line[len("SKIPPED:"):].strip() for line in text.splitlines() if line.startswith("SKIPPED:")]
            step.status, step.reason, step.hardware = "skipped", (skipped[-1] if skipped else "exit code 77"), True
        else:
            step.status, step.reason = "failed", f"exit code {rc}"
        if check is not None and step.status == "passed":
            check(step)
        self.results.add(step)
        if reason.startswith("interrupted"):
            self.check_interrupted()
        return step

    def start_background(self, argv: Sequence[str], log: Path, cwd: Path | None = None,
                         env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a server in its own process group; stopped by :meth:`stop_background`."""
        self.check_interrupted()
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as handle:
            handle.write(f"server command: {quote_command(argv)}\n")
        with open(log, "ab") as handle:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                    cwd=cwd or self.cwd, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent)
        self.background.append(proc)
        return proc

    def stop_background(self, proc: subprocess.Popen | None = None) -> None:
        for item in [proc] if proc is not None else list(self.background):
            if item is None:
                continue
            if item.poll() is None:
                kill_group(item, grace=20.0)
            else:
                signal_group(item.pid, signal.SIGKILL)
            if item in self.background:
                self.background.remove(item)
