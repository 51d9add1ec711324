"""Image collections on disk and the layouts imagelearn understands.

Layouts, detected in this order by :func:`load_splits`:

* split folders: ``DIR/train/<class>/...`` with ``DIR/val/`` and/or ``DIR/test/`` beside it;
* a CSV file of ``path,label`` rows (paths relative to the CSV's folder; a header is optional);
* class folders: ``DIR/<class>/*.jpg`` (images may sit deeper inside each class folder);
* a flat folder of images: unlabelled.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imagelearn.core.images import looks_like_image
from imagelearn.data.dataset import DatasetError, ImageDataset
from imagelearn.data.split import stratified_split

SPLIT_NAMES = ("train", "val", "test")


def find_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """All image files under ``root`` (sorted, hidden files and folders skipped).

    A file counts as an image by its suffix or, failing that, by its first bytes.
    """
    root = Path(root)
    if root.is_file():
        return [root] if looks_like_image(root) else []
    if not root.is_dir():
        raise DatasetError(f"{root}: no such file or directory")
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        found.extend(
            Path(directory) / name
            for name in files
            if not name.startswith(".") and looks_like_image(Path(directory) / name)
        )
        if not recursive:
            break
    return sorted(found)


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _from_class_folders(root: Path, class_names: Sequence[str] | None = None) -> ImageDataset:
    folders = _class_folders(root)
    names = list(class_names) if class_names is not None else [folder.name for folder in folders]
    index = {name: i for i, name in enumerate(names)}
    paths: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        if folder.name not in index:
            raise DatasetError(
                f"{folder}: class {folder.name!r} is not among the training classes {names}"
            )
        images = find_images(folder)
        paths.extend(images)
        labels.extend([index[folder.name]] * len(images))
    return ImageDataset(paths, np.asarray(labels, dtype=np.int64), names)


def _from_csv(csv_path: Path, class_names: Sequence[str] | None = None) -> ImageDataset:
    with csv_path.open(newline="", encoding="utf-8-sig") as stream:
        rows = [row for row in csv.reader(stream) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image"):
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"{csv_path}: no rows")
    bad = [i for i, row in enumerate(rows) if len(row) < 1]
    if bad:
        raise DatasetError(f"{csv_path}: row {bad[0] + 1} has no path")
    paths = [(csv_path.parent / row[0].strip()) for row in rows]
    if all(len(row) >= 2 and row[1].strip() for row in rows):
        names = (
            list(class_names)
            if class_names is not None
            else sorted({row[1].strip() for row in rows})
        )
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({row[1].strip() for row in rows} - set(index))
        if unknown:
            raise DatasetError(
                f"{csv_path}: labels {unknown} are not among the training classes {names}"
            )
        labels = np.asarray([index[row[1].strip()] for row in rows], dtype=np.int64)
        return ImageDataset(paths, labels, names)
    return ImageDataset(paths)


def load_dataset(
    source: str | os.PathLike, class_names: Sequence[str] | None = None
) -> ImageDataset:
    """Read one collection: a CSV file, a folder of class folders, a flat folder, or one image.

    ``class_names`` fixes the label order (use the training classes when reading test data).
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _from_csv(source, class_names)
    if source.is_dir() and _class_folders(source) and not find_images(source, recursive=False):
        return _from_class_folders(source, class_names)
    return ImageDataset(find_images(source), None, list(class_names or []))


def load_splits(
    source: str | os.PathLike, test_size: float = 0.3, random_state: int = 0
) -> tuple[ImageDataset, ImageDataset, str]:
    """Training and held-out sets from ``source``.

    Given split folders are used as they are (held out: ``test/`` if present, else ``val/``);
    otherwise a seeded, stratified split holds out ``test_size`` of every class.

    Returns
    -------
    train, held_out : ImageDataset
    how : str
        ``"given:val"``, ``"given:test"`` or ``"stratified:<test_size>:seed=<random_state>"``.
    """
    source = Path(source)
    if source.is_dir() and (source / "train").is_dir():
        train = load_dataset(source / "train")
        train.require_classes(2, source / "train")
        for held_out_name in ("test", "val"):
            if (source / held_out_name).is_dir():
                held_out = load_dataset(source / held_out_name, train.class_names)
                return train, held_out, f"given:{held_out_name}"
        raise DatasetError(f"{source}: has train/ but neither val/ nor test/")
    dataset = load_dataset(source)
    dataset.require_classes(2, source)
    train, held_out = stratified_split(dataset, test_size=test_size, random_state=random_state)
    return train, held_out, f"stratified:{test_size}:seed={random_state}"
