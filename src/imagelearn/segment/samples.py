"""Training samples drawn inside an image: label images, GeoJSON polygons, CSV points.

Every reader returns a *sample mask*: an int32 ``(H, W)`` array where 0 means unlabelled
and ``1..K`` the class, the convention of ilastik's scribbles. Class names come from the
file (GeoJSON ``class`` properties, a CSV ``class`` column) or from the caller.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.draw import line, polygon

from imagelearn.core.errors import ImagelearnError, ParameterError
from imagelearn.core.images import ImageReadError, open_image
from imagelearn.segment.render import Color

#: The most classes a sample file may name (the labels a 16-bit label image can hold).
MAX_CLASSES = 65_535


class SamplesError(ImagelearnError, ValueError):
    """A sample file that cannot be used: malformed, of the wrong size, or with unknown classes."""


@dataclass
class Samples:
    """A sample mask and the names of its classes.

    Attributes
    ----------
    mask : int32 ndarray ``(H, W)``
        0 = unlabelled, ``k`` = class ``class_names[k - 1]``.
    class_names : list of str
    """

    mask: np.ndarray
    class_names: list[str]

    def counts(self) -> dict[str, int]:
        """Labelled pixels per class name."""
        counts = np.bincount(self.mask.ravel(), minlength=len(self.class_names) + 1)
        return {name: int(counts[index + 1]) for index, name in enumerate(self.class_names)}


def parse_color(text: str) -> Color:
    """``"#3C1098"`` -> ``(60, 16, 152)``."""
    value = text.strip().lstrip("#")
    if len(value) != 6:
        raise ValueError(f"colour {text!r} is not #RRGGBB")
    try:
        return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
    except ValueError as error:
        raise ValueError(f"colour {text!r} is not #RRGGBB") from error


def parse_classes(classes: Sequence[str] | None) -> tuple[list[str] | None, list[Color] | None]:
    """Class names in label order, each optionally with its colour in colour-coded label images.

    ``["water", "land"]`` -> names; ``["water=#0000FF", "land=#8429F6"]`` -> names and colours.

    Returns
    -------
    names : list of str, or None when ``classes`` is empty
    colors : list of (r, g, b), or None when no class has a colour

    Raises
    ------
    ParameterError
        ``classes``: a colour that is not ``#RRGGBB``, or colours for some classes only.
    """
    if not classes:
        return None, None
    names, colors = [], []
    for item in classes:
        name, _, color = item.partition("=")
        names.append(name.strip())
        try:
            colors.append(parse_color(color) if color else None)
        except ValueError as error:
            raise ParameterError("classes", str(error)) from error
    with_color = [color is not None for color in colors]
    if any(with_color) and not all(with_color):
        raise ParameterError("classes", "give a colour to every class or to none")
    return names, colors if all(with_color) else None


def labels_from_colors(rgb: np.ndarray, colors: list[tuple[int, int, int] | None]) -> np.ndarray:
    """Turn a colour-coded mask into labels: pixels of ``colors[k]`` get ``k + 1``, others 0.

    Parameters
    ----------
    rgb : uint8 ndarray ``(H, W, 3)``
    colors : list of (r, g, b) or None (None: a class with no colour in this mask)

    Returns
    -------
    int32 ndarray ``(H, W)``
    """
    packed = (
        (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    )
    mask = np.zeros(packed.shape, dtype=np.int32)
    for index, color in enumerate(colors):
        if color is not None:
            mask[packed == (color[0] << 16 | color[1] << 8 | color[2])] = index + 1
    return mask


def _class_index(value: object, names: list[str], fixed: bool, where: str) -> int:
    """1-based class of a GeoJSON/CSV class value (a name, or a number 1..K)."""
    text = str(value).strip()
    if text.isdecimal():
        index = int(text)
        if index == 0:
            raise SamplesError(f"{where}: class 0 means unlabelled; classes are numbered from 1")
        if index > MAX_CLASSES:
            raise SamplesError(f"{where}: class {index} is above the most classes, {MAX_CLASSES}")
        while not fixed and len(names) < index:
            names.append(f"class{len(names) + 1}")
        if index > len(names):
            raise SamplesError(
                f"{where}: class {index} but only {len(names)} class names were given"
            )
        return index
    if text not in names:
        if fixed:
            raise SamplesError(f"{where}: class {text!r} is not one of the given classes {names}")
        if len(names) >= MAX_CLASSES:
            raise SamplesError(f"{where}: more than {MAX_CLASSES} classes")
        names.append(text)
    return names.index(text) + 1


def _read_label_image(path: Path, shape: tuple[int, int], colors: list | None) -> np.ndarray:
    height, width = shape
    with open_image(path, max_pixels=None) as image:  # its size is checked against the image's
        if image.size != (width, height):
            raise SamplesError(
                f"{path}: sample image is {image.width}x{image.height} "
                f"but the image is {width}x{height}"
            )
        mode = image.mode
        try:
            image.load()
            array = np.asarray(image.convert("RGB") if colors is not None else image)
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            raise ImageReadError(path, f"unreadable label image ({error})") from error
    if colors is not None:
        return labels_from_colors(array, colors)
    if array.ndim == 3:
        if not np.all(array[..., :3] == array[..., :1]):
            raise ParameterError(
                "class_colors",
                f"{path}: a {mode} colour sample image needs class colours (name=#RRGGBB per class); "
                "or save it as a grayscale/palette PNG with values 0 (unlabelled) and 1..K",
            )
        array = array[..., 0]
    if array.dtype.kind == "f" or int(array.min(initial=0)) < 0:
        raise SamplesError(f"{path}: labels must be whole numbers, 0 (unlabelled) and 1..K")
    return array.astype(np.int32)


def _points(coordinates: object, shape: tuple[int, int], where: str) -> np.ndarray:
    """GeoJSON positions or CSV x, y as a float64 ``(n, 2)`` array of x, y inside the image."""
    try:
        points = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise SamplesError(f"{where}: coordinates must be [x, y] number pairs ({error})") from error
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] < 2:
        raise SamplesError(f"{where}: coordinates must be [x, y] number pairs")
    points = points[:, :2]
    if not np.all(np.isfinite(points)):
        raise SamplesError(f"{where}: coordinates must be finite numbers")
    height, width = shape
    outside = (
        (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
    )
    if np.any(outside):
        x, y = points[np.argmax(outside)]
        raise SamplesError(f"{where}: point ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return points


def _draw_points(mask: np.ndarray, points: np.ndarray, index: int) -> None:
    """Label the pixels under ``points`` (x, y; a point on the far edge is in the last pixel)."""
    columns = np.minimum(points[:, 0].astype(int), mask.shape[1] - 1)
    rows = np.minimum(points[:, 1].astype(int), mask.shape[0] - 1)
    mask[rows, columns] = index


def _draw_polygons(mask: np.ndarray, polygons: list, index: int, where: str) -> None:
    """Label the pixels inside each polygon (an outer ring, then holes) of ``polygons``."""
    for rings in polygons:
        if not isinstance(rings, list) or not rings:
            raise SamplesError(f"{where}: a polygon must be a list of rings")
        outer = _points(rings[0], mask.shape, where)
        inside = np.zeros(mask.shape, dtype=bool)
        inside[polygon(outer[:, 1], outer[:, 0], mask.shape)] = True
        for hole in rings[1:]:
            hole = _points(hole, mask.shape, where)
            inside[polygon(hole[:, 1], hole[:, 0], mask.shape)] = False
        mask[inside] = index


def _read_geojson(path: Path, shape: tuple[int, int], names: list[str], fixed: bool) -> np.ndarray:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise SamplesError(f"{path}: not UTF-8 text ({error})") from error
    except (json.JSONDecodeError, RecursionError) as error:
        raise SamplesError(f"{path}: not valid JSON ({error})") from error
    features = document.get("features", [document]) if isinstance(document, dict) else None
    if not isinstance(features, list):
        raise SamplesError(f"{path}: expected a GeoJSON FeatureCollection")
    mask = np.zeros(shape, dtype=np.int32)
    for number, feature in enumerate(features):
        where = f"{path}: feature {number}"
        if not isinstance(feature, dict):
            raise SamplesError(f"{where} is not a GeoJSON Feature object")
        properties = feature.get("properties") or {}
        if not isinstance(properties, dict) or "class" not in properties:
            raise SamplesError(f"{where} has no 'class' property")
        index = _class_index(properties["class"], names, fixed, where)
        geometry = feature.get("geometry")
        kind, coordinates = (
            (geometry.get("type"), geometry.get("coordinates"))
            if isinstance(geometry, dict)
            else (None, None)
        )
        if kind in ("Point", "MultiPoint"):
            _draw_points(mask, _points(coordinates, shape, where), index)
        elif kind in ("Polygon", "MultiPolygon") and isinstance(coordinates, list):
            _draw_polygons(mask, [coordinates] if kind == "Polygon" else coordinates, index, where)
        else:
            raise SamplesError(
                f"{where}: geometry {kind!r} is not a Polygon, MultiPolygon, Point or MultiPoint "
                "with coordinates"
            )
    return mask


def _read_csv(path: Path, shape: tuple[int, int], names: list[str], fixed: bool) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int32)
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        try:
            missing = {"x", "y", "class"} - set(reader.fieldnames or [])
            if missing:
                raise SamplesError(
                    f"{path}: CSV samples need columns x,y,class; missing {sorted(missing)}"
                )
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                point = _points([[row["x"], row["y"]]], shape, where)
                _draw_points(mask, point, _class_index(row["class"], names, fixed, where))
        except UnicodeDecodeError as error:
            raise SamplesError(f"{path}: not UTF-8 text ({error})") from error
        except csv.Error as error:
            raise SamplesError(f"{path}: line {reader.line_num}: not CSV ({error})") from error
    return mask


def read_samples(
    path: str | os.PathLike,
    shape: tuple[int, int],
    class_names: list[str] | None = None,
    class_colors: list[tuple[int, int, int] | None] | None = None,
) -> Samples:
    """Read training samples for an image of ``shape``.

    Parameters
    ----------
    path : path-like
        A label image (PNG/TIFF..., 0 = unlabelled, 1..K = class, or colour-coded with
        ``class_colors``), GeoJSON (``.geojson``/``.json``: polygons or points in pixel
        coordinates x = column, y = row, a ``class`` property holding a name or 1..K) or CSV
        (columns ``x,y,class``).
    shape : (H, W)
        Size of the image the samples belong to.
    class_names : list of str, optional
        Names of classes 1..K. Without them, names come from the file (in order of first
        appearance) or are ``class1..classK``.
    class_colors : list of (r, g, b) or None, optional
        Colour of each class in a colour-coded label image.

    Raises
    ------
    SamplesError
        Malformed file, size mismatch, samples outside the image, unknown class, more than
        :data:`MAX_CLASSES` classes, no labelled pixel (a ``ValueError`` too).
    ImageReadError
        A missing sample file, or a label image that cannot be decoded.
    ParameterError
        ``class_colors``: a colour label image without class colours.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "sample file not found")
    names = list(class_names or [])
    fixed = bool(class_names)
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        mask = _read_geojson(path, shape, names, fixed)
    elif suffix == ".csv":
        mask = _read_csv(path, shape, names, fixed)
    else:
        mask = _read_label_image(path, shape, class_colors)
        highest = int(mask.max(initial=0))
        if fixed and highest > len(names):
            raise SamplesError(
                f"{path}: label {highest} but only {len(names)} class names were given"
            )
        if highest > MAX_CLASSES:
            raise SamplesError(f"{path}: label {highest} is above the most classes, {MAX_CLASSES}")
        names += [f"class{index}" for index in range(len(names) + 1, highest + 1)]
    if not np.any(mask):
        raise SamplesError(f"{path}: no labelled pixels (all 0 = unlabelled)")
    return Samples(mask, names)


def split_holdout(
    mask: np.ndarray, fraction: float, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split labelled pixels into training and held-out masks, stratified by class.

    Pixels are drawn at random, so neighbouring pixels of one scribble land on both sides
    and held-out accuracy is optimistic; a separate sample file is the stricter test.

    Returns
    -------
    train, held_out : int32 ndarrays ``(H, W)`` with the labels of ``mask`` or 0
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(random_state)
    flat = mask.ravel()
    held_out = np.zeros_like(flat)
    for label in np.unique(flat[flat > 0]):
        where = np.flatnonzero(flat == label)
        chosen = rng.choice(where, size=round(fraction * where.size), replace=False)
        held_out[chosen] = label
    train = np.where(held_out > 0, 0, flat)
    return train.reshape(mask.shape), held_out.reshape(mask.shape)


def simulate_scribbles(
    truth: np.ndarray,
    pixels_per_class: int,
    random_state: int = 0,
    stroke_length: int = 15,
    ignore: tuple[int, ...] = (0,),
) -> np.ndarray:
    """Sparse scribble-like samples from a dense label image, as a user would draw them.

    Short straight strokes at random places and angles, each clipped to the class under
    its centre, until every class has about ``pixels_per_class`` labelled pixels.

    Parameters
    ----------
    truth : int ndarray ``(H, W)``
        Dense labels; values in ``ignore`` are never sampled.
    pixels_per_class : int
    random_state : int
        Seeds the strokes' places and angles.
    stroke_length : int
        Length of one stroke in pixels.

    Returns
    -------
    int32 ndarray ``(H, W)``: the labels of ``truth`` on the strokes, 0 elsewhere.
    """
    rng = np.random.default_rng(random_state)
    height, width = truth.shape
    samples = np.zeros(truth.shape, dtype=np.int32)
    for label in np.unique(truth):
        if label in ignore:
            continue
        rows, columns = np.nonzero(truth == label)
        taken = 0
        for start in rng.permutation(rows.size)[: max(1, pixels_per_class)]:
            if taken >= pixels_per_class:
                break
            angle = rng.uniform(0, np.pi)
            half = stroke_length / 2
            row0, column0 = rows[start], columns[start]
            stroke_rows, stroke_columns = line(
                int(np.clip(row0 - half * np.sin(angle), 0, height - 1)),
                int(np.clip(column0 - half * np.cos(angle), 0, width - 1)),
                int(np.clip(row0 + half * np.sin(angle), 0, height - 1)),
                int(np.clip(column0 + half * np.cos(angle), 0, width - 1)),
            )
            keep = (truth[stroke_rows, stroke_columns] == label) & (
                samples[stroke_rows, stroke_columns] == 0
            )
            keep &= np.cumsum(keep) <= pixels_per_class - taken
            samples[stroke_rows[keep], stroke_columns[keep]] = label
            taken += int(keep.sum())
    return samples
