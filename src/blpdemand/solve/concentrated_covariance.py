"""The sandwich of an estimator whose linear parameters are concentrated out by some blocks only.

With covariance restrictions (``solve.moments``) the linear parameters l = (beta, gamma) solve
the linear blocks' first-order condition G_Ul' W_UU g_U = 0 while theta minimizes the whole
Q(theta, l(theta)); this is not the joint GMM minimizer of g'Wg over (theta, l), so its
covariance is not (G'WG)^{-1} G'WSWG (G'WG)^{-1}. Linearizing both conditions around the truth
(G = [G_theta, G_l] = d g / d(theta, l), the first M_U moments those of the linear blocks):

    l(theta0) - l0 = -K g,     K = (G_Ul' W_UU G_Ul)^{-1} [G_Ul' W_UU, 0],
    D = (I - G_l K) G_theta    (d g / d theta with l concentrated, the optimizer's Jacobian),
    theta - theta0 = B_theta g,   B_theta = -(D'WD)^{-1} D'W (I - G_l K),
    l - l0 = B_l g,               B_l = -K - K G_theta B_theta,
    V = B S B' / N,  B = [B_theta; B_l]

(Newey and McFadden 1994, sec. 6, for two-step GMM estimators). With every block linear
(M_U = M) it is the usual sandwich; exactly identified (M = P + K) it is G^{-1} S G^{-T} / N.
"""

from __future__ import annotations

import numpy as np

from blpdemand._types import FloatArray


def concentrated_covariance(G: FloatArray, W: FloatArray, S: FloatArray, N: int, *, P: int,
                            MU: int, identified: np.ndarray | None = None) -> FloatArray:
    """V (P + K, P + K) of (theta, l) for l concentrated out by the first ``MU`` moments
    (module docstring); rows and columns of parameters not ``identified`` are NaN (those of
    theta are held at their estimates). Raises np.linalg.LinAlgError when singular."""
    total = G.shape[1]
    keep = np.ones(total, dtype=bool) if identified is None else np.asarray(identified, bool)
    theta = np.flatnonzero(keep[:P])
    G_theta, G_l = G[:, theta], G[:, P:]
    G_Ul, W_UU = G_l[:MU], W[:MU, :MU]
    selector = np.zeros((G_l.shape[1], G.shape[0]))
    selector[:, :MU] = G_Ul.T @ W_UU
    K = np.linalg.solve(G_Ul.T @ W_UU @ G_Ul, selector)
    projection = np.eye(G.shape[0]) - G_l @ K
    D = projection @ G_theta
    B_theta = -np.linalg.solve(D.T @ W @ D, D.T @ W @ projection)
    B_l = -K - K @ G_theta @ B_theta
    B = np.vstack([B_theta, B_l])
    sub = B @ S @ B.T / N
    rows = np.r_[theta, P + np.arange(G_l.shape[1])]
    V = np.full((total, total), np.nan)
    V[np.ix_(rows, rows)] = (sub + sub.T) / 2
    V[~keep] = np.nan
    V[:, ~keep] = np.nan
    return V
