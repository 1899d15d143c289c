"""Table cells render literally in rich: parameter names in brackets are not markup."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from blpdemand.results.tables import Table


def test_bracketed_names_survive_rich_rendering() -> None:
    # Reference: the literal cell text. A markup-parsing console would print only "sigma".
    body = pd.DataFrame({"estimate": [0.5]}, index=["sigma[prices, prices]"])
    console = Console(width=120, record=True, color_system=None)
    console.print(Table(title="[fit]", body=body))
    text = console.export_text()
    assert "sigma[prices, prices]" in text
    assert "[fit]" in text
