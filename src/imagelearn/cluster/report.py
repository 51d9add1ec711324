"""What a person looks at after clustering: montages, a 2-D map, the silhouette curve, one HTML page."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from imagelearn.core.bundle import atomic_write_bytes, atomic_write_text
from imagelearn.core.images import ImageReadError, load_image
from imagelearn.core.plotting import pyplot, save_figure

THUMBNAIL = 96


def montage(
    paths: Sequence[str | os.PathLike], path: str | os.PathLike, columns: int = 8, limit: int = 48
) -> Path:
    """A grid of thumbnails of the first ``limit`` images, saved as PNG."""
    chosen = list(paths)[:limit]
    rows = max(1, -(-len(chosen) // columns))
    sheet = Image.new("RGB", (columns * THUMBNAIL, rows * THUMBNAIL), (255, 255, 255))
    for index, image_path in enumerate(chosen):
        try:
            tile = Image.fromarray(load_image(image_path, max_side=THUMBNAIL))
        except ImageReadError:
            continue
        x = (index % columns) * THUMBNAIL + (THUMBNAIL - tile.width) // 2
        y = (index // columns) * THUMBNAIL + (THUMBNAIL - tile.height) // 2
        sheet.paste(tile, (x, y))
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


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
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 6))
    scatter = axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab20", s=10)
    axes.set_title(f"{method} map of the images, coloured by cluster")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.colorbar(scatter, ax=axes, label="cluster")
    figure.tight_layout()
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
