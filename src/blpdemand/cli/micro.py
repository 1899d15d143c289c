"""The ``[[micro]]`` tables of a specification: survey statistics matched as micro moments.

Each entry is one statistic, in the words of ``bd.micro``::

    [data]
    micro = "survey.csv"          # optional: columns name, value (the survey's numbers)

    [[micro]]
    name = "E[age | mi]"          # its value: value = ..., or the CSV row of this name
    kind = "mean"                 # mean, probability, covariance, second_choice
    variable = "age"              # mean: a demographic (or a product column of the choice)
    given = "mi == 1"             # a condition on the choice ("inside", "outside", or an
                                  # expression on the product data)
    given_demographic = "fs > 2"  # a condition on the agent
    survey = "CEX"                # entries naming one survey share its sample
    observations = 29125          # the survey's sample size N_d
    markets = [1990, 1991]        # the markets it samples (default: all)

``probability`` takes ``chose`` (the event), ``covariance`` takes ``variables = [a, b]``,
``second_choice`` takes ``first`` and ``second`` (choices, as ``given``). A survey's
``observations`` and ``markets`` are given once, on any of its entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blpdemand.cli.spec import read_table
from blpdemand.errors import SpecificationError

KEYS = ("name", "kind", "value", "variable", "variables", "chose", "given",
        "given_demographic", "first", "second", "survey", "observations", "markets")
KINDS = ("mean", "probability", "covariance", "second_choice")


def micro_moments(entries: list[Any], values_file: Path | None, spec_name: str) -> list[Any]:
    """The bd.micro moments of the ``[[micro]]`` entries (values from ``values_file``)."""
    from blpdemand.data import micro

    table = None
    if values_file is not None:
        frame = read_table(values_file, f"[data] micro in {spec_name}")
        if not {"name", "value"} <= set(frame.columns):
            raise SpecificationError(f"[data] micro ({values_file.name}) needs columns name and "
                                     f"value, got {list(frame.columns)}")
        table = dict(zip(frame["name"].astype(str), frame["value"]))
    surveys: dict[str, Any] = {}
    sizes: dict[str, tuple[int, Any, bool]] = {}
    for k, entry in enumerate(entries):  # surveys first: their size may be given on any entry
        where = _where(k, entry, spec_name)
        if not isinstance(entry, dict):
            raise SpecificationError(f"{where} must be a table")
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise SpecificationError(f"unknown key(s) {unknown} in {where}; valid: {KEYS}")
        if entry.get("kind") not in KINDS:
            raise SpecificationError(f"{where}: kind = {entry.get('kind')!r}; valid: {KINDS}")
        name = str(entry.get("survey", entry.get("name", f"micro {k + 1}")))
        if "observations" in entry:
            sizes[name] = (entry["observations"], entry.get("markets"),
                           entry["kind"] == "second_choice")
    moments = []
    for k, entry in enumerate(entries):
        where = _where(k, entry, spec_name)
        name = str(entry.get("survey", entry.get("name", f"micro {k + 1}")))
        if name not in sizes:
            raise SpecificationError(f"{where}: survey {name!r} has no observations = N_d")
        if name not in surveys:
            n, markets, second = sizes[name]
            surveys[name] = micro.Survey(name, n, None if markets is None else tuple(markets),
                                         second_choices=second)
        moments.append(_moment(entry, surveys[name], table, where))
    return moments


def _moment(entry: dict[str, Any], survey: Any, table: dict[str, Any] | None, where: str
            ) -> Any:
    from blpdemand.data import micro

    if "value" in entry:
        value = entry["value"]
    elif table is not None and str(entry.get("name")) in table:
        value = table[str(entry["name"])]
    else:
        raise SpecificationError(f"{where}: give value = ..., or a row named "
                                 f"{entry.get('name')!r} in the [data] micro file")
    given = _given(entry)
    common = {"value": float(value), "survey": survey, "name": entry.get("name")}
    kind = entry["kind"]
    needed = {"mean": ("variable",), "probability": ("chose",), "covariance": ("variables",),
              "second_choice": ("first", "second")}[kind]
    missing = [key for key in needed if key not in entry]
    if missing:
        raise SpecificationError(f"{where}: kind = {kind!r} needs {', '.join(missing)}")
    if kind == "mean":
        return micro.mean(entry["variable"], given=given, **common)
    if kind == "probability":
        return micro.probability(chose=_choice(entry["chose"]), given=given, **common)
    if kind == "covariance":
        variables = entry["variables"]
        if not isinstance(variables, list) or len(variables) != 2:
            raise SpecificationError(f"{where}: variables must be a list of two names")
        return micro.covariance(variables[0], variables[1], given=given, **common)
    return micro.second_choice(first=_choice(entry["first"]), second=_choice(entry["second"]),
                               given=given, **common)


def _choice(text: str) -> Any:
    from blpdemand.data import micro

    words = {"inside": micro.inside, "outside": micro.outside}
    return words[text]() if text in words else micro.chose(text)


def _given(entry: dict[str, Any]) -> Any:
    from blpdemand.data import micro

    parts = []
    if "given" in entry:
        parts.append(_choice(entry["given"]))
    if "given_demographic" in entry:
        parts.append(micro.demographic(entry["given_demographic"]))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


def _where(k: int, entry: Any, spec_name: str) -> str:
    label = f" ({entry.get('name')!r})" if isinstance(entry, dict) and "name" in entry else ""
    return f"[[micro]] entry {k + 1}{label} in {spec_name}"
