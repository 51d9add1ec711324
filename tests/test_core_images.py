"""load_image: every awkward kind of file gives a predictable array or a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from imagelearn.core.images import ImageReadError, load_image
from imagelearn.data import find_images


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
