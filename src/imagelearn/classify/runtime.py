"""Where PyTorch runs: the device, with the thread policy of :mod:`imagelearn.core.threads`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from imagelearn.core.threads import thread_count

__all__ = ["configure_torch", "single_thread"]


def configure_torch(device: str | None = None) -> torch.device:
    """Use at most :func:`thread_count` threads; return ``device`` or the GPU when there is one."""
    if torch.get_num_threads() > thread_count():
        torch.set_num_threads(thread_count())
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def single_thread() -> Iterator[None]:
    """Run tiny tensor work (a linear head on embeddings) on one thread: thread start-up and
    synchronisation cost more than they gain there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
