"""Results on disk: a documented, versioned JSON schema that ``save_results`` writes and
``load_results`` reads back.

Estimation results hold the data they were computed from, so they are not serialized whole;
what is written is what a paper, a log or a later comparison needs: estimates with their
standard errors, the objective, diagnostics, the configuration, package versions and every
table (so a loaded file renders the same tables, byte for byte, as the live results did).

Schema (``schema_version`` 1), one JSON object::

    {
      "schema": "blpdemand.results",      constant, identifies the file
      "schema_version": 1,                this layout; readers refuse newer versions
      "kind": "logit" | "blp",            the estimator that produced the results
      "created": "2026-11-28T23:00:00+00:00",
      "versions": {"blpdemand": ..., "python": ..., "numpy": ..., "scipy": ..., "pandas": ...},
      "parameters": [                     one entry per estimated parameter, in table order
        {"name": "prices", "group": "beta", "estimate": -30.2, "std_error": 1.01}, ...],
      "objective": 4.56 | null,           GMM objective at the estimates (null for OLS)
      "diagnostics": {...},               convergence, counts, gradient norm, warnings, ...
      "config": {...},                    the estimator's configuration as given
      "spec": {...},                      the CLI specification (empty from the Python API)
      "post_estimation": {...},           summaries of requested post-estimation outputs
      "model": {...},                     optional: what rebuilds the results from the data
                                          (below); absent in files written before it
      "tables": {                         every table by name ("summary", ...)
        "summary": {"title": ..., "index_name": ..., "index": [...], "columns": [...],
                    "columns_name": ... (optional, the columns' axis name),
                    "dtypes": [...], "data": [[...], ...], "notes": [...], "digits": 4}}
                    (dtypes: "float", "int", "bool", "object", or "Int64" / "Float64" /
                    "boolean" for nullable columns whose missing values are null)
    }

The optional "model" section (written for live logit and BLP results) holds the Problem's
construction arguments and the exact estimate, so ``load_results(path, products=..., agents=...)``
can rebuild full results from the same data::

    "model": {
      "linear": "prices", "nonlinear": "1 + prices" | null, "demographics": str | null,
      "absorb": ["product_ids"] | null,   absorbed columns
      "instruments": [names] | null,      null: given as arrays (pass instruments= to rebuild)
      "endogenous": ["prices"], "columns": {...} | null, "negative_weights": false,
      "lognormal": {"prices": -1} | null,  X2 columns with lognormal coefficients, their signs
      "agents": null | {"source": "frame"} | {"source": "integration", "kind", "size", "rng",
                "per_market", "pairing", "demographics_data": bool},
      "theta": [...], "sigma_free": [[bool]], "pi_free": [[bool]],   BLP: the estimate's theta
      "W": [[...]],                       BLP: the last GMM step's weighting matrix
      "logit": {"method", "covariance", "center_moments"}            logit: the estimator
    }

Numbers are JSON numbers written with Python's shortest round-trip repr, so floats read back
identical; numeric column labels (product ids heading an elasticity matrix) stay numbers.
JSON has no NaN or infinity: those are written as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` and restored on loading (in tables and in every nested section).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd

from blpdemand.errors import DataError, SpecificationError
from blpdemand.results.tables import Table

SCHEMA = "blpdemand.results"
SCHEMA_VERSION = 1
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_DIAGNOSTIC_FIELDS = (
    "converged", "status", "message", "iterations", "evaluations", "gradient", "gradient_norm",
    "hessian_eigenvalues", "contraction_iterations", "contraction_evaluations",
    "contraction_failures", "time", "seconds", "nobs", "N", "T", "method", "covariance_kind",
    "covariance_type", "covariance", "df_resid", "absorbed_degrees", "j_statistic",
    "weak_instruments", "first_stage_f", "rng", "seeds", "warnings", "starts", "step", "steps",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedResults:
    """Results read back from JSON (or captured for writing): numbers, tables and provenance.

    Attributes
    ----------
    kind : "logit" or "blp".
    parameters : DataFrame indexed by parameter name with columns group, estimate, std_error.
    objective : GMM objective at the estimates, or None.
    diagnostics, config, spec, post_estimation, versions : plain JSON-ready dicts.
    tables : name -> Table; ``summary()`` returns ``tables["summary"]``.
    model : what rebuilds the results from the data (see the module docstring), or empty.

    Saved results hold no data, so post-estimation (elasticities, costs, ...) needs the results
    rebuilt: ``load_results(path, products=..., agents=...)``.
    """

    kind: str
    parameters: pd.DataFrame
    objective: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    post_estimation: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def fitted(self) -> Any:
        """Saved results have no demand model: post-estimation raises, naming the fix."""
        raise SpecificationError(
            "these results were loaded without data, so they hold estimates and tables but no "
            "demand model; for elasticities, costs and counterfactuals rebuild them from the "
            "data they were estimated on: bd.load_results(path, products=..., agents=...)")

    @property
    def estimates(self) -> pd.Series:
        """Point estimates by parameter name."""
        return self.parameters["estimate"].astype(np.float64)

    @property
    def standard_errors(self) -> pd.Series:
        """Standard errors by parameter name."""
        return self.parameters["std_error"].astype(np.float64)

    def summary(self) -> Table:
        """The summary table, as the live results rendered it."""
        if "summary" not in self.tables:
            raise SpecificationError(f"no 'summary' table saved; tables: {sorted(self.tables)}")
        return self.tables["summary"]

    def __repr__(self) -> str:
        objective = "" if self.objective is None else f", objective = {self.objective:.6g}"
        head = (f"SavedResults ({self.kind}{objective}; created {self.created or 'now'}; "
                f"tables: {sorted(self.tables)})")
        if "summary" in self.tables:
            return self.tables["summary"].preview(heading=head)
        return Table(title="Parameters", body=self.parameters).preview(heading=head)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the schema above."""
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "kind": self.kind,
            "created": self.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "versions": dict(self.versions) or package_versions(),
            "parameters": [
                {"name": str(name), "group": str(row["group"]),
                 "estimate": _encode(row["estimate"]), "std_error": _encode(row["std_error"])}
                for name, row in self.parameters.iterrows()],
            "objective": _encode(self.objective),
            "diagnostics": jsonable(self.diagnostics), "config": jsonable(self.config),
            "spec": jsonable(self.spec), "post_estimation": jsonable(self.post_estimation),
            "tables": {name: table_to_json(t) for name, t in self.tables.items()},
            **({"model": jsonable(self.model)} if self.model else {}),
        }


def package_versions() -> dict[str, str]:
    """Versions of blpdemand, Python and the numerical stack (provenance of a results file)."""
    import scipy

    from blpdemand import __version__

    return {"blpdemand": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__}


def capture(results: Any, *, spec: Mapping[str, Any] | None = None,
            tables: Mapping[str, Table] | None = None,
            post_estimation: Mapping[str, Any] | None = None) -> SavedResults:
    """Capture live results (logit or BLP) as a :class:`SavedResults` ready for JSON.

    Parameters are read from ``results.summary()`` (a coefficient table with ``estimate`` and
    ``std. error`` columns); the objective, diagnostics and configuration from the attributes
    of the same names. ``tables`` adds named tables beside ``summary``.
    """
    if isinstance(results, SavedResults):
        return dataclasses.replace(
            results, spec=dict(spec or results.spec),
            tables={**results.tables, **dict(tables or {})},
            post_estimation={**results.post_estimation, **dict(post_estimation or {})})
    summary = results.summary()
    all_tables = {"summary": summary, **dict(tables or {})}
    parameters = _parameters_from(summary, results)
    objective = getattr(results, "objective", None)
    diagnostics = {k: getattr(results, k) for k in _DIAGNOSTIC_FIELDS
                   if _has(results, k) and not callable(getattr(results, k))}
    config = getattr(results, "config", None)
    name = type(results).__name__.lower()
    return SavedResults(
        kind="logit" if "logit" in name else "blp", parameters=parameters,
        objective=None if objective is None else float(objective),
        diagnostics=jsonable(diagnostics), config=jsonable(config) if config is not None else {},
        spec=dict(spec or {}), post_estimation=dict(post_estimation or {}), tables=all_tables,
        versions=package_versions(),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), model=_model(results))


def save_results(results: Any, path: str | Path, **extra: Any) -> Path:
    """Write results (live, or a :class:`SavedResults`) to ``path`` as JSON; returns the path.

    ``extra`` (spec=, tables=, post_estimation=) is passed to :func:`capture`.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> p = pd.DataFrame({"group": ["beta"], "estimate": [1.5], "std_error": [0.1]},
    ...                  index=pd.Index(["prices"]))
    >>> r = SavedResults(kind="logit", parameters=p)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     float(load_results(save_results(r, d + "/r.json")).estimates["prices"])
    1.5
    """
    record = capture(results, **extra).to_json()
    path = Path(path)
    text = json.dumps(record, indent=2, allow_nan=False)
    # atomically: a reader (or an interrupted writer) never sees half a file
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_text(text + "\n", encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@overload
def load_results(path: str | Path, *, products: None = None, agents: None = None,
                 instruments: None = None) -> SavedResults: ...
@overload
def load_results(path: str | Path, *, products: pd.DataFrame, agents: Any = None,
                 instruments: Any = None) -> Any: ...
def load_results(path: str | Path, *, products: pd.DataFrame | None = None, agents: Any = None,
                 instruments: Any = None) -> Any:
    """Read a results JSON file written by :func:`save_results` (schema version <= 1).

    Without data: a :class:`SavedResults` (estimates, tables, provenance). With the data the
    results were estimated on (``products``, and ``agents`` unless a built-in Integration without
    demographics made them; ``instruments`` only if they were given as arrays): full results
    (BLPResults or LogitResults) rebuilt from the saved "model" section, evaluated at the saved
    theta with the saved configuration and W, ready for post-estimation. Raises DataError when
    the rebuilt estimates differ from the saved ones by more than 1e-10 (relative): other data.
    """
    saved = _read(Path(path))
    if products is None:
        if agents is not None or instruments is not None:
            raise SpecificationError("agents=/instruments= rebuild results from their data: "
                                     "pass products= too")
        return saved
    from blpdemand.results.rebuild import rebuild

    return rebuild(saved, products, agents=agents, instruments=instruments)


def _read(path: Path) -> SavedResults:
    """The SavedResults of one file, its schema checked."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"results file '{path}' does not exist") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"results file '{path}' is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise DataError(f"'{path}' is not a blpdemand results file (no \"schema\": \"{SCHEMA}\")")
    version = record.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise DataError(f"'{path}' has schema_version {version!r}; this blpdemand reads versions "
                        f"<= {SCHEMA_VERSION}; upgrade blpdemand")
    rows = record.get("parameters", [])
    parameters = pd.DataFrame(
        {"group": [r["group"] for r in rows],
         "estimate": np.array([_decode(r["estimate"]) for r in rows], dtype=np.float64),
         "std_error": np.array([_decode(r["std_error"]) for r in rows], dtype=np.float64)},
        index=pd.Index([r["name"] for r in rows], dtype=object))
    objective = record.get("objective")
    return SavedResults(
        kind=record["kind"], parameters=parameters,
        objective=None if objective is None else float(_decode(objective)),
        diagnostics=_decode_tree(record.get("diagnostics", {})),
        config=_decode_tree(record.get("config", {})), spec=_decode_tree(record.get("spec", {})),
        post_estimation=_decode_tree(record.get("post_estimation", {})),
        tables={k: table_from_json(v) for k, v in record.get("tables", {}).items()},
        versions=record.get("versions", {}), created=record.get("created", ""),
        schema_version=version, model=_decode_tree(record.get("model", {})))


# ---------------------------------------------------------------------- rebuilding from data
def _model(results: Any) -> dict[str, Any]:
    """The "model" section of live results: the Problem's inputs and the exact estimate."""
    inputs = getattr(getattr(results, "problem", None), "inputs", None)
    if not isinstance(inputs, dict) or not inputs:
        return {}
    from blpdemand.results.blp import BLPResults
    from blpdemand.results.logit import LogitResults

    model: dict[str, Any] = dict(inputs)
    problem = results.problem
    exogenous = [n for n in problem.X1.names if n not in problem.endogenous]
    if model.get("instruments") is not None and \
            list(problem.ZD.names) != exogenous + list(model["instruments"]):
        model["instruments"] = None  # replaced since (optimal instruments): not product columns
    if isinstance(results, BLPResults):
        model.update(theta=results.theta.tolist(), sigma_free=results.layout.sigma_free.tolist(),
                     pi_free=results.layout.pi_free.tolist(), W=np.asarray(results.W).tolist())
        if problem.micro is not None:  # their names: the moments themselves are code
            model["micro"] = list(problem.micro.names)
    elif isinstance(results, LogitResults):
        model["logit"] = {"method": results.method, "covariance": results.covariance_type,
                          "center_moments": bool(results._fit.center_moments)}
    else:  # other estimators (the approximation) are not rebuilt
        return {}
    return jsonable(model)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- tables
def table_to_json(table: Table) -> dict[str, Any]:
    """A Table as JSON: title, index, columns, per-column dtype kind, data rows, notes, digits."""
    body = table.body
    dtypes = [_kind(body[c]) for c in body.columns]
    data = [[_encode(v) for v in row] for row in body.itertuples(index=False, name=None)]
    return {"title": table.title,
            "index_name": None if body.index.name is None else str(body.index.name),
            "index": [_encode(v) for v in body.index], "columns": [_label(c) for c in body.columns],
            "columns_name": None if body.columns.name is None else str(body.columns.name),
            "dtypes": dtypes, "data": data, "notes": list(table.notes), "digits": table.digits}


def table_from_json(record: Mapping[str, Any]) -> Table:
    """Inverse of :func:`table_to_json`."""
    columns = [_decode(c) for c in record["columns"]]
    data = record["data"]
    body: dict[str, Any] = {}
    for k, (name, kind) in enumerate(zip(columns, record["dtypes"])):
        values = [_decode(row[k]) for row in data]
        if kind == "float":
            body[name] = np.array(values, dtype=np.float64)
        elif kind == "int":
            body[name] = np.array(values, dtype=np.int64)
        elif kind == "bool":
            body[name] = np.array(values, dtype=bool)
        elif kind in ("Int64", "Float64", "boolean"):  # null is pd.NA
            body[name] = pd.array(values, dtype=kind)
        else:
            body[name] = pd.array(values, dtype=object)
    index = pd.Index([_decode(v) for v in record["index"]], name=record.get("index_name"))
    frame = pd.DataFrame(body, index=index, columns=columns)
    frame.columns.name = record.get("columns_name")
    return Table(title=record["title"], body=frame, notes=tuple(record.get("notes", ())),
                 digits=int(record.get("digits", 4)))


def _label(name: Any) -> Any:
    """A column label: numbers (e.g. product ids heading an elasticity matrix) stay numbers."""
    if isinstance(name, (int, float, np.integer, np.floating)) and not isinstance(name, bool):
        return _encode(name)
    return str(name)


def _kind(column: pd.Series) -> str:
    missing = bool(column.isna().any())  # nullable Int64/boolean columns holding pd.NA
    if pd.api.types.is_bool_dtype(column):
        return "boolean" if missing else "bool"
    if pd.api.types.is_integer_dtype(column):
        return "Int64" if missing else "int"
    if pd.api.types.is_float_dtype(column):
        return "Float64" if missing and str(column.dtype) == "Float64" else "float"
    return "object"


# ---------------------------------------------------------------------- plain JSON values
def jsonable(value: Any) -> Any:
    """Convert numpy, pandas, dataclasses, enums and paths to plain JSON values."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value.value, int) else jsonable(value.value)
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return _encode(value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.name.startswith("_") and not callable(getattr(value, f.name))}
    if isinstance(value, Table):
        return table_to_json(value)
    if isinstance(value, pd.DataFrame):
        return {str(c): jsonable(value[c].to_numpy()) for c in value.columns}
    if isinstance(value, pd.Series):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, Warning):
        return f"{type(value).__name__}: {value}"
    return str(value)


def _encode(value: Any) -> Any:
    """A JSON scalar: Python numbers, non-finite floats as strings, pd.NA / NaT as null."""
    if value is None or isinstance(value, str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    return jsonable(value)


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    return value


def _decode_tree(value: Any) -> Any:
    """Restore NaN and infinities written as strings anywhere in nested dicts and lists
    (e.g. bounds = (0, inf) in the configuration, an infinite gradient norm)."""
    if isinstance(value, dict):
        return {k: _decode_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_tree(v) for v in value]
    return _decode(value)


def _has(obj: Any, name: str) -> bool:
    try:
        getattr(obj, name)
    except Exception as error:  # a property that cannot be computed is not recorded
        if isinstance(error.__cause__ or error.__context__, KeyboardInterrupt):
            raise  # an interrupt wrapped by a compiled kernel (SystemError) is no missing field
        return False
    return True


def _parameters_from(summary: Table, results: Any) -> pd.DataFrame:
    """Parameters (group, estimate, std_error) from a coefficient summary table."""
    body = summary.body
    if "estimate" not in body.columns:
        raise SpecificationError(f"summary table has no 'estimate' column; columns: "
                                 f"{list(body.columns)}")
    se = body["std. error"] if "std. error" in body.columns else np.full(len(body), np.nan)
    groups = [_group(str(name)) for name in body.index]
    return pd.DataFrame({"group": [str(g) for g in groups],
                         "estimate": np.asarray(body["estimate"], dtype=np.float64),
                         "std_error": np.asarray(se, dtype=np.float64)},
                        index=pd.Index([str(i) for i in body.index], dtype=object))


def _group(name: str) -> str:
    """Parameter group from its name: ``sigma[...]``, ``pi[...]``, ``gamma[...]`` (costs),
    else a linear ``beta``."""
    for group in ("sigma", "pi", "gamma"):
        if name.startswith(group + "["):
            return group
    return "beta"
