"""Collections: layouts, splits, and `imagelearn data check`."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import imagelearn.data
from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.data import (
    DatasetError,
    check_collection,
    load_dataset,
    load_splits,
    stratified_split,
)


@pytest.fixture
def class_folders(tmp_path, make_image):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        for index in range(5):
            make_image(f"pets/{name}/{index}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    return tmp_path / "pets"


def test_class_folders_give_sorted_class_names(class_folders):
    dataset = load_dataset(class_folders)
    assert dataset.class_names == ["cat", "dog"]
    assert dataset.class_counts() == {"cat": 5, "dog": 5}


def test_flat_folder_is_unlabelled(tmp_path, make_image):
    make_image("flat/a.png", np.zeros((4, 4), dtype=np.uint8))
    dataset = load_dataset(tmp_path / "flat")
    assert len(dataset) == 1 and not dataset.is_labeled


def test_csv_with_header_and_relative_paths(class_folders):
    csv_path = class_folders / "list.csv"
    csv_path.write_text(
        "path,label\ncat/0.png,cat\ndog/1.png,dog\ndog/2.png,dog\n", encoding="utf-8"
    )
    dataset = load_dataset(csv_path)
    assert dataset.label_names() == ["cat", "dog", "dog"]
    assert dataset.paths[0] == class_folders / "cat" / "0.png"


def test_stratified_split_is_seeded_and_keeps_every_class(class_folders):
    dataset = load_dataset(class_folders)
    train_a, test_a = stratified_split(dataset, 0.4, random_state=3)
    train_b, test_b = stratified_split(dataset, 0.4, random_state=3)
    assert test_a.paths == test_b.paths and train_a.paths == train_b.paths
    assert test_a.class_counts() == {"cat": 2, "dog": 2}
    assert not set(train_a.paths) & set(test_a.paths)


def test_single_class_folder_is_refused_with_a_clear_message(tmp_path, make_image):
    make_image("one/only/a.png", np.zeros((4, 4), dtype=np.uint8))
    make_image("one/only/b.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(DatasetError, match="1 class"):
        load_splits(tmp_path / "one")


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_splits(tmp_path / "empty")


def test_given_split_folders_are_used_as_they_are():
    train, held_out, how = load_splits(data_path("hymenoptera"))
    assert how == "given:val"
    assert train.class_counts() == {"ants": 124, "bees": 121}
    assert held_out.class_counts() == {"ants": 70, "bees": 83}


def test_check_reports_the_corrupt_file_and_duplicates():
    report = check_collection(data_path("bad_inputs"), n_jobs=1)
    assert [path.rsplit("/", 1)[-1] for path, _ in report.unreadable] == [
        "ukbench09268_corrupt.jpg"
    ]
    assert any(len(group) >= 3 for group in report.duplicate_groups)


@pytest.mark.parametrize("format_flags", [["--format", "json"], ["--json"]])
def test_data_check_cli_exit_status(tmp_path, capsys, class_folders, format_flags):
    assert main(["data", "check", str(class_folders), *format_flags, "--jobs", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[str(class_folders)]["class_counts"] == {"cat": 5, "dog": 5}
    (tmp_path / "nothing").mkdir()
    assert main(["data", "check", str(tmp_path / "nothing"), "--jobs", "1"]) == 1


def test_the_data_modules_import_one_another_without_a_circle():
    """Each module of imagelearn.data imports only modules below it (lazy imports included)."""
    folder = Path(imagelearn.data.__file__).parent
    imports = {
        path.stem: {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("imagelearn.data.")
        }
        for path in folder.glob("*.py")
        if path.stem != "__init__"
    }
    done: list[str] = []
    while len(done) < len(imports):
        ready = [name for name in imports if name not in done and imports[name] <= set(done)]
        assert ready, f"import circle among {sorted(set(imports) - set(done))}"
        done.extend(ready)
