"""Seeded, stratified train/test splits."""

from __future__ import annotations

import numpy as np

from imagelearn.data.dataset import DatasetError, ImageDataset


def stratified_split(
    dataset: ImageDataset, test_size: float = 0.3, random_state: int = 0
) -> tuple[ImageDataset, ImageDataset]:
    """Hold out ``test_size`` of each class (at least one image per class on each side).

    The split depends only on the sorted paths, the labels and ``random_state``, so it is the same
    on every machine.
    """
    if dataset.labels is None:
        raise DatasetError("a stratified split needs labels")
    if not 0.0 < test_size < 1.0:
        raise DatasetError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(random_state)
    order = np.argsort([str(p) for p in dataset.paths], kind="stable")
    train_indices: list[int] = []
    test_indices: list[int] = []
    for label in range(len(dataset.class_names)):
        members = order[dataset.labels[order] == label]
        if len(members) == 0:
            continue
        if len(members) < 2:
            raise DatasetError(
                f"class {dataset.class_names[label]!r} has 1 image; a split needs at least 2 per class"
            )
        members = rng.permutation(members)
        n_test = min(len(members) - 1, max(1, round(test_size * len(members))))
        test_indices.extend(members[:n_test].tolist())
        train_indices.extend(members[n_test:].tolist())
    return dataset.subset(sorted(train_indices)), dataset.subset(sorted(test_indices))


def split_record(train: ImageDataset, held_out: ImageDataset, how: str) -> dict:
    """A JSON-ready description of a split (saved with a run so that it can be reproduced)."""
    return {
        "how": how,
        "class_names": list(train.class_names),
        "train": [
            [str(path), name] for path, name in zip(train.paths, train.label_names(), strict=True)
        ],
        "held_out": [
            [str(path), name]
            for path, name in zip(held_out.paths, held_out.label_names(), strict=True)
        ],
    }
