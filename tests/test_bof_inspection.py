"""What the visual words of a trained BoF model look like, on real flowers5 photos: the patches
of a word really are nearest to it, streaming keeps the nearest ones, an image's histogram is
the model's encoding, and bad input fails clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import data_path
from imagelearn.bof.inspection import (
    CAPTION,
    TILE,
    channel_encoder,
    crop_patch,
    draw_image_words,
    image_words,
    load_model,
    nearest_words,
    patch_sides,
    rank_words,
    word_montage,
    word_occurrences,
    word_weights,
)
from imagelearn.bof.recognition import BofClassifier
from imagelearn.cli.main import main
from imagelearn.core.bundle import BundleError
from imagelearn.core.errors import ParameterError
from imagelearn.core.images import ImageReadError, load_image
from imagelearn.features import extract_features, make_detector
from imagelearn.features.dense import patch_bounds

#: Small channels on the photos' own pixels (no max_side), so patches are exact pixel squares.
CHANNELS = [
    {
        "detector": "dense_rootsift",
        "detector_params": {"step": 12, "max_side": None},
        "n_words": 24,
        "assignment": "soft",
        "pyramid": (1, 2),
    },
    {
        "detector": "dense_lab",
        "detector_params": {"step": 12, "max_side": None},
        "n_words": 12,
        "pyramid": (1,),
    },
]


@pytest.fixture(scope="module")
def photos() -> list:
    """Six flowers5 photos of each of three classes (daisy, rose, sunflower)."""
    root = data_path("flowers5")
    return [
        path
        for name in ("daisy", "rose", "sunflower")
        for path in sorted((root / name).glob("*.jpg"))[:6]
    ]


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory):
    """A classifier trained on the photos and saved: (model, its directory)."""
    model = BofClassifier(
        channels=CHANNELS, n_jobs=1, cache_dir=tmp_path_factory.mktemp("cache")
    ).fit(photos, np.repeat([0, 1, 2], 6), class_names=["daisy", "rose", "sunflower"])
    return model, model.save(tmp_path_factory.mktemp("run") / "flowers")


def _all_nearest(encoder, photos):
    """Every descriptor's (image, x, y, side, word, distance) in one pass, features recomputed."""
    features, _ = extract_features(photos, encoder._make_detector(), n_jobs=1, cache_dir=False)
    rows = []
    for image, item in enumerate(features):
        words, distances = nearest_words(encoder, item.descriptors)
        rows.append(
            np.column_stack(
                [
                    np.full(len(item), image),
                    item.keypoints[:, :2],
                    patch_sides(item),
                    words,
                    distances,
                ]
            )
        )
    return np.concatenate(rows)


def test_streamed_occurrences_are_the_nearest_patches_of_every_word(run, photos):
    model, _ = run
    _, encoder = channel_encoder(model, 0)
    occurrences = word_occurrences(model, photos + photos[:2], channel=0, per_word=5)
    everything = _all_nearest(encoder, photos + photos[:2])  # 20 images: two stream batches
    np.testing.assert_array_equal(
        occurrences.counts, np.bincount(everything[:, 4].astype(int), minlength=24)
    )
    for word in range(24):
        own = everything[everything[:, 4] == word]
        kept = occurrences.of(word)
        assert len(kept) == min(5, len(own))
        np.testing.assert_allclose(kept.distance, np.sort(own[:, 5])[:5], rtol=1e-5, atol=1e-6)
        # each kept patch is one of the word's descriptors: same image, centre and side
        found = {tuple(row) for row in own[:, :4].round(2)}
        for image, x, y, side in zip(kept.image, kept.x, kept.y, kept.side, strict=True):
            assert (image, round(float(x), 2), round(float(y), 2), round(float(side), 2)) in found


def test_color_patches_described_again_from_their_pixels_are_nearest_their_word(run, photos):
    """The Lab descriptor of a montage's patch, computed again from the cropped pixels alone,
    is nearest to the montage's word."""
    model, _ = run
    index, encoder = channel_encoder(model, "dense_lab")
    occurrences = word_occurrences(model, photos, channel="dense_lab", per_word=4)
    checked = 0
    for word in rank_words(model, index, occurrences=occurrences)[:4]:
        patches = occurrences.of(int(word))
        for number in range(len(patches)):
            pixels = load_image(occurrences.images[int(patches.image[number])])
            x0, y0, x1, y1 = patch_bounds(
                np.array([[patches.x[number], patches.y[number]]]),
                np.array([patches.side[number]]),
                pixels.shape[:2],
            )[0]
            crop = pixels[y0:y1, x0:x1]
            if crop.shape[0] != crop.shape[1]:
                continue  # a large patch cut by the image's border
            detector = make_detector("dense_lab", step=1000, sizes=(crop.shape[0],), max_side=None)
            again = detector.detect(crop)
            assert len(again) == 1
            assert nearest_words(encoder, again.descriptors)[0][0] == word
            checked += 1
    assert checked >= 8


def test_montage_shows_the_kept_patches_under_a_caption(run, photos):
    model, _ = run
    occurrences = word_occurrences(model, photos, per_word=10)
    word = int(rank_words(model, 0, occurrences=occurrences)[0])
    montage = word_montage(occurrences, word, columns=5)
    patches = occurrences.of(word)
    assert montage.shape == (CAPTION + 2 * TILE, 5 * TILE, 3) and len(patches) == 10
    first = load_image(occurrences.images[int(patches.image[0])])
    tile = crop_patch(first, float(patches.x[0]), float(patches.y[0]), float(patches.side[0]))
    np.testing.assert_array_equal(montage[CAPTION : CAPTION + TILE, :TILE], tile)
    assert (montage[:CAPTION] < 128).any(), "the caption is drawn"


def test_words_rank_by_svm_weight_or_frequency(run, photos):
    model, _ = run
    occurrences = word_occurrences(model, photos, per_word=1)
    weights = word_weights(model, 0)
    by_weight = rank_words(model, 0, occurrences=occurrences)
    assert np.all(np.diff(weights[by_weight]) <= 0)
    by_frequency = rank_words(model, 0, "frequency", occurrences)
    assert np.all(np.diff(occurrences.counts[by_frequency]) <= 0)
    assert np.all(occurrences.counts[by_frequency] > 0)
    # only the classifier's own weights: a channel's words are a block of its SVM's columns
    assert len(weights) == 24 and len(word_weights(model, 1)) == 12


def test_image_histogram_is_the_models_encoding(run, photos):
    model, _ = run
    found = image_words(model, photos[7], channel=0, top=4)
    np.testing.assert_allclose(
        found.histogram, model.channels_[0].transform([photos[7]])[0], rtol=1e-6
    )
    np.testing.assert_allclose(
        found.word_histogram, found.histogram.reshape(5, 24)[0], rtol=1e-6
    )  # pyramid (1, 2): the first 24 bins are the whole image
    assert list(found.top_words) == list(np.argsort(-found.word_histogram, kind="stable")[:4])
    _, encoder = channel_encoder(model, 0)
    features = encoder.extract([photos[7]]).values[0]
    for word, patches in zip(found.top_words, found.patches, strict=True):
        assert len(patches) > 0 and np.all(np.diff(patches.distance) >= 0)
        rows = [
            np.flatnonzero((features.keypoints[:, 0] == x) & (features.keypoints[:, 1] == y))
            for x, y in zip(patches.x, patches.y, strict=True)
        ]
        words, _ = nearest_words(encoder, features.descriptors[np.concatenate(rows)])
        assert word in words
    drawn = draw_image_words(found)
    assert drawn.shape[1] == 640 or drawn.shape[0] >= 640
    record = json.loads(json.dumps(found.as_record()))
    assert [entry["word"] for entry in record["top_words"]] == found.top_words.tolist()


def test_bad_input_fails_clearly(run, photos, tmp_path):
    model, directory = run
    occurrences = word_occurrences(directory, photos[:3], per_word=2)
    with pytest.raises(ParameterError, match="no word 24: the vocabulary has words 0-23"):
        occurrences.of(24)
    with pytest.raises(ParameterError, match=r"no channel 'sift'.*dense_rootsift.*dense_lab"):
        channel_encoder(model, "sift")
    with pytest.raises(ParameterError, match="no channel 2"):
        channel_encoder(model, 2)
    vocabulary = model.channels_[0].vocabulary_.save(tmp_path / "vocabulary")
    with pytest.raises(BundleError, match="'kmeans-vocabulary' bundle, not a Bag-of-Features"):
        load_model(vocabulary)
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_model(tmp_path)
    corrupt = data_path("bad_inputs", "mixed_images", "ukbench09268_corrupt.jpg")
    with pytest.raises(ImageReadError, match=r"ukbench09268_corrupt\.jpg"):
        image_words(model, corrupt)
    skipping = word_occurrences(model, [photos[0], corrupt], per_word=2)
    assert [path for path, _ in skipping.failures] == [str(corrupt)]
    np.testing.assert_array_equal(
        skipping.counts, word_occurrences(model, [photos[0]], per_word=2).counts
    )


def test_cli_writes_montages_and_words_json(run, photos, tmp_path, capsys):
    _, directory = run
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos[:6]:
        shutil.copy(photo, folder / photo.name)
    out = tmp_path / "words"
    arguments = ["bof", "words", str(directory), str(folder), "--out", str(out), "--n-jobs", "1"]
    assert main([*arguments, "--top", "3", "--per-word", "5"]) == 0
    written = json.loads((out / "words.json").read_text())
    assert written["n_images"] == 6 and written["detector"] == "dense_rootsift"
    assert len(written["words"]) == 3
    for entry in written["words"]:
        montage = Image.open(out / entry["montage"])
        assert montage.size[1] == CAPTION + TILE and len(entry["patches"]) == 5
        assert entry["occurrences"] >= 5
    assert "3 words over 6 images" in capsys.readouterr().out
    assert main([*arguments, "--words", "0,5", "--channel", "dense_lab"]) == 2  # a pass is there
    assert "a finished run is already there" in capsys.readouterr().err
    arguments += ["--overwrite", "--channel", "dense_lab"]
    assert main([*arguments, "--words", "0,5"]) == 0
    assert sorted(p.name for p in out.glob("word_*.png")) == sorted(
        ["word_0.png", "word_5.png"] + [entry["montage"] for entry in written["words"]]
    )
    assert main([*arguments, "--words", "12"]) == 2
    assert "no word 12: the vocabulary has words 0-11 (--words)" in capsys.readouterr().err
    png = tmp_path / "explained.png"
    assert main(["bof", "explain", str(directory), str(photos[0]), "--out", str(png)]) == 0
    assert Image.open(png).size[0] == 640 or Image.open(png).size[1] >= 640
    assert capsys.readouterr().out.count("word ") == 5
    assert main(["bof", "explain", str(tmp_path), str(photos[0]), "--out", str(png)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_a_saved_bag_of_features_alone_ranks_its_words_by_frequency(run, photos, tmp_path):
    model, _ = run
    saved = model.channels_[1].save(tmp_path / "lab-words")
    alone = load_model(saved).set_params(n_jobs=1)
    occurrences = word_occurrences(alone, photos[:4], per_word=3)
    assert occurrences.detector == "dense_lab" and occurrences.n_words == 12
    ranked = rank_words(alone, 0, occurrences=occurrences)
    assert np.all(np.diff(occurrences.counts[ranked]) <= 0)
    with pytest.raises(ParameterError, match="no SVM weights"):
        word_weights(alone, 0)
