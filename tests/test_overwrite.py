"""One overwrite rule for every command that writes a run directory: a finished run is refused
without ``overwrite`` (a typed error, the first run left as it was) and replaced with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagelearn
from conftest import data_path, hymenoptera_csv
from imagelearn.bof.recognition import BofClassifier
from imagelearn.bof.runs import sweep_vocabulary
from imagelearn.bof.runs import train_run as bof_train
from imagelearn.classify import DeepImageClassifier
from imagelearn.classify.runs import compare_transfer
from imagelearn.classify.runs import train_run as classify_train
from imagelearn.cli.main import build_parser, main
from imagelearn.cluster import ImageClusterer, fit_run
from imagelearn.core.bundle import BundleError
from imagelearn.core.errors import ImagelearnError, OutputExistsError
from imagelearn.retrieval import Index, IndexExistsError, IndexParams, build_index
from imagelearn.segment.reference_data import load_em_slice
from imagelearn.segment.runs import bof_train_run as segment_bof_train
from imagelearn.segment.runs import train_run as segment_train
from imagelearn.segment.samples import simulate_scribbles

pytestmark = pytest.mark.usefixtures("single_torch_thread")

BOF_CHANNELS = [{"detector": "dense_lab", "detector_params": {"step": 8}, "n_words": 8}]
SMALL_CNN = dict(backbone="small_cnn", mode="scratch", epochs=1, image_size=32, batch_size=8)
INDEX_PARAMS = IndexParams(
    max_keypoints=200,
    max_side=240,
    vocabulary_params={"branching": 8, "depth": 2, "n_iter": 4},
    train_images=12,
    train_descriptors_per_image=100,
    batch_size=8,
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Six flowers5 photos of each of two classes, in class folders."""
    root = tmp_path_factory.mktemp("photos")
    for name in ("daisy", "sunflower"):
        (root / name).mkdir()
        for path in sorted(data_path("flowers5", name).glob("*.jpg"))[:6]:
            shutil.copy(path, root / name / path.name)
    return root


@pytest.fixture(scope="module")
def hymenoptera(tmp_path_factory) -> Path:
    """A CSV of 6 hymenoptera training photos per class."""
    return hymenoptera_csv(tmp_path_factory.mktemp("sample"), 6)


@pytest.fixture(scope="module")
def em(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A crop of a real EM slice, scribbles on it and its dense labels (1, 2)."""
    image, truth = load_em_slice(data_path("em_membranes"), "3.png")
    image, truth = image[:96, :96, 0], truth[:96, :96]
    root = tmp_path_factory.mktemp("em")
    paths = root / "em.png", root / "scribbles.png", root / "truth.png"
    Image.fromarray(image).save(paths[0])
    Image.fromarray(simulate_scribbles(truth, 150).astype(np.uint8)).save(paths[1])
    Image.fromarray(truth.astype(np.uint8)).save(paths[2])
    return paths


def ukbench(n: int) -> list[str]:
    return sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:n]


#: name -> (the file a finished run has, the run: (fixtures, out, overwrite) -> anything)
RUNS: dict[str, tuple[str, Callable]] = {
    "bof train": (
        "manifest.json",
        lambda f, out, overwrite: bof_train(
            f["photos"], out, BofClassifier(channels=BOF_CHANNELS, n_jobs=1), overwrite=overwrite
        ),
    ),
    "bof sweep": (
        "sweep.json",
        lambda f, out, overwrite: sweep_vocabulary(
            f["photos"], out, [4], BOF_CHANNELS, n_jobs=1, overwrite=overwrite
        ),
    ),
    "classify train": (
        "manifest.json",
        lambda f, out, overwrite: classify_train(
            f["hymenoptera"],
            out,
            DeepImageClassifier(**SMALL_CNN, cache_dir="", checkpoint_dir=out),
            test_size=0.25,
            overwrite=overwrite,
        ),
    ),
    "transfer compare": (
        "transfer.json",
        lambda f, out, overwrite: compare_transfer(
            f["hymenoptera"],
            fractions=(1.0,),
            modes=("scratch",),
            epochs=1,
            image_size=32,
            backbone="small_cnn",
            test_size=0.25,
            out=out,
            cache_dir="",
            overwrite=overwrite,
        ),
    ),
    "cluster fit": (
        "summary.json",
        lambda f, out, overwrite: fit_run(
            f["photos"],
            out,
            descriptor="color",
            clusterer=ImageClusterer(n_clusters=2, pca_components=None),
            n_jobs=1,
            overwrite=overwrite,
        ),
    ),
    "segment train": (
        "manifest.json",
        lambda f, out, overwrite: segment_train(
            [f["em"][0]],
            [f["em"][1]],
            out,
            n_estimators=5,
            sigmas=(1,),
            n_jobs=1,
            overwrite=overwrite,
        ),
    ),
    "segment bof train": (
        "manifest.json",
        lambda f, out, overwrite: segment_bof_train(
            [f["em"][0]],
            [f["em"][2]],
            out,
            n_words=8,
            color_n_words=0,
            n_estimators=5,
            n_jobs=1,
            overwrite=overwrite,
        ),
    ),
    "index build": (
        "manifest.json",
        lambda f, out, overwrite: build_index(
            ukbench(12), out, INDEX_PARAMS, overwrite=overwrite, n_jobs=1
        ),
    ),
}


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``directory``: (inode, content); a rewrite changes the inode."""
    return {
        str(path.relative_to(directory)): (path.stat().st_ino, path.read_bytes())
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


@pytest.mark.parametrize("name", list(RUNS))
def test_a_finished_run_is_refused_without_overwrite_and_replaced_with_it(
    name, request, tmp_path
) -> None:
    marker, run = RUNS[name]
    fixtures = {key: request.getfixturevalue(key) for key in ("photos", "hymenoptera", "em")}
    out = tmp_path / "run"
    run(fixtures, out, False)
    assert (out / marker).is_file()
    first = snapshot(out)
    with pytest.raises(OutputExistsError) as refused:
        run(fixtures, out, False)
    error = refused.value
    assert isinstance(error, ImagelearnError) and isinstance(error, FileExistsError)
    assert error.parameter == "overwrite" and error.directory == out
    assert "already there" in str(error) and "--" not in str(error)
    assert snapshot(out) == first  # nothing written, nothing deleted
    run(fixtures, out, True)
    assert (out / marker).stat().st_ino != first[marker][0]
    assert [path.name for path in tmp_path.iterdir()] == ["run"]  # no staging left beside


def test_index_exists_error_is_the_general_one(tmp_path) -> None:
    error = IndexExistsError(tmp_path)
    assert isinstance(error, OutputExistsError) and isinstance(error, BundleError)
    assert "an index is already there" in str(error)


@pytest.mark.parametrize(
    "command",
    [
        ["bof", "train"],
        ["bof", "sweep"],
        ["classify", "train"],
        ["transfer", "compare"],
        ["cluster", "fit"],
        ["segment", "train"],
        ["segment", "bof", "train"],
        ["index", "build"],
    ],
)
def test_every_command_writing_a_run_has_the_overwrite_flag(command, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    assert "--overwrite" in capsys.readouterr().out


def test_the_cli_refuses_a_finished_run_naming_the_flag(photos, tmp_path, capsys) -> None:
    out = tmp_path / "clusters"
    command = ["cluster", "fit", str(photos), "--out", str(out), "--descriptor", "color"]
    command += ["--n-clusters", "2", "--n-jobs", "1"]
    assert main(command) == 0
    capsys.readouterr()
    assert main(command) == 2
    message = capsys.readouterr().err
    assert "already there" in message and "(--overwrite)" in message
    assert main([*command, "--overwrite"]) == 0


#: Runs in a child process: replace the index in argv[1], killed the instant before the swap.
REBUILD_CHILD = """
import json, os, sys
from imagelearn.retrieval import IndexParams, build_index, writer

def killed(staging, destination):
    os._exit(17)

writer.replace_directory = killed
params = IndexParams(**json.loads(sys.argv[2]))
build_index(sys.argv[3:], sys.argv[1], params, overwrite=True, n_jobs=1)
"""


def test_replacing_an_index_keeps_the_old_one_whole_until_the_new_one_is_in(tmp_path) -> None:
    out = tmp_path / "index"
    paths = ukbench(12)
    build_index(paths[:8], out, INDEX_PARAMS, n_jobs=1)
    source = str(Path(imagelearn.__file__).parents[1])
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([source, *sys.path])}
    child = subprocess.run(
        [sys.executable, "-c", REBUILD_CHILD, str(out), json.dumps(INDEX_PARAMS.to_dict()), *paths],
        env=environment,
        timeout=300,
    )
    assert child.returncode == 17
    index = Index.open(out)
    assert index.n_images == 8 and index.search(paths[0], top=1).matches[0].path == paths[0]
    assert any(p.name.startswith(".index.staging-") for p in tmp_path.iterdir())
    build_index(paths, out, INDEX_PARAMS, overwrite=True, n_jobs=1)
    assert Index.open(out).n_images == 12
    assert [p.name for p in tmp_path.iterdir()] == ["index"]
