"""Saving over a model is atomic: a process killed at any step of a save leaves the old or the
new model, complete, at the destination; the next save cleans what the killed one left."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imagelearn
from imagelearn.bof.vocabulary.flat import KMeansVocabulary
from imagelearn.core import bundle

#: Exit status of a child killed at its crash point (``os._exit``: no cleanup runs).
KILLED = 17

#: Runs in a child process: fit the new model, arm one crash point, save over ``destination``.
CHILD = """
import os, sys
import numpy as np
from imagelearn.bof.vocabulary.flat import KMeansVocabulary
from imagelearn.core import bundle

point, destination = sys.argv[1], sys.argv[2]
model = KMeansVocabulary(n_words=6, random_state=1).fit(
    np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
)
exchange, replace, remove = bundle._exchange, os.replace, bundle._remove
renames = []

def crashing_exchange(first, second):
    if point == "before exchange":
        os._exit(17)
    swapped = exchange(first, second)
    if point == "after exchange":
        os._exit(17)
    return swapped

def crashing_remove(path):
    if point == "while deleting the old model" and ".staging-" in path.name:
        (path / "arrays.safetensors").unlink()
        os._exit(17)
    remove(path)

def crashing_replace(source, target):
    replace(source, target)
    renames.append(target)
    if point == f"after rename {len(renames)}":
        os._exit(17)

bundle._exchange, bundle._remove, os.replace = crashing_exchange, crashing_remove, crashing_replace
if point.startswith("after rename"):
    bundle._renameat2 = lambda: None  # the portable path of systems without renameat2
model.save(destination)
"""

DESCRIPTORS = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)


def fitted(n_words: int, random_state: int) -> KMeansVocabulary:
    training = np.random.default_rng(random_state).normal(size=(300, 8)).astype(np.float32)
    return KMeansVocabulary(n_words=n_words, random_state=random_state).fit(training)


OLD, NEW = fitted(4, 0), fitted(6, 1)


def save_in_child(point: str, destination: Path) -> int:
    source = str(Path(imagelearn.__file__).parents[1])
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([source, *sys.path])}
    return subprocess.run(
        [sys.executable, "-c", CHILD, point, str(destination)], env=environment, timeout=120
    ).returncode


def which_model(directory: Path) -> str:
    """``"old"`` or ``"new"``: the complete model at ``directory`` (it loads and predicts)."""
    loaded = KMeansVocabulary.load(directory)
    for name, reference in (("old", OLD), ("new", NEW)):
        if loaded.n_words_ == reference.n_words_:
            np.testing.assert_array_equal(loaded.assign(DESCRIPTORS), reference.assign(DESCRIPTORS))
            return name
    raise AssertionError(f"{directory}: neither model ({loaded.n_words_} words)")


def siblings(destination: Path) -> list[str]:
    return sorted(p.name for p in destination.parent.iterdir() if p.name != destination.name)


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ("before exchange", "old"),
        ("after exchange", "new"),
        ("while deleting the old model", "new"),
        ("after rename 2", "new"),
    ],
)
def test_a_save_killed_at_any_step_leaves_a_complete_model(tmp_path, point, expected) -> None:
    destination = tmp_path / "model"
    OLD.save(destination)
    assert save_in_child(point, destination) == KILLED
    assert which_model(destination) == expected
    assert siblings(destination)  # what the killed save left beside the model
    fitted(5, 3).save(destination)
    assert KMeansVocabulary.load(destination).n_words_ == 5
    assert siblings(destination) == []


def test_without_renameat2_the_old_model_is_kept_until_the_new_one_is_in(tmp_path) -> None:
    """The portable path's one window: between its two renames the old model is complete
    under ``.NAME.old-*``, and the next save puts it back before replacing it."""
    destination = tmp_path / "model"
    OLD.save(destination)
    assert save_in_child("after rename 1", destination) == KILLED
    assert not destination.exists()
    (retired,) = destination.parent.glob(".model.old-*")
    assert which_model(retired) == "old"
    (staged,) = destination.parent.glob(".model.staging-*")
    assert bundle.clean_leftovers(destination) == [staged]  # the old model is put back
    assert which_model(destination) == "old" and siblings(destination) == []
    NEW.save(destination)
    assert which_model(destination) == "new" and siblings(destination) == []


def test_a_completed_save_swaps_in_place_and_leaves_nothing_beside(tmp_path) -> None:
    destination = tmp_path / "model"
    OLD.save(destination)
    assert bundle._renameat2() is not None or not sys.platform.startswith("linux")
    NEW.save(destination)
    assert which_model(destination) == "new" and siblings(destination) == []


def test_a_filesystem_refusing_the_exchange_falls_back_to_renames(tmp_path, monkeypatch) -> None:
    def refusing(*arguments) -> int:
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(bundle, "_renameat2", lambda: refusing)
    destination = tmp_path / "model"
    OLD.save(destination)
    NEW.save(destination)
    assert which_model(destination) == "new" and siblings(destination) == []


def test_other_exchange_failures_are_raised_and_the_old_model_stays(tmp_path, monkeypatch) -> None:
    def denied(*arguments) -> int:
        ctypes.set_errno(errno.EACCES)
        return -1

    monkeypatch.setattr(bundle, "_renameat2", lambda: denied)
    destination = tmp_path / "model"
    OLD.save(destination)
    with pytest.raises(PermissionError):
        NEW.save(destination)
    assert which_model(destination) == "old" and siblings(destination) == []


def test_only_our_own_dead_leftovers_are_deleted(tmp_path) -> None:
    destination = tmp_path / "model"
    OLD.save(destination)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)
    kept = [
        f".model.staging-{os.getpid()}-abc",  # a save still running (this process)
        ".modelx.staging-1-abc",  # another destination's
        "model.old-1-abc",  # not hidden: not our naming
        ".other.old-1-abc",
    ]
    stale = [f".model.staging-{dead_pid}-abc", f".model.old-{dead_pid}-abc", ".model.old-42"]
    for name in kept + stale:
        (tmp_path / name).mkdir()
    removed = bundle.clean_leftovers(destination)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert siblings(destination) == sorted(kept)
    assert which_model(destination) == "old"


def test_a_destination_named_like_a_leftover_is_never_deleted(tmp_path) -> None:
    destination = tmp_path / ".model.old-1-abc"
    OLD.save(destination)
    NEW.save(destination)
    assert which_model(destination) == "new"
