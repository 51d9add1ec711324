"""Thumbnails and browser renditions of indexed images, made once and kept in the cache.

An entry is named by the image's content hash (the catalogue's ``sha256``) and its size, so
a thumbnail is made once per content whatever its path, and an index directory is never
written: the entries live in the cache home (``$IMAGELEARN_CACHE/thumbnails``) or in the
folder the server was given.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

from PIL import Image

from imagelearn.core.cache import CacheBudget, cache_root, mark_used
from imagelearn.core.images import DEFAULT_MAX_PIXELS, load_image, open_image

#: Longer side of a thumbnail (pixels): sharp in a grid cell on a high-density screen.
THUMBNAIL_SIDE = 256
#: Longer side of the rendition served for images browsers do not show (TIFF, PPM, ...).
RENDITION_SIDE = 2048
#: Formats (as Pillow names them) every browser shows, served as they are.
BROWSER_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
#: The JPEG quality of thumbnails and renditions.
JPEG_QUALITY = 85

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sniff_format(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str:
    """The format Pillow reads in the file's bytes (``"JPEG"``, ``"TIFF"``...).

    Raises
    ------
    ImageReadError
        The file is missing, unreadable or too large.
    """
    with open_image(path, max_pixels=max_pixels) as image:
        return str(image.format)


class ThumbnailCache:
    """JPEG thumbnails (and renditions) of images by content hash, made on first request.

    Parameters
    ----------
    folder : path-like, optional
        Where entries go; None: ``$IMAGELEARN_CACHE/thumbnails``.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_root("thumbnails")
        self._lock = threading.Lock()
        self._making: dict[Path, threading.Lock] = {}
        self._budget = CacheBudget.of(self.folder)

    def entry(self, digest: str, side: int) -> Path:
        """The path of the entry for content ``digest`` at longer side ``side``."""
        if not _DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.folder / digest[:2] / f"{digest}-{int(side)}.jpg"

    def get(self, source: str | os.PathLike, digest: str, side: int = THUMBNAIL_SIDE) -> Path:
        """The cached JPEG of ``source`` at longer side ``side`` (made now if missing).

        Raises
        ------
        ImageReadError
            ``source`` cannot be read (moved, corrupt, beyond the pixel limit).
        """
        path = self.entry(digest, side)
        if path.is_file():
            mark_used(path)
            return path
        with self._lock:
            making = self._making.setdefault(path, threading.Lock())
        with making:  # one thread makes an entry; the others wait for it
            if not path.is_file():
                self._write(path, load_image(source, "RGB", max_side=side))
        with self._lock:
            self._making.pop(path, None)
        return path

    def _write(self, path: Path, pixels) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                Image.fromarray(pixels).save(stream, "JPEG", quality=JPEG_QUALITY)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        if self._budget is not None:
            self._budget.record(path.stat().st_size)
