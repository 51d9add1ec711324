"""Reading image collections: class folders, flat folders, CSV lists and split folders."""

from imagelearn.data.check import CollectionReport, check_collection
from imagelearn.data.collection import (
    DatasetError,
    ImageDataset,
    find_images,
    load_dataset,
    load_splits,
)
from imagelearn.data.split import stratified_split

__all__ = [
    "CollectionReport",
    "DatasetError",
    "ImageDataset",
    "check_collection",
    "find_images",
    "load_dataset",
    "load_splits",
    "stratified_split",
]
