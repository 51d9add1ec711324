"""Moved to :mod:`imagelearn.data.idx`; kept so that old imports still work."""

from imagelearn.data.idx import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx

__all__ = ["FASHION_MNIST_CLASSES", "load_fashion_mnist", "read_idx"]
