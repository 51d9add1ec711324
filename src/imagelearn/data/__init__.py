"""Reading image collections: class folders, flat folders, CSV lists and split folders."""

from typing import TYPE_CHECKING

from imagelearn.core.lazy import lazy_exports

if TYPE_CHECKING:
    from imagelearn.data.check import CollectionReport, check_collection
    from imagelearn.data.collection import find_images, load_dataset, load_splits
    from imagelearn.data.dataset import DatasetError, ImageDataset
    from imagelearn.data.idx import load_fashion_mnist, read_idx
    from imagelearn.data.split import stratified_split

__all__ = [
    "CollectionReport",
    "DatasetError",
    "ImageDataset",
    "check_collection",
    "find_images",
    "load_dataset",
    "load_fashion_mnist",
    "load_splits",
    "read_idx",
    "stratified_split",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
