"""Writing class maps: palette PNG, overlay on the image, legend, area tables."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from imagelearn.core.bundle import atomic_write_bytes, atomic_write_json, atomic_write_text
from imagelearn.core.plotting import Color, category_colors
from imagelearn.evaluation.segmentation import class_areas

#: Longest side of overlay and legend previews; larger maps are decimated for them.
PREVIEW_SIDE = 4096


def default_colors(n_classes: int) -> list[Color]:
    """Distinct colours for ``n_classes`` classes (:func:`~imagelearn.core.plotting.category_colors`)."""
    return category_colors(n_classes)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_classmap_png(
    path: str | os.PathLike, label_map: np.ndarray, colors: Sequence[Color]
) -> None:
    """A palette PNG whose pixel values are the labels (0 black, ``k`` = ``colors[k-1]``).

    It reads back as a sample label image, and displays in colour.
    """
    image = Image.fromarray(np.asarray(label_map, dtype=np.uint8), mode="L").convert("P")
    palette = [0, 0, 0] + [channel for color in colors for channel in color]
    image.putpalette(palette + [0] * (768 - len(palette)))
    atomic_write_bytes(path, _png_bytes(image))


def display_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB for showing any raster: gray, RGB, or the first three bands stretched."""
    if pixels.shape[2] == 3 and pixels.dtype == np.uint8:
        return pixels
    if pixels.shape[2] == 1 and pixels.dtype == np.uint8:
        return np.repeat(pixels, 3, axis=2)
    bands = pixels[..., :3].astype(np.float32)
    low, high = np.percentile(bands, [2, 98], axis=(0, 1))
    scaled = np.clip((bands - low) / np.maximum(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    return scaled if scaled.shape[2] == 3 else np.repeat(scaled[..., :1], 3, axis=2)


def preview_step(shape: tuple[int, ...], side: int = PREVIEW_SIDE) -> int:
    """Decimation step that brings the longer side of ``shape`` to at most ``side``."""
    return max(1, -(-max(shape[:2]) // side))


def overlay(
    raster: np.ndarray, label_map: np.ndarray, colors: Sequence[Color], alpha: float = 0.45
) -> np.ndarray:
    """Blend class colours over the image (both decimated to :data:`PREVIEW_SIDE`).

    Returns
    -------
    uint8 ``(h, w, 3)``
    """
    step = preview_step(label_map.shape)
    pixels = np.asarray(raster[::step, ::step])
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    labels = np.asarray(label_map[::step, ::step])
    rgb = display_rgb(pixels).astype(np.float32)
    palette = np.array([(0, 0, 0), *colors], dtype=np.float32)
    blended = np.where((labels > 0)[..., None], (1 - alpha) * rgb + alpha * palette[labels], rgb)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def write_legend_png(
    path: str | os.PathLike, areas: list[dict], colors: Sequence[Color], title: str
) -> None:
    """A small figure: a colour swatch, the class name and its share of the image per class."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.patches import Patch

    figure = pyplot.figure(figsize=(4, 0.4 * len(areas) + 0.8), dpi=100)
    handles = [
        Patch(color=np.array(color) / 255, label=f"{row['class']}: {row['percent']:.1f}%")
        for row, color in zip(areas, colors, strict=True)
    ]
    figure.legend(handles=handles, loc="center", frameon=False, title=title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    pyplot.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def write_areas(directory: Path, areas: list[dict]) -> None:
    """``areas.json`` and ``areas.csv``: pixels, per cent (and m^2) per class."""
    atomic_write_json(directory / "areas.json", areas)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(areas[0]) if areas else ["label", "class", "pixels", "percent"]
    )
    writer.writeheader()
    writer.writerows([{**row, "percent": f"{row['percent']:.4f}"} for row in areas])
    atomic_write_text(directory / "areas.csv", buffer.getvalue())


def write_results(
    directory: str | os.PathLike,
    raster: np.ndarray,
    label_map: np.ndarray,
    class_names: Sequence[str],
    colors: Sequence[Color] | None = None,
    pixel_size: float | None = None,
    title: str = "classes",
) -> list[dict]:
    """Write ``classmap.png``, ``overlay.png``, ``legend.png``, ``areas.csv``/``.json``.

    Returns
    -------
    The area rows (see :func:`~imagelearn.evaluation.segmentation.class_areas`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    colors = list(colors) if colors is not None else default_colors(len(class_names))
    areas = class_areas(label_map, class_names, pixel_size)
    write_classmap_png(directory / "classmap.png", label_map, colors)
    atomic_write_bytes(
        directory / "overlay.png", _png_bytes(Image.fromarray(overlay(raster, label_map, colors)))
    )
    write_legend_png(directory / "legend.png", areas, colors, title)
    write_areas(directory, areas)
    return areas
