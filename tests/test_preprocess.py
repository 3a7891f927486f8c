"""The shared preprocessing: values, geometry and clear errors for bad images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilenetv3_tipc.data.postprocess import softmax, topk
from mobilenetv3_tipc.data.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    center_crop,
    decode_image,
    list_images,
    preprocess,
    resize_center_crop,
    resize_short,
    resized_size,
)
from tests.fixtures.processes import DEMO


def jpeg_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_output_shape_dtype_and_layout() -> None:
    out = preprocess(DEMO)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]


def test_normalization_of_a_flat_colour() -> None:
    # A flat PNG survives losslessly, so every pixel normalizes to one known value per channel.
    buffer = io.BytesIO()
    Image.new("RGB", (300, 260), (255, 0, 128)).save(buffer, format="PNG")
    out = preprocess(buffer.getvalue())
    expected = (np.array([255, 0, 128]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out.reshape(3, -1).mean(axis=1), expected, atol=1e-5)
    np.testing.assert_allclose(out.reshape(3, -1).std(axis=1), 0, atol=1e-5)


def test_resize_short_side_and_center_crop_geometry() -> None:
    img = Image.new("RGB", (500, 375))
    resized = resize_short(img, 256)
    assert resized.size == (341, 256)  # int(256 * 500 / 375) = 341, as torchvision
    assert resize_short(Image.new("RGB", (375, 500)), 256).size == (256, 341)
    assert center_crop(resized, 224).size == (224, 224)


def test_resized_size_and_one_step_crop_geometry() -> None:
    assert resized_size(500, 375) == (341, 256) and resized_size(375, 500) == (256, 341)
    assert resized_size(256, 900) == (256, 900)
    for size in [(500, 375), (375, 500), (256, 256), (100, 60), (4000, 10)]:
        assert resize_center_crop(Image.new("RGB", size)).size == (224, 224)
    assert resize_center_crop(Image.new("RGB", (300, 260)), 200, 224).size == (224, 224)  # padded


def test_crop_takes_the_centre() -> None:
    img = Image.new("RGB", (256, 300), (0, 0, 0))
    img.paste((255, 255, 255), (16, 38, 240, 262))  # exactly the central 224x224 window
    crop = np.asarray(center_crop(img, 224))
    assert crop.min() == 255


def test_grayscale_and_rgba_become_rgb() -> None:
    for mode in ("L", "RGBA", "P"):
        buffer = io.BytesIO()
        Image.new(mode, (64, 64)).save(buffer, format="PNG")
        assert decode_image(buffer.getvalue()).mode == "RGB"


def test_bytes_and_path_give_identical_tensors() -> None:
    np.testing.assert_array_equal(preprocess(DEMO), preprocess(DEMO.read_bytes()))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image data"),
        (b"definitely not an image", "not a decodable image"),
        (jpeg_bytes(300, 300)[:400], "corrupt or truncated"),
    ],
)
def test_bad_bytes_raise_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        preprocess(data)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="nope.jpg: no such image file"):
        preprocess(tmp_path / "nope.jpg")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buffer, format="PNG")  # 36 MPixel, tiny file
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        preprocess(buffer.getvalue(), max_pixels=10_000_000)


def test_list_images(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(jpeg_bytes(10, 10))
    (tmp_path / "a.PNG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.jpg"]
    assert list_images(tmp_path / "b.jpg") == [tmp_path / "b.jpg"]
    with pytest.raises(FileNotFoundError, match="no such image file or folder"):
        list_images(tmp_path / "missing")
    nested = tmp_path / "split"
    (nested / "cls_b").mkdir(parents=True)
    (nested / "cls_a").mkdir()
    (nested / "cls_b" / "x.jpg").write_bytes(b"x")
    (nested / "cls_a" / "y.jpg").write_bytes(b"x")
    assert [p.parent.name for p in list_images(nested)] == ["cls_a", "cls_b"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        list_images(empty)


def test_topk_orders_and_names() -> None:
    probs = softmax(np.array([[1.0, 3.0, 2.0]]))
    (pred,) = topk(probs, 2, ["a", "b", "c"])
    assert pred.class_ids == [1, 2] and pred.labels == ["b", "c"]
    assert pred.probs[0] == pytest.approx(float(probs[0, 1]))
