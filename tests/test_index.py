"""The local retrieval path on real photos: UKBench N-S score, search output, the graf homography."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.data.opencv_xml import read_opencv_matrix
from imagelearn.retrieval import Index, IndexParams, build_index, ukbench_ground_truth
from imagelearn.retrieval.evaluation import evaluate_index
from imagelearn.retrieval.verification import project_corners

#: Small enough for the test budget: a 10^4-leaf tree, UKBench's own 320x240 size.
UKBENCH_PARAMS = IndexParams(
    max_keypoints=600,
    max_side=320,
    vocabulary_params={"branching": 10, "depth": 4, "n_iter": 4},
    train_images=500,
    train_descriptors_per_image=200,
    batch_size=250,
)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def ukbench_index(tmp_path_factory, feature_cache) -> Path:
    paths = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))
    directory = tmp_path_factory.mktemp("ukbench") / "index"
    report = build_index(paths, directory, UKBENCH_PARAMS, cache_dir=feature_cache)
    assert len(report.added) == 500 and not report.skipped
    return directory


@pytest.fixture(scope="module")
def ukbench_truths() -> list:
    paths = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))
    return ukbench_ground_truth(paths)[:160]  # every image of the first 40 objects queries


@pytest.mark.parametrize("verify", [False, True])
def test_ukbench_ns_score_of_the_local_path(ukbench_index, ukbench_truths, verify):
    index = Index.open(ukbench_index)
    scores = evaluate_index(
        index, ukbench_truths, depth=10, mode="local", verify=verify, verify_top=12
    )
    assert scores["N-S"] >= 3.0, scores


def test_search_finds_the_query_first_with_a_homography(ukbench_index):
    query = str(data_path("ukbench", "ukbench00017.jpg"))
    result = Index.open(ukbench_index).search(query, top=4)
    assert result.matches[0].path == query
    assert result.matches[0].inliers >= 50
    np.testing.assert_allclose(
        result.matches[0].homography / result.matches[0].homography[2, 2], np.eye(3), atol=0.05
    )
    assert {Path(m.path).name for m in result.matches} >= {"ukbench00016.jpg", "ukbench00017.jpg"}


def test_search_json_shape_and_plot(ukbench_index, capsys, tmp_path):
    query = str(data_path("ukbench", "ukbench00042.jpg"))
    plot = tmp_path / "matches.png"
    code = main(
        ["index", "search", str(ukbench_index), query, "--json", "--top", "5", "--plot", str(plot)]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["query"] == query and len(payload["results"]) == 5
    assert payload["mode"] == "local" and payload["timings"]["ranking_ms"] > 0
    assert set(payload["results"][0]) >= {"path", "score", "inliers"}
    assert payload["results"][0]["path"] == query
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_roi_restricts_the_query(ukbench_index):
    query = str(data_path("ukbench", "ukbench00042.jpg"))
    index = Index.open(ukbench_index)
    whole, part = index.features(query), index.features(query, roi=(0, 0, 160, 120))
    assert 0 < len(part) < len(whole)
    assert (part.keypoints[:, 0] < 160).all() and (part.keypoints[:, 1] < 120).all()
    assert index.search(query, top=3, roi=(0, 0, 160, 120)).matches[0].path == query


def test_info_cli_prints_the_image_count(ukbench_index, capsys):
    assert main(["index", "info", str(ukbench_index)]) == 0
    output = capsys.readouterr().out
    assert "images: 500" in output.splitlines()
    assert "segments: 2" in output.splitlines()


def test_graf_homography_is_recovered(tmp_path, feature_cache):
    folder = data_path("multiview", "opencv")
    distractors = sorted(str(p) for p in data_path("ukbench").glob("ukbench000[0-3]*.jpg"))
    params = IndexParams(
        max_keypoints=1500,
        max_side=800,
        vocabulary_params={"branching": 10, "depth": 3, "n_iter": 5},
        train_descriptors_per_image=1500,
    )
    build_index(
        [str(folder / "graf3.png"), *distractors],
        tmp_path / "graf",
        params,
        cache_dir=feature_cache,
    )
    result = Index.open(tmp_path / "graf").search(
        folder / "graf1.png", top=3, ransac_threshold=0.004
    )
    best = result.matches[0]
    assert Path(best.path).name == "graf3.png" and best.inliers >= 30
    truth = read_opencv_matrix(folder / "H1to3p.xml", "H13")
    estimated, expected = (
        project_corners(best.homography, 800, 640),
        project_corners(truth, 800, 640),
    )
    corner_error = np.linalg.norm(estimated - expected, axis=1)
    assert corner_error.mean() < 5.0 and corner_error.max() < 8.0, corner_error
