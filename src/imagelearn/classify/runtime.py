"""Where PyTorch runs: the device, and thread counts that respect the cores we are given."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_count() -> int:
    """``$IMAGELEARN_THREADS`` when set (1 is fastest on a machine shared with other jobs), else
    :func:`available_cores`. Used by PyTorch and ONNX Runtime alike."""
    requested = os.environ.get("IMAGELEARN_THREADS", "")
    return int(requested) if requested.isdigit() and int(requested) > 0 else available_cores()


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
