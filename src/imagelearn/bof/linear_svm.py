"""A linear SVM trained in bounded memory: scikit-learn's ``LinearSVC`` objective, solved in
the primal on features that a row-wise map computes chunk by chunk.

``LinearSVC`` (liblinear) needs the whole feature matrix in memory, as float64, and copies it
again; with the additive chi-squared map of Bag-of-Features histograms (about 34,000 values per
image) that is about 1 MB per training image. :class:`ChunkedLinearSVC` minimizes the same
objective (L2-regularized squared hinge, one-vs-rest for more than two classes, the intercept
as liblinear's: a constant feature of value 1 whose weight is regularized) by truncated Newton
steps with a line search, as liblinear's primal solver (Galli & Lin, "A study on truncated
Newton methods for linear classification", 2021): each step solves the Newton system by
preconditioned conjugate gradients (the preconditioner: the Hessian's part along the mean of
the active rows, plus a share of the rest's diagonal, :class:`Preconditioner`), and the line
search costs no pass over the data (the margins along the step are kept). The one-vs-rest
problems are solved side by side, each with its own conjugate-gradient and line-search
coefficients and its own stopping test, so one pass over the rows serves all of them.
Products are float32 (the mapped features' own type), sums float64.

Memory: the inputs (an array, or a :class:`RowStore` on disk, which costs this process only
the chunks it reads), the first rows' mapped float32 features as far as they fit
:data:`MEMORY_BUDGET`, the other rows' mapped once into a temporary :class:`RowStore` and
read back chunk by chunk on every pass (mapping them again on every pass made a pass cost more
per row the larger the collection, as the held share shrank), and a few
``n_samples x n_problems`` arrays, so memory does not grow with the mapped matrix; the
temporary file does (4 bytes per mapped feature of the rows not held).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from imagelearn.core.errors import ParameterError
from imagelearn.core.execution import thread_map
from imagelearn.core.threads import resolve_n_jobs

#: Bytes a fit may use for mapped features: while liblinear's copies fit, it runs liblinear
#: (``LinearSVC``, fastest); beyond, the Newton solver holds this many bytes of mapped float32
#: features (about 1,900 images with BofClassifier's default channels) and writes the rows
#: beyond, mapped once, to a temporary file read back on every pass over all rows.
MEMORY_BUDGET = 256 * 2**20
#: liblinear's peak memory as a multiple of the mapped float32 matrix (its float64 copy and its
#: own sparse copy; measured on BoF chi2 features: 858 MiB for 129 MiB, 1,596 for 258).
LIBLINEAR_MEMORY_FACTOR = 7
#: Bytes of mapped features (float32) computed or read at once.
CHUNK_BYTES = 32 * 2**20
#: Weight of the scatter's diagonal in the preconditioner (:class:`Preconditioner`): on the
#: default channels' histograms of flowers5's 3,022 training photos, 115 passes to converge
#: with 0.1, 123 with 0.01, 125 with 0 (the mean direction alone), 142 with 1, 132 without
#: a preconditioner and 155 with liblinear's ``0.99 I + 0.01 diag(H)``.
PRECONDITIONER_MIX = 0.1
#: A conjugate-gradient run stops when its residual is this fraction of the gradient (TRON's).
CG_TOLERANCE = 0.1
#: Conjugate-gradient iterations per Newton step at most.
MAX_CG_ITER = 250
#: Line search: sufficient decrease (Armijo) and step halvings at most.
ARMIJO = 0.01
MAX_HALVINGS = 20

FeatureMap = Callable[[np.ndarray], np.ndarray]
#: Solvers of :class:`ChunkedLinearSVC`.
SOLVERS = ("auto", "liblinear", "newton")


class RowStore:
    """A float32 matrix on disk, in an anonymous temporary file: rows are appended, read back
    and rewritten by ranges (``store[a:b]``), so a process holds only the rows it reads (the
    operating system's page cache keeps the file while memory allows).

    Parameters
    ----------
    n_columns : int
    directory : path, optional
        Where the temporary file lives (default: :func:`tempfile.gettempdir`).
    """

    def __init__(self, n_columns: int, directory: str | os.PathLike | None = None) -> None:
        self.n_columns = int(n_columns)
        self._file = tempfile.TemporaryFile(dir=directory)
        self._n_rows = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self._n_rows, self.n_columns

    def __len__(self) -> int:
        return self._n_rows

    def _offset(self, row: int) -> int:
        return row * self.n_columns * 4

    def append(self, rows: np.ndarray) -> None:
        """Add ``rows`` (n, n_columns) at the end."""
        self.write(self._n_rows, rows)

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` (n, n_columns) from row ``start`` on (at most at the end)."""
        rows = np.ascontiguousarray(rows, np.float32).reshape(-1, self.n_columns)
        if not 0 <= start <= self._n_rows:
            raise IndexError(f"row {start} of a store of {self._n_rows} rows")
        if not rows.size:
            return
        view, offset = memoryview(rows).cast("B"), self._offset(start)
        while len(view):  # a write may stop short (Linux writes at most 2 GiB at once)
            n_written = os.pwrite(self._file.fileno(), view, offset)
            view, offset = view[n_written:], offset + n_written
        self._n_rows = max(self._n_rows, start + len(rows))

    def __getitem__(self, index: slice) -> np.ndarray:
        """The rows of a slice (step 1), float32 (n, n_columns), read from the file."""
        start, stop, step = index.indices(self._n_rows)
        if step != 1:
            raise IndexError("a RowStore reads ranges of rows (step 1)")
        rows = np.empty((max(0, stop - start), self.n_columns), np.float32)
        if not rows.size:
            return rows
        view, offset = memoryview(rows).cast("B"), self._offset(start)
        while len(view):
            n_read = os.preadv(self._file.fileno(), [view], offset)
            if n_read <= 0:
                raise OSError(f"short read in a RowStore at byte {offset}")
            view, offset = view[n_read:], offset + n_read
        return rows

    def close(self) -> None:
        """Delete the file."""
        self._file.close()

    def __enter__(self) -> RowStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Rows:
    """The rows of ``feature_map(X)``, chunk by chunk, each mapped once: the first ones, as many
    as fit ``budget`` bytes of float32, held in memory; the others written to a
    :class:`RowStore` (a temporary file: the page cache keeps it while memory allows) and read
    back on every pass, so a pass costs the same per row however many rows there are. The
    mapping runs ``n_jobs`` chunks at a time on the shared thread pool. ``X`` is an array or a
    :class:`RowStore`; with ``spill=False`` the rows beyond ``budget`` are mapped again on every
    pass instead (what one pass, a prediction, needs)."""

    def __init__(
        self,
        X: np.ndarray | RowStore,
        feature_map: FeatureMap | None,
        budget: int,
        n_jobs: int | None = None,
        spill: bool = True,
    ) -> None:
        self.X = X
        self.feature_map = feature_map
        self.n_jobs = resolve_n_jobs(n_jobs)
        self.n_features = self._map(X[:1]).shape[1]
        self.chunk_rows = max(1, CHUNK_BYTES // (4 * self.n_features))
        self.spilled: RowStore | np.ndarray | None = None
        if feature_map is None and isinstance(X, np.ndarray):
            self.held = np.asarray(X, np.float32)  # in memory already: nothing to map
            return
        n_held = min(len(X), budget // (4 * self.n_features))
        self.held = np.empty((n_held, self.n_features), np.float32)
        for rows, features in self._mapped_chunks(0, n_held):
            self.held[rows] = features
        if n_held < len(X) and spill:
            if feature_map is None:  # a store of the features themselves: read it as it is
                self.spilled = X
            else:
                self.spilled = RowStore(self.n_features)
                for _, features in self._mapped_chunks(n_held, len(X)):
                    self.spilled.append(features)

    @property
    def all_held(self) -> bool:
        return len(self.held) == len(self.X)

    def mapped(self) -> np.ndarray:
        """All mapped rows, float32 (n_samples, n_features): the held ones when all are held."""
        if self.all_held:
            return self.held
        return np.concatenate([features for _, features in self.chunks()])

    def _map(self, rows: np.ndarray) -> np.ndarray:
        if self.feature_map is None:
            return np.ascontiguousarray(rows, np.float32)
        return np.ascontiguousarray(self.feature_map(rows), np.float32)

    def _slices(self, start: int, stop: int) -> list[slice]:
        return [
            slice(first, min(first + self.chunk_rows, stop))
            for first in range(start, stop, self.chunk_rows)
        ]

    def _mapped_chunks(self, start: int, stop: int) -> Iterator[tuple[slice, np.ndarray]]:
        """The rows ``start:stop`` read and mapped, ``n_jobs`` chunks at a time in parallel
        (the map's NumPy operations release the GIL)."""
        slices = self._slices(start, stop)
        for first in range(0, len(slices), self.n_jobs):
            group = slices[first : first + self.n_jobs]
            inputs = [self.X[rows] for rows in group]
            yield from zip(group, thread_map(self._map, inputs, self.n_jobs), strict=True)

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows, features)`` of every chunk, features float32 C-contiguous (n_rows, n_features)."""
        n_held = len(self.held)
        for rows in self._slices(0, n_held):
            yield rows, self.held[rows]
        if self.spilled is None:  # not spilled (one pass: a prediction): mapped now
            yield from self._mapped_chunks(n_held, len(self.X))
            return
        first = 0 if self.spilled is self.X else n_held  # the row of X at the store's row 0
        for rows in self._slices(n_held, len(self.X)):
            yield rows, self.spilled[rows.start - first : rows.stop - first]

    def close(self) -> None:
        """Delete the spilled rows' file (if this object made one)."""
        if isinstance(self.spilled, RowStore) and self.spilled is not self.X:
            self.spilled.close()


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
        The Newton solver stops a one-vs-rest problem when its gradient's norm is at most
        ``tol * max(min(n_positive, n_negative), 1) / n_samples`` times its norm at zero
        weights (liblinear's primal criterion; ``LinearSVC``'s default is 1e-4).
    max_iter : int
        Newton iterations at most.
    memory_budget : int
        Bytes of mapped features a fit may use (default :data:`MEMORY_BUDGET`): with
        ``solver="auto"``, liblinear while its copies fit, else the Newton solver holding this
        many bytes of mapped features in memory and the rows beyond in a temporary file.
    solver : {"auto", "liblinear", "newton"}
        ``"liblinear"``: scikit-learn's ``LinearSVC`` on the whole mapped matrix (memory about
        :data:`LIBLINEAR_MEMORY_FACTOR` times it); ``"newton"``: the bounded-memory primal
        solver; ``"auto"``: liblinear when it fits ``memory_budget``.
    n_jobs : int or None
        Threads mapping the rows that are not held (scikit-learn's convention; None: one).

    Attributes
    ----------
    coef_ : ndarray of float64, shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of float64, shape (1,) or (n_classes,)
    classes_ : ndarray, shape (n_classes,)
    n_iter_ : int
        Newton iterations run (liblinear: its iterations).
    n_passes_ : int
        Passes over the data (a gradient, or one Hessian-vector product, of all problems).
    solver_ : {"liblinear", "newton"}
        The solver that ran (``solver="auto"`` resolved).
    """

    def __init__(
        self,
        C: float = 1.0,
        feature_map: FeatureMap | None = None,
        tol: float = 1e-4,
        max_iter: int = 1000,
        memory_budget: int = MEMORY_BUDGET,
        solver: str = "auto",
        n_jobs: int | None = None,
    ) -> None:
        self.C = C
        self.feature_map = feature_map
        self.tol = tol
        self.max_iter = max_iter
        self.memory_budget = memory_budget
        self.solver = solver
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray | RowStore, y: np.ndarray) -> ChunkedLinearSVC:
        """Train on inputs ``X`` (n_samples, n_inputs), an array or a :class:`RowStore`, and
        labels ``y`` (n_samples,).

        Memory: ``X`` itself (nothing for a store), at most ``memory_budget`` bytes of mapped
        features held (the other rows' in a temporary file, deleted at the end), one chunk of
        :data:`CHUNK_BYTES` at a time (and its square, for the preconditioner), and a few
        ``(n_samples, n_problems)`` arrays.
        """
        X = X if isinstance(X, RowStore) else np.asarray(X)
        y = np.asarray(y)
        if self.solver not in SOLVERS:
            raise ParameterError("solver", f"must be one of {SOLVERS}, got {self.solver!r}")
        if not self.C > 0:
            raise ParameterError("C", f"C must be > 0, got {self.C!r}")
        if len(X.shape) != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n_samples, n_inputs) with one label each; got {X.shape}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"training needs at least 2 classes; got {len(self.classes_)}")
        positives = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        signs = np.where(y[:, None] == positives[None, :], 1.0, -1.0)  # (n_samples, n_problems)
        rows = _Rows(X, self.feature_map, self.memory_budget, self.n_jobs)
        if self.solver == "liblinear" or (
            self.solver == "auto"
            and LIBLINEAR_MEMORY_FACTOR * 4 * len(X) * rows.n_features <= self.memory_budget
        ):
            return self._fit_liblinear(rows.mapped(), y)
        problem = _SquaredHinge(rows, signs, float(self.C))
        n_positive = (signs > 0).sum(axis=0)
        share = np.maximum(np.minimum(n_positive, len(y) - n_positive), 1) / len(y)
        try:
            weights, self.n_iter_ = problem.minimize(float(self.tol) * share, int(self.max_iter))
        finally:
            rows.close()
        if self.n_iter_ >= self.max_iter:
            warnings.warn(
                f"ChunkedLinearSVC did not converge in {self.max_iter} iterations",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.coef_ = weights[:, :-1].copy()
        self.intercept_ = weights[:, -1].copy()
        self.n_passes_ = problem.n_passes
        self.solver_ = "newton"
        return self

    def _fit_liblinear(self, features: np.ndarray, y: np.ndarray) -> ChunkedLinearSVC:
        """The same model by liblinear's dual coordinate descent, on all mapped features
        (``LinearSVC``'s own tolerance)."""
        svm = LinearSVC(C=self.C, max_iter=5000, random_state=0)
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
        self.solver_ = "liblinear"
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Margins of ``X`` (n_samples, n_inputs): (n_samples,) for two classes (of
        ``classes_[1]``), else (n_samples, n_classes); mapped chunk by chunk."""
        check_is_fitted(self, "coef_")
        X = np.asarray(X)
        scores = np.empty((len(X), len(self.coef_)))
        if not len(X):
            return scores[:, 0] if len(self.coef_) == 1 else scores
        rows = _Rows(X, self.feature_map, 0, self.n_jobs, spill=False)
        for chunk_rows, features in rows.chunks():
            scores[chunk_rows] = features.astype(np.float64) @ self.coef_.T + self.intercept_
        return scores[:, 0] if len(self.coef_) == 1 else scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class of highest margin of every row of ``X``, shape (n_samples,)."""
        scores = self.decision_function(X)
        return self.classes_[(scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)]


class Preconditioner:
    """``M = I + c (n mu mu^T + a D)`` per problem, an approximation of the generalized
    Hessian ``I + c X_A^T X_A`` (``c = 2C``): ``mu`` is the mean of the ``n`` active rows
    ``X_A`` (the features are nonnegative, so it is their largest direction), ``D`` the
    diagonal of their scatter around it and ``a`` :data:`PRECONDITIONER_MIX`; solved in
    ``O(n_features)`` by the Sherman-Morrison formula.

    Parameters
    ----------
    scale : float
        ``c``.
    sums, squares : ndarray, shape (n_problems, n_features + 1)
        Sums of the active rows (the intercept's column: their count) and of their squares.
    """

    def __init__(self, scale: float, sums: np.ndarray, squares: np.ndarray) -> None:
        counts = np.maximum(sums[:, -1:], 1.0)
        mean = sums / counts
        scatter = np.maximum(squares - counts * mean * mean, 0.0)
        self.diagonal = 1.0 + PRECONDITIONER_MIX * scale * scatter
        self.rank_one = np.sqrt(scale * counts) * mean  # u in M = diagonal + u u^T
        self.scaled_rank_one = self.rank_one / self.diagonal
        self.denominator = 1.0 + (self.rank_one * self.scaled_rank_one).sum(axis=1)

    def solve(self, residual: np.ndarray) -> np.ndarray:
        """``M^-1 r`` for every problem's row of ``residual`` (n_problems, n_features + 1)."""
        scaled = residual / self.diagonal
        along = (self.rank_one * scaled).sum(axis=1) / self.denominator
        return scaled - along[:, None] * self.scaled_rank_one


class _SquaredHinge:
    """The one-vs-rest objectives ``f_k(w) = 0.5 |w|^2 + C sum_i max(0, 1 - s_ik w.[x_i, 1])^2``,
    minimized side by side: every pass over ``rows`` computes one gradient, or one product
    with the generalized Hessian ``I + 2C X_A^T X_A`` (``A``: the samples inside the margin),
    of every problem at once. Weights are ``(n_problems, n_features + 1)``, the intercept last."""

    def __init__(self, rows: _Rows, signs: np.ndarray, C: float) -> None:
        self.rows = rows
        self.signs = signs
        self.C = C
        self.shape = (signs.shape[1], rows.n_features + 1)
        self.n_passes = 0

    def minimize(self, tol: np.ndarray, max_iter: int) -> tuple[np.ndarray, int]:
        """Truncated Newton with line search from zero weights until every problem's gradient
        is at most ``tol`` (n_problems,) times its norm at zero.

        Returns
        -------
        weights : ndarray of float64, shape (n_problems, n_features + 1)
        n_iter : int
            Newton steps taken.
        """
        weights = np.zeros(self.shape)
        margins = np.zeros(self.signs.shape)
        values, gradient, preconditioner = self.gradient(weights, margins)
        limit = tol * np.linalg.norm(gradient, axis=1)
        n_iter = 0
        while n_iter < max_iter:
            todo = np.linalg.norm(gradient, axis=1) > limit
            if not todo.any():
                break
            step, step_margins = self.newton_step(gradient, preconditioner, margins, todo)
            rates = self.line_search(weights, margins, values, gradient, step, step_margins)
            weights += rates[:, None] * step
            margins += rates * step_margins
            values, gradient, preconditioner = self.gradient(weights, margins)
            n_iter += 1
        return weights, n_iter

    def _slack(self, margins: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, 1.0 - self.signs * margins)

    def gradient(
        self, weights: np.ndarray, margins: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, Preconditioner]:
        """Objectives (n_problems,), gradients (n_problems, n_features + 1) and the
        preconditioners of the generalized Hessians at ``weights``, whose margins
        (n_samples, n_problems) are given."""
        slack = self._slack(margins)
        values = 0.5 * (weights * weights).sum(axis=1) + self.C * (slack * slack).sum(axis=0)
        active = slack > 0
        # d loss / d margin, and the indicator of the active samples: one product for both
        factors = np.concatenate([-2.0 * self.C * self.signs * slack, active], axis=1)
        factors = factors.astype(np.float32)
        n_problems = self.shape[0]
        sums = np.zeros((2 * n_problems, self.shape[1]))
        squares = np.zeros((n_problems, self.shape[1]))
        sums[:, -1] = factors.sum(axis=0, dtype=np.float64)
        squares[:, -1] = sums[n_problems:, -1]
        for rows, features in self.rows.chunks():
            sums[:, :-1] += factors[rows].T @ features
            squares[:, :-1] += factors[rows, n_problems:].T @ np.square(features)
        self.n_passes += 1
        gradient = weights + sums[:n_problems]
        return values, gradient, Preconditioner(2.0 * self.C, sums[n_problems:], squares)

    def hessian_product(
        self, directions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Products of the generalized Hessians (samples ``active``, (n_samples, n_problems))
        with ``directions`` (n_problems, n_features + 1), and the margins of the directions
        (n_samples, n_problems), from one pass."""
        product = directions.copy()
        direction_margins = np.empty(self.signs.shape)
        coefficients = directions[:, :-1].T.astype(np.float32)  # (n_features, n_problems)
        for rows, features in self.rows.chunks():
            direction_margins[rows] = features @ coefficients + directions[:, -1]
            curvature = (2.0 * self.C * active[rows] * direction_margins[rows]).astype(np.float32)
            product[:, :-1] += curvature.T @ features
            product[:, -1] += curvature.sum(axis=0, dtype=np.float64)
        self.n_passes += 1
        return product, direction_margins

    def newton_step(
        self,
        gradient: np.ndarray,
        preconditioner: Preconditioner,
        margins: np.ndarray,
        todo: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate Newton steps ``H s = -g`` of the problems ``todo`` (zero for the others)
        by preconditioned conjugate gradients, and the steps' margins."""
        active = (self._slack(margins) > 0).astype(np.float64)
        step = np.zeros(self.shape)
        step_margins = np.zeros(self.signs.shape)
        residual = -gradient
        scaled = preconditioner.solve(residual)
        direction = scaled * todo[:, None]
        alignment = (residual * scaled).sum(axis=1)
        limit = CG_TOLERANCE * np.linalg.norm(gradient, axis=1)
        running = todo.copy()
        for _ in range(MAX_CG_ITER):
            product, direction_margins = self.hessian_product(direction, active)
            curvature = (direction * product).sum(axis=1)
            rate = np.divide(alignment, curvature, out=np.zeros_like(alignment), where=running)
            step += rate[:, None] * direction
            step_margins += rate * direction_margins
            residual -= rate[:, None] * product
            running &= np.linalg.norm(residual, axis=1) > limit
            if not running.any():
                break
            scaled = preconditioner.solve(residual)
            new_alignment = (residual * scaled).sum(axis=1)
            beta = np.divide(new_alignment, alignment, out=np.zeros_like(alignment), where=running)
            direction = (scaled + beta[:, None] * direction) * running[:, None]
            alignment = new_alignment
        return step, step_margins

    def line_search(
        self,
        weights: np.ndarray,
        margins: np.ndarray,
        values: np.ndarray,
        gradient: np.ndarray,
        step: np.ndarray,
        step_margins: np.ndarray,
    ) -> np.ndarray:
        """Step lengths (n_problems,): 1, halved until each objective decreases enough
        (Armijo); the objectives along the steps come from the kept margins, without a pass."""
        slope = (gradient * step).sum(axis=1)
        cross = (weights * step).sum(axis=1)
        length = (step * step).sum(axis=1)
        base = 0.5 * (weights * weights).sum(axis=1)
        rates = np.ones(len(values))
        pending = slope < 0
        for _ in range(MAX_HALVINGS):
            if not pending.any():
                break
            slack = self._slack(margins + rates * step_margins)
            trial = base + rates * cross + 0.5 * rates**2 * length + self.C * (slack * slack).sum(0)
            pending &= trial > values + ARMIJO * rates * slope
            rates = np.where(pending, rates / 2, rates)
        return np.where(slope < 0, rates, 0.0)
