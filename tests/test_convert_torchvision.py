"""The torchvision conversion (tools/convert_torchvision.py) maps a state dict one to one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import pytest

from mobilenetv3_tipc.model import build_model
from mobilenetv3_tipc.model.torchvision_convert import ConversionError, convert_state_dict, paddle_key
from tests.fixtures.processes import run_python


def torchvision_style_state(model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    """What torchvision's state_dict of the same architecture looks like (names, layout)."""
    linear = {f"{n}.weight" for n, m in model.named_sublayers() if isinstance(m, paddle.nn.Linear)}
    state: dict[str, np.ndarray] = {}
    for key, value in model.state_dict().items():
        array = value.numpy()
        torch_key = key.replace("._mean", ".running_mean").replace("._variance", ".running_var")
        state[torch_key] = array.T if key in linear else array
        if key.endswith("._variance"):
            state[torch_key.replace("running_var", "num_batches_tracked")] = np.array(7)
    return state


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_roundtrip_without_a_single_mismatch(name: str) -> None:
    paddle.seed(1)
    source = build_model(name)
    state = torchvision_style_state(source)
    target = build_model(name)
    converted = convert_state_dict(state, target)
    assert set(converted) == set(target.state_dict())
    target.set_state_dict({k: paddle.to_tensor(v) for k, v in converted.items()})
    source.eval()
    target.eval()
    x = paddle.randn([2, 3, 64, 64])
    np.testing.assert_allclose(target(x).numpy(), source(x).numpy(), atol=1e-6)


def test_mismatches_are_reported_by_name() -> None:
    model = build_model("mobilenet_v3_small")
    state = torchvision_style_state(model)
    state.pop("features.0.1.running_mean")
    state["features.0.0.weight"] = np.zeros((8, 3, 3, 3), np.float32)
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as info:
        convert_state_dict(state, model)
    message = str(info.value)
    assert "missing: features.0.1._mean" in message
    assert "unexpected: extra.weight" in message
    assert "features.0.0.weight -> features.0.0.weight: source [8, 3, 3, 3] vs model [16, 3, 3, 3]" in message


def test_key_renames() -> None:
    assert paddle_key("features.3.block.0.1.running_var") == "features.3.block.0.1._variance"
    assert paddle_key("classifier.0.weight") == "classifier.0.weight"


def test_cli_converts_an_npz(tmp_path: Path) -> None:
    model = build_model("mobilenet_v3_small", num_classes=10)
    np.savez(tmp_path / "tv.npz", **torchvision_style_state(model))
    out = tmp_path / "converted.pdparams"
    result = run_python("tools/convert_torchvision.py", "--src", str(tmp_path / "tv.npz"), "--dst", str(out))
    assert result.returncode == 0, result.stderr
    assert "(10 classes)" in result.stderr
    assert paddle.load(str(out))["classifier.3.weight"].shape == [1024, 10]


def test_logits_equal_torchvision_when_installed() -> None:
    """Runs only where torch + torchvision are installed (not in CI: they are not dependencies)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small()
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    reference.train()
    reference(torch.randn(8, 3, 224, 224))
    reference.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x).numpy()
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = build_model("mobilenet_v3_small")
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in convert_state_dict(state, model).items()})
    model.eval()
    np.testing.assert_allclose(model(paddle.to_tensor(x.numpy())).numpy(), expected, atol=1e-5)
