"""What a person looks at after clustering: montages, a 2-D map, the silhouette curve, one HTML page."""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from imagelearn.core.bundle import atomic_write_bytes, atomic_write_text
from imagelearn.core.images import ImageReadError, load_image
from imagelearn.core.plotting import category_colors, pyplot, save_figure

#: Side of a montage's thumbnails, and height of its caption strip, pixels.
THUMBNAIL = 96
CAPTION_HEIGHT = 24


def montage(
    paths: Sequence[str | os.PathLike], path: str | os.PathLike, columns: int = 8, limit: int = 48
) -> Path:
    """A grid of thumbnails of the first ``limit`` images under a caption saying how many of
    them it shows ("48 of 340 images"), saved as PNG (the caption is also its ``Description``
    text)."""
    chosen = list(paths)[:limit]
    caption = f"{len(chosen)} of {len(paths)} images"
    rows = max(1, -(-len(chosen) // columns))
    sheet = Image.new(
        "RGB", (columns * THUMBNAIL, CAPTION_HEIGHT + rows * THUMBNAIL), (255, 255, 255)
    )
    ImageDraw.Draw(sheet).text(
        (6, CAPTION_HEIGHT // 2),
        caption,
        fill=(0, 0, 0),
        font=ImageFont.load_default(size=CAPTION_HEIGHT * 2 // 3),
        anchor="lm",
    )
    for index, image_path in enumerate(chosen):
        try:
            tile = Image.fromarray(load_image(image_path, max_side=THUMBNAIL))
        except ImageReadError:
            continue
        x = (index % columns) * THUMBNAIL + (THUMBNAIL - tile.width) // 2
        y = CAPTION_HEIGHT + (index // columns) * THUMBNAIL + (THUMBNAIL - tile.height) // 2
        sheet.paste(tile, (x, y))
    text = PngInfo()
    text.add_text("Description", caption)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", pnginfo=text)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def cluster_map_figure(points: np.ndarray, labels: np.ndarray, title: str) -> Any:
    """A matplotlib scatter of ``points`` (n_images, 2), one colour and one legend entry per
    cluster (``labels`` 0..k-1; -1, HDBSCAN's noise, in grey)."""
    figure, axes = pyplot().subplots(figsize=(7.5, 6))
    clusters = sorted(set(labels.tolist()) - {-1})
    colors = category_colors(len(clusters))
    # beyond the 20 colours of tab20, the marker tells clusters of the same colour apart
    markers = "os^Dv"
    for rank, (cluster, color) in enumerate(zip(clusters, colors, strict=True)):
        members = labels == cluster
        axes.scatter(
            *points[members].T,
            color=np.array(color) / 255,
            marker=markers[rank // 20 % len(markers)],
            s=12,
            label=f"cluster {cluster} ({int(members.sum())})",
        )
    if (labels == -1).any():
        noise = labels == -1
        axes.scatter(
            *points[noise].T, color="0.7", marker="x", s=10, label=f"noise ({noise.sum()})"
        )
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        ncols=-(-(len(clusters) + 1) // 25),
        fontsize="small",
        markerscale=1.5,
        frameon=False,
    )
    figure.tight_layout()
    return figure


def map_points(
    vectors: np.ndarray, max_points: int = 5000, random_state: int = 0
) -> tuple[np.ndarray, str]:
    """2-D positions of ``vectors`` ``(n_images, n_dims)``: t-SNE, PCA beyond ``max_points``.

    Returns
    -------
    points : ndarray of float, shape (n_images, 2)
    method : str
        ``"t-SNE"`` or ``"PCA"``.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if len(vectors) <= max_points and len(vectors) > 5:
        perplexity = min(30.0, (len(vectors) - 1) / 3)
        points = TSNE(
            n_components=2, perplexity=perplexity, random_state=random_state, init="pca"
        ).fit_transform(vectors)
        return points, "t-SNE"
    points = (
        PCA(n_components=2, random_state=random_state).fit_transform(vectors)
        if len(vectors) > 2
        else np.zeros((len(vectors), 2))
    )
    return points, "PCA"


def embedding_map(
    points: np.ndarray, labels: np.ndarray, path: str | os.PathLike, method: str
) -> Path:
    """The 2-D ``points`` of :func:`map_points` coloured by cluster, saved as PNG."""
    figure = cluster_map_figure(points, labels, f"{method} map of the images, coloured by cluster")
    return save_figure(figure, path)


def silhouette_plot(curve: dict[int, float], chosen: int, path: str | os.PathLike) -> Path:
    """Silhouette against k, with the chosen k marked."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5))
    ks = sorted(curve)
    axes.plot(ks, [curve[k] for k in ks], marker="o")
    axes.axvline(chosen, color="red", linestyle="--", label=f"chosen k = {chosen}")
    axes.set_xlabel("k (number of clusters)")
    axes.set_ylabel("mean silhouette")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, path)


def html_report(
    out: Path, summary: dict, cluster_sizes: Sequence[int], images: dict[str, str]
) -> Path:
    """``report.html`` linking the map, the silhouette curve and the montage of each cluster."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>imagelearn clusters</title>",
        "<style>body{font-family:sans-serif;margin:2em} img{max-width:100%} td,th{padding:2px 10px}</style>",
        f"<h1>{summary['n_clusters']} clusters of {summary['n_images']} images</h1>",
        "<table>"
        + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in summary.items()
        )
        + "</table>",
    ]
    for title, file_name in images.items():
        parts.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(file_name)}'>")
    for cluster, size in enumerate(cluster_sizes):
        parts.append(
            f"<h2>cluster {cluster} ({size} images)</h2><img src='montage_{cluster:02d}.png'>"
        )
    parts.append("<p>Per-image assignments: <a href='clusters.csv'>clusters.csv</a></p>")
    atomic_write_text(out / "report.html", "\n".join(parts))
    return out / "report.html"
