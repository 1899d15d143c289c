"""Saved results rebuilt from their data: the Problem again, evaluated at the saved estimate.

A results file (``save_results``) holds no data; its "model" section (see ``results.io``)
holds the Problem's construction arguments, theta, the free Sigma/Pi pattern and the last
step's W. With the same products (and agents), ``load_results(path, products=..., agents=...)``
re-creates the Problem and evaluates at theta with that W (logit: estimates again, a closed
form), then checks that the estimates equal the saved ones (rtol 1e-10), else DataError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from blpdemand.errors import DataError, SpecificationError
from blpdemand.integration.rule import Integration
from blpdemand.model.parameters import ParameterLayout
from blpdemand.model.problem import Problem
from blpdemand.results.blp import results_from
from blpdemand.results.logit import estimate_logit
from blpdemand.solve.estimate import EstimationConfig
from blpdemand.solve.evaluation import evaluate_outcome
from blpdemand.solve.moments import problem_stack

if TYPE_CHECKING:
    from blpdemand.results.io import SavedResults  # types only: io calls this module


def rebuild(saved: SavedResults, products: pd.DataFrame, *, agents: Any, instruments: Any) -> Any:
    """Full results from the data: the Problem again, evaluated at the saved estimate."""
    model = saved.model
    if not model:
        raise SpecificationError("this results file has no 'model' section (written by an older "
                                 "blpdemand, or not from live results), so it cannot be rebuilt; "
                                 "estimate again and save_results the new results")
    if instruments is None and model.get("instruments") is None:
        raise SpecificationError("the instruments were given as arrays, not product columns, so "
                                 "the file cannot name them: pass instruments= (the same values)")
    common = {"linear": model["linear"], "absorb": model.get("absorb"),
              "instruments": model.get("instruments") if instruments is None else instruments,
              "endogenous": tuple(model.get("endogenous", ("prices",))),
              "columns": model.get("columns")}
    if saved.kind == "logit":
        logit = model.get("logit", {})
        if logit.get("covariance") == "clustered":
            raise SpecificationError("clustered logit results cannot be rebuilt (cluster ids are "
                                     "not saved); re-run bd.estimate_logit with clusters=")
        results: Any = estimate_logit(products, **common, method=logit.get("method", "2sls"),
                                      nesting=model.get("nesting"),
                                      rho=model.get("rho") or "common",
                                      covariance=logit.get("covariance", "robust"),
                                      center_moments=bool(logit.get("center_moments", False)))
    else:
        results = _rebuild_blp(saved, products, common, agents)
    _check_same(saved, results)
    return results


def _rebuild_blp(saved: SavedResults, products: pd.DataFrame, common: dict[str, Any],
                 agents: Any) -> Any:
    model = saved.model
    if model.get("micro"):
        raise SpecificationError(
            f"these results matched micro moments {model['micro']}, which a results file does "
            "not hold (they are code): rebuild the Problem with micro=[...] and call "
            "bd.evaluate at the saved estimates instead")
    supply: dict[str, Any] = {}
    if model.get("supply") is not None:
        if model.get("supply_instruments") is None:
            raise SpecificationError("the supply instruments were given as arrays, not product "
                                     "columns, so these results cannot be rebuilt from the file")
        kappa = model.get("kappa")
        bounds = model.get("costs_bounds")
        supply = {"supply": model["supply"], "supply_instruments": model["supply_instruments"],
                  "costs": model.get("costs", "linear"),
                  "conduct": ({(f, g): w for f, g, w in kappa} if kappa
                              else model.get("conduct", "bertrand")),
                  "costs_bounds": None if bounds is None else tuple(bounds),
                  "absorb_supply": model.get("absorb_supply"),
                  "supply_markets": model.get("supply_markets"),
                  "covariance_restrictions": model.get("covariance_restrictions"),
                  "covariance_moments_mean": model.get("covariance_moments_mean", 0.0)}
    problem = Problem(products, **common, nonlinear=model.get("nonlinear"),
                      demographics=model.get("demographics"),
                      agents=_saved_agents(model) if agents is None else agents,
                      negative_weights=bool(model.get("negative_weights", False)),
                      lognormal=model.get("lognormal"), nesting=model.get("nesting"),
                      rho=model.get("rho") or "common", **supply)
    sigma_free = np.array(model["sigma_free"], dtype=bool)  # (K2, K2); (K2, 0) Pi with D = 0
    pi_free = np.array(model["pi_free"], dtype=bool).reshape(len(model["pi_free"]), -1)
    W = np.array(model["W"], dtype=np.float64)
    M = problem_stack(problem).M
    if sigma_free.shape != (problem.K2, problem.K2) or pi_free.shape != (problem.K2, problem.D) \
            or W.shape != (M, M):
        raise DataError(f"the saved estimate has Sigma {sigma_free.shape}, Pi {pi_free.shape} "
                        f"and W {W.shape}; the data give K2 = {problem.K2}, D = {problem.D}, "
                        f"{M} instruments: not the data the results were estimated on")
    layout = ParameterLayout(sigma_free=sigma_free, pi_free=pi_free, x2_names=problem.X2.names,
                             demographic_names=problem.demographic_names,
                             rho_names=() if problem.nests is None else problem.nests.names)
    config = _config(saved.config)
    theta = np.array(model["theta"], dtype=np.float64)
    return results_from(problem, evaluate_outcome(problem, layout, theta, config, W=W), config)


def _saved_agents(model: Mapping[str, Any]) -> Any:
    """The Integration that made the agents, when it can be remade without data."""
    source = model.get("agents") or {}
    if source.get("source") == "integration" and not source.get("demographics_data"):
        return Integration(source["kind"], source["size"], rng=source["rng"],
                           per_market=source["per_market"], pairing=source["pairing"])
    what = ("an Integration with demographics_data" if source.get("source") == "integration"
            else "agent data")
    raise SpecificationError(f"these results were estimated with {what}: pass agents= (the same "
                             "agent DataFrame or Integration) to load_results")


def _config(saved: Mapping[str, Any]) -> Any:
    """The saved EstimationConfig again (runner, workers and executor are not part of the
    result: they say where the work ran, not what was computed)."""
    names = {f.name for f in dataclasses.fields(EstimationConfig)} - {"runner", "workers",
                                                                      "executor"}
    values = {k: v for k, v in saved.items() if k in names}
    if isinstance(values.get("bounds"), Mapping):
        values["bounds"] = {k: tuple(v) for k, v in values["bounds"].items()}
    try:
        return EstimationConfig(**{**values, "starts": 0})
    except (TypeError, ValueError, SpecificationError) as exc:
        raise DataError(f"the saved configuration cannot be read back ({exc})") from None


def _check_same(saved: SavedResults, results: Any) -> None:
    """Rebuilt estimates equal the saved ones (rtol 1e-10, atol 1e-12), else DataError."""
    body = results.summary().body  # the table save_results read the estimates from
    rebuilt = pd.Series(np.asarray(body["estimate"], dtype=np.float64),
                        index=[str(i) for i in body.index])
    expected = saved.estimates
    if list(rebuilt.index) != list(expected.index):
        raise DataError(f"the data give parameters {list(rebuilt.index)}, the file "
                        f"{list(expected.index)}: not the data the results were estimated on")
    a, b = rebuilt.to_numpy(), expected.to_numpy()
    bad = ~(np.isclose(a, b, rtol=1e-10, atol=1e-12) | (np.isnan(a) & np.isnan(b)))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"the data differ from those the results were estimated on: rebuilt "
                        f"{expected.index[k]} = {float(a[k])!r}, saved {float(b[k])!r} "
                        f"({int(bad.sum())} of {bad.size} estimates differ); "
                        "pass the same products and agents")
