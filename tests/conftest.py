"""Shared fixtures: where the real data lives, and small synthetic images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# before any test module imports FAISS: imagelearn chooses the BLAS kernels FAISS loads with
import imagelearn  # noqa: F401

os.environ.setdefault("IMAGELEARN_QUIET", "1")

DATA_ROOT = Path(
    os.environ.get(
        "IMAGELEARN_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


def data_path(*parts: str) -> Path:
    """A path under the shared real data; skips the test with a reason when it is absent."""
    path = DATA_ROOT.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set IMAGELEARN_DATA)")
    return path


def hymenoptera_csv(folder: Path, per_class: int) -> Path:
    """A ``path,label`` CSV in ``folder`` of the first ``per_class`` hymenoptera training photos
    of each class (ants, bees); skips the test when the real data is absent."""
    import csv

    root = data_path("hymenoptera", "train")
    path = folder / "sample.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label"])
        for label in ("ants", "bees"):
            for image in sorted((root / label).glob("*.jpg"))[:per_class]:
                writer.writerow([str(image), label])
    return path


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory) -> Path:
    """Feature and embedding caches in a per-run folder, so tests neither reuse nor fill ~/.cache."""
    root = tmp_path_factory.mktemp("imagelearn-cache")
    previous = os.environ.get("IMAGELEARN_CACHE")
    os.environ["IMAGELEARN_CACHE"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("IMAGELEARN_CACHE", None)
    else:
        os.environ["IMAGELEARN_CACHE"] = previous


@pytest.fixture(scope="module")
def single_torch_thread():
    """PyTorch on one thread: on small test workloads thread synchronisation costs more than it gains."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def make_image(tmp_path: Path):
    """Write an image built from an array; returns its path."""

    def write(name: str, array: np.ndarray, **save_options) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path, **save_options)
        return path

    return write
