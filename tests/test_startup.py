"""Start-up: the heavy libraries are imported only where they are used.

Checked in a fresh interpreter through ``sys.modules`` (other tests have imported everything
into this one), so the checks hold however loaded the machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import data_path

#: Libraries that take a noticeable part of a second (or several) to import.
HEAVY = (
    "torch",
    "torchvision",
    "onnxruntime",
    "faiss",
    "cv2",
    "sklearn",
    "scipy",
    "matplotlib",
    "ray",
)
#: The deep-learning runtimes, imported only once a network runs.
DEEP = ("torch", "torchvision", "onnxruntime")
#: What a search never imports: scikit-learn (and SciPy's statistics, which it pulls in, 2 s
#: together), PyTorch.
NOT_FOR_SEARCH = ("sklearn", "scipy.stats", "torch", "torchvision")


def loaded_modules(code: str, names: tuple[str, ...] = HEAVY) -> set[str]:
    """The modules of ``names`` loaded once ``code`` has run in a fresh interpreter."""
    report = f"import json, sys; print(json.dumps(sorted(set({names!r}) & set(sys.modules))))"
    completed = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return set(json.loads(completed.stdout.splitlines()[-1]))


def test_the_help_of_every_command_imports_no_heavy_library():
    code = "\n".join(
        [
            "import contextlib, io",
            "from imagelearn.cli.main import build_parser, main",
            "build_parser().format_help()",
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):",
            "    main(['index', 'search', '--help'])",
        ]
    )
    assert loaded_modules(code) == set()


def test_importing_the_packages_imports_no_deep_learning_library():
    packages = ("bof", "classify", "cluster", "data", "evaluation", "features", "retrieval")
    code = "\n".join(f"import imagelearn.{name}" for name in packages)
    assert loaded_modules(code) == set()
    assert not loaded_modules("from imagelearn.retrieval import Index, IndexParams") & set(DEEP)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> tuple[dict[str, Path], str]:
    """A local-only index of 12 UKBench photos and, where the ImageNet weights are here, one
    with global descriptors whose network is exported (as a build of 32 images or more leaves
    it); and a query photo."""
    from imagelearn.retrieval import IndexParams, build_index
    from imagelearn.retrieval.runs import imagenet_weights_available

    paths = sorted(str(p) for p in data_path("ukbench").glob("ukbench*.jpg"))[:12]
    root = tmp_path_factory.mktemp("startup")
    params = IndexParams(
        max_keypoints=200,
        max_side=320,
        vocabulary_params={"branching": 8, "depth": 2, "n_iter": 3},
        train_descriptors_per_image=100,
        global_max_side=128,
    )
    built = {"local": root / "local"}
    build_index(paths, built["local"], params, n_jobs=1)
    if imagenet_weights_available(params.global_backbone):
        from imagelearn.retrieval.global_descriptors import GeMDescriptor

        GeMDescriptor(max_side=128, cache_dir="", backend="onnx").transform(paths[:1])
        built["global"] = root / "global"
        build_index(paths, built["global"], replace(params, global_descriptor=True), n_jobs=1)
    return built, paths[5]


def search_code(index: Path, query: str) -> str:
    """``imagelearn index search INDEX QUERY --json``, checking that the query ranks first."""
    return "\n".join(
        [
            "import contextlib, io, json",
            "from imagelearn.cli.main import main",
            "with contextlib.redirect_stdout(io.StringIO()) as output:",
            f"    assert main(['index', 'search', {str(index)!r}, {query!r}, '--json']) == 0",
            "result = json.loads(output.getvalue())",
            f"assert result['results'][0]['path'] == {query!r}, result",
        ]
    )


def test_a_local_search_imports_neither_scikit_learn_nor_a_network_runtime(indexes):
    built, query = indexes
    names = (*NOT_FOR_SEARCH, "onnxruntime", "faiss", "cv2")
    assert loaded_modules(search_code(built["local"], query), names) == {"faiss", "cv2"}


def test_a_hybrid_search_runs_the_exported_network_without_pytorch(indexes):
    built, query = indexes
    if "global" not in built:
        pytest.skip("no ImageNet weights for mobilenet_v2 on this machine")
    names = (*NOT_FOR_SEARCH, "onnxruntime")
    assert loaded_modules(search_code(built["global"], query), names) == {"onnxruntime"}
