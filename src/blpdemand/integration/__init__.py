"""Integration layer: nodes and weights for the integrals over consumer tastes, and agent data.

``Integration(kind, size, rng=...)`` (rule.py) is the one config; rules live in monte_carlo.py,
quasi_monte_carlo.py, quadrature.py and sparse_grid.py; agents.py pairs nodes with empirical
demographics; stability.py re-runs a computation with more nodes.
"""

from __future__ import annotations

from blpdemand.integration.agents import build_agent_frame
from blpdemand.integration.rule import KINDS, Integration
from blpdemand.integration.stability import StabilityReport, draws_stability

__all__ = ["KINDS", "Integration", "StabilityReport", "build_agent_frame", "draws_stability"]
