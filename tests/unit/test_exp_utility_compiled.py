"""The compiled exponential and the compiled exp(mu) of padded blocks against numpy.

References: numpy's exp (correctly rounded to within about half an ulp) and exp(mu) formed
here market by market with numpy's matmul and exp, with the shift rule written out from its
definition (m_i = max(0, max_j mu_ji) where some mu_ji of the market exceeds SHIFT_ABOVE).
Tolerances, per cell, in units of eps = 2^-52 relative to the cell: the exponential within
about one ulp (two allowed, four for exp_into alone: the reduction and Horner rounding add
about one ulp each); an error e in the argument mu_ji - m_i moves exp by the relative e, and
the kernel's and numpy's mu_ji differ by at most (K2 + 1) eps sum_k |x2_jk c_ik| (two sums of
K2 products in other orders), and so does m_i, which is one of the mu_ji.
"""

from __future__ import annotations

import numpy as np
import pytest

from blpdemand.data.markets import MarketIndex
from blpdemand.model import exp_compiled
from blpdemand.model.exp_compiled import EXP_CEILING, EXP_FLOOR, exp_into
from blpdemand.model.utility import COMPILED_BELOW, SHIFT_ABOVE, exp_utility, market_blocks

EPS = np.finfo(np.float64).eps


def test_exp_into_is_within_four_ulps_of_numpy_on_its_whole_range() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(EXP_FLOOR, 0.0, 100_000), rng.uniform(0.0, 60.0, 50_000),
                        rng.uniform(0.0, EXP_CEILING, 50_000)])
    x[:12] = [0.0, -0.0, -5e-324, 5e-324, -1e-300, 1e-300, -707.99, EXP_FLOOR, EXP_CEILING,
              708.99, 0.5 * np.log(2.0), -0.5 * np.log(2.0)]
    out = np.empty_like(x)
    exp_into(x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=4 * EPS, atol=0)


def test_exp_into_out_of_range_arguments_take_the_library_exp() -> None:
    # Below EXP_FLOOR (subnormal results and zero), above EXP_CEILING (to overflow), inf, NaN:
    # the same values as numpy's exp, bit for bit, among in-range elements.
    edges = np.array([-708.5, -744.0, -800.0, -np.inf, 709.5, 709.78, 710.0, np.inf, np.nan,
                      1.0, -1.0])
    got = np.empty_like(edges)
    with np.errstate(over="ignore"):
        exp_into(edges, got)
        expected = np.exp(edges)
    np.testing.assert_array_equal(got[:9], expected[:9])
    np.testing.assert_allclose(got[9:], expected[9:], rtol=4 * EPS, atol=0)


def _padded_block(rng: np.random.Generator, J_t: np.ndarray, I_t: np.ndarray, K2: int,
                  scale: float):
    """A block of markets of unequal sizes, with gathered X2 and coefficients."""
    products = MarketIndex.from_sorted_codes(np.arange(J_t.size), np.repeat(np.arange(J_t.size),
                                                                            J_t))
    agents = MarketIndex.from_sorted_codes(np.arange(I_t.size), np.repeat(np.arange(I_t.size),
                                                                          I_t))
    (block,) = market_blocks(products, agents, max_bytes=1 << 30, max_waste=100.0)
    x2 = block.gather_products(rng.normal(size=(J_t.sum(), K2)))
    coefficients = block.gather_agents(scale * rng.normal(size=(I_t.sum(), K2)))
    weights = block.gather_agents(np.full(I_t.sum(), 0.01))
    return block, x2, coefficients, weights


def _reference(x2, coefficients, J_t, I_t):
    """Per market: numpy's exp(mu - m), exp(-m), whether shifted, and the scale of mu's error."""
    out = []
    for t in range(J_t.size):
        mu = x2[t, :J_t[t]] @ coefficients[t, :I_t[t]].T
        shift = np.zeros(I_t[t])
        if mu.max(initial=0.0) > SHIFT_ABOVE:
            shift = np.maximum(mu.max(axis=0), 0.0)
        with np.errstate(under="ignore"):
            exp_mu, outside = np.exp(mu - shift), np.exp(-shift)
        size = np.abs(x2[t, :J_t[t]]) @ np.abs(coefficients[t, :I_t[t]]).T
        out.append((exp_mu, outside, bool(shift.any()), size))
    return out


@pytest.mark.parametrize(("K2", "large"), [(1, False), (3, False), (6, True)])
@pytest.mark.parametrize("scale", [0.5, 40.0])  # no market shifted / most markets shifted
def test_padded_exp_utility_equals_numpy_cell_by_cell(K2: int, large: bool,
                                                      scale: float) -> None:
    # small markets take the compiled kernel; large ones with six X2 columns numpy's path
    rng = np.random.default_rng(K2 + int(scale))
    if large:
        J_t, I_t = rng.integers(60, 100, size=4), rng.integers(150, 250, size=4)
        assert K2 >= COMPILED_BELOW[0] and np.mean(J_t * I_t) >= COMPILED_BELOW[1]
    else:
        J_t, I_t = rng.integers(1, 25, size=12), rng.integers(1, 90, size=12)
    block, x2, coefficients, weights = _padded_block(rng, J_t, I_t, K2, scale)
    assert block.product_pad is not None and block.agent_pad is not None
    T_b, J, I = block.shape
    stale = np.full((T_b, J, I), np.nan)  # every cell must be written
    utility = exp_utility(block, x2, coefficients, weights, out=stale)
    assert utility.exp_mu is stale
    shifted = []
    for t, (exp_mu, outside, was_shifted, size) in enumerate(_reference(x2, coefficients, J_t,
                                                                        I_t)):
        shifted.append(was_shifted)
        n, m = J_t[t], I_t[t]
        argument = (K2 + 1) * (size + size.max(axis=0))  # mu's error, m_i's error, in eps
        got = utility.exp_mu[t, :n, :m]
        bound = (2.0 + argument) * EPS * exp_mu + np.finfo(np.float64).tiny
        assert np.all(np.abs(got - exp_mu) <= bound), (t, np.max(np.abs(got - exp_mu) / bound))
        outside_bound = (2.0 + (K2 + 1) * size.max(axis=0)) * EPS * outside
        assert np.all(np.abs(utility.outside[t, :m] - outside) <= outside_bound)
        assert np.all(utility.exp_mu[t, n:] == 0.0) and np.all(utility.exp_mu[t, :, m:] == 0.0)
        assert np.all(utility.outside[t, m:] == 1.0)
    assert any(shifted) == (scale > 1)  # the rule is exercised both ways
    assert utility.shifted == all(shifted)


def test_padded_exp_utility_keeps_nonfinite_utilities_visible() -> None:
    # A NaN or infinite coefficient must leave a non-finite exp(mu) in its market (the inner
    # loop then fails that market by name) and nothing non-finite in the others.
    rng = np.random.default_rng(5)
    J_t, I_t = np.array([3, 5, 4]), np.array([6, 9, 7])
    block, x2, coefficients, weights = _padded_block(rng, J_t, I_t, 1, 1.0)
    for bad in (np.nan, np.inf, -np.inf):
        broken = coefficients.copy()
        broken[1, 2, 0] = bad
        x2[1, :, 0] = np.abs(x2[1, :, 0]) + 0.1  # the agent's utilities all take the sign of bad
        with np.errstate(invalid="ignore", over="ignore"):
            utility = exp_utility(block, x2, broken, weights)
        market = np.append(utility.exp_mu[1, :5, :9].ravel(), utility.outside[1, :9])
        if bad == -np.inf:  # exp(-inf) = 0: a finite, correct limit
            assert np.all(utility.exp_mu[1, :5, 2] == 0.0)
        else:
            assert not np.all(np.isfinite(market))
        for t in (0, 2):
            assert np.all(np.isfinite(utility.exp_mu[t]))
            assert np.all(np.isfinite(utility.outside[t]))


def test_reused_memory_gives_the_same_exp_utility() -> None:
    # The inner loop hands the block's exp(mu) at the last theta back as memory, its padding
    # already 0 (padding_written): the result must equal a fresh computation bit for bit.
    rng = np.random.default_rng(7)
    J_t, I_t = rng.integers(1, 25, size=12), rng.integers(1, 90, size=12)
    block, x2, coefficients, weights = _padded_block(rng, J_t, I_t, 2, 0.5)
    first = exp_utility(block, x2, coefficients, weights)
    fresh = exp_utility(block, x2, 2.0 * coefficients, weights)
    memory = first.exp_mu
    again = exp_utility(block, x2, 2.0 * coefficients, weights, out=memory,
                        padding_written=True)
    assert again.exp_mu is memory
    np.testing.assert_array_equal(again.exp_mu, fresh.exp_mu)
    np.testing.assert_array_equal(again.outside, fresh.outside)


@pytest.mark.parametrize(("J", "I", "K2", "compiled"), [(40, 400, 2, True), (24, 20, 2, False),
                                                        (40, 400, 6, False)])
@pytest.mark.parametrize("scale", [0.5, 40.0])
def test_unpadded_blocks_of_large_markets_with_few_columns_take_the_kernel(
        J: int, I: int, K2: int, compiled: bool, scale: float, monkeypatch) -> None:
    # equal markets (no padding): the kernel where K2 < COMPILED_BELOW[0] and J I is large,
    # numpy's whole-block form otherwise; the same cells either way, to the tolerance above
    from blpdemand.model import utility_compiled

    calls = []
    kernel = utility_compiled.padded_exp_utility
    monkeypatch.setattr(utility_compiled, "padded_exp_utility",
                        lambda *a, **k: calls.append(1) or kernel(*a, **k))
    rng = np.random.default_rng(J + K2)
    J_t, I_t = np.full(3, J), np.full(3, I)
    block, x2, coefficients, weights = _padded_block(rng, J_t, I_t, K2, scale)
    assert block.product_pad is None and block.agent_pad is None
    assert (K2 < COMPILED_BELOW[0] and J * I >= COMPILED_BELOW[1]) == compiled
    utility = exp_utility(block, x2, coefficients, weights)
    assert bool(calls) == compiled
    for t, (exp_mu, outside, _, size) in enumerate(_reference(x2, coefficients, J_t, I_t)):
        # numpy's whole-block form shifts every market where one is shifted: compare the
        # probabilities' ingredients as ratios exp(mu) / exp(-m) = exp(mu + m)
        argument = (K2 + 1) * (size + size.max(axis=0))
        got = utility.exp_mu[t] / utility.outside[t]
        want = exp_mu / outside
        bound = (4.0 + 2 * argument) * EPS * want + np.finfo(np.float64).tiny
        assert np.all(np.abs(got - want) <= bound), (t, np.max(np.abs(got - want) / bound))


def test_exp_into_gives_the_same_bits_in_its_vector_loop_as_one_element_at_a_time() -> None:
    # exp_into is compiled for the widest vectors (``wide_vectors``) on the claim that each
    # element's arithmetic is its own: a call on one element runs the loop's scalar remainder,
    # a call on the whole array its vector body, and the two must agree bit for bit.
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-30.0, 30.0, 4_093), rng.uniform(EXP_FLOOR, EXP_CEILING, 64)])
    whole, single = np.empty_like(x), np.empty(1)
    exp_into(x, whole)
    for k in range(x.size):
        exp_into(x[k:k + 1], single)
        assert single[0] == whole[k], (k, x[k])


def _function_attributes(ir: str, name: str) -> str:
    """The attribute group of the function ``name`` defines (numba's mangled name holds
    ``<len><name>``), as LLVM prints it."""
    mangled = f"{len(name)}{name}"
    (define,) = [line for line in ir.splitlines()
                 if line.startswith("define") and "@_ZN9blpdemand5model" in line
                 and mangled in line.split("@", 1)[1].split("(")[0]]
    group = define.rsplit("#", 1)[1].split()[0]
    (attributes,) = [line for line in ir.splitlines() if line.startswith(f"attributes #{group} ")]
    return attributes


def test_the_exponential_kernels_ask_llvm_for_512_bit_vectors() -> None:
    # The attribute is set by the ``wide_vectors`` intrinsic on each kernel's own function
    # (where the CPU lacks AVX-512, LLVM ignores it); compiled afresh here, since numba does
    # not show the IR of a dispatcher loaded from its cache.
    numba = pytest.importorskip("numba")
    from blpdemand.model import utility_compiled

    exp = numba.njit(cache=False)(exp_into.py_func)
    exp(np.zeros(8), np.empty(8))
    utility = numba.njit(cache=False)(utility_compiled._exp_utility.py_func)
    utility(np.zeros((1, 2, 1)), np.zeros((1, 3, 1)), np.array([2]), np.array([3]),
            np.empty((1, 2, 3)), np.empty((1, 3)), True, 700.0)
    wide = exp_compiled.prefers_wide_vectors()  # False on CPUs that slow down at 512 bits
    for dispatcher, name in ((exp, "exp_into"), (utility, "_exp_utility")):
        ir = "".join(dispatcher.inspect_llvm().values())
        assert ('"prefer-vector-width"="512"' in _function_attributes(ir, name)) == wide


def test_no_wide_vectors_for_cpus_that_lower_their_clock(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    # The build's target CPU decides (setup.py sets BLPDEMAND_JIT=build): the Skylake-SP
    # family keeps LLVM's 256 bits, later AVX-512 CPUs get 512.
    monkeypatch.setenv("BLPDEMAND_JIT", "build")
    for cpu, wide in (("cascadelake", False), ("skylake-avx512", False),
                      ("sapphirerapids", True), ("icelake-server", True), ("znver4", True)):
        monkeypatch.setenv("BLPDEMAND_AOT_CPU", cpu)
        assert exp_compiled.prefers_wide_vectors() is wide, cpu
