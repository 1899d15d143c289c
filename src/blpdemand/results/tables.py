"""Tables: one object, several renderers (terminal, plain text, LaTeX, HTML, DataFrame).

Estimation results return a :class:`Table` from ``summary()``; the CLI renders it with rich,
papers take ``to_latex()``, notebooks ``_repr_html_``. Library code never prints a table.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from blpdemand.errors import SpecificationError
from blpdemand.solve.distributions import normal_ppf, normal_sf, t_ppf, t_sf

COEFFICIENT_COLUMNS = ("estimate", "std. error", "t", "p-value", "[0.025", "0.975]")


class LabelledParameters:
    """``params`` and ``bse``: estimates and standard errors by parameter name, the labelled
    columns of the results' ``to_frame()`` (the vocabulary LogitResults shares with
    statsmodels), so ``results.params["prices"]`` reads the same on every estimator."""

    def to_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    @property
    def params(self) -> pd.Series:
        return self.to_frame()["estimate"].rename("params")

    @property
    def bse(self) -> pd.Series:
        return self.to_frame()["std. error"].rename("bse")


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """A titled table with a pandas body and optional notes.

    Attributes
    ----------
    title : the caption.
    body : DataFrame; its index labels the rows (e.g. parameter names).
    notes : lines printed under the table (sample size, covariance type, ...).
    digits : decimals used for floats when rendering as text, LaTeX, HTML or rich.

    Examples
    --------
    >>> t = Table(title="demo", body=pd.DataFrame({"a": [1.0]}, index=["x"]))
    >>> "1.0000" in t.to_text()
    True
    """

    title: str
    body: pd.DataFrame
    notes: tuple[str, ...] = ()
    digits: int = 4
    _cells: tuple[tuple[str, ...], ...] | None = field(init=False, repr=False, compare=False,
                                                       default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.body, pd.DataFrame):
            raise SpecificationError(f"Table body must be a pandas DataFrame, got "
                                     f"{type(self.body).__name__}")
        if isinstance(self.notes, str):
            object.__setattr__(self, "notes", (self.notes,))
        else:
            object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))
        if not isinstance(self.digits, int) or self.digits < 0:
            raise SpecificationError(f"digits={self.digits!r} must be a non-negative int")
        object.__setattr__(self, "body", self.body.copy())

    # ------------------------------------------------------------------ content
    @property
    def header(self) -> tuple[str, ...]:
        """Column headers including the (possibly empty) index header."""
        name = self.body.index.name
        return (str(name) if name is not None else "",) + tuple(str(c) for c in self.body.columns)

    @property
    def rows(self) -> tuple[tuple[str, ...], ...]:
        """Formatted cells, row by row, the index label first (formatted when first asked for:
        a market's full matrix of 131 x 131 cells goes to CSV unformatted and is never shown)."""
        if self._cells is None:
            object.__setattr__(self, "_cells", self._format_cells())
        assert self._cells is not None
        return self._cells

    def _format_cells(self) -> tuple[tuple[str, ...], ...]:
        out = []
        for label, row in zip(self.body.index, self.body.itertuples(index=False, name=None)):
            out.append((str(label),) + tuple(format_value(v, self.digits) for v in row))
        return tuple(out)

    # ------------------------------------------------------------------ renderers
    def to_frame(self) -> pd.DataFrame:
        """The numbers as a DataFrame (a copy; unformatted)."""
        return self.body.copy()

    def to_text(self) -> str:
        """Plain fixed-width text: title, rule, header, rows, rule, notes."""
        header = self.header
        widths = [len(h) for h in header]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]

        def line(cells: Sequence[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
            return "  ".join([first, *rest]).rstrip()

        total = sum(widths) + 2 * (len(widths) - 1)
        rule = "-" * max(total, len(self.title))
        parts = [self.title, "=" * len(rule), line(header), rule]
        parts += [line(row) for row in self.rows]
        parts.append(rule)
        parts += list(self.notes)
        return "\n".join(parts)

    def to_latex(self, *, label: str | None = None) -> str:
        """A LaTeX ``table`` with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
        spec = "l" + "r" * (len(self.header) - 1)
        lines = ["\\begin{table}[htbp]", "\\centering", f"\\caption{{{latex_escape(self.title)}}}"]
        if label:
            lines.append(f"\\label{{{label}}}")
        lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                  " & ".join(latex_escape(h) for h in self.header) + " \\\\", "\\midrule"]
        lines += [" & ".join(latex_escape(c) for c in row) + " \\\\" for row in self.rows]
        lines += ["\\bottomrule", "\\end{tabular}"]
        if self.notes:
            lines += ["\\par\\smallskip", "{\\footnotesize "
                      + " \\\\ ".join(latex_escape(n) for n in self.notes) + "}"]
        lines.append("\\end{table}")
        return "\n".join(lines)

    def to_html(self) -> str:
        """An HTML ``<table>`` with a caption and the notes in a footer."""
        esc = html.escape
        parts = ["<table>", f"<caption>{esc(self.title)}</caption>", "<thead><tr>"]
        parts += [f"<th>{esc(h)}</th>" for h in self.header]
        parts.append("</tr></thead><tbody>")
        for row in self.rows:
            parts.append("<tr><th>" + esc(row[0]) + "</th>"
                         + "".join(f'<td style="text-align:right">{esc(c)}</td>' for c in row[1:])
                         + "</tr>")
        parts.append("</tbody>")
        if self.notes:
            parts.append(f'<tfoot><tr><td colspan="{len(self.header)}">'
                         + "<br>".join(esc(n) for n in self.notes) + "</td></tr></tfoot>")
        parts.append("</table>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def preview(self, rows: int = 30, *, heading: str | None = None) -> str:
        """``to_text()`` of the first ``rows`` rows (a note counts the others), under ``heading``:
        the one-screen form that results objects use as their repr."""
        shown = self
        hidden = len(self.body) - rows
        if hidden > 0:
            shown = Table(title=self.title, body=self.body.iloc[:rows], digits=self.digits,
                          notes=(f"... {hidden} more rows not shown",
                                 *self.notes))
        text = shown.to_text()
        return text if heading is None else f"{heading}\n{text}"

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return self.to_text()

    def __rich__(self) -> Any:
        """A rich renderable for the terminal: a ``rich.table.Table``, then the notes."""
        from rich.console import Group
        from rich.table import Table as RichTable
        from rich.text import Text

        # Cells are Text, never markup: "sigma[prices, prices]" must not read as a style tag.
        table = RichTable(title=Text(self.title) if self.title else None)
        for k, h in enumerate(self.header):
            table.add_column(Text(h), justify="left" if k == 0 else "right",
                             style="bold" if k == 0 else None, no_wrap=k == 0)
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))
        if not self.notes:
            return table
        return Group(table, *(Text(note, style="dim") for note in self.notes))


def top_by_share(frame: pd.DataFrame, shares: Any, *, top: int | None) -> tuple[pd.DataFrame, str]:
    """The readable part of a large square product matrix: its rows and columns for the ``top``
    products with the largest ``shares``, largest first (ties in the given order).

    Parameters
    ----------
    frame : (J, J) matrix, rows and columns in the same product order.
    shares : (J,) the products' shares in that order.
    top : how many products to keep; None (or J <= top) keeps the whole frame, in its order.

    Returns the (n, n) frame and what was kept in words ("top 25 of 290 products by share"; ""
    when nothing was cut).
    """
    weights = np.asarray(shares, dtype=np.float64).reshape(-1)
    J = frame.shape[0]
    if frame.shape != (J, J) or weights.size != J:
        raise SpecificationError(f"top_by_share needs a square matrix and one share per product, "
                                 f"got a {frame.shape} matrix and {weights.size} shares")
    if top is not None and top < 1:
        raise SpecificationError(f"top={top!r} must be a positive number of products or None")
    if top is None or J <= top:
        return frame, ""
    keep = np.argsort(-weights, kind="stable")[:top]
    return frame.iloc[keep, keep], f"top {top} of {J} products by share"


def format_value(value: Any, digits: int = 4) -> str:
    """Format one cell: floats with ``digits`` decimals (scientific when tiny or huge)."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0 and (abs(v) < 10.0 ** (-digits) or abs(v) >= 1e8):
            return f"{v:.{max(digits - 1, 1)}e}"
        return f"{v:.{digits}f}"
    return str(value)


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def coefficient_table(names: Sequence[str], estimates: Any, standard_errors: Any, *,
                      title: str = "Estimates", notes: Sequence[str] = (),
                      df: int | None = None, level: float = 0.95, digits: int = 4) -> Table:
    """A coefficient table: estimate, standard error, t, two-sided p-value and confidence interval.

    t = b / se, p = 2 (1 - F(|t|)), CI = b -+ q se with q the (1 + level)/2 quantile of F, where
    F is the standard normal (asymptotic, the GMM default) or Student's t with ``df`` degrees of
    freedom when ``df`` is given.

    Parameters
    ----------
    names : (K,) row labels; estimates, standard_errors : (K,) numbers.
    """
    b = np.asarray(estimates, dtype=np.float64).reshape(-1)
    se = np.asarray(standard_errors, dtype=np.float64).reshape(-1)
    names = [str(n) for n in names]
    if not (len(names) == b.size == se.size):
        raise SpecificationError(f"coefficient_table: {len(names)} names, {b.size} estimates, "
                                 f"{se.size} standard errors; they must match")
    if not 0 < level < 1:
        raise SpecificationError(f"level={level!r} must lie in (0, 1)")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, b / np.where(se > 0, se, 1.0), np.nan)
    size = np.abs(np.nan_to_num(t))
    tail = normal_sf(size) if df is None else t_sf(size, df)
    p = np.where(np.isfinite(t), 2.0 * tail, np.nan)
    q = normal_ppf(0.5 + level / 2) if df is None else t_ppf(0.5 + level / 2, df)
    lo_name = f"[{(1 - level) / 2:.3f}"
    hi_name = f"{1 - (1 - level) / 2:.3f}]"
    body = pd.DataFrame({"estimate": b, "std. error": se, "t": t, "p-value": p,
                         lo_name: b - q * se, hi_name: b + q * se}, index=pd.Index(names))
    return Table(title=title, body=body, notes=tuple(notes), digits=digits)
