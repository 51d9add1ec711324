"""Histogram encoding: hard and soft votes, spatial pyramid cells, tf-idf, normalisations."""

from __future__ import annotations

import numpy as np
import pytest

from imagelearn.bof import (
    NORMALIZATIONS,
    compute_idf,
    encode_histograms,
    normalize_histograms,
    pyramid_cells,
)


def test_hard_histogram_counts_every_descriptor():
    words = [np.array([0, 2, 2, 3]), np.array([1])]
    histograms = encode_histograms(words, n_words=4, normalization="none")
    np.testing.assert_array_equal(histograms, [[1, 0, 2, 1], [0, 1, 0, 0]])
    assert histograms.dtype == np.float32


def test_soft_votes_spread_each_descriptor_over_its_words():
    words = [np.array([[0, 1], [1, 2]])]
    weights = [np.array([[0.75, 0.25], [0.5, 0.5]], dtype=np.float32)]
    histogram = encode_histograms(words, n_words=3, weights=weights, normalization="none")[0]
    np.testing.assert_allclose(histogram, [0.75, 0.75, 0.5])
    assert histogram.sum() == pytest.approx(2.0)  # one unit of mass per descriptor


def test_missing_or_empty_images_give_zero_rows():
    histograms = encode_histograms([None, np.array([], dtype=np.int64), np.array([1])], n_words=2)
    np.testing.assert_array_equal(histograms, [[0, 0], [0, 0], [0, 1]])


def test_pyramid_cell_of_a_bottom_right_keypoint():
    # 100 x 200 image (height x width): x=150, y=80 is in the bottom-right quadrant
    cells = pyramid_cells(
        np.array([[150.0, 80.0], [10.0, 10.0], [199.9, 99.9]]), (100, 200), (1, 2, 4)
    )
    # level 1: cell 0; level 2: offset 1 + cell 3 (row 1, column 1); level 4: offset 5 + row 3 * 4 + column 3
    np.testing.assert_array_equal(cells[0], [0, 1 + 3, 5 + 3 * 4 + 3])
    np.testing.assert_array_equal(cells[1], [0, 1 + 0, 5 + 0])
    np.testing.assert_array_equal(cells[2], [0, 4, 20])  # the last pixel stays inside the grid


def test_pyramid_histogram_places_words_in_their_cells():
    words = [np.array([1, 0])]
    positions = [np.array([[150.0, 80.0], [10.0, 10.0]])]
    histogram = encode_histograms(
        words,
        n_words=2,
        positions=positions,
        image_shapes=[(100, 200)],
        pyramid=(1, 2),
        normalization="none",
    )[0]
    assert histogram.shape == (2 * 5,)
    np.testing.assert_array_equal(histogram[:2], [1, 1])  # whole image
    np.testing.assert_array_equal(histogram[2:4], [1, 0])  # top-left cell: word 0
    np.testing.assert_array_equal(histogram[8:10], [0, 1])  # bottom-right cell: word 1
    assert histogram[4:8].sum() == 0


def test_pyramid_needs_positions():
    with pytest.raises(ValueError, match="positions"):
        encode_histograms([np.array([0])], n_words=2, pyramid=(1, 2))
    with pytest.raises(ValueError, match="grid sizes"):
        encode_histograms([np.array([0])], n_words=2, pyramid=(0,))


def test_idf_down_weights_words_present_everywhere():
    words = [np.array([0, 1]), np.array([0, 2]), np.array([0]), None]
    idf = compute_idf(words, n_words=4)
    # smoothed: ln((1 + 3) / (1 + df)) + 1 over the 3 images that exist
    np.testing.assert_allclose(idf, np.log(4 / np.array([4, 2, 2, 1])) + 1, rtol=1e-6)
    histogram = encode_histograms(words[:1], n_words=4, idf=idf, normalization="none")[0]
    assert histogram[1] > histogram[0]


def test_idf_ignores_zero_weight_soft_votes():
    words = [np.array([[0, 1]]), np.array([[0, 1]])]
    weights = [np.array([[1.0, 0.0]]), np.array([[0.6, 0.4]])]
    idf = compute_idf(words, n_words=2, weights=weights)
    assert idf[1] > idf[0]  # word 1 occurs (with weight) in one image only


@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
def test_each_normalization(normalization):
    histograms = np.array([[4.0, 0.0, 1.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    result = normalize_histograms(histograms, normalization)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[1], 0.0)  # empty rows stay zero, no NaN
    expected = {
        "l1": histograms[0] / 9.0,
        "l2": histograms[0] / np.sqrt(33.0),
        "power": np.sqrt(histograms[0] / 9.0),  # Hellinger: sqrt of the L1-normalised histogram
        "none": histograms[0],
    }[normalization]
    np.testing.assert_allclose(result[0], expected, rtol=1e-6)


@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
def test_normalizing_in_place_equals_normalizing_a_copy(normalization):
    histograms = np.array([[-4.0, 0.0, 1.0, 4.0], [0.0, 2.0, 0.0, 0.0]], dtype=np.float32)
    expected = normalize_histograms(histograms, normalization)
    assert normalize_histograms(histograms, normalization, out=histograms) is histograms
    np.testing.assert_array_equal(histograms, expected)
    if normalization == "power":  # the signed square root keeps the sign
        np.testing.assert_allclose(expected[0], np.array([-2.0, 0.0, 1.0, 2.0]) / 3.0, rtol=1e-6)


def test_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_histograms(np.ones((1, 2)), "max")
