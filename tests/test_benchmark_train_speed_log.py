"""The benchmark_train speed log: run-mode specs, the training-log parser, the JSON, table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mobilenetv3_tipc.cli import UsageError
from mobilenetv3_tipc.tipc import speed_log
from mobilenetv3_tipc.tipc.speed_log import (
    Combination,
    SpeedLog,
    SpeedLogError,
    parse_spec,
    parse_train_log,
    speed_from_log,
)


def line(epoch: int, it: int, loss: float, reader: float, batch: float, samples: float, prefix: str = "") -> str:
    return (f"{prefix}[Epoch {epoch}, iter: {it}] top1: 0.25000, top5: 1.00000, lr: 0.10000, loss: {loss:.5f}, "
            f"avg_reader_cost: {reader:.5f} sec, avg_batch_cost: {batch:.5f} sec, avg_samples: {samples:.1f}, "
            f"avg_ips: {samples / batch:.5f} images/sec.")


# print_freq 2, 4 steps per epoch, 2 epochs; batch 8 except a last short batch of 4 in each epoch
LOG = "\n".join([
    "training mobilenet_v3_small (4 classes) on 28 images ...",
    line(1, 2, 1.40, 0.010, 1.000, 8.0),  # steps 1-2: compile / warm-up
    line(1, 4, 1.38, 0.002, 0.400, 6.0, prefix="INFO train: "),  # steps 3-4 (8 + 4 images)
    "Test:  [0/2] ...",
    line(2, 2, 1.36, 0.002, 0.400, 8.0),  # steps 5-6
    line(2, 3, 1.35, 0.004, 0.200, 4.0),  # step 7 (print on the last step of the epoch)
])


def test_spec_round_trip() -> None:
    combo = parse_spec("dynamic_bs8_fp32_DP_N1C1")
    assert combo == Combination("dynamic", 8, "fp32", "DP", "N1C1")
    assert combo.spec == "dynamic_bs8_fp32_DP_N1C1"
    assert combo.model_name("mobilenet_v3_small") == "mobilenet_v3_small_bs8_fp32_DP"
    two = parse_spec("dynamicTostatic_bs16_amp_o2_DP_N2C4")
    assert (two.fp_item, two.nodes, two.cards, two.devices) == ("amp_o2", 2, 4, 8)
    assert two.model_name("m") == "m_d2s_bs16_amp_o2_DP"


@pytest.mark.parametrize("spec", ["static_bs8_fp32_DP_N1C1", "dynamic_bs_fp32_DP_N1C1", "dynamic_bs8_fp64_DP_N1C1",
                                  "dynamic_bs8_fp32_MP_N1C1", "dynamic_bs8_fp32_DP_N1", "dynamic_bs0_fp32_DP_N1C1",
                                  "dynamic_bs8_fp32_DP_N1C0", ""])
def test_bad_spec_is_named(spec: str) -> None:
    with pytest.raises(UsageError, match="run-mode spec"):
        parse_spec(spec)


def test_parse_lines_and_window_steps() -> None:
    lines = parse_train_log(LOG)
    assert [(x.epoch, x.iteration, x.steps) for x in lines] == [(1, 2, 2), (1, 4, 2), (2, 2, 2), (2, 3, 1)]
    assert lines[0].loss == pytest.approx(1.40)
    assert lines[1].reader_cost == pytest.approx(0.002)
    assert lines[1].ips == pytest.approx(15.0)


def test_iteration_going_back_within_an_epoch_is_an_error() -> None:
    with pytest.raises(SpeedLogError, match="does not follow"):
        parse_train_log(line(1, 4, 1, 0, 1, 8) + "\n" + line(1, 2, 1, 0, 1, 8))


def test_speed_is_step_weighted_after_the_skipped_steps() -> None:
    log = speed_from_log(LOG, "mobilenet_v3_small", parse_spec("dynamic_bs8_fp32_DP_N1C1"), skip_steps=2)
    # steps 3-7: images 6*2 + 8*2 + 4*1 = 32, batch time 0.4*2 + 0.4*2 + 0.2 = 1.8 s
    assert log.steps == 5
    assert log.ips == pytest.approx(32 / 1.8, abs=1e-4)
    assert log.ips_per_device == log.ips
    assert log.batch_cost == pytest.approx(1.8 / 5, abs=1e-5)
    assert log.reader_cost == pytest.approx((0.002 * 4 + 0.004) / 5, abs=1e-5)
    assert log.convergence_value == pytest.approx(1.35)
    assert (log.convergence_key, log.speed_unit, log.status) == ("loss:", "images/s", "ok")
    assert (log.model_name, log.batch_size, log.fp_item, log.run_mode, log.device_num) == (
        "mobilenet_v3_small_bs8_fp32_DP", 8, "fp32", "DP", "N1C1")


def test_no_skip_counts_every_step_and_devices_multiply() -> None:
    log = speed_from_log(LOG, "m", parse_spec("dynamic_bs8_fp32_DP_N1C2"))
    assert log.steps == 7
    assert log.ips_per_device == pytest.approx(48 / 3.8, abs=1e-4)
    assert log.ips == pytest.approx(2 * 48 / 3.8, abs=1e-4)


def test_log_without_speed_lines_or_steps_after_warmup() -> None:
    combo = parse_spec("dynamic_bs8_fp32_DP_N1C1")
    with pytest.raises(SpeedLogError, match="train.log: no"):
        speed_from_log("Traceback ...\nValueError: boom\n", "m", combo, log_file="train.log")
    with pytest.raises(SpeedLogError, match="only 7 steps logged, none after the 7"):
        speed_from_log(LOG, "m", combo, skip_steps=7)


def test_json_round_trip_and_summary(tmp_path: Path) -> None:
    ok = speed_from_log(LOG, "mobilenet_v3_small", parse_spec("dynamic_bs8_fp32_DP_N1C1"), 2, "a.log")
    path = ok.write(tmp_path)
    assert path.name == "mobilenet_v3_small_dynamic_bs8_fp32_DP_N1C1_speed.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("model_name", "batch_size", "fp_item", "run_mode", "device_num", "ips", "speed_unit",
                "convergence_key", "convergence_value", "reader_cost", "batch_cost", "status"):
        assert key in data
    assert SpeedLog.read(path) == ok
    speed_log.skipped("mobilenet_v3_small", parse_spec("dynamic_bs8_fp16_DP_N1C1"),
                      "fp16 training needs CUDA").write(tmp_path)
    table, as_json, png = speed_log.write_summary(tmp_path)
    text = table.read_text(encoding="utf-8")
    assert "dynamic_bs8_fp32_DP_N1C1 | ok | 17.78" in text
    assert "dynamic_bs8_fp16_DP_N1C1 | skipped | - " in text
    assert "fp16 training needs CUDA" in text
    assert len(json.loads(as_json.read_text(encoding="utf-8"))) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_record_skip_summary(tmp_path: Path) -> None:
    log_file = tmp_path / "train.log"
    log_file.write_text(LOG, encoding="utf-8")
    out = tmp_path / "index"
    assert speed_log.main(["record", "--model", "m", "--spec", "dynamic_bs8_fp32_DP_N1C1", "--out-dir", str(out),
                           "--log", str(log_file), "--skip_steps", "2"]) == 0
    assert speed_log.main(["skip", "--model", "m", "--spec", "dynamic_bs8_fp16_DP_N1C1", "--out-dir", str(out),
                           "--reason", "no CUDA"]) == 0
    broken = tmp_path / "broken.log"
    broken.write_text("crashed\n", encoding="utf-8")
    assert speed_log.main(["record", "--model", "m", "--spec", "dynamic_bs4_fp32_DP_N1C1", "--out-dir", str(out),
                           "--log", str(broken)]) == 1
    statuses = {log.spec: log.status for log in speed_log.read_speed_logs(out)}
    assert statuses == {"dynamic_bs8_fp32_DP_N1C1": "ok", "dynamic_bs8_fp16_DP_N1C1": "skipped",
                        "dynamic_bs4_fp32_DP_N1C1": "failed"}
    assert speed_log.main(["summary", "--dir", str(out)]) == 0
    assert (out / "speed_ips.png").is_file()
