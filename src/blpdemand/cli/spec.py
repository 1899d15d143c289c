"""The TOML specification read by ``blpdemand estimate`` and ``blpdemand logit``.

A specification names the data, the model, the instruments, the integration rule, the
estimator's options, the post-estimation outputs and where the jobs run (``[compute]``). Every
key is checked: an unknown key is an error naming it and the valid ones; a wrong type is an
error naming the key and the type expected. Sections that configure a library object
(``[estimation]``, ``[logit]``, ``[integration]``, ``[[instruments.build]]``) take exactly that
object's keyword arguments.
See ``examples/README.md`` for a complete description and ``examples/*.toml`` for examples.

Paths are relative to the specification file unless absolute. ``${NAME}`` expands the
environment variable NAME (a relative path in it is relative to the current directory) and
``${NAME:-default}`` falls back to ``default`` (relative to the spec file) when NAME is unset.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from blpdemand.errors import DataError, SpecificationError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# section -> key -> (expected python types, description of the type)
_STR = ((str,), "a string")
_STRS = ((list,), "a list of strings")
_BOOL = ((bool,), "true or false")
_STR_OR_LIST = ((str, list), "a string or a list of strings")
_MATRIX = ((list,), "a list of rows (lists of numbers)")
_TABLE = ((dict,), "a table")
_MARKET = ((str, int), "a market id (string or integer)")

SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "data": {"products": _STR, "agents": _STR, "micro": _STR},
    "model": {"linear": _STR, "nonlinear": _STR, "demographics": _STR, "absorb": _STR_OR_LIST,
              "endogenous": _STRS, "lognormal": _STRS, "nesting": _STR, "rho": _STR},
    "instruments": {"columns": _STRS,
                    "build": ((list,), "an array of tables [[instruments.build]]")},
    "parameters": {"sigma": _MATRIX, "pi": _MATRIX,
                   "rho": ((float, int, list), "a number or a list of numbers, one per nest")},
    "supply": {"formula": _STR, "instruments": _STRS, "costs": _STR, "conduct": _STR,
               "lower": ((int, float), "a number"), "upper": ((int, float), "a number"),
               "covariance": ((bool, list), "true or a list of covariance instrument columns"),
               "covariance_mean": ((int, float), "a number")},
    "post": {"elasticities": _BOOL, "diversion": _BOOL, "passthrough": _BOOL, "costs": _BOOL,
             "market": _MARKET, "merger": _TABLE, "profiles": _BOOL, "bootstrap": _TABLE,
             "contour": ((bool, list), "true or a list of two parameter names"),
             "stability": ((bool, list), "true or a list of draw multipliers like [1, 2, 4]")},
    "output": {"directory": _STR, "json": _BOOL, "latex": _BOOL, "html": _BOOL, "plots": _BOOL},
    "compute": {"scheduler": _STR, "workers": ((int,), "an integer")},
    "comparison": {"title": _STR, "label": _STR, "parameters": _STRS,
                   "models": ((list,), "an array of tables [[comparison.models]]")},
}
# sections whose keys are checked against a library object's keyword arguments
FORWARDED = ("columns", "integration", "estimation", "logit")
TOP_LEVEL = ("title",)
LISTS = ("micro",)  # arrays of tables at the top level: [[micro]] (cli.micro)
RESERVED_COLUMNS = ("market_ids", "product_ids", "firm_ids", "shares", "prices",
                    "clustering_ids")


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """A parsed specification: the TOML tables, with paths resolved and data not yet loaded."""

    path: Path
    title: str
    data: dict[str, Path]
    columns: dict[str, str] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    instruments: dict[str, Any] = field(default_factory=dict)
    integration: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    supply: dict[str, Any] = field(default_factory=dict)
    estimation: dict[str, Any] = field(default_factory=dict)
    logit: dict[str, Any] = field(default_factory=dict)
    post: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    compute: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)
    micro: list[Any] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def where(self, key: str) -> str:
        return f"{key} in {self.path.name}"


def read_spec(path: str | Path) -> Spec:
    """Parse and check a TOML specification file (no data read yet)."""
    path = Path(path)
    if path.is_dir():
        raise SpecificationError(f"specification file '{path}' is a directory; give the TOML "
                                 f"file in it (e.g. {path / 'spec.toml'})")
    if not path.is_file():
        raise SpecificationError(f"specification file '{path}' does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecificationError(f"{path.name} is not valid TOML: {exc}") from None
    return parse_spec(raw, path)


def parse_spec(raw: Mapping[str, Any], path: Path) -> Spec:
    """Check the keys and types of a parsed TOML document and resolve its paths."""
    name = path.name
    valid = sorted([*TOP_LEVEL, *LISTS, *SCHEMA, *FORWARDED])
    for key, value in raw.items():
        if key not in valid:
            raise SpecificationError(f"unknown section '{key}' in {name}; "
                                     f"valid: {', '.join(valid)}")
        if key in TOP_LEVEL:
            _check_type(value, _STR, f"'{key}'", name)
            continue
        if key in LISTS:
            if not isinstance(value, list):
                raise SpecificationError(f"'{key}' in {name} must be an array of tables "
                                         f"[[{key}]], got {_type_name(value)}")
            continue
        if not isinstance(value, dict):
            raise SpecificationError(f"'{key}' in {name} must be a table [{key}], "
                                     f"got {_type_name(value)}")
        if key in SCHEMA:
            _check_section(value, SCHEMA[key], key, name)
    sections = {k: dict(raw.get(k, {})) for k in (*SCHEMA, *FORWARDED)}
    if "products" not in sections["data"]:
        raise SpecificationError(f"[data] products is missing in {name}; give the products file")
    if "linear" not in sections["model"]:
        raise SpecificationError(f"[model] linear is missing in {name}; give the X1 formula")
    base = path.resolve().parent
    data = {k: resolve_path(v, base, f"[data] {k}", name) for k, v in sections["data"].items()}
    for key, value in sections["columns"].items():
        if key not in RESERVED_COLUMNS:
            raise SpecificationError(f"unknown key '{key}' in [columns] of {name}; valid: "
                                     f"{', '.join(RESERVED_COLUMNS)}")
        _check_type(value, _STR, f"[columns] {key}", name)
    builders = sections["instruments"].get("build", [])
    for k, builder in enumerate(builders):
        if not isinstance(builder, dict) or not isinstance(builder.get("kind"), str):
            raise SpecificationError(f"[[instruments.build]] entry {k + 1} in {name} needs "
                                     f"kind = \"...\" (e.g. kind = \"blp\")")
    for key in ("columns",):
        for item in sections["instruments"].get(key, []):
            _check_type(item, _STR, "[instruments] columns entries", name)
    output = dict(sections["output"])
    if "directory" in output:
        output["directory"] = resolve_path(output["directory"], base, "[output] directory", name)
    integration = dict(sections["integration"])
    if isinstance(integration.get("demographics_data"), str):
        integration["demographics_data"] = resolve_path(
            integration["demographics_data"], base, "[integration] demographics_data", name)
    return Spec(path=path, title=str(raw.get("title", path.stem)), data=data,
                columns=sections["columns"], model=sections["model"],
                instruments=sections["instruments"], integration=integration,
                parameters=sections["parameters"], supply=_supply(sections["supply"], name),
                estimation=sections["estimation"],
                logit=sections["logit"], post=sections["post"], output=output,
                compute=sections["compute"], comparison=_comparison(sections["comparison"], name),
                micro=list(raw.get("micro", [])), raw=dict(raw))


def _supply(section: Mapping[str, Any], name: str) -> dict[str, Any]:
    """[supply] as Problem keywords: formula -> supply (X3), instruments -> supply_instruments,
    costs, conduct, lower/upper -> costs_bounds (either side may be left out), covariance
    (true or columns, "1" the constant) -> covariance_restrictions, covariance_mean ->
    covariance_moments_mean."""
    if not section:
        return {}
    if "formula" not in section:
        raise SpecificationError(f"[supply] in {name} needs formula = \"1 + ...\" (X3, the "
                                 "cost shifters)")
    for item in section.get("instruments", []):
        _check_type(item, _STR, "[supply] instruments entries", name)
    out: dict[str, Any] = {"supply": section["formula"],
                           "supply_instruments": section.get("instruments")}
    out.update({k: section[k] for k in ("costs", "conduct") if k in section})
    if "lower" in section or "upper" in section:
        out["costs_bounds"] = (section.get("lower"), section.get("upper"))
    for item in section["covariance"] if isinstance(section.get("covariance"), list) else []:
        _check_type(item, _STR, "[supply] covariance entries", name)
    if section.get("covariance") not in (None, False):  # E[(xi omega - m) z_C] = 0
        out["covariance_restrictions"] = section["covariance"]
    if "covariance_mean" in section:
        out["covariance_moments_mean"] = float(section["covariance_mean"])
    return out


#: what a [[comparison.models]] entry may change of the [model]/[logit] model
COMPARISON_KEYS = ("label", "linear", "absorb", "instruments", "method", "covariance",
                   "clusters")


def _comparison(section: Mapping[str, Any], name: str) -> dict[str, Any]:
    """[comparison]: further models beside the spec's own, each a [[comparison.models]] table
    with a label and what it changes (the lecture's OLS/IV x baseline/controls table)."""
    models = section.get("models", [])
    for k, model in enumerate(models):
        where = f"[[comparison.models]] entry {k + 1} in {name}"
        if not isinstance(model, dict) or not isinstance(model.get("label"), str):
            raise SpecificationError(f"{where} needs label = \"...\"")
        check_keys(model, COMPARISON_KEYS, f"[[comparison.models]] entry {k + 1}", name)
        if "instruments" in model:
            _check_type(model["instruments"], _STRS, f"{where}: instruments", name)
    labels = [section.get("label", "model"), *[m["label"] for m in models]]
    if len(set(labels)) < len(labels):
        raise SpecificationError(f"[comparison] labels in {name} must differ: {labels} (the "
                                 "spec's own model is [comparison] label, default 'model')")
    return dict(section)


def expand_env(text: str, where: str, spec_name: str) -> str:
    """Expand ``${NAME}`` and ``${NAME:-default}``; an unset NAME without default is an error."""

    def replace(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value:
            # a relative path in a variable is relative to where the user set it (the cwd)
            at_start = match.start() == 0
            return os.path.abspath(value) if at_start and not os.path.isabs(value) else value
        if match.group(2) is not None:
            return match.group(2)
        raise SpecificationError(f"{where} in {spec_name} uses ${{{match.group(1)}}}, which is "
                                 f"not set; export {match.group(1)}=... or write "
                                 f"${{{match.group(1)}:-default}}")

    return _ENV.sub(replace, text)


def resolve_path(text: str, base: Path, where: str, spec_name: str) -> Path:
    """Expand the environment and make a path absolute relative to the spec's folder."""
    path = Path(expand_env(text, where, spec_name)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def read_table(path: Path, where: str) -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension) into a DataFrame."""
    if path.is_dir():
        raise DataError(f"{where}: '{path}' is a directory; give the data file in it")
    if not path.is_file():
        raise DataError(f"{where}: file '{path}' does not exist; fix the path or set the "
                        f"environment variable it uses (e.g. BLPDEMAND_DATA)")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt", ".gz"):
        raise DataError(f"{where}: '{path.name}' has extension '{suffix}'; use .csv or .parquet")
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        table = pd.read_csv(path)
    except ImportError as exc:
        raise DataError(f"{where}: reading '{path.name}' needs an optional package: "
                        f"{exc}") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"{where}: cannot read '{path}': {exc}") from None
    return _one_delimiter(table, path, where)


_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _one_delimiter(table: pd.DataFrame, path: Path, where: str) -> pd.DataFrame:
    """A CSV read as one column whose header holds ';', a tab or '|' was written with another
    delimiter (e.g. a spreadsheet's ';'): say so, instead of a missing-column error later."""
    if table.shape[1] != 1:
        return table
    header = str(table.columns[0])
    for mark, name in _DELIMITERS.items():
        if mark in header:
            raise DataError(f"{where}: '{path.name}' reads as one column {header[:60]!r}; its "
                            f"values seem separated by {name} ({mark!r}), not commas: save it "
                            f"as a comma-separated CSV (or as Parquet)")
    return table


def like_column(column: pd.Series, value: Any) -> Any:
    """A TOML key or value as the id column's type (firm or market ids)."""
    if (pd.api.types.is_integer_dtype(column) and isinstance(value, str)
            and value.lstrip("-").isdigit()):
        return int(value)
    if pd.api.types.is_float_dtype(column) and isinstance(value, (str, int)):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, int) and not pd.api.types.is_numeric_dtype(column):
        return str(value)
    return value


def firm_mapping(column: pd.Series, firm_ids: Any, spec_name: str) -> dict[Any, Any]:
    """``[post.merger] firm_ids = {old = new}`` in the id column's type; every old id must be a
    firm of the data (an unknown one silently changed nothing)."""
    mapping = {like_column(column, k): like_column(column, v) for k, v in dict(firm_ids).items()}
    unknown = [k for k in mapping if k not in set(column.tolist())]
    if unknown:
        raise SpecificationError(f"[post.merger] firm_ids in {spec_name}: firm(s) {unknown} are "
                                 f"not in the data's firm ids")
    return mapping


def keyword_names(target: Callable[..., Any]) -> tuple[str, ...]:
    """Keyword arguments a function or dataclass accepts (public ones only)."""
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return tuple(f.name for f in dataclasses.fields(target) if f.init and
                     not f.name.startswith("_"))
    params = inspect.signature(target).parameters.values()
    return tuple(p.name for p in params
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                 and not p.name.startswith("_"))


def check_types(given: Mapping[str, Any], target: Callable[..., Any], section: str,
                spec_name: str) -> None:
    """Check simple annotated types (float, int, bool, str, Literal, optional) of the keyword
    arguments a spec section forwards to ``target``; other annotations are left to it."""
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - annotations that cannot be resolved are not checked
        return
    for key, value in given.items():
        hint = hints.get(key)
        if hint is None or _matches(value, hint):
            continue
        raise SpecificationError(f"{section} {key} in {spec_name} must be {_describe(hint)}, "
                                 f"got {_type_name(value)} {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    return True  # anything richer is validated by the target itself


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint) if h is not type(None))
    return {float: "a number", int: "an integer", bool: "true or false",
            str: "a string"}.get(hint, str(hint))


def check_keys(given: Mapping[str, Any], valid: tuple[str, ...], section: str,
               spec_name: str) -> None:
    """Raise naming the first unknown key of a section and the valid ones."""
    for key in given:
        if key not in valid:
            raise SpecificationError(f"unknown key '{key}' in {section} of {spec_name}; valid: "
                                     f"{', '.join(sorted(valid))}")


def _check_section(values: Mapping[str, Any], schema: Mapping[str, tuple[tuple[type, ...], str]],
                   section: str, spec_name: str) -> None:
    check_keys(values, tuple(schema), f"[{section}]", spec_name)
    for key, value in values.items():
        _check_type(value, schema[key], f"[{section}] {key}", spec_name)


def _check_type(value: Any, expected: tuple[tuple[type, ...], str], where: str,
                spec_name: str) -> None:
    types, description = expected
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok and expected is _STRS:
        ok = all(isinstance(v, str) for v in value)
    if ok and expected is _MATRIX:
        ok = all(isinstance(r, list) and all(isinstance(x, (int, float)) and
                                            not isinstance(x, bool) for x in r) for r in value)
    if not ok:
        raise SpecificationError(f"{where} in {spec_name} must be {description}, "
                                 f"got {_type_name(value)} {value!r}")


def _type_name(value: Any) -> str:
    names = {str: "string", int: "integer", float: "float", bool: "boolean", list: "array",
             dict: "table"}
    return names.get(type(value), type(value).__name__)
