"""Bad images and label files end with an error naming the file, in every path; nothing hangs."""

from __future__ import annotations

import io
import re
import shutil
import struct
from pathlib import Path

import pytest
from PIL import Image

from mobilenetv3_tipc.data import preprocess as preprocess_module
from mobilenetv3_tipc.data.labels import LabelFileError, labels_for, read_label_file
from mobilenetv3_tipc.data.preprocess import MAX_PIXELS, ImageDecodeError, ImageTooLarge, decode_image
from tests.fixtures.processes import run_python

# 128 bytes that Pillow identifies as a DDS (DirectDraw Surface) file with an unknown FourCC. With all
# of Pillow's plugins allowed, opening it raises NotImplementedError("Unimplemented pixel format"),
# which is not an OSError: before the format restriction it killed the loader thread (hang).
DDS_UNKNOWN_FOURCC = (b"DDS " + struct.pack("<7I", 124, 0x1007, 4, 4, 0, 0, 0) + bytes(44)
                      + struct.pack("<2I", 32, 4) + b"XXXX" + bytes(40))


def png_bytes(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_dds_sample_really_breaks_an_unrestricted_pillow() -> None:
    with pytest.raises(NotImplementedError), Image.open(io.BytesIO(DDS_UNKNOWN_FOURCC)) as img:
        img.load()


def test_formats_outside_the_accepted_list_are_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "cat.png"
    bad.write_bytes(DDS_UNKNOWN_FOURCC)
    with pytest.raises(ImageDecodeError, match=rf"{re.escape(str(bad))}: not a decodable image \(no decoder"):
        decode_image(bad)


@pytest.mark.parametrize("error", [RuntimeError("AVIF decoder failed"), NotImplementedError(),
                                   struct.error("unpack requires a buffer of 4 bytes"), IndexError("tuple index"),
                                   KeyError(7), ZeroDivisionError("division by zero")])
def test_any_exception_of_the_image_library_becomes_an_image_decode_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(8, 8))

    def broken_open(*_args: object, **_kwargs: object) -> Image.Image:
        raise error

    monkeypatch.setattr(preprocess_module.Image, "open", broken_open)
    for source, name in ((image, str(image)), (image.read_bytes(), f"<{image.stat().st_size} bytes>")):
        with pytest.raises(ImageDecodeError) as info:
            decode_image(source)
        assert str(info.value).startswith(f"{name}: not a decodable image ({type(error).__name__}")


def test_no_heap_address_in_messages() -> None:
    for data in (b"not an image at all", b"\x89PNG\r\n\x1a\n" + bytes(30), png_bytes(300, 300)[:60]):
        with pytest.raises(ImageDecodeError) as info:
            decode_image(data)
        assert " at 0x" not in str(info.value), info.value
        assert str(info.value).startswith(f"<{len(data)} bytes>: ")


def test_pillows_bomb_check_quotes_our_limit() -> None:
    huge = png_bytes(20_000, 10_000, "1")  # 200 M pixels: Pillow's own DecompressionBombError fires first
    with pytest.raises(ImageTooLarge) as info:
        decode_image(huge)
    message = str(info.value)
    assert message == f"<{len(huge)} bytes>: image is 200,000,000 pixels, more than the limit of 64,000,000"
    assert "178956970" not in message and "178,956,970" not in message
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)  # serving tells the two apart by it


def test_our_pixel_limit_is_checked_from_the_header() -> None:
    data = png_bytes(9000, 8000)  # 72 M: above our limit, below Pillow's
    with pytest.raises(ImageTooLarge, match=r"image is 9000x8000 = 72,000,000 pixels, more than the limit of "
                                            r"64,000,000$") as info:
        decode_image(data)
    assert info.value.__cause__ is None and (info.value.width, info.value.height) == (9000, 8000)
    assert info.value.limit == MAX_PIXELS
    with pytest.raises(ImageTooLarge, match="more than the limit of 1,000$"):
        decode_image(png_bytes(100, 100), max_pixels=1000)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [0, 2])
def test_undecodable_plugin_image_in_the_training_data_ends_training_naming_it(
        lite_data: Path, tmp_path: Path, workers: int) -> None:
    data = tmp_path / "data"
    shutil.copytree(lite_data, data)
    bad = next(p for p in sorted((data / "train").iterdir()) if p.is_dir()) / "mutated.png"
    bad.write_bytes(DDS_UNKNOWN_FOURCC)
    result = run_python("train.py", "--device", "cpu", "--workers", str(workers), "--epochs", "1",
                        "--batch-size", "4", "--data-path", str(data), "--output-dir", str(tmp_path / "out"),
                        timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert f"corrupt image file: {bad}: not a decodable image" in output
    assert not (tmp_path / "out" / "latest.pdparams").exists()


def test_non_utf8_label_list_names_the_file(tmp_path: Path) -> None:
    labels = tmp_path / "label_list.txt"
    labels.write_bytes("0 tabby\n1 caf\xe9\n".encode("latin-1"))
    with pytest.raises(LabelFileError, match=rf"{re.escape(str(labels))}: not UTF-8 text \(line 2, byte 0xe9"):
        read_label_file(labels)
    with pytest.raises(LabelFileError, match="label_list.txt: not UTF-8"):
        labels_for(2, tmp_path)


def test_label_list_with_a_bom_reads(tmp_path: Path) -> None:
    labels = tmp_path / "label_list.txt"
    labels.write_bytes("0 tabby\n1 café\n".encode("utf-8-sig"))
    assert read_label_file(labels) == ["tabby", "café"]
