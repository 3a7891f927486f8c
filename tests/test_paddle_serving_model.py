"""tools/export_serving_model.py: the serving_server/ + serving_client/ layout paddle_serving_client.convert writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobilenetv3_tipc.export import serving_model
from mobilenetv3_tipc.export.serving_model import ServingConfig, ServingModelError, ServingVar, convert, main
from tests.fixtures.processes import REPO

# Written by the real paddle_serving_client 0.9.0 (Python 3.9 env, protobuf 3.20.3): str(config) and
# config.SerializeToString() of GeneralModelConfig with feed input[3, 224, 224] FP32, fetch softmax_0.tmp_0[4].
REAL_TEXT = (
    'feed_var {\n  name: "input"\n  alias_name: "input"\n  is_lod_tensor: false\n  feed_type: 1\n'
    "  shape: 3\n  shape: 224\n  shape: 224\n}\n"
    'fetch_var {\n  name: "softmax_0.tmp_0"\n  alias_name: "softmax_0.tmp_0"\n  is_lod_tensor: false\n'
    "  fetch_type: 1\n  shape: 4\n}\n"
)
REAL_BINARY = bytes.fromhex(
    "0a1a0a05696e7075741205696e70757418002001280328e00128e0011228"
    "0a0f736f66746d61785f302e746d705f30120f736f66746d61785f302e74"
    "6d705f30180020012804"
)


def _legacy_export(folder: Path, input_name: str = "pixels", two_outputs: bool = False) -> Path:
    """A tiny legacy inference program (inference.pdmodel + .pdiparams), as tools/export_model.py writes."""
    import paddle

    class Net(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.fc = paddle.nn.Linear(12, 5)

        def forward(self, x):  # noqa: ANN001, ANN202
            logits = self.fc(paddle.flatten(x, 1))
            probs = paddle.nn.functional.softmax(logits)
            return (probs, logits) if two_outputs else probs

    net = Net()
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, 2, 2], "float32", name=input_name)]
    folder.mkdir(parents=True, exist_ok=True)
    with paddle.pir_utils.DygraphOldIrGuard():
        static = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
        paddle.jit.save(static, str(folder / "inference"))
    (folder / "label_list.txt").write_text("".join(f"{i} class{i}\n" for i in range(5)), encoding="utf-8")
    return folder


def _real_config() -> ServingConfig:
    return ServingConfig(
        feed=(ServingVar("input", "input", False, 1, (3, 224, 224)),),
        fetch=(ServingVar("softmax_0.tmp_0", "softmax_0.tmp_0", False, 1, (4,)),),
    )


def test_text_and_binary_match_real_paddle_serving_client() -> None:
    config = _real_config()
    assert config.to_text() == REAL_TEXT
    assert config.to_binary() == REAL_BINARY


def test_convert_layout_and_config_read_from_the_program(tmp_path: Path) -> None:
    export = _legacy_export(tmp_path / "export", input_name="pixels")
    server, client = tmp_path / "serving_server", tmp_path / "serving_client"
    config = convert(export, server, client, "inference.pdmodel", "inference.pdiparams")

    assert sorted(p.name for p in server.iterdir()) == [
        "inference.pdiparams", "inference.pdmodel", "label_list.txt",
        "serving_server_conf.prototxt", "serving_server_conf.stream.prototxt",
    ]
    assert sorted(p.name for p in client.iterdir()) == [
        "serving_client_conf.prototxt", "serving_client_conf.stream.prototxt",
    ]
    assert (server / "inference.pdmodel").read_bytes() == (export / "inference.pdmodel").read_bytes()
    assert (server / "inference.pdiparams").read_bytes() == (export / "inference.pdiparams").read_bytes()
    [feed] = config.feed
    [fetch] = config.fetch
    assert (feed.name, feed.alias_name, feed.type, feed.shape, feed.is_lod_tensor) == ("pixels", "pixels", 1,
                                                                                       (3, 2, 2), False)
    assert fetch.type == 1 and fetch.shape == (5,) and fetch.name.startswith("softmax")
    text = (server / "serving_server_conf.prototxt").read_text(encoding="utf-8")
    assert 'name: "pixels"' in text and f'name: "{fetch.name}"' in text and "fetch_type: 1" in text
    assert (client / "serving_client_conf.prototxt").read_text(encoding="utf-8") == text
    assert (server / "serving_server_conf.stream.prototxt").read_bytes() == config.to_binary()
    assert (client / "serving_client_conf.stream.prototxt").read_bytes() == config.to_binary()


def test_fetch_vars_sorted_by_name_and_aliases(tmp_path: Path) -> None:
    export = _legacy_export(tmp_path / "export", two_outputs=True)
    config = serving_model.read_serving_config(export / "inference.pdmodel")
    names = [v.name for v in config.fetch]
    assert len(names) == 2 and names == sorted(names)
    aliased = serving_model.read_serving_config(export / "inference.pdmodel", ["image"], ["a", "b"])
    assert [v.alias_name for v in aliased.fetch] == ["a", "b"] and aliased.feed[0].alias_name == "image"
    with pytest.raises(ServingModelError, match="alias_names has 1 names"):
        serving_model.read_serving_config(export / "inference.pdmodel", None, ["only_one"])


def test_cli_takes_upstream_flags_and_default_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    export = _legacy_export(tmp_path / "export")
    server, client = tmp_path / "srv", tmp_path / "cli"
    with caplog.at_level("INFO"):
        code = main(["--dirname", str(export), "--serving_server", str(server), "--serving_client", str(client)])
    assert code == 0
    assert "replaces `python -m paddle_serving_client.convert`" in caplog.text and "paddle.fluid" in caplog.text
    # convert's own names when --model_filename/--params_filename are not given
    assert (server / "model.pdmodel").is_file() and (server / "params.pdiparams").is_file()


def test_pir_only_export_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "pir"
    export.mkdir()
    (export / "inference.json").write_text("{}", encoding="utf-8")
    (export / "inference.pdiparams").write_bytes(b"")
    with pytest.raises(ServingModelError, match="PIR inference.json only"):
        convert(export, tmp_path / "s", tmp_path / "c")
    assert main(["--dirname", str(export), "--serving_server", str(tmp_path / "s")]) == 2
    assert main(["--dirname", str(tmp_path / "missing")]) == 2


def test_upstream_trans_model_line_maps_to_this_converter() -> None:
    assert serving_model.replacement_for("-m paddle_serving_client.convert") == "tools/export_serving_model.py"
    assert serving_model.replacement_for(" -m  paddle_serving_client.convert ") == "tools/export_serving_model.py"
    assert serving_model.replacement_for("tools/export_model.py") is None
    assert (REPO / serving_model.SCRIPT).is_file()
