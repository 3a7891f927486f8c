"""The fast preprocessing against the definition it replaces, and the batched pipeline.

``reference_preprocess`` below is the preprocessing as first written: decode and
``convert("RGB")``, resize the short side to 256 (the whole image), center crop 224,
``(x / 255 - mean) / std`` in three float32 steps, HWC -> CHW. The fast path must give
the same tensor within the stated bound: one 8-bit level where it resamples only the
crop window (``RESIZE_BOUND``), 1e-6 elsewhere.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilenetv3_tipc.data.batching import BatchPreprocessor
from mobilenetv3_tipc.data.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    list_images,
    normalize_chw,
    preprocess,
    preprocess_batch,
    resize_center_crop,
)
from tests.fixtures.processes import DEMO

EXACT = 1e-6
# One 8-bit level in the channel with the smallest std, after normalization.
RESIZE_BOUND = 1.0 / (255.0 * min(IMAGENET_STD)) + EXACT
# Share of output values one level off. Measured on demo.jpg + the 32 lite JPEGs: 0.13% on
# average, 1.9% at most; on dithered (palette) noise about 15%. A shifted crop window
# would change nearly every value.
MEAN_DIFFERING_ON_PHOTOS = 0.01
MAX_DIFFERING = 0.25


def reference_preprocess(source: bytes | Path, resize_size: int = 256, crop_size: int = 224) -> np.ndarray:
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
        img = opened.convert("RGB")
    width, height = img.size
    short, long = (width, height) if width <= height else (height, width)
    if short != resize_size:
        new_short, new_long = resize_size, int(resize_size * long / short)
        img = img.resize((new_short, new_long) if width <= height else (new_long, new_short), Image.BILINEAR)
    width, height = img.size
    if width < crop_size or height < crop_size:
        padded = Image.new("RGB", (max(width, crop_size), max(height, crop_size)))
        padded.paste(img, ((padded.width - width) // 2, (padded.height - height) // 2))
        img, width, height = padded, padded.width, padded.height
    left, top = int(round((width - crop_size) / 2.0)), int(round((height - crop_size) / 2.0))
    img = img.crop((left, top, left + crop_size, top + crop_size))
    array = np.asarray(img, dtype=np.float32) / 255.0
    array = (array - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def photo_like(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: resampling rounds differently on it, like on a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), (xx + yy) % 256], axis=-1)
    noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB").convert(mode)


def assert_close_to_reference(fast: np.ndarray, ref: np.ndarray, bound: float = RESIZE_BOUND) -> float:
    """Checks the bound; returns the share of values that differ by more than 1e-6."""
    assert fast.shape == ref.shape and fast.dtype == np.float32 and fast.flags["C_CONTIGUOUS"]
    delta = np.abs(fast - ref)
    assert delta.max() <= bound, f"max |delta| {delta.max():.6f} > {bound:.6f}"
    differing = float((delta > EXACT).mean())
    assert differing <= MAX_DIFFERING, f"{differing:.2%} of the values differ"
    return differing


def test_normalization_is_within_1e6_for_every_pixel_value() -> None:
    values = np.arange(256, dtype=np.uint8)
    img = np.stack([values, values[::-1], np.roll(values, 77)], axis=-1).reshape(16, 16, 3)
    expected = (img.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32
    )
    out = normalize_chw(img)
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1), rtol=0, atol=EXACT)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]


def test_normalize_writes_into_the_given_array_and_checks_it() -> None:
    img = Image.new("RGB", (224, 224), (10, 20, 30))
    batch = np.zeros((2, 3, 224, 224), np.float32)
    result = normalize_chw(img, out=batch[1])
    assert np.shares_memory(result, batch[1])
    assert np.all(batch[0] == 0) and np.all(batch[1] != 0)
    with pytest.raises(ValueError, match="out must be float32"):
        normalize_chw(img, out=np.zeros((3, 224, 224), np.float64))
    with pytest.raises(ValueError, match="needs an RGB image"):
        normalize_chw(Image.new("L", (8, 8)))


def test_demo_and_lite_images_match_the_reference(lite_data: Path) -> None:
    paths = [DEMO, *list_images(lite_data)]
    assert len(paths) >= 33
    differing = [assert_close_to_reference(preprocess(path), reference_preprocess(path)) for path in paths]
    assert np.mean(differing) <= MEAN_DIFFERING_ON_PHOTOS


@pytest.mark.parametrize(
    ("size", "mode", "fmt"),
    [
        ((500, 375), "RGB", "JPEG"),  # landscape, the benchmark's shape
        ((375, 500), "RGB", "JPEG"),  # portrait
        ((1001, 333), "RGB", "JPEG"),  # odd sizes, wide
        ((257, 1000), "RGB", "PNG"),  # barely larger than 256, tall
        ((300, 280), "RGB", "PNG"),
        ((2000, 1500), "RGB", "JPEG"),  # large photo
        ((640, 480), "L", "JPEG"),  # grayscale
        ((480, 640), "RGBA", "PNG"),  # alpha dropped
        ((333, 444), "P", "PNG"),  # palette
        ((320, 256), "RGB", "PNG"),  # short side already 256: crop only
        ((100, 60), "RGB", "PNG"),  # small: upscaled
    ],
)
def test_synthetic_images_match_the_reference(size: tuple[int, int], mode: str, fmt: str) -> None:
    data = encode(photo_like(*size, mode=mode, seed=size[0]), fmt)
    assert_close_to_reference(preprocess(data), reference_preprocess(data))


def test_paths_without_resampling_the_crop_are_exact() -> None:
    short_is_256 = encode(photo_like(400, 256), "PNG")
    np.testing.assert_allclose(preprocess(short_is_256), reference_preprocess(short_is_256), rtol=0, atol=EXACT)
    # resize to 200 < crop 224: the crop is padded, as the reference pads it
    padded = encode(photo_like(300, 250), "PNG")
    fast, ref = preprocess(padded, resize_size=200), reference_preprocess(padded, resize_size=200)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=EXACT)


def test_crop_window_resampling_is_at_most_one_level_off() -> None:
    for size in [(500, 375), (375, 500), (300, 280), (911, 513), (4000, 3000)]:
        img = photo_like(*size)
        width, height = size
        short, long = min(size), max(size)
        new = (256, int(256 * long / short)) if width <= height else (int(256 * long / short), 256)
        full = img.resize(new, Image.BILINEAR)
        left, top = int(round((new[0] - 224) / 2.0)), int(round((new[1] - 224) / 2.0))
        two_step = np.asarray(full.crop((left, top, left + 224, top + 224)), np.int16)
        one_step = np.asarray(resize_center_crop(img), np.int16)
        assert one_step.shape == (224, 224, 3)
        assert np.abs(one_step - two_step).max() <= 1, size


def test_batch_equals_stacked_single_images() -> None:
    sources = [DEMO.read_bytes(), encode(photo_like(300, 400), "JPEG"), DEMO]
    stacked = np.stack([preprocess(s) for s in sources])
    np.testing.assert_array_equal(preprocess_batch(sources), stacked)
    np.testing.assert_array_equal(preprocess_batch(sources, workers=3), stacked)
    with BatchPreprocessor(workers=2) as preprocessor:
        np.testing.assert_array_equal(preprocessor(sources), stacked)


def test_iter_batches_keeps_order_and_reports_a_bad_batch() -> None:
    good = [DEMO.read_bytes(), encode(photo_like(260, 300), "PNG")]
    batches = [good, [good[0], b"not an image"], good[::-1]]
    with BatchPreprocessor(workers=2) as preprocessor:
        seen = []
        for sources, pending in preprocessor.iter_batches(batches):
            try:
                seen.append((sources, pending.result()))
            except ImageDecodeError as exc:
                assert "not a decodable image" in str(exc)
                seen.append((sources, None))
    assert [s for s, _ in seen] == batches
    assert seen[1][1] is None
    np.testing.assert_array_equal(seen[0][1], np.stack([preprocess(s) for s in good]))
    np.testing.assert_array_equal(seen[2][1], np.stack([preprocess(s) for s in good[::-1]]))


def test_next_batch_is_started_before_the_current_one_is_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    lock = threading.Lock()
    original = BatchPreprocessor.submit

    def recording_submit(self: BatchPreprocessor, sources: list[bytes]):  # noqa: ANN202
        with lock:
            started.append(len(sources))
        return original(self, sources)

    monkeypatch.setattr(BatchPreprocessor, "submit", recording_submit)
    jpeg = DEMO.read_bytes()
    with BatchPreprocessor(workers=1) as preprocessor:
        batches = preprocessor.iter_batches([[jpeg], [jpeg, jpeg], [jpeg] * 3])
        _, first = next(batches)
        assert started == [1, 2]  # batch 2 is under way while the caller has batch 1
        first.result()
        _, second = next(batches)
        assert started == [1, 2, 3]
        assert second.result().shape == (2, 3, 224, 224)
        _, third = next(batches)
        assert third.result().shape == (3, 3, 224, 224)
        assert next(batches, None) is None


def test_preprocessor_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be >= 0"):
        BatchPreprocessor(workers=-1)
    with BatchPreprocessor(workers=1) as preprocessor, pytest.raises(ValueError, match="at least one image"):
        preprocessor([])
    assert BatchPreprocessor(workers=0).workers >= 1
