"""Local features: every registered detector, the VLFeat SIFT reference, matching, the cache."""

from __future__ import annotations

import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from conftest import data_path
from imagelearn.core.images import ImageReadError, load_image
from imagelearn.features import DETECTORS, LocalFeatures, extract_features, make_detector
from imagelearn.features import extract as extract_module
from imagelearn.features.dense import DenseLab

PHOTO = ("multiview", "pairs", "roofs1.jpg")  # 640 x 478 RGB
FLOWERS = ("flowers5", "daisy")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(data_path(*PHOTO), "RGB", max_side=320)


def _check_well_formed(features: LocalFeatures, detector, shape: tuple[int, int]) -> None:
    n = len(features)
    assert features.keypoints.shape == (n, 4) and features.keypoints.dtype == np.float32
    assert features.descriptors.shape == (n, detector.descriptor_size)
    assert features.descriptors.dtype == (np.uint8 if detector.binary else np.float32)
    assert features.binary == detector.binary
    assert tuple(features.image_shape) == shape
    x, y, size = features.keypoints[:, 0], features.keypoints[:, 1], features.keypoints[:, 2]
    assert np.all((x >= -0.5) & (x <= shape[1] - 0.5) & (y >= -0.5) & (y <= shape[0] - 0.5))
    assert np.all(size > 0) and np.all(np.isfinite(features.descriptors.astype(np.float32)))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_gives_well_formed_features_on_a_real_photo(name: str, photo: np.ndarray) -> None:
    detector = make_detector(name)
    features = detector.detect(photo)
    assert detector.name == name and len(features) > 100
    _check_well_formed(features, detector, photo.shape[:2])
    params = detector.get_params()
    assert make_detector(name, **json.loads(json.dumps(params))).get_params() == params


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_gray_and_rgb_input_are_both_accepted(name: str, photo: np.ndarray) -> None:
    detector = make_detector(name)
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    for image in (gray, photo):
        _check_well_formed(detector.detect(image), detector, gray.shape)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_max_keypoints_keeps_that_many_of_the_strongest(name: str, photo: np.ndarray) -> None:
    capped = make_detector(name, max_keypoints=40).detect(photo)
    assert len(capped) == 40
    if not name.startswith("dense"):  # sparse: the kept ones are detections of the uncapped run
        everything = make_detector(name, max_keypoints=None).detect(photo)
        known = {tuple(np.round(point, 1)) for point in everything.keypoints[:, :2]}
        assert sum(tuple(np.round(point, 1)) in known for point in capped.keypoints[:, :2]) >= 36


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_max_side_reports_keypoints_in_original_coordinates(name: str, photo: np.ndarray) -> None:
    detector = make_detector(name, max_side=160)
    features = detector.detect(photo)
    _check_well_formed(features, detector, photo.shape[:2])
    assert features.keypoints[:, 0].max() > 0.6 * photo.shape[1]  # not confined to 160 px
    reference = make_detector(name, max_side=None).detect(
        cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA)
    )
    assert len(features) == len(reference)
    np.testing.assert_allclose(
        features.keypoints[:, 0], (reference.keypoints[:, 0] + 0.5) * 2 - 0.5, atol=1e-3
    )


def test_unknown_detector_or_parameter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="dense_rootsift"):
        make_detector("surf")
    with pytest.raises(ValueError, match="stride"):
        make_detector("dense_sift", stride=4)


@pytest.mark.parametrize(
    ("name", "params", "image", "message"),
    [
        ("sift", {}, np.zeros((20, 20), np.float32), "uint8"),
        ("sift", {}, np.zeros((20, 20, 4), np.uint8), "shape"),
        ("sift", {"max_keypoints": 0}, np.zeros((20, 20), np.uint8), "max_keypoints"),
        ("dense_sift", {"step": 0}, np.zeros((20, 20), np.uint8), "step"),
        ("dense_lab", {"sizes": ()}, np.zeros((20, 20, 3), np.uint8), "sizes"),
    ],
)
def test_bad_images_and_parameters_raise_value_error(
    name: str, params: dict, image: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_detector(name, **params).detect(image)


def test_rootsift_is_the_square_root_of_l1_normalised_sift(photo: np.ndarray) -> None:
    sift = make_detector("sift", max_keypoints=200).detect(photo)
    root = make_detector("rootsift", max_keypoints=200).detect(photo)
    np.testing.assert_array_equal(sift.keypoints, root.keypoints)
    expected = np.sqrt(sift.descriptors / sift.descriptors.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(root.descriptors, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(root.descriptors, axis=1), 1.0, atol=1e-5)


def test_dense_detectors_share_one_multi_scale_grid(photo: np.ndarray) -> None:
    params = {"step": 10, "sizes": (12, 24)}
    grids = [
        make_detector(name, **params).detect(photo).keypoints
        for name in DETECTORS
        if name.startswith("dense")
    ]
    for keypoints in grids[1:]:
        np.testing.assert_array_equal(keypoints, grids[0])
    height, width = photo.shape[:2]
    per_size = (int((width - 12) // 10) + 1) * (int((height - 12) // 10) + 1)
    assert len(grids[0]) == 2 * per_size
    np.testing.assert_allclose(np.unique(grids[0][:, 2]), [2.0, 4.0])  # OpenCV size = patch / 6


def test_dense_sift_zeroes_flat_patches_and_tiny_images_get_one_centre() -> None:
    flat = np.full((64, 64), 128, np.uint8)
    assert not make_detector("dense_sift").detect(flat).descriptors.any()
    tiny = make_detector("dense_rootsift", sizes=(16, 32)).detect(np.eye(8, dtype=np.uint8) * 255)
    np.testing.assert_allclose(tiny.keypoints[:, :2], [[3.5, 3.5], [3.5, 3.5]])


def test_dense_lab_of_a_uniform_colour_is_its_lab_value() -> None:
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255
    features = DenseLab(step=8, sizes=(16,), cells=2).detect(red)
    pure_red_lab = [53.24, 80.09, 67.20]  # CIE Lab, D65 white
    np.testing.assert_allclose(
        features.descriptors[:, :12], np.tile(pure_red_lab, (len(features), 4)), atol=1.0
    )
    np.testing.assert_allclose(features.descriptors[:, 12:], 0.0, atol=1e-2)


def _read_vlfeat(path) -> tuple[np.ndarray, np.ndarray]:
    """VLFeat's ``box.sift`` (Lowe's format): a count line, then per feature row, column,
    scale (sigma, pixels), orientation (radians) and 128 descriptor values."""
    values = np.array(path.read_text().split(), dtype=np.float64)
    count, length = int(values[0]), int(values[1])
    table = values[2:].reshape(count, 4 + length)
    return table[:, :4], table[:, 4:]


def test_sift_agrees_with_vlfeat_reference_frames_and_descriptors() -> None:
    frames, reference = _read_vlfeat(data_path("multiview", "pairs", "box.sift"))
    image = load_image(data_path("multiview", "pairs", "box.pgm"), "L")
    features = make_detector("sift").detect(image)
    keypoints = features.keypoints.astype(np.float64)
    reference_xy = frames[:, [1, 0]]  # Lowe's files list row (y) first
    distance = np.linalg.norm(reference_xy[:, None] - keypoints[None, :, :2], axis=2)
    scale_ratio = np.abs(np.log((keypoints[None, :, 2] / 2) / frames[:, None, 2]))  # size = 2 sigma
    # VLFeat's angle is counter-clockwise in radians, OpenCV's clockwise in degrees (y down).
    angle_gap = np.abs((np.degrees(-frames[:, None, 3]) - keypoints[None, :, 3] + 180) % 360 - 180)
    close = (distance < 2.0) & (scale_ratio < np.log(1.25)) & (angle_gap < 20)
    found = close.any(axis=1)
    nearest = np.where(close, distance, np.inf).argmin(axis=1)[found]

    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    pair_distance = np.linalg.norm(
        unit(reference[found]) - unit(features.descriptors[nearest]), axis=1
    )
    shuffled = np.random.default_rng(0).permutation(len(nearest))
    random_distance = np.linalg.norm(
        unit(reference[found]) - unit(features.descriptors[nearest][shuffled]), axis=1
    )
    # Measured with OpenCV 5.0: 70% found, median matched distance 0.15 (random pairs: 1.04).
    assert found.mean() >= 0.65
    assert np.median(pair_distance) <= 0.25
    assert np.median(random_distance) >= 0.9


def test_rootsift_matches_recover_the_graffiti_homography() -> None:
    first = load_image(data_path("multiview", "opencv", "graf1.png"), "L")
    third = load_image(data_path("multiview", "opencv", "graf3.png"), "L")
    truth = cv2.FileStorage(
        str(data_path("multiview", "opencv", "H1to3p.xml")), cv2.FILE_STORAGE_READ
    )
    true_homography = truth.getNode("H13").mat()
    detector = make_detector("rootsift", max_keypoints=3000)
    a, b = detector.detect(first), detector.detect(third)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m for m, n in pairs if m.distance < 0.8 * n.distance]
    source = a.keypoints[[m.queryIdx for m in good], :2]
    target = b.keypoints[[m.trainIdx for m in good], :2]
    homography, inliers = cv2.findHomography(source, target, cv2.RANSAC, 3.0)
    inliers = inliers.ravel().astype(bool)
    truly_projected = cv2.perspectiveTransform(source[None].astype(np.float64), true_homography)[0]
    correct = np.linalg.norm(truly_projected - target, axis=1) < 3.0
    height, width = first.shape
    corners = np.array([[[0, 0], [width, 0], [width, height], [0, height]]], np.float64)
    corner_error = np.linalg.norm(
        cv2.perspectiveTransform(corners, homography)
        - cv2.perspectiveTransform(corners, true_homography),
        axis=2,
    )
    # Measured: 638 ratio-test matches, 469 RANSAC inliers (73% within 3 px of the true mapping),
    # corners off by at most 8.3 px.
    assert inliers.sum() >= 300
    assert correct[inliers].mean() >= 0.65
    assert corner_error.max() < 15.0  # pixels, at the corners of an 800 x 640 image


@pytest.fixture
def flower_files(tmp_path):
    """Four flower photos copied into a temporary folder, plus a corrupt JPEG."""
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted(data_path(*FLOWERS).glob("*.jpg"))[:4]
    copies = [folder / source.name for source in sources]
    for source, copy in zip(sources, copies, strict=True):
        shutil.copyfile(source, copy)
    corrupt = folder / "corrupt.jpg"
    shutil.copyfile(data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg"), corrupt)
    return copies, corrupt


def test_second_extraction_reads_the_cache_without_decoding(
    flower_files, tmp_path, monkeypatch
) -> None:
    good, _ = flower_files
    detector = make_detector("dense_rootsift", step=16)
    cache = tmp_path / "cache"
    first, skipped = extract_features(good, detector, n_jobs=1, cache_dir=cache)
    assert not skipped and all(isinstance(features, LocalFeatures) for features in first)
    fresh = detector.detect(load_image(good[0], detector.color_mode))
    np.testing.assert_array_equal(first[0].descriptors, fresh.descriptors)
    with np.load(next(cache.rglob("*.npz")), allow_pickle=False) as stored:
        assert stored["descriptors"].dtype == np.uint8  # raw SIFT, a byte per value

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image that is in the cache")

    monkeypatch.setattr(extract_module, "load_image", no_decoding)
    second, _ = extract_features(good, detector, n_jobs=1, cache_dir=cache)
    for before, after in zip(first, second, strict=True):
        np.testing.assert_array_equal(before.descriptors, after.descriptors)
        np.testing.assert_array_equal(before.keypoints, after.keypoints)
        assert tuple(before.image_shape) == tuple(after.image_shape)
    renamed = good[0].with_name("renamed.jpg")  # the key is the content, not the name
    good[0].rename(renamed)
    extract_features([renamed], detector, n_jobs=1, cache_dir=cache)
    with pytest.raises(AssertionError, match="decoded"):  # another parameter misses
        extract_features(
            good[1:2], make_detector("dense_rootsift", step=12), n_jobs=1, cache_dir=cache
        )


def test_unreadable_files_are_skipped_by_name_or_raise_when_strict(
    flower_files, tmp_path, caplog
) -> None:
    good, corrupt = flower_files
    missing = tmp_path / "missing.jpg"
    images = [good[0], corrupt, missing, good[1]]
    detector = make_detector("orb")
    with caplog.at_level(logging.WARNING, logger="imagelearn.features"):
        features, skipped = extract_features(
            images, detector, n_jobs=1, cache_dir=tmp_path / "cache"
        )
    assert [features[i] is None for i in range(4)] == [False, True, True, False]
    assert [path for path, _ in skipped] == [str(corrupt), str(missing)]
    assert "not found" in skipped[1][1]
    assert str(corrupt) in caplog.text and str(missing) in caplog.text
    with pytest.raises(ImageReadError, match=r"corrupt\.jpg"):
        extract_features(images, detector, n_jobs=1, cache_dir=False, strict=True)


def test_parallel_extraction_keeps_order_and_file_coordinates(flower_files, tmp_path) -> None:
    good, _ = flower_files
    photo_path = data_path(*PHOTO)
    arrays = [load_image(path, "L") for path in good]
    detector = make_detector("sift", max_side=200)
    features, skipped = extract_features(
        [photo_path, *arrays], detector, n_jobs=2, cache_dir=tmp_path / "cache"
    )
    assert not skipped
    assert features[0].image_shape == (478, 640) and features[0].keypoints[:, 0].max() > 500
    for array, extracted in zip(arrays, features[1:], strict=True):
        np.testing.assert_array_equal(extracted.descriptors, detector.detect(array).descriptors)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1  # arrays are not cached


@pytest.mark.parametrize("name", ["dense_rootsift", "dense_opponent_rootsift"])
def test_dense_rootsift_rows_are_unit_per_channel_or_zero(name: str, photo: np.ndarray) -> None:
    descriptors = make_detector(name, step=16).detect(photo).descriptors
    norms = np.linalg.norm(descriptors.reshape(len(descriptors), -1, 128), axis=2)
    assert np.all(np.isclose(norms, 1.0, atol=1e-5) | (norms == 0)) and (norms > 0).mean() > 0.9


@pytest.mark.parametrize("name", ["rootsift", "dense_rootsift", "sift", "orb", "akaze"])
def test_a_blank_image_gives_empty_features_not_an_error(name):
    features = make_detector(name).detect(np.full((64, 64), 128, dtype=np.uint8))
    assert features.keypoints.shape[1] == 4
    assert len(features.descriptors) == len(features.keypoints)
