"""Near-duplicate groups of an index: re-encoded, resized and cropped copies of real photos
are grouped with their original; other views of one object are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from imagelearn.retrieval import Index, IndexParams, build_index
from imagelearn.retrieval.duplicates import similarity_deviation
from imagelearn.retrieval.index import Match
from imagelearn.retrieval.verification import Verification

#: 10^4 words: a vocabulary of a few hundred verifies too few features (its words are bursts)
PARAMS = dict(
    max_keypoints=500,
    max_side=320,
    vocabulary_params={"branching": 10, "depth": 4, "n_iter": 4},
    train_descriptors_per_image=300,
)


def _copies(folder: Path, originals: list[str]) -> dict[str, str]:
    """A JPEG (quality 30), a half-size and a 90% crop copy, one of each original in turn."""
    folder.mkdir()
    made = {}
    for number, original in enumerate(originals):
        image = Image.open(original).convert("RGB")
        width, height = image.size
        copy = folder / f"copy{number}.jpg"
        if number % 3 == 0:
            image.save(copy, quality=30)
        elif number % 3 == 1:
            image.resize((width // 2, height // 2), Image.BILINEAR).save(copy, quality=90)
        else:
            image.crop(
                (width // 20, height // 20, width - width // 20, height - height // 20)
            ).save(copy, quality=90)
        made[str(copy.resolve())] = str(Path(original).resolve())
    return made


@pytest.mark.parametrize("global_descriptor", [True, False])
def test_copies_are_grouped_with_their_original_and_other_views_are_not(
    global_descriptor, tmp_path
):
    if global_descriptor:
        pytest.importorskip("torchvision")
    views = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:16]
    copies = _copies(tmp_path / "copies", views[::4] + views[1:3])
    directory = tmp_path / "index"
    params = IndexParams(**PARAMS, global_descriptor=global_descriptor, global_max_side=256)
    build_index(views + sorted(copies), directory, params, cache_dir=tmp_path / "cache")
    index = Index.open(directory)
    path_of = {i: r.path for i, r in index.records(index.ids().tolist()).items()}
    groups = [sorted(path_of[i] for i in group) for group in index.duplicate_groups()]
    expected = sorted(sorted([copy, original]) for copy, original in copies.items())
    assert sorted(groups) == expected


def test_a_copy_is_a_change_of_scale_and_position_only():
    def match(homography) -> Match:
        points = np.zeros((0, 2), np.float32)
        verification = Verification(50, np.asarray(homography, np.float64), points, points, 60)
        return Match("x", 1, 0.5, 50, verification)

    assert similarity_deviation(match(np.diag([0.5, 0.5, 1.0])), 320, 240) == 0
    shifted = np.array([[1.0, 0, 16], [0, 1.0, 12], [0, 0, 1]])
    assert similarity_deviation(match(shifted), 320, 240) == 0
    turned = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    assert similarity_deviation(match(turned), 320, 240) > 0.2
    tilted = np.array([[1.0, 0, 0], [0, 1.0, 0], [1e-3, 0, 1]])
    assert similarity_deviation(match(tilted), 320, 240) == pytest.approx(0.32)
    assert similarity_deviation(match(np.diag([-1.0, 1.0, 1.0])), 320, 240) == float("inf")
    assert similarity_deviation(Match("x", 1, 0.5), 320, 240) == float("inf")
