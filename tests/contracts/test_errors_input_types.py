"""Contract: config fields of the wrong type raise SpecificationError naming the field and the
value at construction, instead of a raw TypeError or a crash later, or a silent truncation.

Reference: each case breaks one field by hand (written in the test); the assertion is the error
class and ``field=value`` in the message (issue 16, item 9). Integers must be integers (numpy
integers too, not bool), floats int or float (not bool, not text), booleans bool.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import blpdemand as bd
from blpdemand.errors import SpecificationError
from blpdemand.instruments.differentiation import DifferentiationConfig
from blpdemand.model.pricing import PricingConfig
from blpdemand.solve.fixed_point import FixedPointConfig

# ---------------------------------------------------------------- config field types
BAD_FIELDS: list[tuple[type, str, object]] = [
    (bd.EstimationConfig, "gtol", "1e-6"), (bd.EstimationConfig, "gtol", True),
    (bd.EstimationConfig, "starts", 2.5), (bd.EstimationConfig, "starts", True),
    (bd.EstimationConfig, "max_iterations", "10"), (bd.EstimationConfig, "max_iterations", 10.7),
    (bd.EstimationConfig, "max_iterations", 10.0), (bd.EstimationConfig, "workers", 2.0),
    (bd.EstimationConfig, "rng", 1.5), (bd.EstimationConfig, "rng", True),
    (bd.EstimationConfig, "hessian", 1), (bd.EstimationConfig, "center_moments", "no"),
    (FixedPointConfig, "tol", "1e-14"), (FixedPointConfig, "max_evaluations", 10.5),
    (FixedPointConfig, "memory", True), (FixedPointConfig, "block_bytes", "8"),
    (FixedPointConfig, "threads", 2.0), (FixedPointConfig, "compiled", 0),
    (PricingConfig, "tol", "1e-12"), (PricingConfig, "max_iterations", 2.5),
    (PricingConfig, "newton_iterations", True), (PricingConfig, "newton_step", "x"),
    (DifferentiationConfig, "ddof", True), (DifferentiationConfig, "ddof", 1.0),
    (DifferentiationConfig, "interact", 1), (DifferentiationConfig, "split", "no"),
]


@pytest.mark.parametrize("config, name, value", BAD_FIELDS,
                         ids=[f"{c.__name__}-{n}-{v!r}" for c, n, v in BAD_FIELDS])
def test_config_field_of_wrong_type(config: type, name: str, value: object) -> None:
    with pytest.raises(SpecificationError, match=re.escape(f"{name}={value!r}")):
        config(**{name: value})


def test_contraction_mapping_fields_are_typed() -> None:
    with pytest.raises(SpecificationError, match="max_evaluations=2.5"):
        bd.EstimationConfig(contraction={"max_evaluations": 2.5})


@pytest.mark.parametrize("config, values", [
    (bd.EstimationConfig, {"gtol": 1, "max_iterations": np.int64(10), "starts": np.int32(2),
                           "workers": np.int8(1), "rng": None, "hessian": False}),
    (bd.EstimationConfig, {"gtol": np.float32(1e-5), "rng": np.uint8(3)}),
    (FixedPointConfig, {"tol": 1, "max_evaluations": np.int64(10), "compiled": False}),
    (PricingConfig, {"tol": np.float64(1e-10), "max_iterations": np.int16(5), "newton_step": 1}),
    (DifferentiationConfig, {"ddof": np.int64(0), "split": None, "interact": True}),
])
def test_config_fields_of_right_type_are_kept(config: type, values: dict[str, Any]) -> None:
    made = config(**values)
    for name, value in values.items():
        assert getattr(made, name) == value
