"""What a run that scores a labelled collection returns: where its report is, and its metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EvaluationResult:
    """A labelled collection scored, with ``metrics.json``, ``confusion_matrix.png`` and
    ``misclassified.csv`` written into ``out``.

    Attributes
    ----------
    out : Path
        The directory the report was written into.
    metrics : mapping
        The content of ``out/metrics.json`` (see
        :func:`~imagelearn.evaluation.write_evaluation`).
    """

    out: Path
    metrics: Mapping[str, Any]

    @property
    def accuracy(self) -> float:
        """Fraction of the scored images labelled correctly."""
        return float(self.metrics["accuracy"])

    @property
    def n_images(self) -> int:
        """Images scored (unreadable ones are skipped, not scored)."""
        return int(self.metrics["n_images"])

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every unreadable image, training images first."""
        return [
            (item["path"], item["reason"])
            for key in ("train_skipped", "skipped")
            for item in self.metrics.get(key, [])
        ]
