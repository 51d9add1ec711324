"""Fuzzing the readers of untrusted files: images, sample files and saved-model manifests.

The invariant, for every input under 1 MB: the reader returns a result or raises the package's
own error type (:class:`~imagelearn.core.errors.ImagelearnError`), never anything else, and
its peak of traced memory (Python objects and NumPy arrays, measured with :mod:`tracemalloc`)
stays under :data:`MEMORY_BOUND`. Inputs are real files (a photo in every format the package
reads, label images, GeoJSON and CSV samples, the manifests of real saved models) broken by
hypothesis: truncated, bit-flipped, header bytes overwritten, image sizes forged, JSON values
replaced, or random bytes. Runs are derandomized (the same examples every run) and bounded by
``max_examples``. Every input that once broke the invariant is kept in ``fuzz_corpus/`` and
replayed by :func:`test_the_corpus_of_former_failures_keeps_the_invariant`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import data_path
from imagelearn.core.bundle import MANIFEST_NAME, load_bundle, read_manifest
from imagelearn.core.errors import ImagelearnError
from imagelearn.core.images import load_image
from imagelearn.segment.raster import read_raster
from imagelearn.segment.samples import read_samples

# Decoders warn about the broken files they are fed; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")

#: The most memory one read of an input under 1 MB may trace.
MEMORY_BOUND = 256 * 2**20
#: The image every sample file of the fuzz belongs to, (H, W).
SAMPLE_SHAPE = (20, 30)
CORPUS = Path(__file__).parent / "fuzz_corpus"

#: Examples per fuzz test: a few hundred in ``make test``; set IMAGELEARN_FUZZ_EXAMPLES to
#: search longer (new examples, still derandomized).
N_EXAMPLES = int(os.environ.get("IMAGELEARN_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=N_EXAMPLES,
    deadline=2000,  # ms per example
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- the invariant


def keeps_the_invariant(read: Callable[[Path], Any], path: Path) -> None:
    """``read(path)`` returns or raises an ImagelearnError, within :data:`MEMORY_BOUND`."""
    tracemalloc.start()
    try:
        read(path)
    except ImagelearnError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{path}: {peak / 2**20:.0f} MB traced"


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="imagelearn-fuzz-") as directory:
        yield Path(directory)


def _written(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- mutations of bytes


def _fix_png_crcs(data: bytearray) -> None:
    """Recompute the CRC of every whole PNG chunk, so a decoder reads what was edited."""
    position = 8
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        end = position + 8 + length
        if end + 4 > len(data):
            return
        data[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(data[position + 4 : end])))
        position = end + 4


@st.composite
def broken_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` truncated, bit-flipped, with header bytes or image sizes overwritten, or random."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "header", "size", "random"]))
        if kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "flip" and data:
            for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
                data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "header" and data:
            start = draw(st.integers(0, min(len(data), 64) - 1))
            data[start : start + 8] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "size" and data[:4] == b"\x89PNG":
            data[16:24] = struct.pack(">II", *draw(st.tuples(*[st.integers(0, 2**31 - 1)] * 2)))
        elif kind == "random":
            data = bytearray(draw(st.binary(max_size=2048)))
        if data[:4] == b"\x89PNG":
            _fix_png_crcs(data)
    return bytes(data)


# ---------------------------------------------------------------- real seeds


@cache
def image_seeds() -> dict[str, bytes]:
    """A real photo, small, in every format the package reads (suffix -> file bytes)."""
    photo = Image.open(sorted(data_path("flowers5", "daisy").glob("*.jpg"))[0]).convert("RGB")
    photo = photo.resize((24, 18))
    variants = {
        ".png": (photo, {}),
        ".jpg": (photo, {"quality": 80}),
        ".gif": (photo.quantize(16), {}),
        ".tif": (photo, {}),
        ".webp": (photo, {"quality": 70}),
        ".bmp": (photo, {}),
        ".pgm": (photo.convert("L"), {}),
    }
    seeds = {}
    for suffix, (image, options) in variants.items():
        buffer = io.BytesIO()
        image.save(buffer, Image.registered_extensions()[suffix], **options)
        seeds[suffix] = buffer.getvalue()
    deep = io.BytesIO()
    Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257).save(deep, "PNG")
    seeds[".16bit.png"] = deep.getvalue()
    return seeds


def _label_truth() -> np.ndarray:
    """Labels 0..2 of a real image: the photo's gray levels in three bands, SAMPLE_SHAPE."""
    gray = np.asarray(Image.open(io.BytesIO(image_seeds()[".png"])).convert("L").resize((30, 20)))
    return np.digitize(gray, [85, 170]).astype(np.uint8)


@cache
def sample_seeds() -> dict[str, bytes]:
    """Real sample files for an image of SAMPLE_SHAPE: label PNG/TIFF, GeoJSON, CSV."""
    truth = _label_truth()
    seeds = {}
    for suffix, image in ((".png", Image.fromarray(truth)), (".tif", Image.fromarray(truth))):
        buffer = io.BytesIO()
        image.save(buffer, Image.registered_extensions()[suffix])
        seeds[suffix] = buffer.getvalue()
    features = [
        {
            "type": "Feature",
            "properties": {"class": "water"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[1, 1], [12, 1], [12, 9], [1, 9], [1, 1]],
                    [[3, 3], [4, 3], [4, 4]],
                ],
            },
        },
        {
            "type": "Feature",
            "properties": {"class": 2},
            "geometry": {"type": "MultiPoint", "coordinates": [[20, 15], [29.5, 19.5]]},
        },
    ]
    seeds[".geojson"] = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    seeds[".csv"] = b"x,y,class\n1,2,water\n10.5,3,land\n29,19,2\n"
    return seeds


def _read_samples(path: Path) -> Any:
    return read_samples(path, SAMPLE_SHAPE)


@cache
def saved_models() -> dict[str, Path]:
    """Real small models saved once: estimator class name -> bundle directory."""
    from imagelearn.bof.vocabulary.flat import KMeansVocabulary
    from imagelearn.segment.cluster import PixelClusterer
    from imagelearn.tracking.tracker import ObjectTracker

    root = Path(tempfile.mkdtemp(prefix="imagelearn-fuzz-models-"))
    photo = load_image(data_path("multiview", "opencv", "box.png"))
    tracker = ObjectTracker(min_inliers=8).fit(photo)
    descriptors = tracker.object_features_.descriptors.astype(np.float32)
    models = {
        "ObjectTracker": tracker,
        "KMeansVocabulary": KMeansVocabulary(n_words=8, n_iter=3, n_jobs=1).fit(descriptors),
        "PixelClusterer": PixelClusterer(n_clusters=3, random_state=0).fit(photo[:48, :48]),
    }
    return {name: model.save(root / name) for name, model in models.items()}


def _model_class(name: str) -> type:
    from imagelearn.estimators import estimator_class

    return estimator_class(name)


def load_model_with_manifest(name: str, manifest: bytes, folder: Path) -> None:
    """Copy the saved ``name`` model into ``folder`` with ``manifest``, then read it every way."""
    bundle = folder / name
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(saved_models()[name], bundle)
    (bundle / MANIFEST_NAME).write_bytes(manifest)
    for read in (read_manifest, load_bundle, _model_class(name).load):
        keeps_the_invariant(read, bundle)


# ---------------------------------------------------------------- JSON mutations

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """The path (keys and indices) of every node of a JSON value."""
    yield prefix
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@st.composite
def edited_json(draw: st.DrawFn, seed: Any) -> bytes:
    """``seed`` with a few nodes replaced by other JSON values or removed, or broken as bytes."""
    document = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(document))))
        if not path:
            document = draw(json_values)
            continue
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        else:
            del parent[path[-1]]
    text = json.dumps(document).encode()
    return draw(broken_bytes(text)) if draw(st.integers(0, 4)) == 0 else text


# ---------------------------------------------------------------- the fuzz tests


@FUZZ
@given(data=st.data())
def test_the_image_readers_keep_the_invariant(scratch, data):
    suffix = data.draw(st.sampled_from(sorted(image_seeds())), label="seed")
    broken = data.draw(broken_bytes(image_seeds()[suffix]), label="bytes")
    name_suffix = data.draw(st.sampled_from([suffix.split(".")[-1], "jpg", "tif", "png"]))
    path = _written(scratch, f"image.{name_suffix}", broken)
    keeps_the_invariant(load_image, path)
    keeps_the_invariant(read_raster, path)


@FUZZ
@given(data=st.data())
def test_the_sample_readers_keep_the_invariant(scratch, data):
    suffix = data.draw(st.sampled_from(sorted(sample_seeds())), label="seed")
    seed = sample_seeds()[suffix]
    if suffix == ".geojson":
        broken = data.draw(edited_json(json.loads(seed)), label="json")
    else:
        broken = data.draw(broken_bytes(seed), label="bytes")
    keeps_the_invariant(_read_samples, _written(scratch, f"samples{suffix}", broken))


@settings(FUZZ, max_examples=max(1, N_EXAMPLES // 2))
@given(data=st.data())
def test_the_manifest_readers_keep_the_invariant(scratch, data):
    name = data.draw(st.sampled_from(sorted(saved_models())), label="model")
    seed = json.loads((saved_models()[name] / MANIFEST_NAME).read_text(encoding="utf-8"))
    load_model_with_manifest(name, data.draw(edited_json(seed), label="manifest"), scratch)


# ---------------------------------------------------------------- the corpus


def _corpus_cases() -> list[Any]:
    cases = []
    for path in sorted(CORPUS.glob("*/*")):
        cases.append(pytest.param(path, id=f"{path.parent.name}/{path.name}"))
    return cases


@pytest.mark.parametrize("path", _corpus_cases())
def test_the_corpus_of_former_failures_keeps_the_invariant(path, tmp_path):
    """``images/`` files go to the image readers, ``samples/`` files to ``read_samples`` (for
    an image of SAMPLE_SHAPE), ``manifests/MODEL-*.json`` into a saved MODEL's bundle."""
    kind = path.parent.name
    if kind == "images":
        keeps_the_invariant(load_image, path)
        keeps_the_invariant(read_raster, path)
    elif kind == "samples":
        keeps_the_invariant(_read_samples, path)
    elif kind == "manifests":
        load_model_with_manifest(path.name.split("-")[0], path.read_bytes(), tmp_path)
    else:
        pytest.fail(f"{path}: unknown corpus folder {kind!r}")
