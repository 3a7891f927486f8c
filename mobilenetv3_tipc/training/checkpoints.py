"""Training checkpoints: ``NAME.pdparams`` + ``NAME.pdopt`` as one pair that survives a crash.

``NAME.checkpoint.json`` (the manifest) records the epoch, the model and the size and sha256 of
both files; it is written last, so a pair is complete exactly when both files match it. A save:

1. writes both files under temporary names (fsync);
2. if the current pair is complete, gives it second names ``NAME.prev.*`` (hard links);
3. renames the new files over ``NAME.pdparams`` / ``NAME.pdopt``, then the new manifest;
4. removes ``NAME.prev.*``.

A kill at any point leaves one complete pair: the current one (before 3), the previous one
(during 3), the new one (after it). ``--resume`` loads only a complete pair: when the named one
does not match its manifest it falls back to ``NAME.prev`` with a warning naming what is wrong,
and fails naming both otherwise. A checkpoint without a manifest (older runs, other tools) is
loaded as it is.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import paddle
from paddle import nn

from mobilenetv3_tipc.export.atomic import (
    digest_mismatch,
    file_digest,
    fsync_dir,
    fsync_file,
    link_or_copy_atomic,
    remove_stale_temps,
    temp_name,
    write_file_atomic,
    write_text_atomic,
)

logger = logging.getLogger("train")

PARAMS_SUFFIX = ".pdparams"
OPT_SUFFIX = ".pdopt"
MANIFEST_SUFFIX = ".checkpoint.json"
PREVIOUS = ".prev"
# Tests only: "EPOCH:STAGE" makes the save of that epoch (1-based) stop at STAGE (params_written:
# after the new params are on disk; replacing: after latest.pdparams was replaced, before .pdopt)
# and wait there for the test to kill the process.
PAUSE_ENV = "MTIPC_TEST_CHECKPOINT_PAUSE"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the files and what is wrong."""


@dataclass(frozen=True)
class CheckpointFiles:
    prefix: Path

    @classmethod
    def of(cls, path: str | Path) -> CheckpointFiles:
        """From ``W.pdparams``, ``W.pdopt``, ``W.checkpoint.json`` or the bare prefix ``W``."""
        text = str(path)
        for suffix in (PARAMS_SUFFIX, OPT_SUFFIX, MANIFEST_SUFFIX):
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
        return cls(Path(text))

    def _with(self, suffix: str) -> Path:
        return self.prefix.with_name(self.prefix.name + suffix)

    @property
    def params(self) -> Path:
        return self._with(PARAMS_SUFFIX)

    @property
    def opt(self) -> Path:
        return self._with(OPT_SUFFIX)

    @property
    def manifest(self) -> Path:
        return self._with(MANIFEST_SUFFIX)

    @property
    def previous(self) -> CheckpointFiles:
        return CheckpointFiles(self._with(PREVIOUS))

    def read_manifest(self) -> dict | None:
        if not self.manifest.is_file():
            return None
        try:
            return json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.manifest}: unreadable checkpoint manifest ({exc})") from exc

    def problems(self) -> list[str]:
        """Why this is not a complete pair (empty: complete, or no manifest to check against)."""
        record = self.read_manifest()
        if record is None:
            return [f"{path.name} is missing" for path in (self.params, self.opt) if not path.is_file()]
        found = [digest_mismatch(self.params, record["params"]), digest_mismatch(self.opt, record["optimizer"])]
        return [f"{problem} in {self.manifest.name}" for problem in found if problem]

    def is_complete(self) -> bool:
        return self.manifest.is_file() and not self.problems()


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``W.pdparams`` and its ``W.pdopt``, from either name or the bare prefix."""
    files = CheckpointFiles.of(path)
    return files.params, files.opt


def _pause_for_test(epoch: int, stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == f"{epoch + 1}:{stage}":
        print(f"checkpoint save paused at {stage} (epoch {epoch + 1}, {PAUSE_ENV})", file=sys.stderr, flush=True)
        time.sleep(600)


def save_checkpoint(out_dir: Path, name: str, model: nn.Layer, optimizer: paddle.optimizer.Optimizer,
                    scheduler: paddle.optimizer.lr.LRScheduler, epoch: int,
                    scaler: paddle.amp.GradScaler | None, model_info: dict[str, object] | None = None) -> None:
    """Write the pair ``out_dir/name.*`` for ``epoch`` (0-based) crash-safely (see the module doc)."""
    files = CheckpointFiles(out_dir / name)
    remove_stale_temps(out_dir, name)
    state = {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(), "epoch": epoch,
             "model": model_info or {}}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    new_params, new_opt = temp_name(files.params), temp_name(files.opt)
    paddle.save(model.state_dict(), str(new_params))
    fsync_file(new_params)
    _pause_for_test(epoch, "params_written")
    paddle.save(state, str(new_opt))
    fsync_file(new_opt)
    record = {"epoch": epoch, "model": model_info or {},
              "params": {"file": files.params.name, **file_digest(new_params)},
              "optimizer": {"file": files.opt.name, **file_digest(new_opt)}}
    previous = files.previous
    if files.is_complete():
        previous.manifest.unlink(missing_ok=True)  # the previous pair is complete only with its manifest
        link_or_copy_atomic(files.params, previous.params)
        link_or_copy_atomic(files.opt, previous.opt)
        link_or_copy_atomic(files.manifest, previous.manifest)
        fsync_dir(out_dir)
    os.replace(new_params, files.params)
    _pause_for_test(epoch, "replacing")
    os.replace(new_opt, files.opt)
    fsync_dir(out_dir)
    write_text_atomic(files.manifest, json.dumps(record, indent=2) + "\n")
    for path in (previous.manifest, previous.params, previous.opt):
        path.unlink(missing_ok=True)


def save_weights(model: nn.Layer, path: Path) -> None:
    """``model``'s state dict as ``path`` (.pdparams), crash-safely."""
    write_file_atomic(path, lambda temp: paddle.save(model.state_dict(), str(temp)))


def complete_pair(path: str | Path) -> tuple[CheckpointFiles, dict | None]:
    """The pair to resume from for ``path`` and its manifest (None: a checkpoint without one)."""
    files = CheckpointFiles.of(path)
    if not files.params.is_file() and not files.manifest.is_file() and not files.previous.manifest.is_file():
        raise CheckpointError(f"{files.params}: checkpoint not found")
    problems = files.problems()
    if not problems:
        return files, files.read_manifest()
    previous = files.previous
    if previous.is_complete():
        record = previous.read_manifest()
        logger.warning("%s: incomplete checkpoint (%s; a save was interrupted); resuming from the previous "
                       "complete one, %s (epoch %d)", files.prefix, "; ".join(problems), previous.params,
                       int(record["epoch"]) + 1)
        return previous, record
    raise CheckpointError(f"{files.params} and {files.opt} are not a complete checkpoint pair: {'; '.join(problems)}"
                          " (and no complete previous pair); resume from another checkpoint or train afresh")


def _describe_model(info: dict) -> str:
    return f"{info.get('model', '?')} ({info.get('num_classes', '?')} classes, scale {info.get('scale', '?')})"


def _check_model(files: CheckpointFiles, saved: dict, expected: dict | None, what: Path) -> None:
    if not expected or not saved:
        return
    keys = [key for key in ("model", "num_classes", "scale", "quant_mode") if key in saved and key in expected]
    if any(saved[key] != expected[key] for key in keys):
        raise CheckpointError(f"{what} holds the state of {_describe_model(saved)}, but this run trains "
                              f"{_describe_model(expected)}: resume with the checkpoint of this model")


def _check_optimizer_state(state: dict, optimizer: paddle.optimizer.Optimizer, files: CheckpointFiles) -> None:
    """Every accumulator in ``state`` belongs to a parameter of ``optimizer``, with its shape."""
    params = {p.name: p for p in optimizer._parameter_list}
    foreign = []
    for key, value in state.items():
        if key in ("LR_Scheduler", "master_weights") or not hasattr(value, "shape"):
            continue
        owner = next((name for name in params if key.startswith(name + "_")), None)
        if owner is None:
            foreign.append(key)
        elif "_velocity_" in key and list(value.shape) != list(params[owner].shape):
            foreign.append(f"{key} {list(value.shape)} vs parameter {list(params[owner].shape)}")
    if foreign:
        raise CheckpointError(f"{files.opt} is not the optimizer state of the model in {files.params}: "
                              f"{len(foreign)} entries fit none of its parameters (first: {foreign[0]})")


def resume_from(path: str, model: nn.Layer, optimizer: paddle.optimizer.Optimizer,
                scheduler: paddle.optimizer.lr.LRScheduler, scaler: paddle.amp.GradScaler | None,
                model_info: dict[str, object] | None = None) -> int:
    """Load a complete :func:`save_checkpoint` pair; returns the epoch to start at."""
    from mobilenetv3_tipc.model.weights import load_weights

    files, record = complete_pair(path)
    if record is not None:
        _check_model(files, record.get("model", {}), model_info, files.manifest)
    try:
        state = paddle.load(str(files.opt))
    except Exception as exc:  # noqa: BLE001 - paddle raises bare Exception/ValueError/pickle errors here
        raise CheckpointError(f"{files.opt}: not a readable optimizer state ({exc})") from exc
    if not isinstance(state, dict) or "optimizer" not in state or "epoch" not in state:
        raise CheckpointError(f"{files.opt}: not a train.py optimizer state (no 'optimizer'/'epoch' entries)")
    _check_model(files, state.get("model", {}), model_info, files.opt)
    load_weights(model, files.params)
    _check_optimizer_state(state["optimizer"], optimizer, files)
    try:
        optimizer.set_state_dict(state["optimizer"])
        scheduler.set_state_dict(state["lr_scheduler"])
    except (AssertionError, KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{files.opt} does not fit the optimizer of the model in {files.params} "
                              f"({type(exc).__name__}: {exc})") from exc
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    start_epoch = int(state["epoch"]) + 1
    logger.info("resumed from %s at epoch %d", files.params, start_epoch + 1)
    return start_epoch
