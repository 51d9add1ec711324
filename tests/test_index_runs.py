"""The ``imagelearn index`` workflows called from Python, IndexParams checks, and the CLI's flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest

from conftest import data_path
from imagelearn.bof.vocabulary import KMeansVocabulary, VocabularyTree
from imagelearn.cli.main import build_parser, main
from imagelearn.core.bundle import BundleError
from imagelearn.core.errors import ParameterError
from imagelearn.core.images import ImageReadError
from imagelearn.retrieval import (
    DEFAULT_VOCABULARY_PARAMS,
    Index,
    IndexExistsError,
    IndexParams,
    SearchResult,
    build_index,
    runs,
    save_ground_truth,
    ukbench_ground_truth,
)
from imagelearn.retrieval.runs import (
    add_run,
    benchmark_run,
    build_run,
    evaluate_run,
    info_run,
    remove_run,
    search_run,
    vocabulary_params,
)

#: Small enough for the test budget: 24 UKBench images (6 objects), a 6 x 2 tree, local
#: features only.
SMALL = {
    "max_keypoints": 300,
    "max_side": 320,
    "train_images": 24,
    "global_descriptor": False,
    "n_jobs": 1,
}


@pytest.fixture(scope="module")
def ukbench_paths() -> list[str]:
    return sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:28]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def built(tmp_path_factory, ukbench_paths, cache) -> Path:
    directory = tmp_path_factory.mktemp("runs") / "index"
    result = build_run(
        ukbench_paths[:24], directory, branching=6, depth=2, cache_dir=cache, **SMALL
    )
    assert result.index == directory and len(result.report.added) == 24
    assert result.params.vocabulary_params == {"branching": 6, "depth": 2, "n_iter": 10}
    return directory


@pytest.fixture
def index_copy(built, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(built, copy)
    return copy


def test_add_remove_and_info_runs(index_copy, ukbench_paths, cache):
    added = add_run(index_copy, ukbench_paths[24:26], n_jobs=1, cache_dir=cache)
    assert len(added.report.added) == 2 and added.index == index_copy
    removed = remove_run(index_copy, [ukbench_paths[25], "/nowhere/else.jpg"])
    assert removed.removed == (ukbench_paths[25],) and removed.missing == ("/nowhere/else.jpg",)
    info = info_run(index_copy).info
    assert info["images"] == 25 and info["complete"] and info["vocabulary"].startswith("tree ")


def test_search_run_ranks_the_query_first_and_plots(built, ukbench_paths, tmp_path):
    plot = tmp_path / "matches.png"
    result = search_run(built, ukbench_paths[9], top=4, plot=plot, verify_top=8)
    assert isinstance(result, SearchResult) and len(result.matches) == 4
    assert result.matches[0].path == ukbench_paths[9] and result.matches[0].inliers >= 10
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_a_query_that_is_no_image_file_is_named_for_what_it_is(built, tmp_path, capsys):
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    empty = tmp_path / "empty.jpg"
    empty.touch()
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    cases = {folder: "is a directory, not an image", empty: "empty file", loop: "symbolic links"}
    for query, reason in cases.items():
        with pytest.raises(ImageReadError, match=reason):
            search_run(built, query, top=4)
        assert main(["index", "search", str(built), str(query)]) == 2
        assert f"{query}: " in capsys.readouterr().err


def test_without_weights_a_build_indexes_local_features_with_a_notice(
    ukbench_paths, tmp_path, cache, monkeypatch, caplog
):
    monkeypatch.setattr(runs, "imagenet_weights_available", lambda backbone: False)
    options = {**SMALL, "global_descriptor": None, "train_images": 8}
    with caplog.at_level(logging.WARNING, logger="imagelearn"):
        result = build_run(
            ukbench_paths[:8], tmp_path / "index", branching=4, depth=2, cache_dir=cache, **options
        )
    assert not result.params.global_descriptor
    notices = [record.getMessage() for record in caplog.records]
    assert notices == [
        "no ImageNet weights for 'mobilenet_v2' on this machine: indexing local features only "
        "(global_descriptor=True downloads them)"
    ]
    found = Index.open(tmp_path / "index").search(ukbench_paths[5], top=2)
    assert found.mode == "local" and found.matches[0].path == ukbench_paths[5]


def test_build_and_search_default_to_the_best_available():
    parser = build_parser()
    build = parser.parse_args(["index", "build", "a.jpg", "--out", "o"])
    assert build.global_descriptor is None  # build_run: when the weights are on the machine
    opted_out = parser.parse_args(
        ["index", "build", "a.jpg", "--out", "o", "--no-global-descriptor"]
    )
    assert opted_out.global_descriptor is False
    assert parser.parse_args(["index", "search", "i", "q.jpg"]).mode is None  # hybrid or local


def test_evaluate_run_scores_ground_truth(built, ukbench_paths, tmp_path):
    truth = save_ground_truth(ukbench_ground_truth(ukbench_paths[:8]), tmp_path / "truth.json")
    result = evaluate_run(built, truth=truth, depth=8, verify_top=8)
    assert result.n_queries == 8 and result.index == built
    assert result.scores["N-S"] >= 2.8, result.scores
    assert set(result.scores) >= {"mAP", "recall@10", "median_ms"}
    for sources in ({}, {"truth": truth, "ukbench": tmp_path}):
        with pytest.raises(ParameterError, match="exactly one") as error:
            evaluate_run(built, **sources)
        assert error.value.parameter == "truth"


def test_benchmark_run_is_seeded(tmp_path):
    originals = data_path("hymenoptera", "val")
    first = benchmark_run([originals], tmp_path / "a", n_variants=2, limit=2, random_state=3)
    second = benchmark_run([originals], tmp_path / "b", n_variants=2, limit=2, random_state=3)
    assert first.n_originals == 2 and first.n_pairs == 0
    assert len(first.database.read_text().split()) == 4
    assert json.loads(first.ground_truth.read_text()) == json.loads(
        second.ground_truth.read_text().replace(str(tmp_path / "b"), str(tmp_path / "a"))
    )


def test_a_kmeans_index_builds_with_its_own_parameters(ukbench_paths, tmp_path, cache):
    # the trap: IndexParams(vocabulary="kmeans") used to get the tree's default parameters
    vocabulary = IndexParams(vocabulary="kmeans").make_vocabulary()
    assert isinstance(vocabulary, KMeansVocabulary)
    assert vocabulary.get_params() | DEFAULT_VOCABULARY_PARAMS["kmeans"] == vocabulary.get_params()
    assert isinstance(
        dataclasses.replace(IndexParams(), vocabulary="tree").make_vocabulary(), VocabularyTree
    )
    result = build_run(
        ukbench_paths[:16],
        tmp_path / "flat",
        vocabulary="kmeans",
        n_words=200,
        cache_dir=cache,
        **SMALL,
    )
    assert result.params.vocabulary_params == {"n_words": 200, "n_iter": 10, "index": "flat"}
    content = json.loads((tmp_path / "flat" / "manifest.json").read_text())["content"]
    assert content["n_words"] == 200
    assert (
        Index.open(tmp_path / "flat").search(ukbench_paths[3], top=1).matches[0].path
        == (ukbench_paths[3])
    )


def test_a_wrong_vocabulary_key_names_the_parameter_and_the_accepted_keys():
    with pytest.raises(ParameterError, match="branching") as error:
        IndexParams(vocabulary="kmeans", vocabulary_params={"branching": 10})
    assert error.value.parameter == "vocabulary_params"
    assert "n_words" in str(error.value) and "n_iter" in str(error.value)
    with pytest.raises(ParameterError, match="no parameter n_words") as error:
        IndexParams(vocabulary_params={"n_words": 10})
    assert error.value.parameter == "vocabulary_params"
    with pytest.raises(ParameterError, match="unknown vocabulary") as error:
        IndexParams(vocabulary="forest")
    assert error.value.parameter == "vocabulary"
    with pytest.raises(ParameterError, match="unknown detector") as error:
        IndexParams(detector="surf")
    assert error.value.parameter == "detector"


def test_vocabulary_options_of_the_other_kind_are_refused_before_any_work(tmp_path):
    with pytest.raises(ParameterError, match="tree") as error:
        build_run(["unused.jpg"], tmp_path / "never", vocabulary="kmeans", branching=4)
    assert error.value.parameter == "branching" and not (tmp_path / "never").exists()
    assert vocabulary_params("kmeans", n_words=60_000)["index"] == "hnsw"
    assert vocabulary_params("tree", beam_width=2) == {
        **DEFAULT_VOCABULARY_PARAMS["tree"],
        "beam_width": 2,
    }


def test_manifests_store_resolved_parameters_and_older_ones_still_open(index_copy, ukbench_paths):
    stored = IndexParams().to_dict()
    assert stored["vocabulary_params"] == DEFAULT_VOCABULARY_PARAMS["tree"]
    assert IndexParams(**stored).make_vocabulary().get_params() == (
        IndexParams().make_vocabulary().get_params()
    )
    manifest = index_copy / "manifest.json"
    header = json.loads(manifest.read_text())
    header["content"]["params"]["vocabulary_params"] = {"branching": 6, "depth": 2}  # no n_iter
    manifest.write_text(json.dumps(header))
    index = Index.open(index_copy)
    assert index.params.vocabulary_params == {"branching": 6, "depth": 2}
    assert index.search(ukbench_paths[4], top=1).matches[0].path == ukbench_paths[4]


def test_a_finished_index_is_refused_with_a_typed_error_and_the_cli_names_the_flag(
    built, ukbench_paths, capsys
):
    with pytest.raises(IndexExistsError) as error:
        build_index(ukbench_paths[:2], built)
    assert isinstance(error.value, BundleError) and isinstance(error.value, FileExistsError)
    assert "--" not in str(error.value)
    assert main(["index", "build", ukbench_paths[0], "--out", str(built)]) == 2
    message = capsys.readouterr().err
    assert "already there" in message and "(--overwrite)" in message


def test_cli_errors_name_the_flag_of_the_parameter(built, ukbench_paths, capsys, tmp_path):
    arguments = ["index", "build", ukbench_paths[0], "--out", str(tmp_path / "x")]
    assert main([*arguments, "--vocabulary", "kmeans", "--depth", "3"]) == 2
    assert "(--depth)" in capsys.readouterr().err
    assert main(["index", "search", str(built), ukbench_paths[0], "--mode", "global"]) == 2
    message = capsys.readouterr().err
    assert "without global descriptors" in message and "(--mode)" in message


def _verb_parsers() -> dict[str, argparse.ArgumentParser]:
    capabilities = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    verbs = next(
        a
        for a in capabilities.choices["index"]._actions
        if isinstance(a, argparse._SubParsersAction)
    )
    return verbs.choices


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["build", "a.jpg", "--out", "o", "--words", "300"], {"n_words": 300}),
        (["build", "a.jpg", "--out", "o", "--beam", "2"], {"beam_width": 2}),
        (["build", "a.jpg", "--out", "o", "--global"], {"global_descriptor": True}),
        (["build", "a.jpg", "--out", "o", "--no-global"], {"global_descriptor": False}),
        (["build", "a.jpg", "--out", "o", "--jobs", "2"], {"n_jobs": 2}),
        (["info", "i", "--json"], {"format": "json"}),
        (["search", "i", "q.jpg", "--json"], {"format": "json"}),
        (["eval", "i", "--truth", "t.json", "--json"], {"format": "json"}),
        (["benchmark", "a.jpg", "--out", "o", "--variants", "3"], {"n_variants": 3}),
        (["benchmark", "a.jpg", "--out", "o", "--seed", "4"], {"random_state": 4}),
    ],
)
def test_old_spellings_parse_into_the_new_names(arguments, expected):
    parsed = build_parser().parse_args(["index", *arguments])
    assert {name: getattr(parsed, name) for name in expected} == expected
    if arguments[0] == "eval":
        assert parsed.handler.__name__ == "run_evaluate"


def test_every_option_has_help_and_shows_its_default():
    for name, parser in _verb_parsers().items():
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, (name, action.option_strings)
    text = _verb_parsers()["build"].format_help()
    assert "(default: 1000)" in text and "(default: rootsift)" in text
    assert "--words" not in text and "--beam " not in text


def test_the_reader_and_the_writer_live_in_the_modules_their_names_say():
    from imagelearn.retrieval import index, writer

    assert Index.__module__ == "imagelearn.retrieval.index"
    assert SearchResult.__module__ == "imagelearn.retrieval.index"
    assert build_index is writer.build_index and IndexParams.__module__.endswith(".params")
    assert not hasattr(index, "build_index") and not hasattr(index, "IndexWriter")
