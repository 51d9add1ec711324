"""load_image: every awkward kind of file gives a predictable array or a clear error."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.core.images import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageTooLargeError,
    load_image,
)
from imagelearn.data import find_images
from imagelearn.segment import raster
from imagelearn.segment.raster import read_raster


def test_rgba_is_composited_on_white(make_image):
    array = np.zeros((4, 4, 4), dtype=np.uint8)
    array[..., 0] = 255  # red, fully transparent except one pixel
    array[0, 0, 3] = 255
    image = load_image(make_image("a.png", array))
    assert image.shape == (4, 4, 3)
    assert tuple(image[0, 0]) == (255, 0, 0)
    assert tuple(image[1, 1]) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(path)
    image = load_image(path, "L")
    assert image.dtype == np.uint8
    assert image.tolist() == [[0, 255]]


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(path)
    image = load_image(path)
    assert image.shape == (6, 8, 3)
    assert image[..., 0].mean() > 200 and image[..., 1].mean() < 60


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert load_image(path).shape == (40, 20, 3)


def test_decompression_bomb_is_refused(make_image):
    path = make_image("big.png", np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(ImageReadError, match=r"big\.png.*exceeds the limit"):
        load_image(path, max_pixels=1000)


def test_truncated_file_names_the_file(tmp_path, make_image):
    good = make_image("ok.jpg", np.full((64, 64, 3), 128, dtype=np.uint8))
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match=r"cut\.jpg"):
        load_image(truncated)


def test_max_side_downscales_keeping_aspect(make_image):
    path = make_image("wide.jpg", np.zeros((100, 400, 3), dtype=np.uint8))
    assert load_image(path, max_side=200).shape == (50, 200, 3)


def test_unicode_and_spaces_in_names(make_image):
    path = make_image("dossier été/fleur ñ 花.png", np.zeros((5, 5, 3), dtype=np.uint8))
    assert load_image(path).shape == (5, 5, 3)
    assert find_images(path.parent) == [path]


def test_every_shared_bad_input_reads_or_fails_by_name():
    root = data_path("bad_inputs")
    paths = find_images(root)
    assert any(p.suffix == ".svg" for p in paths), "a JPEG saved as .svg is found by its content"
    failures = {}
    for path in paths:
        try:
            image = load_image(path)
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        except ImageReadError as error:
            failures[path.name] = str(error)
    assert list(failures) == ["ukbench09268_corrupt.jpg"]
    assert "ukbench09268_corrupt.jpg" in failures["ukbench09268_corrupt.jpg"]


def _forged_png(path: Path, width: int, height: int) -> Path:
    """A real 1x1 PNG whose header (IHDR, with a valid CRC) claims ``width x height``."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A real, fully decodable 30,000 x 30,000 bilevel PNG of zeros (about 110 KB).

    Written row by row, so making it costs neither the 900 MB Pillow would hold nor seconds.
    """
    side = 30_000
    compressor = zlib.compressobj(9)
    row = bytes(1 + side // 8)  # filter type 0, then 1 bit per pixel
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )
    return path


def test_huge_and_forged_images_give_one_error_and_message_everywhere(huge_png, tmp_path):
    forged = _forged_png(tmp_path / "forged.png", 30_000, 30_000)
    expected = f"30000x30000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS} (decompression bomb?)"
    for path in (huge_png, forged):
        for read in (load_image, read_raster):
            with pytest.raises(ImageTooLargeError) as raised:
                read(path)
            assert str(raised.value) == f"{path}: {expected}"
            assert raised.value.parameter == "max_pixels" and raised.value.path == str(path)
        with pytest.raises(ImageTooLargeError, match="exceeds the limit of 100 "):
            load_image(path, max_pixels=100)
    assert ImageTooLargeError is raster.ImageTooLargeError, "the old import path still works"


def test_a_limit_above_pillows_own_is_obeyed(tmp_path):
    """Pillow refuses 2 x 89M pixels by itself; ``max_pixels`` is the one limit, so it decides."""
    forged = _forged_png(tmp_path / "forged.png", 14_000, 14_000)
    with pytest.raises(ImageReadError, match="corrupt or truncated") as raised:
        load_image(forged, max_pixels=None)  # the header passes; the missing pixels do not
    assert not isinstance(raised.value, ImageTooLargeError)
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3, "Pillow's limit is restored"


def test_cli_refuses_the_bomb_with_one_line_naming_only_flags_the_command_has(
    huge_png, tmp_path, capsys
):
    assert main(["segment", "cluster", str(huge_png), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err == (
        f"imagelearn: error: {huge_png}: 30000x30000 pixels exceeds the limit of "
        f"{DEFAULT_MAX_PIXELS} (decompression bomb?) (--max-pixels)\n"
    )
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (8, 8)).save(frames / "0.png")
    assert main(["track", str(frames), "--query", str(huge_png)]) == 2
    assert capsys.readouterr().err.endswith("(decompression bomb?)\n")  # track has no --max-pixels


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path.mkdir(), "is a directory, not an image; give image files"),
        (lambda path: path.touch(), "empty file"),
        (
            lambda path: path.symlink_to(path),
            "cannot be opened (Too many levels of symbolic links)",
        ),
        (lambda path: path.write_bytes(b"not an image at all"), "not an image format"),
    ],
    ids=["directory", "empty", "symlink loop", "text"],
)
def test_what_is_not_an_image_file_is_named_for_what_it_is(tmp_path, make, reason):
    path = tmp_path / "ünï cödé x.jpg"
    make(path)
    with pytest.raises(ImageReadError) as raised:
        load_image(path)
    assert str(raised.value) == f"{path}: {reason}" or reason in str(raised.value)
    with pytest.raises(ImageReadError, match=re.escape(reason)):
        read_raster(path)
