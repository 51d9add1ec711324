"""Shared core: image loading, model bundles, progress and parallel helpers."""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.core.bundle import BundleError, load_bundle, save_bundle
    from imagelearn.core.images import ImageReadError, load_image

__all__ = ["BundleError", "ImageReadError", "load_bundle", "load_image", "save_bundle"]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
