"""Array files and AST parsing from several threads at once (core.npyfiles, core.lazy).

CPython up to 3.12 can fail two threads building AST objects at the same time when a garbage
collection hands the GIL over mid-way (``SystemError: AST constructor recursion depth
mismatch``; it broke a web test reading index arrays while another thread read others). The
stress below makes that likely: collections every few allocations, each running finalizers
that release the GIL, while threads read ``.npy`` headers and parse a package's source.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import numpy as np

from imagelearn.core.lazy import _type_checking_imports
from imagelearn.core.npyfiles import load_npy, load_npz

SOURCE = (Path(__file__).resolve().parents[1] / "src/imagelearn/retrieval/__init__.py").read_text()


class _Cycle:
    """Garbage in a reference cycle whose finalizer releases the GIL."""

    def __init__(self) -> None:
        self.other = self

    def __del__(self) -> None:
        os.sched_yield()  # a call that releases the GIL


def test_arrays_read_back_in_memory_and_mapped(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(5, dtype=np.uint32))
    np.savez(tmp_path / "two.npz", keypoints=np.ones((3, 4), np.float32), shape=np.array([8, 9]))
    assert load_npy(tmp_path / "ids.npy").tolist() == [0, 1, 2, 3, 4]
    mapped = load_npy(tmp_path / "ids.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    stored = load_npz(tmp_path / "two.npz")
    assert sorted(stored) == ["keypoints", "shape"] and stored["shape"].tolist() == [8, 9]


def test_threads_reading_headers_and_parsing_sources_at_once_never_fail(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(5, dtype=np.uint32))
    failures: list[BaseException] = []

    def work() -> None:
        for _ in range(100):
            _Cycle(), _Cycle()
            try:
                load_npy(tmp_path / "ids.npy")
                assert "Index" in _type_checking_imports("imagelearn.retrieval", SOURCE)
            except BaseException as error:  # reported below, whatever it is
                failures.append(error)

    threshold = gc.get_threshold()
    gc.set_threshold(50, 1, 1)
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.set_threshold(*threshold)
    assert failures == []
