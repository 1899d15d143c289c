"""Simulated random-coefficients problems shared by the jobs and shards tests: bd.simulate's
markets with the cost shifters and the rival sums of x1 and x2 as excluded instruments."""

from __future__ import annotations

import blpdemand as bd


def rival_sums_problem(markets: int, products: int, draws: int, rng: int) -> bd.Problem:
    """A random coefficient on x1 (sigma 1), instruments w and sum_{k != j} x_k per market."""
    sim = bd.simulate(markets=markets, products=products, sigma={"x1": 1.0}, draws=draws,
                      rng=rng)
    frame = sim.products.copy()
    for column in ("x1", "x2"):
        frame[f"rival_{column}"] = (frame.groupby("market_ids")[column].transform("sum")
                                    - frame[column])
    return bd.Problem(frame, linear=sim.linear, nonlinear=sim.nonlinear, agents=sim.agents,
                      instruments=[*sim.instruments, "rival_x1", "rival_x2"])
