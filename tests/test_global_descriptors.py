"""GeM descriptors: one GeM (classify's ``gem_pool``), batched and cached like other embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imagelearn.core.images import ImageReadError
from imagelearn.retrieval.global_descriptors import GeMDescriptor

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flowers5_sample"

pytestmark = pytest.mark.skipif(not SAMPLE.is_dir(), reason="examples/flowers5_sample is missing")


@pytest.fixture(scope="module")
def images() -> list[Path]:
    """Real photos of several sizes and aspect ratios (so batches hold several shapes)."""
    return sorted(SAMPLE.rglob("*.jpg"))[:6]


def test_batched_descriptors_equal_one_image_at_a_time(images, tmp_path):
    batched = GeMDescriptor(max_side=128, batch_size=4, cache_dir="").transform(images)
    single = GeMDescriptor(max_side=128, batch_size=1, cache_dir="").transform(images)
    assert batched.shape == (6, 1280) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_a_second_pass_reads_the_cache_without_running_the_network(images, tmp_path):
    descriptor = GeMDescriptor(max_side=128, cache_dir=tmp_path)
    first = descriptor.transform(images)

    def refuse(batch: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the network ran although every descriptor is cached")

    descriptor._network().forward_features = refuse
    np.testing.assert_array_equal(descriptor.transform(images), first)
    other_side = GeMDescriptor(max_side=96, cache_dir=tmp_path)
    assert other_side.transform(images[:1]).shape == (1, 1280)  # another key: computed


def test_unreadable_images_raise_naming_the_file(images, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        GeMDescriptor(max_side=64, cache_dir="").transform([images[0], broken])


def test_onnx_runtime_and_pytorch_give_the_same_descriptors(images):
    onnx = GeMDescriptor(max_side=128, cache_dir="", backend="onnx").transform(images)
    eager = GeMDescriptor(max_side=128, cache_dir="", backend="torch").transform(images)
    np.testing.assert_allclose(onnx, eager, atol=1e-5)


def test_images_of_one_shape_after_the_resize_share_a_network_call():
    """Landscape and portrait images in turn, three per batch: sorted by their resized shape,
    they take one network call per shape instead of one per image."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (48, 64) if i % 2 else (64, 48), np.uint8) for i in range(6)]
    arrays = [np.repeat(array[..., None], 3, axis=2) for array in arrays]
    descriptor = GeMDescriptor(max_side=64, batch_size=3, cache_dir="", backend="torch")
    network = descriptor._network()
    shapes: list[tuple[int, ...]] = []
    features = network.forward_features

    def counted(batch: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(batch.shape))
        return features(batch)

    network.forward_features = counted
    together = descriptor.transform(arrays)
    assert shapes == [(3, 3, 48, 64), (3, 3, 64, 48)]
    alone = np.vstack([descriptor.transform([array]) for array in arrays])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # and in input order


def test_a_kept_descriptor_reuses_its_onnx_session_query_after_query(images, monkeypatch):
    """Describing one query after another costs no weight hashing or session look-up."""
    from imagelearn.classify import runtime

    descriptor = GeMDescriptor(max_side=64, cache_dir="", backend="onnx")
    first = descriptor.transform(images[:1])

    def refuse(network) -> str:
        raise AssertionError("the weights were hashed again for a kept network")

    monkeypatch.setattr(runtime, "export_key", refuse)
    np.testing.assert_array_equal(descriptor.transform(images[:1]), first)
    assert descriptor.transform(images[1:2]).shape == (1, 1280)


def test_the_resize_is_pytorchs_antialiased_bilinear(images):
    """Pillow's float resampling is the filter PyTorch's antialiased interpolate was ported from:
    shrinking and enlarging agree to 1e-5 (pixels in [0, 1])."""
    from torch.nn import functional

    from imagelearn.core.images import load_image
    from imagelearn.retrieval.global_descriptors import _resize_longer_side

    pixels = load_image(images[0], "RGB").astype(np.float32) / 255
    for side in (48, 96, 2 * max(pixels.shape)):
        resized = _resize_longer_side(pixels, side)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        expected = functional.interpolate(
            tensor, size=resized.shape[1:], mode="bilinear", antialias=True, align_corners=False
        )[0].numpy()
        assert max(resized.shape[1:]) == side
        np.testing.assert_allclose(resized, expected, atol=1e-5)


def test_one_query_runs_the_recorded_export_without_the_network(images, monkeypatch):
    """Once a transform on ONNX Runtime exported the network, another descriptor describes one
    image from the export alone (PyTorch's network is never built), with the same result."""
    expected = GeMDescriptor(max_side=96, cache_dir="", backend="onnx").transform(images[:3])
    query = GeMDescriptor(max_side=96, cache_dir="")

    def refuse(*arguments):
        raise AssertionError("the network was built for a query with a recorded export")

    monkeypatch.setattr(query, "_network", refuse)
    described = np.vstack([query.describe(image) for image in images[:3]])
    np.testing.assert_allclose(described, expected, atol=1e-6)


def test_without_a_usable_record_one_query_goes_through_transform(images, tmp_path, monkeypatch):
    from imagelearn.classify import sessions

    monkeypatch.setattr(sessions, "export_folder", lambda: tmp_path)
    monkeypatch.setattr("imagelearn.retrieval.global_descriptors.export_folder", lambda: tmp_path)
    (tmp_path / "mobilenet_v2-imagenet-gem3.json").write_text('{"export": "../../etc/passwd"}')
    descriptor = GeMDescriptor(max_side=64, cache_dir="", backend="torch")
    assert descriptor._read_record() is None
    np.testing.assert_allclose(
        descriptor.describe(images[0]), descriptor.transform(images[:1]), atol=1e-6
    )
