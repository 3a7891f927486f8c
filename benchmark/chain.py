"""Wall time of the small model's lite TIPC chain (prepare.sh + test_train_inference_python.sh).

Runs in a temporary copy of the repository (its tracked and untracked-but-not-ignored
files), offline (``TIPC_OFFLINE=1``), with this interpreter first on ``PATH``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "test_tipc/configs/mobilenet_v3_small/train_infer_python.txt"
MODE = "lite_train_lite_infer"


def copy_repository(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def measure_chain(timeout: float = 900) -> dict[str, float]:
    """Seconds for prepare.sh, the chain script, and both; raises when either fails."""
    env = dict(os.environ, TIPC_OFFLINE="1", NO_COLOR="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="bench_tipc_") as tmp:
        workspace = Path(tmp)
        copy_repository(workspace)
        for key, script in (("prepare_s", "test_tipc/prepare.sh"),
                            ("chain_s", "test_tipc/test_train_inference_python.sh")):
            start = time.perf_counter()
            done = subprocess.run(["bash", script, CONFIG, MODE], cwd=workspace, env=env, capture_output=True,
                                  text=True, timeout=timeout, check=False)
            seconds[key] = round(time.perf_counter() - start, 2)
            if done.returncode != 0:
                raise RuntimeError(f"{script} {MODE} failed (exit {done.returncode}):\n"
                                   f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
            logger.info("%s: %.1f s", script, seconds[key])
    seconds["total_s"] = round(seconds["prepare_s"] + seconds["chain_s"], 2)
    return seconds
