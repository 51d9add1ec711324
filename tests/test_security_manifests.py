"""A stranger's model or index, edited as a hostile user would, never reaches outside its folder.

A real saved BofClassifier (8 hymenoptera photos) and a real index (8 UKBench photos) are
copied per test and their manifests edited: absolute paths, ``..``, links out of the
directory, wrong types, unknown kinds, newer versions, huge counts, runtime settings. Each
must be one clear :class:`BundleError` line naming the directory and the field, raised
before any file outside the directory is opened (an audit hook records every ``open``) or
created. Decoys outside are valid copies of the real files, so code that followed the
hostile path would load them and the test would fail.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from conftest import data_path
from imagelearn.bof.recognition import BofClassifier
from imagelearn.cli.main import main
from imagelearn.core.bundle import ARRAYS_NAME, MANIFEST_NAME, BundleError, member_path
from imagelearn.core.persistence import read_metadata
from imagelearn.retrieval import Index, IndexParams, add_images, build_index, remove_images, storage
from imagelearn.retrieval.storage import read_faiss_index

#: A small dense grid on downscaled photos: a few hundred descriptors per image.
TINY_CHANNEL = {
    "detector": "dense_rootsift",
    "detector_params": {"step": 16, "sizes": (16,), "max_side": 128},
    "n_words": 8,
    "pyramid": (1,),
}

# ------------------------------------------------------------------ files opened, recorded

_OPENED: list[str] | None = None


def _record_opens(event: str, arguments: tuple[Any, ...]) -> None:
    if _OPENED is not None and event in ("open", "os.open", "sqlite3.connect") and arguments:
        target = arguments[0]
        if isinstance(target, str | bytes | os.PathLike):
            _OPENED.append(os.path.abspath(os.fsdecode(target)))


sys.addaudithook(_record_opens)  # hooks cannot be removed; it records only inside `opened`


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Absolute paths of the files opened (by Python, NumPy or SQLite) during the test."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def _inside(path: str, directory: Path) -> bool:
    return Path(path).resolve().is_relative_to(directory.resolve())


def assert_stays_inside(opened: list[str], directory: Path, outside: Path) -> None:
    """Nothing under ``outside`` was opened; everything opened under tmp is in ``directory``."""
    leaked = [path for path in opened if _inside(path, outside)]
    assert not leaked, f"opened outside the bundle: {leaked}"


# ------------------------------------------------------------------ a real model, a real index


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    root = data_path("hymenoptera", "train")
    paths = [p for label in ("ants", "bees") for p in sorted((root / label).glob("*.jpg"))[:4]]
    model = BofClassifier(channels=[TINY_CHANNEL], n_jobs=1, cache_dir=False)
    model.fit(paths, np.repeat([0, 1], 4), class_names=["ants", "bees"])
    return model.save(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def ukbench_paths() -> list[str]:
    return sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:8]


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, ukbench_paths) -> Path:
    """8 images in two segments, one of them removed (so ``removed`` names a file)."""
    directory = tmp_path_factory.mktemp("index") / "index"
    params = IndexParams(
        max_keypoints=200,
        max_side=256,
        vocabulary_params={"branching": 4, "depth": 2, "n_iter": 5},
        train_images=8,
        batch_size=4,
    )
    build_index(ukbench_paths, directory, params, n_jobs=1, cache_dir=False)
    remove_images(directory, ukbench_paths[-1:])
    return directory


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """``tmp/bundles/`` for the copy under test and ``tmp/outside/`` for decoys."""
    (tmp_path / "bundles").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "bundles", tmp_path / "outside"


@pytest.fixture
def model(saved_model, layout) -> Path:
    copy = layout[0] / "model"
    shutil.copytree(saved_model, copy)
    return copy


@pytest.fixture
def index(built_index, layout) -> Path:
    copy = layout[0] / "index"
    shutil.copytree(built_index, copy)
    return copy


def edit_manifest(directory: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``edit`` to the manifest's header (``content`` inside), as a user with an editor."""
    header = json.loads((directory / MANIFEST_NAME).read_text())
    edit(header)
    (directory / MANIFEST_NAME).write_text(json.dumps(header))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message and "pydantic" not in message
    return message


# ------------------------------------------------------------------ member_path


@pytest.mark.parametrize("name", ["/etc/passwd", "..", "../x", "a/b", ".hidden", "", 42, "x\0y"])
def test_member_path_refuses_names_that_are_not_plain(tmp_path, name):
    with pytest.raises(BundleError, match="not a valid index: file name"):
        member_path(tmp_path, name, what="index")


def test_member_path_follows_links_only_inside(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "real.npy").write_bytes(b"")
    (tmp_path / "inside" / "alias.npy").symlink_to("real.npy")
    (tmp_path / "inside" / "out.npy").symlink_to(tmp_path / "secret")
    (tmp_path / "inside" / "loop.npy").symlink_to("loop.npy")
    os.mkfifo(tmp_path / "inside" / "pipe.npy")
    assert member_path(tmp_path / "inside", "alias.npy") == tmp_path / "inside" / "alias.npy"
    with pytest.raises(BundleError, match="leads out of the directory"):
        member_path(tmp_path / "inside", "out.npy")
    with pytest.raises(BundleError, match="not a valid bundle"):
        member_path(tmp_path / "inside", "loop.npy")
    with pytest.raises(BundleError, match="not a regular file"):
        member_path(tmp_path / "inside", "pipe.npy")  # opening it would block


# ------------------------------------------------------------------ a hostile model


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # the examples: a traceback each before
        (lambda h: h.update(content={}), r"not a valid saved model: params: missing"),
        (lambda h: h["content"].pop("estimator"), r"saved BofClassifier: estimator: missing"),
        (
            lambda h: h["content"]["state"].update(class_names=42),
            r"state\.class_names: not a list \(got 42\)",
        ),
        (lambda h: h["content"].update(state={}), r"state\.channels: missing"),
        (
            lambda h: h["content"]["state"].update(n_training_images="many"),
            r"state\.n_training_images: not an integer",
        ),
        (lambda h: h["content"]["state"]["channel_states"].clear(), r"1 channels"),
        (
            lambda h: h["content"]["state"].update(skipped=[["a.jpg"]]),
            r"state\.skipped\[0\]: should have at least 2 items",
        ),
        (
            lambda h: h["content"]["state"].update(class_names=[str(i) for i in range(200_000)]),
            r"state\.class_names: should have at most 100000 items",
        ),
        (
            lambda h: h["content"]["params"].update(C="strong"),
            r"params\.C: 'strong' does not match its type float",
        ),
        (
            lambda h: h["content"]["params"].update(random_state="seed"),
            r"params\.random_state: 'seed'",
        ),
        (lambda h: h.update(kind="evil-kind"), r"holds a 'evil-kind', expected a 'bof-classifier'"),
        (lambda h: h.update(format_version=99), r"bundle format version 99 is newer"),
        (lambda h: h.update(format_version="1"), r"format_version: not an integer \(got '1'\)"),
        (lambda h: h.update(versions=[]), r"versions: not a mapping"),
        (lambda h: h["content"].update(metadata="none"), r"metadata: not a mapping"),
    ],
    ids=[
        "empty-content",
        "no-estimator",
        "class-names-42",
        "empty-state",
        "count-many",
        "channel-states",
        "skipped-pair",
        "huge-class-list",
        "param-type",
        "param-type-int",
        "unknown-kind",
        "newer-format",
        "version-string",
        "versions",
        "metadata",
    ],
)
def test_a_hostile_model_manifest_is_one_clear_bundle_error(model, edit, message):
    edit_manifest(model, edit)
    with pytest.raises(BundleError, match=message) as error:
        BofClassifier.load(model)
    assert one_line(error).startswith(f"{model}: ")


@pytest.mark.parametrize(
    ("edit", "setting"),
    [
        (lambda c: c["params"].update(cache_dir="{outside}/../outside/cache"), "cache_dir"),
        (lambda c: c["params"].update(n_jobs=64), "n_jobs"),
        (lambda c: c["params"].update(device="cuda:7"), "device"),
        (lambda c: c["params"]["channels"][0].update(cache_dir="{outside}/cache"), "cache_dir"),
        (lambda c: c["state"]["channels"][0].update(cache_dir="{outside}/cache"), "cache_dir"),
    ],
    ids=["cache_dir", "n_jobs", "device", "channel-cache_dir", "state-channel-cache_dir"],
)
def test_a_manifest_never_sets_a_runtime_setting(model, layout, edit, setting):
    outside = layout[1]
    text = (model / MANIFEST_NAME).read_text()
    header = json.loads(text)
    edit(header["content"])
    (model / MANIFEST_NAME).write_text(json.dumps(header).replace("{outside}", str(outside)))
    with pytest.raises(BundleError, match=setting) as error:
        BofClassifier.load(model)
    assert one_line(error).startswith(f"{model}: ")
    assert not any(outside.iterdir()), "a manifest setting created files outside"


def test_saved_parameters_hold_no_runtime_setting_at_any_depth(saved_model):
    content = json.loads((saved_model / MANIFEST_NAME).read_text())["content"]
    text = json.dumps(content["params"]) + json.dumps(content["state"])
    assert all(f'"{name}"' not in text for name in ("cache_dir", "n_jobs", "device"))


@pytest.mark.parametrize("name", [MANIFEST_NAME, ARRAYS_NAME])
def test_a_model_file_linked_out_of_its_directory_is_not_read(model, layout, opened, name):
    decoy = layout[1] / name
    shutil.copy(model / name, decoy)  # a valid file: following the link would load it
    (model / name).unlink()
    (model / name).symlink_to(decoy)
    opened.clear()
    with pytest.raises(BundleError, match="leads out of the directory") as error:
        BofClassifier.load(model)
    assert one_line(error).startswith(f"{model}: not a valid bundle: ")
    assert_stays_inside(opened, model, layout[1])


def test_metadata_is_checked_like_the_rest(model):
    edit_manifest(model, lambda h: h["content"].update(metadata=[1, 2]))
    with pytest.raises(BundleError, match="metadata: not a mapping"):
        read_metadata(model)


def test_an_untouched_copy_still_loads_and_predicts(model):
    loaded = BofClassifier.load(model)
    assert loaded.class_names_ == ["ants", "bees"]


# ------------------------------------------------------------------ a hostile index


def _segment_names(index: Path) -> list[str]:
    return json.loads((index / MANIFEST_NAME).read_text())["content"]["segments"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("segments", ["../../outside/segments/g000001"], r"segments\[0\]: not an allowed name"),
        ("segments", ["{outside}/segments/g000001"], r"segments\[0\]: not an allowed name"),
        ("removed", "../../../../etc/hostname", r"removed: not an allowed name"),
        ("removed", "{outside}/removed-000009.npy", r"removed: not an allowed name"),
        (
            "global",
            {"file": "/etc/passwd", "dimension": 8, "kind": "IndexIDMap2"},
            r"global\.file: not an allowed name",
        ),
        (
            "global",
            {"file": "global-000001.faiss", "dimension": 8, "kind": "IndexPickle"},
            r"global\.kind: not one of the known values",
        ),
        ("n_images", "many", r"n_images: not an integer \(got 'many'\)"),
        ("n_images", 10**12, r"n_images 1000000000000 exceeds next_id"),
        ("next_id", 2**40, r"next_id: should be less than or equal to"),
        ("next_id", -1, r"next_id: should be greater than or equal to 0"),
        ("complete", "yes", r"complete: not true or false"),
        ("segments", "g000001", r"segments: not a list"),
        ("index_version", 99, r"index format version 99 is newer"),
        ("params", {"detector": "rootsift", "max_side": "huge"}, r"params\.max_side"),
        ("params", {"detector": "/bin/sh"}, r"params: unknown detector '/bin/sh'"),
        (
            "params",
            {"vocabulary_params": {"branching": 4, "depth": "deep"}},
            r"params\.depth: 'deep' does not match its type int",
        ),
        (
            "params",
            {"vocabulary_params": {"branching": 4, "depth": 2, "n_jobs": 64}},
            r"unknown parameter\(s\) 'n_jobs'",
        ),
    ],
)
def test_a_hostile_index_manifest_is_refused_before_any_file_is_opened(
    index, layout, opened, field, value, message
):
    outside = layout[1]
    shutil.copytree(index / "segments", outside / "segments")  # decoys a follower would load
    shutil.copy(next(index.glob("removed-*.npy")), outside / "removed-000009.npy")
    value = json.loads(json.dumps(value).replace("{outside}", str(outside)))
    edit_manifest(index, lambda h: h["content"].update({field: value}))
    opened.clear()
    with pytest.raises(BundleError, match=message) as error:
        Index.open(index)
    assert one_line(error).startswith(f"{index}: ")
    assert_stays_inside(opened, index, outside)
    assert opened == [str(index / MANIFEST_NAME)] or field == "params"


def test_the_cli_prints_one_line_for_a_hostile_index(index, capsys):
    edit_manifest(index, lambda h: h["content"].update(n_images="many"))
    assert main(["index", "info", str(index)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("n_images: not an integer (got 'many')") and len(error.splitlines()) == 1


@pytest.mark.parametrize("target", ["segment", "array", "removed", "catalogue", "vocabulary"])
def test_an_index_file_linked_out_of_its_directory_is_not_opened(index, layout, opened, target):
    outside = layout[1]
    segment = index / "segments" / _segment_names(index)[0]
    link = {
        "segment": segment,
        "array": segment / "words.npy",
        "removed": next(index.glob("removed-*.npy")),
        "catalogue": index / "catalogue.sqlite",
        "vocabulary": index / "vocabulary.safetensors",
    }[target]
    decoy = outside / link.name
    shutil.move(link, decoy)
    link.symlink_to(decoy, target_is_directory=decoy.is_dir())
    opened.clear()
    with pytest.raises(
        BundleError, match=r"not a valid index: .* leads out of the directory"
    ) as error:
        Index.open(index)
    assert one_line(error).startswith(f"{index}: ")
    assert_stays_inside(opened, index, outside)


def test_a_planted_lock_link_creates_nothing_outside(index, layout, ukbench_paths):
    outside = layout[1]
    (index / ".lock").unlink(missing_ok=True)
    (index / ".lock").symlink_to(outside / "created-by-the-lock")
    with pytest.raises(BundleError, match=r"\.lock is not a plain file"):
        add_images(index, ukbench_paths[:1], n_jobs=1, cache_dir=False)
    assert not any(outside.iterdir())


def test_a_segments_folder_linked_out_is_neither_read_nor_cleaned(index, layout, ukbench_paths):
    outside = layout[1]
    shutil.move(index / "segments", outside / "segments")
    (outside / "segments" / "g999999").mkdir()  # a writer would delete it as garbage
    (index / "segments").symlink_to(outside / "segments", target_is_directory=True)
    with pytest.raises(BundleError, match="leads out of the directory"):
        add_images(index, ukbench_paths[:1], n_jobs=1, cache_dir=False)
    assert (outside / "segments" / "g999999").is_dir()


def test_a_next_id_beyond_the_stored_ids_is_refused(index):
    edit_manifest(index, lambda h: h["content"].update(next_id=10**9, n_images=5))
    with pytest.raises(BundleError, match=r"next_id 1000000000 does not match the 9 ids"):
        Index.open(index)


# ------------------------------------------------------------------ FAISS files


def _with_global(
    index: Path, vectors: int, dimension: int = 8, file_dimension: int | None = None
) -> Path:
    """Give the index a global FAISS file of ``vectors`` vectors and describe it in the manifest."""
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(file_dimension or dimension))
    rng = np.random.default_rng(0)
    flat.add_with_ids(
        rng.random((vectors, file_dimension or dimension), dtype=np.float32),
        np.arange(vectors, dtype=np.int64),
    )
    path = index / "global-000001.faiss"
    faiss.write_index(flat, str(path))
    described = {"file": path.name, "dimension": dimension, "kind": "IndexIDMap2"}
    edit_manifest(index, lambda h: h["content"].update({"global": described}))
    return path


def test_a_faiss_file_matching_its_manifest_is_read(index):
    next_id = json.loads((index / MANIFEST_NAME).read_text())["content"]["next_id"]
    _with_global(index, next_id)
    assert Index.open(index)._global.ntotal == next_id


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path, n: path.write_bytes(path.read_bytes()[:-12]), r"bytes where 8 vectors take"),
        (lambda path, n: path.write_bytes(path.read_bytes()[:20]), r"truncated \(20 bytes\)"),
        (lambda path, n: _with_global(path.parent, n + 3), r"11 vectors where 8 are expected"),
        (lambda path, n: _with_global(path.parent, n, 8, 16), r"dimension 16 where 8 is expected"),
        (
            lambda path, n: path.write_bytes(b"IwPQ" + path.read_bytes()[4:]),
            r"kind b'IwPQ' where IndexIDMap2",
        ),
    ],
    ids=["truncated", "header-only", "count", "dimension", "kind"],
)
def test_a_truncated_or_swapped_faiss_file_never_reaches_faiss(index, monkeypatch, damage, message):
    next_id = json.loads((index / MANIFEST_NAME).read_text())["content"]["next_id"]
    path = _with_global(index, next_id)
    damage(path, next_id)

    def refuse(data):
        raise AssertionError("FAISS was handed a file its manifest does not describe")

    monkeypatch.setattr(storage.faiss, "deserialize_index", refuse)
    with pytest.raises(BundleError, match=message) as error:
        Index.open(index)
    assert "not the FAISS index the manifest describes" in one_line(error)


def test_an_unchecked_faiss_read_still_tells_corruption_from_absence(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_faiss_index(tmp_path / "global-000001.faiss")


def test_a_saved_hnsw_vocabulary_graph_is_checked_before_faiss(tmp_path, monkeypatch):
    from safetensors.numpy import load_file, save_file

    from imagelearn.bof.vocabulary import KMeansVocabulary

    descriptors = np.random.default_rng(0).random((400, 16), dtype=np.float32)
    path = (
        KMeansVocabulary(n_words=20, index="hnsw", n_jobs=1).fit(descriptors).save(tmp_path / "v")
    )
    arrays = load_file(str(path / ARRAYS_NAME))
    arrays["words"] = arrays["words"][:10]  # the graph now holds more words than the bundle
    save_file(arrays, str(path / ARRAYS_NAME))
    monkeypatch.setattr(faiss, "deserialize_index", lambda data: pytest.fail("reached FAISS"))
    with pytest.raises(
        BundleError, match=r"hnsw_graph is not the words' graph \(20 vectors where 10"
    ):
        KMeansVocabulary.load(path)
