"""Cost shifters: user columns that move marginal cost but not utility, passed through checked.

Typical shifters are input prices, exchange rates (the cars data's ``RXR``), or distance to
plants (Berry, Levinsohn and Pakes 1995; Grieco, Murry and Yurukoglu 2024). They are used as
excluded demand instruments as they are; this builder only checks and names them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from blpdemand.data.formulation import build_matrix
from blpdemand.data.validation import require_columns, require_finite, require_nonempty
from blpdemand.errors import SpecificationError
from blpdemand.instruments._prepare import clean


def build_cost_shifters(products: pd.DataFrame, shifters: str | list[str] | tuple[str, ...], *,
                        prefix: str = "") -> pd.DataFrame:
    """Cost-shifter columns w_jt, checked: present, finite, not constant.

    Parameters
    ----------
    products : product DataFrame, any row order.
    shifters : column names, or a formula without intercept (``"RXR + log(steel)"``).
    prefix : prefix of the output column names.

    Returns
    -------
    DataFrame (N, L) with the input's index and row order.

    Raises
    ------
    DataError naming a missing column or the first NaN/inf; SpecificationError naming a
    constant column (collinear with the intercept, it cannot shift prices).

    Examples
    --------
    >>> d = pd.DataFrame({"w": [1.0, 2.0], "v": [3.0, 1.0]})
    >>> build_cost_shifters(d, ["w", "v"]).columns.tolist()
    ['w', 'v']
    """
    require_columns(products, [], what="product data")
    require_nonempty(products, what="product data")
    if isinstance(shifters, str):
        matrix = build_matrix(shifters, products.reset_index(drop=True), intercept=False,
                              what="cost shifter formula")
        values, names = matrix.values, [clean(n) for n in matrix.names]
    else:
        names = [str(s) for s in shifters]
        if not names:
            raise SpecificationError("cost shifters: give at least one column")
        require_columns(products, names, what="product data (cost shifters)")
        require_finite(products, names, what="product data (cost shifters)")
        values = products[names].to_numpy(dtype=np.float64)
    if values.shape[1] == 0:
        raise SpecificationError(f"cost shifters {shifters!r} give no columns")
    constant = [names[k] for k in range(values.shape[1]) if np.ptp(values[:, k]) == 0]
    if constant:
        raise SpecificationError(
            f"cost shifter column(s) {constant} are constant over all products; a constant "
            "cannot shift prices (it is collinear with the intercept); drop it")
    return pd.DataFrame(values, index=products.index, columns=[prefix + n for n in names])
