"""The k-means engine: seeding, Lloyd with candidate search, k-majority, best of several runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import imagelearn.core.kmeans as kmeans_module
from imagelearn.core.errors import ParameterError
from imagelearn.core.kmeans import (
    assign,
    assign_among_candidates,
    kmeans,
    kmeans_centers,
    kmeanspp_seeds,
    mean_centers,
    nearest_centers,
    refreshed_neighbors,
)
from test_bof_vocabulary import binary_blobs, blobs


def test_kmeans_recovers_separated_clusters_and_labels_by_exact_search(rng):
    points, truth = blobs(rng)
    result = kmeans(points.astype(np.float64), 8, n_jobs=1)  # any float dtype is accepted
    assert result.centers.shape == (8, 16) and result.centers.dtype == np.float32
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1.0)
    squared = ((points[:, None, :] - result.centers[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(result.labels, squared.argmin(axis=1))
    assert result.mean_squared_distance == pytest.approx(squared.min(axis=1).mean(), rel=1e-4)


def test_more_seedings_never_end_worse(rng):
    points = rng.standard_normal((2000, 4)).astype(np.float32)
    errors = {
        n_init: kmeans(points, 12, 3, n_init=n_init, n_jobs=1).mean_squared_distance
        for n_init in (1, 4)
    }
    assert errors[4] <= errors[1]  # the first seeding is the same; the best one is kept


def test_kmeans_of_binary_codes_is_k_majority(rng):
    packed, truth, codes = binary_blobs(rng)
    result = kmeans(packed, 6, n_jobs=1)
    assert result.centers.dtype == np.uint8
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1.0)
    bits = np.unpackbits(result.centers, axis=1)
    assert ((bits[:, None, :] != codes[None]).sum(axis=2).min(axis=1) == 0).all()


def test_lloyd_stops_at_a_fixed_point(rng):
    points, _ = blobs(rng)
    centers, labels, error = kmeans_centers(points, points[:: len(points) // 8][:8], 200)
    again, again_labels, again_error = kmeans_centers(points, centers, 5)
    np.testing.assert_array_equal(again, centers)
    np.testing.assert_array_equal(again_labels, labels)
    assert again_error == error


def test_a_loose_tolerance_ends_at_about_the_same_error(rng):
    points = rng.standard_normal((3000, 3)).astype(np.float32)
    exact, loose = (kmeans(points, 6, 100, tol=tol, n_jobs=1) for tol in (0.0, 1e-2))
    assert loose.mean_squared_distance == pytest.approx(exact.mean_squared_distance, rel=0.01)


def test_assign_is_the_exact_nearest_centre(rng):
    points = rng.standard_normal((500, 6)).astype(np.float32)
    centers = rng.standard_normal((9, 6)).astype(np.float32)
    labels, distances = assign(points, centers)
    squared = ((points[:, None, :] - centers[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels, squared.argmin(axis=1))
    np.testing.assert_allclose(distances, squared.min(axis=1), rtol=1e-4, atol=1e-5)


def test_kmeanspp_seeds_are_distinct_rows_even_with_few_distinct_values(rng):
    points = np.repeat(rng.standard_normal((5, 3)).astype(np.float32), 40, axis=0)
    seeds = kmeanspp_seeds(points, 5, seed=0)
    assert len(np.unique(seeds, axis=0)) == 5
    assert all((points == seed).all(axis=1).any() for seed in seeds)


def test_bad_parameters_name_themselves(rng):
    points = rng.standard_normal((20, 3)).astype(np.float32)
    cases = {
        "n_clusters": {"n_clusters": 21},
        "n_iter": {"n_clusters": 2, "n_iter": 0},
        "n_init": {"n_clusters": 2, "n_init": 0},
        "init": {"n_clusters": 2, "init": "best"},
        "n_candidates": {"n_clusters": 2, "n_candidates": 1},
    }
    for parameter, arguments in cases.items():
        with pytest.raises(ParameterError) as error:
            kmeans(points, **arguments)
        assert error.value.parameter == parameter
    with pytest.raises(ParameterError, match="2-D"):
        kmeans(points[0], 2)


def test_candidate_assignment_is_the_nearest_candidate_on_any_thread_count(rng):
    points = rng.standard_normal((600, 8)).astype(np.float32)
    centers = rng.standard_normal((40, 8)).astype(np.float32)
    labels = rng.integers(0, 40, len(points))
    candidates = nearest_centers(centers, 5)
    assigned, distances = assign_among_candidates(points, labels, centers, candidates)
    choices = candidates[labels]  # (n, 5)
    squared = ((points[:, None, :] - centers[choices]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(assigned, choices[np.arange(len(points)), squared.argmin(1)])
    np.testing.assert_allclose(distances, squared.min(axis=1), rtol=1e-4, atol=1e-5)
    threaded = assign_among_candidates(points, labels, centers, candidates, n_threads=3)
    np.testing.assert_array_equal(threaded[0], assigned)
    # every centre a candidate: exact nearest-centre search
    everything = nearest_centers(centers, len(centers))
    exact = ((points[:, None, :] - centers[None]) ** 2).sum(axis=2).argmin(axis=1)
    np.testing.assert_array_equal(
        assign_among_candidates(points, labels, centers, everything)[0], exact
    )


def test_candidate_blocks_gathered_in_small_chunks_assign_the_same(rng, monkeypatch):
    points = rng.standard_normal((500, 6)).astype(np.float32)
    centers = rng.standard_normal((30, 6)).astype(np.float32)
    labels = rng.integers(0, 20, len(points))  # centres 20-29 hold no row
    candidates = nearest_centers(centers, 4)
    whole = assign_among_candidates(points, labels, centers, candidates, n_threads=2)
    monkeypatch.setattr(kmeans_module, "CANDIDATE_BLOCK_CENTERS", 3)
    chunked = assign_among_candidates(points, labels, centers, candidates, n_threads=2)
    np.testing.assert_array_equal(chunked[0], whole[0])
    np.testing.assert_array_equal(chunked[1], whole[1])
    assert (candidates[labels] == whole[0][:, None]).any(axis=1).all()


def test_every_centre_leads_its_own_candidate_list_even_when_duplicated(rng):
    centers = rng.standard_normal((10, 4)).astype(np.float32)
    centers[5] = centers[3]
    candidates = nearest_centers(centers, 3)
    assert (candidates == np.arange(10)[:, None]).any(axis=1).all()
    unique = np.setdiff1d(np.arange(10), [3, 5])
    np.testing.assert_array_equal(candidates[unique, 0], unique)


def test_a_refreshed_neighbour_graph_nearly_matches_the_exact_one(rng):
    centers = rng.standard_normal((3000, 16)).astype(np.float32)
    previous = nearest_centers(centers, 16)
    moved = centers + 0.05 * rng.standard_normal(centers.shape).astype(np.float32)
    refreshed, exact = refreshed_neighbors(moved, previous), nearest_centers(moved, 16)
    assert (refreshed == np.arange(3000)[:, None]).any(axis=1).all()
    assert all(len(set(row)) == 16 for row in refreshed.tolist())
    overlap = np.mean([len(set(a) & set(b)) / 16 for a, b in zip(refreshed, exact, strict=True)])
    assert overlap > 0.9  # measured 0.955


def test_an_emptied_centre_takes_the_farthest_row(rng):
    points = rng.standard_normal((50, 3)).astype(np.float32)
    labels = np.repeat([0, 1], 25)
    distances = rng.random(50).astype(np.float32)
    centers = np.zeros((3, 3), dtype=np.float32)
    updated, relabelled = mean_centers(points, labels, distances, centers)
    farthest = int(distances.argmax())
    np.testing.assert_allclose(updated[2], points[farthest])
    assert relabelled[farthest] == 2
    np.testing.assert_allclose(updated[1], points[labels == 1].mean(axis=0), rtol=1e-5)


def test_candidate_lloyd_never_raises_the_error_and_nears_exact_lloyd(rng):
    points, _ = blobs(rng, n_clusters=300, per_cluster=20)  # 300 > 4 * 32: candidates are used
    initial = points[rng.choice(len(points), 300, replace=False)]
    centers, labels, errors = initial, None, []
    for _ in range(8):
        centers, labels, error = kmeans_centers(points, centers, 1, labels)
        errors.append(error)
    assert all(later <= earlier * (1 + 1e-5) for earlier, later in itertools.pairwise(errors))
    exact = kmeans_centers(points, initial, 8, n_candidates=None)[2]
    assert errors[-1] <= exact * 1.02
