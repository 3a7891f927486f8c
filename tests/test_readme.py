"""The README's two quick-start commands are the ones CI and users run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements-dev.txt && python -m pytest"
)
CHAIN_CONFIG = "test_tipc/configs/mobilenet_v3_small/train_infer_python.txt"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_COMMAND in readme
    assert TEST_COMMAND in ci.splitlines()


def test_readme_lite_chain_command_names_real_files() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"bash test_tipc/prepare.sh {CHAIN_CONFIG} lite_train_lite_infer" in readme
    assert f"bash test_tipc/test_train_inference_python.sh {CHAIN_CONFIG} lite_train_lite_infer" in readme
    for path in ("requirements.txt", "requirements-dev.txt", CHAIN_CONFIG, "test_tipc/prepare.sh",
                 "test_tipc/test_train_inference_python.sh"):
        assert (REPO / path).is_file(), path
