"""train.py: learning, checkpoints, evaluation, resume, distributed CPU, and clear errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import paddle
import pytest

from mobilenetv3_tipc.data.datasets import ImageClassificationDataset, find_samples
from mobilenetv3_tipc.data.transforms import eval_transform
from mobilenetv3_tipc.model import build_model
from tests.fixtures.processes import run_python

TRAIN_ARGS = ("--device", "cpu", "--workers", "0", "--batch-size", "8", "--print-freq", "1", "--seed", "0")


def test_loss_falls_on_lite_data(lite_data: Path) -> None:
    """A few SGD steps on the 16 lite images (no augmentation) must lower the loss."""
    paddle.seed(0)
    samples, classes = find_samples(lite_data, "train")
    dataset = ImageClassificationDataset(samples, eval_transform(128, 112))
    images = paddle.to_tensor(np.stack([dataset[i][0] for i in range(len(dataset))]))
    labels = paddle.to_tensor(np.array([dataset[i][1] for i in range(len(dataset))]))
    model = build_model("mobilenet_v3_small", num_classes=len(classes))
    model.train()
    optimizer = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=model.parameters())
    losses = []
    for _ in range(10):
        loss = paddle.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.fixture(scope="module")
def trained(lite_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    result = run_python("train.py", "--data-path", str(lite_data), "--epochs", "1", "--output-dir", str(out),
                        "--bn-recalibration-batches", "2", *TRAIN_ARGS)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.slow
def test_training_writes_checkpoints_and_logs(trained: Path) -> None:
    for name in ("latest.pdparams", "latest.pdopt", "best.pdparams", "args.json", "metrics.jsonl",
                 "label_list.txt"):
        assert (trained / name).is_file(), name
    record = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and 0 <= record["acc1"] <= 1 and record["train_ips"] > 0
    assert json.loads((trained / "args.json").read_text())["num_classes"] == 4
    assert (trained / "label_list.txt").read_text().splitlines()[0] == "0 tabby cat"


@pytest.mark.slow
def test_train_log_keeps_the_seed_format(lite_data: Path, tmp_path: Path) -> None:
    result = run_python("train.py", "--data-path", str(lite_data), "--epochs", "1",
                        "--output-dir", str(tmp_path), *TRAIN_ARGS)
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("[Epoch 1, iter: 1]"))
    for field in ("top1:", "top5:", "lr:", "loss:", "avg_reader_cost:", "avg_batch_cost:", "avg_samples:",
                  "avg_ips:"):
        assert field in line
    assert line.endswith("images/sec.")


@pytest.mark.slow
def test_test_only_prints_accuracy(trained: Path, lite_data: Path) -> None:
    result = run_python("train.py", "--test-only", "--device", "cpu", "--workers", "0",
                        "--data-path", str(lite_data), "--pretrained", str(trained / "latest.pdparams"))
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(" * Acc@1 ") and " Acc@5 " in last
    acc1 = float(last.split()[2])
    assert 0.0 <= acc1 <= 1.0


@pytest.mark.slow
def test_precise_bn_makes_predictions_depend_on_the_image(trained: Path, lite_data: Path) -> None:
    """Two lite steps leave running BN stats at their init; recalibration must fix that."""
    assert json.loads((trained / "args.json").read_text())["bn_recalibration_batches"] == 2
    result = run_python("tools/predict.py", "--pretrained", str(trained / "latest.pdparams"),
                        "--img-path", str(lite_data / "val"))
    assert result.returncode == 0, result.stderr
    probs = {line.split("prob: ")[1] for line in result.stdout.splitlines() if line.startswith("class_id:")}
    assert len(probs) > 8  # 16 images, distinct probabilities


@pytest.mark.slow
def test_resume_continues_from_saved_epoch(trained: Path, lite_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    result = run_python("train.py", "--data-path", str(lite_data), "--epochs", "2", "--output-dir", str(run_dir),
                        "--resume", str(run_dir / "latest.pdparams"), *TRAIN_ARGS)
    assert result.returncode == 0, result.stderr
    assert "[Epoch 2, iter: 1]" in result.stdout and "[Epoch 1, iter" not in result.stdout
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    state = paddle.load(str(run_dir / "latest.pdopt"))
    assert state["epoch"] == 1  # zero-based: the second epoch


@pytest.mark.slow
def test_two_process_cpu_training_writes_one_checkpoint(lite_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    result = run_python(
        "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "logs"),
        "train.py", "--data-path", str(lite_data), "--epochs", "1", "--output-dir", str(out),
        "--device", "cpu", "--workers", "0", "--batch-size", "4",
    )
    logs = "\n".join(p.read_text(errors="replace") for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert result.returncode == 0, result.stdout[-3000:] + logs[-3000:]
    assert json.loads((out / "args.json").read_text())["world_size"] == 2
    assert len(list(out.glob("*.pdparams"))) == 2  # latest + best, written once by rank 0
    assert "world size 2" in logs
    assert logs.count(" * Acc@1 ") == 1  # metrics reduced, printed by rank 0 only
    checksums = re.findall(r"^param_checksum: ([0-9a-f]{64})$", logs, re.MULTILINE)
    assert len(checksums) == 2 and checksums[0] == checksums[1], checksums  # every rank, same parameters


def make_broken_copy(lite_data: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(lite_data, data)
    return data


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "data path does not exist"),
        ("no_images", "no images in any of its 5 class folders"),
        ("corrupt", "corrupt image file"),
        ("unknown_model", "unknown model 'resnet50'; valid names: mobilenet_v3_large, mobilenet_v3_small"),
    ],
)
def test_bad_inputs_give_clear_errors(lite_data: Path, tmp_path: Path, breakage: str, message: str) -> None:
    data = make_broken_copy(lite_data, tmp_path)
    extra: list[str] = []
    if breakage == "missing":
        data = tmp_path / "no_such_dir"
    elif breakage == "no_images":
        (data / "train" / "n99999999").mkdir()
        for image in (data / "train").rglob("*.JPEG"):
            image.unlink()
    elif breakage == "corrupt":
        victim = sorted((data / "train").rglob("*.JPEG"))[0]
        victim.write_bytes(victim.read_bytes()[:300])
        extra = ["--batch-size", "16"]
    elif breakage == "unknown_model":
        extra = ["--model", "resnet50"]
    result = run_python("train.py", "--device", "cpu", "--workers", "0", "--epochs", "1", "--data-path", str(data),
                        "--output-dir", str(tmp_path / "out"), *extra)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout + result.stderr
    if breakage == "corrupt":
        assert victim.name in result.stdout + result.stderr


def imagenet_subset(lite_data: Path, root: Path, classes: int = 1000) -> list[str]:
    """``root`` with ``classes`` class folders per split: the 4 lite classes hold images, the rest are empty."""
    lite = sorted(p.name for p in (lite_data / "train").iterdir())
    empty = [f"n{index * 100_000 + 1:08d}" for index in range(classes - len(lite))]  # spread among the lite ids
    names = sorted({*empty, *lite})
    assert len(names) == classes
    for split in ("train", "val"):
        for name in names:
            source = lite_data / split / name
            if source.is_dir():
                shutil.copytree(source, root / split / name)
            else:
                (root / split / name).mkdir(parents=True)
    return names


def test_empty_class_folders_keep_the_ids_of_the_sorted_folder_list(lite_data: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    names = imagenet_subset(lite_data, tmp_path / "subset")
    samples, classes = find_samples(tmp_path / "subset", "train")
    assert classes == names
    assert {label for _, label in samples} == {names.index(p.name) for p in (lite_data / "train").iterdir()}
    assert all(classes[label] == path.parent.name for path, label in samples)
    warnings = [r for r in caplog.records if "class folders hold no images" in r.getMessage()]
    assert len(warnings) == 1 and "996 of 1000" in warnings[0].getMessage()


def test_an_imagenet_subset_trains_evaluates_and_keeps_class_ids(lite_data: Path, tmp_path: Path) -> None:
    names = imagenet_subset(lite_data, tmp_path / "subset")
    out = tmp_path / "out"
    result = run_python("train.py", "--data-path", str(tmp_path / "subset"), "--epochs", "1", "--output-dir",
                        str(out), *TRAIN_ARGS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " * Acc@1 " in result.stdout
    assert result.stdout.count("class folders hold no images") == 2  # once per split
    assert json.loads((out / "args.json").read_text())["num_classes"] == 1000
    assert (out / "label_list.txt").read_text(encoding="utf-8").splitlines()[names.index("n02123045")].endswith(
        "n02123045")
    evaluated = run_python("train.py", "--test-only", "--data-path", str(tmp_path / "subset"), "--pretrained",
                           str(out / "latest.pdparams"), *TRAIN_ARGS)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    assert " * Acc@1 " in evaluated.stdout


def test_gpu_without_cuda_is_reported_as_unsupported(lite_data: Path, tmp_path: Path) -> None:
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("this machine has a GPU")
    result = run_python("train.py", "--device", "gpu", "--data-path", str(lite_data), "--output-dir", str(tmp_path))
    assert result.returncode == 77
    assert any(line.startswith("SKIPPED: ") for line in result.stderr.splitlines())


def test_test_only_requires_weights(lite_data: Path) -> None:
    result = run_python("train.py", "--test-only", "--device", "cpu", "--data-path", str(lite_data))
    assert result.returncode == 2 and "--test-only needs --pretrained" in result.stderr


def test_list_layout_gives_same_samples_as_folders(lite_data: Path) -> None:
    by_folder, names = find_samples(lite_data, "val", "folder")
    by_list, _ = find_samples(lite_data, "val", "list")
    assert sorted((p.resolve(), y) for p, y in by_folder) == sorted((p.resolve(), y) for p, y in by_list)
    assert names[0] == "tabby cat"




@pytest.mark.slow
def test_plot_log_draws_the_training_curves(trained: Path, tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    result = run_python("tools/plot_log.py", "--log", str(trained / "metrics.jsonl"), "--out", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    result = run_python("tools/plot_log.py", "--log", str(bad))
    assert result.returncode == 1 and "bad.jsonl:1: not a JSON line" in result.stderr
