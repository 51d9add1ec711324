"""The registry of detectors by name, and :func:`make_detector`."""

from __future__ import annotations

from typing import Any

from imagelearn.features.dense import DenseLab, DenseOpponentRootSIFT, DenseRootSIFT, DenseSIFT
from imagelearn.features.detectors import AKAZE, ORB, SIFT, Detector, RootSIFT

#: Detector classes by registry name.
DETECTORS: dict[str, type[Detector]] = {
    detector.name: detector
    for detector in (
        SIFT,
        RootSIFT,
        ORB,
        AKAZE,
        DenseSIFT,
        DenseRootSIFT,
        DenseLab,
        DenseOpponentRootSIFT,
    )
}


def make_detector(name: str, **params: Any) -> Detector:
    """Build the detector registered as ``name`` with the given parameters.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones) or unknown parameter.
    """
    try:
        detector = DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}"
        ) from None
    valid = detector._param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"detector {name!r} has no parameter {', '.join(unknown)}; its parameters: {', '.join(valid)}"
        )
    return detector(**params)
