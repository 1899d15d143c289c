"""A simulated market with an income demographic, its exact shares, and a simulated survey.

u_ijt = delta_jt + sigma nu_i x1_jt + pi y_i p_jt + eps_ijt, delta_jt = b0 + a p_jt + b1 x1_jt
+ xi_jt, with y_i income (standard normal, its mean shifted a little by market: the shares
alone say little about pi) and prices correlated with xi through the cost shifter rule. The
shares are exact for the agents returned (no simulation error), so a BLP estimate with them
recovers the truth up to the sampling error of xi. ``survey`` draws consumers from the true
model (market, agent, choice) and returns the sample statistics a survey would publish.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BETA = {"1": -1.0, "prices": -1.5, "x1": 1.0}
SIGMA, PI = 0.8, 0.6


@dataclass(frozen=True)
class MicroMarkets:
    products: pd.DataFrame
    agents: pd.DataFrame
    probabilities: list[np.ndarray]  # per market (I, 1 + J): s_i0, s_i1..s_iJ at the truth


def simulate_micro(*, markets: int = 40, products: int = 8, agents: int = 300,
                   rng: int = 0) -> MicroMarkets:
    g = np.random.default_rng(rng)
    rows, people, probabilities = [], [], []
    for t in range(markets):
        x1 = g.uniform(0, 2, products)
        w = g.uniform(0, 1, products)
        xi = g.normal(0, 0.3, products)
        prices = 1.0 + 1.0 * w + 0.5 * xi + g.uniform(0, 0.2, products)
        nu = g.normal(0, 1, agents)
        income = g.normal(g.uniform(-0.1, 0.1), 1, agents)
        delta = BETA["1"] + BETA["prices"] * prices + BETA["x1"] * x1 + xi
        u = delta[None, :] + SIGMA * nu[:, None] * x1[None, :] + PI * income[:, None] * prices
        e = np.exp(np.hstack([np.zeros((agents, 1)), u]))
        s = e / e.sum(axis=1, keepdims=True)
        probabilities.append(s)
        shares = s[:, 1:].mean(axis=0)
        for j in range(products):
            rows.append({"market_ids": t, "product_ids": j, "firm_ids": j, "shares": shares[j],
                         "prices": prices[j], "x1": x1[j], "w": w[j], "xi": xi[j]})
        for i in range(agents):
            people.append({"market_ids": t, "weights": 1.0 / agents, "nodes0": nu[i],
                           "income": income[i]})
    frame = pd.DataFrame(rows)
    by = frame.groupby("market_ids")
    frame["rival_x1"] = by["x1"].transform("sum") - frame["x1"]
    frame["rival_w"] = by["w"].transform("sum") - frame["w"]
    frame["w2"] = frame["w"] ** 2
    return MicroMarkets(products=frame, agents=pd.DataFrame(people),
                        probabilities=probabilities)


def survey(data: MicroMarkets, observations: int, *, rng: int = 1) -> dict[str, float]:
    """Draw buyers from the true model (market uniformly, agent by weight, choice by s_ij;
    draws choosing the outside option are not buyers and are redrawn) and return
    Cov(income, price paid | buyer) and E[income | buyer] in that sample."""
    g = np.random.default_rng(rng)
    T = len(data.probabilities)
    income = [data.agents.loc[data.agents.market_ids == t, "income"].to_numpy() for t in range(T)]
    price = [data.products.loc[data.products.market_ids == t, "prices"].to_numpy()
             for t in range(T)]
    incomes: list[float] = []
    prices: list[float] = []
    while len(incomes) < observations:
        t = int(g.integers(T))
        s = data.probabilities[t]
        i = int(g.integers(s.shape[0]))
        j = int(g.choice(s.shape[1], p=s[i]))
        if j > 0:  # a buyer
            incomes.append(float(income[t][i]))
            prices.append(float(price[t][j - 1]))
    y, p = np.array(incomes), np.array(prices)
    return {"cov": float(np.mean(y * p) - y.mean() * p.mean()), "mean": float(y.mean())}


def second_choice_survey(data: MicroMarkets, observations: int, *, rng: int = 2
                         ) -> dict[str, float]:
    """Draw buyers' first and second choices from the true model (k from s_ik / (1 - s_ij),
    k != j) and return P(second has x1 > 1 | first has x1 > 1) and P(second: outside | buyer)."""
    g = np.random.default_rng(rng)
    T = len(data.probabilities)
    x1 = [data.products.loc[data.products.market_ids == t, "x1"].to_numpy() for t in range(T)]
    high_high = high = outside = buyers = 0
    while buyers < observations:
        t = int(g.integers(T))
        s = data.probabilities[t]
        i = int(g.integers(s.shape[0]))
        j = int(g.choice(s.shape[1], p=s[i]))
        if j == 0:
            continue
        second = s[i].copy()
        second[j] = 0.0
        k = int(g.choice(s.shape[1], p=second / second.sum()))
        buyers += 1
        outside += k == 0
        if x1[t][j - 1] > 1:
            high += 1
            high_high += k > 0 and x1[t][k - 1] > 1
    return {"high_high": high_high / high, "high": float(high), "outside": outside / buyers}
