"""The variant benchmark built from real photos: mAP floors, and verification helps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.data.collection import find_images
from imagelearn.retrieval import Index, IndexParams, build_index, load_ground_truth
from imagelearn.retrieval.benchmark import (
    make_variant_benchmark,
    read_database_list,
    viewpoint_pairs,
)
from imagelearn.retrieval.evaluation import evaluate_index


def _choose(paths: list[Path], count: int, rng: np.random.Generator) -> list[str]:
    return [str(paths[i]) for i in sorted(rng.choice(len(paths), count, replace=False))]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> tuple[Path, Path]:
    """12 originals x 4 variants, 4 real viewpoint pairs, 180 real distractors; and its index."""
    rng = np.random.default_rng(0)
    originals = _choose(find_images(data_path("hymenoptera", "val")), 12, rng)
    distractors = _choose(find_images(data_path("flowers5")), 120, rng) + _choose(
        find_images(data_path("hymenoptera", "train")), 60, rng
    )
    pairs = viewpoint_pairs(find_images(data_path("multiview", "pairs")))
    folder = tmp_path_factory.mktemp("variants")
    truth = make_variant_benchmark(
        originals, folder, 4, distractors, pairs, random_state=0, max_side=512
    )
    params = IndexParams(
        max_keypoints=800,
        max_side=640,
        vocabulary_params={"branching": 10, "depth": 4, "n_iter": 4},
        train_descriptors_per_image=200,
    )
    build_index(read_database_list(folder), folder / "index", params, cache_dir=folder / "cache")
    return truth, folder / "index"


def test_the_benchmark_is_rebuilt_identically(tmp_path):
    originals = [str(p) for p in find_images(data_path("hymenoptera", "val"))[:2]]
    first = make_variant_benchmark(originals, tmp_path / "a", 2, random_state=3)
    second = make_variant_benchmark(originals, tmp_path / "b", 2, random_state=3)
    assert (first.parent / "database" / "0001_v1.jpg").read_bytes() == (
        second.parent / "database" / "0001_v1.jpg"
    ).read_bytes()
    assert len(load_ground_truth(first)) == 2


def test_map_floors_and_verification_helps(benchmark):
    truth, index_path = benchmark
    truths = load_ground_truth(truth)
    assert len(truths) == 16  # 12 originals + 4 viewpoint pairs
    index = Index.open(index_path)
    plain = evaluate_index(index, truths, depth=100, verify=False)
    verified = evaluate_index(index, truths, depth=100, verify=True, verify_top=30)
    assert plain["mAP"] >= 0.45, plain
    assert verified["mAP"] >= 0.5, verified
    assert verified["mAP"] > plain["mAP"] + 0.02
    assert verified["recall@10"] >= 0.5


def test_eval_cli_prints_the_scores(benchmark, capsys):
    truth, index_path = benchmark
    assert (
        main(
            [
                "index",
                "eval",
                str(index_path),
                "--truth",
                str(truth),
                "--no-verify",
                "--depth",
                "20",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("mAP: ") for line in lines) and any(
        line.startswith("recall@10: ") for line in lines
    )
