"""Random-coefficient utility mu_ijt and exp(mu_ijt), for many markets at once in dense blocks.

mu_ijt = x2_jt' (Sigma nu_it + Pi y_it)  (Berry, Levinsohn and Pakes 1995, eq. 2.6), with
lognormal columns k taking s_k exp(Sigma_k nu_it + Pi_k y_it) instead.

Markets are grouped into dense blocks of shape (T_b, J, I): markets of similar size are padded
to the block's largest (J_t, I_t) with products that have exp(mu) = 0 and agents with weight 0,
so every kernel is one batched matmul over the block, never a Python loop over markets. Blocks
are capped in bytes so that a block's exp(mu) stays in cache while it is iterated to
convergence (see ``solve.contraction``).

exp(mu) is computed once per theta. It is overflow-safe: where some utility exceeds
``SHIFT_ABOVE`` each agent's utilities are shifted by m_i = max(0, max_j mu_ji), and the outside
good's term becomes exp(-m_i); in the common case no shift is made and that term is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blpdemand._types import BoolArray, FloatArray, IntArray
from blpdemand.data.markets import MarketIndex

#: Utilities above this trigger the per-agent shift (exp(50) leaves ample room below 1e308).
SHIFT_ABOVE = 50.0

#: Padded blocks take the compiled kernel unless K2 >= [0] and the mean J_t I_t >= [1]: there
#: numpy's gemm and exp per market (about 0.6 ns a cell for the exp against the kernel's 1 ns,
#: and one pass for all K2 columns) beat it, measured on markets of 4,000 to 60,000 cells.
#: Unpadded blocks take it when K2 < [0] and the J I >= [1] (50 x 1,000 markets, K2 = 3: 1.39
#: against numpy's 1.63 ns a cell); on small ones numpy's one batched pass wins (Nevo's 24 x 20:
#: 1.49 against 2.65).
COMPILED_BELOW = (5, 12_000)

__all__ = ["SHIFT_ABOVE", "ExpUtility", "MarketBlock", "agent_coefficients", "compute_mu",
           "exp_utility", "lognormal_coefficients", "lognormal_slopes", "market_blocks"]


@dataclass(frozen=True, slots=True, eq=False)
class MarketBlock:
    """A dense block of markets: products and agents gathered into (T_b, J) and (T_b, I).

    Attributes
    ----------
    positions : (T_b,) market positions t (into ``MarketIndex.ids``).
    product_rows : (T_b, J) product row of each slot; padded slots repeat a real row.
    agent_rows : (T_b, I) agent row of each slot; padded slots repeat a real row.
    product_pad : (T_b, J) True in padded product slots, or None when the block is not padded.
    agent_pad : (T_b, I) True in padded agent slots, or None.
    """

    positions: IntArray
    product_rows: IntArray
    agent_rows: IntArray
    product_pad: BoolArray | None
    agent_pad: BoolArray | None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T_b, J, I)."""
        return (int(self.product_rows.shape[0]), int(self.product_rows.shape[1]),
                int(self.agent_rows.shape[1]))

    def gather_products(self, values: FloatArray) -> FloatArray:
        """(N, ...) product values -> (T_b, J, ...), zero in padded slots."""
        out = np.asarray(values)[self.product_rows]
        if self.product_pad is not None:
            out[self.product_pad] = 0
        return out

    def gather_agents(self, values: FloatArray) -> FloatArray:
        """(I_total, ...) agent values -> (T_b, I, ...), zero in padded slots."""
        out = np.asarray(values)[self.agent_rows]
        if self.agent_pad is not None:
            out[self.agent_pad] = 0
        return out

    def scatter_products(self, block_values: FloatArray, out: FloatArray) -> None:
        """Write (T_b, J, ...) block values back into (N, ...) ``out`` (padded slots dropped)."""
        if self.product_pad is None:
            out[self.product_rows] = block_values
        else:
            real = ~self.product_pad
            out[self.product_rows[real]] = block_values[real]


def _slots(offsets: IntArray, positions: IntArray, width: int) -> tuple[IntArray, BoolArray | None]:
    """Rows of each market padded to ``width`` (padded slots repeat the market's first row)."""
    start = offsets[positions][:, None]
    size = (offsets[positions + 1] - offsets[positions])[:, None]
    k = np.arange(width)[None, :]
    pad = k >= size
    rows = np.where(pad, start, start + k).astype(np.int64)
    return rows, (pad if pad.any() else None)


def market_blocks(products: MarketIndex, agents: MarketIndex, *, max_bytes: int = 8 << 20,
                  max_waste: float = 0.25,
                  max_waste_cells: int = 1 << 18) -> tuple[MarketBlock, ...]:
    """Partition markets into dense blocks for batched kernels.

    Markets are sorted by (I_t, J_t); a block grows while its exp(mu) array stays within
    ``max_bytes`` and its padded size T_b * J * I stays within ``(1 + max_waste)`` times the
    real cells sum_t J_t I_t or adds at most ``max_waste_cells`` padded cells (a block's fixed
    cost per step, about 150 microseconds of Python and numpy overhead, is worth some 2^18
    cells of arithmetic). A block always holds at least one market.

    Parameters
    ----------
    products, agents : MarketIndex over product rows and agent rows (same market positions).
    max_bytes : cap on 8 T_b J I, the bytes of one block's exp(mu).
    max_waste : tolerated fraction of padded cells.
    """
    J_t, I_t = products.sizes, agents.sizes
    order = np.lexsort((J_t, I_t))
    blocks: list[MarketBlock] = []
    start = 0
    while start < order.size:
        stop = start + 1
        cells = int(J_t[order[start]] * I_t[order[start]])
        while stop < order.size:
            t = order[stop]
            J = max(int(J_t[order[start:stop + 1]].max()), 1)
            I = max(int(I_t[order[start:stop + 1]].max()), 1)
            padded = (stop + 1 - start) * J * I
            real = cells + int(J_t[t] * I_t[t])
            wasteful = padded > (1.0 + max_waste) * real and padded - real > max_waste_cells
            if padded * 8 > max_bytes or wasteful:
                break
            cells += int(J_t[t] * I_t[t])
            stop += 1
        positions = np.sort(order[start:stop]).astype(np.int64)
        J = max(int(J_t[positions].max()), 1)
        I = max(int(I_t[positions].max()), 1)
        product_rows, product_pad = _slots(products.offsets, positions, J)
        agent_rows, agent_pad = _slots(agents.offsets, positions, I)
        blocks.append(MarketBlock(positions=positions, product_rows=product_rows,
                                  agent_rows=agent_rows, product_pad=product_pad,
                                  agent_pad=agent_pad))
        start = stop
    return tuple(blocks)


def agent_coefficients(nodes: FloatArray, demographics: FloatArray, sigma: FloatArray,
                       pi: FloatArray, lognormal: FloatArray | None = None) -> FloatArray:
    """Random parts of the coefficients for every agent: (I_total, K2).

    c_i = Sigma nu_i + Pi y_i, then ``lognormal_coefficients`` on lognormal columns.
    nodes : (I_total, K2); demographics : (I_total, D); sigma : (K2, K2); pi : (K2, D);
    lognormal : (K2,) signs, 0 for a normal coefficient (see ``lognormal_coefficients``).
    """
    out = nodes @ sigma.T
    if pi.size:
        out += demographics @ pi.T
    return out if lognormal is None else lognormal_coefficients(out, lognormal)


def lognormal_coefficients(index: FloatArray, lognormal: FloatArray) -> FloatArray:
    """g_k(c_ik): c_ik on normal columns, s_k exp(c_ik) on lognormal ones.

    A lognormal coefficient is s_k exp(pi_k0 + Sigma_k nu_i + Pi_k y_i) with s_k = -1 for
    prices, so that every consumer's price coefficient is negative (as PyBLP's ``rc_types``
    'log' on ``I(-prices)``); its location pi_k0 is the Pi element of the constant demographic.
    index : (..., K2) c = Sigma nu + Pi y; lognormal : (K2,) s_k, 0 where normal.
    """
    mask = lognormal != 0
    if not mask.any():
        return index
    out = np.array(index, dtype=np.float64)
    out[..., mask] = lognormal[mask] * np.exp(index[..., mask])
    return out


def lognormal_slopes(index: FloatArray, lognormal: FloatArray) -> FloatArray:
    """g_k'(c_ik): 1 on normal columns, s_k exp(c_ik) on lognormal ones; shape of ``index``."""
    out = np.ones_like(index)
    mask = lognormal != 0
    out[..., mask] = lognormal[mask] * np.exp(index[..., mask])
    return out


def compute_mu(x2: FloatArray, coefficients: FloatArray) -> FloatArray:
    """mu_ji = x2_j' c_i for a block: x2 (T_b, J, K2), coefficients (T_b, I, K2) -> (T_b, J, I)."""
    out: FloatArray = np.matmul(x2, coefficients.transpose(0, 2, 1))
    return out


@dataclass(frozen=True, slots=True, eq=False)
class ExpUtility:
    """exp(mu) of one block and what shares need with it.

    Attributes
    ----------
    exp_mu : (T_b, J, I) exp(mu_ji - m_i), zero in padded product or agent slots.
    outside : (T_b, I) exp(-m_i), the outside good's term (ones when no shift was needed).
    weights : (T_b, I) integration weights w_i (zero in padded agent slots).
    shifted : whether a per-agent shift m_i was applied.
    """

    exp_mu: FloatArray
    outside: FloatArray
    weights: FloatArray
    shifted: bool

    def take(self, keep: IntArray | BoolArray) -> ExpUtility:
        """The same for a subset of the block's markets (a copy)."""
        return ExpUtility(exp_mu=self.exp_mu[keep], outside=self.outside[keep],
                          weights=self.weights[keep], shifted=self.shifted)


def exp_utility(block: MarketBlock, x2: FloatArray, coefficients: FloatArray,
                weights: FloatArray, out: FloatArray | None = None,
                sizes: tuple[IntArray, IntArray] | None = None,
                padding_written: bool = False) -> ExpUtility:
    """exp(mu) for a block, overflow-safe.

    Computed market by market on its real products and agents in one compiled call
    (``model.utility_compiled``), except (``COMPILED_BELOW``) for large markets with many X2
    columns (numpy per market, or the whole block when it is not padded) and for unpadded
    blocks of small markets (the whole block at once: one batched gemm, one exp). Where
    utilities exceed ``SHIFT_ABOVE`` (in the block for numpy's whole-block form, else in the
    market) they are shifted per agent.

    Parameters
    ----------
    block : the MarketBlock.
    x2 : (T_b, J, K2) gathered X2 (zero in padded slots).
    coefficients : (T_b, I, K2) gathered Sigma nu_i + Pi y_i.
    weights : (T_b, I) gathered weights (zero in padded slots).
    out : a (T_b, J, I) float64 C-contiguous array no longer needed (the block's exp(mu) at
        an earlier theta) to hold the result: every cell is written. Reusing it spares the
        page faults of fresh memory (the allocator returns blocks of megabytes to the system
        when they are freed: about 24,000 faults, 93 MiB touched anew, per estimate of the
        battery's unequal markets).
    sizes : (T_b,) real J_t and I_t of the block's markets when the caller keeps them (else
        counted from the block's padding).
    padding_written : ``out`` is an exp(mu) this function returned for the same block and
        nobody has written to it since: its padded cells hold 0 and need not be written again.
    """
    T_b, J, I = x2.shape[0], x2.shape[1], coefficients.shape[1]
    usable = (out is not None and out.shape == (T_b, J, I) and out.dtype == np.float64
              and out.flags.c_contiguous and out.flags.writeable)
    mu = out if usable and out is not None else np.empty((T_b, J, I))
    outside = np.ones((T_b, I))
    padded = block.product_pad is not None or block.agent_pad is not None
    few_columns = x2.shape[2] < COMPILED_BELOW[0]
    if padded or (few_columns and J * I >= COMPILED_BELOW[1]):
        if sizes is None:
            sizes = (_real_sizes(block.product_pad, T_b, J), _real_sizes(block.agent_pad, T_b, I))
        product_sizes, agent_sizes = sizes
        cells = float(np.dot(product_sizes, agent_sizes)) / T_b
        if few_columns or cells < COMPILED_BELOW[1]:
            # market by market on its real cells, in one compiled call (loaded at first use:
            # a logit run never pays for numba)
            from blpdemand.model.utility_compiled import padded_exp_utility

            shifted = padded_exp_utility(x2, coefficients, product_sizes, agent_sizes, mu,
                                         outside, shift_above=SHIFT_ABOVE,
                                         clear=not (padding_written and mu is out))
            return ExpUtility(exp_mu=mu, outside=outside, weights=weights,
                              shifted=shifted == T_b)
    transposed = np.ascontiguousarray(coefficients.transpose(0, 2, 1))  # (T_b, K2, I): gemm-ready
    shifted = 0
    with np.errstate(under="ignore"):
        if block.product_pad is None:  # one batched gemm (pieces in L2 measured no faster)
            np.matmul(x2, transposed, out=mu)
            shifted += _exp_in_place(mu, outside)
        else:  # padded product slots trail each market: its real rows only
            for t, n in enumerate((J - block.product_pad.sum(axis=1)).tolist()):
                piece = mu[t:t + 1, :n]
                np.matmul(x2[t, :n], transposed[t], out=piece[0])
                shifted += _exp_in_place(piece, outside[t:t + 1])
                mu[t, n:] = 0.0
    if block.agent_pad is not None:
        mu.transpose(0, 2, 1)[block.agent_pad] = 0.0
        outside[block.agent_pad] = 1.0
    return ExpUtility(exp_mu=mu, outside=outside, weights=weights, shifted=shifted == T_b)


def _real_sizes(pad: BoolArray | None, T_b: int, width: int) -> IntArray:
    """(T_b,) real slots per market (padded slots trail each market)."""
    if pad is None:
        return np.full(T_b, width, dtype=np.int64)
    sizes: IntArray = (width - pad.sum(axis=1)).astype(np.int64)
    return sizes


def _exp_in_place(mu: FloatArray, outside: FloatArray) -> int:
    """mu (k, n, I) -> exp(mu - m_i), outside (k, I) -> exp(-m_i) with m_i = max(0, max_j mu_ji)
    if some utility exceeds ``SHIFT_ABOVE`` (returns k), else exp(mu) and 1 (returns 0)."""
    if mu.max(initial=0.0) <= SHIFT_ABOVE:
        np.exp(mu, out=mu)
        return 0
    shift = np.maximum(mu.max(axis=1), 0.0)
    mu -= shift[:, None, :]
    np.exp(mu, out=mu)
    np.exp(-shift, out=outside)
    return int(mu.shape[0])
