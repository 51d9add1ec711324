"""Tags in the catalogue: ImageNet classes from the global descriptor's pass, keyword search,
a classifier's and a clustering's tags, and ``index tag`` for an index built without them."""

from __future__ import annotations

import csv
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from conftest import data_path
from imagelearn.cli.main import main
from imagelearn.retrieval import Index, IndexParams, add_images, build_index, remove_images
from imagelearn.retrieval import tags as tags_module
from imagelearn.retrieval.catalogue import CATALOGUE_NAME, Catalogue
from imagelearn.retrieval.global_descriptors import GeMDescriptor
from imagelearn.retrieval.tags import (
    IMAGENET_FLOOR,
    IMAGENET_TOP,
    Tag,
    TagTable,
    classifier_tags,
    cluster_tags,
    describe_with_classes,
    tag_words,
    top_classes,
)

pytest.importorskip("torchvision")

PARAMS = dict(
    max_keypoints=300,
    max_side=320,
    vocabulary_params={"branching": 16, "depth": 2, "n_iter": 4},
    train_descriptors_per_image=150,
    global_descriptor=True,
    global_max_side=256,
)


def _collection() -> dict[str, list[str]]:
    """8 UKBench photos (2 objects), 6 bee photos, 6 daisy thumbnails (128 pixels)."""
    ukbench = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:8]
    bees = sorted(str(p) for p in data_path("hymenoptera", "val", "bees").glob("*.jpg"))[:6]
    daisies = sorted(str(p) for p in (Path("examples/flowers5_sample/daisy").resolve()).glob("*"))
    return {"ukbench": ukbench, "bees": bees, "daisies": daisies[:6]}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    images = _collection()
    directory = tmp_path_factory.mktemp("tags") / "index"
    build_index(
        images["ukbench"] + images["bees"] + images["daisies"][:4],
        directory,
        IndexParams(**PARAMS, tags=True),
        cache_dir=directory.parent / "cache",
    )
    return directory, images


def _ids(index: Index, paths: list[str]) -> set[int]:
    by_path = {r.path: i for i, r in index.records(index.ids().tolist()).items()}
    return {by_path[str(Path(p).resolve())] for p in paths if str(Path(p).resolve()) in by_path}


def test_every_image_carries_its_top_imagenet_classes(tagged):
    directory, _ = tagged
    index = Index.open(directory)
    tags = index.tag_table().of(index.ids().tolist())
    assert len(tags) == index.n_images == 18
    for image_tags in tags.values():
        assert 1 <= len(image_tags) <= IMAGENET_TOP
        assert {t.source for t in image_tags} == {"imagenet"}
        scores = [t.score for t in image_tags]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
        assert all(score >= IMAGENET_FLOOR for score in scores[1:])


def test_a_keyword_finds_the_bees_and_the_daisies(tagged):
    directory, images = tagged
    index = Index.open(directory)
    table = index.tag_table()
    bees, daisies = _ids(index, images["bees"]), _ids(index, images["daisies"])
    found = table.search("bee", top=6)
    assert len({i for i, _ in found} & bees) >= 4, found  # measured: 5 of the 6
    assert all(
        any(word.startswith("bee") for word in tag_words("imagenet", tag.name).split())
        for _, tag in found
    )  # a prefix: "beer bottle" is found too
    # daisy thumbnails are classified at 224 pixels (an enlarged thumbnail is classified poorly)
    found = {i for i, _ in table.search("DAIS", top=10)}
    assert len(found & daisies) >= 2, found  # measured: 3 of the 4
    among = sorted(bees)[:3] + sorted(daisies)
    assert {i for i, _ in table.search("bee", among=among)} <= set(among)
    counts = table.counts()
    assert counts["bee"] >= 4 and list(counts.values()) == sorted(counts.values(), reverse=True)


def test_tags_come_from_the_global_descriptors_network_pass(tagged, monkeypatch, tmp_path):
    directory, images = tagged
    copy = tmp_path / "index"
    shutil.copytree(directory, copy)

    def second_pass(*arguments, **options):
        raise AssertionError("the global descriptor ran its own network pass")

    monkeypatch.setattr(GeMDescriptor, "transform", second_pass)
    add_images(copy, images["daisies"][4:], cache_dir=tmp_path / "cache")
    index = Index.open(copy)
    new = _ids(index, images["daisies"][4:])
    assert len(new) == 2 and all(index.tag_table().of(sorted(new)).values())
    monkeypatch.undo()
    descriptor = GeMDescriptor(max_side=256, cache_dir="")
    descriptors, tags = describe_with_classes(descriptor, images["bees"][:2])
    np.testing.assert_allclose(descriptors, descriptor.transform(images["bees"][:2]), atol=1e-5)
    assert len(tags) == 2 and all(tags)


def test_removed_images_lose_their_tags_and_uncommitted_ones_never_show(tagged, tmp_path):
    directory, images = tagged
    copy = tmp_path / "index"
    shutil.copytree(directory, copy)
    index = Index.open(copy)
    removed = _ids(index, images["bees"][:2])
    remove_images(copy, images["bees"][:2])
    index = Index.open(copy)
    table = index.tag_table()
    assert all(table.of(sorted(removed))[i] == [] for i in removed)
    assert not {i for i, _ in table.search("bee", top=50)} & removed
    # rows a crashed writer left beyond next_id: invisible to readers, deleted by the next writer
    beyond = index.n_ids + 3
    catalogue = Catalogue(copy, writable=True)
    catalogue.insert_tags([(beyond, Tag("imagenet", "bee", 0.99))])
    catalogue.close()
    assert beyond not in {i for i, _ in Index.open(copy).tag_table().search("bee")}
    remove_images(copy, images["bees"][2:3])
    rows = sqlite3.connect(copy / CATALOGUE_NAME).execute(
        "SELECT count(*) FROM tags WHERE image_id = ?", (beyond,)
    )
    assert rows.fetchone()[0] == 0


def test_words_synonyms_prefixes_exact_names_and_combined_tables():
    table = TagTable.from_rows(
        [
            (1, Tag("imagenet", "tabby", 0.9)),
            (1, Tag("imagenet", "Egyptian cat", 0.05)),
            (2, Tag("imagenet", "tiger cat", 0.4)),
            (3, Tag("imagenet", "great white shark", 0.7)),
            (4, Tag("cluster", "cluster 1", 0.5)),
            (5, Tag("cluster", "cluster 10", 0.8)),
        ]
    )
    assert "cat" in tag_words("imagenet", "tabby").split()
    assert [i for i, _ in table.search("cat")] == [1, 2]  # "tabby" is a "tabby cat"
    assert table.search("cat")[0][1] == Tag("imagenet", "tabby", 0.9)  # best tag once
    assert [i for i, _ in table.search("TAB")] == [1]
    assert [i for i, _ in table.search("man-eat")] == [3]  # a synonym, words split at the dash
    assert [i for i, _ in table.search("tiger ca")] == [2] and table.search("tiger dog") == []
    assert table.search("") == [] and table.search("zebra") == []
    assert [i for i, _ in table.search("cat", among=[2, 3])] == [2]
    assert [i for i, _ in table.search("cluster 1")] == [5, 4]
    assert [i for i, _ in table.search("Cluster 1", exact=True)] == [4]
    assert table.search("cat", top=1) == table.search("cat")[:1]
    model = TagTable.from_rows([(2, Tag("model", "tabby", 0.95)), (6, Tag("model", "rose", 0.6))])
    both = TagTable.combined(table, model)
    assert [i for i, _ in both.search("tab")] == [2, 1]
    assert [i for i, _ in both.search("cat")] == [1, 2]  # the model's "tabby" has no synonyms
    assert both.of([2, 7]) == {
        2: [Tag("model", "tabby", 0.95), Tag("imagenet", "tiger cat", 0.4)],
        7: [],
    }
    assert both.counts()["tabby"] == 2 and both.counts()["rose"] == 1


def test_index_tag_tags_an_index_built_without_them(tagged, tmp_path, capsys):
    _, images = tagged
    directory = tmp_path / "index"
    build_index(images["ukbench"][:4] + images["bees"][:3], directory, IndexParams(**PARAMS))
    index = Index.open(directory)
    assert index.tag_table().of([0]) == {0: []} and index.content["map"] is not None
    # a catalogue written before tags existed: a reader sees an empty table, writes nothing
    catalogue = sqlite3.connect(directory / CATALOGUE_NAME)
    catalogue.executescript("DROP TABLE tags; DROP TABLE tag_names;")
    catalogue.close()
    assert Index.open(directory).tag_table().search("bee") == []
    assert main(["index", "tag", str(directory)]) == 0
    assert "tagged: 7" in capsys.readouterr().out
    index = Index.open(directory)
    assert index.params.tags is True
    assert all(index.tag_table().of(index.ids().tolist()).values())
    add_images(directory, images["bees"][3:4])  # tagging is on from now on
    index = Index.open(directory)
    assert all(index.tag_table().of(index.ids().tolist()).values())
    assert main(["index", "tag", str(directory)]) == 0  # nothing left to tag
    assert "tagged: 0" in capsys.readouterr().out


def test_classifier_and_cluster_tags_are_computed_once_and_cached(tagged, tmp_path, monkeypatch):
    from imagelearn.bof.recognition import BofClassifier

    directory, images = tagged
    index = Index.open(directory)
    model = BofClassifier(
        channels=[{"detector": "sift", "detector_params": {"max_keypoints": 200}, "n_words": 32}],
        random_state=0,
    )
    model.fit(images["bees"][:4] + images["ukbench"][:4], [1] * 4 + [0] * 4, ["object", "insect"])
    run = model.save(tmp_path / "bof")
    cache = tmp_path / "cache"
    table = classifier_tags(index, run, cache_dir=cache)
    tags = table.of(index.ids().tolist())
    assert all(tag.source == "model" for image_tags in tags.values() for tag in image_tags)
    insects = {i for i, _ in table.search("insect", top=20)}
    assert len(insects & _ids(index, images["bees"])) >= 4
    monkeypatch.setattr(BofClassifier, "predict_images", lambda *a, **k: pytest.fail("again"))
    assert classifier_tags(index, run, cache_dir=cache).of([0]) == table.of([0])

    from imagelearn.classify import DeepImageClassifier

    deep = DeepImageClassifier(mode="features", head_epochs=10, image_size=128, random_state=0)
    deep.fit(
        images["bees"][:4] + images["ukbench"][:4],
        [1] * 4 + [0] * 4,
        class_names=["object", "insect"],
    )
    table = classifier_tags(index, deep.save(tmp_path / "deep"), cache_dir=cache)
    insects = {i for i, _ in table.search("insect", top=20)}
    assert len(insects & _ids(index, images["bees"])) >= 4
    probabilities = [t[0].score for t in table.of(index.ids().tolist()).values()]
    assert all(0 < p <= 1 for p in probabilities)

    records = index.records(index.ids().tolist())
    moved = tmp_path / "moved.jpg"  # found by its content: the run saw the file elsewhere
    shutil.copy(images["bees"][0], moved)
    rows = [("path", "cluster", "distance")]
    for image_id, record in sorted(records.items()):
        path = str(moved) if record.path == str(Path(images["bees"][0]).resolve()) else record.path
        rows.append((path, -1 if image_id == 0 else image_id % 2, 0.5 + image_id / 10))
    (tmp_path / "clusters").mkdir()
    with (tmp_path / "clusters" / "clusters.csv").open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    table = cluster_tags(index, tmp_path / "clusters", cache_dir=cache)
    tags = table.of(sorted(records))
    assert tags[0] == []  # noise
    assert all(t[0].name == f"cluster {i % 2}" for i, t in tags.items() if i)
    assert tags[_ids(index, images["bees"][:1]).pop()]
    members = [i for i, _ in table.search("cluster 1", exact=True, top=50)]
    assert members == sorted(members)  # closer to the centre first: smaller distances


def test_a_new_snapshot_classifies_only_the_images_no_snapshot_had(tagged, tmp_path, monkeypatch):
    from imagelearn.bof.recognition import BofClassifier

    directory, images = tagged
    copy = tmp_path / "index"
    shutil.copytree(directory, copy)
    model = BofClassifier(
        channels=[{"detector": "sift", "detector_params": {"max_keypoints": 200}, "n_words": 32}],
        random_state=0,
    )
    model.fit(images["bees"][:4] + images["ukbench"][:4], [1] * 4 + [0] * 4, ["object", "insect"])
    run = model.save(tmp_path / "bof")
    predicted: list[str] = []
    predict_images = BofClassifier.predict_images

    def recording(self, paths, **options):
        predicted.extend(paths)
        return predict_images(self, paths, **options)

    monkeypatch.setattr(BofClassifier, "predict_images", recording)
    cache = tmp_path / "cache"
    before = classifier_tags(Index.open(copy), run, cache_dir=cache)
    assert len(predicted) == 18
    ids = Index.open(copy).ids().tolist()
    assert classifier_tags(Index.open(copy), run, cache_dir=cache).of(ids) == before.of(ids)
    assert len(predicted) == 18  # nothing classified again
    old_ids = Index.open(copy).ids().tolist()
    added = images["daisies"][4:6]
    add_images(copy, added)
    predicted.clear()
    hashed: list[str] = []
    sha256_or_none = tags_module._sha256_or_none
    monkeypatch.setattr(
        tags_module, "_sha256_or_none", lambda path: hashed.append(path) or sha256_or_none(path)
    )
    after = classifier_tags(Index.open(copy), run, cache_dir=cache)
    added_paths = sorted(str(Path(p).resolve()) for p in added)
    assert sorted(predicted) == added_paths and sorted(hashed) == added_paths  # no other file read
    assert after.of(old_ids) == before.of(old_ids)
    all_ids = Index.open(copy).ids().tolist()
    assert len(all_ids) == len(old_ids) + 2
    recomputed = classifier_tags(Index.open(copy), run, cache_dir="")  # no cache: all again
    assert after.of(all_ids) == recomputed.of(all_ids)
    new_ids = sorted(set(all_ids) - set(old_ids))
    remove_images(copy, [added[0]])  # a removal predicts nothing and drops the image's tags
    predicted.clear()
    removed = classifier_tags(Index.open(copy), run, cache_dir=cache)
    assert predicted == [] and removed.of(new_ids) == {
        new_ids[0]: [],
        new_ids[1]: after.of(new_ids)[new_ids[1]],
    }


def test_a_class_below_the_floor_is_kept_only_as_the_best_of_a_softmax():
    scores = np.array([[0.7, 0.2, 0.1], [0.45, 0.3, 0.25]])
    softmax = top_classes(scores, ["a", "b", "c"], "model", top=3, floor=0.5)
    assert [[t.name for t in tags] for tags in softmax] == [["a"], ["a"]]
    margins = top_classes(scores, ["a", "b", "c"], "model", top=3, floor=0.5, keep_best=False)
    assert [[t.name for t in tags] for tags in margins] == [["a"], []]  # no class claims it


def test_the_content_cache_keeps_images_classified_without_a_tag(tmp_path):
    first, second = "ab" * 32, "cd" * 32
    tags = {first: [Tag("model", "insect", 0.9), Tag("model", "object", 0.6)], second: []}
    tags_module._write_content_tags(tmp_path, "model-test", tags)
    assert tags_module._read_content_tags(tmp_path, "model-test") == tags  # [] kept: not again
    (tmp_path / "model-test.safetensors").write_bytes(b"damaged")
    assert tags_module._read_content_tags(tmp_path, "model-test") == {}
