"""Shared core: image loading, model bundles, progress and parallel helpers."""

from imagelearn.core.bundle import BundleError, load_bundle, save_bundle
from imagelearn.core.images import ImageReadError, load_image

__all__ = ["BundleError", "ImageReadError", "load_bundle", "load_image", "save_bundle"]
