"""Pixel classifiers that train with scikit-learn and predict from plain arrays.

Each registry entry fits a scikit-learn estimator and exports what prediction needs as
NumPy arrays, so a saved model is arrays in a safetensors file, never a pickle. Prediction
always runs from those arrays (right after fitting too), which makes a reloaded model give
exactly the same answers:

- ``random_forest``: the trees' node arrays (``tree_.__getstate__``), rebuilt into
  scikit-learn's compiled ``Tree`` objects for fast prediction;
- ``svm``: an RBF-kernel SVC's support vectors, dual coefficients and intercepts, evaluated
  one-vs-one in NumPy with scikit-learn's ``break_ties`` voting;
- ``mlp``: the layers' weights and biases, evaluated in NumPy.

SVM and MLP standardise features first; the scaler's mean and scale are exported too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from imagelearn.core.execution import thread_map

Arrays = dict[str, np.ndarray]


class Predictor(Protocol):
    """What prediction needs: class scores that sum to one per row."""

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, F)`` float32 -> ``(N, K)`` float32."""


# ---------------------------------------------------------------- random forest


def _fit_forest(
    features: np.ndarray, labels: np.ndarray, params: dict, random_state: int, n_jobs: int | None
):
    from sklearn.ensemble import RandomForestClassifier

    options = {"n_estimators": 50, "n_jobs": n_jobs, "random_state": random_state, **params}
    forest = RandomForestClassifier(**options).fit(features, labels)
    fields = forest.estimators_[0].tree_.__getstate__()["nodes"].dtype.names
    states = [tree.tree_.__getstate__() for tree in forest.estimators_]
    arrays = {
        f"nodes.{name}": np.concatenate([state["nodes"][name] for state in states])
        for name in fields
    }
    arrays["values"] = np.concatenate([state["values"][:, 0, :] for state in states]).astype(
        np.float64
    )
    arrays["node_counts"] = np.array([state["node_count"] for state in states], dtype=np.int64)
    arrays["max_depths"] = np.array([state["max_depth"] for state in states], dtype=np.int64)
    arrays["n_features"] = np.array([features.shape[1]], dtype=np.int64)
    return forest, arrays


@dataclass
class ForestPredictor:
    """A random forest rebuilt from node arrays into scikit-learn ``Tree`` objects."""

    arrays: Arrays
    n_jobs: int | None = None
    trees: list = field(init=False)
    leaf_proba: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        from sklearn.tree._tree import NODE_DTYPE, Tree

        n_classes = self.arrays["values"].shape[1]
        n_features = int(self.arrays["n_features"][0])
        ends = np.cumsum(self.arrays["node_counts"])
        self.trees, self.leaf_proba = [], []
        for index, (start, end) in enumerate(
            zip(ends - self.arrays["node_counts"], ends, strict=True)
        ):
            nodes = np.zeros(end - start, dtype=NODE_DTYPE)
            for name in NODE_DTYPE.names:
                nodes[name] = self.arrays[f"nodes.{name}"][start:end]
            tree = Tree(n_features, np.array([n_classes], dtype=np.intp), 1)
            tree.__setstate__(
                {
                    "max_depth": int(self.arrays["max_depths"][index]),
                    "node_count": int(end - start),
                    "nodes": nodes,
                    "values": np.ascontiguousarray(self.arrays["values"][start:end, None, :]),
                }
            )
            self.trees.append(tree)
            values = self.arrays["values"][start:end]
            total = np.maximum(values.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
            self.leaf_proba.append(values / total)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float32)
        total = np.zeros((features.shape[0], self.arrays["values"].shape[1]), dtype=np.float64)
        for leaves, proba in zip(
            thread_map(lambda tree: tree.apply(features), self.trees, self.n_jobs),
            self.leaf_proba,
            strict=True,
        ):
            total += proba[leaves]  # in tree order: the same sum however the work is split
        return (total / len(self.trees)).astype(np.float32)


# ---------------------------------------------------------------- standardised models


def _fit_scaler(features: np.ndarray) -> tuple[Any, Arrays]:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    return scaler, {
        "mean": scaler.mean_.astype(np.float64),
        "scale": scaler.scale_.astype(np.float64),
    }


def _standardise(arrays: Arrays, features: np.ndarray) -> np.ndarray:
    return (features.astype(np.float64) - arrays["mean"]) / arrays["scale"]


def _fit_svm(
    features: np.ndarray, labels: np.ndarray, params: dict, random_state: int, n_jobs: int | None
):
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    scaler, arrays = _fit_scaler(features)
    scaled = scaler.transform(features)
    gamma = params.get("gamma", 1.0 / (scaled.shape[1] * max(float(scaled.var()), 1e-12)))
    options = {
        "C": 10.0,
        **params,
        "gamma": gamma,
        "kernel": "rbf",
        "break_ties": True,
        "random_state": random_state,
    }
    svm = SVC(**options).fit(scaled, labels)
    n_classes = len(svm.classes_)
    # scikit-learn flips the signs of a two-class SVC; store libsvm's one-vs-one convention.
    sign = -1.0 if n_classes == 2 else 1.0
    arrays |= {
        "support_vectors": svm.support_vectors_.astype(np.float64),
        "dual_coef": sign * svm.dual_coef_.astype(np.float64),
        "intercept": sign * svm.intercept_.astype(np.float64),
        "n_support": svm.n_support_.astype(np.int64),
        "gamma": np.array([gamma], dtype=np.float64),
    }
    return make_pipeline(scaler, svm), arrays


@dataclass
class SvmPredictor:
    """An RBF SVC evaluated from its support vectors, one-vs-one, in chunks of pixels.

    ``predict_proba`` returns scikit-learn's ``ovr`` decision values (votes plus a
    confidence term below 1/3) shifted to be positive and normalised: scores whose argmax
    is the SVC's prediction, not calibrated probabilities.
    """

    arrays: Arrays
    chunk: int = 8192

    def _kernel(self, scaled: np.ndarray) -> np.ndarray:
        vectors = self.arrays["support_vectors"]
        distances = (
            (scaled**2).sum(axis=1)[:, None]
            + (vectors**2).sum(axis=1)[None, :]
            - 2.0 * scaled @ vectors.T
        )
        return np.exp(-self.arrays["gamma"][0] * np.maximum(distances, 0.0))

    def _decision(self, scaled: np.ndarray) -> np.ndarray:
        kernel = self._kernel(scaled)
        n_support = self.arrays["n_support"]
        starts = np.concatenate([[0], np.cumsum(n_support)])
        dual, intercept = self.arrays["dual_coef"], self.arrays["intercept"]
        n_classes = len(n_support)
        votes = np.zeros((scaled.shape[0], n_classes))
        confidence = np.zeros((scaled.shape[0], n_classes))
        pair = 0
        for first in range(n_classes):
            for second in range(first + 1, n_classes):
                own = slice(starts[first], starts[first + 1])
                other = slice(starts[second], starts[second + 1])
                value = (
                    kernel[:, own] @ dual[second - 1, own]
                    + kernel[:, other] @ dual[first, other]
                    + intercept[pair]
                )
                votes[:, first] += value > 0
                votes[:, second] += value <= 0
                confidence[:, first] += value
                confidence[:, second] -= value
                pair += 1
        return votes + confidence / (3 * (np.abs(confidence) + 1))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        scores = np.concatenate(
            [
                self._decision(_standardise(self.arrays, features[start : start + self.chunk]))
                for start in range(0, max(1, features.shape[0]), self.chunk)
            ]
        )[: features.shape[0]]
        scores = scores - scores.min(axis=1, keepdims=True) + 1e-6
        return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)


def _fit_mlp(
    features: np.ndarray, labels: np.ndarray, params: dict, random_state: int, n_jobs: int | None
):
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    scaler, arrays = _fit_scaler(features)
    options = {
        "hidden_layer_sizes": (64, 64),
        "max_iter": 500,
        "random_state": random_state,
        **params,
    }
    mlp = MLPClassifier(**options).fit(scaler.transform(features), labels)
    if mlp.activation != "relu":
        raise ValueError("only the relu activation is supported for saved MLP pixel classifiers")
    for index, (weights, bias) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        arrays[f"layer{index}.weight"] = weights.astype(np.float64)
        arrays[f"layer{index}.bias"] = bias.astype(np.float64)
    return make_pipeline(scaler, mlp), arrays


@dataclass
class MlpPredictor:
    """A ReLU multi-layer perceptron with a softmax (or, for two classes, logistic) output."""

    arrays: Arrays

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        activation = _standardise(self.arrays, features)
        n_layers = sum(name.endswith(".weight") for name in self.arrays)
        for index in range(n_layers):
            activation = (
                activation @ self.arrays[f"layer{index}.weight"] + self.arrays[f"layer{index}.bias"]
            )
            if index < n_layers - 1:
                np.maximum(activation, 0, out=activation)
        if activation.shape[1] == 1:
            positive = 1.0 / (1.0 + np.exp(-activation[:, 0]))
            return np.stack([1 - positive, positive], axis=1).astype(np.float32)
        activation -= activation.max(axis=1, keepdims=True)
        exponential = np.exp(activation)
        return (exponential / exponential.sum(axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class ClassifierKind:
    """``fit(features, labels, params, random_state, n_jobs) -> (estimator, arrays)`` and
    ``predictor(arrays, n_jobs) -> Predictor``; labels are ``0..K-1``."""

    fit: Callable[[np.ndarray, np.ndarray, dict, int, int | None], tuple[Any, Arrays]]
    predictor: Callable[[Arrays, int | None], Predictor]
    description: str


CLASSIFIERS: dict[str, ClassifierKind] = {
    "random_forest": ClassifierKind(
        _fit_forest,
        lambda arrays, n_jobs: ForestPredictor(arrays, n_jobs),
        "random forest, 50 trees",
    ),
    "svm": ClassifierKind(
        _fit_svm,
        lambda arrays, n_jobs: SvmPredictor(arrays),
        "RBF-kernel SVM on standardised features",
    ),
    "mlp": ClassifierKind(
        _fit_mlp, lambda arrays, n_jobs: MlpPredictor(arrays), "two-layer ReLU perceptron (64, 64)"
    ),
}


def classifier_kind(name: str) -> ClassifierKind:
    """The registry entry for ``name``, or a ValueError listing the choices."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose from {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[name]
