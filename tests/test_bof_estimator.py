"""BagOfFeatures: the scikit-learn contract, saving and loading, skipped images, real flowers."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file
from sklearn.base import clone
from sklearn.kernel_approximation import AdditiveChi2Sampler
from sklearn.pipeline import make_pipeline, make_union
from sklearn.svm import LinearSVC

from conftest import data_path
from imagelearn.bof import VOCABULARIES, BagOfFeatures, VocabularyTree, sample_descriptors
from imagelearn.bof.estimator import MIN_STREAM_IMAGES, DescriptorSample
from imagelearn.core.bundle import ARRAYS_NAME, BundleError
from imagelearn.core.errors import ParameterError
from imagelearn.core.images import ImageReadError
from imagelearn.features import LocalFeatures

SMALL = {"n_words": 8, "branching": 2, "depth": 3, "n_iter": 10, "n_jobs": 1, "cache_dir": False}


def synthetic_features(rng: np.random.Generator, n_images: int = 12, binary: bool = False):
    """Images whose descriptors come from blobs 0-3 (class 0) or 4-7 (class 1), on a grid of 64 x 48 pixels."""
    centers = rng.standard_normal((8, 32)) * 5
    codes = rng.integers(0, 2, (8, 256), dtype=np.uint8)
    features, labels = [], []
    for index in range(n_images):
        label = index % 2
        blob = rng.integers(0, 4, 40) + 4 * label
        if binary:
            flips = (rng.random((40, 256)) < 0.03).astype(np.uint8)
            descriptors = np.packbits(codes[blob] ^ flips, axis=1)
        else:
            descriptors = (centers[blob] + rng.standard_normal((40, 32))).astype(np.float32)
        keypoints = np.zeros((40, 4), dtype=np.float32)
        keypoints[:, 0], keypoints[:, 1] = rng.uniform(0, 64, 40), rng.uniform(0, 48, 40)
        features.append(LocalFeatures(keypoints, descriptors, (48, 64)))
        labels.append(label)
    return features, np.array(labels)


@pytest.mark.parametrize("vocabulary", sorted(VOCABULARIES))
@pytest.mark.parametrize("binary", [False, True], ids=["float", "binary"])
def test_histograms_separate_two_synthetic_classes(rng, vocabulary, binary):
    features, labels = synthetic_features(rng, binary=binary)
    bof = BagOfFeatures(vocabulary=vocabulary, pyramid=(1, 2), **SMALL).fit_features(features)
    histograms = bof.transform_features(features)
    assert (
        histograms.shape
        == (len(features), bof.vocabulary_.n_words_ * 5)
        == (len(features), bof.n_features_out_)
    )
    assert histograms.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(histograms, axis=1), 1.0, rtol=1e-5)
    assert bof.idf_.shape == (bof.vocabulary_.n_words_,)
    classifier = LinearSVC().fit(histograms[:6], labels[:6])
    assert classifier.score(histograms[6:], labels[6:]) == 1.0


def test_soft_votes_keep_one_unit_of_mass_per_descriptor(rng):
    features, _ = synthetic_features(rng)
    bof = BagOfFeatures(
        assignment="soft",
        soft_neighbors=2,
        weighting="none",
        normalization="none",
        pyramid=(1,),
        **SMALL,
    )
    histograms = bof.fit_features(features).transform_features(features)
    np.testing.assert_allclose(histograms.sum(axis=1), [len(item) for item in features], rtol=1e-5)
    hard = bof.set_params(assignment="hard").fit_features(features).transform_features(features)
    assert (np.count_nonzero(histograms, axis=1) >= np.count_nonzero(hard, axis=1)).all()


def test_fit_transform_equals_fit_then_transform(make_image, rng):
    paths = [
        make_image(f"texture{i}.png", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
        for i in range(4)
    ]
    bof = BagOfFeatures(**SMALL)
    together = clone(bof).fit_transform(paths)
    np.testing.assert_allclose(together, bof.fit(paths).transform(paths), rtol=1e-6)


def test_clone_and_params_round_trip():
    bof = BagOfFeatures(
        detector="dense_lab", detector_params={"step": 4}, n_words=64, pyramid=(1, 2, 4)
    )
    params = bof.get_params()
    assert params["pyramid"] == (1, 2, 4) and params["detector_params"] == {"step": 4}
    copy = clone(bof)
    assert copy.get_params() == params
    copy.set_params(n_words=32, normalization="power")
    assert copy.n_words == 32 and bof.n_words == 64


def test_saved_model_transforms_identically(rng, tmp_path):
    features, _ = synthetic_features(rng)
    for vocabulary in sorted(VOCABULARIES):
        bof = BagOfFeatures(vocabulary=vocabulary, weighting="tfidf", **SMALL).fit_features(
            features
        )
        restored = BagOfFeatures.load(bof.save(tmp_path / vocabulary))
        np.testing.assert_array_equal(
            restored.transform_features(features), bof.transform_features(features)
        )
        np.testing.assert_array_equal(restored.idf_, bof.idf_)
    save_file({"idf": bof.idf_}, str(tmp_path / vocabulary / ARRAYS_NAME))
    with pytest.raises(BundleError, match="incomplete or corrupt bag-of-features"):
        BagOfFeatures.load(tmp_path / vocabulary)


def test_parameters_are_checked_at_fit_not_at_construction(rng):
    features, _ = synthetic_features(rng)
    bof = BagOfFeatures(assignment="fuzzy")  # accepted, as scikit-learn requires
    with pytest.raises(ValueError, match="assignment must be one of"):
        bof.fit_features(features)
    with pytest.raises(ValueError, match="pyramid"):
        BagOfFeatures(pyramid=(1, 0), **SMALL).fit_features(features)
    with pytest.raises(ValueError, match="soft_neighbors=4 exceeds branching=2"):
        BagOfFeatures(vocabulary="tree", assignment="soft", soft_neighbors=4, **SMALL).fit_features(
            features
        )
    with pytest.raises(ValueError, match="no local features"):
        BagOfFeatures(**SMALL).fit_features([None])


def test_sample_descriptors_draws_across_images(rng):
    features, _ = synthetic_features(rng)
    sample = sample_descriptors(features, 100, random_state=0)
    assert sample.shape == (100, 32)
    pool = np.concatenate([item.descriptors for item in features])
    assert {row.tobytes() for row in sample} <= {row.tobytes() for row in pool}
    np.testing.assert_array_equal(sample_descriptors(features, 10_000), pool)


def test_unreadable_images_are_skipped_and_reported_by_name(make_image, tmp_path, rng):
    good = [
        make_image(f"texture{i}.png", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        for i in range(3)
    ]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    bof = BagOfFeatures(detector="dense_rootsift", **SMALL).fit([*good, broken])
    assert [path for path, _ in bof.skipped_] == [str(broken)]
    before = dict(vars(bof))
    result = bof.transform_images([good[0], broken, good[1]])
    assert result.kept.tolist() == [0, 2] and result.failed.tolist() == [1]
    assert [path for path, _ in result.failures] == [str(broken)]
    assert result.vectors.shape == (2, bof.n_features_out_) and result.vectors.any(axis=1).all()
    np.testing.assert_allclose(result.vectors, bof.transform([good[0], good[1]]), rtol=1e-6)
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        bof.transform([good[0], broken])
    assert vars(bof).keys() == before.keys()  # no state: the result names the unreadable files
    assert all(vars(bof)[name] is value for name, value in before.items())
    assert [path for path, _ in bof.extract([good[0], broken]).failures] == [str(broken)]


def test_streamed_fit_matches_fitting_features_in_memory(make_image, rng):
    """Streaming in batches of MIN_STREAM_IMAGES draws the same sample and idf as one batch."""
    paths = [
        make_image(f"stream{i}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        for i in range(MIN_STREAM_IMAGES + 5)
    ]
    params = SMALL | {"vocabulary": "kmeans", "sample_size": 500}
    params.pop("branching"), params.pop("depth")
    streamed = BagOfFeatures(**params)
    histograms = streamed.fit_transform_images(paths).vectors
    in_memory = BagOfFeatures(**params).fit_features(streamed.extract(paths).values)
    np.testing.assert_array_equal(streamed.vocabulary_.words_, in_memory.vocabulary_.words_)
    np.testing.assert_allclose(streamed.idf_, in_memory.idf_, rtol=1e-6)
    np.testing.assert_allclose(
        histograms, in_memory.transform_features(streamed.extract(paths).values), rtol=1e-5
    )
    broken = paths[0].with_name("broken.png")
    broken.write_bytes(b"not a PNG")
    batches = list(streamed.extract_batches([*paths, broken]))  # n_jobs=1: 16 images a batch
    assert [len(batch.values) for batch in batches] == [MIN_STREAM_IMAGES, 5]
    assert np.concatenate([batch.kept for batch in batches]).tolist() == list(range(len(paths)))
    assert batches[-1].failed.tolist() == [len(paths)]
    assert [path for path, _ in batches[-1].failures] == [str(broken)]


def test_descriptor_sample_does_not_depend_on_batching(rng):
    blocks = [rng.standard_normal((int(n), 4)).astype(np.float32) for n in rng.integers(0, 60, 40)]
    one = DescriptorSample(100, random_state=3)
    for block in blocks:
        one.add(block)
    merged = DescriptorSample(100, random_state=3)
    merged.add(np.concatenate(blocks))
    assert one.n_seen == merged.n_seen == sum(len(block) for block in blocks)
    np.testing.assert_array_equal(one.rows(), merged.rows())
    assert one.rows().shape == (100, 4)


@pytest.fixture(scope="module")
def flowers():
    """50 images of each of three flower classes: 30 to train, 20 to test per class."""
    root = data_path("flowers5")
    paths, labels = [], []
    for label, name in enumerate(("daisy", "sunflower", "tulip")):
        files = sorted((root / name).glob("*.jpg"))[:50]
        paths += files
        labels += [label] * len(files)
    labels = np.array(labels)
    train = np.isin(np.arange(len(paths)) % 50, np.arange(30))
    return (
        [paths[i] for i in np.flatnonzero(train)],
        labels[train],
        [paths[i] for i in np.flatnonzero(~train)],
        labels[~train],
    )


@pytest.mark.slow
def test_pipeline_on_real_flowers_beats_chance(flowers):
    train_paths, train_labels, test_paths, test_labels = flowers
    model = make_pipeline(
        BagOfFeatures(n_words=100, normalization="l1", n_jobs=1, cache_dir=False),
        AdditiveChi2Sampler(),
        LinearSVC(),
    )
    accuracy = model.fit(train_paths, train_labels).score(test_paths, test_labels)
    assert accuracy > 0.5  # chance is 1/3; measured 0.63


@pytest.mark.slow
def test_grey_and_colour_channels_compose_in_a_union(flowers):
    train_paths, _, test_paths, _ = flowers
    union = make_union(
        BagOfFeatures(n_words=40, sample_size=20_000, pyramid=(1,), n_jobs=1, cache_dir=False),
        BagOfFeatures(detector="dense_lab", n_words=16, pyramid=(1, 2), n_jobs=1, cache_dir=False),
    )
    histograms = union.fit(train_paths[::3]).transform(test_paths[:5])
    assert histograms.shape == (5, 40 + 16 * 5)
    assert len(union.get_feature_names_out()) == histograms.shape[1]


def test_a_tree_with_another_size_than_asked_is_refused_naming_n_words(rng):
    features, _ = synthetic_features(rng)
    for n_words in (5000, 9):
        bof = BagOfFeatures(vocabulary="tree", **{**SMALL, "n_words": n_words})
        with pytest.raises(ParameterError, match=r"branching \*\* depth = 2 \*\* 3 = 8") as error:
            bof.fit_features(features)
        assert error.value.parameter == "n_words"
    # the default (None) takes the tree's own size; a matching n_words is accepted
    tree = BagOfFeatures(vocabulary="tree", **{**SMALL, "n_words": None}).fit_features(features)
    assert tree.vocabulary_.n_words_ <= 8
    assert BagOfFeatures(n_jobs=1).n_words is None
    assert BagOfFeatures(**SMALL).fit_features(features).vocabulary_.n_words_ == 8


def test_vocabulary_params_reach_the_vocabulary_and_survive_saving(rng, tmp_path):
    features, _ = synthetic_features(rng)
    bof = BagOfFeatures(
        vocabulary="tree", vocabulary_params={"beam_width": 2, "init": "random"}, **SMALL
    ).fit_features(features)
    assert (bof.vocabulary_.beam_width, bof.vocabulary_.init) == (2, "random")
    assert (bof.vocabulary_.branching, bof.vocabulary_.n_iter) == (2, 10)  # shared by name
    restored = BagOfFeatures.load(bof.save(tmp_path / "tree"))
    assert restored.vocabulary_.beam_width == 2
    np.testing.assert_array_equal(
        restored.transform_features(features), bof.transform_features(features)
    )


def test_a_vocabulary_instance_survives_saving(rng, tmp_path):
    features, _ = synthetic_features(rng)
    tree = VocabularyTree(branching=2, depth=3, n_iter=10, beam_width=2, n_jobs=1)
    bof = BagOfFeatures(vocabulary=tree, n_jobs=1, cache_dir=False).fit_features(features)
    restored = BagOfFeatures.load(bof.save(tmp_path / "instance"))
    assert isinstance(restored.vocabulary, VocabularyTree) and restored.vocabulary_ is not tree
    assert restored.vocabulary.get_params() == {**tree.get_params(), "n_jobs": -1}
    np.testing.assert_array_equal(
        restored.transform_features(features), bof.transform_features(features)
    )


def test_vocabulary_params_are_checked_against_the_chosen_class(rng):
    features, _ = synthetic_features(rng)
    cases = [
        ("vocabulary_params", "no parameter beam_width", "kmeans", {"beam_width": 2}),
        ("vocabulary_params", "n_iter in vocabulary_params", "tree", {"n_iter": 3}),
        ("vocabulary", "unknown vocabulary 'forest'", "forest", None),
    ]
    for parameter, message, vocabulary, vocabulary_params in cases:
        bof = BagOfFeatures(vocabulary=vocabulary, vocabulary_params=vocabulary_params, **SMALL)
        with pytest.raises(ParameterError, match=message) as error:
            bof.fit_features(features)
        assert error.value.parameter == parameter


def test_an_unfitted_vocabulary_instance_is_cloned_and_used_as_given(rng):
    features, _ = synthetic_features(rng)
    template = VocabularyTree(branching=3, depth=2, n_iter=5, n_jobs=1)
    bof = BagOfFeatures(vocabulary=template, **{**SMALL, "n_words": None}).fit_features(features)
    assert isinstance(bof.vocabulary_, VocabularyTree) and bof.vocabulary_ is not template
    assert (bof.vocabulary_.branching, bof.vocabulary_.n_iter) == (3, 5)
    assert not hasattr(template, "bandwidth_")
    assert clone(bof).get_params()["vocabulary"].get_params() == template.get_params()
    with pytest.raises(ParameterError) as error:
        BagOfFeatures(vocabulary=template, **SMALL).fit_features(features)  # n_words=8, not 9
    assert error.value.parameter == "n_words"
    with pytest.raises(ParameterError) as error:
        BagOfFeatures(
            vocabulary=template, vocabulary_params={"depth": 3}, **{**SMALL, "n_words": None}
        ).fit_features(features)
    assert error.value.parameter == "vocabulary_params"
