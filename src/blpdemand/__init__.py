"""blpdemand: fast random-coefficients logit (BLP) demand estimation.

The public API is imported lazily from the modules that define it (one concept per module).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it. Add a line here when a module exports a public name.
_API: dict[str, str] = {
    # errors
    "BLPDemandError": "blpdemand.errors",
    "DataError": "blpdemand.errors",
    "SpecificationError": "blpdemand.errors",
    "MissingColumnError": "blpdemand.errors",
    "ConvergenceError": "blpdemand.errors",
    "JobError": "blpdemand.errors",
    "WorkerLostError": "blpdemand.errors",
    # data and model
    "load_products": "blpdemand.data.products",
    "MarketIndex": "blpdemand.data.markets",
    "Problem": "blpdemand.model.problem",
    "FixedPointConfig": "blpdemand.solve.fixed_point",
    "Status": "blpdemand._types",
    "InnerLoop": "blpdemand.solve.contraction",
    "solve_delta": "blpdemand.solve.inversion",
    "run_demo": "blpdemand.cli.demo",
    "estimate_logit": "blpdemand.results.logit",
    "LogitResults": "blpdemand.results.logit",
    # instruments
    "build_blp_instruments": "blpdemand.instruments.blp",
    "build_differentiation_instruments": "blpdemand.instruments.differentiation",
    "DifferentiationConfig": "blpdemand.instruments.differentiation",
    "build_hausman_instruments": "blpdemand.instruments.hausman",
    "build_nesting_instruments": "blpdemand.instruments.nesting",
    "build_cost_shifters": "blpdemand.instruments.cost_shifters",
    "build_demographic_instruments": "blpdemand.instruments.demographic",
    "build_salanie_wolak_terms": "blpdemand.instruments.demographic",
    "fit_prices": "blpdemand.instruments.fitted_prices",
    "with_fitted_prices": "blpdemand.instruments.fitted_prices",
    "FirstStage": "blpdemand.instruments.fitted_prices",
    "check_identification": "blpdemand.instruments.identification",
    "IdentificationReport": "blpdemand.instruments.identification",
    "simulate": "blpdemand.model.simulation",
    "SimulatedMarkets": "blpdemand.model.simulation",
    # integration
    "Integration": "blpdemand.integration.rule",
    "build_agent_frame": "blpdemand.integration.agents",
    "draws_stability": "blpdemand.integration.stability",
    "Table": "blpdemand.results.tables",
    "estimate": "blpdemand.results.blp",
    "BLPResults": "blpdemand.results.blp",
    "evaluate": "blpdemand.results.blp",
    "ObjectiveProfile": "blpdemand.results.diagnostics",
    "ObjectiveContour": "blpdemand.results.diagnostics",
    "DrawsStability": "blpdemand.results.diagnostics",
    "EstimationConfig": "blpdemand.solve.estimate",
    "coefficient_table": "blpdemand.results.tables",
    "save_results": "blpdemand.results.io",
    "load_results": "blpdemand.results.io",
    "SavedResults": "blpdemand.results.io",
    "estimate_approximation": "blpdemand.results.approximation",
    "ApproximationResults": "blpdemand.results.approximation",
    "approximation_start": "blpdemand.solve.salanie_wolak",
    "optimal_instruments": "blpdemand.results.optimal_instruments",
    "OptimalInstruments": "blpdemand.results.optimal_instruments",
    # post-estimation: elasticities, supply side, counterfactuals
    "compute_elasticities": "blpdemand.results.elasticities",
    "own_elasticity_summary": "blpdemand.results.elasticities",
    "compute_aggregate_elasticities": "blpdemand.results.elasticities",
    "MarketMatrices": "blpdemand.results.elasticities",
    "compute_diversion_ratios": "blpdemand.results.diversion",
    "compute_long_run_diversion_ratios": "blpdemand.results.diversion",
    "compute_passthrough": "blpdemand.results.passthrough",
    "wald_test": "blpdemand.results.wald",
    "WaldTest": "blpdemand.results.wald",
    "compute_markups": "blpdemand.results.costs",
    "compute_costs": "blpdemand.results.costs",
    "fitted_costs": "blpdemand.results.cost_function",
    "counterfactual_costs": "blpdemand.results.cost_function",
    "entrant_costs": "blpdemand.results.cost_function",
    "compute_profits": "blpdemand.results.costs",
    "compute_prices": "blpdemand.results.counterfactual",
    "compute_shares": "blpdemand.results.shares",
    "simulate_entry": "blpdemand.results.entry",
    "simulate_merger": "blpdemand.results.counterfactual",
    "merger_comparison": "blpdemand.results.counterfactual",
    "fitted_from_truth": "blpdemand.results.counterfactual",
    "Counterfactual": "blpdemand.results.counterfactual",
    "compute_consumer_surplus": "blpdemand.results.surplus",
    "regression_table": "blpdemand.results.comparison",
    "check_economics": "blpdemand.results.economics",
    "EconomicChecks": "blpdemand.results.sanity",
    "bootstrap": "blpdemand.results.bootstrap",
    "BootstrapDraws": "blpdemand.results.bootstrap",
    "BootstrapSummary": "blpdemand.results.bootstrap_summary",
    "ElasticityHeatmap": "blpdemand.results.plots",
    "PricingConfig": "blpdemand.model.pricing",
}

__all__ = [*sorted(_API), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        module = importlib.import_module(_API[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name == "micro":  # bd.micro.mean(...), bd.micro.Survey(...): micro-moment descriptions
        return importlib.import_module("blpdemand.data.micro")
    if name in {"instruments", "integration", "data", "model", "solve", "results"}:
        return importlib.import_module(f"blpdemand.{name}")
    raise AttributeError(f"module 'blpdemand' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
