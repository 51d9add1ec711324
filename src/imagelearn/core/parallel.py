"""Old home of ``resolve_n_jobs``; bulk work now goes through :mod:`imagelearn.core.execution`."""

from imagelearn.core.execution import resolve_n_jobs

__all__ = ["resolve_n_jobs"]
