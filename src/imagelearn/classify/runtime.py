"""Where PyTorch runs: the device, with the thread policy of :mod:`imagelearn.core.threads`."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from imagelearn.core.threads import available_cores, cap_torch_threads, native_threads, thread_count

__all__ = ["available_cores", "configure_torch", "single_thread", "thread_count"]


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
