"""Small synthetic checks of the retrieval building blocks: scores, postings, verification."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import faiss
import numpy as np
import pytest

from imagelearn.core.bundle import BundleError
from imagelearn.evaluation.tracking import box_iou, success_rate
from imagelearn.retrieval import (
    QueryTruth,
    average_precision,
    load_ground_truth,
    ns_score,
    precision_at_k,
    recall_at_k,
    save_ground_truth,
    ukbench_ground_truth,
)
from imagelearn.retrieval.benchmark import make_variant, random_homography, viewpoint_pairs
from imagelearn.retrieval.global_descriptors import make_global_index
from imagelearn.retrieval.inverted_file import (
    Postings,
    bag_of_words,
    inverse_document_frequency,
    score_postings,
)
from imagelearn.retrieval.storage import read_faiss_index
from imagelearn.retrieval.verification import (
    batched_pairs_by_words,
    consistent_pairs,
    pairs_by_descriptors,
    pairs_by_words,
    plausible_homography,
    verify_pairs,
)
from imagelearn.retrieval.whitening import PCAWhitening


def test_average_precision_matches_the_oxford_trapezoid():
    # ranks 1 and 3 relevant of 2 positives: (0.5 * (1 + 1) / 2) + (0.5 * (0.5 + 2/3) / 2)
    assert average_precision(["a", "x", "b"], ["a", "b"]) == pytest.approx(
        0.5 + 0.5 * (0.5 + 2 / 3) / 2
    )
    assert average_precision(["a", "b", "x"], ["a", "b"]) == pytest.approx(1.0)


def test_junk_is_removed_before_scoring():
    assert average_precision(["j", "a", "b"], ["a", "b"], junk=["j"]) == pytest.approx(1.0)
    assert precision_at_k(["j", "a", "x"], ["a"], 1, junk=["j"]) == 1.0


def test_missing_positives_lower_ap_and_recall():
    assert average_precision(["a"], ["a", "b"]) == pytest.approx(0.5)
    assert recall_at_k(["a", "x"], ["a", "b"], 2) == 0.5
    assert average_precision(["a"], []) == 0.0


def test_ns_score_counts_relevant_in_top_four():
    truths = [QueryTruth("q", ("a", "b", "c", "d"))]
    assert ns_score([["a", "x", "b", "c", "d"]], truths) == 3.0


def test_ukbench_groups_of_four_and_bad_names(tmp_path):
    names = [f"ukbench{i:05d}.jpg" for i in range(8)]
    truths = ukbench_ground_truth(names)
    assert truths[5].positives == tuple(names[4:8])
    with pytest.raises(ValueError, match="not a UKBench file name"):
        ukbench_ground_truth(["holiday.jpg"])


def test_ground_truth_round_trip_resolves_relative_paths(tmp_path):
    path = save_ground_truth([QueryTruth("q.jpg", ("a.jpg",), ("j.jpg",))], tmp_path / "gt.json")
    (loaded,) = load_ground_truth(path)
    assert loaded.query == str(tmp_path / "q.jpg") and loaded.junk == (str(tmp_path / "j.jpg"),)
    (tmp_path / "bad.json").write_text(json.dumps({"nothing": []}))
    with pytest.raises(ValueError, match="not a ground-truth file"):
        load_ground_truth(tmp_path / "bad.json")


def test_postings_scores_equal_the_dense_tfidf_product(rng):
    n_words, images = 50, [rng.integers(0, 50, size=rng.integers(1, 40)) for _ in range(12)]
    idf = inverse_document_frequency(images, n_words)
    bags = [bag_of_words(words, idf) for words in images]
    dense = np.zeros((len(images), n_words), np.float32)
    for row, (words, weights) in enumerate(bags):
        dense[row, words] = weights
    half = len(images) // 2
    segments = [
        Postings.from_bags(range(half), bags[:half], n_words),
        Postings.from_bags(range(half, len(images)), bags[half:], n_words),
    ]
    query_words, query_weights = bag_of_words(rng.integers(0, 50, size=30), idf)
    ids, scores = score_postings(segments, query_words, query_weights)
    query = np.zeros(n_words, np.float32)
    query[query_words] = query_weights
    expected = dense @ query
    assert sorted(ids.tolist()) == np.flatnonzero(expected).tolist()
    np.testing.assert_allclose(scores, expected[ids], rtol=1e-5)
    assert np.linalg.norm(bags[0][1]) == pytest.approx(1.0)


def test_pairs_by_words_pair_shared_words_and_drop_bursts():
    query_rows, database_rows = pairs_by_words(np.array([3, 5, 7]), np.array([7, 3, 3, 9]))
    pairs = sorted(zip(query_rows.tolist(), database_rows.tolist(), strict=True))
    assert pairs == [(0, 1), (0, 2), (2, 0)]
    query_rows, _ = pairs_by_words(np.array([1]), np.full(20, 1), max_pairs_per_word=9)
    assert len(query_rows) == 0


def test_one_pass_over_many_images_pairs_and_checks_each_as_alone(rng):
    query_words = rng.integers(0, 30, 80)
    database_words = [rng.integers(0, 30, n) for n in (0, 50, 120, 7)]
    images, query_rows, database_rows = batched_pairs_by_words(query_words, database_words)
    assert set(images.tolist()) == {1, 2, 3} and len(images) > 100
    n_pairs = len(images)
    query_keypoints = np.c_[
        rng.random((n_pairs, 2)),
        rng.uniform(1, 20, (n_pairs, 1)),
        rng.uniform(0, 360, (n_pairs, 1)),
    ]
    database_keypoints = np.c_[
        rng.random((n_pairs, 2)),
        rng.uniform(1, 20, (n_pairs, 1)),
        rng.uniform(0, 360, (n_pairs, 1)),
    ]
    consistent = consistent_pairs(query_keypoints, database_keypoints, groups=images)
    for image, words in enumerate(database_words):
        alone = images == image
        np.testing.assert_array_equal(
            np.stack(pairs_by_words(query_words, words)),
            np.stack([query_rows[alone], database_rows[alone]]),
        )
        np.testing.assert_array_equal(
            consistent[alone],
            consistent_pairs(query_keypoints[alone], database_keypoints[alone]),
        )


def test_verify_pairs_recovers_a_homography_among_outliers(rng):
    truth = np.array([[0.9, -0.2, 30.0], [0.25, 1.1, -12.0], [1e-4, -2e-4, 1.0]])
    points = rng.uniform(0, 400, size=(120, 2)).astype(np.float32)
    projected = cv2.perspectiveTransform(points[None], truth)[0]
    projected[80:] = rng.uniform(0, 400, size=(40, 2))
    result = verify_pairs(points, projected, threshold=2.0, min_inliers=10)
    assert result.inliers >= 78
    np.testing.assert_allclose(
        result.homography / result.homography[2, 2], truth, rtol=1e-3, atol=1e-3
    )


def test_verify_pairs_refuses_too_few_or_mirrored():
    assert verify_pairs(np.zeros((3, 2)), np.zeros((3, 2)), 2.0).homography is None
    assert not plausible_homography(np.diag([-1.0, 1.0, 1.0]))


def test_pairs_by_descriptors_ratio_test(rng):
    database = rng.normal(size=(40, 16)).astype(np.float32)
    query_rows, database_rows = pairs_by_descriptors(database[:10] + 0.01, database)
    assert query_rows.tolist() == list(range(10)) and database_rows.tolist() == list(range(10))


def test_variants_are_seeded_and_warps_keep_the_whole_image():
    image = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    first, quality = make_variant(image, np.random.default_rng(7))
    second, _ = make_variant(image, np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
    assert quality in (30, 50, 75)
    homography, (width, height) = random_homography(160, 120, np.random.default_rng(3))
    corners = cv2.perspectiveTransform(
        np.array([[[0, 0], [160, 0], [160, 120], [0, 120]]], np.float64), homography
    )[0]
    assert (
        corners.min() >= -1e-6
        and corners[:, 0].max() <= width + 1
        and corners[:, 1].max() <= height + 1
    )


def test_viewpoint_pairs_by_consecutive_numbers():
    names = ["a/roofs1.jpg", "a/roofs2.jpg", "a/DSC_0410.JPG", "a/DSC_0411.JPG", "a/box.pgm"]
    assert viewpoint_pairs(names) == [
        ("a/DSC_0410.JPG", "a/DSC_0411.JPG"),
        ("a/roofs1.jpg", "a/roofs2.jpg"),
    ]


def test_whitening_outputs_unit_vectors_and_flat_index_finds_itself(rng):
    descriptors = rng.normal(size=(60, 32)).astype(np.float32)
    whitening = PCAWhitening(n_components=16).fit(descriptors)
    whitened = whitening.transform(descriptors)
    np.testing.assert_allclose(np.linalg.norm(whitened, axis=1), 1.0, rtol=1e-5)
    index = make_global_index(16, expected_size=60, training=whitened)
    index.add_with_ids(whitened, np.arange(100, 160))
    _, ids = index.search(whitened[:3], 1)
    assert ids[:, 0].tolist() == [100, 101, 102]


def test_iou_and_success_rate():
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(1 / 3)
    assert box_iou(None, (0, 0, 1, 1)) == 0.0
    assert success_rate([(0, 0, 10, 10), None], np.array([[0, 0, 10, 10], [0, 0, 5, 5]])) == 0.5


def test_faiss_files_missing_or_corrupt_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "global-000001.faiss"
    with pytest.raises(FileNotFoundError):  # a writer replaced the snapshot: readers retry
        read_faiss_index(path)
    path.write_bytes(b"not a faiss index at all")
    with pytest.raises(BundleError, match=r"global-000001\.faiss: corrupt FAISS index"):
        read_faiss_index(path)
    index = faiss.IndexFlatL2(4)
    index.add(np.eye(4, dtype=np.float32))
    faiss.write_index(index, str(path))
    assert read_faiss_index(path).ntotal == 4
