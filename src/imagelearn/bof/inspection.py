"""What the visual words of a trained Bag-of-Features model look like.

A descriptor *occurs* as the word nearest to it (the word a hard assignment gives it; a soft
assignment also votes, with smaller weights, for the next nearest). For a chosen channel of a
:class:`~imagelearn.bof.recognition.BofClassifier` (or a :class:`BagOfFeatures`):

- :func:`word_occurrences` streams over images and keeps, for every word, the ``per_word``
  patches nearest to it (bounded memory: at most ``n_words * per_word`` patches);
- :func:`word_montage` draws the patches of one word as a captioned grid;
- :func:`image_words` is one image's histogram (as the model encodes it) with its strongest
  words and where their patches are; :func:`draw_image_words` outlines them on the image.

A patch is the square a descriptor describes: ``6 * size`` wide for float descriptors (the
SIFT family and dense Lab follow OpenCV's SIFT convention, :data:`SIFT_PATCH_PER_SIZE`),
``size`` wide for binary ones (ORB, AKAZE), centred on the keypoint, in the pixels of the
image file.

Words are chosen by :func:`rank_words`: by default those a classifier's SVM weighs most (the
norm of its weights over the word's bins, all classes, pyramid cells and kernel-map blocks),
for a lone ``BagOfFeatures`` the most frequent.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from imagelearn.bof.estimator import BagOfFeatures
from imagelearn.bof.recognition import CHI2_SAMPLE_STEPS, BofClassifier
from imagelearn.core.bundle import BundleError, atomic_write_bytes, read_manifest
from imagelearn.core.errors import ParameterError
from imagelearn.core.images import load_image
from imagelearn.features import LocalFeatures
from imagelearn.features.dense import SIFT_PATCH_PER_SIZE
from imagelearn.features.extract import oriented_size

Model = BofClassifier | BagOfFeatures
#: Orders of :func:`rank_words`.
WORD_ORDERS = ("weight", "frequency")
#: Side of one patch in a montage, pixels.
TILE = 64
#: Height of the caption band of a montage, pixels.
CAPTION = 18
#: Outline colours of the words drawn on an image (matplotlib's tab10), in rank order.
WORD_COLORS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def load_model(model: Model | str | os.PathLike) -> Model:
    """``model`` itself, or the BoF classifier or transformer saved in the directory ``model``.

    Raises
    ------
    BundleError
        The directory holds neither (the message names it and what it holds).
    """
    if isinstance(model, Model):
        return model
    kind = read_manifest(model)["kind"]
    if kind == BofClassifier.bundle_kind:
        return BofClassifier.load(model)
    if kind == BagOfFeatures.bundle_kind:
        return BagOfFeatures.load(model)
    raise BundleError(
        f"{model}: a {kind!r} bundle, not a Bag-of-Features model ('bof train' writes one)"
    )


def channel_encoder(model: Model, channel: int | str = 0) -> tuple[int, BagOfFeatures]:
    """The channel ``channel`` of ``model`` (its index, or its detector's name) and its index.

    Raises
    ------
    ParameterError
        ``parameter="channel"``: no such channel; the message lists them.
    """
    encoders = model.channels_ if isinstance(model, BofClassifier) else [model]
    names = [encoder.detector for encoder in encoders]
    if isinstance(channel, str) and not channel.isdigit():
        if channel not in names:
            raise ParameterError("channel", f"no channel {channel!r}; the model has {names}")
        index = names.index(channel)
    else:
        index = int(channel)
        if not 0 <= index < len(encoders):
            raise ParameterError(
                "channel", f"no channel {index}; the model has {len(encoders)}: {names}"
            )
    return index, encoders[index]


def _word_centers(encoder: BagOfFeatures) -> np.ndarray:
    """The centre of every word (n_words, d): a flat vocabulary's words, a tree's leaves."""
    vocabulary = encoder.vocabulary_
    return vocabulary.words_ if hasattr(vocabulary, "words_") else vocabulary.centers_[-1]


def nearest_words(encoder: BagOfFeatures, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The word of every descriptor (n,) int64 and its squared distance (Hamming distance for
    binary descriptors) to that word's centre (n,) float32."""
    words = encoder.vocabulary_.assign(descriptors)
    centers = _word_centers(encoder)[words]
    if descriptors.dtype == np.uint8:
        distances = np.unpackbits(descriptors ^ centers, axis=1).sum(axis=1)
    else:
        distances = np.square(descriptors.astype(np.float32) - centers).sum(axis=1)
    return words, distances.astype(np.float32)


def patch_sides(features: LocalFeatures) -> np.ndarray:
    """Width (n,) in pixels of the square each descriptor describes (see the module's note)."""
    scale = 1.0 if features.binary else SIFT_PATCH_PER_SIZE
    return (features.keypoints[:, 2] * scale).astype(np.float32)


@dataclass(frozen=True)
class Patches:
    """Patches of images, nearest to their word first.

    Attributes
    ----------
    image : ndarray of int64, shape (n,)
        Index of the image (into the images of the pass).
    x, y : ndarray of float32, shape (n,)
        Centre, pixels of the image file.
    side : ndarray of float32, shape (n,)
        Width of the square, pixels.
    distance : ndarray of float32, shape (n,)
        Squared distance of the descriptor to its word's centre.
    """

    image: np.ndarray
    x: np.ndarray
    y: np.ndarray
    side: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.image)

    def take(self, rows: np.ndarray | slice) -> Patches:
        """The patches at ``rows``."""
        return Patches(
            self.image[rows], self.x[rows], self.y[rows], self.side[rows], self.distance[rows]
        )

    def records(self) -> list[dict[str, float | int]]:
        """One dict per patch (``image``, ``x``, ``y``, ``side``, ``distance``), for JSON."""
        return [
            {"image": int(i), "x": float(x), "y": float(y), "side": float(s), "distance": float(d)}
            for i, x, y, s, d in zip(
                self.image, self.x, self.y, self.side, self.distance, strict=True
            )
        ]


@dataclass(frozen=True)
class WordOccurrences:
    """The patches nearest to every word of one channel, over a set of images.

    Attributes
    ----------
    channel : int
        Index of the channel in the model.
    detector : str
        Its detector.
    images : tuple of str
        The images of the pass; patches refer to them by index.
    counts : ndarray of int64, shape (n_words,)
        Descriptors of which each word is the nearest, over all readable images.
    patches : Patches
        At most ``per_word`` per word, nearest first, grouped by word (``words`` says which).
    words : ndarray of int64, shape (n_patches,)
        The word of every patch.
    failures : list of (path, reason)
        The unreadable images.
    """

    channel: int
    detector: str
    images: tuple[str, ...]
    counts: np.ndarray
    patches: Patches
    words: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_words(self) -> int:
        return len(self.counts)

    def of(self, word: int) -> Patches:
        """The kept patches of ``word``, nearest first.

        Raises
        ------
        ParameterError
            ``parameter="words"``: not a word of the channel.
        """
        check_word(word, self.n_words)
        start, stop = np.searchsorted(self.words, [word, word + 1])
        return self.patches.take(slice(int(start), int(stop)))


def check_word(word: int, n_words: int) -> int:
    """``word`` as an int when it is a word of a vocabulary of ``n_words``, else a
    :class:`ParameterError` (``parameter="words"``)."""
    if not 0 <= int(word) < n_words:
        raise ParameterError("words", f"no word {word}: the vocabulary has words 0-{n_words - 1}")
    return int(word)


def _image_patches(
    encoder: BagOfFeatures, features: LocalFeatures, image: int
) -> tuple[np.ndarray, Patches]:
    """The word of every descriptor of one image's ``features`` and its patches."""
    words, distances = nearest_words(encoder, features.descriptors)
    n = len(words)
    return words, Patches(
        np.full(n, image, np.int64),
        features.keypoints[:, 0].astype(np.float32),
        features.keypoints[:, 1].astype(np.float32),
        patch_sides(features),
        distances,
    )


def _nearest_per_word(
    words: np.ndarray, patches: Patches, per_word: int
) -> tuple[np.ndarray, Patches]:
    """The ``per_word`` patches nearest to each word, grouped by word, nearest first (ties: the
    earlier image and patch)."""
    order = np.lexsort((np.arange(len(words)), patches.distance, words))
    sorted_words = words[order]
    ranks = np.arange(len(words)) - np.searchsorted(sorted_words, sorted_words, side="left")
    near = ranks < per_word
    return sorted_words[near], patches.take(order[near])


def _concatenate(parts: Sequence[Patches]) -> Patches:
    return Patches(
        *(
            np.concatenate([getattr(part, name) for part in parts])
            for name in ("image", "x", "y", "side", "distance")
        )
    )


#: No patches.
NO_PATCHES = Patches(np.zeros(0, np.int64), *(np.zeros(0, np.float32) for _ in range(4)))


def word_occurrences(
    model: Model | str | os.PathLike,
    images: Sequence[str | os.PathLike],
    channel: int | str = 0,
    per_word: int = 16,
    strict: bool = False,
) -> WordOccurrences:
    """The ``per_word`` patches nearest to every word of ``channel`` over ``images``, streamed
    (a few images' descriptors in memory at a time, features read from the feature cache;
    one progress bar per batch of images).

    Parameters
    ----------
    model : BofClassifier, BagOfFeatures, or the directory of one
    images : sequence of paths
    channel : int or str
        Index or detector name of the channel.
    per_word : int
        Patches kept per word.
    strict : bool
        Raise on the first unreadable image; otherwise it is listed in ``failures``.

    Raises
    ------
    ParameterError
        No such channel, ``per_word`` below 1.
    BundleError
        ``model`` is a directory that holds no BoF model.
    """
    model = load_model(model)
    index, encoder = channel_encoder(model, channel)
    if int(per_word) < 1:
        raise ParameterError("per_word", f"per_word must be >= 1; got {per_word}")
    images = [str(image) for image in images]
    n_words = encoder.vocabulary_.n_words_
    counts = np.zeros(n_words, np.int64)
    kept_words, kept = np.zeros(0, np.int64), NO_PATCHES
    failures: list[tuple[str, str]] = []
    for batch in encoder.extract_batches(images, strict, f"visual words ({encoder.detector})"):
        failures += batch.failures
        batch_words, batch_patches = [kept_words], [kept]
        for position, features in zip(batch.kept, batch.values, strict=True):
            if len(features) == 0:
                continue
            words, patches = _image_patches(encoder, features, int(position))
            counts += np.bincount(words, minlength=n_words)
            batch_words.append(words)
            batch_patches.append(patches)
        kept_words, kept = _nearest_per_word(
            np.concatenate(batch_words), _concatenate(batch_patches), int(per_word)
        )
    return WordOccurrences(
        index, encoder.detector, tuple(images), counts, kept, kept_words, failures
    )


def word_weights(model: Model, channel: int | str = 0) -> np.ndarray:
    """How much a classifier's SVM relies on each word of ``channel``: the L2 norm of its
    weights over the word's bins (every class, pyramid cell and kernel-map block), float64
    (n_words,).

    Raises
    ------
    ParameterError
        ``parameter="words"``: ``model`` is a lone ``BagOfFeatures``, which has no SVM.
    """
    if not isinstance(model, BofClassifier):
        raise ParameterError("words", "a BagOfFeatures has no SVM weights; rank by frequency")
    index, encoder = channel_encoder(model, channel)
    widths = [bof.n_features_out_ for bof in model.channels_]
    start = sum(widths[:index])
    blocks = 2 * CHI2_SAMPLE_STEPS - 1 if model.kernel == "chi2" else 1
    coef = model.svm_.coef_.reshape(len(model.svm_.coef_), blocks, sum(widths))
    own = coef[:, :, start : start + widths[index]]
    n_words = encoder.vocabulary_.n_words_
    return np.sqrt(np.square(own.reshape(*own.shape[:2], -1, n_words)).sum(axis=(0, 1, 2)))


def rank_words(
    model: Model,
    channel: int | str = 0,
    by: str = "weight",
    occurrences: WordOccurrences | None = None,
) -> np.ndarray:
    """The words of ``channel``, first the most telling: by their SVM weight
    (:func:`word_weights`; a lone ``BagOfFeatures`` falls back to frequency) or by
    ``"frequency"`` in ``occurrences`` (required then). Words that never occur in
    ``occurrences``, when given, are left out. int64 (n_ranked,)."""
    if by not in WORD_ORDERS:
        raise ParameterError("by", f"words are ranked by one of {WORD_ORDERS}; got {by!r}")
    if by == "weight" and isinstance(model, BofClassifier):
        scores = word_weights(model, channel)
    elif occurrences is None:
        raise ParameterError("by", "ranking by frequency needs the occurrences of a pass")
    else:
        scores = occurrences.counts.astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    if occurrences is not None:
        order = order[occurrences.counts[order] > 0]
    return order


class _ImageReader:
    """The images of a montage, each read once: RGB, at most ``max_side`` on the longer side,
    and the scale from file pixels to the read ones."""

    def __init__(self, max_side: int | None = 1024) -> None:
        self.max_side = max_side
        self._read: dict[str, tuple[np.ndarray, float]] = {}

    def __call__(self, path: str) -> tuple[np.ndarray, float]:
        if path not in self._read:
            pixels = load_image(path, max_side=self.max_side)
            self._read[path] = (pixels, pixels.shape[0] / oriented_size(path)[0])
        return self._read[path]


def crop_patch(pixels: np.ndarray, x: float, y: float, side: float, tile: int = TILE) -> np.ndarray:
    """The square of ``side`` pixels centred on ``x, y`` of ``pixels`` (H, W, 3), resized to
    ``tile`` x ``tile``; parts outside the image are grey. uint8 (tile, tile, 3)."""
    half = max(side, 1.0) / 2
    box = (x - half + 0.5, y - half + 0.5, x + half + 0.5, y + half + 0.5)
    image = Image.fromarray(pixels)
    patch = Image.new("RGB", (tile, tile), (128, 128, 128))
    left, top, right, bottom = box
    inside = (max(left, 0), max(top, 0), min(right, image.width), min(bottom, image.height))
    if inside[2] > inside[0] and inside[3] > inside[1]:
        scale = tile / (right - left)
        region = image.resize(
            (
                max(1, round((inside[2] - inside[0]) * scale)),
                max(1, round((inside[3] - inside[1]) * scale)),
            ),
            Image.Resampling.BILINEAR,
            box=inside,
        )
        patch.paste(region, (round((inside[0] - left) * scale), round((inside[1] - top) * scale)))
    return np.asarray(patch)


def word_montage(
    occurrences: WordOccurrences,
    word: int,
    columns: int = 8,
    tile: int = TILE,
    limit: int | None = None,
) -> np.ndarray:
    """The kept patches of ``word`` as a grid, nearest first, under a caption (word, channel,
    patches shown of the word's occurrences). uint8 RGB (CAPTION + rows * tile, columns * tile, 3).

    Raises
    ------
    ParameterError
        ``word`` is not a word of the channel.
    ImageReadError
        An image of the pass can no longer be read.
    """
    patches = occurrences.of(word)
    if limit is not None:
        patches = patches.take(slice(0, int(limit)))
    columns = max(1, min(int(columns), max(len(patches), 1)))
    rows = max(1, -(-len(patches) // columns))
    sheet = Image.new("RGB", (max(columns * tile, 260), CAPTION + rows * tile), (255, 255, 255))
    read = _ImageReader()
    for number in range(len(patches)):
        pixels, scale = read(occurrences.images[int(patches.image[number])])
        tile_pixels = crop_patch(
            pixels,
            float(patches.x[number]) * scale,
            float(patches.y[number]) * scale,
            float(patches.side[number]) * scale,
            tile,
        )
        sheet.paste(
            Image.fromarray(tile_pixels),
            ((number % columns) * tile, CAPTION + (number // columns) * tile),
        )
    caption = (
        f"word {word} of {occurrences.detector} (channel {occurrences.channel}): "
        f"{len(patches)} of {int(occurrences.counts[word])} patches"
    )
    ImageDraw.Draw(sheet).text((3, 3), caption, fill=(0, 0, 0))
    return np.asarray(sheet)


@dataclass(frozen=True)
class ImageWords:
    """One image under one channel: its histogram and its strongest words.

    Attributes
    ----------
    image : str
    channel : int
    detector : str
    histogram : ndarray of float32, shape (n_features_out,)
        The channel's histogram of the image as the model encodes it (idf, pyramid cells,
        normalization: ``BagOfFeatures.transform``).
    word_histogram : ndarray of float32, shape (n_words,)
        Its whole-image level: the first pyramid level's cells summed.
    top_words : ndarray of int64, shape (n_top,)
        The words of largest ``word_histogram``, strongest first.
    patches : tuple of Patches
        For every top word, its patches in the image (nearest word), nearest first.
    image_shape : (height, width)
    """

    image: str
    channel: int
    detector: str
    histogram: np.ndarray
    word_histogram: np.ndarray
    top_words: np.ndarray
    patches: tuple[Patches, ...]
    image_shape: tuple[int, int]

    def as_record(self) -> dict:
        """JSON-ready: the image, channel, non-zero word weights and the top words' patches."""
        nonzero = np.flatnonzero(self.word_histogram)
        return {
            "image": self.image,
            "channel": self.channel,
            "detector": self.detector,
            "image_shape": list(self.image_shape),
            "n_words": len(self.word_histogram),
            "words": {int(w): float(self.word_histogram[w]) for w in nonzero},
            "top_words": [
                {
                    "word": int(word),
                    "weight": float(self.word_histogram[word]),
                    "patches": p.records(),
                }
                for word, p in zip(self.top_words, self.patches, strict=True)
            ],
        }


def image_words(
    model: Model | str | os.PathLike,
    image: str | os.PathLike,
    channel: int | str = 0,
    top: int = 5,
) -> ImageWords:
    """The histogram of ``image`` under ``channel`` and its ``top`` strongest words with the
    patches where they occur.

    Raises
    ------
    ImageReadError
        ``image`` cannot be read.
    ParameterError
        No such channel, ``top`` below 1.
    """
    model = load_model(model)
    index, encoder = channel_encoder(model, channel)
    if int(top) < 1:
        raise ParameterError("top", f"top must be >= 1; got {top}")
    features = encoder.extract([image], strict=True).values[0]
    histogram = encoder.transform_features([features])[0]
    n_words = encoder.vocabulary_.n_words_
    first_cells = encoder.pyramid[0] ** 2
    whole = histogram[: first_cells * n_words].reshape(first_cells, n_words).sum(axis=0)
    strongest = np.argsort(-whole, kind="stable")[: int(top)]
    strongest = strongest[whole[strongest] > 0]
    words, patches = (
        _image_patches(encoder, features, 0)
        if len(features)
        else (np.zeros(0, np.int64), NO_PATCHES)
    )
    per_word = []
    for word in strongest:
        rows = np.flatnonzero(words == word)
        per_word.append(patches.take(rows[np.argsort(patches.distance[rows], kind="stable")]))
    return ImageWords(
        str(image),
        index,
        encoder.detector,
        histogram,
        whole.astype(np.float32),
        strongest.astype(np.int64),
        tuple(per_word),
        tuple(int(side) for side in features.image_shape),
    )


def draw_image_words(words: ImageWords, per_word: int = 12, side: int = 640) -> np.ndarray:
    """The image, resized to ``side`` pixels on its longer side, with the ``per_word`` patches
    nearest to each of its top words outlined, one colour per word (:data:`WORD_COLORS`, in
    rank order), above a legend of the words and their weights. uint8 RGB (H', side or less, 3).

    Raises
    ------
    ImageReadError
        The image can no longer be read.
    """
    height, width = words.image_shape
    scale = side / max(height, width)
    picture = Image.fromarray(load_image(words.image)).resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR
    )
    legend_rows = -(-len(words.top_words) // 3)
    canvas = Image.new("RGB", (picture.width, picture.height + 6 + 16 * legend_rows), "white")
    outlines, draw = ImageDraw.Draw(picture), ImageDraw.Draw(canvas)
    for rank, (word, patches) in enumerate(zip(words.top_words, words.patches, strict=True)):
        color = WORD_COLORS[rank % len(WORD_COLORS)]
        for number in range(min(len(patches), int(per_word))):
            half = float(patches.side[number]) * scale / 2
            x, y = (
                (float(patches.x[number]) + 0.5) * scale,
                (float(patches.y[number]) + 0.5) * scale,
            )
            outlines.rectangle((x - half, y - half, x + half, y + half), outline=color, width=2)
        left = 4 + (rank % 3) * (picture.width // 3)
        top = picture.height + 4 + 16 * (rank // 3)
        draw.rectangle((left, top + 2, left + 10, top + 12), fill=color)
        weight = float(words.word_histogram[word])
        draw.text((left + 14, top + 1), f"word {int(word)}: {weight:.3f}", fill=(0, 0, 0))
    canvas.paste(picture)
    return np.asarray(canvas)


def save_png(pixels: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``pixels`` (H, W, 3) uint8 as a PNG, atomically; returns the path."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
