"""Embeddings and their on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import data_path
from imagelearn.classify import DeepImageClassifier, build_backbone, embed, gem_pool, runtime
from imagelearn.classify.embeddings import PooledBackbone, compute_embeddings, default_cache_dir
from imagelearn.classify.runtime import OnnxNetwork, export_key
from imagelearn.cluster.descriptors import cnn_descriptors
from imagelearn.core.errors import ParameterError
from imagelearn.core.images import ImageReadError

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def small_backbone():
    torch.manual_seed(0)
    return build_backbone("small_cnn", "none")


@pytest.fixture
def images(make_image, rng) -> list[Path]:
    return [
        make_image(f"img{i}.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
        for i in range(5)
    ]


def test_second_pass_reads_the_cache_and_gives_the_same_vectors(
    small_backbone, images, tmp_path: Path
) -> None:
    first = compute_embeddings(small_backbone, images, cache_dir=tmp_path / "cache")
    second = compute_embeddings(small_backbone, images, cache_dir=tmp_path / "cache")
    assert first.n_computed == 5 and second.n_computed == 0
    assert (
        first.vectors.shape == (5, small_backbone.num_features)
        and first.vectors.dtype == np.float32
    )
    np.testing.assert_array_equal(first.vectors, second.vectors)


def test_cache_key_follows_content_and_preprocessing(
    small_backbone, images, tmp_path: Path, rng
) -> None:
    cache = tmp_path / "cache"
    compute_embeddings(small_backbone, images, cache_dir=cache)
    resized = compute_embeddings(
        small_backbone, images, small_backbone.preprocessing.with_crop_size(32), cache_dir=cache
    )
    assert resized.n_computed == 5
    images[0].write_bytes(images[1].read_bytes())  # same name, new content
    again = compute_embeddings(small_backbone, images, cache_dir=cache)
    assert again.n_computed == 0  # that content is cached under the other file
    np.testing.assert_array_equal(again.vectors[0], again.vectors[1])


def test_unreadable_images_are_skipped_and_named_or_raise_when_strict(
    small_backbone, images, tmp_path: Path
) -> None:
    corrupt = data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")
    listed = [images[0], corrupt, tmp_path / "missing.jpg", images[1]]
    result = compute_embeddings(small_backbone, listed, cache_dir="")
    assert result.kept.tolist() == [0, 3]
    assert [path for path, _ in result.failures] == [str(corrupt), str(tmp_path / "missing.jpg")]
    with pytest.raises(ImageReadError, match=r"ukbench09268_corrupt\.jpg"):
        compute_embeddings(small_backbone, listed, cache_dir="", strict=True)


def test_embed_accepts_arrays_and_gem_pooling(small_backbone, rng, tmp_path: Path) -> None:
    arrays = [
        rng.integers(0, 256, (30, 30), dtype=np.uint8),
        rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
    ]
    average = embed(arrays, small_backbone, cache_dir=tmp_path)
    gem = embed(arrays, small_backbone, pooling="gem", cache_dir=tmp_path)
    assert average.shape == gem.shape == (2, small_backbone.num_features)
    assert not np.allclose(average, gem)
    feature_map = torch.rand(2, 4, 3, 3) + 0.1
    torch.testing.assert_close(gem_pool(feature_map, p=1.0), feature_map.mean(dim=(2, 3)))
    assert torch.all(
        gem_pool(feature_map, p=3.0) >= feature_map.mean(dim=(2, 3)) - 1e-6
    )  # power-mean inequality


def test_onnx_runtime_and_pytorch_give_the_same_embeddings(small_backbone, images) -> None:
    onnx = compute_embeddings(small_backbone, images, cache_dir="", backend="onnx")
    eager = compute_embeddings(small_backbone, images, cache_dir="", backend="torch")
    np.testing.assert_allclose(onnx.vectors, eager.vectors, rtol=1e-4, atol=1e-5)


def test_the_onnx_export_is_kept_on_disk_and_not_redone(
    small_backbone, images, monkeypatch
) -> None:
    compute_embeddings(small_backbone, images[:1], cache_dir="", backend="onnx")
    key = export_key(PooledBackbone(small_backbone, "avg"))
    assert (default_cache_dir() / "networks" / f"{key}.onnx").is_file()

    def refuse(*args, **kwargs) -> None:
        raise AssertionError("exported again although the export is cached")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    monkeypatch.setattr(runtime, "_sessions", {})  # a new process: only the disk copy is left
    again = compute_embeddings(small_backbone, images, cache_dir="", backend="onnx")
    assert again.n_computed == 5


def test_auto_exports_a_new_network_only_for_enough_images(small_backbone, tmp_path) -> None:
    network = PooledBackbone(small_backbone, "gem")
    assert runtime.inference_engine("auto", network, 5, tmp_path) == "torch"
    assert runtime.inference_engine("auto", network, runtime.EXPORT_MIN_IMAGES, None) == "onnx"
    OnnxNetwork(network.eval(), tmp_path).export(export_key(network))  # written there
    assert runtime.inference_engine("auto", network, 1, tmp_path) == "onnx"  # exported: reused


def test_auto_backend_falls_back_to_pytorch_without_onnx_runtime(monkeypatch) -> None:
    cpu = torch.device("cpu")
    assert runtime.resolve_backend("auto", torch.device("cuda")) == "torch"
    monkeypatch.setattr(runtime, "onnx_available", lambda: False)
    assert runtime.resolve_backend("auto", cpu) == "torch"
    with pytest.raises(ParameterError, match="ONNX Runtime"):
        runtime.resolve_backend("onnx", cpu)
    with pytest.raises(ParameterError, match="tensorrt") as error:
        runtime.resolve_backend("tensorrt", cpu)
    assert error.value.parameter == "backend"


def test_cluster_after_classify_train_reads_the_embeddings_back(tmp_path: Path) -> None:
    """One cache key for the frozen features of classify and the cnn descriptors of cluster."""
    sample = Path(__file__).resolve().parents[1] / "examples" / "flowers5_sample"
    paths = sorted(sample.glob("daisy/*.jpg"))[:3] + sorted(sample.glob("rose/*.jpg"))[:3]
    if len(paths) < 6:
        pytest.skip("examples/flowers5_sample is missing")
    classifier = DeepImageClassifier(mode="features", epochs=1, cache_dir=tmp_path)
    classifier.fit(paths, [0, 0, 0, 1, 1, 1])
    descriptors = cnn_descriptors(paths, cache_dir=tmp_path)
    assert descriptors.n_computed == 0 and descriptors.vectors.shape == (6, 1280)
    assert [folder.name for folder in tmp_path.iterdir()] == [
        "mobilenet_v2-mobilenet_v2-b0353104.pth-last-avg-crop224-"
        + classifier.preprocessing_.fingerprint()
    ]
