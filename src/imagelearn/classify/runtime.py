"""Where PyTorch runs: the device, with the thread policy of :mod:`imagelearn.core.threads`."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from imagelearn.core.threads import cap_torch_threads, native_threads

__all__ = ["configure_torch", "single_thread"]


def configure_torch(device: str | None = None) -> torch.device:
    """Use at most :func:`thread_count` threads; return ``device`` or the GPU when there is one."""
    cap_torch_threads()
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def single_thread() -> AbstractContextManager[None]:
    """Run tiny tensor work (a linear head on embeddings) on one thread: thread start-up and
    synchronisation cost more than they gain there."""
    return native_threads(1, ("torch",))
