"""Updating an index: add, remove, duplicates, resume, concurrency, corrupt indexes, bad input."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.core.bundle import BundleError
from imagelearn.retrieval import (
    Index,
    IndexBusyError,
    IndexParams,
    add_images,
    build_index,
    remove_images,
)
from imagelearn.retrieval.storage import WriteLock
from imagelearn.retrieval.writer import IndexWriter

SMALL_PARAMS = IndexParams(
    max_keypoints=300,
    max_side=320,
    vocabulary_params={"branching": 16, "depth": 2, "n_iter": 4},
    train_images=40,
    train_descriptors_per_image=100,
    batch_size=16,
)


@pytest.fixture(scope="module")
def ukbench_paths() -> list[str]:
    return sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:48]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def built(tmp_path_factory, ukbench_paths, cache) -> Path:
    directory = tmp_path_factory.mktemp("small") / "index"
    build_index(ukbench_paths[:40], directory, SMALL_PARAMS, cache_dir=cache)
    return directory


@pytest.fixture
def index_copy(built, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(built, copy)
    return copy


def test_add_then_remove_updates_counts_and_results(index_copy, ukbench_paths, cache):
    report = add_images(index_copy, ukbench_paths[40:], cache_dir=cache)
    assert len(report.added) == 8 and not report.duplicates
    index = Index.open(index_copy)
    assert index.n_images == 48
    new_query = ukbench_paths[45]
    assert index.search(new_query, top=1).matches[0].path == new_query
    removed, missing = remove_images(index_copy, [new_query, "/nowhere/else.jpg"])
    assert removed == [new_query] and missing == ["/nowhere/else.jpg"]
    after = Index.open(index_copy)
    assert after.n_images == 47
    assert new_query not in [m.path for m in after.search(new_query, top=10).matches]


def test_an_index_at_rest_is_read_without_writing_in_its_folder(index_copy, ukbench_paths, cache):
    add_images(index_copy, ukbench_paths[40:44], cache_dir=cache)
    at_rest = {p.name: p.stat().st_mtime_ns for p in index_copy.iterdir()}
    assert not {"catalogue.sqlite-wal", "catalogue.sqlite-shm"} & at_rest.keys()
    with Index.open(index_copy) as index:
        assert index.search_id(0, top=3).matches[0].image_id == 0
    assert {p.name: p.stat().st_mtime_ns for p in index_copy.iterdir()} == at_rest


def test_adding_the_same_content_twice_is_detected(index_copy, ukbench_paths, tmp_path, cache):
    copy = tmp_path / "renamed.jpg"
    shutil.copyfile(ukbench_paths[3], copy)
    report = add_images(index_copy, [ukbench_paths[3], copy], cache_dir=cache)
    assert report.added == []
    assert {existing for _, existing in report.duplicates} == {ukbench_paths[3]}
    assert "duplicate:" in report.format()
    assert Index.open(index_copy).n_images == 40


def test_many_segments_are_merged_and_old_snapshots_stay_searchable(
    index_copy, ukbench_paths, cache
):
    before = Index.open(index_copy)
    with IndexWriter(index_copy, cache_dir=cache) as writer:
        writer.remove([ukbench_paths[0]])
        writer.merge()
    after = Index.open(index_copy)
    assert len(after.segments) == 1 and after.n_images == 39
    assert len(before.search(ukbench_paths[1], top=3).matches) == 3  # its files are deleted now
    assert ukbench_paths[0] not in [m.path for m in after.search(ukbench_paths[0], top=40).matches]


def test_a_writer_after_a_merge_keeps_the_catalogue(index_copy, ukbench_paths, cache):
    with IndexWriter(index_copy, cache_dir=cache) as writer:
        writer.merge()
    add_images(index_copy, ukbench_paths[40:41], cache_dir=cache)
    index = Index.open(index_copy)
    assert index.n_images == 41
    assert index.search(ukbench_paths[1], top=1).matches[0].path == ukbench_paths[1]


def test_rows_of_an_uncommitted_batch_are_dropped_by_the_next_writer(
    index_copy, ukbench_paths, cache, monkeypatch
):
    def interrupted(self, **changes):
        raise KeyboardInterrupt

    monkeypatch.setattr(IndexWriter, "_commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        add_images(index_copy, ukbench_paths[40:42], cache_dir=cache)
    monkeypatch.undo()
    report = add_images(index_copy, ukbench_paths[40:42], cache_dir=cache)
    assert len(report.added) == 2 and not report.duplicates
    assert Index.open(index_copy).n_images == 42


def test_a_second_writer_is_refused_while_readers_go_on(index_copy, ukbench_paths, cache):
    with WriteLock(index_copy):
        with pytest.raises(IndexBusyError, match="another process is writing"):
            add_images(index_copy, ukbench_paths[40:41], cache_dir=cache)
        assert (
            Index.open(index_copy).search(ukbench_paths[2], top=1).matches[0].path
            == ukbench_paths[2]
        )


def test_searches_keep_working_while_another_process_adds(index_copy, ukbench_paths, cache):
    added = ukbench_paths[40:44]
    # a module-level target: the spawned process imports it, it does not inherit this one's state
    writer = multiprocessing.get_context("spawn").Process(
        target=add_images, args=(index_copy, added), kwargs={"n_jobs": 1, "cache_dir": cache}
    )
    writer.start()
    deadline = time.monotonic() + 120.0
    snapshots, results = [], []
    try:
        while not results or writer.is_alive():
            assert time.monotonic() < deadline, "the writer process did not finish in 120 s"
            index = Index.open(index_copy)
            snapshots.append(index.n_images)
            results.append(index.search(added[1], top=5))
        writer.join(timeout=30)
    finally:
        if writer.is_alive():
            writer.kill()
            writer.join()
    assert writer.exitcode == 0
    assert set(snapshots) <= {40, 44}  # one batch: the old snapshot or the new, never half
    known = set(ukbench_paths[:44])
    for result in results:
        ranking = [(m.inliers, m.score) for m in result.matches]
        assert len(ranking) == 5 and ranking == sorted(ranking, reverse=True)
        assert {m.path for m in result.matches} <= known
    after = Index.open(index_copy)
    assert after.n_images == 44
    assert after.search(added[1], top=1).matches[0].path == added[1]


def test_an_interrupted_build_resumes(tmp_path, ukbench_paths, cache, monkeypatch):
    directory = tmp_path / "resumed"
    original = IndexWriter._add_batch
    calls = []

    def interrupted(self, batch, report):
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        original(self, batch, report)

    monkeypatch.setattr(IndexWriter, "_add_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(ukbench_paths[:40], directory, SMALL_PARAMS, cache_dir=cache)
    partial = Index.open(directory)
    assert partial.n_images == 16 and not partial.info()["complete"]
    monkeypatch.setattr(IndexWriter, "_add_batch", original)
    report = build_index(ukbench_paths[:40], directory, SMALL_PARAMS, cache_dir=cache)
    assert len(report.added) == 24 and "already indexed: 16" in report.format()
    assert Index.open(directory).info()["complete"] and Index.open(directory).n_images == 40
    with pytest.raises(BundleError, match="already there"):
        build_index(ukbench_paths[:40], directory, SMALL_PARAMS, cache_dir=cache)


def test_unreadable_files_are_skipped_with_their_reason(tmp_path, ukbench_paths, cache):
    corrupt = data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")
    report = build_index(
        [*ukbench_paths[:20], corrupt], tmp_path / "bad", SMALL_PARAMS, cache_dir=cache
    )
    assert len(report.added) == 20
    assert [Path(path).name for path, _ in report.skipped] == ["ukbench09268_corrupt.jpg"]
    with pytest.raises(ValueError, match="none of the 1 training images gave rootsift features"):
        build_index([corrupt], tmp_path / "nothing", SMALL_PARAMS, cache_dir=cache)
    assert not (tmp_path / "nothing" / "manifest.json").exists()


@pytest.mark.parametrize(
    "image",
    [np.full((240, 320, 3), 128, np.uint8), np.zeros((6, 6, 3), np.uint8)],
    ids=["blank", "tiny"],
)
def test_a_query_without_features_gets_a_clear_error(built, image):
    with pytest.raises(ValueError, match="no local features"):
        Index.open(built).search(image)


def test_a_newer_index_format_is_refused(index_copy):
    manifest = index_copy / "manifest.json"
    header = json.loads(manifest.read_text())
    header["content"]["index_version"] = 99
    manifest.write_text(json.dumps(header))
    with pytest.raises(BundleError, match="newer"):
        Index.open(index_copy)


def test_corrupt_indexes_are_named(index_copy, capsys):
    segment = next((index_copy / "segments").iterdir())
    (segment / "words.npy").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="corrupt array file"):
        Index.open(index_copy)
    (index_copy / "manifest.json").write_text("{not json")
    assert main(["index", "info", str(index_copy)]) == 2
    error = capsys.readouterr().err
    assert "corrupt manifest" in error and len(error.strip().splitlines()) == 1


def test_an_unknown_folder_is_not_an_index(tmp_path, capsys):
    assert main(["index", "search", str(tmp_path), "query.jpg"]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_cli_add_remove_info(index_copy, ukbench_paths, capsys):
    assert main(["index", "add", str(index_copy), ukbench_paths[41], "--jobs", "1"]) == 0
    assert "added: 1" in capsys.readouterr().out
    assert main(["index", "remove", str(index_copy), ukbench_paths[41]]) == 0
    assert main(["index", "info", str(index_copy), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("removed: 1\n", 1)[1])
    assert info["images"] == 40


def test_cli_builds_a_flat_kmeans_index_searched_without_a_graph(ukbench_paths, tmp_path, capsys):
    directory = tmp_path / "flat"
    arguments = ["index", "build", *ukbench_paths[:24], "--out", str(directory)]
    arguments += ["--vocabulary", "kmeans", "--words", "300", "--max-keypoints", "300"]
    arguments += ["--max-side", "320", "--train-images", "24", "--jobs", "1"]
    assert main(arguments) == 0
    content = json.loads((directory / "manifest.json").read_text())["content"]
    assert content["params"]["vocabulary_params"]["index"] == "flat"  # below 50,000 words
    assert content["n_words"] == 300
    capsys.readouterr()
    assert main(["index", "search", str(directory), ukbench_paths[5], "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert Path(results[0]["path"]).name == Path(ukbench_paths[5]).name


def test_cli_tree_beam_is_kept_in_the_index(ukbench_paths, tmp_path, capsys):
    directory = tmp_path / "beam"
    arguments = ["index", "build", *ukbench_paths[:24], "--out", str(directory)]
    arguments += ["--branching", "6", "--depth", "2", "--beam", "2", "--max-keypoints", "300"]
    arguments += ["--max-side", "320", "--train-images", "24", "--jobs", "1"]
    assert main(arguments) == 0
    content = json.loads((directory / "manifest.json").read_text())["content"]
    assert content["params"]["vocabulary_params"]["beam_width"] == 2
    capsys.readouterr()
    assert main(["index", "search", str(directory), ukbench_paths[7], "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert Path(results[0]["path"]).name == Path(ukbench_paths[7]).name
