"""Training modes, checkpoints and resume, init from a source model, Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import data_path
from imagelearn.classify import DeepImageClassifier
from imagelearn.classify.training import EpochLoop, recalibrate_batch_norm
from imagelearn.classify.weights import build_backbone
from imagelearn.data.dataset import DatasetError
from imagelearn.data.idx import load_fashion_mnist, read_idx

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def striped_images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images; class 1 has a bright vertical bar. Shape (n, 32, 32, 3) uint8, labels (n,)."""
    labels = np.arange(n) % 2
    images = rng.integers(0, 120, (n, 32, 32, 3), dtype=np.uint8)
    images[labels == 1, :, 12:20] = 250
    return images, labels


def small_model(**params) -> DeepImageClassifier:
    defaults = dict(
        backbone="small_cnn",
        mode="scratch",
        epochs=3,
        image_size=32,
        batch_size=8,
        patience=0,
        cache_dir="",
    )
    return DeepImageClassifier(**(defaults | params))


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(
    rng, tmp_path: Path, monkeypatch
) -> None:
    images, labels = striped_images(rng, 24)
    straight = small_model(checkpoint_dir=tmp_path / "straight").fit(
        images, labels, validation=(images, labels)
    )
    original_epoch = EpochLoop._epoch

    def crash_at_third_epoch(self, epoch, random_state):
        if epoch == 2:
            raise KeyboardInterrupt
        return original_epoch(self, epoch, random_state)

    monkeypatch.setattr(EpochLoop, "_epoch", crash_at_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        small_model(checkpoint_dir=tmp_path / "run").fit(
            images, labels, validation=(images, labels)
        )
    monkeypatch.setattr(EpochLoop, "_epoch", original_epoch)
    resumed = small_model(checkpoint_dir=tmp_path / "run", resume=True).fit(
        images, labels, validation=(images, labels)
    )
    assert [row["epoch"] for row in resumed.history_] == [1, 2, 3]
    for name, tensor in straight.network_.state_dict().items():
        torch.testing.assert_close(resumed.network_.state_dict()[name], tensor, msg=name)
    with pytest.raises(ValueError, match="different run"):
        small_model(checkpoint_dir=tmp_path / "run", resume=True, epochs=5).fit(images, labels)


def test_scratch_learns_a_visible_pattern(rng) -> None:
    images, labels = striped_images(rng, 48)
    model = small_model(epochs=4, learning_rate=3e-3).fit(
        images[:32], labels[:32], validation=(images[32:], labels[32:])
    )
    assert model.score(images[32:], labels[32:]) >= 0.9
    assert {"loss", "train_accuracy", "val_accuracy", "seconds"} <= set(model.history_[0])


def test_recalibrated_batch_norm_matches_the_batch_statistics_of_real_photos() -> None:
    """A MobileNetV2 from random weights, in eval mode, gives the same features as in training
    mode (batch statistics) once recalibrated: what keeps a ``scratch`` network trained for a few
    steps from predicting one class for every image (measured on the demo's sample before this:
    0.200 = chance after 3-12 epochs; after: 0.29 -> 0.46 in 8 epochs, see demo.py)."""
    backbone = build_backbone("mobilenet_v2", "none")
    preprocessing = backbone.preprocessing.with_crop_size(64)
    photos = sorted(data_path("flowers5", "daisy").glob("*.jpg"))[:8]
    photos += sorted(data_path("flowers5", "sunflower").glob("*.jpg"))[:8]
    batch = torch.stack([preprocessing.evaluate(preprocessing.load(path)) for path in photos])
    with torch.no_grad():
        training_mode = backbone.train()(batch)
        stale = backbone.eval()(batch)  # initial running statistics: mean 0, variance 1
        recalibrate_batch_norm(backbone, [batch])
        assert not backbone.training, "the module's mode is kept"
        calibrated = backbone(batch)

    def error(features: torch.Tensor) -> float:
        return float((features - training_mode).norm() / training_mode.norm())

    # measured 0.96 and 0.14; the rest is the unbiased variance (n / (n - 1)) of the last,
    # 2 x 2 feature maps, compounded through the network's 52 batch-norm layers
    assert error(stale) > 0.5
    assert error(calibrated) < 0.25
    assert {layer.momentum for layer in backbone.modules() if hasattr(layer, "momentum")} == {0.1}


def test_finetune_trains_only_the_top_stages_and_the_head(rng, tmp_path: Path) -> None:
    images, labels = striped_images(rng, 24)
    torch.manual_seed(0)
    source = small_model(epochs=1).fit(images, labels)
    source.save(tmp_path / "source")
    model = small_model(
        mode="finetune", init=tmp_path / "source", epochs=2, head_epochs=2, unfreeze=0.5
    )
    model.fit(images, labels, validation=(images, labels))
    before = source.network_.backbone.stages()
    after = model.network_.backbone.stages()
    for index in (0, 1):  # frozen: bottom half, batch-norm statistics included
        for name, tensor in before[index].state_dict().items():
            torch.testing.assert_close(after[index].state_dict()[name], tensor)
    assert not torch.equal(after[3][0].weight, before[3][0].weight)
    assert [row["phase"] for row in model.history_] == ["head", "head", "finetune", "finetune"]
    assert [row["epoch"] for row in model.history_] == [1, 2, 3, 4]


def test_init_reuses_the_source_backbone_in_features_mode(rng, tmp_path: Path) -> None:
    images, labels = striped_images(rng, 16)
    source = small_model(epochs=1).fit(images, labels)
    source.save(tmp_path / "source")
    target = small_model(mode="features", init=tmp_path / "source", epochs=2).fit(
        images, 1 - labels
    )
    for name, tensor in source.network_.backbone.state_dict().items():
        torch.testing.assert_close(target.network_.backbone.state_dict()[name], tensor)


def test_a_frozen_features_head_learns_from_a_dozen_photos_in_one_epoch() -> None:
    root = data_path("flowers5")
    photos = [sorted((root / name).glob("*.jpg")) for name in ("daisy", "sunflower")]
    train = [path for paths in photos for path in paths[:6]]
    held_out = [path for paths in photos for path in paths[6:26]]
    model = DeepImageClassifier(
        mode="features", epochs=1, image_size=96, patience=0, random_state=0
    )
    model.fit(train, [0] * 6 + [1] * 6, validation=(held_out, [0] * 20 + [1] * 20))
    # measured 0.75; a head given one optimiser step for its one batch scored 0.55
    assert model.history_[-1]["val_accuracy"] >= 0.7


def test_unreadable_training_images_are_a_clear_error(tmp_path: Path) -> None:
    broken = []
    for index in range(4):
        path = tmp_path / f"broken{index}.jpg"
        path.write_bytes(b"not an image")
        broken.append(path)
    for mode in ("features", "scratch"):
        with pytest.raises(ValueError, match=r"only 0 of 4 training images .*broken0\.jpg"):
            small_model(mode=mode, weights="none" if mode == "features" else None).fit(
                broken, [0, 1, 0, 1]
            )


def test_contradictory_settings_are_clear_errors(rng, tmp_path: Path) -> None:
    images, labels = striped_images(rng, 8)
    with pytest.raises(ValueError, match="random weights"):
        small_model(weights="imagenet").fit(images, labels)
    with pytest.raises(ValueError, match="mode must be one of"):
        small_model(mode="transfer").fit(images, labels)
    with pytest.raises(ValueError, match="two classes"):
        small_model().fit(images, np.zeros(8, dtype=int))
    with pytest.raises(ValueError, match="224-pixel"):
        DeepImageClassifier(backbone="vit_b_16", weights="none", image_size=96).fit(images, labels)


def test_idx_reader_on_fashion_mnist_and_a_truncated_file(tmp_path: Path) -> None:
    images, labels = load_fashion_mnist(data_path("fashion_mnist"), "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    broken = tmp_path / "broken-idx3-ubyte.gz"
    raw = gzip.decompress((data_path("fashion_mnist") / "t10k-images-idx3-ubyte.gz").read_bytes())
    broken.write_bytes(gzip.compress(raw[:5000]))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(broken)
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(tmp_path / "text.gz")


@pytest.mark.slow
def test_small_cnn_from_scratch_on_a_fashion_mnist_subset() -> None:
    root = data_path("fashion_mnist")
    train_images, train_labels = load_fashion_mnist(root, "train")
    test_images, test_labels = load_fashion_mnist(root, "test")
    model = DeepImageClassifier(
        backbone="small_cnn",
        mode="scratch",
        epochs=3,
        image_size=28,
        augment=False,
        patience=0,
        cache_dir="",
        learning_rate=3e-3,
    )
    model.fit(train_images[:1000], train_labels[:1000])
    assert model.score(test_images[:500], test_labels[:500]) >= 0.65
