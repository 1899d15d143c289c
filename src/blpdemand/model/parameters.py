"""The nonlinear parameters theta = (Sigma, Pi, rho) and their layout as a vector.

beta_it = beta + Pi y_it + Sigma nu_it. Sigma is the (K2, K2) lower-triangular Cholesky root of
the random coefficients' covariance (diagonal is the common case); Pi is (K2, D). Elements given
as zero in the starting values are fixed at zero; the others are free and form theta, Sigma's
free elements first (column by column), then Pi's (column by column), then the nesting
parameters rho of a random-coefficients nested logit (one, or one per nest), always free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blpdemand._types import FloatArray
from blpdemand.errors import SpecificationError


@dataclass(frozen=True, slots=True)
class ParameterLayout:
    """Which elements of Sigma and Pi are free, their names and bounds.

    Attributes
    ----------
    sigma_free : (K2, K2) bool, free elements of Sigma (lower triangle only).
    pi_free : (K2, D) bool, free elements of Pi.
    x2_names, demographic_names : labels of the rows/columns.
    rho_names : names of the nesting parameters ("rho" or "rho[g]"), empty without nests.

    The counts and index arrays are derived once, when the layout is made: the inner loop reads
    them at every theta (``unpack``), hundreds of times an estimate.
    """

    sigma_free: np.ndarray
    pi_free: np.ndarray
    x2_names: tuple[str, ...]
    demographic_names: tuple[str, ...]
    rho_names: tuple[str, ...] = ()
    _sigma_index: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    _pi_index: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, free in (("_sigma_index", self.sigma_free), ("_pi_index", self.pi_free)):
            cols, rows = np.nonzero(np.asarray(free).T)  # column-major: theta's order
            rows.setflags(write=False)
            cols.setflags(write=False)
            object.__setattr__(self, name, (rows, cols))

    @property
    def K2(self) -> int:
        return len(self.x2_names)

    @property
    def D(self) -> int:
        return len(self.demographic_names)

    @property
    def n_sigma(self) -> int:
        return len(self._sigma_index[0])

    @property
    def n_pi(self) -> int:
        return len(self._pi_index[0])

    @property
    def n_rho(self) -> int:
        return len(self.rho_names)

    @property
    def P(self) -> int:
        """Number of free nonlinear parameters."""
        return self.n_sigma + self.n_pi + self.n_rho

    @property
    def sigma_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of free Sigma elements in theta order (column-major)."""
        return self._sigma_index

    @property
    def pi_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of free Pi elements in theta order (column-major)."""
        return self._pi_index

    @property
    def names(self) -> tuple[str, ...]:
        """Readable names: ``sigma[prices, prices]``, ``pi[prices, income]``."""
        r, c = self.sigma_index
        sigma = [f"sigma[{self.x2_names[i]}, {self.x2_names[j]}]" for i, j in zip(r, c)]
        r, c = self.pi_index
        pi = [f"pi[{self.x2_names[i]}, {self.demographic_names[j]}]" for i, j in zip(r, c)]
        return tuple(sigma + pi) + self.rho_names

    @property
    def diagonal(self) -> bool:
        """True when Sigma has no free off-diagonal element."""
        return not np.any(np.tril(self.sigma_free, -1))

    def unpack(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """theta (P,) -> (Sigma (K2, K2), Pi (K2, D))."""
        theta = np.asarray(theta, dtype=np.float64)
        n_sigma, n_pi, K2 = len(self._sigma_index[0]), len(self._pi_index[0]), len(self.x2_names)
        if theta.shape != (n_sigma + n_pi + len(self.rho_names),):
            raise SpecificationError(f"theta must have {self.P} elements, got shape {theta.shape}")
        sigma = np.zeros((K2, K2))
        pi = np.zeros((K2, len(self.demographic_names)))
        sigma[self._sigma_index] = theta[:n_sigma]
        pi[self._pi_index] = theta[n_sigma:n_sigma + n_pi]
        return sigma, pi

    def rho(self, theta: FloatArray) -> FloatArray:
        """theta (P,) -> the nesting parameters (n_rho,)."""
        return np.asarray(theta, dtype=np.float64)[self.n_sigma + self.n_pi:]

    def pack(self, sigma: FloatArray, pi: FloatArray | None,
             rho: FloatArray | None = None) -> FloatArray:
        """(Sigma, Pi, rho) -> theta (P,)."""
        sigma = np.asarray(sigma, dtype=np.float64)
        pi = np.zeros((self.K2, self.D)) if pi is None else np.asarray(pi, dtype=np.float64)
        r, c = self.sigma_index
        first = sigma[r, c]
        r, c = self.pi_index
        rho = np.zeros(self.n_rho) if rho is None else np.ravel(np.asarray(rho, np.float64))
        return np.concatenate([first, pi[r, c], rho])


def make_layout(sigma: object, pi: object, x2_names: tuple[str, ...],
                demographic_names: tuple[str, ...], *, rho: object = None,
                rho_names: tuple[str, ...] = ()) -> tuple[ParameterLayout, FloatArray]:
    """Read the user's starting Sigma and Pi; nonzero elements are free.

    ``sigma`` may be a (K2,) vector (diagonal) or a (K2, K2) lower-triangular matrix; ``pi`` a
    (K2, D) matrix or None; ``rho`` a number or one per name of ``rho_names`` (nested models).
    Returns the layout and theta0.
    """
    K2, D = len(x2_names), len(demographic_names)
    s = np.zeros((K2, K2)) if sigma is None else _numeric(sigma, "sigma", x2_names)
    if s.ndim == 1:
        if s.shape[0] != K2:
            raise SpecificationError(
                f"sigma has {s.shape[0]} elements but X2 has {K2} columns {list(x2_names)}")
        s = np.diag(s)
    if s.shape != (K2, K2):
        raise SpecificationError(
            f"sigma must be ({K2}, {K2}) for X2 columns {list(x2_names)}, got {s.shape}")
    if np.any(np.triu(s, 1) != 0):
        raise SpecificationError(
            "sigma must be lower triangular (the Cholesky root of the random coefficients' "
            "covariance); move the upper-triangle elements below the diagonal")
    p = np.zeros((K2, D)) if pi is None else _numeric(pi, "pi", x2_names)
    if p.ndim == 1 and D == 1:
        p = p[:, None]
    if p.shape != (K2, D):
        raise SpecificationError(
            f"pi must be ({K2}, {D}) for X2 columns {list(x2_names)} and demographics "
            f"{list(demographic_names)}, got {p.shape}")
    for name, value in (("sigma", s), ("pi", p)):
        if not np.all(np.isfinite(value)):
            raise SpecificationError(f"{name} starting values contain NaN/inf")
    layout = ParameterLayout(sigma_free=(s != 0), pi_free=(p != 0), x2_names=tuple(x2_names),
                             demographic_names=tuple(demographic_names),
                             rho_names=tuple(rho_names))
    return layout, layout.pack(s, p, _rho_start(rho, rho_names))


def _rho_start(rho: object, rho_names: tuple[str, ...]) -> FloatArray:
    """Starting nesting parameters: one per name, each in [0, 1) (rho -> 1: perfect
    correlation within a nest; the model needs rho < 1)."""
    if not rho_names:
        if rho is not None:
            raise SpecificationError("rho given but the problem has no nests; pass "
                                     "nesting='nesting_ids' to Problem for a nested model")
        return np.zeros(0)
    if rho is None:
        raise SpecificationError(f"the problem has nests: pass starting values rho= for "
                                 f"{list(rho_names)} (each in [0, 1), e.g. 0.5)")
    values = np.ravel(_numeric(rho, "rho", ()))
    if values.size == 1 and len(rho_names) > 1:
        values = np.full(len(rho_names), float(values[0]))
    if values.size != len(rho_names):
        raise SpecificationError(f"rho has {values.size} values for the nesting parameters "
                                 f"{list(rho_names)}")
    if not np.all((values >= 0) & (values < 1)):
        raise SpecificationError(f"rho starting values must lie in [0, 1), got {values.tolist()}")
    return values


def _numeric(values: object, name: str, x2_names: tuple[str, ...]) -> FloatArray:
    """Starting values as a float array; anything else names the argument and the shape wanted."""
    if isinstance(values, (str, bytes, dict)) or hasattr(values, "keys"):
        raise SpecificationError(
            f"{name} must be a vector or matrix of numbers (rows in X2 order {list(x2_names)}), "
            f"got {type(values).__name__}")
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpecificationError(f"{name} starting values are not numbers ({exc}); "
                                 "give a vector or matrix of floats, rows in X2 order "
                                 f"{list(x2_names)}") from exc
