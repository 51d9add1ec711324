"""A linear SVM trained in bounded memory: scikit-learn's ``LinearSVC`` objective, solved in
the primal on features that a row-wise map computes chunk by chunk.

``LinearSVC`` (liblinear) needs the whole feature matrix in memory, as float64, and copies it
again; with the additive chi-squared map of Bag-of-Features histograms (about 34,000 values per
image) that is about 1 MB per training image. :class:`ChunkedLinearSVC` minimizes the same
objective (L2-regularized squared hinge, one-vs-rest for more than two classes, the intercept
as liblinear's: a constant feature of value 1 whose weight is regularized) by trust-region
Newton-CG (``scipy.optimize.minimize(method="trust-ncg")``, as liblinear's primal solver TRON),
with exact gradients and Hessian-vector products accumulated over row chunks. The mapped
features are held, float32, as far as they fit :data:`MEMORY_BUDGET` (all of them for small
problems); the rows beyond are mapped again on every pass, :data:`CHUNK_BYTES` of mapped
features at a time, so memory no longer grows with the mapped matrix (only with the inputs and
the ``n_samples x n_problems`` margins). Each pass over the rows computes the objective and
gradient, or one Hessian-vector product, of all the one-vs-rest problems at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from imagelearn.core.errors import ParameterError

#: Bytes a fit may use for mapped features: while liblinear's copies fit, it runs liblinear
#: (``LinearSVC``, fastest); beyond, the Newton solver holds this many bytes of mapped float32
#: features and maps the rows beyond again, chunk by chunk, on every pass over the data.
MEMORY_BUDGET = 2**30
#: liblinear's peak memory as a multiple of the mapped float32 matrix (its float64 copy and its
#: own sparse copy; measured on BoF chi2 features: 858 MiB for 129 MiB, 1,596 for 258).
LIBLINEAR_MEMORY_FACTOR = 7
#: Bytes of mapped features (float32) computed or read at once; their float64 copy for the
#: products is twice that.
CHUNK_BYTES = 32 * 2**20

FeatureMap = Callable[[np.ndarray], np.ndarray]
#: Solvers of :class:`ChunkedLinearSVC`.
SOLVERS = ("auto", "liblinear", "newton")


class _Rows:
    """The rows of ``feature_map(X)``, chunk by chunk: the first ones, as many as fit
    ``budget`` bytes of float32, mapped once and held; the others mapped again on every pass."""

    def __init__(self, X: np.ndarray, feature_map: FeatureMap | None, budget: int) -> None:
        self.X = X
        self.feature_map = feature_map
        self.n_features = self._map(X[:1]).shape[1]
        self.chunk_rows = max(1, CHUNK_BYTES // (4 * self.n_features))
        self._buffer: np.ndarray | None = None
        if feature_map is None:
            self.held = X
        else:
            n_held = min(len(X), budget // (4 * self.n_features))
            self.held = np.empty((n_held, self.n_features), np.float32)
            for rows in self._slices(0, len(self.held)):
                self.held[rows] = self._map(X[rows])

    def mapped(self) -> np.ndarray:
        """All mapped rows, float32 (n_samples, n_features): the held ones when all are held."""
        if len(self.held) == len(self.X):
            return self.held
        return np.concatenate([self._map(self.X[rows]) for rows in self._slices(0, len(self.X))])

    def _map(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.feature_map is None else np.asarray(self.feature_map(rows), np.float32)

    def _slices(self, start: int, stop: int) -> Iterator[slice]:
        for first in range(start, stop, self.chunk_rows):
            yield slice(first, min(first + self.chunk_rows, stop))

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, features)`` of every chunk, features float64 (n_rows, n_features), valid
        until the next chunk (one buffer is reused: no page faults on every pass)."""
        n_held = len(self.held)
        for rows in (*self._slices(0, n_held), *self._slices(n_held, len(self.X))):
            chunk = self.held[rows] if rows.start < n_held else self._map(self.X[rows])
            if chunk.dtype == np.float64:
                yield rows, chunk
                continue
            if self._buffer is None:
                self._buffer = np.empty((min(self.chunk_rows, len(self.X)), self.n_features))
            features = self._buffer[: len(chunk)]
            np.copyto(features, chunk)
            yield rows, features


class ChunkedLinearSVC(ClassifierMixin, BaseEstimator):
    """``LinearSVC``'s default model (squared hinge, L2, one-vs-rest, regularized intercept),
    trained in the primal in bounded memory on ``feature_map(X)``.

    Parameters
    ----------
    C : float
        Weight of the squared hinge loss, as ``LinearSVC``'s ``C``.
    feature_map : callable, optional
        Maps rows ``(n_rows, n_inputs)`` to features ``(n_rows, n_features)``, row by row (e.g.
        an additive chi-squared map); applied chunk by chunk by :meth:`fit` and
        :meth:`decision_function`. None: the inputs are the features.
    tol : float
        Stop when the gradient's norm is ``tol`` times its norm at zero weights.
    max_iter : int
        Newton iterations at most.
    memory_budget : int
        Bytes of mapped features a fit may use (default :data:`MEMORY_BUDGET`): with
        ``solver="auto"``, liblinear while its copies fit, else the Newton solver holding this
        many bytes of mapped features and mapping the rows beyond again on every pass.
    solver : {"auto", "liblinear", "newton"}
        ``"liblinear"``: scikit-learn's ``LinearSVC`` on the whole mapped matrix (memory about
        :data:`LIBLINEAR_MEMORY_FACTOR` times it); ``"newton"``: the bounded-memory primal
        solver; ``"auto"``: liblinear when it fits ``memory_budget``.

    Attributes
    ----------
    coef_ : ndarray of float64, shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of float64, shape (1,) or (n_classes,)
    classes_ : ndarray, shape (n_classes,)
    n_iter_ : int
        Newton iterations run.
    n_passes_ : int
        Passes over the data (function, gradient and Hessian-vector evaluations).
    """

    def __init__(
        self,
        C: float = 1.0,
        feature_map: FeatureMap | None = None,
        tol: float = 1e-6,
        max_iter: int = 1000,
        memory_budget: int = MEMORY_BUDGET,
        solver: str = "auto",
    ) -> None:
        self.C = C
        self.feature_map = feature_map
        self.tol = tol
        self.max_iter = max_iter
        self.memory_budget = memory_budget
        self.solver = solver

    def fit(self, X: np.ndarray, y: np.ndarray) -> ChunkedLinearSVC:
        """Train on inputs ``X`` (n_samples, n_inputs) and labels ``y`` (n_samples,).

        Memory: ``X`` itself, at most ``memory_budget`` bytes of mapped features held, one
        chunk of :data:`CHUNK_BYTES` mapped at a time (with its float64 copy), and a few
        ``(n_samples, n_problems)`` arrays.
        """
        X = np.asarray(X)
        y = np.asarray(y)
        if self.solver not in SOLVERS:
            raise ParameterError("solver", f"must be one of {SOLVERS}, got {self.solver!r}")
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n_samples, n_inputs) with one label each; got {X.shape}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"training needs at least 2 classes; got {len(self.classes_)}")
        positives = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        signs = np.where(y[:, None] == positives[None, :], 1.0, -1.0)  # (n_samples, n_problems)
        rows = _Rows(X, self.feature_map, self.memory_budget)
        if self.solver == "liblinear" or (
            self.solver == "auto"
            and LIBLINEAR_MEMORY_FACTOR * 4 * len(X) * rows.n_features <= self.memory_budget
        ):
            return self._fit_liblinear(rows.mapped(), y)
        problem = _SquaredHinge(rows, signs, float(self.C))
        start = np.zeros(problem.size)
        gradient_norm = np.linalg.norm(problem.value_and_gradient(start)[1])
        result = minimize(
            problem.value_and_gradient,
            start,
            jac=True,
            hessp=problem.hessian_product,
            method="trust-ncg",
            options={"gtol": self.tol * gradient_norm, "maxiter": self.max_iter},
        )
        if result.nit >= self.max_iter:
            warnings.warn(
                f"ChunkedLinearSVC did not converge in {self.max_iter} iterations",
                ConvergenceWarning,
                stacklevel=2,
            )
        weights = result.x.reshape(len(positives), rows.n_features + 1)
        self.coef_ = weights[:, :-1].copy()
        self.intercept_ = weights[:, -1].copy()
        self.n_iter_ = int(result.nit)
        self.n_passes_ = problem.n_passes
        return self

    def _fit_liblinear(self, features: np.ndarray, y: np.ndarray) -> ChunkedLinearSVC:
        """The same model by liblinear's dual coordinate descent, on all mapped features."""
        svm = LinearSVC(C=self.C, tol=self.tol * 100, max_iter=5000, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                svm.fit(features, y)
            except ConvergenceWarning:
                warnings.warn(
                    f"ChunkedLinearSVC (liblinear) did not converge in {svm.max_iter} iterations",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        self.coef_, self.intercept_ = (
            svm.coef_.astype(np.float64),
            svm.intercept_.astype(np.float64),
        )
        self.n_iter_, self.n_passes_ = int(np.max(svm.n_iter_)), int(np.max(svm.n_iter_))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Margins of ``X`` (n_samples, n_inputs): (n_samples,) for two classes (of
        ``classes_[1]``), else (n_samples, n_classes); mapped chunk by chunk."""
        check_is_fitted(self, "coef_")
        X = np.asarray(X)
        scores = np.empty((len(X), len(self.coef_)))
        if not len(X):
            return scores[:, 0] if len(self.coef_) == 1 else scores
        rows = _Rows(X, self.feature_map, budget=0)
        for chunk_rows, features in rows.chunks():
            scores[chunk_rows] = features @ self.coef_.T + self.intercept_
        return scores[:, 0] if len(self.coef_) == 1 else scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class of highest margin of every row of ``X``, shape (n_samples,)."""
        scores = self.decision_function(X)
        return self.classes_[(scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)]


class _SquaredHinge:
    """The one-vs-rest objective ``sum_k 0.5 |w_k|^2 + C sum_i max(0, 1 - s_ik w_k.[x_i, 1])^2``
    (the problems are independent: their sum is minimized at once), its gradient and its
    generalized Hessian's products, each one pass over ``rows``."""

    def __init__(self, rows: _Rows, signs: np.ndarray, C: float) -> None:
        self.rows = rows
        self.signs = signs
        self.C = C
        self.shape = (signs.shape[1], rows.n_features + 1)
        self.size = self.shape[0] * self.shape[1]
        self.n_passes = 0
        self._active_at: np.ndarray | None = None
        self._active = np.zeros(signs.shape, bool)

    def _margins(self, weights: np.ndarray, features: np.ndarray) -> np.ndarray:
        return features @ weights[:, :-1].T + weights[:, -1]

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient at ``theta`` (n_problems * (n_features + 1),); records the
        samples inside the margin for :meth:`hessian_product`."""
        weights = theta.reshape(self.shape)
        value = 0.5 * float(theta @ theta)
        gradient = weights.copy()
        for rows, features in self.rows.chunks():
            signs = self.signs[rows]
            slack = np.maximum(0.0, 1.0 - signs * self._margins(weights, features))
            self._active[rows] = slack > 0
            value += self.C * float((slack * slack).sum())
            residual = -2.0 * self.C * signs * slack  # d loss / d margin, (n_rows, n_problems)
            gradient[:, :-1] += residual.T @ features
            gradient[:, -1] += residual.sum(axis=0)
        self._active_at = theta.copy()
        self.n_passes += 1
        return value, gradient.ravel()

    def hessian_product(self, theta: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """The generalized Hessian at ``theta`` times ``vector``: ``v + 2C X_A^T X_A v`` over
        the samples ``A`` inside the margin of each problem."""
        if self._active_at is None or not np.array_equal(theta, self._active_at):
            self.value_and_gradient(theta)
        direction = vector.reshape(self.shape)
        product = direction.copy()
        for rows, features in self.rows.chunks():
            curvature = 2.0 * self.C * self._active[rows] * self._margins(direction, features)
            product[:, :-1] += curvature.T @ features
            product[:, -1] += curvature.sum(axis=0)
        self.n_passes += 1
        return product.ravel()
